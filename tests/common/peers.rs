//! Downstream peers for the connector and delivery tests, on loopback only:
//!
//! - [`ScimPeer`]: the Python reference SCIM server `scim2-server` (pinned in
//!   `tests/requirements.txt`) from the venv `scripts/test-env.sh` prepares;
//! - [`FaultyTarget`]: an in-process, in-memory SCIM Users/Groups endpoint that can be
//!   scripted to fail (5xx, 429 + `Retry-After`, hang, dropped connection, redirect, any
//!   status with a SCIM error body) and records every request. Cheap enough per request to
//!   serve as the sink of a delivery benchmark (see [`FaultyTarget::set_recording`]).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::{GROUP_SCHEMA, USER_SCHEMA};

const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// `true` when peers must be there (`make test`): a missing peer is then a failure.
fn peers_required() -> bool {
    std::env::var_os("PROVISYNC_REQUIRE_PEERS").is_some()
}

/// A running `scim2-server` on a free loopback port, killed on drop.
pub struct ScimPeer {
    /// The SCIM root, e.g. `http://127.0.0.1:PORT/v2`.
    pub base: String,
    /// The bearer token it accepts (it refuses requests without it).
    pub token: String,
    pub client: reqwest::Client,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for ScimPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimPeer")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ScimPeer {
    /// The server's process id (benches read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `$PROVISYNC_TEST_VENV/bin/scim2-server --hostname 127.0.0.1 --port P
    /// --bearer-token T` and waits until it answers. `None` when no venv is configured
    /// (a panic instead when `PROVISYNC_REQUIRE_PEERS` is set).
    pub async fn start() -> Option<ScimPeer> {
        Self::start_with_backlog(None).await
    }

