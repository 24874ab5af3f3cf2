//! The Okta connector: users, groups and group memberships through the Okta Management
//! API (`{base_url}/api/v1/`), authenticated with an API token (`Authorization: SSWS …`).
//!
//! - the id of a user or a group on Okta is Okta's id (`00u…`, `00g…`): logins and group
//!   names can change without breaking the link;
//! - match: `GET /users/{login}` (any status, deactivated users included), accepted only
//!   when the answer's `profile.login` is the login asked for (Okta also resolves a login's
//!   short name);
//! - create: `POST /users?activate={active}` with the `profile` and, when one comes,
//!   `credentials.password.value` (400 `E0000001` "already exists" is a Conflict: the
//!   engine matches and links);
//! - update: `GET /users/{id}` (its status), `POST /users/{id}/lifecycle/activate?sendEmail=false`
//!   when the user is active again, `POST /users/{id}` (a partial update: the profile,
//!   cleared fields as `null`, the password as `credentials.password.value`), then
//!   `POST /users/{id}/lifecycle/deactivate?sendEmail=false` when inactive;
//! - deactivate: `lifecycle/deactivate` (already `DEPROVISIONED`: done);
//! - delete as Okta does it: `DELETE /users/{id}` deactivates an active user, a second
//!   `DELETE` deletes it (404 at any point: done);
//! - groups (`OKTA_GROUP`): `GET /groups?q=` (exact name kept), `POST /groups`
//!   `{"profile":{"name","description"}}`, rename with `PUT /groups/{id}`,
//!   `DELETE /groups/{id}`; members `PUT|DELETE /groups/{gid}/users/{uid}`;
//! - extra profile attributes through the mapping: a mapped `attributes` object
//!   (`{"target": "attributes.costCenter", …}`) is merged into the Okta profile.
//! - reconcile: users from `GET /users?limit=200` (every status but `DEPROVISIONED`, as
//!   Okta lists them), then `GET /users?filter=status eq "DEPROVISIONED"`, each following
//!   the `Link: <…?after=…>; rel="next"` header (only its `after` is kept: the token never
//!   goes to a host the link names); groups from `GET /groups?filter=type eq "OKTA_GROUP"`
//!   with members from `GET /groups/{id}/users`, paged the same way. A user is compared on
//!   the profile the connector writes, read back into SCIM ([`scim_of_profile`]), and on
//!   `active` (`STAGED` and `DEPROVISIONED` are inactive).
//!
//! Errors carry Okta's `errorCode`, `errorSummary` and `errorCauses` into the audit log;
//! 429 waits for `Retry-After`, else until `X-Rate-Limit-Reset` (epoch seconds).

use provisync_core::connector::{refused, str_at};
use std::fmt;

use reqwest::header;
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};

use crate::http::{
    ApplyCredentials, Credentials, HttpClient, HttpResponse, SetupError, check_target_url,
    error_for, join_url, vendor_error,
};
use provisync_core::connector::{Connector, ConnectorError, ListPage, TargetId};
use provisync_core::target::OktaTarget;
use provisync_scim::ResourceKind;

/// The Management API path under the org URL.
pub const API_PATH: [&str; 2] = ["api", "v1"];

/// Okta's scheme for API tokens in `Authorization`.
pub const SCHEME: &str = "SSWS";

/// Objects per listing page (Okta's maximum for users is 200).
pub const PAGE_SIZE: usize = 200;

/// The filter that lists deactivated users, which Okta's plain listing leaves out.
const DEPROVISIONED_FILTER: &str = "status eq \"DEPROVISIONED\"";

/// Only Okta-mastered groups: not the built-in `Everyone`, not app groups.
const GROUP_FILTER: &str = "type eq \"OKTA_GROUP\"";

/// The profile fields the connector writes (besides mapped `attributes`).
const REQUIRED: [&str; 4] = ["login", "email", "firstName", "lastName"];

/// A connector to one Okta org, with one API token.
#[derive(Clone)]
pub struct OktaConnector {
    base: Url,
    creds: Credentials,
    http: HttpClient,
}

impl fmt::Debug for OktaConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OktaConnector")
            .field("base", &self.base.as_str())
            .field("creds", &self.creds)
            .finish()
    }
}

/// A failed call with Okta's own `errorCode` and summary, when it gave them.
struct Failure {
    error: ConnectorError,
    code: Option<String>,
    summary: String,
}

impl From<ConnectorError> for Failure {
    fn from(error: ConnectorError) -> Self {
        Failure {
            error,
            code: None,
            summary: String::new(),
        }
    }
}

