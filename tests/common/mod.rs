//! Test harness: a real Provisync HTTP server on a loopback port, on a chosen store, and
//! a small SCIM client around reqwest.

pub mod apigw;
pub mod budget;
pub mod counting;
pub mod crowd;
pub mod doctest;
pub mod graph;
pub mod kinds;
pub mod load;
pub mod okta;
pub mod peers;
pub mod proxy;
pub mod salesforce;
pub mod serve;
pub mod site;
pub mod template;

use std::net::SocketAddr;
use std::sync::Arc;

use provisync_core::connector::ConnectorFactory;
use provisync_core::crypto::SecretBox;
use provisync_core::hub::HubParts;
use provisync_core::queue::Queue;
use provisync_core::queue::store_queue::{StoreQueue, StoreQueueSettings};
use provisync_core::store::Store;
use provisync_core::store::embedded::EmbeddedStore;
use provisync_core::sync::deliver::Deliverer;
use provisync_http::auth::{Authenticator, Scope};
use provisync_http::{AppState, HttpConfig};
use provisync_scim::SchemaRegistry;
use serde_json::{Value, json};

pub const TOKEN: &str = "test-scim-token";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A running hub.
pub struct Hub {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// The delivery queue the admin API lists dead letters of.
    pub queue: Arc<dyn Queue>,
    /// The delivery engine wired to this hub (run it with [`Hub::run_delivery`]).
    pub deliverer: Arc<Deliverer>,
    /// The scheduled cycle of this hub (pull, reconcile, outbox), as `serve` runs it.
    pub schedule: provisync_core::sync::schedule::Schedule,
    /// The operator key (base64) the hub seals secrets with (tests store sources with it).
    pub secret_key: String,
    _task: tokio::task::JoinHandle<()>,
}

/// A running queue consumer; stopped on drop.
pub struct Delivery {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Delivery {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

/// Dead-letter threshold of the test queue.
pub const TEST_MAX_RECEIVES: u32 = 4;

/// The tests' peers (`scim2-server`, the vendor fakes, moto, the sites) listen on
/// loopback: the harness opts in to calling loopback addresses, as an operator does with
/// `PROVISYNC_ALLOW_PRIVATE_TARGETS=loopback` (the process policy; without it every
/// loopback target is refused, see `provisync_core::net`).
pub fn allow_loopback_peers() {
    use provisync_core::net::{PrivateTargets, UrlPolicy, set_process_policy};
    set_process_policy(UrlPolicy::new(PrivateTargets::Loopback));
}

/// Which store a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    /// redb, in memory.
    Embedded,
    /// DynamoDB on the moto emulator `make test` starts (`PROVISYNC_TEST_MOTO`), one fresh
    /// table per test.
    DynamoDb,
}

/// Tables of the integration tests: `provisync-it-{pid}-{uuid}`.
const TEST_TABLE_PREFIX: &str = "provisync-it-";

/// moto keeps every table in memory for as long as it runs (one emulator serves the
/// whole `make test`), so tables left by the test binaries that ran before this one
/// (`cargo test` runs the binaries one after another) are dropped once per process.
/// This keeps the emulator's memory to one binary's tables instead of the whole run's.
async fn drop_tables_of_earlier_test_binaries(clients: &provisync_aws::AwsClients) {
    let client = &clients.dynamodb;
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            let mine = format!("{TEST_TABLE_PREFIX}{}-", std::process::id());
            let mut start: Option<String> = None;
            loop {
                let Ok(page) = client
                    .list_tables()
                    .set_exclusive_start_table_name(start.clone())
                    .send()
                    .await
                else {
                    return;
                };
                for name in page.table_names() {
                    if name.starts_with(TEST_TABLE_PREFIX) && !name.starts_with(&mine) {
                        let _ = client.delete_table().table_name(name).send().await;
                    }
                }
                start = page.last_evaluated_table_name().map(str::to_string);
                if start.is_none() {
                    return;
                }
            }
        })
        .await;
}