    /// [`ScimPeer::start`], with the server's listen backlog set to `backlog` (through
    /// `scripts/scim2_peer.py`; `None`: as shipped, 5). The benchmarks raise it so that
    /// many concurrent clients measure the server, not dropped connection attempts.
    pub async fn start_with_backlog(backlog: Option<u32>) -> Option<ScimPeer> {
        super::allow_loopback_peers();
        let Some(venv) = std::env::var_os("PROVISYNC_TEST_VENV").filter(|v| !v.is_empty()) else {
            assert!(
                !peers_required(),
                "PROVISYNC_TEST_VENV is not set but PROVISYNC_REQUIRE_PEERS is: run through scripts/test-env.sh"
            );
            eprintln!("skipped: PROVISYNC_TEST_VENV not set (run `make test`)");
            return None;
        };
        let venv = PathBuf::from(venv);
        let exe = venv.join("bin").join("scim2-server");
        assert!(
            exe.exists(),
            "{} missing: is scim2-server in tests/requirements.txt installed?",
            exe.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("scim2-server.log");
        let token = format!("peer-{}", uuid::Uuid::new_v4().simple());
        let client = reqwest::Client::new();
        // A free port can be taken between probing and binding: try a few.
        for _attempt in 0..3 {
            let port = free_port();
            let log_file = std::fs::File::create(&log).expect("log file");
            let mut command = match backlog {
                None => Command::new(&exe),
                Some(b) => {
                    let mut c = Command::new(venv.join("bin").join("python"));
                    c.arg(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/../scripts/scim2_peer.py"
                    ))
                    .arg(b.to_string());
                    c
                }
            };
            let mut child = command
                .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
                .args(["--bearer-token", &token])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log file"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
            let base = format!("http://127.0.0.1:{port}/v2");
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut up = false;
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                let probe = client
                    .get(format!("{base}/ServiceProviderConfig"))
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                if probe.is_ok_and(|r| r.status().is_success()) {
                    up = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if up {
                return Some(ScimPeer {
                    base,
                    token,
                    client,
                    child,
                    log,
                    _dir: dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "scim2-server did not come up; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// A request to the peer, authenticated, with the SCIM media type.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/scim+json")
    }

    /// GET a path as JSON: `(status, body)`.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::GET, path)
            .send()
            .await
            .expect("peer");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST JSON: `(status, body)`.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::POST, path)
            .body(body.to_string())
            .send()
            .await
            .expect("peer");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// What the server logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ScimPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

// ---------------------------------------------------------------------------------------
// FaultyTarget
// ---------------------------------------------------------------------------------------

/// What a scripted request gets instead of a normal answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// This status with this JSON body (`Value::Null`: empty body).
    Status(u16, Value),
    /// 429 with `Retry-After: <value>` (seconds or an HTTP-date).
    RateLimited(String),
    /// No answer for this long (then 503): longer than the client's timeout.
    Hang(Duration),
    /// The connection is closed without an answer.
    Drop,
    /// A redirect (`status` 301/302/307/308) to `location`.
    Redirect(u16, String),
}

impl Fault {
    /// An RFC 7644 §3.12 error body with this status.
    pub fn scim_error(status: u16, scim_type: Option<&str>, detail: &str) -> Fault {
        let mut body =
            json!({"schemas": [ERROR_SCHEMA], "status": status.to_string(), "detail": detail});
        if let Some(t) = scim_type {
            body["scimType"] = json!(t);
        }
        Fault::Status(status, body)
    }
}

/// Which requests a fault applies to: a method (any when `None`) and a path prefix
/// relative to the SCIM root (`"/Users"`, `"/Groups/"`; any when `None`).
#[derive(Clone, Debug, Default)]
pub struct Route {
    pub method: Option<Method>,
    pub path_prefix: Option<String>,
}

impl Route {
    pub fn any() -> Route {
        Route::default()
    }
    pub fn new(method: &str, path_prefix: &str) -> Route {
        Route {
            method: Some(Method::from_bytes(method.as_bytes()).expect("method")),
            path_prefix: Some(path_prefix.to_string()),
        }
    }
    pub fn path(path_prefix: &str) -> Route {
        Route {
            method: None,
            path_prefix: Some(path_prefix.to_string()),
        }
    }
    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    }
}

/// One request the target received (faulted or not), in arrival order.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub method: String,
    /// Relative to the SCIM root: `/Users`, `/Groups/3`.
    pub path: String,
    pub query: Option<String>,
    /// The JSON body, `Null` when none (or not JSON).
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
}

struct Script {
    route: Route,
    fault: Fault,
    remaining: usize,
}

#[derive(Default)]
struct Inner {
    users: HashMap<String, Value>,
    /// Lower-cased userName -> id, so a create checks uniqueness in O(1) (benchmarks
    /// push tens of thousands of users through this target).
    user_names: HashMap<String, String>,
    groups: HashMap<String, Value>,
    scripts: Vec<Script>,
    log: Vec<Recorded>,
    rate_limit: Option<RateLimit>,
    /// 429s of the rate limit per userName (creates) or path (other requests).
    limited: HashMap<String, u32>,
}

/// A token bucket: `per_second` requests a second, bursts of at most `burst`.
struct RateLimit {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
    /// Every answer advertises the quota (IETF `RateLimit-Policy` and `RateLimit`).
    advertised: bool,
}

impl RateLimit {
    /// The IETF draft's (-08 on) headers for the bucket now: the policy (`q` calls per
    /// `w=1` second), the tokens left and the whole seconds until it is full again.
    fn headers(&self) -> [(&'static str, String); 2] {
        let refill = self.at.elapsed().as_secs_f64() * self.per_second;
        let tokens = (self.tokens + refill).min(self.burst);
        let full_in = ((self.burst - tokens) / self.per_second).ceil();
        [
            (
                "ratelimit-policy",
                format!("\"default\";q={};w=1", self.per_second.round()),
            ),
            (
                "ratelimit",
                format!("\"default\";r={};t={full_in}", tokens.floor()),
            ),
        ]
    }
}

struct Shared {
    inner: Mutex<Inner>,
    recording: AtomicBool,
    /// Added to every answer, microseconds (0: none).
    latency_us: AtomicU64,
    next_id: AtomicU64,
    token: String,
    prefix: String,
    origin: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An in-memory SCIM endpoint with scripted faults, on a loopback port; stopped on drop.
pub struct FaultyTarget {
    pub addr: SocketAddr,
    /// The SCIM root: `http://127.0.0.1:PORT/scim/v2`.
    pub base: String,
    /// The bearer token it requires.
    pub token: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultyTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultyTarget {
    pub async fn start() -> FaultyTarget {
        Self::start_on("127.0.0.1").await
    }

    /// Listens on `ip` (any loopback address, e.g. `127.0.0.2` for a "different host").
    pub async fn start_on(ip: &str) -> FaultyTarget {
        super::allow_loopback_peers();
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let token = format!("faulty-{}", uuid::Uuid::new_v4().simple());
        let origin = format!("http://{addr}");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            recording: AtomicBool::new(true),
            latency_us: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            token: token.clone(),
            prefix: "/scim/v2".into(),
            origin: origin.clone(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                KillListener(listener),
                app.into_make_service_with_connect_info::<KillHandle>(),
            )
            .await;
        });
        FaultyTarget {
            addr,
            base: format!("{origin}/scim/v2"),
            token,
            shared,
            task,
        }
    }