impl Failure {
    /// Okta's answer to a create whose unique field is taken: 400 `E0000001` with an
    /// "already exists" cause.
    fn already_exists(&self) -> bool {
        self.code.as_deref() == Some("E0000001") && self.summary.contains("already exists")
    }
}

impl OktaConnector {
    /// A connector on the process-wide HTTP client (default timeouts).
    pub fn new(target: &OktaTarget) -> Result<Self, SetupError> {
        Self::with_client(target, HttpClient::shared()?)
    }

    /// A connector on a given client (its own timeouts).
    pub fn with_client(target: &OktaTarget, http: HttpClient) -> Result<Self, SetupError> {
        let base =
            check_target_url(&target.base_url).map_err(|e| SetupError::Url(e.to_string()))?;
        let creds = Credentials::token(SCHEME, &target.token)?;
        Ok(OktaConnector { base, creds, http })
    }

    /// `{base}/api/v1/{segments}?{query}`, everything percent-encoded.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, ConnectorError> {
        join_url(&self.base, &[&API_PATH[..], segments].concat(), query)
            .ok_or_else(|| ConnectorError::Gone("the base URL cannot take a path".into()))
    }

    /// One request; `Ok` for 2xx, else the error with Okta's code and summary.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<HttpResponse, Failure> {
        let url = self.url(segments, query)?;
        let op = segments.first().copied().unwrap_or_default();
        let mut req = self
            .creds
            .apply(self.http.request(method.clone(), url))
            .header(header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req
                .header(header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let result = self.http.send(req).await;
        match &result {
            // Never the path or query: they hold logins and group names.
            Ok(r) => {
                tracing::debug!(%method, resource = op, status = r.status.as_u16(), "okta target")
            }
            Err(e) => tracing::debug!(%method, resource = op, error = %e, "okta target"),
        }
        let resp = result?;
        if resp.is_success() {
            return Ok(resp);
        }
        let (code, summary) = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .map(|v| vendor_error(&v))
            .unwrap_or_default();
        let summary = self.creds.scrub(&summary.unwrap_or_default());
        let error = match error_for(&resp, Some(&self.creds)) {
            ConnectorError::Refused {
                status: Some(401),
                reason,
            } => ConnectorError::Refused {
                status: Some(401),
                reason: format!(
                    "Okta did not accept the API token (revoked, expired after 30 days unused, or from another org): {reason}"
                ),
            },
            ConnectorError::Refused {
                status: Some(403),
                reason,
            } => ConnectorError::Refused {
                status: Some(403),
                reason: format!(
                    "the API token's administrator may not do this (the token needs an Organization or Super Administrator role): {reason}"
                ),
            },
            e => e,
        };
        Err(Failure {
            error,
            code,
            summary,
        })
    }

    /// One page of a listing (`segments`, `query`) from `after`: the objects and the
    /// `after` of the next page, from the `Link` header.
    async fn page(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        after: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), ConnectorError> {
        let limit = PAGE_SIZE.to_string();
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", &limit));
        if let Some(a) = after {
            q.push(("after", a));
        }
        let resp = self
            .call(Method::GET, segments, &q, None)
            .await
            .map_err(|f| f.error)?;
        let next = next_after(&resp);
        match resp.json()? {
            Value::Array(items) => Ok((items, next)),
            _ => Err(refused("Okta answered a listing that is not a list")),
        }
    }

    async fn get_user(&self, id_or_login: &str) -> Result<Option<Value>, ConnectorError> {
        match self
            .call(Method::GET, &["users", id_or_login], &[], None)
            .await
        {
            Ok(r) => {
                let v = r.json()?;
                if v.get("id").and_then(Value::as_str).is_none() {
                    return Err(refused("Okta answered a user without an id"));
                }
                Ok(Some(v))
            }
            Err(f) if matches!(f.error, ConnectorError::NotFound) => Ok(None),
            Err(f) => Err(f.error),
        }
    }

    async fn lifecycle(&self, id: &str, action: &str) -> Result<(), Failure> {
        self.call(
            Method::POST,
            &["users", id, "lifecycle", action],
            &[("sendEmail", "false")],
            None,
        )
        .await
        .map(|_| ())
    }

    async fn deactivate(&self, id: &str) -> Result<(), ConnectorError> {
        match self.lifecycle(id, "deactivate").await {
            Ok(()) => Ok(()),
            // Okta refuses to deactivate a deactivated user: that is what we wanted.
            Err(f) if f.code.as_deref() == Some("E0000001") => match self.get_user(id).await? {
                Some(u) if status_of(&u) == "DEPROVISIONED" => Ok(()),
                Some(_) => Err(f.error),
                None => Err(ConnectorError::NotFound),
            },
            Err(f) => Err(f.error),
        }
    }
}

