//! Test helpers: a real portcullis server on `127.0.0.1:0` over a real SQLite file, a manual
//! clock, and fixtures that go through the HTTP API like a client would.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use portcullis_core::{
    ExposeSecret,
    clock::{Clock, ManualClock, SystemClock},
    request::CreateAdminKey,
};
use portcullis_server::tls::TlsServer;
use portcullis_server::{
    AppState, Config,
    audit::{self, AuditLog},
    serve,
};
use portcullis_sqlite::SqliteStore;
use portcullis_store::Store;
use reqwest::{Client, Method, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A running server. Dropping it shuts the server down.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    /// The gateway listener, when `config.gateway.listen` was set (use `127.0.0.1:0`).
    pub gateway_addr: Option<SocketAddr>,
    pub gateway: Option<Arc<portcullis_server::gateway::Gateway>>,
    pub root_secret: String,
    pub state: AppState,
    pub store: Arc<SqliteStore>,
    /// The server's clock, moved by hand; a server started with [`spawn_realtime_with`] runs on
    /// the system clock instead and ignores this one.
    pub clock: Arc<ManualClock>,
    pub config: Config,
    /// The server's audit log (its store reads the entries back).
    pub audit: AuditLog,
    /// The audit database file.
    pub audit_path: PathBuf,
    pub client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// Starts a server with the default configuration.
pub async fn spawn() -> TestServer {
    spawn_with(|_| {}).await
}

/// Starts a server after `adjust` has changed its configuration, on a manual clock.
pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    spawn_on(clock.clone(), clock, adjust).await
}

/// Starts a server after `adjust` has changed its configuration, on the system clock: for the
/// end-to-end tests of time-based controls over real time.
pub async fn spawn_realtime_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let manual = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    spawn_on(Arc::new(SystemClock), manual, adjust).await
}

async fn spawn_on(
    clock: Arc<dyn Clock>,
    manual: Arc<ManualClock>,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.listen = "127.0.0.1:0".parse().expect("addr");
    adjust(&mut config);
    let data = portcullis::datadir::open(&config)
        .await
        .expect("open data dir");
    let audit = portcullis::backends::open_audit(&config, clock.clone(), Default::default())
        .await
        .expect("open the audit log");
    let root = portcullis::datadir::ensure_root_admin(
        data.store.as_ref(),
        &data.pepper,
        clock.as_ref(),
        &audit,
    )
    .await
    .expect("bootstrap")
    .expect("a new store has no admin key");
    let store = data.store.clone();
    let dyn_store: Arc<dyn Store> = data.store;
    let events = portcullis::backends::open_events(&config)
        .await
        .expect("open the event backend");
    let state = AppState::with_audit(
        &config,
        dyn_store,
        data.pepper,
        clock.clone(),
        audit.clone(),
    )
    .with_events(events);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let (mut gateway, mut gateway_addr) = (None, None);
    let gateway_serve = match config.gateway.listen {
        None => None,
        Some(gaddr) => {
            let gw = portcullis_server::gateway::Gateway::new(state.clone(), &config.gateway)
                .expect("valid gateway configuration");
            let listener = tokio::net::TcpListener::bind(gaddr)
                .await
                .expect("bind gateway");
            gateway_addr = Some(listener.local_addr().expect("gateway addr"));
            gateway = Some(gw.clone());
            Some(serve::GatewayServe {
                listener,
                gateway: gw,
                config_file: None,
                tls: TlsServer::load_section(config.gateway.tls.as_ref())
                    .expect("gateway tls files"),
            })
        }
    };
    let api = serve::ApiServe {
        listener,
        tls: TlsServer::load_section(config.tls.as_ref()).expect("tls files"),
    };
    let task = tokio::spawn(serve::serve_all(
        api,
        state.clone(),
        gateway_serve,
        async move {
            let _ = stopped.await;
        },
    ));
    TestServer {
        addr,
        gateway_addr,
        gateway,
        root_secret: root.secret.expose_secret().to_owned(),
        state,
        store,
        clock: manual,
        audit_path: config.audit_database(),
        config,
        audit,
        client: Client::builder().no_proxy().build().expect("client"),
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL on the gateway listener.
    pub fn gateway_url(&self, path: &str) -> String {
        let addr = self.gateway_addr.expect("the gateway is configured");
        format!("http://{addr}{path}")
    }

    /// Sends a request with `key` as `Authorization: Bearer` and an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request")
    }

    /// Like [`TestServer::call`], returning the status and the JSON body.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let resp = self.call(method, path, key, body).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates a tenant through the API with the root key.
    pub async fn tenant(&self, id: &str) -> Value {
        let (s, v) = self
            .json(
                Method::POST,
                "/v1/tenants",
                &self.root_secret,
                Some(json!({"id": id, "name": format!("Tenant {id}")})),
            )
            .await;
        assert_eq!(s, 201, "create tenant: {v}");
        v
    }

    /// Creates a key through the API with the root key; returns (key id, secret).
    pub async fn key(&self, tenant: &str, body: Value) -> (String, String) {
        let (s, v) = self
            .json(
                Method::POST,
                &format!("/v1/tenants/{tenant}/keys"),
                &self.root_secret,
                Some(body),
            )
            .await;
        assert_eq!(s, 201, "create key: {v}");
        (
            v["key"]["id"].as_str().expect("id").to_owned(),
            v["secret"].as_str().expect("secret").to_owned(),
        )
    }

    /// Creates an admin key directly in the store (as the operator CLI does); returns its secret.
    pub async fn admin_key(&self, tenant: Option<&str>, scopes: &[&str]) -> String {
        self.admin_key_with_id(tenant, scopes).await.1
    }

    /// Like [`TestServer::admin_key`]; returns (admin key id, secret).
    pub async fn admin_key_with_id(
        &self,
        tenant: Option<&str>,
        scopes: &[&str],
    ) -> (String, String) {
        let input = CreateAdminKey {
            name: "test admin".into(),
            tenant_id: tenant.map(str::to_owned),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        };
        let policy = self.state.policy;
        let ctx = portcullis_server::ops::Ctx {
            actor: audit::OPERATOR,
            audit: &self.audit,
            store: self.store.as_ref(),
            pepper: &self.state.pepper,
            policy: &policy,
            now: self.clock.now(),
            cache: None,
            events: None,
        };
        let new = portcullis_server::ops::create_admin_key(ctx, input)
            .await
            .expect("create admin key");
        (new.key.id, new.secret.expose_secret().to_owned())
    }

    /// Waits until every audit record queued so far is written, then reads every entry of
    /// `chain` (a tenant id, or `_system`) back from the audit database, oldest first.
    pub async fn audit_records(&self, chain: &str) -> Vec<audit::Record> {
        self.audit
            .flush_within(std::time::Duration::from_secs(30))
            .await
            .expect("audit records written");
        let store = self.audit.store().expect("the audit log is enabled");
        let mut out = Vec::new();
        let mut from = 1;
        loop {
            let page = store
                .entries(chain, from, None, 1000)
                .await
                .expect("read audit entries");
            let Some(last) = page.last() else {
                return out;
            };
            from = last.seq + 1;
            out.extend(page.iter().map(|e| e.record().expect("a record")));
        }
    }

    /// Verifies `key` with the root admin key; returns the answer body.
    pub async fn verify(&self, body: Value) -> Value {
        let (s, v) = self
            .json(Method::POST, "/v1/verify", &self.root_secret, Some(body))
            .await;
        assert_eq!(s, 200, "verify: {v}");
        v
    }

    /// Stops the server and waits for it (pending usage is flushed).
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
