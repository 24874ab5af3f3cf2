//! The Atlassian Crowd connector: users, groups and direct memberships through Crowd's
//! application REST API, `{base_url}/rest/usermanagement/1/` (Crowd 2.1 and later),
//! authenticated with HTTP Basic as a Crowd *application* (its name and password, not a
//! user's).
//!
//! - the id of a user on Crowd is its user name, of a group its name;
//! - match: `GET /user?username=`; create: `POST /user` (201);
//! - update: `POST /user/rename?username=old` `{"new-name"}` when the user name changed
//!   (the new name is returned to the engine, which re-links), then `PUT /user?username=`
//!   with the whole user, then `PUT /user/password?username=` when a password is given;
//! - deactivate: `PUT /user` with `active: false` (the rest of the account read first);
//! - delete: `DELETE /user?username=` (404: already gone);
//! - groups: `POST /group` `{"name","type":"GROUP","active":true}`, `DELETE /group?groupname=`;
//!   memberships `POST /user/group/direct?username=` `{"name": group}` (409
//!   `MEMBERSHIP_ALREADY_EXISTS` is success) and `DELETE /user/group/direct?username=&groupname=`
//!   (404 is success);
//! - custom attributes: a mapped `attributes` object (`{"target": "attributes.costCenter",
//!   "source": "…"}`) is stored with `POST /user/attribute?username=`.
//! - reconcile: users from `GET /search?entity-type=user&expand=user&start-index=&max-results=`
//!   (a page shorter than asked is the last), groups from `GET /search?entity-type=group&expand=group`
//!   with their direct members from `GET /group/user/direct?groupname=` (paged the same way);
//!   compared on what Crowd keeps of a user: user name, first/last/display name, e-mail,
//!   `active` ([`CrowdConnector::kept`]; custom attributes are not compared).
//!
//! Errors carry Crowd's `reason` (`USER_NOT_FOUND`, `INVALID_USER`, `INVALID_CREDENTIAL`,
//! `APPLICATION_PERMISSION_DENIED`, …) and `message` into the audit log.

use provisync_core::connector::{refused, str_at, typed_value};
use std::fmt;

use reqwest::header;
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};

use crate::http::{
    ApplyCredentials, Credentials, HttpClient, HttpResponse, SetupError, check_target_url,
    error_for, join_url, vendor_error,
};
use crate::oauth::unguessable_password;
use provisync_core::connector::{Connector, ConnectorError, ListPage, TargetId};
use provisync_core::target::{CrowdTarget, HttpAuth};
use provisync_scim::ResourceKind;

/// The REST API path under Crowd's root.
pub const API_PATH: [&str; 3] = ["rest", "usermanagement", "1"];

/// Entities per search page (`max-results`).
pub const PAGE_SIZE: usize = 200;

/// A connector to one Crowd server, as one Crowd application.
#[derive(Clone)]
pub struct CrowdConnector {
    base: Url,
    application: String,
    creds: Credentials,
    http: HttpClient,
}

impl fmt::Debug for CrowdConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrowdConnector")
            .field("base", &self.base.as_str())
            .field("application", &self.application)
            .field("creds", &self.creds)
            .finish()
    }
}

/// A failed call with Crowd's own `reason`, when it gave one.
struct Failure {
    error: ConnectorError,
    reason: Option<String>,
}

impl From<ConnectorError> for Failure {
    fn from(error: ConnectorError) -> Self {
        Failure {
            error,
            reason: None,
        }
    }
}

impl Failure {
    fn is(&self, reason: &str) -> bool {
        self.reason.as_deref() == Some(reason)
    }
}

impl CrowdConnector {
    /// One page of `GET /search` for `entity` (`user` / `group`), expanded: the entities
    /// under `users` / `groups`.
    async fn search(&self, entity: &str, start: usize) -> Result<Vec<Value>, ConnectorError> {
        let start_s = start.to_string();
        let max = PAGE_SIZE.to_string();
        let v = self
            .call(
                Method::GET,
                &["search"],
                &[
                    ("entity-type", entity),
                    ("expand", entity),
                    ("start-index", &start_s),
                    ("max-results", &max),
                ],
                None,
            )
            .await
            .map_err(|f| f.error)?
            .json()?;
        let key = format!("{entity}s");
        match v.get(&key) {
            Some(Value::Array(a)) => Ok(a.clone()),
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(_) => Err(refused(format!(
                "Crowd answered a search without a {key} list"
            ))),
        }
    }

