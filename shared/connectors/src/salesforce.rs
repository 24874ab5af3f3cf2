//! The Salesforce connector: users, public groups and group members through the REST API
//! (`{instance_url}/services/data/{api_version}/`), as a connected app with the OAuth 2.0
//! client credentials flow (`POST {login_url}/services/oauth2/token`; the token acts as
//! the connected app's run-as user).
//!
//! - the id of a user or group on Salesforce is its record id (`005…`, `00G…`);
//! - match: SOQL `SELECT Id FROM User WHERE Username = '…'`; create: `POST sobjects/User`
//!   (Salesforce refuses an existing Username with `DUPLICATE_USERNAME`, a conflict: the
//!   engine creates first and matches on the conflict); required fields Salesforce wants
//!   (`ProfileId`, `TimeZoneSidKey`, …) come from the target's `defaults` and the mapping;
//!   `Alias` and `CommunityNickname` are derived when not mapped;
//! - update: `PATCH sobjects/User/{id}` with the fields that changed; password:
//!   `POST sobjects/User/{id}/password` `{"NewPassword"}`;
//! - deactivate **and delete**: `IsActive: false` (Salesforce users cannot be deleted);
//! - groups: public groups, `sobjects/Group` (`Type: Regular`), found by `Name`; members
//!   are `GroupMember` records (`GroupId`, `UserOrGroupId`), found by SOQL to delete them.
//!
//! Errors are Salesforce's list `[{"errorCode","message","fields"}]`: the audit log gets
//! the code, the message and the fields.

use provisync_core::connector::{refused, str_at, typed_value};
use std::collections::BTreeMap;
use std::fmt;

use reqwest::header;
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};

use crate::http::{
    HttpClient, HttpResponse, SetupError, check_target_url, error_for, join_url, truncate,
};
use crate::oauth::{ClientCredentials, ClientCredentialsConfig};
use provisync_core::connector::{Connector, ConnectorError, ListPage, TargetId};
use provisync_core::target::SalesforceTarget;
use provisync_scim::ResourceKind;

const ENTERPRISE: &str = provisync_scim::urn::ENTERPRISE_USER;

pub struct SalesforceConnector {
    instance: Url,
    version: String,
    defaults: BTreeMap<String, Value>,
    oauth: ClientCredentials,
    http: HttpClient,
}

impl fmt::Debug for SalesforceConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SalesforceConnector")
            .field("instance", &self.instance.as_str())
            .field("version", &self.version)
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
}

/// A failed call with Salesforce's first `errorCode`, when it gave one.
struct Failure {
    error: ConnectorError,
    code: Option<String>,
}

impl From<ConnectorError> for Failure {
    fn from(error: ConnectorError) -> Self {
        Failure { error, code: None }
    }
}

impl Failure {
    fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// Salesforce's error list: `(errorCode, "code: message (fields: a, b)")` of each entry,
/// joined; `None` when the body is not that list.
fn salesforce_errors(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let list = v.as_array()?;
    let mut first = None;
    let mut parts = Vec::new();
    for e in list {
        let code = e
            .get("errorCode")
            .and_then(Value::as_str)
            .unwrap_or("ERROR");
        let message = e.get("message").and_then(Value::as_str).unwrap_or("");
        let fields: Vec<&str> = e
            .get("fields")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        first.get_or_insert_with(|| code.to_string());
        let mut part = format!("{code}: {message}");
        if !fields.is_empty() {
            part.push_str(&format!(" (fields: {})", fields.join(", ")));
        }
        parts.push(part);
    }
    Some((first?, parts.join("; ")))
}

impl SalesforceConnector {
    pub fn new(target: &SalesforceTarget) -> Result<Self, SetupError> {
        Self::with_client(target, HttpClient::shared()?)
    }

