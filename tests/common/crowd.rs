//! A fake Atlassian Crowd (application REST API `/rest/usermanagement/1/`, in memory),
//! written from Atlassian's *Crowd REST Resources* and *Crowd REST API Reference*: the
//! resources the connector uses, with the status codes and `{"reason","message"}` error
//! bodies documented there (see `tests/fixtures/README.md`).
//!
//! It answers only what Crowd answers and refuses what Crowd refuses: wrong application
//! credentials (401), writes by an application without the permission (403
//! `APPLICATION_PERMISSION_DENIED`), users without a name or a password (400
//! `INVALID_USER`), existing names (400 `INVALID_USER` / `INVALID_GROUP`), unknown users
//! and groups (404 `USER_NOT_FOUND`, `GROUP_NOT_FOUND`; 400 `GROUP_NOT_FOUND` when adding
//! to a group that does not exist), duplicate memberships (409
//! `MEMBERSHIP_ALREADY_EXISTS`), a body whose name differs from the URL's (400).
//! Names are case-insensitive, as in Crowd. Scripted faults answer before all that.
//!
//! Listing as Crowd does it: `GET /search?entity-type=user|group` (`expand=user|group` for
//! whole entities, else `link` + `name`), `GET /group/user/direct?groupname=`, both paged
//! with `start-index` and `max-results` (default 1000), in name order, with no total and
//! no "next" marker: a page shorter than asked is the last.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const CONTEXT: &str = "/crowd";
const API: &str = "/crowd/rest/usermanagement/1";

/// The documented user entity (`GET /user`), used as the shape of every answer.
pub const USER_FIXTURE: &str = include_str!("../fixtures/crowd/user.json");