    /// The names of the direct members of group `name`, every page.
    async fn direct_members(&self, name: &str) -> Result<Vec<String>, ConnectorError> {
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            let start_s = start.to_string();
            let max = PAGE_SIZE.to_string();
            let v = self
                .call(
                    Method::GET,
                    &["group", "user", "direct"],
                    &[
                        ("groupname", name),
                        ("start-index", &start_s),
                        ("max-results", &max),
                    ],
                    None,
                )
                .await
                .map_err(|f| f.error)?
                .json()?;
            let users = v
                .get("users")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let got = users.len();
            out.extend(
                users
                    .iter()
                    .filter_map(|u| str_at(u, &["name"]).map(str::to_string)),
            );
            match next_index(start, got) {
                Some(_) => start += got,
                None => return Ok(out),
            }
        }
    }

    /// A connector on the process-wide HTTP client (default timeouts).
    pub fn new(target: &CrowdTarget) -> Result<Self, SetupError> {
        Self::with_client(target, HttpClient::shared()?)
    }

    /// A connector on a given client (its own timeouts).
    pub fn with_client(target: &CrowdTarget, http: HttpClient) -> Result<Self, SetupError> {
        let base =
            check_target_url(&target.base_url).map_err(|e| SetupError::Url(e.to_string()))?;
        let creds = Credentials::from_auth(&HttpAuth::Basic {
            username: target.application.clone(),
            password: target.password.clone(),
        })?;
        if target.application.trim().is_empty() {
            return Err(SetupError::Credentials("empty application name".into()));
        }
        Ok(CrowdConnector {
            base,
            application: target.application.clone(),
            creds,
            http,
        })
    }

    /// `{base}/rest/usermanagement/1/{segments}?{query}`, everything percent-encoded
    /// (user and group names come from the hub and from Crowd).
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, ConnectorError> {
        join_url(&self.base, &[&API_PATH[..], segments].concat(), query)
            .ok_or_else(|| ConnectorError::Gone("the base URL cannot take a path".into()))
    }

    /// One request; `Ok` for 2xx, else the error with Crowd's `reason`.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<HttpResponse, Failure> {
        let url = self.url(segments, query)?;
        let path = url.path().to_string();
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
            // Never the query: it holds user names.
            Ok(r) => tracing::debug!(%method, %path, status = r.status.as_u16(), "crowd target"),
            Err(e) => tracing::debug!(%method, %path, error = %e, "crowd target"),
        }
        let resp = result?;
        if resp.is_success() {
            return Ok(resp);
        }
        let reason = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| vendor_error(&v).0);
        let error = match error_for(&resp, Some(&self.creds)) {
            ConnectorError::Refused {
                status: Some(401),
                reason,
            } => ConnectorError::Refused {
                status: Some(401),
                reason: format!(
                    "Crowd did not accept application {:?} (check its name, password and remote addresses): {reason}",
                    self.application
                ),
            },
            e => e,
        };
        Err(Failure { error, reason })
    }

    /// The user named `name`, or `None`.
    async fn get_user(&self, name: &str) -> Result<Option<Value>, ConnectorError> {
        match self
            .call(Method::GET, &["user"], &[("username", name)], None)
            .await
        {
            Ok(r) => {
                let v = r.json()?;
                if v.get("name").and_then(Value::as_str).is_none() {
                    return Err(refused("Crowd answered a user without a name"));
                }
                Ok(Some(v))
            }
            Err(f) if matches!(f.error, ConnectorError::NotFound) => Ok(None),
            Err(f) => Err(f.error),
        }
    }

    async fn put_user(&self, name: &str, body: &Value) -> Result<(), ConnectorError> {
        self.call(Method::PUT, &["user"], &[("username", name)], Some(body))
            .await
            .map(|_| ())
            .map_err(|f| f.error)
    }

    async fn set_password(&self, name: &str, password: &str) -> Result<(), ConnectorError> {
        self.call(
            Method::PUT,
            &["user", "password"],
            &[("username", name)],
            Some(&json!({"value": password})),
        )
        .await
        .map(|_| ())
        .map_err(|f| f.error)
    }

    /// Stores the mapped custom attributes (`attributes` object of the payload).
    async fn set_attributes(&self, name: &str, user: &Value) -> Result<(), ConnectorError> {
        let Some(attrs) = crowd_attributes(user) else {
            return Ok(());
        };
        self.call(
            Method::POST,
            &["user", "attribute"],
            &[("username", name)],
            Some(&attrs),
        )
        .await
        .map(|_| ())
        .map_err(|f| f.error)
    }

    /// Renames `from` to `to`. When `from` is gone but `to` exists, an earlier attempt
    /// renamed it already (its answer was lost): that is success too.
    async fn rename(&self, from: &str, to: &str) -> Result<(), ConnectorError> {
        match self
            .call(
                Method::POST,
                &["user", "rename"],
                &[("username", from)],
                Some(&json!({"new-name": to})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if matches!(f.error, ConnectorError::NotFound) => {
                match self.get_user(to).await? {
                    Some(_) => Ok(()),
                    None => Err(ConnectorError::NotFound),
                }
            }
            Err(f) => Err(f.error),
        }
    }
}

