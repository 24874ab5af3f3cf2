//! A fake Salesforce org: the OAuth 2.0 token endpoint (client credentials flow) and the
//! REST API resources the connector uses (`sobjects/User`, `User/{id}/password`,
//! `sobjects/Group`, `sobjects/GroupMember`, `query`, `limits`; in memory), written from
//! Salesforce's documentation (see `tests/fixtures/README.md`, section `salesforce/`).
//! Errors are Salesforce's list `[{"message","errorCode","fields"}]`.
//!
//! It answers only what Salesforce answers and refuses what Salesforce refuses: a token
//! request with a wrong client or secret, or for a connected app without a run-as user
//! (400 OAuth errors); a call without a valid session (401 `INVALID_SESSION_ID`); a User
//! without its required fields (400 `REQUIRED_FIELD_MISSING`), an existing Username (400
//! `DUPLICATE_USERNAME`), a user name or e-mail that is not an address
//! (`INVALID_EMAIL_ADDRESS`), an unknown profile (`FIELD_INTEGRITY_EXCEPTION`), a value
//! outside a restricted picklist, an over-long `Alias`, an unknown field (`INVALID_FIELD`);
//! `DELETE` on a User (405: users cannot be deleted); a weak password
//! (`INVALID_NEW_PASSWORD`); a malformed SOQL query (`MALFORMED_QUERY`, so an unescaped
//! quote fails as it would); duplicate group members (`DUPLICATE_VALUE`); unknown records
//! (404 `NOT_FOUND`). Scripted faults (e.g. 403 `REQUEST_LIMIT_EXCEEDED`) answer first.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

/// The connected app's run-as user (its id ends the token answer's identity URL).
pub const RUN_AS_USER_ID: &str = "0055g00000RunAsAAA";
/// The one profile of the org (`ProfileId` must name it).
pub const PROFILE_ID: &str = "00e5g000001AbCdAAK";
pub const TOKEN_FIXTURE: &str = include_str!("../fixtures/salesforce/token_response.json");
pub const LIMITS_FIXTURE: &str = include_str!("../fixtures/salesforce/limits_response.json");

const USER_REQUIRED: &[&str] = &[
    "Username",
    "LastName",
    "Email",
    "Alias",
    "TimeZoneSidKey",
    "LocaleSidKey",
    "EmailEncodingKey",
    "ProfileId",
    "LanguageLocaleKey",
];
const USER_FIELDS: &[&str] = &[
    "FirstName",
    "CommunityNickname",
    "IsActive",
    "Title",
    "Department",
    "EmployeeNumber",
    "CompanyName",
    "MobilePhone",
    "Phone",
    "FederationIdentifier",
    // A custom field of this org.
    "Region__c",
];
const TIME_ZONES: &[&str] = &[
    "America/Los_Angeles",
    "America/New_York",
    "Europe/Paris",
    "Europe/London",
    "GMT",
];
const LOCALES: &[&str] = &["en_US", "en_GB", "fr", "fr_FR", "de", "de_DE"];
const ENCODINGS: &[&str] = &["UTF-8", "ISO-8859-1", "Shift_JIS"];

/// A scripted answer: status, extra headers, JSON body (`Null`: none).
#[derive(Clone, Debug)]
pub struct SalesforceFault {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl SalesforceFault {
    pub fn error(status: u16, code: &str, message: &str) -> SalesforceFault {
        SalesforceFault {
            status,
            headers: Vec::new(),
            body: json!([{"message": message, "errorCode": code}]),
        }
    }