/// The `after` of the `rel="next"` link of a listing answer (Okta sends `self` and
/// `next` as separate `Link` headers; both forms are read).
fn next_after(resp: &HttpResponse) -> Option<String> {
    for value in resp.headers.get_all(header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let Some(target) = parts.next() else { continue };
            let is_next = parts.any(|p| {
                let p = p.trim();
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            });
            if !is_next {
                continue;
            }
            let url = target.trim().trim_start_matches('<').trim_end_matches('>');
            let Ok(url) = Url::parse(url) else { continue };
            if let Some((_, a)) = url.query_pairs().find(|(k, _)| k == "after") {
                return Some(a.into_owned());
            }
        }
    }
    None
}

/// Which listing a users cursor is in, and where.
#[derive(Debug, PartialEq)]
enum UsersCursor<'a> {
    /// The plain listing (every status but `DEPROVISIONED`).
    Listed(Option<&'a str>),
    /// The deactivated users.
    Deprovisioned(Option<&'a str>),
}

impl<'a> UsersCursor<'a> {
    fn parse(cursor: Option<&'a str>) -> Result<Self, ConnectorError> {
        let Some(c) = cursor else {
            return Ok(UsersCursor::Listed(None));
        };
        let (phase, after) = c
            .split_once(':')
            .ok_or_else(|| refused("not an Okta listing position"))?;
        let after = (!after.is_empty()).then_some(after);
        match phase {
            "listed" => Ok(UsersCursor::Listed(after)),
            "deprovisioned" => Ok(UsersCursor::Deprovisioned(after)),
            _ => Err(refused("not an Okta listing position")),
        }
    }
}

/// The profile keys [`okta_profile`] writes from SCIM attributes (the others come from
/// a mapped `attributes` object).
const PROFILE_KEYS: [&str; 27] = [
    "login",
    "email",
    "firstName",
    "lastName",
    "middleName",
    "honorificPrefix",
    "honorificSuffix",
    "displayName",
    "nickName",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "profileUrl",
    "mobilePhone",
    "primaryPhone",
    "streetAddress",
    "city",
    "state",
    "zipCode",
    "countryCode",
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
];

/// An Okta profile read back as the SCIM attributes [`okta_profile`] takes them from: the
/// inverse of that function on what it writes, so that a delivered profile reads as what
/// was delivered. Profile keys it does not write go to `attributes`; `null`s are absent.
pub fn scim_of_profile(profile: &Map<String, Value>) -> Value {
    let text = |k: &str| {
        profile
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let mut u = Map::new();
    let put = |m: &mut Map<String, Value>, k: &str, v: Option<&str>| {
        if let Some(v) = v {
            m.insert(k.to_string(), json!(v));
        }
    };
    put(&mut u, "userName", text("login"));
    let mut name = Map::new();
    put(&mut name, "givenName", text("firstName"));
    put(&mut name, "familyName", text("lastName"));
    put(&mut name, "middleName", text("middleName"));
    put(&mut name, "honorificPrefix", text("honorificPrefix"));
    put(&mut name, "honorificSuffix", text("honorificSuffix"));
    if !name.is_empty() {
        u.insert("name".into(), Value::Object(name));
    }
    for (okta, scim) in [
        ("displayName", "displayName"),
        ("nickName", "nickName"),
        ("title", "title"),
        ("userType", "userType"),
        ("preferredLanguage", "preferredLanguage"),
        ("locale", "locale"),
        ("timezone", "timezone"),
        ("profileUrl", "profileUrl"),
    ] {
        put(&mut u, scim, text(okta));
    }
    if let Some(e) = text("email") {
        u.insert("emails".into(), json!([{"value": e, "primary": true}]));
    }
    let mut phones = Vec::new();
    if let Some(p) = text("mobilePhone") {
        phones.push(json!({"value": p, "type": "mobile"}));
    }
    if let Some(p) = text("primaryPhone") {
        phones.push(json!({"value": p, "type": "work"}));
    }
    if !phones.is_empty() {
        u.insert("phoneNumbers".into(), Value::Array(phones));
    }
    let mut addr = Map::new();
    for (okta, scim) in [
        ("streetAddress", "streetAddress"),
        ("city", "locality"),
        ("state", "region"),
        ("zipCode", "postalCode"),
        ("countryCode", "country"),
    ] {
        put(&mut addr, scim, text(okta));
    }
    if !addr.is_empty() {
        addr.insert("type".into(), json!("work"));
        u.insert("addresses".into(), json!([addr]));
    }
    let mut ent = Map::new();
    for k in [
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
    ] {
        put(&mut ent, k, text(k));
    }
    if let Some(m) = text("manager") {
        ent.insert("manager".into(), json!({ "displayName": m }));
    }
    // A mapped attribute named as a standard one went to that profile key: it reads back
    // as the standard attribute (as `okta_profile` wrote it, the mapped value wins).
    let mut extra = Map::new();
    for (k, v) in profile {
        if PROFILE_KEYS.contains(&k.as_str()) || k == "manager" || v.is_null() {
            continue;
        }
        if let Some(v) = scalar(v) {
            extra.insert(k.clone(), v);
        }
    }
    if !ent.is_empty() {
        u.insert(ENTERPRISE.into(), Value::Object(ent));
    }
    if !extra.is_empty() {
        u.insert("attributes".into(), Value::Object(extra));
    }
    Value::Object(u)
}

/// An Okta user object as the SCIM user reconcile compares.
fn scim_of_okta_user(user: &Value) -> Option<Value> {
    let id = user.get("id").and_then(Value::as_str)?;
    let profile = user
        .get("profile")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut u = scim_of_profile(&profile);
    let active = !matches!(status_of(user), "STAGED" | "DEPROVISIONED");
    if let Some(o) = u.as_object_mut() {
        o.insert("id".into(), json!(id));
        o.insert("active".into(), json!(active));
    }
    Some(u)
}

fn status_of(user: &Value) -> &str {
    user.get("status").and_then(Value::as_str).unwrap_or("")
}

fn id_of(v: &Value) -> Result<String, ConnectorError> {
    v.get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| refused("Okta answered without an id"))
}

fn user_name(user: &Value) -> Result<&str, ConnectorError> {
    str_at(user, &["userName"]).ok_or_else(|| refused("the user has no userName for Okta"))
}

/// The entry of a multi-valued attribute of `kind` (`type`), else the primary, else the
/// first: its `value` (or `field` of it).
fn pick<'a>(user: &'a Value, attr: &str, kind: Option<&str>) -> Option<&'a Value> {
    let list = user.get(attr)?.as_array()?;
    match kind {
        Some(k) => list.iter().find(|e| {
            e.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(k))
        }),
        None => list
            .iter()
            .find(|e| e.get("primary") == Some(&Value::Bool(true)))
            .or_else(|| list.first()),
    }
}