    pub fn with_client(target: &SalesforceTarget, http: HttpClient) -> Result<Self, SetupError> {
        let instance = check_target_url(&target.instance_url)
            .map_err(|e| SetupError::Url(format!("instance_url: {e}")))?;
        let login = check_target_url(target.login_url.as_deref().unwrap_or(&target.instance_url))
            .map_err(|e| SetupError::Url(format!("login_url: {e}")))?;
        let v = target.api_version.trim();
        if !v.starts_with('v')
            || v.len() < 4
            || !v[1..].chars().all(|c| c.is_ascii_digit() || c == '.')
        {
            return Err(SetupError::Config(
                "api_version must look like v60.0".into(),
            ));
        }
        if target.client_id.trim().is_empty() || target.client_secret.is_empty() {
            return Err(SetupError::Credentials(
                "client_id and client_secret are required".into(),
            ));
        }
        let token_url = join_url(&login, &["services", "oauth2", "token"], &[])
            .ok_or_else(|| SetupError::Url("login_url cannot take a path".into()))?;
        let oauth = ClientCredentials::new(
            ClientCredentialsConfig {
                token_url,
                client_id: target.client_id.trim().to_string(),
                client_secret: target.client_secret.clone(),
                scope: None,
                system: "Salesforce",
            },
            http.clone(),
        );
        Ok(SalesforceConnector {
            instance,
            version: v.to_string(),
            defaults: target.defaults.clone(),
            oauth,
            http,
        })
    }

    /// `{instance}/services/data/{version}/{segments}?{query}`, percent-encoded.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, ConnectorError> {
        join_url(
            &self.instance,
            &[&["services", "data", self.version.as_str()], segments].concat(),
            query,
        )
        .ok_or_else(|| ConnectorError::Gone("instance_url cannot take a path".into()))
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<HttpResponse, Failure> {
        let url = self.url(segments, query)?;
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
            Ok(r) => {
                tracing::debug!(%method, %path, status = r.status.as_u16(), "salesforce target")
            }
            Err(e) => tracing::debug!(%method, %path, error = %e, "salesforce target"),
        }
        let resp = result.map_err(|e| self.oauth.scrub_error(e))?;
        if resp.is_success() {
            return Ok(resp);
        }
        let status = resp.status.as_u16();
        let parsed = salesforce_errors(&resp.body);
        let code = parsed.as_ref().map(|(c, _)| c.clone());
        let reason = parsed.map(|(_, r)| truncate(&self.oauth.scrub(&r), 600));
        let error = match (code.as_deref(), reason) {
            (Some("DUPLICATE_USERNAME"), Some(r)) => ConnectorError::Conflict(r),
            (Some("NOT_FOUND" | "ENTITY_IS_DELETED"), _) => ConnectorError::NotFound,
            // The org's API request limit (24 h rolling): try again later.
            (Some("REQUEST_LIMIT_EXCEEDED"), Some(r)) => ConnectorError::Retryable {
                status: Some(status),
                retry_after: None,
                detail: r,
            },
            (Some("INVALID_SESSION_ID"), Some(r)) => ConnectorError::Refused {
                status: Some(status),
                reason: format!(
                    "Salesforce did not accept a fresh token of the connected app: {r}"
                ),
            },
            (Some(_), Some(r)) => match error_for(&resp, None) {
                ConnectorError::Retryable {
                    status,
                    retry_after,
                    ..
                } => ConnectorError::Retryable {
                    status,
                    retry_after,
                    detail: r,
                },
                ConnectorError::NotFound => ConnectorError::NotFound,
                _ => ConnectorError::Refused {
                    status: Some(status),
                    reason: r,
                },
            },
            _ => self.oauth.scrub_error(error_for(&resp, None)),
        };
        Err(Failure { error, code })
    }