    /// The next `times` requests matching `route` get `fault` (scripts are tried in the
    /// order they were added; each counts down on its own).
    pub fn fail(&self, route: Route, fault: Fault, times: usize) {
        self.shared.lock().scripts.push(Script {
            route,
            fault,
            remaining: times,
        });
    }

    /// Answers 429 (`Retry-After: 1`) to requests beyond `per_second` a second (a token
    /// bucket holding a fifth of a second's requests), as a vendor's rate limit does.
    pub fn set_rate_limit(&self, per_second: f64) {
        self.rate_limit(per_second, false);
    }

    /// [`Self::set_rate_limit`], and every answer advertises the quota as the IETF draft
    /// has it (-08 on): `RateLimit-Policy: "default";q=50;w=1` and `RateLimit:
    /// "default";r=<tokens left>;t=<seconds until full>`.
    pub fn set_advertised_rate_limit(&self, per_second: f64) {
        self.rate_limit(per_second, true);
    }

    fn rate_limit(&self, per_second: f64, advertised: bool) {
        let burst = (per_second / 5.0).max(1.0);
        self.shared.lock().rate_limit = Some(RateLimit {
            per_second,
            burst,
            tokens: burst,
            at: Instant::now(),
            advertised,
        });
    }

    /// 429s of the rate limit, per userName (creates) or path.
    pub fn rate_limited(&self) -> HashMap<String, u32> {
        self.shared.lock().limited.clone()
    }

    /// Drops every remaining script.
    pub fn heal(&self) {
        self.shared.lock().scripts.clear();
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().log.clone()
    }

    /// How many requests had this method and a path starting with `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .count()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }

    /// Recording on (default) or off (benchmarks).
    pub fn set_recording(&self, on: bool) {
        self.shared.recording.store(on, Ordering::Relaxed);
    }

    /// Every answer (faulted or not) is delayed by `latency`, as a slow target would be;
    /// `Duration::ZERO` (the default) turns it off.
    pub fn set_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.shared.latency_us.store(us, Ordering::Relaxed);
    }

    /// How many users the target holds.
    pub fn user_count(&self) -> usize {
        self.shared.lock().users.len()
    }

    pub fn users(&self) -> Vec<Value> {
        self.shared.lock().users.values().cloned().collect()
    }

    pub fn groups(&self) -> Vec<Value> {
        self.shared.lock().groups.values().cloned().collect()
    }

    pub fn user(&self, id: &str) -> Option<Value> {
        self.shared.lock().users.get(id).cloned()
    }

    pub fn group(&self, id: &str) -> Option<Value> {
        self.shared.lock().groups.get(id).cloned()
    }

    /// The user with this userName (case-insensitive).
    pub fn user_named(&self, user_name: &str) -> Option<Value> {
        self.shared
            .lock()
            .users
            .values()
            .find(|u| {
                u["userName"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(user_name))
            })
            .cloned()
    }
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/scim+json")],
        body.to_string(),
    )
        .into_response()
}