fn value_of<'a>(entry: Option<&'a Value>, field: &str) -> Option<&'a str> {
    entry?
        .get(field)?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn scalar(v: &Value) -> Option<Value> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Some(v.clone()),
        Value::Array(a) if a.iter().all(|x| x.is_string() || x.is_number()) => Some(v.clone()),
        _ => None,
    }
}

const ENTERPRISE: &str = provisync_scim::urn::ENTERPRISE_USER;

/// The Okta user profile of a mapped SCIM payload. Okta's default profile requires
/// `login`, `email`, `firstName` and `lastName`: the e-mail falls back to a login that is
/// an address, missing name parts to the display name, then the login.
pub fn okta_profile(user: &Value) -> Result<Map<String, Value>, ConnectorError> {
    let login = user_name(user)?;
    let mut p = Map::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            p.insert(k.to_string(), Value::String(v.to_string()));
        }
    };
    let given = str_at(user, &["name", "givenName"]);
    let family = str_at(user, &["name", "familyName"]);
    let display = str_at(user, &["displayName"]).or_else(|| str_at(user, &["name", "formatted"]));
    put("login", Some(login));
    let email = value_of(pick(user, "emails", None), "value")
        .or_else(|| login.contains('@').then_some(login));
    put("email", email);
    put("firstName", given.or(display).or(Some(login)));
    put("lastName", family.or(display).or(Some(login)));
    put("middleName", str_at(user, &["name", "middleName"]));
    put(
        "honorificPrefix",
        str_at(user, &["name", "honorificPrefix"]),
    );
    put(
        "honorificSuffix",
        str_at(user, &["name", "honorificSuffix"]),
    );
    put("displayName", display);
    put("nickName", str_at(user, &["nickName"]));
    put("title", str_at(user, &["title"]));
    put("userType", str_at(user, &["userType"]));
    put("preferredLanguage", str_at(user, &["preferredLanguage"]));
    put("locale", str_at(user, &["locale"]));
    put("timezone", str_at(user, &["timezone"]));
    put("profileUrl", str_at(user, &["profileUrl"]));
    let mobile =
        pick(user, "phoneNumbers", Some("mobile")).or_else(|| pick(user, "phoneNumbers", None));
    put("mobilePhone", value_of(mobile, "value"));
    put(
        "primaryPhone",
        value_of(pick(user, "phoneNumbers", Some("work")), "value"),
    );
    let addr = pick(user, "addresses", Some("work")).or_else(|| pick(user, "addresses", None));
    put("streetAddress", value_of(addr, "streetAddress"));
    put("city", value_of(addr, "locality"));
    put("state", value_of(addr, "region"));
    put("zipCode", value_of(addr, "postalCode"));
    put("countryCode", value_of(addr, "country"));
    for (scim, okta) in [
        ("employeeNumber", "employeeNumber"),
        ("costCenter", "costCenter"),
        ("organization", "organization"),
        ("division", "division"),
        ("department", "department"),
    ] {
        put(okta, str_at(user, &[ENTERPRISE, scim]));
    }
    put(
        "manager",
        str_at(user, &[ENTERPRISE, "manager", "displayName"]),
    );
    if let Some(extra) = user.get("attributes").and_then(Value::as_object) {
        for (k, v) in extra {
            if let Some(v) = scalar(v) {
                p.insert(k.clone(), v);
            }
        }
    }
    Ok(p)
}

