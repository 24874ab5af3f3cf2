//! The Microsoft Entra ID connector: users, security groups and memberships through
//! Microsoft Graph v1.0, as an app registration with application permissions
//! (`User.ReadWrite.All`, `Group.ReadWrite.All`), token by the client credentials flow
//! (`POST {login_url}/{tenant}/oauth2/v2.0/token`, scope `https://graph.microsoft.com/.default`).
//!
//! - the id of a user or group on Entra is its object id;
//! - match: `GET /v1.0/users?$filter=userPrincipalName eq '…'`; create: `POST /v1.0/users`
//!   (Graph requires `passwordProfile`: without a password from the hub, an unguessable one
//!   is generated); Graph refuses a second account with the same UPN (400 "Another object
//!   with the same value for property userPrincipalName already exists."), which is a
//!   conflict: the engine creates first and matches on the conflict;
//! - update: `PATCH /v1.0/users/{id}` with the properties that changed (and
//!   `passwordProfile` with a new password); deactivate: `accountEnabled: false`;
//! - delete: `DELETE /v1.0/users/{id}` (404: already gone);
//! - groups: `POST /v1.0/groups` as security groups (`mailEnabled: false`,
//!   `securityEnabled: true`), found by `displayName`; members `POST
//!   /groups/{gid}/members/$ref` (an existing membership is success) and `DELETE
//!   /groups/{gid}/members/{uid}/$ref` (404 is success).
//!
//! Errors carry Graph's `error.code` and `error.message`
//! (<https://learn.microsoft.com/en-us/graph/errors>) into the audit log.

use provisync_core::connector::{refused, str_at, typed_value};
use std::fmt;

use reqwest::header;
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};

use crate::http::{
    HttpClient, HttpResponse, SetupError, check_target_url, error_for, join_url, vendor_error,
};
use crate::oauth::{ClientCredentials, ClientCredentialsConfig, unguessable_password};
use provisync_core::connector::{Connector, ConnectorError, ListPage, TargetId};
use provisync_core::target::EntraTarget;
use provisync_scim::ResourceKind;

pub use provisync_core::target::{
    ENTRA_GRAPH_URL as DEFAULT_GRAPH_URL, ENTRA_LOGIN_URL as DEFAULT_LOGIN_URL,
};
/// Graph's answer to a second account with the same UPN (400 `Request_BadRequest`).
const DUPLICATE_UPN: &str =
    "Another object with the same value for property userPrincipalName already exists";
/// Graph's answer to adding an existing member (400 `Request_BadRequest`).
const MEMBER_EXISTS: &str = "One or more added object references already exist";
/// The Graph user properties a payload's top-level keys may set directly (through the
/// mapping), beside those derived from SCIM attributes.
const PASSTHROUGH: &[&str] = &[
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
];

pub struct EntraConnector {
    graph: Url,
    tenant: String,
    oauth: ClientCredentials,
    http: HttpClient,
}

impl fmt::Debug for EntraConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraConnector")
            .field("graph", &self.graph.as_str())
            .field("tenant", &self.tenant)
            .field("oauth", &self.oauth)
            .finish()
    }
}

/// A failed call with Graph's message, when it gave one.
struct Failure {
    error: ConnectorError,
    message: String,
}

impl From<ConnectorError> for Failure {
    fn from(error: ConnectorError) -> Self {
        Failure {
            error,
            message: String::new(),
        }
    }
}

impl EntraConnector {
    pub fn new(target: &EntraTarget) -> Result<Self, SetupError> {
        Self::with_client(target, HttpClient::shared()?)
    }