    /// The org's daily API request limit is used up (403 `REQUEST_LIMIT_EXCEEDED`).
    pub fn limit_exceeded() -> SalesforceFault {
        SalesforceFault {
            status: 403,
            headers: Vec::new(),
            body: serde_json::from_str(include_str!(
                "../fixtures/salesforce/error_request_limit.json"
            ))
            .expect("fixture"),
        }
    }
}

#[derive(Default)]
pub struct SalesforceState {
    /// By Id: the User record (its fields).
    pub users: BTreeMap<String, Map<String, Value>>,
    pub passwords: HashMap<String, String>,
    pub groups: BTreeMap<String, Map<String, Value>>,
    pub group_members: BTreeMap<String, Map<String, Value>>,
    pub tokens: HashMap<String, Instant>,
    pub token_requests: usize,
    /// `METHOD path?query` of every REST request (token requests as `TOKEN`).
    pub log: Vec<String>,
    faults: Vec<SalesforceFault>,
    /// How long a session (token) lasts.
    pub session_lifetime: Duration,
    /// The connected app has no run-as user for the client credentials flow.
    pub no_run_as_user: bool,
    /// Records per query batch (Salesforce: 2,000 by default, fewer as it sees fit).
    pub batch_size: usize,
    /// Open query cursors: locator -> (the query's `totalSize`, the records still to
    /// return).
    cursors: HashMap<String, (usize, Vec<Value>)>,
    /// `(METHOD path, JSON body or null)` of every request but `GET`s, in order.
    pub writes: Vec<(String, Value)>,
    next_id: u64,
}

impl SalesforceState {
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:012}AAA", self.next_id)
    }
}

