//! A fake Microsoft identity platform token endpoint and Microsoft Graph v1.0 (users,
//! groups, members; in memory), written from Microsoft's documentation (see
//! `tests/fixtures/README.md`, section `graph/`): the documented paths, status codes and
//! `{"error": {"code", "message", "innerError"}}` bodies.
//!
//! It answers only what Graph answers and refuses what Graph refuses: a token request
//! with a wrong tenant, client, secret, grant type or scope (400/401 with AADSTS
//! errors); a call without a valid, unexpired token (401 `InvalidAuthenticationToken`);
//! writes by an app without the permissions (403 `Authorization_RequestDenied`); a user
//! without `accountEnabled`, `displayName`, `mailNickname`, `userPrincipalName` or
//! `passwordProfile.password`, a UPN outside the verified domains, a password that fails
//! complexity, a duplicate UPN, an unknown property (400 `Request_BadRequest`); unknown
//! objects (404 `Request_ResourceNotFound`); an existing membership (400 "One or more
//! added object references already exist…"). Scripted faults answer before all that.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const DOMAIN: &str = "contoso.test";
pub const SCOPE: &str = "https://graph.microsoft.com/.default";
/// The documented token response (shape of every token answer).
pub const TOKEN_FIXTURE: &str = include_str!("../fixtures/graph/token_response.json");
pub const USER_FIXTURE: &str = include_str!("../fixtures/graph/create_user_response.json");
pub const GROUP_FIXTURE: &str = include_str!("../fixtures/graph/create_group_response.json");

/// Writable `user` properties (microsoft.graph.user) the fake knows.
const USER_PROPERTIES: &[&str] = &[
    "accountEnabled",
    "displayName",
    "mailNickname",
    "userPrincipalName",
    "passwordProfile",
    "givenName",
    "surname",
    "jobTitle",
    "department",
    "mail",
    "mobilePhone",
    "preferredLanguage",
    "usageLocation",
    "employeeId",
    "companyName",
    "officeLocation",
    "city",
    "country",
    "state",
    "streetAddress",
    "postalCode",
    "onPremisesImmutableId",
    "businessPhones",
    "passwordPolicies",
];
const GROUP_PROPERTIES: &[&str] = &[
    "displayName",
    "description",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
    "groupTypes",
];

/// A scripted answer: status, extra headers, JSON body (`Null`: none).
#[derive(Clone, Debug)]
pub struct GraphFault {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl GraphFault {
    pub fn error(status: u16, code: &str, message: &str) -> GraphFault {
        GraphFault {
            status,
            headers: Vec::new(),
            body: graph_error_body(code, message),
        }
    }