#[async_trait::async_trait]
impl Connector for OktaConnector {
    async fn test(&self) -> Result<String, ConnectorError> {
        // The API token acts as the administrator who created it: `/users/me` is that
        // administrator, readable with any token.
        let me = self
            .call(Method::GET, &["users", "me"], &[], None)
            .await
            .map_err(|f| match f.error {
                ConnectorError::NotFound => ConnectorError::Refused {
                    status: Some(404),
                    reason: "no Okta Management API under the base URL (use the org URL, e.g. https://dev-123456.okta.com)".into(),
                },
                e => e,
            })?
            .json()?;
        Ok(format!(
            "Okta at {}: API token of {} accepted",
            self.base.host_str().unwrap_or("?"),
            str_at(&me, &["profile", "login"]).unwrap_or("an administrator")
        ))
    }

    fn create_detects_existing(&self) -> bool {
        // Okta refuses a second user with the same login (400 E0000001).
        true
    }

    async fn list_users(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let (items, next) = match UsersCursor::parse(cursor)? {
            UsersCursor::Listed(after) => {
                let (items, next) = self.page(&["users"], &[], after).await?;
                let next = match next {
                    Some(a) => format!("listed:{a}"),
                    // Then the deactivated users, which the plain listing leaves out.
                    None => "deprovisioned:".to_string(),
                };
                (items, Some(next))
            }
            UsersCursor::Deprovisioned(after) => {
                let (items, next) = self
                    .page(&["users"], &[("filter", DEPROVISIONED_FILTER)], after)
                    .await?;
                (items, next.map(|a| format!("deprovisioned:{a}")))
            }
        };
        Ok(ListPage {
            resources: items.iter().filter_map(scim_of_okta_user).collect(),
            next,
        })
    }