fn scim_error(status: u16, scim_type: Option<&str>, detail: &str) -> Response {
    let Fault::Status(s, body) = Fault::scim_error(status, scim_type, detail) else {
        unreachable!()
    };
    scim_json(
        StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST),
        &body,
    )
}

/// [`answer`], with the rate limit's quota headers when it advertises them.
async fn handle(
    state: State<Arc<Shared>>,
    conn: ConnectInfo<KillHandle>,
    method: Method,
    uri: Uri,
    query: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let s = state.0.clone();
    let mut response = answer(state, conn, method, uri, query, headers, body).await;
    let quota = s
        .lock()
        .rate_limit
        .as_ref()
        .filter(|rl| rl.advertised)
        .map(RateLimit::headers);
    for (name, value) in quota.into_iter().flatten() {
        if let Ok(v) = value.parse() {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

async fn answer(
    State(s): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<KillHandle>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix(s.prefix.as_str())
        .unwrap_or(uri.path())
        .to_string();
    let json_body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let latency = s.latency_us.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_micros(latency)).await;
    }
    let fault = {
        let mut inner = s.lock();
        if s.recording.load(Ordering::Relaxed) {
            inner.log.push(Recorded {
                method: method.to_string(),
                path: path.clone(),
                query: uri.query().map(str::to_string),
                body: json_body.clone(),
                at: Instant::now(),
            });
        }
        let over_limit = inner.rate_limit.as_mut().is_some_and(|rl| {
            let now = Instant::now();
            let refill = now.duration_since(rl.at).as_secs_f64() * rl.per_second;
            rl.tokens = (rl.tokens + refill).min(rl.burst);
            rl.at = now;
            if rl.tokens >= 1.0 {
                rl.tokens -= 1.0;
                false
            } else {
                true
            }
        });
        if over_limit {
            let who = json_body["userName"]
                .as_str()
                .map_or_else(|| path.clone(), str::to_string);
            *inner.limited.entry(who).or_default() += 1;
            Some(Fault::RateLimited("1".into()))
        } else {
            inner
                .scripts
                .iter_mut()
                .find(|sc| sc.remaining > 0 && sc.route.matches(&method, &path))
                .map(|sc| {
                    sc.remaining -= 1;
                    sc.fault.clone()
                })
        }
    };
    if let Some(f) = fault {
        return match f {
            Fault::Status(code, body) => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
                if body.is_null() {
                    status.into_response()
                } else {
                    scim_json(status, &body)
                }
            }
            Fault::RateLimited(after) => {
                let mut r = scim_error(429, None, "too many requests");
                if let Ok(v) = after.parse() {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            Fault::Hang(d) => {
                tokio::time::sleep(d).await;
                scim_error(503, None, "hung")
            }
            Fault::Drop => {
                conn.0.store(true, Ordering::SeqCst);
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
            Fault::Redirect(code, location) => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
                (status, [(header::LOCATION, location)]).into_response()
            }
        };
    }
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == s.token);
    if !authorized {
        return scim_error(401, None, "authorization failure");
    }
    serve_scim(&s, &method, &path, &query, json_body)
}

fn serve_scim(
    s: &Shared,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    body: Value,
) -> Response {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["ServiceProviderConfig"]) => scim_json(
            StatusCode::OK,
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
                "patch": {"supported": true}, "bulk": {"supported": false},
                "filter": {"supported": true, "maxResults": 1000},
                "changePassword": {"supported": true}, "sort": {"supported": false},
                "etag": {"supported": false}, "authenticationSchemes": []
            }),
        ),
        (m, [ep @ ("Users" | "Groups"), rest @ ..]) => {
            let users = *ep == "Users";
            let key = if users { "userName" } else { "displayName" };
            let mut guard = s.lock();
            let inner = &mut *guard;
            let names = &mut inner.user_names;
            let map = if users {
                &mut inner.users
            } else {
                &mut inner.groups
            };
            match (m, rest) {
                ("GET", []) => {
                    let wanted = query.get("filter").and_then(|f| parse_eq(f));
                    let found: Vec<Value> = match &wanted {
                        // The index answers the lookup the connectors make before a create.
                        Some((attr, val)) if users && attr == "userName" => names
                            .get(&val.to_lowercase())
                            .and_then(|id| map.get(id))
                            .into_iter()
                            .cloned()
                            .collect(),
                        _ => map
                            .values()
                            .filter(|r| match &wanted {
                                Some((attr, val)) => r[attr.as_str()]
                                    .as_str()
                                    .is_some_and(|v| v.eq_ignore_ascii_case(val)),
                                None => true,
                            })
                            .cloned()
                            .collect(),
                    };
                    scim_json(
                        StatusCode::OK,
                        &json!({"schemas": [LIST_SCHEMA], "totalResults": found.len(),
                                "startIndex": 1, "itemsPerPage": found.len(), "Resources": found}),
                    )
                }
                ("POST", []) => {
                    let Some(name) = body[key].as_str().map(str::to_string) else {
                        return scim_error(400, Some("invalidValue"), &format!("{key} required"));
                    };
                    if users && names.contains_key(&name.to_lowercase()) {
                        return scim_error(409, Some("uniqueness"), "userName taken");
                    }
                    let id = s.next_id.fetch_add(1, Ordering::Relaxed).to_string();
                    if users {
                        names.insert(name.to_lowercase(), id.clone());
                    }
                    let mut r = body;
                    if let Some(o) = r.as_object_mut() {
                        o.remove("password");
                        o.insert("id".into(), json!(id));
                        o.insert(
                            "meta".into(),
                            json!({"resourceType": if users {"User"} else {"Group"},
                                   "location": format!("{}{}/{ep}/{id}", s.origin, s.prefix)}),
                        );
                    }
                    map.insert(id, r.clone());
                    scim_json(StatusCode::CREATED, &r)
                }
                ("GET", [id]) => match map.get(*id) {
                    Some(r) => scim_json(StatusCode::OK, r),
                    None => scim_error(404, None, "not found"),
                },
                ("PUT", [id]) => {
                    let Some(old) = map.get(*id) else {
                        return scim_error(404, None, "not found");
                    };
                    let mut r = body;
                    if let Some(o) = r.as_object_mut() {
                        o.remove("password");
                        o.insert("id".into(), json!(id));
                        o.insert("meta".into(), old["meta"].clone());
                    }
                    if users {
                        reindex(names, id, Some(old), Some(&r));
                    }
                    map.insert(id.to_string(), r.clone());
                    scim_json(StatusCode::OK, &r)
                }
                ("PATCH", [id]) => {
                    let Some(r) = map.get_mut(*id) else {
                        return scim_error(404, None, "not found");
                    };
                    let Some(ops) = body["Operations"].as_array() else {
                        return scim_error(400, Some("invalidSyntax"), "no Operations");
                    };
                    let before = r.clone();
                    for op in ops {
                        apply_op(r, op);
                    }
                    if users {
                        reindex(names, id, Some(&before), Some(r));
                    }
                    scim_json(StatusCode::OK, r)
                }
                ("DELETE", [id]) => match map.remove(*id) {
                    Some(old) => {
                        if users {
                            reindex(names, id, Some(&old), None);
                        }
                        StatusCode::NO_CONTENT.into_response()
                    }
                    None => scim_error(404, None, "not found"),
                },
                _ => scim_error(405, None, "method not allowed"),
            }
        }
        _ => scim_error(404, None, "no such endpoint"),
    }
}