struct Shared {
    state: Mutex<SalesforceState>,
    client_id: String,
    client_secret: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SalesforceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct FakeSalesforce {
    pub addr: SocketAddr,
    /// The My Domain URL (`instance_url` and `login_url`): `http://127.0.0.1:PORT`.
    pub base: String,
    pub client_id: String,
    pub client_secret: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSalesforce {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSalesforce {
    pub async fn start() -> FakeSalesforce {
        super::allow_loopback_peers();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client_id = format!("3MVG9{}", uuid::Uuid::new_v4().simple());
        let client_secret = format!("{}", uuid::Uuid::new_v4().simple()).to_uppercase();
        let shared = Arc::new(Shared {
            state: Mutex::new(SalesforceState {
                session_lifetime: Duration::from_secs(2 * 3600),
                batch_size: 2000,
                ..SalesforceState::default()
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
        FakeSalesforce {
            addr,
            base: format!("http://{addr}"),
            client_id,
            client_secret,
            shared,
            task,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, SalesforceState> {
        self.shared.lock()
    }

    /// The next REST request (not token requests) gets `fault` (queued in order).
    pub fn fail(&self, fault: SalesforceFault) {
        self.shared.lock().faults.push(fault);
    }

    /// Every open query locator expires (Salesforce drops one after 15 minutes unused).
    pub fn expire_query_locators(&self) {
        self.shared.lock().cursors.clear();
    }

    /// Every session ends (as when an admin revokes them, or they time out).
    pub fn revoke_sessions(&self) {
        self.shared.lock().tokens.clear();
    }

    pub fn user(&self, username: &str) -> Option<Map<String, Value>> {
        self.state()
            .users
            .values()
            .find(|u| {
                u.get("Username")
                    .and_then(Value::as_str)
                    .is_some_and(|x| x.eq_ignore_ascii_case(username))
            })
            .cloned()
    }

    /// Names of the groups `username` is a member of.
    pub fn groups_of(&self, username: &str) -> Vec<String> {
        let Some(u) = self.user(username) else {
            return Vec::new();
        };
        let st = self.state();
        st.group_members
            .values()
            .filter(|m| m.get("UserOrGroupId") == u.get("Id"))
            .filter_map(|m| m.get("GroupId").and_then(Value::as_str))
            .filter_map(|g| st.groups.get(g))
            .filter_map(|g| g.get("Name").and_then(Value::as_str).map(str::to_string))
            .collect()
    }
}

fn json_resp(status: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn sf_err(status: u16, code: &str, message: impl Into<String>, fields: &[&str]) -> Response {
    json_resp(
        status,
        &json!([{"message": message.into(), "errorCode": code, "fields": fields}]),
    )
}

fn fixture(status: u16, body: &str) -> Response {
    json_resp(
        status,
        &serde_json::from_str::<Value>(body).expect("fixture"),
    )
}

fn not_found() -> Response {
    fixture(
        404,
        include_str!("../fixtures/salesforce/error_not_found.json"),
    )
}

fn empty(status: u16) -> Response {
    StatusCode::from_u16(status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn token_endpoint(s: &Shared, st: &mut SalesforceState, origin: &str, body: &[u8]) -> Response {
    st.token_requests += 1;
    st.log.push("TOKEN".into());
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let oauth = |error: &str, description: &str| {
        json_resp(
            400,
            &json!({"error": error, "error_description": description}),
        )
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth("unsupported_grant_type", "grant type not supported");
    }
    if form.get("client_id") != Some(&s.client_id) {
        return oauth("invalid_client_id", "client identifier invalid");
    }
    if !form
        .get("client_secret")
        .is_some_and(|x| constant_time_eq(x.as_bytes(), s.client_secret.as_bytes()))
    {
        return fixture(400, include_str!("../fixtures/salesforce/token_error.json"));
    }
    if st.no_run_as_user {
        return oauth("invalid_grant", "no client credentials user enabled");
    }
    let token = format!("00D5g000004XyZ!AQ{}", uuid::Uuid::new_v4().simple());
    st.tokens
        .insert(token.clone(), Instant::now() + st.session_lifetime);
    let mut out: Value = serde_json::from_str(TOKEN_FIXTURE).expect("token fixture");
    out["access_token"] = json!(token);
    out["instance_url"] = json!(origin);
    out["id"] = json!(format!("{origin}/id/00D5g000004XyZAAA/{RUN_AS_USER_ID}"));
    out["issued_at"] = json!(chrono::Utc::now().timestamp_millis().to_string());
    json_resp(200, &out)
}

/// A parsed SOQL statement of the subset the connector sends:
/// `SELECT f1, f2 FROM obj [WHERE f = 'v' | f IN ('v', …) [AND …]…] [ORDER BY Id]`
/// (string literals with SOQL's backslash escapes).
#[derive(Debug, PartialEq)]
pub struct Soql {
    pub fields: Vec<String>,
    pub object: String,
    /// `(field, accepted values)`: `=` is one value, `IN` a list.
    pub conds: Vec<(String, Vec<String>)>,
    /// `(field, bound)` of `field > 'bound'` (string order, as for Ids).
    pub greater: Vec<(String, String)>,
    pub order_by_id: bool,
}

fn ident_end(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

/// A quoted SOQL string at the start of `s`: `(value, rest)`. `None`: malformed.
fn soql_literal(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('\'')?.char_indices();
    let mut value = String::new();
    let end = loop {
        let (i, c) = chars.next()?;
        match c {
            '\\' => {
                let (_, e) = chars.next()?;
                value.push(match e {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    '"' | '\'' | '\\' => e,
                    _ => return None,
                });
            }
            '\'' => break i + 1,
            c => value.push(c),
        }
    };
    // `end` counts from after the opening quote.
    Some((value, s[1 + end..].trim_start()))
}

/// `None`: malformed (as Salesforce's `MALFORMED_QUERY`).
pub fn parse_soql(q: &str) -> Option<Soql> {
    let q = q.trim();
    let rest = strip_prefix_ci(q, "SELECT ")?;
    let from = rest.to_ascii_uppercase().find(" FROM ")?;
    let fields: Vec<String> = rest[..from]
        .split(',')
        .map(|f| f.trim().to_string())
        .collect();
    if fields
        .iter()
        .any(|f| f.is_empty() || ident_end(f) != f.len())
    {
        return None;
    }
    let rest = rest[from + " FROM ".len()..].trim_start();
    let obj_end = ident_end(rest);
    let object = rest[..obj_end].to_string();
    if object.is_empty() {
        return None;
    }
    let mut rest = rest[obj_end..].trim_start();
    let mut soql = Soql {
        fields,
        object,
        conds: Vec::new(),
        greater: Vec::new(),
        order_by_id: false,
    };
    if let Some(r) = strip_prefix_ci(rest, "WHERE ") {
        rest = r.trim_start();
        loop {
            let field_end = ident_end(rest);
            let field = rest[..field_end].to_string();
            if field.is_empty() {
                return None;
            }
            rest = rest[field_end..].trim_start();
            if let Some(r) = rest.strip_prefix('=') {
                let (value, r) = soql_literal(r.trim_start())?;
                soql.conds.push((field, vec![value]));
                rest = r;
            } else if let Some(r) = rest.strip_prefix('>') {
                let (value, r) = soql_literal(r.trim_start())?;
                soql.greater.push((field, value));
                rest = r;
            } else {
                let r = strip_prefix_ci(rest, "IN")?
                    .trim_start()
                    .strip_prefix('(')?;
                let mut r = r.trim_start();
                let mut values = Vec::new();
                loop {
                    let (value, after) = soql_literal(r)?;
                    values.push(value);
                    if let Some(a) = after.strip_prefix(',') {
                        r = a.trim_start();
                    } else {
                        r = after.strip_prefix(')')?.trim_start();
                        break;
                    }
                }
                soql.conds.push((field, values));
                rest = r;
            }
            match strip_prefix_ci(rest, "AND ") {
                Some(r) => rest = r.trim_start(),
                None => break,
            }
        }
    }
    if let Some(r) = strip_prefix_ci(rest, "ORDER BY Id") {
        soql.order_by_id = true;
        rest = r.trim_start();
    }
    rest.is_empty().then_some(soql)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

fn is_address(s: &str) -> bool {
    s.split_once('@').is_some_and(|(l, d)| {
        !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
    }) && !s.contains(' ')
}

/// Checks User fields as Salesforce does; `existing`: the record being updated.
fn check_user(
    st: &SalesforceState,
    b: &Map<String, Value>,
    existing: Option<&str>,
) -> Option<Response> {
    if let Some(k) = b
        .keys()
        .find(|k| !USER_REQUIRED.contains(&k.as_str()) && !USER_FIELDS.contains(&k.as_str()))
    {
        return Some(sf_err(
            400,
            "INVALID_FIELD",
            format!("No such column '{k}' on sobject of type User"),
            &[],
        ));
    }
    let blank = |k: &str| {
        b.get(k)
            .is_none_or(|v| v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty()))
    };
    let missing: Vec<&str> = USER_REQUIRED
        .iter()
        .copied()
        .filter(|k| {
            if existing.is_some() {
                b.contains_key(*k) && blank(k)
            } else {
                blank(k)
            }
        })
        .collect();
    if !missing.is_empty() {
        return Some(sf_err(
            400,
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{}]", missing.join(", ")),
            &missing,
        ));
    }
    let s = |k: &str| b.get(k).and_then(Value::as_str);
    for (k, label) in [("Username", "Username"), ("Email", "Email")] {
        if let Some(v) = s(k)
            && !is_address(v)
        {
            return Some(sf_err(
                400,
                "INVALID_EMAIL_ADDRESS",
                format!("{label}: invalid email address: {v}"),
                &[k],
            ));
        }
    }
    for (k, max) in [
        ("Alias", 8),
        ("CommunityNickname", 40),
        ("Username", 80),
        ("LastName", 80),
    ] {
        if let Some(v) = s(k)
            && v.chars().count() > max
        {
            return Some(sf_err(
                400,
                "STRING_TOO_LONG",
                format!("{k}: data value too large: {v} (max length={max})"),
                &[k],
            ));
        }
    }
    for (k, label, allowed) in [
        ("TimeZoneSidKey", "Time Zone", TIME_ZONES),
        ("LocaleSidKey", "Locale", LOCALES),
        ("LanguageLocaleKey", "Language", LOCALES),
        ("EmailEncodingKey", "Email Encoding", ENCODINGS),
    ] {
        if let Some(v) = s(k)
            && !allowed.contains(&v)
        {
            return Some(sf_err(
                400,
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                format!("{label}: bad value for restricted picklist field: {v}"),
                &[k],
            ));
        }
    }
    if let Some(p) = s("ProfileId")
        && p != PROFILE_ID
    {
        return Some(sf_err(
            400,
            "FIELD_INTEGRITY_EXCEPTION",
            format!("Profile ID: id value of incorrect type: {p}"),
            &["ProfileId"],
        ));
    }
    if let Some(name) = s("Username") {
        let taken = st.users.iter().any(|(id, u)| {
            Some(id.as_str()) != existing
                && u.get("Username")
                    .and_then(Value::as_str)
                    .is_some_and(|x| x.eq_ignore_ascii_case(name))
        });
        if taken {
            return Some(fixture(
                400,
                include_str!("../fixtures/salesforce/error_duplicate_username.json"),
            ));
        }
    }
    if let Some(v) = b.get("IsActive")
        && !v.is_boolean()
    {
        return Some(sf_err(
            400,
            "JSON_PARSER_ERROR",
            format!("Cannot deserialize instance of boolean from {v} value"),
            &[],
        ));
    }
    None
}

/// A query answer: one batch of `records`, the rest behind a `nextRecordsUrl`
/// (*Execute a SOQL Query*: `done: false` and the locator's URL while more remain).
fn query_answer(
    st: &mut SalesforceState,
    version: &str,
    total: usize,
    mut records: Vec<Value>,
) -> Response {
    let batch = st.batch_size.max(1);
    if records.len() <= batch {
        return json_resp(
            200,
            &json!({"totalSize": total, "done": true, "records": records}),
        );
    }
    let rest = records.split_off(batch);
    st.next_id += 1;
    let locator = format!("01g{:012}AAW-{batch}", st.next_id);
    st.cursors.insert(locator.clone(), (total, rest));
    json_resp(
        200,
        &json!({"totalSize": total, "done": false, "records": records,
                "nextRecordsUrl": format!("/services/data/{version}/query/{locator}")}),
    )
}

fn developer_name_ok(n: &str) -> bool {
    n.starts_with(|c: char| c.is_ascii_alphabetic())
        && !n.ends_with('_')
        && !n.contains("__")
        && n.len() <= 80
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
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
    if path == "/services/oauth2/token" {
        if method != Method::POST {
            return empty(405);
        }
        return token_endpoint(&s, st, &origin, &body);
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
    let session_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| st.tokens.get(t))
        .is_some_and(|exp| *exp > Instant::now());
    if !session_ok {
        return fixture(
            401,
            include_str!("../fixtures/salesforce/error_invalid_session.json"),
        );
    }
    let Some(rest) = path.strip_prefix("/services/data/") else {
        return not_found();
    };
    let seg: Vec<&str> = rest.split('/').collect();
    let version_ok = seg
        .first()
        .and_then(|v| v.strip_prefix('v'))
        .is_some_and(|v| {
            v.split_once('.')
                .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b == "0")))
                .is_some_and(|(major, zero)| zero && (20..=62).contains(&major))
        });
    if !version_ok {
        return not_found();
    }
    let json_body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                return sf_err(
                    400,
                    "JSON_PARSER_ERROR",
                    "Unexpected character in the request body",
                    &[],
                );
            }
        }
    };
    let obj_body = || json_body.as_object().cloned();
    match (method.as_str(), &seg[1..]) {
        ("GET", ["limits"]) => fixture(200, LIMITS_FIXTURE),
        ("GET", ["query"]) => {
            let Some(soql) = q.get("q") else {
                return sf_err(
                    400,
                    "MALFORMED_QUERY",
                    "A query string has to be specified",
                    &[],
                );
            };
            let Some(parsed) = parse_soql(soql) else {
                return sf_err(
                    400,
                    "MALFORMED_QUERY",
                    format!("unexpected token in: {soql}"),
                    &[],
                );
            };
            let obj = parsed.object.clone();
            let (table, known): (&BTreeMap<String, Map<String, Value>>, Vec<&str>) =
                match obj.as_str() {
                    "User" => (
                        &st.users,
                        ["Id", "UserType", "Name"]
                            .iter()
                            .chain(USER_REQUIRED)
                            .chain(USER_FIELDS)
                            .copied()
                            .collect(),
                    ),
                    "Group" => (&st.groups, vec!["Id", "Name", "DeveloperName", "Type"]),
                    "GroupMember" => (&st.group_members, vec!["Id", "GroupId", "UserOrGroupId"]),
                    _ => {
                        return sf_err(
                            400,
                            "INVALID_TYPE",
                            format!("sObject type '{obj}' is not supported."),
                            &[],
                        );
                    }
                };
            if let Some(f) = parsed
                .fields
                .iter()
                .chain(parsed.conds.iter().map(|(f, _)| f))
                .chain(parsed.greater.iter().map(|(f, _)| f))
                .find(|f| !known.contains(&f.as_str()))
            {
                return sf_err(
                    400,
                    "INVALID_FIELD",
                    format!("No such column '{f}' on entity '{obj}'."),
                    &[],
                );
            }
            // The table is ordered by Id already (`ORDER BY Id` or not).
            let records: Vec<Value> = table
                .values()
                .filter(|r| {
                    parsed.conds.iter().all(|(f, vs)| {
                        r.get(f)
                            .and_then(Value::as_str)
                            .is_some_and(|x| vs.iter().any(|v| x.eq_ignore_ascii_case(v)))
                    }) && parsed.greater.iter().all(|(f, bound)| {
                        r.get(f)
                            .and_then(Value::as_str)
                            .is_some_and(|x| x > bound.as_str())
                    })
                })
                .map(|r| {
                    let id = r.get("Id").and_then(Value::as_str).unwrap_or("");
                    let mut out = Map::new();
                    out.insert(
                        "attributes".into(),
                        json!({"type": obj,
                        "url": format!("/services/data/{}/sobjects/{obj}/{id}", seg[0])}),
                    );
                    for f in &parsed.fields {
                        let v = match (f.as_str(), obj.as_str()) {
                            // Compound, read-only: first and last name.
                            ("Name", "User") => {
                                let part = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
                                json!(format!("{} {}", part("FirstName"), part("LastName")).trim())
                            }
                            _ => r.get(f).cloned().unwrap_or(Value::Null),
                        };
                        out.insert(f.clone(), v);
                    }
                    Value::Object(out)
                })
                .collect();
            query_answer(st, seg[0], records.len(), records)
        }
        ("GET", ["query", locator]) => {
            let locator = locator.to_string();
            match st.cursors.remove(&locator) {
                Some((total, records)) => query_answer(st, seg[0], total, records),
                None => sf_err(400, "INVALID_QUERY_LOCATOR", "invalid query locator", &[]),
            }
        }
        ("POST", ["sobjects", "User"]) => {
            let Some(b) = obj_body() else {
                return sf_err(400, "JSON_PARSER_ERROR", "Expected an object", &[]);
            };
            if let Some(r) = check_user(st, &b, None) {
                return r;
            }
            let id = st.new_id("005");
            let mut u = b;
            u.entry("IsActive").or_insert(json!(true));
            // From the profile's license: the org's one profile is a standard one.
            u.insert("UserType".into(), json!("Standard"));
            u.insert("Id".into(), json!(id));
            st.users.insert(id.clone(), u);
            json_resp(201, &json!({"id": id, "success": true, "errors": []}))
        }
        ("PATCH", ["sobjects", "User", id]) => {
            let id = id.to_string();
            let Some(b) = obj_body() else {
                return sf_err(400, "JSON_PARSER_ERROR", "Expected an object", &[]);
            };
            if !st.users.contains_key(&id) {
                return not_found();
            }
            if let Some(r) = check_user(st, &b, Some(&id)) {
                return r;
            }
            if let Some(u) = st.users.get_mut(&id) {
                for (k, v) in b {
                    if v.is_null() {
                        u.remove(&k);
                    } else {
                        u.insert(k, v);
                    }
                }
            }
            empty(204)
        }
        ("DELETE", ["sobjects", "User", _]) => fixture(
            405,
            include_str!("../fixtures/salesforce/error_delete_user.json"),
        ),
        ("POST", ["sobjects", "User", id, "password"]) => {
            let id = id.to_string();
            if !st.users.contains_key(&id) {
                return not_found();
            }
            let Some(p) = json_body.get("NewPassword").and_then(Value::as_str) else {
                return sf_err(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    "Required fields are missing: [NewPassword]",
                    &["NewPassword"],
                );
            };
            if p.chars().count() < 8 {
                return sf_err(
                    400,
                    "INVALID_NEW_PASSWORD",
                    "Your password must be at least 8 characters long.",
                    &[],
                );
            }
            if !(p.chars().any(|c| c.is_alphabetic()) && p.chars().any(|c| c.is_ascii_digit())) {
                return sf_err(
                    400,
                    "INVALID_NEW_PASSWORD",
                    "Your password must include letters and numbers.",
                    &[],
                );
            }
            st.passwords.insert(id, p.to_string());
            empty(204)
        }
        ("POST", ["sobjects", "Group"]) => {
            let Some(mut b) = obj_body() else {
                return sf_err(400, "JSON_PARSER_ERROR", "Expected an object", &[]);
            };
            if let Some(k) = b.keys().find(|k| {
                !["Name", "DeveloperName", "Type", "DoesIncludeBosses"].contains(&k.as_str())
            }) {
                return sf_err(
                    400,
                    "INVALID_FIELD",
                    format!("No such column '{k}' on sobject of type Group"),
                    &[],
                );
            }
            let Some(name) = b
                .get("Name")
                .and_then(Value::as_str)
                .filter(|n| !n.trim().is_empty())
                .map(str::to_string)
            else {
                return sf_err(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    "Required fields are missing: [Name]",
                    &["Name"],
                );
            };
            let dev = b
                .get("DeveloperName")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
            if !developer_name_ok(&dev) {
                return sf_err(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    "The Group Name field can only contain underscores and alphanumeric characters. It must be unique, begin with a letter, not include spaces, not end with an underscore, and not contain two consecutive underscores.",
                    &["DeveloperName"],
                );
            }
            if st.groups.values().any(|g| {
                g.get("DeveloperName")
                    .and_then(Value::as_str)
                    .is_some_and(|d| d.eq_ignore_ascii_case(&dev))
            }) {
                return sf_err(
                    400,
                    "DUPLICATE_DEVELOPER_NAME",
                    "This Group Name already exists or has been previously used. Please choose a different name.",
                    &["DeveloperName"],
                );
            }
            match b.get("Type").and_then(Value::as_str) {
                None | Some("Regular") => {}
                Some(t) => {
                    return sf_err(
                        400,
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        format!("Type: bad value for restricted picklist field: {t}"),
                        &["Type"],
                    );
                }
            }
            let id = st.new_id("00G");
            b.insert("DeveloperName".into(), json!(dev));
            b.insert("Type".into(), json!("Regular"));
            b.insert("Id".into(), json!(id));
            st.groups.insert(id.clone(), b);
            json_resp(201, &json!({"id": id, "success": true, "errors": []}))
        }
        ("PATCH", ["sobjects", "Group", id]) => {
            let id = id.to_string();
            let Some(b) = obj_body() else {
                return sf_err(400, "JSON_PARSER_ERROR", "Expected an object", &[]);
            };
            let Some(g) = st.groups.get_mut(&id) else {
                return not_found();
            };
            for (k, v) in b {
                if k != "Name" {
                    return sf_err(
                        400,
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        format!("Unable to create/update fields: {k}."),
                        &[&k],
                    );
                }
                g.insert(k, v);
            }
            empty(204)
        }
        ("DELETE", ["sobjects", "Group", id]) => {
            if st.groups.remove(*id).is_none() {
                return not_found();
            }
            st.group_members
                .retain(|_, m| m.get("GroupId").and_then(Value::as_str) != Some(id));
            empty(204)
        }
        ("POST", ["sobjects", "GroupMember"]) => {
            let Some(b) = obj_body() else {
                return sf_err(400, "JSON_PARSER_ERROR", "Expected an object", &[]);
            };
            let gid = b
                .get("GroupId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mid = b
                .get("UserOrGroupId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mut missing = Vec::new();
            if gid.is_empty() {
                missing.push("GroupId");
            }
            if mid.is_empty() {
                missing.push("UserOrGroupId");
            }
            if !missing.is_empty() {
                return sf_err(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{}]", missing.join(", ")),
                    &missing,
                );
            }
            if !st.groups.contains_key(&gid) {
                return sf_err(
                    400,
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    &["GroupId"],
                );
            }
            if !st.users.contains_key(&mid) && !st.groups.contains_key(&mid) {
                return sf_err(
                    400,
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    &["UserOrGroupId"],
                );
            }
            let exists = st.group_members.values().any(|m| {
                m.get("GroupId").and_then(Value::as_str) == Some(gid.as_str())
                    && m.get("UserOrGroupId").and_then(Value::as_str) == Some(mid.as_str())
            });
            if exists {
                return sf_err(
                    400,
                    "DUPLICATE_VALUE",
                    "duplicate value found: <unknown> duplicates value on record with id: <unknown>",
                    &[],
                );
            }
            let id = st.new_id("011");
            let mut m = Map::new();
            m.insert("Id".into(), json!(id));
            m.insert("GroupId".into(), json!(gid));
            m.insert("UserOrGroupId".into(), json!(mid));
            st.group_members.insert(id.clone(), m);
            json_resp(201, &json!({"id": id, "success": true, "errors": []}))
        }
        ("DELETE", ["sobjects", "GroupMember", id]) => {
            if st.group_members.remove(*id).is_none() {
                return not_found();
            }
            empty(204)
        }
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soql_subset() {
        let p = parse_soql(r"SELECT Id FROM User WHERE Username = 'o\'b@x.test'").unwrap();
        assert_eq!((p.object.as_str(), p.fields.len()), ("User", 1));
        assert_eq!(
            p.conds,
            vec![("Username".into(), vec!["o'b@x.test".into()])]
        );
        assert_eq!(
            parse_soql("SELECT Id FROM GroupMember WHERE GroupId = 'a' AND UserOrGroupId = 'b'")
                .unwrap()
                .conds
                .len(),
            2
        );
        let p = parse_soql(
            "SELECT GroupId, UserOrGroupId FROM GroupMember WHERE GroupId IN ('a', 'b') ORDER BY Id",
        )
        .unwrap();
        assert_eq!(p.fields, ["GroupId", "UserOrGroupId"]);
        assert_eq!(
            p.conds,
            vec![("GroupId".into(), vec!["a".into(), "b".into()])]
        );
        assert!(p.order_by_id);
        let p = parse_soql(
            "SELECT Id FROM User WHERE UserType = 'Standard' AND Id > '005x' ORDER BY Id",
        )
        .unwrap();
        assert_eq!(p.greater, vec![("Id".into(), "005x".into())]);
        // An unescaped quote: malformed, as Salesforce would say.
        assert_eq!(
            parse_soql("SELECT Id FROM User WHERE Username = 'o'b'"),
            None
        );
    }
}
