//! A fake Okta org (Management API `/api/v1/`, in memory), written from Okta's *Users API*,
//! *Groups API*, *Error codes* and *Rate limits* documentation: the resources the
//! connector uses, with the documented status codes, error bodies
//! (`errorCode`/`errorSummary`/`errorLink`/`errorId`/`errorCauses`) and rate-limit headers
//! (see `tests/fixtures/README.md`, "Okta Management API").
//!
//! It answers only what Okta answers and refuses what Okta refuses: a missing or wrong
//! `Authorization: SSWS` token (401 `E0000011`), a malformed body (400 `E0000003`), a
//! profile without `login`, `email`, `firstName` or `lastName`, a login that is not an
//! e-mail address or is taken, in any case (400 `E0000001` with the field's cause), a
//! password below the default policy (400 `E0000001`, `password:`), unknown users and
//! groups (404 `E0000007`), activating a user that is not `STAGED` or `DEPROVISIONED`
//! (403 `E0000016`), deactivating a deactivated one (400 `E0000001`), writes by a token
//! without the admin role (403 `E0000006`). Lifecycle: `activate=false` → `STAGED`,
//! `activate=true` → `ACTIVE` with a password, `PROVISIONED` without; a `DELETE` of a user
//! that is not `DEPROVISIONED` deactivates it, the next deletes it. Every answer carries
//! `X-Rate-Limit-*`; [`FakeOkta::rate_limit`] makes the next requests answer 429
//! `E0000047` with `X-Rate-Limit-Reset` and no `Retry-After`, as Okta does.
//!
//! Listings page as Okta's do: `limit` (users at most 200) and an opaque `after`, with a
//! `Link: <…>; rel="self"` and, when there is more, a separate `Link: <…>; rel="next"`
//! header. `GET /users` leaves out `DEPROVISIONED` users unless `filter=status eq "…"`
//! asks for a status; `GET /groups` (without `q`) takes `filter=type eq "…"`;
//! `GET /groups/{id}/users` lists a group's members.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

const API: &str = "/api/v1";

/// Documented bodies the fake answers with (see `tests/fixtures/README.md`).
pub const USER_FIXTURE: &str =
    include_str!("../fixtures/okta-api/create_user_with_password_response.json");
pub const GROUP_FIXTURE: &str = include_str!("../fixtures/okta-api/group.json");
pub const RATE_LIMIT_FIXTURE: &str = include_str!("../fixtures/okta-api/error_rate_limit.json");

/// The org's rate limit as the headers report it.
pub const LIMIT: u32 = 600;