/// Moves user `id`'s entry in the userName index from `old`'s name to `new`'s.
fn reindex(
    names: &mut HashMap<String, String>,
    id: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) {
    let name = |u: Option<&Value>| {
        u.and_then(|u| u["userName"].as_str())
            .map(str::to_lowercase)
    };
    if let Some(n) = name(old)
        && names.get(&n).is_some_and(|owner| owner == id)
    {
        names.remove(&n);
    }
    if let Some(n) = name(new) {
        names.insert(n, id.to_string());
    }
}

/// `attr eq "value"` (the only filter the connectors send).
fn parse_eq(filter: &str) -> Option<(String, String)> {
    let lower = filter.to_ascii_lowercase();
    let at = lower.find(" eq ")?;
    let attr = filter[..at].trim().to_string();
    let val: String = serde_json::from_str(filter[at + 4..].trim()).ok()?;
    Some((attr, val))
}

/// A small RFC 7644 §3.5.2 PATCH: no-path merges, `a`, `a.b`, `urn:...:a` paths, and
/// `members` add / `members[value eq "x"]` remove.
fn apply_op(r: &mut Value, op: &Value) {
    let kind = op["op"].as_str().unwrap_or("").to_ascii_lowercase();
    let value = op.get("value").cloned().unwrap_or(Value::Null);
    let Some(obj) = r.as_object_mut() else { return };
    let Some(path) = op["path"].as_str() else {
        if let Value::Object(v) = value {
            for (k, v) in v {
                obj.insert(k, v);
            }
        }
        return;
    };
    if let Some(filter) = path
        .strip_prefix("members[")
        .and_then(|p| p.strip_suffix(']'))
    {
        if let (Some((_, val)), Some(Value::Array(m))) = (parse_eq(filter), obj.get_mut("members"))
        {
            m.retain(|x| x["value"].as_str() != Some(val.as_str()));
        }
        return;
    }
    // Where the attribute lives: an extension object, a complex attribute, or the root.
    let (container, leaf): (&mut Map<String, Value>, String) =
        if let Some(idx) = path.starts_with("urn:").then(|| path.rfind(':')).flatten() {
            let ext = obj
                .entry(path[..idx].to_string())
                .or_insert_with(|| json!({}));
            match ext.as_object_mut() {
                Some(e) => (e, path[idx + 1..].to_string()),
                None => return,
            }
        } else if let Some((a, b)) = path.split_once('.') {
            let parent = obj.entry(a.to_string()).or_insert_with(|| json!({}));
            match parent.as_object_mut() {
                Some(p) => (p, b.to_string()),
                None => return,
            }
        } else {
            (obj, path.to_string())
        };
    match kind.as_str() {
        "remove" => {
            container.remove(&leaf);
        }
        "add" if matches!(container.get(&leaf), Some(Value::Array(_))) => {
            let new: Vec<Value> = match value {
                Value::Array(a) => a,
                v => vec![v],
            };
            if let Some(Value::Array(cur)) = container.get_mut(&leaf) {
                for v in new {
                    if !cur.contains(&v) {
                        cur.push(v);
                    }
                }
            }
        }
        _ => {
            container.insert(leaf, value);
        }
    }
}