/// The user name a payload maps to (`userName`).
fn user_name(user: &Value) -> Result<&str, ConnectorError> {
    str_at(user, &["userName"]).ok_or_else(|| refused("the user has no userName for Crowd"))
}

/// A Crowd user entity (JSON) from a mapped SCIM payload. Crowd requires a first and a
/// last name: missing parts fall back to the display name, then the user name.
fn crowd_user(user: &Value, name: &str, active: Option<bool>) -> Value {
    let given = str_at(user, &["name", "givenName"]);
    let family = str_at(user, &["name", "familyName"]);
    let display = str_at(user, &["displayName"])
        .map(str::to_string)
        .or_else(|| {
            str_at(user, &["name", "formatted"])
                .map(str::to_string)
                .or_else(|| match (given, family) {
                    (Some(g), Some(f)) => Some(format!("{g} {f}")),
                    (Some(x), None) | (None, Some(x)) => Some(x.to_string()),
                    (None, None) => None,
                })
        });
    let display = display.unwrap_or_else(|| name.to_string());
    let active =
        active.unwrap_or_else(|| user.get("active").and_then(Value::as_bool).unwrap_or(true));
    json!({
        "name": name,
        "first-name": given.unwrap_or(&display),
        "last-name": family.unwrap_or(&display),
        "display-name": display,
        "email": typed_value(user, "emails", None).unwrap_or_default(),
        "active": active,
    })
}

/// A Crowd user entity as the SCIM user reconcile compares: `id` and `userName` are the
/// Crowd name; an empty e-mail is none. `None` for an entity without a name.
fn scim_of_crowd(entity: &Value) -> Option<Value> {
    let name = str_at(entity, &["name"])?;
    let mut u = Map::new();
    u.insert("id".into(), json!(name));
    u.insert("userName".into(), json!(name));
    let mut n = Map::new();
    if let Some(g) = str_at(entity, &["first-name"]) {
        n.insert("givenName".into(), json!(g));
    }
    if let Some(f) = str_at(entity, &["last-name"]) {
        n.insert("familyName".into(), json!(f));
    }
    if !n.is_empty() {
        u.insert("name".into(), Value::Object(n));
    }
    if let Some(d) = str_at(entity, &["display-name"]) {
        u.insert("displayName".into(), json!(d));
    }
    if let Some(e) = str_at(entity, &["email"]) {
        u.insert("emails".into(), json!([{"value": e, "primary": true}]));
    }
    u.insert(
        "active".into(),
        json!(
            entity
                .get("active")
                .and_then(Value::as_bool)
                .unwrap_or(true)
        ),
    );
    Some(Value::Object(u))
}

/// The `start-index` a listing cursor names (`None`: the first page).
fn start_index(cursor: Option<&str>) -> Result<usize, ConnectorError> {
    match cursor {
        None => Ok(0),
        Some(c) => c
            .parse()
            .map_err(|_| refused("not a Crowd listing position")),
    }
}