/// The moto emulator's endpoint, or `None` when no emulator runs (a failure instead when
/// `PROVISYNC_REQUIRE_PEERS` is set, as under `make test`).
pub fn moto_endpoint() -> Option<String> {
    let endpoint = std::env::var("PROVISYNC_TEST_MOTO")
        .ok()
        .filter(|v| !v.is_empty());
    if endpoint.is_none() {
        assert!(
            std::env::var_os("PROVISYNC_REQUIRE_PEERS").is_none(),
            "PROVISYNC_TEST_MOTO is not set but PROVISYNC_REQUIRE_PEERS is: run through scripts/test-env.sh"
        );
        eprintln!("skipped: PROVISYNC_TEST_MOTO not set (run `make test`)");
    }
    endpoint
}

/// A fresh DynamoDB table on moto, or `None` when no emulator runs ([`moto_endpoint`]).
pub async fn moto_store() -> Option<Arc<dyn Store>> {
    let endpoint = moto_endpoint()?;
    let clients = provisync_aws::AwsClients::for_endpoint(&endpoint).await;
    drop_tables_of_earlier_test_binaries(&clients).await;
    let table = format!(
        "{TEST_TABLE_PREFIX}{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    provisync_aws::aws_init_with(
        &clients,
        &provisync_aws::AwsInitConfig::new(table.clone(), None),
    )
    .await
    .expect("aws-init on moto");
    Some(Arc::new(provisync_aws::dynamodb::DynamoStore::new(
        clients.dynamodb,
        table,
    )))
}

/// A fresh store of a backend, `None` when it is not available in this run.
pub async fn backend_store(backend: Backend) -> Option<Arc<dyn Store>> {
    match backend {
        Backend::Embedded => Some(Arc::new(EmbeddedStore::in_memory())),
        Backend::DynamoDb => moto_store().await,
    }
}

/// Polls `check` every 200 ms until it holds; panics naming `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// Waits until `count()` (the requests a fake or a proxy has seen) stays the same for
/// 1.2 s: deliveries are done and nothing else arrives.
pub async fn settle(count: impl Fn() -> usize) {
    let mut last = count();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let now = count();
        if now == last {
            return;
        }
        last = now;
    }
}

/// The named counts of a reconcile report's `counts`, in that order (`u64::MAX` for one
/// that is missing, so a wrong name fails the comparison).
pub fn counts_of<const N: usize>(counts: &Value, keys: [&str; N]) -> [u64; N] {
    keys.map(|k| counts[k].as_u64().unwrap_or(u64::MAX))
}