    async fn list_groups(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let (groups, next) = self
            .page(&["groups"], &[("filter", GROUP_FILTER)], cursor)
            .await?;
        let mut resources = Vec::with_capacity(groups.len());
        for g in &groups {
            let id = id_of(g)?;
            let mut members = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let (users, next) = self
                    .page(&["groups", &id, "users"], &[], after.as_deref())
                    .await?;
                members.extend(
                    users
                        .iter()
                        .filter_map(|u| u.get("id").and_then(Value::as_str))
                        .map(|m| json!({ "value": m })),
                );
                match next {
                    Some(a) => after = Some(a),
                    None => break,
                }
            }
            let mut out = json!({"id": id, "members": members});
            if let Some(n) = str_at(g, &["profile", "name"]) {
                out["displayName"] = json!(n);
            }
            resources.push(out);
        }
        Ok(ListPage { resources, next })
    }

    fn kept(&self, kind: ResourceKind, mapped: &Value) -> Value {
        match kind {
            // The profile `create_user` / `update_user` write, read back as the listing
            // reads it, and the status.
            ResourceKind::User => {
                let mut u = okta_profile(mapped)
                    .map(|p| scim_of_profile(&p))
                    .unwrap_or_else(|_| json!({}));
                let active = mapped
                    .get("active")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                if let Some(o) = u.as_object_mut() {
                    o.insert("active".into(), json!(active));
                }
                u
            }
            // An Okta group keeps its name (its description is the connector's own).
            ResourceKind::Group => {
                let mut g = Map::new();
                if let Some(n) = str_at(mapped, &["displayName"]) {
                    g.insert("displayName".into(), json!(n));
                }
                if let Some(m) = mapped.get("members") {
                    g.insert("members".into(), m.clone());
                }
                Value::Object(g)
            }
        }
    }

    async fn find_user(&self, user: &Value) -> Result<Option<TargetId>, ConnectorError> {
        let login = user_name(user)?;
        let Some(found) = self.get_user(login).await? else {
            return Ok(None);
        };
        // Okta also resolves a login's short name (`alice` for `alice@example.com`).
        let same =
            str_at(&found, &["profile", "login"]).is_some_and(|l| l.eq_ignore_ascii_case(login));
        if same {
            Ok(Some(id_of(&found)?))
        } else {
            Ok(None)
        }
    }

    async fn create_user(
        &self,
        user: &Value,
        password: Option<&str>,
    ) -> Result<TargetId, ConnectorError> {
        let mut body = json!({ "profile": okta_profile(user)? });
        if let Some(p) = password {
            body["credentials"] = json!({"password": {"value": p}});
        }
        let active = user.get("active").and_then(Value::as_bool).unwrap_or(true);
        match self
            .call(
                Method::POST,
                &["users"],
                &[("activate", if active { "true" } else { "false" })],
                Some(&body),
            )
            .await
        {
            Ok(r) => id_of(&r.json()?),
            Err(f) if f.already_exists() => Err(ConnectorError::Conflict(f.summary)),
            Err(f) => Err(f.error),
        }
    }

    async fn update_user(
        &self,
        id: &str,
        user: &Value,
        previous: Option<&Value>,
        password: Option<&str>,
    ) -> Result<Option<TargetId>, ConnectorError> {
        let mut profile = okta_profile(user)?;
        let current = self.get_user(id).await?.ok_or(ConnectorError::NotFound)?;
        let active = user.get("active").and_then(Value::as_bool).unwrap_or(true);
        let mut status = status_of(&current).to_string();
        if active && matches!(status.as_str(), "STAGED" | "DEPROVISIONED") {
            self.lifecycle(id, "activate").await.map_err(|f| f.error)?;
            status = "PROVISIONED".into();
        }
        if !active && status == "DEPROVISIONED" {
            // Deactivated already: its profile waits for a reactivation (which sends it).
            return Ok(None);
        }
        if let Some(prev) = previous
            && let Ok(before) = okta_profile(prev)
        {
            for k in before.keys() {
                if !profile.contains_key(k) && !REQUIRED.contains(&k.as_str()) {
                    profile.insert(k.clone(), Value::Null);
                }
            }
        }
        let mut body = json!({ "profile": profile });
        if let Some(p) = password {
            body["credentials"] = json!({"password": {"value": p}});
        }
        self.call(Method::POST, &["users", id], &[], Some(&body))
            .await
            .map_err(|f| f.error)?;
        if !active {
            self.deactivate(id).await?;
        }
        Ok(None)
    }

    async fn disable_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.deactivate(id).await
    }

    async fn delete_user(&self, id: &str) -> Result<(), ConnectorError> {
        // The first DELETE of a user that is not deactivated deactivates it; the next
        // deletes it. A user deactivated already is deleted by the first, and the second
        // finds nothing.
        for _ in 0..2 {
            match self
                .call(
                    Method::DELETE,
                    &["users", id],
                    &[("sendEmail", "false")],
                    None,
                )
                .await
            {
                Ok(_) => {}
                Err(f) if matches!(f.error, ConnectorError::NotFound) => return Ok(()),
                Err(f) => return Err(f.error),
            }
        }
        match self.get_user(id).await? {
            None => Ok(()),
            Some(u) => Err(ConnectorError::Refused {
                status: None,
                reason: format!(
                    "Okta kept the user after two deletes (status {})",
                    status_of(&u)
                ),
            }),
        }
    }

    async fn find_group(&self, group: &Value) -> Result<Option<TargetId>, ConnectorError> {
        let name = group_name(group)?;
        let found = self
            .call(
                Method::GET,
                &["groups"],
                &[("q", name), ("limit", "200")],
                None,
            )
            .await
            .map_err(|f| f.error)?
            .json()?;
        let groups = found.as_array().map(Vec::as_slice).unwrap_or_default();
        let named = |exact: bool| {
            groups.iter().find(|g| {
                str_at(g, &["profile", "name"]).is_some_and(|n| {
                    if exact {
                        n == name
                    } else {
                        n.eq_ignore_ascii_case(name)
                    }
                })
            })
        };
        match named(true).or_else(|| named(false)) {
            Some(g) => Ok(Some(id_of(g)?)),
            None => Ok(None),
        }
    }

    async fn create_group(&self, group: &Value) -> Result<TargetId, ConnectorError> {
        let name = group_name(group)?;
        let body = json!({"profile": {"name": name, "description": "Provisioned by provisync"}});
        match self.call(Method::POST, &["groups"], &[], Some(&body)).await {
            Ok(r) => id_of(&r.json()?),
            Err(f) if f.already_exists() => Err(ConnectorError::Conflict(f.summary)),
            Err(f) => Err(f.error),
        }
    }

    async fn update_group(
        &self,
        id: &str,
        group: &Value,
        _previous: Option<&Value>,
    ) -> Result<(), ConnectorError> {
        let name = group_name(group)?;
        let current = match self.call(Method::GET, &["groups", id], &[], None).await {
            Ok(r) => r.json()?,
            Err(f) => return Err(f.error),
        };
        if str_at(&current, &["profile", "name"]) == Some(name) {
            return Ok(());
        }
        // PUT replaces the profile: keep what Okta has (the description), rename.
        let mut profile = current
            .get("profile")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        profile.insert("name".into(), Value::String(name.to_string()));
        self.call(
            Method::PUT,
            &["groups", id],
            &[],
            Some(&json!({ "profile": profile })),
        )
        .await
        .map(|_| ())
        .map_err(|f| f.error)
    }

    async fn delete_group(&self, id: &str) -> Result<(), ConnectorError> {
        match self.call(Method::DELETE, &["groups", id], &[], None).await {
            Ok(_) => Ok(()),
            Err(f) if matches!(f.error, ConnectorError::NotFound) => Ok(()),
            Err(f) => Err(f.error),
        }
    }

    async fn add_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError> {
        for m in member_ids {
            match self
                .call(Method::PUT, &["groups", group_id, "users", m], &[], None)
                .await
            {
                // Already a member: 204 as well.
                Ok(_) => {}
                Err(f) if matches!(f.error, ConnectorError::NotFound) => {
                    return Err(ConnectorError::Refused {
                        status: Some(404),
                        reason: format!(
                            "Okta does not know group {group_id:?} or member {m:?}: {}",
                            f.summary
                        ),
                    });
                }
                Err(f) => return Err(f.error),
            }
        }
        Ok(())
    }

    async fn remove_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError> {
        for m in member_ids {
            match self
                .call(Method::DELETE, &["groups", group_id, "users", m], &[], None)
                .await
            {
                Ok(_) => {}
                Err(f) if matches!(f.error, ConnectorError::NotFound) => {}
                Err(f) => return Err(f.error),
            }
        }
        Ok(())
    }
}