/// A scripted answer: status, extra headers, JSON body (`Null`: none).
#[derive(Clone, Debug)]
pub struct OktaFault {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

#[derive(Default)]
pub struct OktaState {
    /// By id: the user object (without its password).
    pub users: BTreeMap<String, Value>,
    pub passwords: HashMap<String, String>,
    /// By id: the group object.
    pub groups: BTreeMap<String, Value>,
    /// (group id, user id).
    pub members: BTreeSet<(String, String)>,
    /// `METHOD path?query` of every request (path under `/api/v1`).
    pub log: Vec<String>,
    faults: Vec<OktaFault>,
    /// The next this many requests answer 429.
    limited: u32,
    /// `X-Rate-Limit-Reset` of those answers (epoch seconds).
    limited_until: i64,
    remaining: u32,
    /// The token's administrator may only read (403 `E0000006` on writes).
    pub read_only: bool,
}

struct Shared {
    state: Mutex<OktaState>,
    auth: String,
    admin: Value,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, OktaState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct FakeOkta {
    pub addr: SocketAddr,
    /// The org URL: `http://127.0.0.1:PORT`.
    pub base: String,
    pub token: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOkta {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn new_id(prefix: &str) -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &u[..17])
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl FakeOkta {
    pub async fn start() -> FakeOkta {
        super::allow_loopback_peers();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let token = format!("00{}", uuid::Uuid::new_v4().simple());
        let mut admin: Value = serde_json::from_str(USER_FIXTURE).expect("user fixture");
        admin["id"] = json!(new_id("00u"));
        admin["profile"] = json!({"firstName": "Org", "lastName": "Admin",
                                  "email": "admin@example.test", "login": "admin@example.test"});
        let shared = Arc::new(Shared {
            state: Mutex::new(OktaState {
                remaining: LIMIT,
                ..OktaState::default()
            }),
            auth: format!("SSWS {token}"),
            admin,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOkta {
            addr,
            base: format!("http://{addr}"),
            token,
            shared,
            task,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, OktaState> {
        self.shared.lock()
    }

    /// The next request gets `fault` (queued in order).
    pub fn fail(&self, fault: OktaFault) {
        self.shared.lock().faults.push(fault);
    }

    /// The next `count` requests answer 429 `E0000047`, the window resetting at `reset`
    /// (epoch seconds).
    pub fn rate_limit(&self, count: u32, reset: i64) {
        let mut st = self.shared.lock();
        st.limited = count;
        st.limited_until = reset;
    }

    /// The user with this login (any case).
    pub fn user(&self, login: &str) -> Option<Value> {
        let st = self.state();
        find_login(&st, login).and_then(|id| st.users.get(&id).cloned())
    }

    /// The writes Okta received (every request but `GET`), as `METHOD path?query`.
    pub fn writes(&self) -> Vec<String> {
        self.state()
            .log
            .iter()
            .filter(|l| !l.starts_with("GET "))
            .cloned()
            .collect()
    }

    /// Puts an active user straight into the org (an account the hub did not create);
    /// returns its id.
    pub fn insert_user(&self, profile: Value) -> String {
        let mut u: Value = serde_json::from_str(USER_FIXTURE).expect("user fixture");
        let id = new_id("00u");
        u["id"] = json!(id);
        u["profile"] = profile;
        self.state().users.insert(id.clone(), u);
        id
    }

    /// The names of the groups of the user with this login.
    pub fn groups_of(&self, login: &str) -> Vec<String> {
        let st = self.state();
        let Some(uid) = find_login(&st, login) else {
            return Vec::new();
        };
        st.members
            .iter()
            .filter(|(_, u)| *u == uid)
            .filter_map(|(g, _)| st.groups.get(g))
            .filter_map(|g| g["profile"]["name"].as_str().map(str::to_string))
            .collect()
    }
}

fn find_login(st: &OktaState, login: &str) -> Option<String> {
    st.users
        .iter()
        .find(|(_, u)| {
            u["profile"]["login"]
                .as_str()
                .is_some_and(|l| l.eq_ignore_ascii_case(login))
        })
        .map(|(id, _)| id.clone())
}

fn error_body(code: &str, summary: &str, causes: &[String]) -> Value {
    json!({
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": format!("oae{}", &uuid::Uuid::new_v4().simple().to_string()[..22]),
        "errorCauses": causes.iter().map(|c| json!({"errorSummary": c})).collect::<Vec<_>>(),
    })
}

fn json_resp(status: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn err(status: u16, code: &str, summary: &str, causes: &[String]) -> Response {
    json_resp(status, &error_body(code, summary, causes))
}

fn not_found(what: &str, kind: &str) -> Response {
    err(
        404,
        "E0000007",
        &format!("Not found: Resource not found: {what} ({kind})"),
        &[],
    )
}

fn validation(causes: Vec<(String, String)>) -> Response {
    let fields: Vec<&str> = causes.iter().map(|(f, _)| f.as_str()).collect();
    let summary = format!("Api validation failed: {}", fields.join(", "));
    let causes: Vec<String> = causes.iter().map(|(f, c)| format!("{f}: {c}")).collect();
    err(400, "E0000001", &summary, &causes)
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Okta's default password policy: at least 8 characters, a lowercase letter, an
/// uppercase letter, a number.
fn password_ok(p: &str) -> bool {
    p.chars().count() >= 8
        && p.chars().any(|c| c.is_ascii_lowercase())
        && p.chars().any(|c| c.is_ascii_uppercase())
        && p.chars().any(|c| c.is_ascii_digit())
}

const PASSWORD_CAUSE: &str = "Password requirements were not met. Password requirements: at least 8 characters, a lowercase letter, an uppercase letter, a number.";

/// Checks a (whole) profile as Okta's default user schema does; `me` is the user being
/// updated (its own login is no conflict).
fn check_profile(
    st: &OktaState,
    p: &Map<String, Value>,
    me: Option<&str>,
) -> Vec<(String, String)> {
    let mut causes = Vec::new();
    let text = |k: &str| {
        p.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    for f in ["login", "email", "firstName", "lastName"] {
        if text(f).is_none() {
            causes.push((f.to_string(), "The field cannot be left blank".to_string()));
        }
    }
    if let Some(l) = text("login") {
        if !is_email(l) {
            causes.push((
                "login".into(),
                "Username must be in the form of an email address".into(),
            ));
        } else if find_login(st, l).is_some_and(|id| Some(id.as_str()) != me) {
            causes.push((
                "login".into(),
                "An object with this field already exists in the current organization".into(),
            ));
        }
    }
    if let Some(e) = text("email")
        && !is_email(e)
    {
        causes.push(("email".into(), "Does not match required pattern".into()));
    }
    causes
}

fn password_of(body: &Value) -> Option<&str> {
    body.get("credentials")?
        .get("password")?
        .get("value")?
        .as_str()
}

fn user_object(origin: &str, u: &Value, has_password: bool) -> Value {
    let mut out = u.clone();
    let id = u["id"].as_str().unwrap_or_default();
    out["credentials"] = if has_password {
        json!({"password": {}, "provider": {"type": "OKTA", "name": "OKTA"}})
    } else {
        json!({"provider": {"type": "OKTA", "name": "OKTA"}})
    };
    out["_links"] = json!({"self": {"href": format!("{origin}{API}/users/{id}")}});
    out
}

fn group_object(origin: &str, g: &Value) -> Value {
    let mut out = g.clone();
    let id = g["id"].as_str().unwrap_or_default();
    out["_links"] = json!({"users": {"href": format!("{origin}{API}/groups/{id}/users")},
                           "apps": {"href": format!("{origin}{API}/groups/{id}/apps")}});
    out
}

fn set_status(u: &mut Value, status: &str) {
    let t = now();
    u["status"] = json!(status);
    u["statusChanged"] = json!(t);
    u["lastUpdated"] = json!(t);
    if status == "ACTIVE" || status == "PROVISIONED" {
        u["activated"] = json!(t);
    }
}

fn rate_headers(r: &mut Response, limit: u32, remaining: u32, reset: i64) {
    for (k, v) in [
        ("x-rate-limit-limit", limit.to_string()),
        ("x-rate-limit-remaining", remaining.to_string()),
        ("x-rate-limit-reset", reset.to_string()),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
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
    let reset = chrono::Utc::now().timestamp() + 60;
    if st.limited > 0 {
        st.limited -= 1;
        let body: Value = serde_json::from_str(RATE_LIMIT_FIXTURE).unwrap_or(Value::Null);
        let mut r = json_resp(429, &body);
        let until = st.limited_until;
        rate_headers(&mut r, LIMIT, 0, until);
        return r;
    }
    if !st.faults.is_empty() {
        let f = st.faults.remove(0);
        let mut r = if f.body.is_null() {
            StatusCode::from_u16(f.status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
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
    st.remaining = st.remaining.saturating_sub(1).max(1);
    let remaining = st.remaining;
    let mut r = route(&s, &mut st, &origin, &method, &path, &q, &headers, &body);
    rate_headers(&mut r, LIMIT, remaining, reset);
    r
}

#[allow(clippy::too_many_arguments)]
fn route(
    s: &Shared,
    st: &mut OktaState,
    origin: &str,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given != Some(s.auth.as_str()) {
        return err(401, "E0000011", "Invalid token provided", &[]);
    }
    let Some(resource) = path.strip_prefix(API) else {
        return err(
            404,
            "E0000022",
            "The endpoint does not support the provided HTTP method",
            &[],
        );
    };
    let json_body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => {
                return err(
                    400,
                    "E0000003",
                    "The request body was not well-formed.",
                    &[],
                );
            }
        }
    };
    if *method != Method::GET && st.read_only {
        return err(
            403,
            "E0000006",
            "You do not have permission to perform the requested action",
            &[],
        );
    }
    let segs: Vec<&str> = resource.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["users", "me"]) => json_resp(200, &s.admin),
        ("GET", ["users"]) => {
            let Ok(status) = eq_filter(q, "status") else {
                return invalid_search();
            };
            let users: Vec<Value> = st
                .users
                .values()
                .filter(|u| match status {
                    Some(s) => u["status"] == s,
                    // "Returns all users that don't have a DEPROVISIONED status."
                    None => u["status"] != "DEPROVISIONED",
                })
                .map(|u| {
                    let has = st
                        .passwords
                        .contains_key(u["id"].as_str().unwrap_or_default());
                    user_object(origin, u, has)
                })
                .collect();
            paged(origin, "/users", q, users, 200)
        }
        ("GET", ["groups", id, "users"]) => {
            if !st.groups.contains_key(*id) {
                return not_found(id, "UserGroup");
            }
            let users: Vec<Value> = st
                .members
                .iter()
                .filter(|(g, _)| g == id)
                .filter_map(|(_, u)| st.users.get(u))
                .map(|u| user_object(origin, u, false))
                .collect();
            let mut sorted = users;
            sorted.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            paged(origin, &format!("/groups/{id}/users"), q, sorted, 1000)
        }
        ("POST", ["users"]) => {
            let Some(profile) = json_body.get("profile").and_then(Value::as_object) else {
                return validation(vec![(
                    "profile".into(),
                    "The field cannot be left blank".into(),
                )]);
            };
            let mut causes = check_profile(st, profile, None);
            let password = password_of(&json_body);
            if password.is_some_and(|p| !password_ok(p)) {
                causes.push(("password".into(), PASSWORD_CAUSE.into()));
            }
            if !causes.is_empty() {
                return validation(causes);
            }
            let activate = q.get("activate").map(String::as_str) != Some("false");
            let status = match (activate, password.is_some()) {
                (false, _) => "STAGED",
                (true, true) => "ACTIVE",
                (true, false) => "PROVISIONED",
            };
            let id = new_id("00u");
            let t = now();
            let mut u: Value = serde_json::from_str(USER_FIXTURE).unwrap_or(json!({}));
            u["id"] = json!(id);
            u["status"] = json!(status);
            u["created"] = json!(t);
            u["lastUpdated"] = json!(t);
            u["activated"] = if activate { json!(t) } else { Value::Null };
            u["passwordChanged"] = if password.is_some() {
                json!(t)
            } else {
                Value::Null
            };
            u["profile"] = Value::Object(profile.clone());
            if let Some(p) = password {
                st.passwords.insert(id.clone(), p.to_string());
            }
            st.users.insert(id.clone(), u.clone());
            json_resp(200, &user_object(origin, &u, password.is_some()))
        }
        ("GET", ["users", key]) => {
            let id = if st.users.contains_key(*key) {
                Some(key.to_string())
            } else {
                let key = percent_decode(key);
                find_login(st, &key).or_else(|| {
                    // A login's short name, when it names one user.
                    let short: Vec<String> = st
                        .users
                        .iter()
                        .filter(|(_, u)| {
                            u["profile"]["login"]
                                .as_str()
                                .and_then(|l| l.split('@').next())
                                .is_some_and(|s| s.eq_ignore_ascii_case(&key))
                        })
                        .map(|(id, _)| id.clone())
                        .collect();
                    (short.len() == 1).then(|| short[0].clone())
                })
            };
            match id.and_then(|id| st.users.get(&id)) {
                Some(u) => {
                    let has = st
                        .passwords
                        .contains_key(u["id"].as_str().unwrap_or_default());
                    json_resp(200, &user_object(origin, u, has))
                }
                None => not_found(key, "User"),
            }
        }
        ("POST", ["users", id]) => {
            let Some(current) = st.users.get(*id).cloned() else {
                return not_found(id, "User");
            };
            let mut profile = current["profile"].as_object().cloned().unwrap_or_default();
            if let Some(p) = json_body.get("profile").and_then(Value::as_object) {
                for (k, v) in p {
                    if v.is_null() {
                        profile.remove(k);
                    } else {
                        profile.insert(k.clone(), v.clone());
                    }
                }
            }
            let mut causes = check_profile(st, &profile, Some(id));
            let password = password_of(&json_body);
            if password.is_some_and(|p| !password_ok(p)) {
                causes.push(("password".into(), PASSWORD_CAUSE.into()));
            }
            if !causes.is_empty() {
                return validation(causes);
            }
            let mut u = current;
            u["profile"] = Value::Object(profile);
            u["lastUpdated"] = json!(now());
            if let Some(p) = password {
                st.passwords.insert(id.to_string(), p.to_string());
                u["passwordChanged"] = json!(now());
            }
            st.users.insert(id.to_string(), u.clone());
            let has = st.passwords.contains_key(*id);
            json_resp(200, &user_object(origin, &u, has))
        }
        ("POST", ["users", id, "lifecycle", action]) => {
            let has = st.passwords.contains_key(*id);
            let Some(u) = st.users.get_mut(*id) else {
                return not_found(id, "User");
            };
            let status = u["status"].as_str().unwrap_or_default().to_string();
            match *action {
                "activate" => {
                    if status != "STAGED" && status != "DEPROVISIONED" {
                        return err(
                            403,
                            "E0000016",
                            "Activation failed because the user is already active",
                            &[],
                        );
                    }
                    set_status(u, if has { "ACTIVE" } else { "PROVISIONED" });
                    if q.get("sendEmail").map(String::as_str) == Some("false") && !has {
                        let token = uuid::Uuid::new_v4().simple().to_string();
                        return json_resp(
                            200,
                            &json!({"activationUrl": format!("{origin}/welcome/{token}"),
                                    "activationToken": token}),
                        );
                    }
                    json_resp(200, &json!({}))
                }
                "deactivate" => {
                    if status == "DEPROVISIONED" {
                        return validation(vec![(
                            "status".into(),
                            "The user is already deactivated".into(),
                        )]);
                    }
                    set_status(u, "DEPROVISIONED");
                    json_resp(200, &json!({}))
                }
                _ => err(
                    404,
                    "E0000022",
                    "The endpoint does not support the provided HTTP method",
                    &[],
                ),
            }
        }
        ("DELETE", ["users", id]) => {
            let Some(u) = st.users.get_mut(*id) else {
                return not_found(id, "User");
            };
            if u["status"] != "DEPROVISIONED" {
                set_status(u, "DEPROVISIONED");
            } else {
                st.users.remove(*id);
                st.passwords.remove(*id);
                st.members.retain(|(_, m)| m != id);
            }
            no_content()
        }
        ("GET", ["groups"]) if !q.contains_key("q") => {
            let Ok(kind) = eq_filter(q, "type") else {
                return invalid_search();
            };
            let groups: Vec<Value> = st
                .groups
                .values()
                .filter(|g| kind.is_none_or(|k| g["type"] == k))
                .map(|g| group_object(origin, g))
                .collect();
            paged(origin, "/groups", q, groups, 10000)
        }
        ("GET", ["groups"]) => {
            let query = q.get("q").map(|s| s.to_lowercase()).unwrap_or_default();
            let limit = q
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(if q.contains_key("q") { 10 } else { 200 });
            let mut found: Vec<&Value> = st
                .groups
                .values()
                .filter(|g| {
                    g["profile"]["name"]
                        .as_str()
                        .is_some_and(|n| n.to_lowercase().starts_with(&query))
                })
                .collect();
            // "Exact matches are always returned before partial matches."
            found.sort_by_key(|g| {
                g["profile"]["name"].as_str().map(str::to_lowercase) != Some(query.clone())
            });
            let out: Vec<Value> = found
                .into_iter()
                .take(limit)
                .map(|g| group_object(origin, g))
                .collect();
            json_resp(200, &Value::Array(out))
        }
        ("POST", ["groups"]) => {
            let name = json_body
                .get("profile")
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|n| !n.is_empty());
            let Some(name) = name else {
                return validation(vec![(
                    "name".into(),
                    "The field cannot be left blank".into(),
                )]);
            };
            if group_named(st, name, None) {
                return validation(vec![(
                    "name".into(),
                    "An object with this field already exists in the current organization".into(),
                )]);
            }
            let id = new_id("00g");
            let mut g: Value = serde_json::from_str(GROUP_FIXTURE).unwrap_or(json!({}));
            let t = now();
            g["id"] = json!(id);
            g["created"] = json!(t);
            g["lastUpdated"] = json!(t);
            g["lastMembershipUpdated"] = json!(t);
            g["profile"] = json_body["profile"].clone();
            st.groups.insert(id, g.clone());
            json_resp(200, &group_object(origin, &g))
        }
        ("GET", ["groups", id]) => match st.groups.get(*id) {
            Some(g) => json_resp(200, &group_object(origin, g)),
            None => not_found(id, "UserGroup"),
        },
        ("PUT", ["groups", id]) => {
            if !st.groups.contains_key(*id) {
                return not_found(id, "UserGroup");
            }
            let Some(name) = json_body
                .get("profile")
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.trim().is_empty())
            else {
                return validation(vec![(
                    "name".into(),
                    "The field cannot be left blank".into(),
                )]);
            };
            if group_named(st, name, Some(id)) {
                return validation(vec![(
                    "name".into(),
                    "An object with this field already exists in the current organization".into(),
                )]);
            }
            let profile = json_body["profile"].clone();
            let Some(g) = st.groups.get_mut(*id) else {
                return not_found(id, "UserGroup");
            };
            g["profile"] = profile;
            g["lastUpdated"] = json!(now());
            let g = g.clone();
            json_resp(200, &group_object(origin, &g))
        }
        ("DELETE", ["groups", id]) => {
            if st.groups.remove(*id).is_none() {
                return not_found(id, "UserGroup");
            }
            st.members.retain(|(g, _)| g != id);
            no_content()
        }
        (m @ ("PUT" | "DELETE"), ["groups", gid, "users", uid]) => {
            if !st.groups.contains_key(*gid) {
                return not_found(gid, "UserGroup");
            }
            if !st.users.contains_key(*uid) {
                return not_found(uid, "User");
            }
            let key = (gid.to_string(), uid.to_string());
            if m == "PUT" {
                st.members.insert(key);
            } else {
                st.members.remove(&key);
            }
            if let Some(g) = st.groups.get_mut(*gid) {
                g["lastMembershipUpdated"] = json!(now());
            }
            no_content()
        }
        _ => err(
            404,
            "E0000022",
            "The endpoint does not support the provided HTTP method",
            &[],
        ),
    }
}

/// One page of `items` (id order) after `after`, as Okta pages: the page and the
/// `Link` headers (`self`, and `next` when more follow).
fn paged(
    origin: &str,
    path: &str,
    q: &HashMap<String, String>,
    items: Vec<Value>,
    max_limit: usize,
) -> Response {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(max_limit)
        .clamp(1, max_limit);
    let after = q.get("after").cloned();
    let rest: Vec<Value> = items
        .into_iter()
        .filter(|v| {
            after
                .as_deref()
                .is_none_or(|a| v["id"].as_str().is_some_and(|id| id > a))
        })
        .collect();
    let more = rest.len() > limit;
    let page: Vec<Value> = rest.into_iter().take(limit).collect();
    let mut base = format!("{origin}{API}{path}?limit={limit}");
    if let Some(f) = q.get("filter") {
        base.push_str(&format!("&filter={}", encode(f)));
    }
    let mut r = json_resp(200, &Value::Array(page.clone()));
    let this = match &after {
        Some(a) => format!("<{base}&after={a}>; rel=\"self\""),
        None => format!("<{base}>; rel=\"self\""),
    };
    if let Ok(v) = header::HeaderValue::from_str(&this) {
        r.headers_mut().append(header::LINK, v);
    }
    if more
        && let Some(last) = page.last().and_then(|v| v["id"].as_str())
        && let Ok(v) =
            header::HeaderValue::from_str(&format!("<{base}&after={last}>; rel=\"next\""))
    {
        r.headers_mut().append(header::LINK, v);
    }
    r
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of a `filter` of the form `{attr} eq "{value}"`; `Err`: another filter.
fn eq_filter<'a>(q: &'a HashMap<String, String>, attr: &str) -> Result<Option<&'a str>, ()> {
    let Some(f) = q.get("filter") else {
        return Ok(None);
    };
    f.trim()
        .strip_prefix(attr)
        .and_then(|r| r.trim_start().strip_prefix("eq"))
        .map(str::trim)
        .and_then(|v| v.strip_prefix('"'))
        .and_then(|v| v.strip_suffix('"'))
        .map(Some)
        .ok_or(())
}

fn invalid_search() -> Response {
    err(400, "E0000031", "Invalid search criteria.", &[])
}

fn group_named(st: &OktaState, name: &str, except: Option<&str>) -> bool {
    st.groups.iter().any(|(id, g)| {
        Some(id.as_str()) != except
            && g["profile"]["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
