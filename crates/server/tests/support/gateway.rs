//! Gateway configuration pieces shared by the gateway tests.
use portcullis_server::gateway::config::{
    GatewayConfig, RouteConfig, RouteEnvironment, UpstreamConfig,
};
use portcullis_testkit::TestServer;

/// A route to `upstream` with every option at its default: no scopes, any environment, no limit.
pub fn route(name: &str, prefix: &str, upstream: &str) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        host: None,
        path_prefix: prefix.into(),
        methods: Vec::new(),
        upstream: upstream.into(),
        scopes: Vec::new(),
        environment: RouteEnvironment::Any,
        rate_limit: None,
        public: false,
        upload: false,
        max_body_bytes: None,
        preserve_host: false,
        case_insensitive: false,
        allow_path_parameters: false,
    }
}

/// An upstream at `url` (1 s to connect, `timeout_ms` for the response headers).
pub fn upstream(url: String, timeout_ms: u64) -> UpstreamConfig {
    UpstreamConfig {
        url,
        connect_timeout_ms: 1_000,
        request_timeout_ms: timeout_ms,
        pool_max_idle: 8,
        danger_allow_plaintext_upstream: false,
    }
}

/// A gateway listening on 127.0.0.1:0 with one upstream `main` at `url`, and no routes yet.
pub fn config(url: String, timeout_ms: u64) -> GatewayConfig {
    let mut g = GatewayConfig {
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..GatewayConfig::default()
    };
    g.upstreams.insert("main".into(), upstream(url, timeout_ms));
    g
}

/// The server's `/metrics` text.
pub async fn metrics(s: &TestServer) -> String {
    s.client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}