// A listener whose connections a handler can cut: the handler flags its connection and
// the next write fails, so the client sees the connection close without any answer.

struct KillListener(TcpListener);

/// Per-connection kill switch, handed to handlers as connect info.
#[derive(Clone, Debug, Default)]
struct KillHandle(Arc<AtomicBool>);

struct KillIo {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

impl Listener for KillListener {
    type Io = KillIo;
    type Addr = KillHandle;

    async fn accept(&mut self) -> (KillIo, KillHandle) {
        loop {
            match self.0.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let handle = KillHandle::default();
                    return (
                        KillIo {
                            inner: stream,
                            kill: handle.0.clone(),
                        },
                        handle,
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<KillHandle> {
        Ok(KillHandle::default())
    }
}

impl Connected<IncomingStream<'_, KillListener>> for KillHandle {
    fn connect_info(stream: IncomingStream<'_, KillListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl AsyncRead for KillIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Keeps the schema constants in use for callers building bodies.
pub fn user_body(user_name: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": user_name})
}

pub fn group_body(name: &str) -> Value {
    json!({"schemas": [GROUP_SCHEMA], "displayName": name})
}

/// A loopback port that accepts connections and never answers (each connection is held
/// open for the life of the test's runtime): a target or source that hangs. Returns its
/// base URL, `http://127.0.0.1:{port}`.
pub async fn hanging_peer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("its address").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    format!("http://127.0.0.1:{port}")
}
