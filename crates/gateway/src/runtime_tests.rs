//! Tests of `runtime.rs`.
use super::*;

fn cfg(toml_text: &str) -> GatewayConfig {
    toml::from_str(toml_text).expect("toml")
}

const BASE: &str = r#"
    [upstreams.main]
    url = "http://127.0.0.1:9000/base/"
    [policies.standard]
    requests = 10
    per_seconds = 1
    [[routes]]
    name = "all"
    path_prefix = "/"
    upstream = "main"
    [[routes]]
    name = "inv-read"
    path_prefix = "/v1/invoices/"
    methods = ["get", "HEAD"]
    upstream = "main"
    scopes = ["invoices:read"]
    rate_limit = "standard"
    [[routes]]
    name = "inv-write"
    path_prefix = "/v1/invoices"
    methods = ["POST"]
    upstream = "main"
    [[routes]]
    name = "hosted"
    host = "Admin.Example.com"
    path_prefix = "/v1"
    upstream = "main"
"#;

fn name(m: Match<'_>) -> String {
    match m {
        Match::Found(r) => r.name.to_string(),
        Match::MethodNotAllowed => "405".into(),
        Match::NotFound => "404".into(),
    }
}

#[test]
fn most_specific_route_wins() {
    let rt = Runtime::build(&cfg(BASE)).expect("valid");
    let get = Method::GET;
    assert_eq!(name(rt.route(None, "/v1/invoices/42", &get)), "inv-read");
    assert_eq!(
        name(rt.route(None, "/v1/invoices", &Method::POST)),
        "inv-write"
    );
    assert_eq!(name(rt.route(None, "/v1/invoices", &Method::DELETE)), "405");
    assert_eq!(name(rt.route(None, "/v1/invoices-old", &get)), "all");
    assert_eq!(
        name(rt.route(Some("admin.example.COM"), "/v1/invoices", &get)),
        "hosted"
    );
    assert_eq!(name(rt.route(Some("other"), "/v2", &get)), "all");
    let read = match rt.route(None, "/v1/invoices/1", &get) {
        Match::Found(r) => r,
        _ => panic!("found"),
    };
    assert_eq!(read.upstream.base_path, "/base");
    assert_eq!(read.policy.as_ref().map(|p| &*p.name), Some("standard"));
    let mut none = cfg(BASE);
    none.routes.retain(|r| r.name == "inv-read");
    let rt = Runtime::build(&none).expect("valid");
    assert_eq!(name(rt.route(None, "/", &get)), "404");
}

#[test]
fn canonical_routing_with_parameters_and_case() {
    let mut c = cfg(BASE);
    c.routes.retain(|r| r.name != "hosted");
    for r in &mut c.routes {
        r.allow_path_parameters = r.name != "inv-read";
    }
    let rt = Runtime::build(&c).expect("valid");
    let routed = |p: &str, m: &Method| {
        let canonical = path::canonical(p).expect(p);
        rt.route_path(None, &canonical, m).map(name)
    };
    assert_eq!(
        routed("/v1/inv%6Fices/1", &Method::GET),
        Ok("inv-read".into())
    );
    assert_eq!(routed("/v2;x/y", &Method::GET), Ok("all".into()));
    assert_eq!(
        routed("/v1/invoices;x", &Method::POST),
        Err(PathError::Parameters),
        "the catch-all allows parameters, but stripped they name inv-write"
    );
    assert_eq!(
        routed("/v1/invoices/1;x", &Method::GET),
        Err(PathError::Parameters),
        "inv-read does not allow them"
    );
    assert_eq!(
        routed("/v1/invoices;x", &Method::DELETE),
        Err(PathError::Parameters),
        "stripped, it is a path without a route for DELETE"
    );
    assert_eq!(routed("/V1/Invoices/1", &Method::GET), Ok("all".into()));
    for r in &mut c.routes {
        r.case_insensitive = true;
    }
    let rt = Runtime::build(&c).expect("valid");
    let routed = |p: &str| {
        let canonical = path::canonical(p).expect(p);
        rt.route_path(None, &canonical, &Method::GET).map(name)
    };
    assert_eq!(routed("/V1/Invoices/1"), Ok("inv-read".into()));
    assert_eq!(routed("/V1/INVOICES"), Ok("inv-read".into()));
    assert_eq!(routed("/v1/invoices./1"), Err(PathError::CaseFolding));
}

#[test]
fn invalid_configurations_name_the_entry() {
    let cases = [
        (r#"upstream = "main""#, r#"upstream = "nope""#, "nope"),
        (
            "http://127.0.0.1:9000/base/",
            "https://127.0.0.1:9000",
            "https",
        ),
        (
            "http://127.0.0.1:9000/base/",
            "http://203.0.113.7:9000",
            "danger_allow_plaintext_upstream",
        ),
        (
            "http://127.0.0.1:9000/base/",
            "http://u:p@127.0.0.1:9000",
            "credentials",
        ),
        (
            r#"path_prefix = "/v1/invoices/""#,
            r#"path_prefix = "/v1/../admin""#,
            "path_prefix",
        ),
        (r#"name = "all""#, r#"name = "inv-write""#, "twice"),
        (r#"name = "all""#, r#"name = "All Routes""#, "name"),
        (
            r#"rate_limit = "standard""#,
            r#"rate_limit = "gold""#,
            "gold",
        ),
        ("requests = 10", "requests = 0", "policies.standard"),
        (
            r#"scopes = ["invoices:read"]"#,
            r#"scopes = ["not a scope"]"#,
            "scopes",
        ),
        (
            r#"methods = ["get", "HEAD"]"#,
            r#"methods = ["G ET"]"#,
            "methods",
        ),
    ];
    for (from, to, needle) in cases {
        let text = BASE.replacen(from, to, 1);
        assert_ne!(text, BASE, "{from}");
        let err = Runtime::build(&cfg(&text)).expect_err(needle).to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let mut c = cfg(BASE);
    c.trusted_proxies = vec!["10.0.0.0/33".into()];
    assert!(Runtime::build(&c).is_err());
    let mut c = cfg(BASE);
    c.routes[0].public = true;
    c.routes[0].scopes = vec!["a:b".into()];
    assert!(Runtime::build(&c).is_err(), "public routes take no scopes");
}