    /// 429 with `Retry-After`, the documented throttling body.
    pub fn throttled(retry_after_secs: u64) -> GraphFault {
        GraphFault {
            status: 429,
            headers: vec![("Retry-After".into(), retry_after_secs.to_string())],
            body: serde_json::from_str(include_str!("../fixtures/graph/error_throttled.json"))
                .expect("fixture"),
        }
    }
}

#[derive(Default)]
pub struct GraphState {
    /// By object id: the user as stored (with `passwordProfile`).
    pub users: BTreeMap<String, Value>,
    pub groups: BTreeMap<String, Value>,
    /// (group id, member id).
    pub members: BTreeSet<(String, String)>,
    /// Tokens issued, with their expiry.
    pub tokens: HashMap<String, Instant>,
    pub token_requests: usize,
    /// `METHOD path?query` of every Graph request (token requests as `TOKEN`).
    pub log: Vec<String>,
    /// `(METHOD path, JSON body or null)` of every request but `GET`s, in order.
    pub writes: Vec<(String, Value)>,
    /// Every `Authorization` header seen (to check what was sent).
    pub bearer_seen: Vec<String>,
    faults: Vec<GraphFault>,
    /// Lifetime of issued tokens (`expires_in`).
    pub token_lifetime: Duration,
    /// No application permissions granted: writes are 403.
    pub read_only: bool,
    /// The most items Graph puts in one page, whatever `$top` asks (server-side paging;
    /// `None`: as `$top` says, 100 without it).
    pub max_page: Option<usize>,
}

struct Shared {
    state: Mutex<GraphState>,
    client_id: String,
    client_secret: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, GraphState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct FakeGraph {
    pub addr: SocketAddr,
    /// Both `graph_url` and `login_url`: `http://127.0.0.1:PORT`.
    pub base: String,
    pub client_id: String,
    pub client_secret: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGraph {
    pub async fn start() -> FakeGraph {
        super::allow_loopback_peers();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client_id = uuid::Uuid::new_v4().to_string();
        let client_secret = format!("Q~{}", uuid::Uuid::new_v4().simple());
        let shared = Arc::new(Shared {
            state: Mutex::new(GraphState {
                token_lifetime: Duration::from_secs(3599),
                ..GraphState::default()
            }),
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGraph {
            addr,
            base: format!("http://{addr}"),
            client_id,
            client_secret,
            shared,
            task,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, GraphState> {
        self.shared.lock()
    }

    /// The next Graph request (not token requests) gets `fault` (queued in order).
    pub fn fail(&self, fault: GraphFault) {
        self.shared.lock().faults.push(fault);
    }

    /// Every issued token stops working (as when an admin revokes the app's sessions).
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    pub fn user_by_upn(&self, upn: &str) -> Option<Value> {
        self.state()
            .users
            .values()
            .find(|u| {
                u["userPrincipalName"]
                    .as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(upn))
            })
            .cloned()
    }

    pub fn group_by_name(&self, name: &str) -> Option<Value> {
        self.state()
            .groups
            .values()
            .find(|g| g["displayName"] == name)
            .cloned()
    }

    /// Display names of the groups `upn` is a member of.
    pub fn groups_of(&self, upn: &str) -> Vec<String> {
        let Some(u) = self.user_by_upn(upn) else {
            return Vec::new();
        };
        let st = self.state();
        st.members
            .iter()
            .filter(|(_, m)| Some(m.as_str()) == u["id"].as_str())
            .filter_map(|(g, _)| st.groups.get(g))
            .filter_map(|g| g["displayName"].as_str().map(str::to_string))
            .collect()
    }
}

pub fn graph_error_body(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "innerError": {
        "date": "2026-01-01T00:00:00",
        "request-id": uuid::Uuid::new_v4().to_string(),
        "client-request-id": uuid::Uuid::new_v4().to_string()
    }}})
}

fn json_resp(status: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn err(status: u16, code: &str, message: impl Into<String>) -> Response {
    json_resp(status, &graph_error_body(code, &message.into()))
}

fn bad(message: impl Into<String>) -> Response {
    err(400, "Request_BadRequest", message)
}

fn not_found(id: &str) -> Response {
    err(
        404,
        "Request_ResourceNotFound",
        format!(
            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

fn empty(status: u16) -> Response {
    StatusCode::from_u16(status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

fn oauth_err(status: u16, error: &str, description: &str, code: u64) -> Response {
    json_resp(
        status,
        &json!({"error": error, "error_description": description, "error_codes": [code],
                "timestamp": "2026-01-01 00:00:00Z", "trace_id": uuid::Uuid::new_v4().to_string(),
                "correlation_id": uuid::Uuid::new_v4().to_string()}),
    )
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Entra's password complexity: 8 to 256 characters, 3 of the 4 classes.
fn complex_enough(p: &str) -> bool {
    let classes = [
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    (8..=256).contains(&p.chars().count()) && classes.iter().filter(|x| **x).count() >= 3
}

fn token_endpoint(s: &Shared, st: &mut GraphState, tenant: &str, body: &[u8]) -> Response {
    st.token_requests += 1;
    st.log.push("TOKEN".into());
    if tenant != TENANT {
        return oauth_err(
            400,
            "invalid_request",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
            90002,
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_err(
            400,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
            70003,
        );
    }
    if form.get("client_id") != Some(&s.client_id) {
        return oauth_err(
            400,
            "unauthorized_client",
            &format!(
                "AADSTS700016: Application with identifier '{}' was not found in the directory '{TENANT}'.",
                form.get("client_id").cloned().unwrap_or_default()
            ),
            700016,
        );
    }
    let secret_ok = form.get("client_secret").is_some_and(|x| {
        use subtle_eq::eq;
        eq(x.as_bytes(), s.client_secret.as_bytes())
    });
    if !secret_ok {
        return oauth_err(
            401,
            "invalid_client",
            &format!(
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                s.client_id
            ),
            7000215,
        );
    }
    if form.get("scope").map(String::as_str) != Some(SCOPE) {
        return oauth_err(
            400,
            "invalid_scope",
            &format!(
                "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope {} is not valid.",
                form.get("scope").cloned().unwrap_or_default()
            ),
            70011,
        );
    }
    let token = format!("eyJ0eXAiOiJKV1Qi.{}", uuid::Uuid::new_v4().simple());
    st.tokens
        .insert(token.clone(), Instant::now() + st.token_lifetime);
    let mut out: Value = serde_json::from_str(TOKEN_FIXTURE).expect("token fixture");
    out["access_token"] = json!(token);
    out["expires_in"] = json!(st.token_lifetime.as_secs());
    json_resp(200, &out)
}

/// Constant-time comparison (the fake checks a secret as a server should).
mod subtle_eq {
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// `prop eq 'literal'` with quotes doubled (OData): `(prop, literal)`.
fn parse_eq_filter(f: &str) -> Option<(String, String)> {
    let (prop, rest) = f.trim().split_once(" eq ")?;
    let rest = rest.trim();
    let inner = rest.strip_prefix('\'')?.strip_suffix('\'')?;
    // A single quote inside must be doubled.
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.next() != Some('\'') {
            return None;
        }
        out.push(c);
    }
    Some((prop.trim().to_string(), out))
}

fn check_properties(body: &Map<String, Value>, known: &[&str], kind: &str) -> Option<Response> {
    body.keys().find(|k| !known.contains(&k.as_str())).map(|k| {
        bad(format!(
            "Property '{k}' does not exist on type 'microsoft.graph.{kind}'."
        ))
    })
}

fn check_upn(st: &GraphState, upn: &str, except: Option<&str>) -> Option<Response> {
    let domain_ok = upn.rsplit_once('@').is_some_and(|(local, d)| {
        !local.is_empty() && (d.eq_ignore_ascii_case(DOMAIN) || d.eq_ignore_ascii_case(TENANT))
    });
    if !domain_ok {
        return Some(bad(
            "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.",
        ));
    }
    let taken = st.users.iter().any(|(id, u)| {
        Some(id.as_str()) != except
            && u["userPrincipalName"]
                .as_str()
                .is_some_and(|x| x.eq_ignore_ascii_case(upn))
    });
    taken.then(|| {
        json_resp(
            400,
            &serde_json::from_str::<Value>(include_str!(
                "../fixtures/graph/error_duplicate_upn.json"
            ))
            .expect("fixture"),
        )
    })
}

fn check_password_profile(v: &Value) -> Option<Response> {
    let p = v.get("password").and_then(Value::as_str).unwrap_or("");
    if p.is_empty() {
        return Some(bad(
            "Property passwordProfile.password value is required but is empty or missing.",
        ));
    }
    if !complex_enough(p) {
        return Some(bad(
            "The specified password does not comply with password complexity requirements. Please provide a different password.",
        ));
    }
    None
}

fn user_view(origin: &str, u: &Value) -> Value {
    let mut out: Value = serde_json::from_str(USER_FIXTURE).expect("user fixture");
    out["@odata.context"] = json!(format!("{origin}/v1.0/$metadata#users/$entity"));
    if let (Some(o), Some(u)) = (out.as_object_mut(), u.as_object()) {
        for k in [
            "jobTitle",
            "mail",
            "mobilePhone",
            "officeLocation",
            "preferredLanguage",
            "givenName",
            "surname",
        ] {
            o.insert(k.into(), Value::Null);
        }
        for (k, v) in u {
            if k != "passwordProfile" {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    out
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
    let mut guard = s.lock();
    let st = &mut *guard;
    // The identity platform: POST /{tenant}/oauth2/v2.0/token.
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    if let [tenant, a, b, c] = segments.as_slice()
        && a == "oauth2"
        && b == "v2.0"
        && c == "token"
    {
        if method != Method::POST {
            return empty(405);
        }
        return token_endpoint(&s, st, tenant, &body);
    }
    st.log.push(format!(
        "{method} {path}{}",
        uri.query().map(|q| format!("?{q}")).unwrap_or_default()
    ));
    if method != Method::GET {
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        st.writes.push((format!("{method} {path}"), body));
    }
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
    // Graph: a valid bearer token on every request.
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    st.bearer_seen.push(auth.clone());
    let Some(token) = auth.strip_prefix("Bearer ") else {
        return err(401, "InvalidAuthenticationToken", "Access token is empty.");
    };
    match st.tokens.get(token) {
        Some(exp) if *exp > Instant::now() => {}
        Some(_) => {
            return json_resp(
                401,
                &serde_json::from_str::<Value>(include_str!(
                    "../fixtures/graph/error_invalid_token.json"
                ))
                .expect("fixture"),
            );
        }
        None => {
            return err(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            );
        }
    }
    let Some(rest) = path.strip_prefix("/v1.0/") else {
        return err(400, "BadRequest", "Invalid version.");
    };
    let seg: Vec<String> = rest.split('/').map(percent_decode).collect();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let json_body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return bad("Unable to read JSON request payload."),
        }
    };
    if method != Method::GET && st.read_only {
        return json_resp(
            403,
            &serde_json::from_str::<Value>(include_str!("../fixtures/graph/error_forbidden.json"))
                .expect("fixture"),
        );
    }
    let collection_get = |st: &GraphState, coll: &str| -> Response {
        let items: Vec<Value> = match coll {
            "users" => st.users.values().cloned().collect(),
            "groups" => st.groups.values().cloned().collect(),
            // `groups/{id}/members`: directory objects with their `@odata.type`.
            members => {
                let gid = members
                    .trim_start_matches("groups/")
                    .trim_end_matches("/members");
                if !st.groups.contains_key(gid) {
                    return not_found(gid);
                }
                st.members
                    .iter()
                    .filter(|(g, _)| g == gid)
                    .filter_map(|(_, m)| {
                        let (kind, obj) = match st.users.get(m) {
                            Some(u) => ("#microsoft.graph.user", u),
                            None => ("#microsoft.graph.group", st.groups.get(m)?),
                        };
                        let mut o = obj.clone();
                        o["@odata.type"] = json!(kind);
                        Some(o)
                    })
                    .collect()
            }
        };
        let items: Vec<&Value> = items.iter().collect();
        let found: Vec<&Value> = match q.get("$filter") {
            None => items,
            Some(f) => {
                let Some((prop, lit)) = parse_eq_filter(f) else {
                    return bad(format!("Invalid filter clause: {f}"));
                };
                let allowed: &[&str] = if coll == "users" {
                    &["userPrincipalName", "displayName", "mail", "userType"]
                } else {
                    &["displayName", "mailNickname", "mail"]
                };
                if !allowed.contains(&prop.as_str()) {
                    return err(
                        400,
                        "Request_UnsupportedQuery",
                        format!(
                            "Unsupported or invalid query filter clause specified for property '{prop}' of resource '{}'.",
                            if coll == "users" { "User" } else { "Group" }
                        ),
                    );
                }
                // Graph compares these properties case-insensitively.
                items
                    .into_iter()
                    .filter(|i| {
                        i[prop.as_str()]
                            .as_str()
                            .is_some_and(|x| x.eq_ignore_ascii_case(&lit))
                    })
                    .collect()
            }
        };
        let mut page = 100;
        if let Some(top) = q.get("$top") {
            match top.parse::<usize>() {
                Ok(n) if (1..=999).contains(&n) => page = n,
                _ => {
                    return bad(format!(
                        "Invalid page size specified: '{top}'. Must be between 1 and 999 inclusive."
                    ));
                }
            }
        }
        if let Some(max) = st.max_page {
            page = page.min(max.max(1));
        }
        // `$skiptoken`: opaque to clients; here the position in the (stable) listing.
        let skip = match q.get("$skiptoken") {
            None => 0,
            Some(t) => match t.strip_prefix("pos-").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => n,
                None => return bad(format!("Invalid $skiptoken: '{t}'.")),
            },
        };
        let total = found.len();
        let found: Vec<&Value> = found.into_iter().skip(skip).take(page).collect();
        // Graph repeats the request's other query options in the link (*Paging Microsoft
        // Graph data*, https://learn.microsoft.com/en-us/graph/paging).
        let next_link = (skip + page < total).then(|| {
            let mut url = url::Url::parse(&format!("{origin}/v1.0/{coll}")).expect("origin");
            {
                let mut pairs = url.query_pairs_mut();
                for (k, v) in q.iter().filter(|(k, _)| *k != "$skiptoken") {
                    pairs.append_pair(k, v);
                }
                pairs.append_pair("$skiptoken", &format!("pos-{}", skip + page));
            }
            url.to_string()
        });
        let select: Option<Vec<&str>> = q.get("$select").map(|s| s.split(',').collect());
        let value: Vec<Value> = found
            .into_iter()
            .map(|i| match &select {
                Some(props) => {
                    let mut m = Map::new();
                    if let Some(t) = i.get("@odata.type") {
                        m.insert("@odata.type".into(), t.clone());
                    }
                    for p in props {
                        if let Some(v) = i.get(*p) {
                            m.insert((*p).to_string(), v.clone());
                        }
                    }
                    Value::Object(m)
                }
                None => i.clone(),
            })
            .collect();
        let mut body =
            json!({"@odata.context": format!("{origin}/v1.0/$metadata#{coll}"), "value": value});
        if let Some(link) = next_link {
            body["@odata.nextLink"] = json!(link);
        }
        json_resp(200, &body)
    };
    match (method.as_str(), seg.as_slice()) {
        ("GET", ["users"]) => collection_get(st, "users"),
        ("GET", ["groups"]) => collection_get(st, "groups"),
        ("GET", ["groups", gid, "members"]) => collection_get(st, &format!("groups/{gid}/members")),
        ("GET", ["users", id]) => match st.users.get(*id) {
            Some(u) => json_resp(200, &user_view(&origin, u)),
            None => not_found(id),
        },
        ("POST", ["users"]) => {
            let Some(b) = json_body.as_object() else {
                return bad("Unable to read JSON request payload.");
            };
            if let Some(r) = check_properties(b, USER_PROPERTIES, "user") {
                return r;
            }
            for k in [
                "accountEnabled",
                "displayName",
                "mailNickname",
                "userPrincipalName",
            ] {
                let present = match k {
                    "accountEnabled" => b.get(k).is_some_and(Value::is_boolean),
                    _ => b
                        .get(k)
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.trim().is_empty()),
                };
                if !present {
                    return bad(format!(
                        "Invalid value specified for property '{k}' of resource 'User'."
                    ));
                }
            }
            let Some(pp) = b.get("passwordProfile") else {
                return bad(
                    "Property passwordProfile.password value is required but is empty or missing.",
                );
            };
            if let Some(r) = check_password_profile(pp) {
                return r;
            }
            let upn = b["userPrincipalName"].as_str().unwrap_or_default();
            if let Some(r) = check_upn(st, upn, None) {
                return r;
            }
            let nick = b["mailNickname"].as_str().unwrap_or_default();
            if nick
                .chars()
                .any(|c| " @()\\[]\";:<>,".contains(c) || !c.is_ascii())
            {
                return bad(
                    "Invalid value specified for property 'mailNickname' of resource 'User'.",
                );
            }
            let id = uuid::Uuid::new_v4().to_string();
            let mut u = b.clone();
            u.insert("id".into(), json!(id));
            // Graph's default for accounts created in the tenant.
            u.entry("userType").or_insert(json!("Member"));
            let u = Value::Object(u);
            st.users.insert(id, u.clone());
            json_resp(201, &user_view(&origin, &u))
        }
        ("PATCH", ["users", id]) => {
            let id = id.to_string();
            let Some(b) = json_body.as_object() else {
                return bad("Unable to read JSON request payload.");
            };
            if !st.users.contains_key(&id) {
                return not_found(&id);
            }
            if let Some(r) = check_properties(b, USER_PROPERTIES, "user") {
                return r;
            }
            for k in [
                "accountEnabled",
                "displayName",
                "mailNickname",
                "userPrincipalName",
            ] {
                if b.get(k).is_some_and(Value::is_null) {
                    return bad(format!(
                        "Invalid value specified for property '{k}' of resource 'User'."
                    ));
                }
            }
            if let Some(pp) = b.get("passwordProfile")
                && let Some(r) = check_password_profile(pp)
            {
                return r;
            }
            if let Some(upn) = b.get("userPrincipalName").and_then(Value::as_str)
                && let Some(r) = check_upn(st, upn, Some(&id))
            {
                return r;
            }
            if let Some(Value::Object(u)) = st.users.get_mut(&id) {
                for (k, v) in b {
                    if v.is_null() {
                        u.remove(k);
                    } else {
                        u.insert(k.clone(), v.clone());
                    }
                }
            }
            empty(204)
        }
        ("DELETE", ["users", id]) => {
            if st.users.remove(*id).is_none() {
                return not_found(id);
            }
            st.members.retain(|(_, m)| m != id);
            empty(204)
        }
        ("POST", ["groups"]) => {
            let Some(b) = json_body.as_object() else {
                return bad("Unable to read JSON request payload.");
            };
            if let Some(r) = check_properties(b, GROUP_PROPERTIES, "group") {
                return r;
            }
            for k in ["displayName", "mailNickname"] {
                if b.get(k)
                    .and_then(Value::as_str)
                    .is_none_or(|s| s.trim().is_empty())
                {
                    return bad(format!(
                        "Invalid value specified for property '{k}' of resource 'Group'."
                    ));
                }
            }
            let (Some(mail), Some(sec)) = (
                b.get("mailEnabled").and_then(Value::as_bool),
                b.get("securityEnabled").and_then(Value::as_bool),
            ) else {
                return bad(
                    "Invalid value specified for property 'mailEnabled' of resource 'Group'.",
                );
            };
            let unified = b
                .get("groupTypes")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|x| x == "Unified"));
            if mail && !unified {
                // Mail-enabled security groups and distribution lists: Exchange only.
                return bad(
                    "Creating mail-enabled security groups or distribution lists is not supported.",
                );
            }
            let id = uuid::Uuid::new_v4().to_string();
            let mut g: Value = serde_json::from_str(GROUP_FIXTURE).expect("group fixture");
            g["@odata.context"] = json!(format!("{origin}/v1.0/$metadata#groups/$entity"));
            g["id"] = json!(id);
            g["@odata.id"] = json!(format!(
                "{origin}/v2/{TENANT}/directoryObjects/{id}/Microsoft.DirectoryServices.Group"
            ));
            g["description"] = b.get("description").cloned().unwrap_or(Value::Null);
            g["displayName"] = b["displayName"].clone();
            g["mailNickname"] = b["mailNickname"].clone();
            g["mailEnabled"] = json!(mail);
            g["securityEnabled"] = json!(sec);
            g["groupTypes"] = b.get("groupTypes").cloned().unwrap_or(json!([]));
            st.groups.insert(id, g.clone());
            json_resp(201, &g)
        }
        ("PATCH", ["groups", id]) => {
            let id = id.to_string();
            let Some(b) = json_body.as_object() else {
                return bad("Unable to read JSON request payload.");
            };
            if let Some(r) = check_properties(b, GROUP_PROPERTIES, "group") {
                return r;
            }
            let Some(Value::Object(g)) = st.groups.get_mut(&id) else {
                return not_found(&id);
            };
            for (k, v) in b {
                g.insert(k.clone(), v.clone());
            }
            empty(204)
        }
        ("DELETE", ["groups", id]) => {
            if st.groups.remove(*id).is_none() {
                return not_found(id);
            }
            st.members.retain(|(g, _)| g != id);
            empty(204)
        }
        ("POST", ["groups", gid, "members", "$ref"]) => {
            let gid = gid.to_string();
            let Some(odata_id) = json_body.get("@odata.id").and_then(Value::as_str) else {
                return bad("Unable to read JSON request payload.");
            };
            // `https://graph.microsoft.com/v1.0/directoryObjects/{id}` (this fake's origin
            // standing in for Graph's).
            let member = [origin.as_str(), "https://graph.microsoft.com"]
                .iter()
                .find_map(|o| odata_id.strip_prefix(&format!("{o}/v1.0/directoryObjects/")))
                .filter(|m| !m.is_empty() && !m.contains('/'));
            let Some(member) = member.map(str::to_string) else {
                return bad(format!("Invalid object identifier '{odata_id}'."));
            };
            if !st.groups.contains_key(&gid) {
                return not_found(&gid);
            }
            if !st.users.contains_key(&member) && !st.groups.contains_key(&member) {
                return not_found(&member);
            }
            if !st.members.insert((gid, member)) {
                return json_resp(
                    400,
                    &serde_json::from_str::<Value>(include_str!(
                        "../fixtures/graph/error_member_exists.json"
                    ))
                    .expect("fixture"),
                );
            }
            empty(204)
        }
        ("DELETE", ["groups", gid, "members", uid, "$ref"]) => {
            if !st.groups.contains_key(*gid) {
                return not_found(gid);
            }
            if !st.members.remove(&(gid.to_string(), uid.to_string())) {
                return not_found(uid);
            }
            empty(204)
        }
        _ => err(
            400,
            "BadRequest",
            format!(
                "Resource not found for the segment '{}'.",
                seg.first().copied().unwrap_or("")
            ),
        ),
    }
}