    /// The `Id` of the first record a SOQL query returns.
    async fn query_id(&self, soql: &str) -> Result<Option<TargetId>, ConnectorError> {
        let r = self
            .call(Method::GET, &["query"], &[("q", soql)], None)
            .await
            .map_err(|f| f.error)?;
        let v = r.json()?;
        let records = v
            .get("records")
            .and_then(Value::as_array)
            .ok_or_else(|| refused("Salesforce answered a query without `records`"))?;
        Ok(records
            .first()
            .and_then(|r| r.get("Id"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// One batch of a SOQL query: the first (`soql`) or the one `cursor` (a
    /// `nextRecordsUrl`) names. Returns the records and the next `nextRecordsUrl`.
    async fn query_batch(
        &self,
        soql: &str,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), ConnectorError> {
        self.query_batch_or_failure(soql, cursor)
            .await
            .map_err(|f| f.error)
    }

    async fn query_batch_or_failure(
        &self,
        soql: &str,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), Failure> {
        let r = match cursor {
            None => {
                self.call(Method::GET, &["query"], &[("q", soql)], None)
                    .await
            }
            Some(next) => {
                let locator = self.query_locator(next)?;
                self.call(Method::GET, &["query", locator], &[], None).await
            }
        }?;
        let mut v = r.json()?;
        let records = match v.get_mut("records").map(Value::take) {
            Some(Value::Array(records)) => records,
            _ => return Err(refused("Salesforce answered a query without `records`").into()),
        };
        // `done: false` and a locator while more records remain (*Execute a SOQL Query*,
        // <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_query.htm>).
        let done = v.get("done").and_then(Value::as_bool).unwrap_or(true);
        let next = v
            .get("nextRecordsUrl")
            .and_then(Value::as_str)
            .filter(|_| !done)
            .map(str::to_string);
        Ok((records, next))
    }

    /// One batch of a listing (`{select_from} WHERE {filter} ORDER BY Id`). The cursor is
    /// `"{nextRecordsUrl} {last Id read}"`: Salesforce drops a query locator after 15
    /// minutes unused (a reconcile resumed in a later cycle), and its
    /// `INVALID_QUERY_LOCATOR` then restarts the query after that Id, so the listing
    /// continues where it stopped instead of failing on every cycle.
    async fn listing_batch(
        &self,
        select_from: &str,
        filter: &str,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), ConnectorError> {
        let query_after = |after: Option<&str>| match after {
            None => format!("{select_from} WHERE {filter} ORDER BY Id"),
            Some(id) => format!(
                "{select_from} WHERE {filter} AND Id > '{}' ORDER BY Id",
                soql_string(id)
            ),
        };
        let (records, next) = match cursor {
            None => self.query_batch(&query_after(None), None).await?,
            Some(c) => {
                let (next, after) = match c.rsplit_once(' ') {
                    Some((n, a)) => (n, Some(a)),
                    None => (c, None),
                };
                match self.query_batch_or_failure("", Some(next)).await {
                    Ok(batch) => batch,
                    Err(f) if f.is("INVALID_QUERY_LOCATOR") && after.is_some() => {
                        tracing::info!(
                            "salesforce query locator expired: listing again after the last record read"
                        );
                        self.query_batch(&query_after(after), None).await?
                    }
                    Err(f) => return Err(f.error),
                }
            }
        };
        let last = records
            .iter()
            .rev()
            .find_map(|r| r.get("Id").and_then(Value::as_str));
        let next = next.map(|n| match last {
            Some(id) => format!("{n} {id}"),
            None => n,
        });
        Ok((records, next))
    }

    /// The query locator of a `nextRecordsUrl`
    /// (`/services/data/{version}/query/{locator}`), checked: the token only goes to this
    /// instance's query resource.
    fn query_locator<'a>(&self, next: &'a str) -> Result<&'a str, ConnectorError> {
        let prefix = format!("/services/data/{}/query/", self.version);
        next.strip_prefix(&prefix)
            .filter(|l| {
                !l.is_empty()
                    && l.len() <= 100
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            .ok_or_else(|| {
                refused("Salesforce answered a nextRecordsUrl that is not a query locator: not followed")
            })
    }

    /// Every `GroupMember` of `groups`, as `GroupId -> [{"value": UserOrGroupId}]`.
    async fn members_of(
        &self,
        groups: &[&str],
    ) -> Result<BTreeMap<String, Vec<Value>>, ConnectorError> {
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        // Bounded `IN` lists: a SOQL statement travels in the URL.
        for chunk in groups.chunks(MEMBER_QUERY_GROUPS) {
            let ids: Vec<String> = chunk
                .iter()
                .map(|g| format!("'{}'", soql_string(g)))
                .collect();
            let soql = format!(
                "SELECT GroupId, UserOrGroupId FROM GroupMember WHERE GroupId IN ({})",
                ids.join(", ")
            );
            let mut cursor: Option<String> = None;
            loop {
                let (records, next) = self.query_batch(&soql, cursor.as_deref()).await?;
                for r in &records {
                    if let (Some(g), Some(m)) = (
                        r.get("GroupId").and_then(Value::as_str),
                        r.get("UserOrGroupId").and_then(Value::as_str),
                    ) {
                        out.entry(g.to_string())
                            .or_default()
                            .push(json!({ "value": m }));
                    }
                }
                match next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    async fn set_password(&self, id: &str, password: &str) -> Result<(), ConnectorError> {
        self.call(
            Method::POST,
            &["sobjects", "User", id, "password"],
            &[],
            Some(&json!({ "NewPassword": password })),
        )
        .await
        .map(|_| ())
        .map_err(|f| f.error)
    }

    async fn patch(&self, object: &str, id: &str, body: Value) -> Result<(), ConnectorError> {
        self.call(Method::PATCH, &["sobjects", object, id], &[], Some(&body))
            .await
            .map(|_| ())
            .map_err(|f| f.error)
    }
}

/// A string literal inside SOQL: quotes, backslashes and line breaks escaped with a
/// backslash (SOQL and SOSL Reference, "Quoted String Escape Sequences").
pub fn soql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// An `Alias` (at most 8 characters): first initial and family name, else the user
/// name's start; ASCII letters and digits, lower case.
pub fn alias(given: Option<&str>, family: Option<&str>, user_name: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let mut a = match family.map(clean).filter(|f| !f.is_empty()) {
        Some(f) => {
            let initial: String = given
                .map(clean)
                .unwrap_or_default()
                .chars()
                .take(1)
                .collect();
            format!("{initial}{f}")
        }
        None => clean(user_name.split('@').next().unwrap_or(user_name)),
    };
    if a.is_empty() {
        a = "user".into();
    }
    a.chars().take(8).collect()
}

/// Whether a payload key is a Salesforce field name set through the mapping (standard
/// fields start with an upper-case letter, custom ones end in `__c`): SCIM attribute
/// names start in lower case, so the two never mix.
fn is_salesforce_field(k: &str) -> bool {
    k.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The User fields of a mapped SCIM payload (without the target's `defaults`).
fn sf_user(user: &Value) -> Result<Map<String, Value>, ConnectorError> {
    let username = str_at(user, &["userName"])
        .ok_or_else(|| refused("the user has no userName (the Username on Salesforce)"))?;
    let given = str_at(user, &["name", "givenName"]);
    let family = str_at(user, &["name", "familyName"]);
    let mut m = Map::new();
    m.insert("Username".into(), json!(username));
    let last = family
        .or_else(|| str_at(user, &["displayName"]))
        .unwrap_or(username);
    m.insert("LastName".into(), json!(last));
    m.insert("Alias".into(), json!(alias(given, family, username)));
    // Unique in the org, as the Username is; at most 40 characters.
    m.insert(
        "CommunityNickname".into(),
        json!(username.chars().take(40).collect::<String>()),
    );
    m.insert(
        "IsActive".into(),
        json!(user.get("active").and_then(Value::as_bool).unwrap_or(true)),
    );
    let optional = [
        ("FirstName", given),
        ("Email", typed_value(user, "emails", None)),
        ("Title", str_at(user, &["title"])),
        ("Department", str_at(user, &[ENTERPRISE, "department"])),
        (
            "EmployeeNumber",
            str_at(user, &[ENTERPRISE, "employeeNumber"]),
        ),
        ("CompanyName", str_at(user, &[ENTERPRISE, "organization"])),
        (
            "MobilePhone",
            typed_value(user, "phoneNumbers", Some("mobile")),
        ),
        ("Phone", typed_value(user, "phoneNumbers", Some("work"))),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    if let Some(o) = user.as_object() {
        for (k, v) in o {
            if is_salesforce_field(k) {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(m)
}

/// The fields of `new` that differ from `old`; those gone are cleared (`null`), except the
/// ones a User always has. `IsActive` is always sent.
fn changes(new: &Map<String, Value>, old: Option<&Map<String, Value>>) -> Map<String, Value> {
    provisync_core::connector::changed_fields(
        new,
        old,
        &["IsActive"],
        &[
            "Username",
            "LastName",
            "Alias",
            "CommunityNickname",
            "IsActive",
            "Email",
        ],
    )
}

/// Groups per `GroupMember` query of a group listing.
const MEMBER_QUERY_GROUPS: usize = 100;

/// The users a listing reads: standard users only. `UserType` is the category of the
/// user's license (*User* object reference): `Standard` is a full Salesforce license,
/// what the hub provisions with a standard profile. Left out: Chatter Free and Chatter
/// Expert (`CsnOnly`), the Automated Process and platform integration users, guest,
/// portal and community users — accounts the hub could never own, which would otherwise
/// be orphans (and deactivated under that policy).
const LIST_USERS: (&str, &str) = (
    "SELECT Id, Username, FirstName, LastName, Email, IsActive, Title, Department, \
     EmployeeNumber, CompanyName, MobilePhone, Phone, FederationIdentifier FROM User",
    "UserType = 'Standard'",
);
/// Public groups, as the connector creates them.
const LIST_GROUPS: (&str, &str) = ("SELECT Id, Name FROM Group", "Type = 'Regular'");

/// A User record (as `sf_user` builds it, or as a query returns it) in the SCIM shape
/// reconcile compares. Listing and [`Connector::kept`] both go through here, so they are
/// normalised alike: `Username` and `Email` in lower case (Salesforce matches them
/// case-insensitively), `null`s (unset fields) left out, only the fields the listing
/// selects. Derived fields (`Alias`, `CommunityNickname`) are not compared; of the fields
/// a mapping may set directly, only `FederationIdentifier` (the SSO id) is.
fn scim_user(r: &Map<String, Value>) -> Map<String, Value> {
    let s = |k: &str| {
        r.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let mut out = Map::new();
    if let Some(id) = s("Id") {
        out.insert("id".into(), json!(id));
    }
    if let Some(u) = s("Username") {
        out.insert("userName".into(), json!(u.to_lowercase()));
    }
    let mut name = Map::new();
    if let Some(v) = s("FirstName") {
        name.insert("givenName".into(), json!(v));
    }
    if let Some(v) = s("LastName") {
        name.insert("familyName".into(), json!(v));
    }
    if !name.is_empty() {
        out.insert("name".into(), Value::Object(name));
    }
    if let Some(b) = r.get("IsActive").and_then(Value::as_bool) {
        out.insert("active".into(), json!(b));
    }
    if let Some(v) = s("Email") {
        out.insert(
            "emails".into(),
            json!([{"value": v.to_lowercase(), "primary": true}]),
        );
    }
    if let Some(v) = s("Title") {
        out.insert("title".into(), json!(v));
    }
    let mut ent = Map::new();
    for (sf, scim) in [
        ("Department", "department"),
        ("EmployeeNumber", "employeeNumber"),
        ("CompanyName", "organization"),
    ] {
        if let Some(v) = s(sf) {
            ent.insert(scim.into(), json!(v));
        }
    }
    if !ent.is_empty() {
        out.insert(ENTERPRISE.into(), Value::Object(ent));
    }
    let mut phones = Vec::new();
    for (sf, kind) in [("MobilePhone", "mobile"), ("Phone", "work")] {
        if let Some(v) = s(sf) {
            phones.push(json!({"type": kind, "value": v}));
        }
    }
    if !phones.is_empty() {
        out.insert("phoneNumbers".into(), Value::Array(phones));
    }
    if let Some(v) = s("FederationIdentifier") {
        out.insert("FederationIdentifier".into(), json!(v));
    }
    out
}

/// A `DeveloperName` for a group: letters, digits and single underscores, starting with
/// a letter, not ending with an underscore; at most 40 characters.
pub fn developer_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert_str(0, "G_");
    }
    let mut out: String = out.chars().take(40).collect();
    while out.ends_with('_') {
        out.pop();
    }
    out
}

fn group_name(group: &Value) -> Result<&str, ConnectorError> {
    str_at(group, &["displayName"]).ok_or_else(|| refused("the group has no displayName"))
}

#[async_trait::async_trait]
impl Connector for SalesforceConnector {
    async fn test(&self) -> Result<String, ConnectorError> {
        let r = self
            .call(Method::GET, &["limits"], &[], None)
            .await
            .map_err(|f| f.error)?;
        let v = r.json()?;
        let daily = v.get("DailyApiRequests");
        let left = match (
            daily
                .and_then(|d| d.get("Remaining"))
                .and_then(Value::as_u64),
            daily.and_then(|d| d.get("Max")).and_then(Value::as_u64),
        ) {
            (Some(r), Some(m)) => format!(", {r} of {m} daily API requests left"),
            _ => String::new(),
        };
        Ok(format!(
            "Salesforce at {}: connected app accepted (API {}){left}",
            self.instance.host_str().unwrap_or("?"),
            self.version
        ))
    }

    fn create_detects_existing(&self) -> bool {
        // DUPLICATE_USERNAME: one call per new user.
        true
    }

    /// SOQL `SELECT … FROM User WHERE UserType = 'Standard' ORDER BY Id`, then each
    /// `nextRecordsUrl` (batches of up to 2,000 records); the run-as user left out.
    async fn list_users(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let (records, next) = self
            .listing_batch(LIST_USERS.0, LIST_USERS.1, cursor)
            .await?;
        // The connected app's run-as user (the last segment of the token's identity URL)
        // is the connector itself: never an orphan to deactivate.
        let run_as = self.oauth.identity().and_then(|url| {
            url.rsplit('/')
                .next()
                .filter(|id| !id.is_empty())
                .map(str::to_string)
        });
        let resources = records
            .iter()
            .filter_map(Value::as_object)
            .filter(|r| {
                r.get("Id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| Some(id) != run_as.as_deref())
            })
            .map(|r| Value::Object(scim_user(r)))
            .collect();
        Ok(ListPage { resources, next })
    }

    /// Public groups (`SELECT Id, Name FROM Group WHERE Type = 'Regular'`), each with its
    /// `GroupMember`s (users and nested groups), read for the whole batch at once.
    async fn list_groups(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let (records, next) = self
            .listing_batch(LIST_GROUPS.0, LIST_GROUPS.1, cursor)
            .await?;
        let ids: Vec<&str> = records
            .iter()
            .filter_map(|r| r.get("Id").and_then(Value::as_str))
            .collect();
        let mut members = self.members_of(&ids).await?;
        let resources = records
            .iter()
            .filter_map(|r| {
                let id = r.get("Id").and_then(Value::as_str)?;
                let mut g = json!({
                    "id": id,
                    "members": members.remove(id).unwrap_or_default(),
                });
                if let Some(name) = r.get("Name").filter(|n| n.is_string()) {
                    g["displayName"] = name.clone();
                }
                Some(g)
            })
            .collect();
        Ok(ListPage { resources, next })
    }

    /// Users: the User fields `sf_user` would send that the listing reads, back in its
    /// SCIM shape (`LastName` as Salesforce gets it: the family name, else the display
    /// name, else the user name). Groups: `displayName` (the group's `Name`).
    fn kept(&self, kind: ResourceKind, mapped: &Value) -> Value {
        match kind {
            ResourceKind::User => match sf_user(mapped) {
                Ok(fields) => Value::Object(scim_user(&fields)),
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
        let name = str_at(user, &["userName"])
            .ok_or_else(|| refused("the user has no userName (the Username on Salesforce)"))?;
        self.query_id(&format!(
            "SELECT Id FROM User WHERE Username = '{}'",
            soql_string(name)
        ))
        .await
    }

    async fn create_user(
        &self,
        user: &Value,
        password: Option<&str>,
    ) -> Result<TargetId, ConnectorError> {
        let mut body = sf_user(user)?;
        for (k, v) in &self.defaults {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let id = match self
            .call(
                Method::POST,
                &["sobjects", "User"],
                &[],
                Some(&Value::Object(body)),
            )
            .await
        {
            Ok(r) => r
                .json()?
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| refused("Salesforce created a user but answered no id"))?,
            Err(f) if f.is("REQUIRED_FIELD_MISSING") => {
                return Err(match f.error {
                    ConnectorError::Refused { status, reason } => ConnectorError::Refused {
                        status,
                        reason: format!(
                            "{reason}: set them in the target's `defaults` or with a mapping rule"
                        ),
                    },
                    e => e,
                });
            }
            Err(f) => return Err(f.error),
        };
        if let Some(p) = password {
            self.set_password(&id, p).await?;
        }
        Ok(id)
    }

    async fn update_user(
        &self,
        id: &str,
        user: &Value,
        previous: Option<&Value>,
        password: Option<&str>,
    ) -> Result<Option<TargetId>, ConnectorError> {
        let new = sf_user(user)?;
        let old = previous.and_then(|p| sf_user(p).ok());
        // Never empty: `IsActive` is always sent.
        let body = changes(&new, old.as_ref());
        self.patch("User", id, Value::Object(body)).await?;
        if let Some(p) = password {
            self.set_password(id, p).await?;
        }
        Ok(None)
    }

    async fn disable_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.patch("User", id, json!({"IsActive": false})).await
    }

    /// Salesforce users cannot be deleted: the nearest equivalent is deactivation.
    async fn delete_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.disable_user(id).await
    }

    async fn find_group(&self, group: &Value) -> Result<Option<TargetId>, ConnectorError> {
        self.query_id(&format!(
            "SELECT Id FROM Group WHERE Type = 'Regular' AND Name = '{}'",
            soql_string(group_name(group)?)
        ))
        .await
    }

    async fn create_group(&self, group: &Value) -> Result<TargetId, ConnectorError> {
        let name = group_name(group)?;
        let body = json!({"Name": name, "DeveloperName": developer_name(name), "Type": "Regular"});
        match self
            .call(Method::POST, &["sobjects", "Group"], &[], Some(&body))
            .await
        {
            Ok(r) => r
                .json()?
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| refused("Salesforce created a group but answered no id")),
            Err(f) if f.is("DUPLICATE_DEVELOPER_NAME") => Err(ConnectorError::Conflict(format!(
                "a group named {name:?} exists"
            ))),
            Err(f) => Err(f.error),
        }
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
        self.patch("Group", id, json!({ "Name": name })).await
    }

    async fn delete_group(&self, id: &str) -> Result<(), ConnectorError> {
        match self
            .call(Method::DELETE, &["sobjects", "Group", id], &[], None)
            .await
        {
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
                .call(
                    Method::POST,
                    &["sobjects", "GroupMember"],
                    &[],
                    Some(&json!({"GroupId": group_id, "UserOrGroupId": m})),
                )
                .await
            {
                Ok(_) => {}
                // Already a member.
                Err(f) if f.is("DUPLICATE_VALUE") => {}
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
            let found = self
                .query_id(&format!(
                    "SELECT Id FROM GroupMember WHERE GroupId = '{}' AND UserOrGroupId = '{}'",
                    soql_string(group_id),
                    soql_string(m)
                ))
                .await?;
            let Some(member_id) = found else {
                continue;
            };
            match self
                .call(
                    Method::DELETE,
                    &["sobjects", "GroupMember", &member_id],
                    &[],
                    None,
                )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_from_scim() {
        let u = json!({
            "userName": "alice@acme.test", "name": {"givenName": "Alice", "familyName": "O'Liddell-Smith"},
            "active": true, "title": "CTO",
            "emails": [{"value": "alice@acme.test", "primary": true}],
            "FederationIdentifier": "alice-sso", "Region__c": "EMEA", "nickName": "x"
        });
        let m = sf_user(&u).unwrap();
        assert_eq!(
            Value::Object(m.clone()),
            json!({"Username": "alice@acme.test", "LastName": "O'Liddell-Smith", "Alias": "aoliddel",
                   "CommunityNickname": "alice@acme.test", "IsActive": true, "FirstName": "Alice",
                   "Email": "alice@acme.test", "Title": "CTO", "FederationIdentifier": "alice-sso",
                   "Region__c": "EMEA"})
        );
        let mut u2 = u.clone();
        u2["title"] = Value::Null;
        u2["active"] = json!(false);
        assert_eq!(
            Value::Object(changes(&sf_user(&u2).unwrap(), Some(&m))),
            json!({"IsActive": false, "Title": null})
        );
        assert_eq!(
            Value::Object(changes(&m, Some(&m))),
            json!({"IsActive": true})
        );
        assert_eq!(alias(None, None, "bob.builder@x"), "bobbuild");
        assert_eq!(alias(Some("É"), Some("Ü"), "z@x"), "z");
    }

    #[test]
    fn listing_shape_is_what_kept_compares() {
        let c = SalesforceConnector::new(&SalesforceTarget {
            instance_url: "https://acme.my.salesforce.com".into(),
            login_url: None,
            client_id: "app".into(),
            client_secret: "s".into(),
            api_version: "v60.0".into(),
            defaults: BTreeMap::new(),
        })
        .unwrap();
        let mapped = json!({
            "userName": "Alice@Acme.test", "externalId": "hub-1", "displayName": "Alice L",
            "emails": [{"value": "alice@acme.test", "primary": true}],
            "phoneNumbers": [{"type": "work", "value": "1"}],
            "FederationIdentifier": "alice-sso", "Region__c": "EMEA"
        });
        let kept = c.kept(ResourceKind::User, &mapped);
        // No family name: Salesforce gets the display name as LastName.
        assert_eq!(
            kept,
            json!({"userName": "alice@acme.test", "name": {"familyName": "Alice L"},
                   "active": true, "emails": [{"value": "alice@acme.test", "primary": true}],
                   "phoneNumbers": [{"type": "work", "value": "1"}],
                   "FederationIdentifier": "alice-sso"})
        );
        let listed = json!({"attributes": {"type": "User"}, "Id": "005x", "Username": "alice@acme.test",
            "FirstName": null, "LastName": "Alice L", "Email": "alice@acme.test", "IsActive": true,
            "Title": null, "MobilePhone": null, "Phone": "1", "FederationIdentifier": "alice-sso"});
        let mut scim = scim_user(listed.as_object().unwrap());
        assert_eq!(scim.remove("id"), Some(json!("005x")));
        assert_eq!(Value::Object(scim), kept);
        // Query locators: this instance's query resource only.
        assert_eq!(
            c.query_locator("/services/data/v60.0/query/01gD0000002HU6KIAW-2000"),
            Ok("01gD0000002HU6KIAW-2000")
        );
        for bad in [
            "https://evil.test/services/data/v60.0/query/01g-2000",
            "/services/data/v60.0/query/../sobjects/User",
            "/services/data/v59.0/query/01g-2000",
            "/services/data/v60.0/query/",
        ] {
            assert!(c.query_locator(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_escaping() {
        assert_eq!(soql_string("o'b\\r\n"), "o\\'b\\\\r\\n");
        assert_eq!(developer_name("R&D team"), "R_D_team");
        assert_eq!(developer_name("42 x_"), "G_42_x");
        assert_eq!(developer_name("__"), "G");
        assert_eq!(
            salesforce_errors(
                br#"[{"message":"Required fields are missing: [ProfileId]","errorCode":"REQUIRED_FIELD_MISSING","fields":["ProfileId"]}]"#
            ),
            Some((
                "REQUIRED_FIELD_MISSING".into(),
                "REQUIRED_FIELD_MISSING: Required fields are missing: [ProfileId] (fields: ProfileId)".into()
            ))
        );
        assert_eq!(salesforce_errors(b"{}"), None);
    }
}