/// The next page's cursor: Crowd says nothing about more results, so a full page means
/// there may be more.
fn next_index(start: usize, got: usize) -> Option<String> {
    (got >= PAGE_SIZE).then(|| (start + got).to_string())
}

/// The body of `POST /user/attribute` for a payload's `attributes` object, if any:
/// `{"attributes": [{"name", "values": [..]}]}`, values as strings.
fn crowd_attributes(user: &Value) -> Option<Value> {
    let attrs = user.get("attributes")?.as_object()?;
    let list: Vec<Value> = attrs
        .iter()
        .filter_map(|(k, v)| {
            let values: Vec<String> = match v {
                Value::Array(a) => a.iter().filter_map(scalar).collect(),
                other => scalar(other).into_iter().collect(),
            };
            (!values.is_empty()).then(|| json!({"name": k, "values": values}))
        })
        .collect();
    (!list.is_empty()).then(|| json!({ "attributes": list }))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[async_trait::async_trait]
impl Connector for CrowdConnector {
    async fn test(&self) -> Result<String, ConnectorError> {
        // Any application may read the SSO cookie configuration: a cheap, side-effect-free
        // call that checks the application's name, password and remote address.
        match self.call(Method::GET, &["config", "cookie"], &[], None).await {
            Ok(_) => Ok(format!(
                "Crowd at {}: application {:?} accepted",
                self.base.host_str().unwrap_or("?"),
                self.application
            )),
            Err(f) if matches!(f.error, ConnectorError::NotFound) => Err(ConnectorError::Refused {
                status: Some(404),
                reason: "no Crowd REST API under the base URL: is the context path (e.g. /crowd) included?"
                    .into(),
            }),
            Err(f) => Err(f.error),
        }
    }

    async fn list_users(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let start = start_index(cursor)?;
        let found = self.search("user", start).await?;
        Ok(ListPage {
            next: next_index(start, found.len()),
            resources: found.iter().filter_map(scim_of_crowd).collect(),
        })
    }

    async fn list_groups(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let start = start_index(cursor)?;
        let found = self.search("group", start).await?;
        let mut resources = Vec::with_capacity(found.len());
        for g in &found {
            let Some(name) = str_at(g, &["name"]) else {
                continue;
            };
            let members: Vec<Value> = self
                .direct_members(name)
                .await?
                .into_iter()
                .map(|m| json!({ "value": m }))
                .collect();
            resources.push(json!({"id": name, "displayName": name, "members": members}));
        }
        Ok(ListPage {
            next: next_index(start, found.len()),
            resources,
        })
    }

    fn kept(&self, kind: ResourceKind, mapped: &Value) -> Value {
        match kind {
            // What `create_user` / `update_user` send, read back as the listing reads it.
            ResourceKind::User => {
                let name = str_at(mapped, &["userName"]).unwrap_or_default();
                let mut u =
                    scim_of_crowd(&crowd_user(mapped, name, None)).unwrap_or_else(|| json!({}));
                if let Some(o) = u.as_object_mut() {
                    o.remove("id");
                }
                u
            }
            // A Crowd group keeps its name (and its members, which travel separately).
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
        let name = user_name(user)?;
        Ok(self
            .get_user(name)
            .await?
            .and_then(|u| u.get("name").and_then(Value::as_str).map(str::to_string)))
    }

    async fn create_user(
        &self,
        user: &Value,
        password: Option<&str>,
    ) -> Result<TargetId, ConnectorError> {
        let name = user_name(user)?;
        let mut body = crowd_user(user, name, None);
        let generated;
        let password = match password {
            Some(p) => p,
            None => {
                generated = unguessable_password();
                &generated
            }
        };
        body["password"] = json!({ "value": password });
        match self.call(Method::POST, &["user"], &[], Some(&body)).await {
            Ok(_) => {}
            // Crowd answers 400 INVALID_USER for an existing name (and for invalid data):
            // tell the two apart by looking.
            Err(f) if f.is("INVALID_USER") => {
                if self.get_user(name).await?.is_some() {
                    return Err(ConnectorError::Conflict(format!(
                        "a Crowd user named {name:?} exists"
                    )));
                }
                return Err(f.error);
            }
            Err(f) => return Err(f.error),
        }
        self.set_attributes(name, user).await?;
        Ok(name.to_string())
    }

    async fn update_user(
        &self,
        id: &str,
        user: &Value,
        _previous: Option<&Value>,
        password: Option<&str>,
    ) -> Result<Option<TargetId>, ConnectorError> {
        let name = user_name(user)?;
        let renamed = name != id;
        if renamed {
            self.rename(id, name).await?;
        }
        self.put_user(name, &crowd_user(user, name, None)).await?;
        if let Some(p) = password {
            self.set_password(name, p).await?;
        }
        self.set_attributes(name, user).await?;
        Ok(renamed.then(|| name.to_string()))
    }

    async fn disable_user(&self, id: &str) -> Result<(), ConnectorError> {
        // PUT replaces the user: keep what Crowd has, change only `active`.
        let current = self.get_user(id).await?.ok_or(ConnectorError::NotFound)?;
        let mut body = Map::new();
        for k in ["name", "first-name", "last-name", "display-name", "email"] {
            if let Some(v) = current.get(k) {
                body.insert(k.into(), v.clone());
            }
        }
        body.insert("active".into(), Value::Bool(false));
        self.put_user(id, &Value::Object(body)).await
    }

    async fn delete_user(&self, id: &str) -> Result<(), ConnectorError> {
        match self
            .call(Method::DELETE, &["user"], &[("username", id)], None)
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if matches!(f.error, ConnectorError::NotFound) => Ok(()),
            Err(f) => Err(f.error),
        }
    }

    async fn find_group(&self, group: &Value) -> Result<Option<TargetId>, ConnectorError> {
        let name = group_name(group)?;
        match self
            .call(Method::GET, &["group"], &[("groupname", name)], None)
            .await
        {
            Ok(r) => Ok(r
                .json()?
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)),
            Err(f) if matches!(f.error, ConnectorError::NotFound) => Ok(None),
            Err(f) => Err(f.error),
        }
    }

    async fn create_group(&self, group: &Value) -> Result<TargetId, ConnectorError> {
        let name = group_name(group)?;
        let body = json!({"name": name, "type": "GROUP", "active": true});
        match self.call(Method::POST, &["group"], &[], Some(&body)).await {
            Ok(_) => Ok(name.to_string()),
            Err(f) if f.is("INVALID_GROUP") => {
                if self.find_group(group).await?.is_some() {
                    Err(ConnectorError::Conflict(format!(
                        "a Crowd group named {name:?} exists"
                    )))
                } else {
                    Err(f.error)
                }
            }
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
        if name != id {
            // The REST API has no group rename: pin the name with `group_mapping`.
            return Err(ConnectorError::Refused {
                status: None,
                reason: format!(
                    "Crowd cannot rename group {id:?} to {name:?}: map the new name back to {id:?} with group_mapping, or recreate the group"
                ),
            });
        }
        // A SCIM group has nothing else Crowd keeps (members travel separately).
        Ok(())
    }

    async fn delete_group(&self, id: &str) -> Result<(), ConnectorError> {
        match self
            .call(Method::DELETE, &["group"], &[("groupname", id)], None)
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
                    &["user", "group", "direct"],
                    &[("username", m)],
                    Some(&json!({ "name": group_id })),
                )
                .await
            {
                Ok(_) => {}
                Err(f) if f.is("MEMBERSHIP_ALREADY_EXISTS") => {}
                Err(f) if matches!(f.error, ConnectorError::Conflict(_)) => {}
                Err(f) if matches!(f.error, ConnectorError::NotFound) => {
                    return Err(ConnectorError::Refused {
                        status: Some(404),
                        reason: format!("member {m:?} is not a user on Crowd"),
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
                    &["user", "group", "direct"],
                    &[("username", m), ("groupname", group_id)],
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

fn group_name(group: &Value) -> Result<&str, ConnectorError> {
    str_at(group, &["displayName"]).ok_or_else(|| refused("the group has no displayName"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_entities() {
        let u = json!({
            "userName": "alice", "name": {"givenName": "Alice", "familyName": "Liddell"},
            "displayName": "Alice L.", "active": false,
            "emails": [{"value": "w@x.example"}, {"value": "p@x.example", "primary": true}]
        });
        assert_eq!(
            crowd_user(&u, "alice", None),
            json!({"name": "alice", "first-name": "Alice", "last-name": "Liddell",
                   "display-name": "Alice L.", "email": "p@x.example", "active": false})
        );
        let bare = crowd_user(&json!({"userName": "bob"}), "bob", Some(true));
        assert_eq!(bare["first-name"], "bob");
        assert_eq!(bare["last-name"], "bob");
        assert_eq!(bare["email"], "");
        assert_eq!(bare["active"], true);
        assert_eq!(
            crowd_attributes(&json!({"attributes": {"cc": 42, "tags": ["a", "b"], "x": null}})),
            Some(json!({"attributes": [
                {"name": "cc", "values": ["42"]},
                {"name": "tags", "values": ["a", "b"]}
            ]}))
        );
        assert_eq!(crowd_attributes(&json!({"userName": "a"})), None);
    }

    #[test]
    fn what_crowd_keeps_is_what_it_lists() {
        let c = CrowdConnector::new(&CrowdTarget {
            base_url: "https://crowd.example.com/crowd".into(),
            application: "provisync".into(),
            password: "app-secret".into(),
        })
        .unwrap();
        let mapped = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": "h1",
            "userName": "alice", "name": {"givenName": "Alice", "familyName": "Liddell"},
            "displayName": "Alice L.", "active": true, "title": "Queen",
            "emails": [{"value": "a@x.example", "type": "work", "primary": true}],
            "attributes": {"cc": "42"}
        });
        let kept = c.kept(ResourceKind::User, &mapped);
        assert_eq!(
            kept,
            json!({"userName": "alice", "name": {"givenName": "Alice", "familyName": "Liddell"},
                   "displayName": "Alice L.", "active": true,
                   "emails": [{"value": "a@x.example", "primary": true}]})
        );
        // The entity Crowd holds after the delivery lists as exactly that (plus its id).
        let mut listed = scim_of_crowd(&crowd_user(&mapped, "alice", None)).unwrap();
        assert_eq!(listed["id"], "alice");
        listed.as_object_mut().unwrap().remove("id");
        assert_eq!(listed, kept);
        // Crowd's fallbacks are what it keeps: no e-mail, no name parts.
        assert_eq!(
            c.kept(
                ResourceKind::User,
                &json!({"userName": "bob", "active": false})
            ),
            json!({"userName": "bob", "name": {"givenName": "bob", "familyName": "bob"},
                   "displayName": "bob", "active": false})
        );
        assert_eq!(
            c.kept(
                ResourceKind::Group,
                &json!({"displayName": "navy", "externalId": "g"})
            ),
            json!({"displayName": "navy"})
        );
        assert_eq!(start_index(None).unwrap(), 0);
        assert_eq!(start_index(Some("400")).unwrap(), 400);
        assert!(start_index(Some("x")).is_err());
        assert_eq!(next_index(0, PAGE_SIZE), Some(PAGE_SIZE.to_string()));
        assert_eq!(next_index(200, 3), None);
    }

    #[test]
    fn urls_and_debug() {
        let t = CrowdTarget {
            base_url: "https://crowd.example.com/crowd/".into(),
            application: "provisync".into(),
            password: "app-secret".into(),
        };
        let c = CrowdConnector::new(&t).unwrap();
        assert!(!format!("{c:?}").contains("app-secret"));
        assert_eq!(
            c.url(&["user"], &[("username", "a&b c")]).unwrap().as_str(),
            "https://crowd.example.com/crowd/rest/usermanagement/1/user?username=a%26b+c"
        );
        let p = unguessable_password();
        assert!(p.len() >= 40 && p != unguessable_password());
        let bad = CrowdTarget {
            base_url: "http://crowd.example.com".into(),
            ..t
        };
        assert!(matches!(CrowdConnector::new(&bad), Err(SetupError::Url(_))));
    }
}
