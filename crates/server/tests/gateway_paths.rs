//! The path that was authorised is the only path an upstream can see: generated paths are
//! canonicalised and routed as the gateway does, and whatever a Tomcat-, nginx-, Go- or
//! IIS-style server makes of the forwarded path must land in the route that was checked; then
//! the same over real HTTP, with a public `/status`, an `/admin` route and a catch-all.
mod support;

use axum::http::Method;
use portcullis_server::gateway::{
    GatewayConfig, Runtime,
    path::{self, Canonical},
    runtime::Match,
};
use portcullis_testkit::spawn_with;
use proptest::prelude::*;
use serde_json::{Value, json};
use support::{
    gateway::route,
    resolvers::{self, ALL, CASE_SENSITIVE},
    upstream,
};

/// `/status` public, `/admin` (admin:all), `/api/v1` (api:read), `/` (app:read); every route
/// case-insensitive or not, allowing path parameters or not.
fn gateway_config(url: String, case_insensitive: bool, parameters: bool) -> GatewayConfig {
    let mut g = support::gateway::config(url, 1_000);
    let mut status = route("status", "/status", "main");
    status.public = true;
    let mut admin = route("admin", "/admin", "main");
    admin.scopes = vec!["admin:all".into()];
    let mut api = route("api", "/api/v1", "main");
    api.scopes = vec!["api:read".into()];
    let mut rest = route("rest", "/", "main");
    rest.scopes = vec!["app:read".into()];
    g.routes = vec![status, admin, api, rest];
    for r in &mut g.routes {
        r.case_insensitive = case_insensitive;
        r.allow_path_parameters = parameters;
    }
    g
}

fn route_name(m: Match<'_>) -> Option<String> {
    match m {
        Match::Found(r) => Some(r.name.to_string()),
        Match::MethodNotAllowed | Match::NotFound => None,
    }
}

/// The route the gateway checks for `raw` and the path it forwards, or `None` if it refuses.
fn gateway_view(rt: &Runtime, raw: &str) -> Option<(String, String)> {
    let c: Canonical<'_> = path::canonical(raw).ok()?;
    let found = route_name(rt.route_path(None, &c, &Method::GET).ok()?)?;
    Some((found, c.as_str().to_owned()))
}

fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        ".",
        "..",
        ";",
        ";x",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "%61",
        "%41",
        "%3b",
        "%3B",
        "\\",
        "a",
        "A",
        "admin",
        "ADMIN",
        "Admin",
        "dmin",
        "status",
        "api",
        "v1",
        "V1",
        "x",
        "%25",
        "%2525",
        "%00",
        "%20",
        "%C4%B1",
        "%e2%84%aa",
        "~",
        "-",
    ])
}

/// Absolute paths of up to 6 segments, each of 0 to 4 tokens (so empty segments too).
fn paths() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::collection::vec(token(), 0..4), 1..6).prop_map(|segs| {
        let segs: Vec<String> = segs.into_iter().map(|s| s.concat()).collect();
        format!("/{}", segs.join("/"))
    })
}