impl Hub {
    /// `POST /admin/sync` `{"target", "reconcile": true}`: asserts the run completed and
    /// returns its `counts`.
    pub async fn reconcile(&self, target: &str) -> Value {
        let r = self
            .admin(
                reqwest::Method::POST,
                "/sync",
                Some(&serde_json::json!({"target": target, "reconcile": true})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["reconcile"]["state"], "complete", "{}", r.text);
        r.body["reconcile"]["counts"].clone()
    }

    /// `None` when the backend is not available in this run (DynamoDB without moto).
    pub async fn start(backend: Backend) -> Option<Hub> {
        Some(Self::start_on(backend_store(backend).await?).await)
    }

    pub async fn start_on(store: Arc<dyn Store>) -> Hub {
        Self::start_with(store, |_| {}).await
    }

    /// A hub whose state `customize` may change before it serves (e.g. to plug an
    /// on-demand sync or a fake connector factory into the admin state).
    pub async fn start_with(store: Arc<dyn Store>, customize: impl FnOnce(&mut AppState)) -> Hub {
        Self::start_full(store, provisync_connectors::connectors_for, customize).await
    }

    /// A hub whose targets are reached through `connectors` (tests use short timeouts).
    pub async fn start_full(
        store: Arc<dyn Store>,
        connectors: ConnectorFactory,
        customize: impl FnOnce(&mut AppState),
    ) -> Hub {
        allow_loopback_peers();
        let queue: Arc<dyn Queue> = Arc::new(StoreQueue::new(
            store.clone(),
            "deliver",
            StoreQueueSettings {
                // Short, so a lost delivery comes back quickly in tests.
                visibility_timeout: std::time::Duration::from_secs(5),
                max_receive_count: TEST_MAX_RECEIVES,
            },
        ));
        Self::start_parts(store, queue, connectors, customize).await
    }

    /// A hub on a given store and delivery queue.
    pub async fn start_parts(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        connectors: ConnectorFactory,
        customize: impl FnOnce(&mut AppState),
    ) -> Hub {
        let (secrets, secret_key) = SecretBox::generate();
        let hub = provisync_core::hub::Hub::new(HubParts {
            store: store.clone(),
            queue: queue.clone(),
            schemas: SchemaRegistry::builtin(),
            secrets,
            connectors,
            http: provisync_connectors::http::http_port,
        });
        let auth = Authenticator::new(Some(store.clone()))
            .with_static_token(TOKEN, Scope::Scim)
            .with_static_token(ADMIN_TOKEN, Scope::Admin);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Where the hub listens is its public URL, as `provisync serve` does.
        let cfg = HttpConfig {
            max_body_bytes: 256 * 1024,
            public_url: Some(format!("http://{addr}")),
            ..HttpConfig::default()
        };
        let mut state = AppState::new(hub, auth, cfg);
        customize(&mut state);
        let deliverer = state.hub.deliverer.clone();
        let schedule = state.hub.schedule();
        let app = provisync_http::app(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Hub {
            addr,
            base: format!("http://{addr}/scim/v2"),
            client: reqwest::Client::new(),
            store,
            queue,
            deliverer,
            schedule,
            secret_key,
            _task: task,
        }
    }

    /// Starts consuming the delivery queue in this process, as `provisync serve` does.
    pub fn run_delivery(&self) -> Delivery {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(provisync_core::sync::consumer::run_consumer(
            self.queue.clone(),
            self.deliverer.clone(),
            TEST_MAX_RECEIVES,
            rx,
        ));
        Delivery { stop, task }
    }

    /// An admin API URL (`path` under `/admin`).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}/admin{}", self.addr, path)
    }

    /// An admin API request with the admin token.
    pub fn admin_req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .header("Content-Type", "application/json")
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Resp {
        let mut r = self.admin_req(method, path);
        if let Some(b) = body {
            r = r.body(b.to_string());
        }
        Resp::from(r.send().await.expect("request")).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/scim+json")
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Resp {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.body(b.to_string());
        }
        Resp::from(r.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Replaces one attribute of a resource (`path`: `/Users/{id}`, `/Groups/{id}`) by
    /// a SCIM PATCH; asserts it was applied.
    pub async fn replace(&self, path: &str, attr: &str, value: Value) -> Resp {
        let r = self
            .patch(
                path,
                &json!({"schemas": [PATCH_OP], "Operations": [
                    {"op": "replace", "path": attr, "value": value}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r
    }

    /// Creates a user and returns its id.
    pub async fn user(&self, user_name: &str) -> String {
        let r = self
            .post(
                "/Users",
                &json!({"schemas": [USER_SCHEMA], "userName": user_name}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.id()
    }

    /// The changes a target's deprovision guard holds (`GET /admin/targets/{id}/held`).
    pub async fn held(&self, target: &str) -> Vec<Value> {
        let r = self
            .admin(
                reqwest::Method::GET,
                &format!("/targets/{target}/held"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["held"].as_array().cloned().expect("held list")
    }

    pub async fn group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let r = self
            .post(
                "/Groups",
                &json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": members}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.id()
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub async fn from(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }
    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("id in body").to_string()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Asserts a SCIM error with this status (and scimType, if given).
    pub fn assert_error(&self, status: u16, scim_type: Option<&str>) {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(
            self.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{}",
            self.text
        );
        assert_eq!(self.body["status"], status.to_string(), "{}", self.text);
        if let Some(t) = scim_type {
            assert_eq!(self.body["scimType"], t, "{}", self.text);
        }
        assert_eq!(self.header("content-type"), Some("application/scim+json"));
    }
    pub fn total(&self) -> u64 {
        self.body["totalResults"].as_u64().expect("totalResults")
    }
    pub fn resources(&self) -> Vec<Value> {
        self.body["Resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Runs a test body on every backend available in this run.
#[macro_export]
macro_rules! on_every_backend {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                if let Some(hub) = $crate::Hub::start($crate::Backend::Embedded).await {
                    ($body)(hub).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dynamodb() {
                if let Some(hub) = $crate::Hub::start($crate::Backend::DynamoDb).await {
                    ($body)(hub).await;
                }
            }
        }
    };
}

/// Percent-encodes a query value.
pub fn q(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