/// A scripted answer: status, extra headers, JSON body (`Null`: none).
#[derive(Clone, Debug)]
pub struct CrowdFault {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl CrowdFault {
    pub fn error(status: u16, reason: &str, message: &str) -> CrowdFault {
        CrowdFault {
            status,
            headers: Vec::new(),
            body: json!({"reason": reason, "message": message}),
        }
    }
}

#[derive(Default)]
pub struct CrowdState {
    /// By lower-case name: the user entity (without password).
    pub users: BTreeMap<String, Value>,
    pub passwords: HashMap<String, String>,
    pub attributes: HashMap<String, BTreeMap<String, Vec<String>>>,
    /// By lower-case name.
    pub groups: BTreeMap<String, Value>,
    /// (user, group), lower-case.
    pub memberships: BTreeSet<(String, String)>,
    /// `METHOD path?query` of every request.
    pub log: Vec<String>,
    faults: Vec<CrowdFault>,
    pub read_only: bool,
}

struct Shared {
    state: Mutex<CrowdState>,
    auth: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, CrowdState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct FakeCrowd {
    pub addr: SocketAddr,
    /// Crowd's root with its context path: `http://127.0.0.1:PORT/crowd`.
    pub base: String,
    pub application: String,
    pub password: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCrowd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeCrowd {
    pub async fn start() -> FakeCrowd {
        super::allow_loopback_peers();
        use base64::Engine as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let application = "provisync".to_string();
        let password = format!("crowd-{}", uuid::Uuid::new_v4().simple());
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{application}:{password}"))
        );
        let shared = Arc::new(Shared {
            state: Mutex::new(CrowdState::default()),
            auth,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeCrowd {
            addr,
            base: format!("http://{addr}{CONTEXT}"),
            application,
            password,
            shared,
            task,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, CrowdState> {
        self.shared.lock()
    }

    /// The next request gets `fault` (queued in order).
    pub fn fail(&self, fault: CrowdFault) {
        self.shared.lock().faults.push(fault);
    }

    pub fn user(&self, name: &str) -> Option<Value> {
        self.state().users.get(&name.to_lowercase()).cloned()
    }

    /// The writes Crowd received (every request but `GET`), as `METHOD path?query`.
    pub fn writes(&self) -> Vec<String> {
        self.state()
            .log
            .iter()
            .filter(|l| !l.starts_with("GET "))
            .cloned()
            .collect()
    }

    /// Puts a user straight into Crowd (an account the hub did not create).
    pub fn insert_user(&self, name: &str, first: &str, last: &str, email: &str) {
        let u = json!({"name": name, "first-name": first, "last-name": last,
                       "display-name": format!("{first} {last}"), "email": email, "active": true});
        let mut st = self.state();
        st.passwords.insert(name.to_lowercase(), "Str4nger!".into());
        st.users.insert(name.to_lowercase(), u);
    }

    pub fn groups_of(&self, name: &str) -> Vec<String> {
        let n = name.to_lowercase();
        self.state()
            .memberships
            .iter()
            .filter(|(u, _)| *u == n)
            .map(|(_, g)| g.clone())
            .collect()
    }
}

fn json_resp(status: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn err(status: u16, reason: &str, message: String) -> Response {
    json_resp(status, &json!({"reason": reason, "message": message}))
}

fn empty(status: u16) -> Response {
    StatusCode::from_u16(status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

fn user_entity(origin: &str, u: &Value) -> Value {
    let mut out: Value = serde_json::from_str(USER_FIXTURE).expect("user fixture");
    let name = u["name"].as_str().unwrap_or_default();
    let q = url_encode(name);
    for k in [
        "name",
        "first-name",
        "last-name",
        "display-name",
        "email",
        "active",
    ] {
        out[k] = u[k].clone();
    }
    out["link"]["href"] = json!(format!("{origin}{API}/user?username={q}"));
    out["password"]["link"]["href"] = json!(format!("{origin}{API}/user/password?username={q}"));
    out["attributes"]["link"]["href"] = json!(format!("{origin}{API}/user/attribute?username={q}"));
    out
}

fn group_entity(origin: &str, g: &Value) -> Value {
    let mut out = g.clone();
    let q = url_encode(g["name"].as_str().unwrap_or_default());
    out["link"] = json!({"href": format!("{origin}{API}/group?groupname={q}"), "rel": "self"});
    out["attributes"] = json!({"link": {"href": format!("{origin}{API}/group/attribute?groupname={q}"), "rel": "self"}});
    out
}

/// A name-only entry of a list (`link` + `name`), as Crowd answers without `expand`.
fn minimal(origin: &str, resource: &str, param: &str, name: &str) -> Value {
    json!({"link": {"href": format!("{origin}{API}/{resource}?{param}={}", url_encode(name)), "rel": "self"},
           "name": name})
}

/// `start-index` and `max-results` (Crowd's defaults 0 and 1000); `None`: not numbers.
fn paging(q: &HashMap<String, String>) -> Option<(usize, usize)> {
    let start = match q.get("start-index") {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    let max = match q.get("max-results") {
        Some(s) => s.parse().ok()?,
        None => 1000,
    };
    Some((start, max))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn non_empty(v: &Value, k: &str) -> Option<String> {
    v.get(k)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let origin = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_default();
    let mut st = s.lock();
    st.log.push(format!(
        "{method} {}{}",
        path.strip_prefix(API).unwrap_or(&path),
        uri.query().map(|q| format!("?{q}")).unwrap_or_default()
    ));
    if !st.faults.is_empty() {
        let f = st.faults.remove(0);
        let mut r = if f.body.is_null() {
            empty(f.status)
        } else {
            json_resp(f.status, &f.body)
        };
        for (k, v) in f.headers {
            if let (Ok(k), Ok(v)) = (
                header::HeaderName::from_bytes(k.as_bytes()),
                header::HeaderValue::from_str(&v),
            ) {
                r.headers_mut().insert(k, v);
            }
        }
        return r;
    }
    // Crowd authenticates the application on every usermanagement resource.
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&s.auth)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "BASIC realm=\"Crowd REST Service\"",
            )],
            "Application failed to authenticate",
        )
            .into_response();
    }
    let Some(resource) = path.strip_prefix(API) else {
        return empty(404);
    };
    let json_body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return empty(400),
        }
    };
    let write = method != Method::GET;
    if write && st.read_only {
        return err(
            403,
            "APPLICATION_PERMISSION_DENIED",
            "Application 'provisync' does not have permission to modify the directory".into(),
        );
    }
    let username = q.get("username").map(|u| u.to_lowercase());
    let groupname = q.get("groupname").map(|g| g.to_lowercase());
    let st = &mut *st;
    let no_user = |name: &str| {
        err(
            404,
            "USER_NOT_FOUND",
            format!("User <{name}> does not exist"),
        )
    };
    let no_group = |status: u16, name: &str| {
        err(
            status,
            "GROUP_NOT_FOUND",
            format!("Group <{name}> does not exist"),
        )
    };
    match (method.as_str(), resource) {
        ("GET", "/config/cookie") => json_resp(
            200,
            &json!({"domain": ".example.test", "secure": false, "name": "crowd.token_key"}),
        ),
        ("GET", "/search") => {
            let Some((start, max)) = paging(&q) else {
                return empty(400);
            };
            let expand = q.get("expand").map(String::as_str).unwrap_or_default();
            let expanded = |what: &str| expand.split(',').any(|e| e.trim() == what);
            match q.get("entity-type").map(String::as_str) {
                Some("user") => {
                    let users: Vec<Value> = st
                        .users
                        .values()
                        .skip(start)
                        .take(max)
                        .map(|u| {
                            if expanded("user") {
                                user_entity(&origin, u)
                            } else {
                                minimal(
                                    &origin,
                                    "user",
                                    "username",
                                    u["name"].as_str().unwrap_or_default(),
                                )
                            }
                        })
                        .collect();
                    json_resp(200, &json!({"expand": "user", "users": users}))
                }
                Some("group") => {
                    let groups: Vec<Value> = st
                        .groups
                        .values()
                        .skip(start)
                        .take(max)
                        .map(|g| {
                            if expanded("group") {
                                group_entity(&origin, g)
                            } else {
                                minimal(
                                    &origin,
                                    "group",
                                    "groupname",
                                    g["name"].as_str().unwrap_or_default(),
                                )
                            }
                        })
                        .collect();
                    json_resp(200, &json!({"expand": "group", "groups": groups}))
                }
                _ => err(
                    400,
                    "ILLEGAL_ARGUMENT",
                    "entity-type must be user or group".into(),
                ),
            }
        }
        ("GET", "/group/user/direct") => {
            let Some(g) = groupname else {
                return empty(400);
            };
            let Some((start, max)) = paging(&q) else {
                return empty(400);
            };
            if !st.groups.contains_key(&g) {
                return no_group(404, &g);
            }
            let users: Vec<Value> = st
                .memberships
                .iter()
                .filter(|(_, x)| *x == g)
                .filter_map(|(u, _)| st.users.get(u))
                .skip(start)
                .take(max)
                .map(|u| {
                    minimal(
                        &origin,
                        "user",
                        "username",
                        u["name"].as_str().unwrap_or_default(),
                    )
                })
                .collect();
            json_resp(200, &json!({"expand": "user", "users": users}))
        }
        ("GET", "/user") => {
            let Some(n) = username else { return empty(400) };
            match st.users.get(&n) {
                Some(u) => json_resp(200, &user_entity(&origin, u)),
                None => no_user(&n),
            }
        }
        ("POST", "/user") => {
            let Some(name) = non_empty(&json_body, "name") else {
                return err(400, "INVALID_USER", "User name must not be empty".into());
            };
            let Some(pw) = json_body
                .get("password")
                .and_then(|p| non_empty(p, "value"))
            else {
                return err(400, "INVALID_USER", "Password must not be empty".into());
            };
            let key = name.to_lowercase();
            if st.users.contains_key(&key) {
                return err(400, "INVALID_USER", format!("User <{name}> already exists"));
            }
            let mut u = json!({"name": name, "first-name": "", "last-name": "", "display-name": "", "email": "", "active": true});
            for k in ["first-name", "last-name", "display-name", "email", "active"] {
                if let Some(v) = json_body.get(k) {
                    u[k] = v.clone();
                }
            }
            st.passwords.insert(key.clone(), pw);
            st.users.insert(key, u.clone());
            let mut r = json_resp(201, &user_entity(&origin, &u));
            if let Ok(loc) = header::HeaderValue::from_str(&format!(
                "{origin}{API}/user?username={}",
                url_encode(&name)
            )) {
                r.headers_mut().insert(header::LOCATION, loc);
            }
            r
        }
        ("PUT", "/user") => {
            let Some(n) = username else { return empty(400) };
            if !st.users.contains_key(&n) {
                return no_user(&n);
            }
            if non_empty(&json_body, "name").map(|x| x.to_lowercase()) != Some(n.clone()) {
                return err(
                    400,
                    "INVALID_USER",
                    "User name in the body does not match the user name in the URI".into(),
                );
            }
            let u = st.users.get_mut(&n).expect("present");
            for k in ["first-name", "last-name", "display-name", "email", "active"] {
                if let Some(v) = json_body.get(k) {
                    u[k] = v.clone();
                }
            }
            empty(204)
        }
        ("POST", "/user/rename") => {
            let Some(n) = username else { return empty(400) };
            let Some(new) = non_empty(&json_body, "new-name") else {
                return err(
                    400,
                    "INVALID_USER",
                    "New user name must not be empty".into(),
                );
            };
            let Some(mut u) = st.users.remove(&n) else {
                return no_user(&n);
            };
            let new_key = new.to_lowercase();
            if new_key != n && st.users.contains_key(&new_key) {
                st.users.insert(n, u);
                return err(400, "INVALID_USER", format!("User <{new}> already exists"));
            }
            u["name"] = json!(new);
            st.users.insert(new_key.clone(), u.clone());
            if let Some(p) = st.passwords.remove(&n) {
                st.passwords.insert(new_key.clone(), p);
            }
            if let Some(a) = st.attributes.remove(&n) {
                st.attributes.insert(new_key.clone(), a);
            }
            let moved: Vec<(String, String)> = st
                .memberships
                .iter()
                .filter(|(x, _)| *x == n)
                .cloned()
                .collect();
            for (x, g) in moved {
                st.memberships.remove(&(x, g.clone()));
                st.memberships.insert((new_key.clone(), g));
            }
            json_resp(200, &user_entity(&origin, &u))
        }
        ("PUT", "/user/password") => {
            let Some(n) = username else { return empty(400) };
            if !st.users.contains_key(&n) {
                return no_user(&n);
            }
            match non_empty(&json_body, "value") {
                Some(p) => {
                    st.passwords.insert(n, p);
                    empty(204)
                }
                None => err(
                    400,
                    "INVALID_CREDENTIAL",
                    "The new password does not meet the directory complexity requirements".into(),
                ),
            }
        }
        ("DELETE", "/user") => {
            let Some(n) = username else { return empty(400) };
            if st.users.remove(&n).is_none() {
                return no_user(&n);
            }
            st.passwords.remove(&n);
            st.attributes.remove(&n);
            st.memberships.retain(|(u, _)| *u != n);
            empty(204)
        }
        ("POST", "/user/attribute") => {
            let Some(n) = username else { return empty(400) };
            if !st.users.contains_key(&n) {
                return no_user(&n);
            }
            let Some(list) = json_body.get("attributes").and_then(Value::as_array) else {
                return empty(400);
            };
            let stored = st.attributes.entry(n).or_default();
            for a in list {
                let (Some(name), Some(values)) = (
                    non_empty(a, "name"),
                    a.get("values").and_then(Value::as_array),
                ) else {
                    return empty(400);
                };
                stored.insert(
                    name,
                    values
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                );
            }
            empty(204)
        }
        ("POST", "/user/group/direct") => {
            let Some(n) = username else { return empty(400) };
            if !st.users.contains_key(&n) {
                return no_user(&n);
            }
            let Some(g) = non_empty(&json_body, "name") else {
                return empty(400);
            };
            let gk = g.to_lowercase();
            if !st.groups.contains_key(&gk) {
                // Documented: 400 when the group does not exist (the user is the resource).
                return no_group(400, &g);
            }
            if !st.memberships.insert((n.clone(), gk)) {
                return err(
                    409,
                    "MEMBERSHIP_ALREADY_EXISTS",
                    format!("User {n} is already a member of group {g}"),
                );
            }
            empty(201)
        }
        ("DELETE", "/user/group/direct") => {
            let (Some(n), Some(g)) = (username, groupname) else {
                return empty(400);
            };
            if !st.users.contains_key(&n) {
                return no_user(&n);
            }
            if !st.groups.contains_key(&g) {
                return no_group(404, &g);
            }
            if !st.memberships.remove(&(n.clone(), g.clone())) {
                return err(
                    404,
                    "MEMBERSHIP_NOT_FOUND",
                    format!("User {n} is not a member of group {g}"),
                );
            }
            empty(204)
        }
        ("GET", "/group") => {
            let Some(g) = groupname else {
                return empty(400);
            };
            match st.groups.get(&g) {
                Some(v) => json_resp(200, v),
                None => no_group(404, &g),
            }
        }
        ("POST", "/group") => {
            let Some(name) = non_empty(&json_body, "name") else {
                return err(400, "INVALID_GROUP", "Group name must not be empty".into());
            };
            if json_body.get("type").and_then(Value::as_str) != Some("GROUP") {
                return err(400, "INVALID_GROUP", "Group type must be GROUP".into());
            }
            let key = name.to_lowercase();
            if st.groups.contains_key(&key) {
                return err(
                    400,
                    "INVALID_GROUP",
                    format!("Group <{name}> already exists"),
                );
            }
            let g = json!({"name": name, "type": "GROUP", "description": json_body.get("description").cloned().unwrap_or(Value::Null), "active": json_body.get("active").cloned().unwrap_or(json!(true))});
            st.groups.insert(key, g.clone());
            json_resp(201, &g)
        }
        ("DELETE", "/group") => {
            let Some(g) = groupname else {
                return empty(400);
            };
            if st.groups.remove(&g).is_none() {
                return no_group(404, &g);
            }
            st.memberships.retain(|(_, x)| *x != g);
            empty(204)
        }
        _ => empty(404),
    }
}