    pub fn with_client(target: &EntraTarget, http: HttpClient) -> Result<Self, SetupError> {
        let graph = check_target_url(target.graph_url.as_deref().unwrap_or(DEFAULT_GRAPH_URL))
            .map_err(|e| SetupError::Url(format!("graph_url: {e}")))?;
        let login = check_target_url(target.login_url.as_deref().unwrap_or(DEFAULT_LOGIN_URL))
            .map_err(|e| SetupError::Url(format!("login_url: {e}")))?;
        let tenant = target.tenant_id.trim();
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(SetupError::Config("invalid tenant_id".into()));
        }
        if target.client_id.trim().is_empty() || target.client_secret.is_empty() {
            return Err(SetupError::Credentials(
                "client_id and client_secret are required".into(),
            ));
        }
        let token_url = join_url(&login, &[tenant, "oauth2", "v2.0", "token"], &[])
            .ok_or_else(|| SetupError::Url("login_url cannot take a path".into()))?;
        // `.default`: the application permissions granted to the app registration.
        let scope = match graph.host_str() {
            Some(h) if graph.scheme() == "https" => format!("https://{h}/.default"),
            _ => format!("{DEFAULT_GRAPH_URL}/.default"),
        };
        let oauth = ClientCredentials::new(
            ClientCredentialsConfig {
                token_url,
                client_id: target.client_id.trim().to_string(),
                client_secret: target.client_secret.clone(),
                scope: Some(scope),
                system: "Microsoft Entra",
            },
            http.clone(),
        );
        Ok(EntraConnector {
            graph,
            tenant: tenant.to_string(),
            oauth,
            http,
        })
    }

    /// `{graph}/v1.0/{segments}?{query}`, percent-encoded.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, ConnectorError> {
        join_url(&self.graph, &[&["v1.0"], segments].concat(), query)
            .ok_or_else(|| ConnectorError::Gone("graph_url cannot take a path".into()))
    }

    /// The `@odata.id` of a directory object, as `POST …/members/$ref` wants it.
    fn directory_object(&self, id: &str) -> Result<String, ConnectorError> {
        Ok(self.url(&["directoryObjects", id], &[])?.to_string())
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<HttpResponse, Failure> {
        let url = self.url(segments, query)?;
        self.call_url(method, url, body).await
    }

    async fn call_url(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<HttpResponse, Failure> {
        let path = url.path().to_string();
        let payload = body.map(Value::to_string);
        let result = self
            .oauth
            .send(|| {
                let mut req = self
                    .http
                    .request(method.clone(), url.clone())
                    .header(header::ACCEPT, "application/json");
                if let Some(b) = &payload {
                    req = req
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(b.clone());
                }
                req
            })
            .await;
        match &result {
            // Never the query: it holds user names.
            Ok(r) => tracing::debug!(%method, %path, status = r.status.as_u16(), "entra target"),
            Err(e) => tracing::debug!(%method, %path, error = %e, "entra target"),
        }
        let resp = result.map_err(|e| self.oauth.scrub_error(e))?;
        if resp.is_success() {
            return Ok(resp);
        }
        let message = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| vendor_error(&v).1)
            .unwrap_or_default();
        let error = match error_for(&resp, None) {
            ConnectorError::Refused {
                status: Some(401),
                reason,
            } => ConnectorError::Refused {
                status: Some(401),
                reason: format!(
                    "Microsoft Graph did not accept the token of tenant {:?}: {reason}",
                    self.tenant
                ),
            },
            ConnectorError::Refused {
                status: Some(403),
                reason,
            } => ConnectorError::Refused {
                status: Some(403),
                reason: format!(
                    "{reason} (the app registration needs the application permissions User.ReadWrite.All and Group.ReadWrite.All, with admin consent)"
                ),
            },
            e => e,
        };
        Err(Failure {
            error: self.oauth.scrub_error(error),
            message,
        })
    }

    /// An `@odata.nextLink` Graph answered, checked before the token goes with it: the
    /// same origin as `graph_url`, under `/v1.0/`.
    fn next_link(&self, link: &str) -> Result<Url, ConnectorError> {
        let bad = || {
            refused("Microsoft Graph answered an @odata.nextLink outside graph_url: not followed")
        };
        let url = Url::parse(link).map_err(|_| bad())?;
        let root = self.url(&[], &[])?;
        if url.origin() != self.graph.origin()
            || !url
                .path()
                .starts_with(&format!("{}/", root.path().trim_end_matches('/')))
        {
            return Err(bad());
        }
        Ok(url)
    }

    /// One page of a collection: the first (`segments` with `query`) or the one `cursor`
    /// (an `@odata.nextLink`) names.
    async fn page(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        cursor: Option<&str>,
    ) -> Result<Value, ConnectorError> {
        let url = match cursor {
            None => self.url(segments, query)?,
            Some(link) => self.next_link(link)?,
        };
        self.call_url(Method::GET, url, None)
            .await
            .map_err(|f| f.error)?
            .json()
    }

    /// The ids of a group's direct members that are users or groups, every page.
    async fn members_of(&self, group_id: &str) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let v = self
                .page(
                    &["groups", group_id, "members"],
                    &[("$select", "id"), ("$top", MEMBER_PAGE)],
                    cursor.as_deref(),
                )
                .await?;
            let (items, next) = collection(&v)?;
            for m in items {
                // Devices, contacts and service principals can be members too: the hub
                // provisions none of them.
                let kind = m.get("@odata.type").and_then(Value::as_str);
                if !matches!(
                    kind,
                    None | Some("#microsoft.graph.user" | "#microsoft.graph.group")
                ) {
                    continue;
                }
                if let Some(id) = m.get("id").and_then(Value::as_str) {
                    out.push(json!({ "value": id }));
                }
            }
            match next {
                Some(n) => cursor = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// The id of the one object of `collection` whose `property` equals `value`.
    async fn find_by(
        &self,
        collection: &str,
        property: &str,
        value: &str,
    ) -> Result<Option<TargetId>, ConnectorError> {
        let filter = format!("{property} eq '{}'", odata_string(value));
        let r = self
            .call(
                Method::GET,
                &[collection],
                &[("$filter", &filter), ("$select", "id")],
                None,
            )
            .await
            .map_err(|f| f.error)?;
        let v = r.json()?;
        let items = v
            .get("value")
            .and_then(Value::as_array)
            .ok_or_else(|| refused("Microsoft Graph answered a list without `value`"))?;
        Ok(items
            .first()
            .and_then(|i| i.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }
}

/// A string literal inside an OData `$filter`: single quotes doubled (OData ABNF,
/// `SQUOTE-in-string`).
pub fn odata_string(s: &str) -> String {
    s.replace('\'', "''")
}

const ENTERPRISE: &str = provisync_scim::urn::ENTERPRISE_USER;

/// A `mailNickname` from a name: Graph refuses spaces and `@ ( ) \ [ ] " ; : < > ,`,
/// and non-ASCII; at most 64 characters.
pub fn mail_nickname(name: &str) -> String {
    let local = name.split('@').next().unwrap_or(name);
    let nick: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    let nick = nick.trim_matches('.').to_string();
    if nick.is_empty() {
        // Nothing usable: a stable nickname from the name's hash.
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(name.as_bytes());
        format!("u{}", &hex_of(&h)[..12])
    } else {
        nick
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Graph user properties of a mapped SCIM payload (without `passwordProfile`).
fn graph_user(user: &Value) -> Result<Map<String, Value>, ConnectorError> {
    let upn = str_at(user, &["userName"])
        .ok_or_else(|| refused("the user has no userName (the userPrincipalName on Entra)"))?;
    let given = str_at(user, &["name", "givenName"]);
    let family = str_at(user, &["name", "familyName"]);
    let display = str_at(user, &["displayName"])
        .or_else(|| str_at(user, &["name", "formatted"]))
        .map(str::to_string)
        .or_else(|| match (given, family) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (Some(x), None) | (None, Some(x)) => Some(x.to_string()),
            (None, None) => None,
        })
        .unwrap_or_else(|| upn.to_string());
    let mut m = Map::new();
    m.insert("userPrincipalName".into(), json!(upn));
    m.insert("displayName".into(), json!(display));
    m.insert(
        "mailNickname".into(),
        json!(str_at(user, &["mailNickname"]).map_or_else(|| mail_nickname(upn), str::to_string)),
    );
    m.insert(
        "accountEnabled".into(),
        json!(user.get("active").and_then(Value::as_bool).unwrap_or(true)),
    );
    let optional = [
        ("givenName", given),
        ("surname", family),
        ("jobTitle", str_at(user, &["title"])),
        ("department", str_at(user, &[ENTERPRISE, "department"])),
        ("employeeId", str_at(user, &[ENTERPRISE, "employeeNumber"])),
        ("companyName", str_at(user, &[ENTERPRISE, "organization"])),
        ("mail", typed_value(user, "emails", None)),
        (
            "mobilePhone",
            typed_value(user, "phoneNumbers", Some("mobile")),
        ),
        ("preferredLanguage", str_at(user, &["preferredLanguage"])),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    if let Some(o) = user.as_object() {
        for (k, v) in o {
            if PASSTHROUGH.contains(&k.as_str()) && !v.is_null() {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(m)
}

/// The properties of `new` that differ from `old`; those gone are cleared (`null`), except
/// those Graph refuses null for (always set). `accountEnabled` is always sent.
fn changes(new: &Map<String, Value>, old: Option<&Map<String, Value>>) -> Map<String, Value> {
    provisync_core::connector::changed_fields(
        new,
        old,
        &["accountEnabled"],
        &[
            "userPrincipalName",
            "displayName",
            "mailNickname",
            "accountEnabled",
        ],
    )
}

/// Users per page of a listing (`$top`: Graph takes 1 to 999 for users).
const USER_PAGE: &str = "999";
/// Groups per page of a listing: each group's members are read with its page.
const GROUP_PAGE: &str = "100";
/// Members per page of `/groups/{id}/members`.
const MEMBER_PAGE: &str = "999";
/// Only members of the tenant: guests (`#EXT#` accounts invited from other tenants) are
/// not accounts the hub could own. (`userType` supports `$filter` `eq`: *user resource
/// type*, <https://learn.microsoft.com/en-us/graph/api/resources/user?view=graph-rest-1.0>.)
const MEMBERS_ONLY: &str = "userType eq 'Member'";

/// The `$select` of a user listing: every property `graph_user` can send.
fn listed_properties() -> String {
    let mut props = vec![
        "id",
        "userPrincipalName",
        "displayName",
        "mailNickname",
        "accountEnabled",
        "givenName",
        "surname",
        "jobTitle",
        "department",
        "mail",
        "mobilePhone",
        "preferredLanguage",
    ];
    for p in PASSTHROUGH {
        if !props.contains(p) {
            props.push(p);
        }
    }
    props.join(",")
}

/// A Graph user (as `graph_user` builds it, or as Graph lists it) in the SCIM shape
/// reconcile compares. Listing and [`Connector::kept`] both go through here, so they are
/// normalised alike: UPN and mail in lower case (Entra matches them case-insensitively),
/// `null`s (Graph's unset properties) left out. `mailNickname` is not here: it is
/// derived unless mapped, see `kept`.
fn scim_user(g: &Map<String, Value>) -> Map<String, Value> {
    let s = |k: &str| {
        g.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let mut out = Map::new();
    if let Some(id) = s("id") {
        out.insert("id".into(), json!(id));
    }
    if let Some(upn) = s("userPrincipalName") {
        out.insert("userName".into(), json!(upn.to_lowercase()));
    }
    if let Some(d) = s("displayName") {
        out.insert("displayName".into(), json!(d));
    }
    let mut name = Map::new();
    if let Some(v) = s("givenName") {
        name.insert("givenName".into(), json!(v));
    }
    if let Some(v) = s("surname") {
        name.insert("familyName".into(), json!(v));
    }
    if !name.is_empty() {
        out.insert("name".into(), Value::Object(name));
    }
    if let Some(b) = g.get("accountEnabled").and_then(Value::as_bool) {
        out.insert("active".into(), json!(b));
    }
    if let Some(v) = s("jobTitle") {
        out.insert("title".into(), json!(v));
    }
    if let Some(v) = s("mail") {
        out.insert(
            "emails".into(),
            json!([{"value": v.to_lowercase(), "primary": true}]),
        );
    }
    if let Some(v) = s("mobilePhone") {
        out.insert(
            "phoneNumbers".into(),
            json!([{"type": "mobile", "value": v}]),
        );
    }
    if let Some(v) = s("preferredLanguage") {
        out.insert("preferredLanguage".into(), json!(v));
    }
    let mut ent = Map::new();
    for (graph, scim) in [
        ("department", "department"),
        ("employeeId", "employeeNumber"),
        ("companyName", "organization"),
    ] {
        if let Some(v) = s(graph) {
            ent.insert(scim.into(), json!(v));
        }
    }
    if !ent.is_empty() {
        out.insert(ENTERPRISE.into(), Value::Object(ent));
    }
    for p in PASSTHROUGH {
        if matches!(*p, "employeeId" | "companyName") {
            continue;
        }
        if let Some(v) = g.get(*p).filter(|v| !v.is_null()) {
            out.insert((*p).to_string(), v.clone());
        }
    }
    out
}

/// `value` and `@odata.nextLink` of a Graph collection.
fn collection(v: &Value) -> Result<(&Vec<Value>, Option<String>), ConnectorError> {
    let items = v
        .get("value")
        .and_then(Value::as_array)
        .ok_or_else(|| refused("Microsoft Graph answered a list without `value`"))?;
    let next = v
        .get("@odata.nextLink")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((items, next))
}

fn group_name(group: &Value) -> Result<&str, ConnectorError> {
    str_at(group, &["displayName"]).ok_or_else(|| refused("the group has no displayName"))
}

#[async_trait::async_trait]
impl Connector for EntraConnector {
    async fn test(&self) -> Result<String, ConnectorError> {
        // Covered by User.ReadWrite.All (reading /organization would need another permission).
        let r = self
            .call(
                Method::GET,
                &["users"],
                &[("$top", "1"), ("$select", "id")],
                None,
            )
            .await
            .map_err(|f| f.error)?;
        if r.json()?.get("value").and_then(Value::as_array).is_none() {
            return Err(refused("Microsoft Graph answered a list without `value`"));
        }
        Ok(format!(
            "Microsoft Graph at {}: tenant {:?} accepted the app registration, users readable",
            self.graph.host_str().unwrap_or("?"),
            self.tenant
        ))
    }

    fn create_detects_existing(&self) -> bool {
        // Graph refuses a duplicate userPrincipalName: one call per new user.
        true
    }

    /// `GET /v1.0/users?$select=…&$filter=userType eq 'Member'&$top=999`, then each
    /// `@odata.nextLink` (*Paging Microsoft Graph data*,
    /// <https://learn.microsoft.com/en-us/graph/paging>).
    async fn list_users(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let select = listed_properties();
        let v = self
            .page(
                &["users"],
                &[
                    ("$select", &select),
                    ("$filter", MEMBERS_ONLY),
                    ("$top", USER_PAGE),
                ],
                cursor,
            )
            .await?;
        let (items, next) = collection(&v)?;
        let resources = items
            .iter()
            .filter_map(Value::as_object)
            .filter(|u| u.get("id").and_then(Value::as_str).is_some())
            .map(|u| {
                let mut out = scim_user(u);
                if let Some(n) = u.get("mailNickname").filter(|n| n.is_string()) {
                    out.insert("mailNickname".into(), n.clone());
                }
                Value::Object(out)
            })
            .collect();
        Ok(ListPage { resources, next })
    }

    /// `GET /v1.0/groups?$select=id,displayName&$top=100`, and for each group its direct
    /// members (`GET /v1.0/groups/{id}/members?$select=id`, every page).
    async fn list_groups(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let v = self
            .page(
                &["groups"],
                &[("$select", "id,displayName"), ("$top", GROUP_PAGE)],
                cursor,
            )
            .await?;
        let (items, next) = collection(&v)?;
        let mut resources = Vec::with_capacity(items.len());
        for g in items {
            let Some(id) = g.get("id").and_then(Value::as_str) else {
                continue;
            };
            let members = self.members_of(id).await?;
            let mut out = json!({ "id": id, "members": members });
            if let Some(name) = g.get("displayName").filter(|n| n.is_string()) {
                out["displayName"] = name.clone();
            }
            resources.push(out);
        }
        Ok(ListPage { resources, next })
    }

    /// Users: the Graph properties `graph_user` would send, back in the listing's SCIM
    /// shape (derived `displayName` included: Entra keeps it), `mailNickname` only when
    /// mapped (derived otherwise). Groups: `displayName` (the description is set on
    /// create only).
    fn kept(&self, kind: ResourceKind, mapped: &Value) -> Value {
        match kind {
            ResourceKind::User => match graph_user(mapped) {
                Ok(g) => {
                    let mut out = scim_user(&g);
                    if let Some(n) = str_at(mapped, &["mailNickname"]) {
                        out.insert("mailNickname".into(), json!(n));
                    }
                    Value::Object(out)
                }
                // Not deliverable either: the update will be refused and audited.
                Err(_) => mapped.clone(),
            },
            ResourceKind::Group => match group_name(mapped) {
                Ok(name) => json!({ "displayName": name }),
                Err(_) => mapped.clone(),
            },
        }
    }

    async fn find_user(&self, user: &Value) -> Result<Option<TargetId>, ConnectorError> {
        let upn = str_at(user, &["userName"])
            .ok_or_else(|| refused("the user has no userName (the userPrincipalName on Entra)"))?;
        self.find_by("users", "userPrincipalName", upn).await
    }

    async fn create_user(
        &self,
        user: &Value,
        password: Option<&str>,
    ) -> Result<TargetId, ConnectorError> {
        let mut body = graph_user(user)?;
        // Graph requires a password on create. One the hub received is the user's own:
        // no change forced; a generated one nobody knows: change it at first sign-in.
        let (password, force) = match password {
            Some(p) => (p.to_string(), false),
            None => (unguessable_password(), true),
        };
        body.insert(
            "passwordProfile".into(),
            json!({"password": password, "forceChangePasswordNextSignIn": force}),
        );
        match self
            .call(Method::POST, &["users"], &[], Some(&Value::Object(body)))
            .await
        {
            Ok(r) => r
                .json()?
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| refused("Microsoft Graph created a user but answered no id")),
            Err(f) if f.message.starts_with(DUPLICATE_UPN) => {
                Err(ConnectorError::Conflict(f.message))
            }
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
        let new = graph_user(user)?;
        let old = previous.and_then(|p| graph_user(p).ok());
        // Never empty: `accountEnabled` is always sent.
        let mut body = changes(&new, old.as_ref());
        if let Some(p) = password {
            body.insert(
                "passwordProfile".into(),
                json!({"password": p, "forceChangePasswordNextSignIn": false}),
            );
        }
        self.call(
            Method::PATCH,
            &["users", id],
            &[],
            Some(&Value::Object(body)),
        )
        .await
        .map_err(|f| f.error)?;
        Ok(None)
    }

    async fn disable_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.call(
            Method::PATCH,
            &["users", id],
            &[],
            Some(&json!({"accountEnabled": false})),
        )
        .await
        .map(|_| ())
        .map_err(|f| f.error)
    }

    async fn delete_user(&self, id: &str) -> Result<(), ConnectorError> {
        match self.call(Method::DELETE, &["users", id], &[], None).await {
            Ok(_) => Ok(()),
            Err(f) if matches!(f.error, ConnectorError::NotFound) => Ok(()),
            Err(f) => Err(f.error),
        }
    }

    async fn find_group(&self, group: &Value) -> Result<Option<TargetId>, ConnectorError> {
        self.find_by("groups", "displayName", group_name(group)?)
            .await
    }

    async fn create_group(&self, group: &Value) -> Result<TargetId, ConnectorError> {
        let name = group_name(group)?;
        let mut body = json!({
            "displayName": name,
            "mailEnabled": false,
            "mailNickname": mail_nickname(name),
            "securityEnabled": true,
        });
        if let Some(d) = str_at(group, &["description"]) {
            body["description"] = json!(d);
        }
        let r = self
            .call(Method::POST, &["groups"], &[], Some(&body))
            .await
            .map_err(|f| f.error)?;
        r.json()?
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| refused("Microsoft Graph created a group but answered no id"))
    }

    async fn update_group(
        &self,
        id: &str,
        group: &Value,
        previous: Option<&Value>,
    ) -> Result<(), ConnectorError> {
        let name = group_name(group)?;
        if previous.and_then(|p| str_at(p, &["displayName"])) == Some(name) {
            return Ok(());
        }
        self.call(
            Method::PATCH,
            &["groups", id],
            &[],
            Some(&json!({ "displayName": name })),
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
            let body = json!({ "@odata.id": self.directory_object(m)? });
            match self
                .call(
                    Method::POST,
                    &["groups", group_id, "members", "$ref"],
                    &[],
                    Some(&body),
                )
                .await
            {
                Ok(_) => {}
                Err(f) if f.message.starts_with(MEMBER_EXISTS) => {}
                Err(f) if matches!(f.error, ConnectorError::NotFound) => {
                    return Err(ConnectorError::Refused {
                        status: Some(404),
                        reason: format!(
                            "group {group_id} or member {m} does not exist on Entra: {}",
                            f.message
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
                .call(
                    Method::DELETE,
                    &["groups", group_id, "members", m, "$ref"],
                    &[],
                    None,
                )
                .await
            {
                // Not a member (or either side gone): what we wanted.
                Ok(_) => {}
                Err(f) if matches!(f.error, ConnectorError::NotFound) => {}
                Err(f) => return Err(f.error),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_from_scim() {
        let u = json!({
            "userName": "alice@contoso.test", "name": {"givenName": "Alice", "familyName": "Liddell"},
            "title": "Engineer", "active": false,
            ENTERPRISE: {"department": "R&D"},
            "emails": [{"value": "w@x.test"}, {"value": "p@x.test", "primary": true}],
            "phoneNumbers": [{"type": "work", "value": "1"}, {"type": "mobile", "value": "2"}],
            "usageLocation": "FR", "nickName": "ignored"
        });
        let m = graph_user(&u).unwrap();
        assert_eq!(
            Value::Object(m.clone()),
            json!({"userPrincipalName": "alice@contoso.test", "displayName": "Alice Liddell",
                   "mailNickname": "alice", "accountEnabled": false, "givenName": "Alice",
                   "surname": "Liddell", "jobTitle": "Engineer", "department": "R&D",
                   "mail": "p@x.test", "mobilePhone": "2", "usageLocation": "FR"})
        );
        let mut u2 = u.clone();
        u2["title"] = Value::Null;
        u2["active"] = json!(true);
        let d = changes(&graph_user(&u2).unwrap(), Some(&m));
        assert_eq!(
            Value::Object(d),
            json!({"accountEnabled": true, "jobTitle": null})
        );
        assert!(graph_user(&json!({"displayName": "x"})).is_err());
    }

    #[test]
    fn listing_shape_is_what_kept_compares() {
        let mapped = json!({
            "userName": "Alice@Contoso.test", "externalId": "hub-1", "nickName": "not kept",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "Alice@X.test", "type": "work", "primary": true}],
            ENTERPRISE: {"department": "R&D", "employeeNumber": "42"}, "usageLocation": "FR"
        });
        let c = EntraConnector::new(&EntraTarget {
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "app".into(),
            client_secret: "s".into(),
            graph_url: None,
            login_url: None,
        })
        .unwrap();
        let kept = c.kept(ResourceKind::User, &mapped);
        assert_eq!(
            kept,
            json!({"userName": "alice@contoso.test", "displayName": "Alice Liddell",
                   "name": {"givenName": "Alice", "familyName": "Liddell"}, "active": true,
                   "emails": [{"value": "alice@x.test", "primary": true}],
                   ENTERPRISE: {"department": "R&D", "employeeNumber": "42"},
                   "usageLocation": "FR"})
        );
        // Graph's listing of the same user (unset properties null) is the same shape.
        let listed = json!({"id": "o1", "userPrincipalName": "alice@contoso.test",
            "displayName": "Alice Liddell", "givenName": "Alice", "surname": "Liddell",
            "mail": "alice@x.test", "accountEnabled": true, "jobTitle": null,
            "department": "R&D", "employeeId": "42", "usageLocation": "FR", "city": null});
        let mut scim = scim_user(listed.as_object().unwrap());
        assert_eq!(scim.remove("id"), Some(json!("o1")));
        assert_eq!(Value::Object(scim), kept);
        // Groups keep their name only.
        assert_eq!(
            c.kept(
                ResourceKind::Group,
                &json!({"displayName": "g", "externalId": "h"})
            ),
            json!({"displayName": "g"})
        );
        // Next links: Graph's own origin only.
        assert!(
            c.next_link("https://graph.microsoft.com/v1.0/users?$skiptoken=a")
                .is_ok()
        );
        for bad in [
            "https://graph.microsoft.com.evil.test/v1.0/users",
            "http://graph.microsoft.com/v1.0/users",
            "https://graph.microsoft.com/beta/users",
            "/v1.0/users",
        ] {
            assert!(c.next_link(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_urls() {
        assert_eq!(odata_string("o'brien"), "o''brien");
        assert_eq!(mail_nickname("Jo Smith (ext)@x"), "JoSmithext");
        assert_eq!(mail_nickname("Ünïcode"), "ncode");
        assert!(mail_nickname("ü").starts_with('u'));
        let t = EntraTarget {
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "app".into(),
            client_secret: "very-secret".into(),
            graph_url: None,
            login_url: None,
        };
        let c = EntraConnector::new(&t).unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
        assert_eq!(
            c.url(&["groups", "g1", "members", "$ref"], &[])
                .unwrap()
                .as_str(),
            "https://graph.microsoft.com/v1.0/groups/g1/members/$ref"
        );
        assert_eq!(
            c.directory_object("u1").unwrap(),
            "https://graph.microsoft.com/v1.0/directoryObjects/u1"
        );
        let bad = EntraTarget {
            tenant_id: "a/b".into(),
            ..t
        };
        assert!(EntraConnector::new(&bad).is_err());
    }
}