fn group_name(group: &Value) -> Result<&str, ConnectorError> {
    str_at(group, &["displayName"]).ok_or_else(|| refused("the group has no displayName"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_from_scim() {
        let u = json!({
            "userName": "alice@example.com", "displayName": "Alice L.", "title": "Queen",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "w@x.example"}, {"value": "p@x.example", "primary": true}],
            "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}, {"value": "+1 555 0199", "type": "mobile"}],
            "addresses": [{"type": "work", "locality": "Oxford", "country": "GB", "postalCode": "OX1"}],
            ENTERPRISE: {"department": "Tea", "manager": {"value": "x", "displayName": "Hatter"}},
            "attributes": {"costCenter": "42", "tags": ["a", "b"], "nested": {"x": 1}}
        });
        let p = Value::Object(okta_profile(&u).unwrap());
        assert_eq!(
            p,
            json!({"login": "alice@example.com", "email": "p@x.example", "firstName": "Alice",
                   "lastName": "Liddell", "displayName": "Alice L.", "title": "Queen",
                   "mobilePhone": "+1 555 0199", "primaryPhone": "+1 555 0100",
                   "city": "Oxford", "zipCode": "OX1", "countryCode": "GB",
                   "department": "Tea", "manager": "Hatter",
                   "costCenter": "42", "tags": ["a", "b"]})
        );
        // Okta's required fields from what there is.
        let bare = okta_profile(&json!({"userName": "bob@example.com"})).unwrap();
        assert_eq!(bare["email"], "bob@example.com");
        assert_eq!(bare["firstName"], "bob@example.com");
        let shown = okta_profile(&json!({"userName": "carol", "displayName": "Carol C"})).unwrap();
        assert_eq!(shown["lastName"], "Carol C");
        assert!(!shown.contains_key("email"), "no address to give");
        assert!(okta_profile(&json!({"displayName": "x"})).is_err());
    }

    #[test]
    fn what_okta_keeps_is_what_it_lists() {
        let c = OktaConnector::new(&OktaTarget {
            base_url: "https://dev-123.okta.com".into(),
            token: "00SSWS-secret-token".into(),
        })
        .unwrap();
        let mapped = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": "h1",
            "userName": "alice@example.com", "displayName": "Alice L.", "title": "Queen",
            "name": {"givenName": "Alice", "familyName": "Liddell", "formatted": "x"},
            "emails": [{"value": "w@x.example", "type": "work"}, {"value": "p@x.example", "primary": true}],
            "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}, {"value": "+1 555 0199", "type": "mobile"}],
            "addresses": [{"type": "work", "locality": "Oxford", "country": "GB"}],
            ENTERPRISE: {"department": "Tea", "manager": {"value": "x", "displayName": "Hatter"}},
            "attributes": {"costCenter2": "42"}, "active": true, "x509Certificates": [{"value": "c"}]
        });
        let kept = c.kept(ResourceKind::User, &mapped);
        assert_eq!(
            kept,
            json!({"userName": "alice@example.com", "displayName": "Alice L.", "title": "Queen",
                   "name": {"givenName": "Alice", "familyName": "Liddell"},
                   "emails": [{"value": "p@x.example", "primary": true}],
                   "phoneNumbers": [{"value": "+1 555 0199", "type": "mobile"},
                                    {"value": "+1 555 0100", "type": "work"}],
                   "addresses": [{"type": "work", "locality": "Oxford", "country": "GB"}],
                   ENTERPRISE: {"department": "Tea", "manager": {"displayName": "Hatter"}},
                   "attributes": {"costCenter2": "42"}, "active": true})
        );
        // The user Okta holds after the delivery lists as exactly that, plus its id;
        // profile keys Okta adds on its own (nulls, secondEmail) are extra, not different.
        let mut profile = okta_profile(&mapped).unwrap();
        profile.insert("secondEmail".into(), Value::Null);
        let okta_user = json!({"id": "00u1", "status": "ACTIVE", "profile": profile});
        let mut listed = scim_of_okta_user(&okta_user).unwrap();
        assert_eq!(listed["id"], "00u1");
        listed.as_object_mut().unwrap().remove("id");
        assert_eq!(listed, kept);
        for (status, active) in [
            ("STAGED", false),
            ("PROVISIONED", true),
            ("LOCKED_OUT", true),
            ("DEPROVISIONED", false),
        ] {
            let u = json!({"id": "00u2", "status": status, "profile": {"login": "b@x.example"}});
            assert_eq!(scim_of_okta_user(&u).unwrap()["active"], active, "{status}");
        }
        assert_eq!(
            c.kept(
                ResourceKind::Group,
                &json!({"displayName": "navy", "externalId": "g"})
            ),
            json!({"displayName": "navy"})
        );
        assert_eq!(UsersCursor::parse(None).unwrap(), UsersCursor::Listed(None));
        assert_eq!(
            UsersCursor::parse(Some("listed:00u9")).unwrap(),
            UsersCursor::Listed(Some("00u9"))
        );
        assert_eq!(
            UsersCursor::parse(Some("deprovisioned:")).unwrap(),
            UsersCursor::Deprovisioned(None)
        );
        assert!(UsersCursor::parse(Some("00u9")).is_err());
    }

    #[test]
    fn urls_and_debug() {
        let t = OktaTarget {
            base_url: "https://dev-123.okta.com/".into(),
            token: "00SSWS-secret-token".into(),
        };
        let c = OktaConnector::new(&t).unwrap();
        assert!(!format!("{c:?}").contains("00SSWS-secret-token"));
        assert_eq!(
            c.url(&["users", "a/b c@x.example"], &[("activate", "false")])
                .unwrap()
                .as_str(),
            "https://dev-123.okta.com/api/v1/users/a%2Fb%20c@x.example?activate=false"
        );
        let bad = OktaTarget {
            base_url: "http://dev-123.okta.com".into(),
            ..t.clone()
        };
        assert!(matches!(OktaConnector::new(&bad), Err(SetupError::Url(_))));
        let empty = OktaTarget {
            token: " ".into(),
            ..t
        };
        assert!(matches!(
            OktaConnector::new(&empty),
            Err(SetupError::Credentials(_))
        ));
    }
}