fn runtimes() -> Vec<(bool, Runtime)> {
    let mut out = Vec::new();
    for ci in [false, true] {
        for params in [false, true] {
            let cfg = gateway_config("http://127.0.0.1:9".into(), ci, params);
            out.push((ci, Runtime::build(&cfg).expect("valid")));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    /// Whatever path a client sends: if the gateway forwards it, every model of an upstream
    /// resolves the forwarded path into the route whose requirements were checked (IIS only
    /// behind case-insensitive routes, as configured for such an upstream).
    #[test]
    fn every_upstream_resolves_the_forwarded_path_into_the_checked_route(raw in paths()) {
        for (ci, rt) in runtimes() {
            let Some((checked, forwarded)) = gateway_view(&rt, &raw) else { continue };
            let models: &[resolvers::Model] = if ci { &ALL[..] } else { &CASE_SENSITIVE[..] };
            for (model, resolve) in models {
                let resolved = resolve(&forwarded);
                let landed = route_name(rt.route(None, &resolved, &Method::GET));
                prop_assert_eq!(
                    landed.as_deref(), Some(checked.as_str()),
                    "{} (ci {}): {:?} forwarded as {:?} resolves to {:?}",
                    model, ci, raw, forwarded, resolved
                );
            }
        }
    }

    /// The canonical form is a fixed point: canonicalising it again changes nothing and
    /// allocates nothing.
    #[test]
    fn the_canonical_path_is_a_fixed_point(raw in paths()) {
        if let Ok(c) = path::canonical(&raw) {
            let again = path::canonical(c.as_str()).expect("a canonical path stays valid");
            prop_assert!(matches!(again.clone().into_cow(), std::borrow::Cow::Borrowed(_)));
            prop_assert_eq!(again.as_str(), c.as_str());
        }
    }
}

#[test]
fn the_models_resolve_as_their_servers() {
    assert_eq!(resolvers::tomcat("/status/..;/admin/x"), "/admin/x");
    assert_eq!(resolvers::tomcat("/a;x/b;y=1"), "/a/b");
    assert_eq!(resolvers::decode_then_strip("/admin%3Bx/y"), "/admin/y");
    assert_eq!(resolvers::nginx("//admin/x"), "/admin/x");
    assert_eq!(resolvers::nginx("/%61dmin/./x/"), "/admin/x/");
    assert_eq!(resolvers::go("/a/b/../c/"), "/a/c");
    assert_eq!(resolvers::go("/"), "/");
    assert_eq!(resolvers::iis("/ADMIN./x"), "/admin/x");
    assert_eq!(resolvers::iis("/adm%C4%B1n\\x"), "/admin/x");
    assert_eq!(resolvers::iis("/status\\..\\admin"), "/admin");
}

#[test]
fn route_options_are_checked_at_configuration() {
    let url = || "http://127.0.0.1:9".to_owned();
    let mut mixed = gateway_config(url(), true, false);
    mixed.routes[3].case_insensitive = false;
    let err = Runtime::build(&mixed).expect_err("mixed case sensitivity on one upstream");
    assert!(err.to_string().contains("case_insensitive"), "{err}");
    let mut twins = gateway_config(url(), true, false);
    twins.routes.push(route("admin-upper", "/ADMIN", "main"));
    twins.routes[4].case_insensitive = true;
    let err = Runtime::build(&twins).expect_err("prefixes differing only in case");
    assert!(err.to_string().contains("differ only in case"), "{err}");
    for bad in ["/a;b", "/a//b", "/a/%2e%2e", "/%61", "/a\\b", "/a/..."] {
        let mut c = gateway_config(url(), false, false);
        c.routes[0].path_prefix = bad.into();
        let err = Runtime::build(&c).expect_err(bad);
        assert!(err.to_string().contains("path_prefix"), "{bad}: {err}");
    }
}

/// A GET of `target` sent byte for byte, with `key` as a bearer token: (status, JSON body).
async fn raw_get(addr: std::net::SocketAddr, target: &str, key: Option<&str>) -> (u16, Value) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    support::raw::request(addr, "GET", target, &headers).await
}

#[tokio::test]
async fn no_disguise_of_admin_reaches_the_upstream_without_its_scope() {
    let up = upstream::start().await;
    let g = gateway_config(format!("http://{}", up.addr), true, false);
    let s = spawn_with(move |c| c.gateway = g).await;
    s.tenant("acme").await;
    let (_, app) = s
        .key(
            "acme",
            json!({"name": "app", "environment": "live", "scopes": ["app:read"]}),
        )
        .await;
    let (_, admin) = s
        .key(
            "acme",
            json!({"name": "admin", "environment": "live", "scopes": ["admin:all"]}),
        )
        .await;
    let addr = s.gateway_addr.expect("gateway");
    let attacks = [
        ("/status/..;/admin/x", 400, 400),
        ("/status/.;x/../admin/x", 400, 400),
        ("/status/%2e%2E/admin/x", 400, 400),
        ("/status;x/../admin/x", 400, 400),
        ("//admin/x", 400, 400),
        ("/x/..%2Fadmin/x", 400, 400),
        ("/admin;x/y", 400, 400),
        ("/admin%3bx/y", 400, 400),
        ("/admin./x", 400, 400),
        ("/adm%C4%B1n/x", 400, 400),
        ("/%61dmin/x", 401, 403),
        ("/ADMIN/x", 401, 403),
        ("/Adm%69n/x", 401, 403),
    ];
    for (target, anonymous, with_app) in attacks {
        for (key, want) in [(None, anonymous), (Some(app.as_str()), with_app)] {
            let (status, v) = raw_get(addr, target, key).await;
            if let Some(seen) = v["path"].as_str() {
                for (model, resolve) in ALL {
                    let landed = resolve(seen);
                    assert!(
                        !landed.starts_with("/admin"),
                        "{target} reached the upstream as {seen:?}: {model} serves {landed}"
                    );
                }
            }
            assert_eq!(status, want, "{target} (key: {}): {v}", key.is_some());
            let code = v["error"]["code"].as_str().unwrap_or_default();
            if want == 400 {
                assert_eq!(code, "invalid_path", "{target}: {v}");
            }
        }
    }
    // The scope holder gets the canonical path; the query passes unchanged.
    let (status, v) = raw_get(addr, "/%61dmin/%7e/a%3f?q=%61&r=..", Some(&admin)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["path"], "/admin/~/a%3F");
    assert_eq!(v["query"], "q=%61&r=..");
    let (status, v) = raw_get(addr, "/ADMIN/x", Some(&admin)).await;
    assert_eq!((status, &v["path"]), (200, &json!("/ADMIN/x")), "{v}");
    // The public route still serves what is under it.
    let (status, v) = raw_get(addr, "/status/%68ealth", None).await;
    assert_eq!((status, &v["path"]), (200, &json!("/status/health")), "{v}");
    // The audit record shows the path that was authorised and forwarded.
    let recorded: Vec<String> = s
        .audit_records("acme")
        .await
        .iter()
        .filter(|r| r.action == "gateway.request")
        .filter_map(|r| r.data.get("path")?.as_str().map(str::to_owned))
        .collect();
    assert!(
        recorded.iter().any(|p| p == "/admin/~/a%3F"),
        "{recorded:?}"
    );
    assert!(!recorded.iter().any(|p| p.contains("%61")), "{recorded:?}");
}
