//! The SCIM 2.0 client connector: delivers users and groups to a downstream SCIM service
//! provider (RFC 7644) through the shared outbound policy of [`provisync_core::connector::http`].
//!
//! - create: `POST /Users` (§3.3); 409 is [`ConnectorError::Conflict`] and the engine then
//!   matches with `find_user` and links;
//! - match: `GET /Users?filter=<attr> eq "<value>"` (§3.4.2.2);
//! - update: `PATCH` with the attributes that changed (§3.5.2) or a full `PUT` (§3.5.1),
//!   as the target's [`UpdateStyle`] says;
//! - disable: `active` set to false (PATCH, or GET + PUT with `If-Match`, §3.14);
//! - delete: `DELETE` (§3.6), idempotent (404 is success);
//! - memberships: PATCH `add`/`remove` on `members` (§3.5.2.1, §3.5.2.2), in batches.

use std::fmt;

use reqwest::header::{self, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use crate::http::{
    ApplyCredentials, Credentials, HttpClient, HttpResponse, SetupError, check_target_url, join_url,
};
use provisync_core::connector::{
    Connector, ConnectorError, ListPage, TargetId, listing_position_lost,
};
use provisync_core::target::{ScimTarget, UpdateStyle};
use provisync_scim::ResourceKind;
use provisync_scim::schema::AttrPath;

use provisync_scim::paging::{PagePosition, cursor_refused, offers_cursors};
use provisync_scim::path::get_ci;
pub use provisync_scim::path::read_path;
pub use provisync_scim::schema::{GROUP_SCHEMA, USER_SCHEMA};
pub use provisync_scim::urn::PATCH_OP;
/// RFC 7644 §3.1 / §8.1.
pub const SCIM_JSON: &str = "application/scim+json";
/// Member values per PATCH request (servers limit request sizes; Entra documents 100).
pub const MEMBER_BATCH: usize = 100;
/// Resources asked for per listing page (reconcile).
pub const LIST_PAGE: usize = 100;

/// Attributes never sent in a resource body: server-assigned (`id`, `meta`, RFC 7643
/// §3.1), read-only (`groups` on User, §4.1.2) or carried separately (`password`).
const NEVER_IN_BODY: &[&str] = &["id", "meta", "groups", "password"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    User,
    Group,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
    fn schema(self) -> &'static str {
        match self {
            Kind::User => USER_SCHEMA,
            Kind::Group => GROUP_SCHEMA,
        }
    }
    /// Attributes left out of a body for this kind (members travel through PATCH).
    fn skipped(self) -> &'static [&'static str] {
        match self {
            Kind::User => NEVER_IN_BODY,
            Kind::Group => &["id", "meta", "members", "password"],
        }
    }
}

/// A connector to one SCIM 2.0 service provider.
#[derive(Clone)]
pub struct ScimConnector {
    base: Url,
    creds: Credentials,
    http: HttpClient,
    update_style: UpdateStyle,
    matching: AttrPath,
    /// Whether the target pages by cursor, as its `/ServiceProviderConfig` said (`false`
    /// when it could not be read): read once per connector, so once per reconcile run
    /// (which builds its connector and lists users, then groups).
    cursors: OnceCell<bool>,
}

impl fmt::Debug for ScimConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScimConnector")
            .field("base", &self.base.as_str())
            .field("creds", &self.creds)
            .field("update_style", &self.update_style)
            .field("matching", &self.matching.to_string())
            .finish()
    }
}

impl ScimConnector {
    /// A connector on the process-wide HTTP client (default timeouts).
    pub fn new(target: &ScimTarget) -> Result<Self, SetupError> {
        Self::with_client(target, HttpClient::shared()?)
    }

    /// A connector on a given client (its own timeouts).
    pub fn with_client(target: &ScimTarget, http: HttpClient) -> Result<Self, SetupError> {
        let base =
            check_target_url(&target.base_url).map_err(|e| SetupError::Url(e.to_string()))?;
        let creds = Credentials::from_auth(&target.auth)?;
        let attr = target.matching_attribute.trim();
        let attr = if attr.is_empty() { "userName" } else { attr };
        let matching = AttrPath::parse(attr).ok_or_else(|| {
            SetupError::Config(format!(
                "matching attribute {attr:?} is not an attribute path"
            ))
        })?;
        Ok(ScimConnector {
            base,
            creds,
            http,
            update_style: target.update_style,
            matching,
            cursors: OnceCell::new(),
        })
    }

    /// `base/seg1/seg2...`, each segment percent-encoded (ids come from remote systems).
    fn url(&self, segments: &[&str]) -> Result<Url, ConnectorError> {
        join_url(&self.base, segments, &[])
            .ok_or_else(|| ConnectorError::Gone("the base URL cannot take a path".into()))
    }

    /// Sends one request; `Ok` only for 2xx.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        if_match: Option<&HeaderValue>,
    ) -> Result<HttpResponse, ConnectorError> {
        self.send(method, url, body, if_match)
            .await?
            .ok(Some(&self.creds))
    }

    /// Sends one request; the response as it came, whatever its status.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        if_match: Option<&HeaderValue>,
    ) -> Result<HttpResponse, ConnectorError> {
        let path = url.path().to_string();
        let mut req = self
            .creds
            .apply(self.http.request(method.clone(), url))
            .header(header::ACCEPT, "application/scim+json, application/json");
        if let Some(b) = body {
            req = req
                .header(header::CONTENT_TYPE, SCIM_JSON)
                .body(b.to_string());
        }
        if let Some(etag) = if_match {
            req = req.header(header::IF_MATCH, etag.clone());
        }
        let result = self.http.send(req).await;
        match &result {
            Ok(r) => tracing::debug!(%method, %path, status = r.status.as_u16(), "scim target"),
            Err(e) => tracing::debug!(%method, %path, error = %e, "scim target"),
        }
        result
    }

    async fn get_json(&self, url: Url) -> Result<(Value, Option<HeaderValue>), ConnectorError> {
        let resp = self.call(Method::GET, url, None, None).await?;
        let etag = resp.headers.get(header::ETAG).cloned();
        let v = resp.json()?;
        if !v.is_object() {
            return Err(ConnectorError::Refused {
                status: Some(resp.status.as_u16()),
                reason: "the target answered without a JSON object".into(),
            });
        }
        Ok((v, etag))
    }

    /// The id of the one resource whose `path` equals `value` (RFC 7644 §3.4.2.2 `eq`).
    async fn find(
        &self,
        kind: Kind,
        path: &AttrPath,
        value: &str,
    ) -> Result<Option<TargetId>, ConnectorError> {
        // compValue is a JSON string (RFC 7644 §3.4.2.2): JSON escaping covers `"` and `\`.
        let literal = serde_json::to_string(value).map_err(|_| ConnectorError::Refused {
            status: None,
            reason: "matching value cannot be encoded".into(),
        })?;
        let mut url = self.url(&[kind.endpoint()])?;
        url.query_pairs_mut()
            .append_pair("filter", &format!("{path} eq {literal}"))
            .append_pair("startIndex", "1")
            .append_pair("count", "2");
        let (list, _) = self.get_json(url).await?;
        let resources = list
            .get("Resources")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        // A server that ignores the filter must not make us link the wrong account: keep
        // only resources whose value (when returned) matches.
        let matches: Vec<&Value> = resources
            .iter()
            .filter(|r| read_path(r, path).is_none_or(|v| v.to_lowercase() == value.to_lowercase()))
            .collect();
        let total = list
            .get("totalResults")
            .and_then(Value::as_u64)
            .unwrap_or(matches.len() as u64);
        match matches.as_slice() {
            [] => Ok(None),
            [one] if total <= 1 || resources.len() > 1 => {
                id_of(one).map(Some).ok_or_else(|| ConnectorError::Refused {
                    status: None,
                    reason: "the matching resource has no id".into(),
                })
            }
            _ => Err(ConnectorError::Refused {
                status: None,
                reason: format!(
                    "{} resources on the target match {path}: link one by hand",
                    total.max(matches.len() as u64)
                ),
            }),
        }
    }

    async fn create(&self, kind: Kind, body: Value) -> Result<TargetId, ConnectorError> {
        let url = self.url(&[kind.endpoint()])?;
        let resp = self.call(Method::POST, url, Some(&body), None).await?;
        let v = resp.json().unwrap_or(Value::Null);
        id_of(&v)
            .or_else(|| {
                // RFC 7644 §3.3: the Location header is the resource's URI.
                resp.header(header::LOCATION)
                    .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            })
            .ok_or_else(|| ConnectorError::Refused {
                status: Some(resp.status.as_u16()),
                reason: "the target created the resource but returned no id".into(),
            })
    }

    async fn patch(&self, kind: Kind, id: &str, ops: Vec<Value>) -> Result<(), ConnectorError> {
        if ops.is_empty() {
            // RFC 7644 §3.5.2: "Operations" must hold at least one operation.
            return Ok(());
        }
        let url = self.url(&[kind.endpoint(), id])?;
        let body = json!({"schemas": [PATCH_OP], "Operations": ops});
        self.call(Method::PATCH, url, Some(&body), None).await?;
        Ok(())
    }

    async fn put(
        &self,
        kind: Kind,
        id: &str,
        mut body: Value,
        if_match: Option<&HeaderValue>,
    ) -> Result<(), ConnectorError> {
        if let Some(o) = body.as_object_mut() {
            o.insert("id".into(), Value::String(id.to_string()));
        }
        let url = self.url(&[kind.endpoint(), id])?;
        match self.call(Method::PUT, url, Some(&body), if_match).await {
            // RFC 7644 §3.14: the resource changed since we read it; read again next time.
            Err(ConnectorError::Refused {
                status: Some(412), ..
            }) => Err(ConnectorError::Retryable {
                status: Some(412),
                retry_after: None,
                detail: "the resource changed on the target meanwhile".into(),
            }),
            r => r.map(|_| ()),
        }
    }

    /// GET the current resource, change it with `edit`, PUT it back with `If-Match`
    /// (for targets updated by PUT only).
    async fn read_modify_write(
        &self,
        kind: Kind,
        id: &str,
        edit: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<(), ConnectorError> {
        let (mut current, etag) = self.get_json(self.url(&[kind.endpoint(), id])?).await?;
        let Some(obj) = current.as_object_mut() else {
            return Err(ConnectorError::Refused {
                status: None,
                reason: "the target answered without a JSON object".into(),
            });
        };
        for k in ["meta", "groups", "password"] {
            remove_ci(obj, k);
        }
        edit(obj);
        self.put(kind, id, current, etag.as_ref()).await
    }

    async fn delete(&self, kind: Kind, id: &str) -> Result<(), ConnectorError> {
        let url = self.url(&[kind.endpoint(), id])?;
        match self.call(Method::DELETE, url, None, None).await {
            // RFC 7644 §3.6: already gone is what we wanted.
            Ok(_) | Err(ConnectorError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One page of a listing: by cursor (RFC 9865) when the target's
    /// `/ServiceProviderConfig` announces cursors, by `startIndex` (RFC 7644 §3.4.2.4)
    /// otherwise; the server may return fewer than asked. The listing position is a
    /// [`PagePosition`] token (a bare number: a start index). A cursor the target refuses
    /// (expired between two runs) is [`listing_position_lost`]: the run starts over.
    async fn list(&self, kind: Kind, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let position = match cursor {
            None => PagePosition::first(self.discover().await.unwrap_or(false)),
            Some(c) => PagePosition::from_token(c).map_err(|e| ConnectorError::Refused {
                status: None,
                reason: format!("listing cursor: {e}"),
            })?,
        };
        let mut url = self.url(&[kind.endpoint()])?;
        url.query_pairs_mut()
            .extend_pairs(position.query(LIST_PAGE));
        let resp = self.send(Method::GET, url, None, None).await?;
        if position.by_cursor()
            && cursor_refused(resp.status.as_u16(), &resp.json().unwrap_or_default())
        {
            return Err(listing_position_lost());
        }
        let list = resp.ok(Some(&self.creds))?.json()?;
        let resources = match list.get("Resources") {
            Some(Value::Array(a)) => a.clone(),
            // §3.4.2: "Resources" may be omitted when there are no results.
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(ConnectorError::Refused {
                    status: None,
                    reason: "the target's list response has no Resources array".into(),
                });
            }
        };
        Ok(ListPage {
            resources,
            next: position.next(&list, LIST_PAGE).map(|p| p.to_token()),
        })
    }

    /// Whether the target pages by cursor (RFC 9865 §4), from its configuration, read
    /// on the first call only: `false` when it cannot be read (index paging works
    /// everywhere), and this call's error then, for the pace
    /// ([`Connector::prepare_listing`]).
    async fn discover(&self) -> Result<bool, ConnectorError> {
        let mut failed = None;
        let cursors = *self
            .cursors
            .get_or_init(|| async {
                let read = match self.url(&["ServiceProviderConfig"]) {
                    Ok(url) => self.get_json(url).await,
                    Err(e) => Err(e),
                };
                match read {
                    Ok((spc, _)) => offers_cursors(&spc),
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            })
            .await;
        failed.map_or(Ok(cursors), Err)
    }

    fn required_value(&self, v: &Value, path: &AttrPath) -> Result<String, ConnectorError> {
        read_path(v, path).ok_or_else(|| ConnectorError::Refused {
            status: None,
            reason: format!("the resource has no {path} to match on"),
        })
    }
}

#[async_trait::async_trait]
impl Connector for ScimConnector {
    /// `userName` is unique on every SCIM service provider (RFC 7643 §4.1.1: "MUST be
    /// unique across the service provider's entire set of Users"), which answers a
    /// duplicate with 409 `uniqueness` (RFC 7644 §3.3).
    fn create_detects_existing(&self) -> bool {
        self.matching.urn.is_none()
            && self.matching.sub_attr.is_none()
            && self.matching.attr.eq_ignore_ascii_case("userName")
    }

    async fn test(&self) -> Result<String, ConnectorError> {
        // RFC 7644 §4: every service provider serves its configuration.
        let (spc, _) = match self.get_json(self.url(&["ServiceProviderConfig"])?).await {
            Err(ConnectorError::NotFound) => {
                return Err(ConnectorError::Refused {
                    status: Some(404),
                    reason: "no /ServiceProviderConfig under the base URL: is it the SCIM root?"
                        .into(),
                });
            }
            r => r?,
        };
        // The configuration may be public: check the credentials on a real endpoint.
        let mut url = self.url(&["Users"])?;
        url.query_pairs_mut()
            .append_pair("startIndex", "1")
            .append_pair("count", "1");
        let (users, _) = self.get_json(url).await?;
        let supported = |k: &str| spc[k]["supported"].as_bool().unwrap_or(false);
        let mut out = format!(
            "SCIM service at {}: credentials accepted",
            self.base.host_str().unwrap_or("?")
        );
        if let Some(n) = users.get("totalResults").and_then(Value::as_u64) {
            out.push_str(&format!(", {n} users"));
        }
        out.push_str(&format!(
            "; filter {}, patch {}, etag {}",
            yes_no(supported("filter")),
            yes_no(supported("patch")),
            yes_no(supported("etag")),
        ));
        if self.update_style == UpdateStyle::Patch && !supported("patch") {
            out.push_str(" (PATCH not announced: consider update style \"put\")");
        }
        Ok(out)
    }

    async fn find_user(&self, user: &Value) -> Result<Option<TargetId>, ConnectorError> {
        let value = self.required_value(user, &self.matching)?;
        self.find(Kind::User, &self.matching, &value).await
    }

    async fn list_users(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        self.list(Kind::User, cursor).await
    }

    /// Listings by users and groups share the target's paging: one read for both.
    fn listing_prepared(&self, _: ResourceKind) -> bool {
        self.cursors.initialized()
    }

    /// `GET /ServiceProviderConfig`, the first time only: the first page's position
    /// (cursor or index) depends on it.
    async fn prepare_listing(&self, _: ResourceKind) -> Result<(), ConnectorError> {
        self.discover().await.map(|_| ())
    }

    /// `/Groups` pages, each group with its `members`. Servers may leave `members` out
    /// of list responses (RFC 7643 §7: its `returned` may be `request`; some providers
    /// answer lists without it, or omit it when empty): a group listed without the
    /// attribute is read on its own, and one read without it has no members.
    /// (`scim2-server` lists members, and omits the attribute of an empty group.)
    async fn list_groups(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let mut page = self.list(Kind::Group, cursor).await?;
        for group in page.resources.iter_mut() {
            if get_ci(group, "members").is_some() {
                continue;
            }
            let Some(id) = id_of(group) else { continue };
            let members = match self
                .get_json(self.url(&[Kind::Group.endpoint(), &id])?)
                .await
            {
                Ok((full, _)) => get_ci(&full, "members").cloned(),
                // Deleted between the listing and the read: no members to reconcile.
                Err(ConnectorError::NotFound) => None,
                Err(e) => return Err(e),
            };
            if let Some(o) = group.as_object_mut() {
                o.insert(
                    "members".into(),
                    members.unwrap_or_else(|| Value::Array(Vec::new())),
                );
            }
        }
        Ok(page)
    }

    async fn create_user(
        &self,
        user: &Value,
        password: Option<&str>,
    ) -> Result<TargetId, ConnectorError> {
        let mut body = body_for(Kind::User, user);
        if let (Some(p), Some(o)) = (password, body.as_object_mut()) {
            o.insert("password".into(), Value::String(p.to_string()));
        }
        self.create(Kind::User, body).await
    }

    async fn update_user(
        &self,
        id: &str,
        user: &Value,
        previous: Option<&Value>,
        password: Option<&str>,
    ) -> Result<Option<TargetId>, ConnectorError> {
        // SCIM ids are server-assigned and stable (RFC 7643 §3.1): never changed here.
        match self.update_style {
            UpdateStyle::Patch => {
                let mut ops = diff_ops(user, previous, Kind::User.skipped());
                if let Some(p) = password {
                    ops.push(json!({"op": "replace", "path": "password", "value": p}));
                }
                self.patch(Kind::User, id, ops).await.map(|()| None)
            }
            UpdateStyle::Put => {
                let mut body = body_for(Kind::User, user);
                if let (Some(p), Some(o)) = (password, body.as_object_mut()) {
                    o.insert("password".into(), Value::String(p.to_string()));
                }
                self.put(Kind::User, id, body, None).await.map(|()| None)
            }
        }
    }

    async fn disable_user(&self, id: &str) -> Result<(), ConnectorError> {
        match self.update_style {
            UpdateStyle::Patch => {
                let op = json!({"op": "replace", "path": "active", "value": false});
                self.patch(Kind::User, id, vec![op]).await
            }
            UpdateStyle::Put => {
                self.read_modify_write(Kind::User, id, |o| {
                    remove_ci(o, "active");
                    o.insert("active".into(), Value::Bool(false));
                })
                .await
            }
        }
    }

    async fn delete_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.delete(Kind::User, id).await
    }

    async fn find_group(&self, group: &Value) -> Result<Option<TargetId>, ConnectorError> {
        let path = AttrPath::new("displayName");
        let value = self.required_value(group, &path)?;
        self.find(Kind::Group, &path, &value).await
    }

    async fn create_group(&self, group: &Value) -> Result<TargetId, ConnectorError> {
        self.create(Kind::Group, body_for(Kind::Group, group)).await
    }

    async fn update_group(
        &self,
        id: &str,
        group: &Value,
        previous: Option<&Value>,
    ) -> Result<(), ConnectorError> {
        match self.update_style {
            UpdateStyle::Patch => {
                let ops = diff_ops(group, previous, Kind::Group.skipped());
                self.patch(Kind::Group, id, ops).await
            }
            UpdateStyle::Put => {
                // A PUT replaces members too (RFC 7644 §3.5.1): keep the target's.
                let body = body_for(Kind::Group, group);
                self.read_modify_write(Kind::Group, id, move |o| {
                    let members = remove_ci(o, "members");
                    o.clear();
                    if let Some(b) = body.as_object() {
                        o.extend(b.clone());
                    }
                    if let Some(m) = members {
                        o.insert("members".into(), m);
                    }
                })
                .await
            }
        }
    }

    async fn delete_group(&self, id: &str) -> Result<(), ConnectorError> {
        self.delete(Kind::Group, id).await
    }

    /// A PATCH takes [`MEMBER_BATCH`]; a read-modify-write PUT any number.
    fn members_per_call(&self) -> usize {
        match self.update_style {
            UpdateStyle::Patch => MEMBER_BATCH,
            UpdateStyle::Put => usize::MAX,
        }
    }

    async fn add_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError> {
        if member_ids.is_empty() {
            return Ok(());
        }
        match self.update_style {
            UpdateStyle::Patch => {
                // RFC 7644 §3.5.2.1: "add" on a multi-valued attribute adds the values.
                for chunk in member_ids.chunks(MEMBER_BATCH) {
                    let values: Vec<Value> = chunk.iter().map(|m| json!({"value": m})).collect();
                    let op = json!({"op": "add", "path": "members", "value": values});
                    self.patch(Kind::Group, group_id, vec![op]).await?;
                }
                Ok(())
            }
            UpdateStyle::Put => {
                self.read_modify_write(Kind::Group, group_id, |o| {
                    let mut members = member_list(remove_ci(o, "members"));
                    // A set of those there: the group may hold tens of thousands.
                    let mut there: std::collections::HashSet<String> = members
                        .iter()
                        .filter_map(|x| x["value"].as_str().map(str::to_string))
                        .collect();
                    for m in member_ids {
                        if there.insert(m.clone()) {
                            members.push(json!({"value": m}));
                        }
                    }
                    o.insert("members".into(), Value::Array(members));
                })
                .await
            }
        }
    }

    async fn remove_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError> {
        if member_ids.is_empty() {
            return Ok(());
        }
        match self.update_style {
            UpdateStyle::Patch => {
                // RFC 7644 §3.5.2.2: remove with a value filter on "members".
                for chunk in member_ids.chunks(MEMBER_BATCH) {
                    let ops = chunk
                        .iter()
                        .map(|m| {
                            let lit = Value::String(m.clone()).to_string();
                            json!({"op": "remove", "path": format!("members[value eq {lit}]")})
                        })
                        .collect();
                    self.patch(Kind::Group, group_id, ops).await?;
                }
                Ok(())
            }
            UpdateStyle::Put => {
                let gone: std::collections::HashSet<&str> =
                    member_ids.iter().map(String::as_str).collect();
                self.read_modify_write(Kind::Group, group_id, |o| {
                    let mut members = member_list(remove_ci(o, "members"));
                    members.retain(|x| !x["value"].as_str().is_some_and(|v| gone.contains(v)));
                    o.insert("members".into(), Value::Array(members));
                })
                .await
            }
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn id_of(v: &Value) -> Option<String> {
    match v.get("id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn member_list(v: Option<Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(a)) => a
            .into_iter()
            .filter_map(|m| {
                let value = m.get("value")?.clone();
                // Only `value` is writable (RFC 7643 §4.2; `display`, `$ref` are set by
                // the server).
                Some(json!({"value": value}))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Case-insensitive lookup: attribute names are case-insensitive (RFC 7643 §2.1).
fn remove_ci(o: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let k = o.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone();
    o.remove(&k)
}

/// The resource as a request body: without server-assigned and separately carried
/// attributes, `schemas` kept (filled in when missing: RFC 7643 §3 requires it).
fn body_for(kind: Kind, payload: &Value) -> Value {
    let mut o = payload.as_object().cloned().unwrap_or_default();
    for k in kind.skipped() {
        while remove_ci(&mut o, k).is_some() {}
    }
    let has_schemas = o
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !has_schemas {
        let mut schemas = vec![Value::String(kind.schema().into())];
        for (k, v) in &o {
            if k.len() > 4 && k[..4].eq_ignore_ascii_case("urn:") && v.is_object() {
                schemas.push(Value::String(k.clone()));
            }
        }
        o.insert("schemas".into(), Value::Array(schemas));
    }
    Value::Object(o)
}

fn is_urn(k: &str) -> bool {
    k.len() > 4 && k[..4].eq_ignore_ascii_case("urn:")
}

fn absent(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// PATCH operations (RFC 7644 §3.5.2) turning `previous` into `new`, top-level
/// attribute by attribute: `replace` what changed or appeared, `remove` what disappeared.
/// Singular complex attributes and schema extensions are compared one sub-attribute
/// deeper, because a `replace` on a complex attribute only replaces the sub-attributes it
/// names (§3.5.2.3); multi-valued attributes are replaced whole (same section). With no
/// `previous`, every attribute is replaced.
pub fn diff_ops(new: &Value, previous: Option<&Value>, skipped: &[&str]) -> Vec<Value> {
    let empty = Value::Object(Map::new());
    let prev = previous.filter(|p| p.is_object()).unwrap_or(&empty);
    let skip = |k: &str| k == "schemas" || skipped.iter().any(|s| s.eq_ignore_ascii_case(k));
    let mut ops = Vec::new();
    let replace = |ops: &mut Vec<Value>, path: String, v: &Value| {
        ops.push(json!({"op": "replace", "path": path, "value": v}));
    };
    let remove = |ops: &mut Vec<Value>, path: String| {
        ops.push(json!({"op": "remove", "path": path}));
    };
    let empty_map = Map::new();
    let new_obj = new.as_object().unwrap_or(&empty_map);
    for (k, nv) in new_obj {
        if skip(k) {
            continue;
        }
        let pv = get_ci(prev, k);
        if absent(Some(nv)) {
            if !absent(pv) {
                remove(&mut ops, k.clone());
            }
            continue;
        }
        match (nv, pv) {
            (Value::Object(nsub), Some(Value::Object(psub))) => {
                // Extension attributes are addressed `urn:...:attr`, core sub-attributes
                // `attr.sub` (RFC 7644 §3.10).
                let sep = if is_urn(k) { ":" } else { "." };
                for (sk, sv) in nsub {
                    let old = psub.get(sk);
                    if absent(Some(sv)) {
                        if !absent(old) {
                            remove(&mut ops, format!("{k}{sep}{sk}"));
                        }
                    } else if old != Some(sv) {
                        replace(&mut ops, format!("{k}{sep}{sk}"), sv);
                    }
                }
                for (sk, old) in psub {
                    if !nsub.contains_key(sk) && !absent(Some(old)) {
                        remove(&mut ops, format!("{k}{sep}{sk}"));
                    }
                }
            }
            (Value::Object(nsub), _) if is_urn(k) => {
                for (sk, sv) in nsub {
                    if !absent(Some(sv)) {
                        replace(&mut ops, format!("{k}:{sk}"), sv);
                    }
                }
            }
            _ => {
                if pv != Some(nv) {
                    replace(&mut ops, k.clone(), nv);
                }
            }
        }
    }
    if let Some(p) = prev.as_object() {
        for (k, pv) in p {
            if skip(k) || absent(Some(pv)) || get_ci(new, k).is_some() {
                continue;
            }
            match pv {
                Value::Object(psub) if is_urn(k) => {
                    for (sk, sv) in psub {
                        if !absent(Some(sv)) {
                            remove(&mut ops, format!("{k}:{sk}"));
                        }
                    }
                }
                _ => remove(&mut ops, k.clone()),
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use provisync_core::target::HttpAuth;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    #[test]
    fn diff() {
        let prev = json!({
            "schemas": [USER_SCHEMA], "userName": "a", "nickName": "n",
            "name": {"givenName": "A", "middleName": "M"},
            "emails": [{"value": "a@x", "primary": true}],
            ENT: {"department": "D", "costCenter": "C"},
            "id": "1", "meta": {}
        });
        let new = json!({
            "schemas": [USER_SCHEMA], "userName": "b",
            "name": {"givenName": "A", "familyName": "F"},
            "emails": [{"value": "b@x", "primary": true}],
            ENT: {"department": "E"},
            "active": true, "groups": [{"value": "g"}]
        });
        let ops = diff_ops(&new, Some(&prev), NEVER_IN_BODY);
        let want = vec![
            json!({"op": "replace", "path": "userName", "value": "b"}),
            json!({"op": "replace", "path": "name.familyName", "value": "F"}),
            json!({"op": "remove", "path": "name.middleName"}),
            json!({"op": "replace", "path": "emails", "value": [{"value": "b@x", "primary": true}]}),
            json!({"op": "replace", "path": format!("{ENT}:department"), "value": "E"}),
            json!({"op": "remove", "path": format!("{ENT}:costCenter")}),
            json!({"op": "replace", "path": "active", "value": true}),
            json!({"op": "remove", "path": "nickName"}),
        ];
        assert_eq!(ops, want);
        assert!(diff_ops(&new, Some(&new), NEVER_IN_BODY).is_empty());
        // Without previous: everything replaced, nothing removed.
        let all = diff_ops(&new, None, NEVER_IN_BODY);
        assert_eq!(all.len(), 5);
        assert!(all.iter().all(|o| o["op"] == "replace"));
    }

    #[test]
    fn paths() {
        let u = json!({
            "userName": "bob", "emails": [{"value": "w@x"}, {"value": "p@x", "primary": true}],
            ENT: {"employeeNumber": 42}, "name": {"familyName": "B"}
        });
        let p = |s: &str| read_path(&u, &AttrPath::parse(s).unwrap());
        assert_eq!(p("userName").as_deref(), Some("bob"));
        assert_eq!(p("USERNAME").as_deref(), Some("bob"));
        assert_eq!(p("emails.value").as_deref(), Some("p@x"));
        assert_eq!(p("emails").as_deref(), Some("p@x"));
        assert_eq!(p("name.familyName").as_deref(), Some("B"));
        assert_eq!(p(&format!("{ENT}:employeeNumber")).as_deref(), Some("42"));
        assert_eq!(
            p(&format!("{USER_SCHEMA}:userName")).as_deref(),
            Some("bob")
        );
        assert_eq!(p("title"), None);
    }

    #[test]
    fn bodies() {
        let b = body_for(
            Kind::User,
            &json!({"id": "x", "meta": {}, "Groups": [], "password": "p", "userName": "u", ENT: {"a": 1}}),
        );
        assert_eq!(
            b,
            json!({"userName": "u", ENT: {"a": 1}, "schemas": [USER_SCHEMA, ENT]})
        );
        let g = body_for(
            Kind::Group,
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "g", "members": [{"value": "1"}]}),
        );
        assert_eq!(g, json!({"schemas": [GROUP_SCHEMA], "displayName": "g"}));
    }

    #[test]
    fn construction_and_debug() {
        let t = ScimTarget {
            base_url: "https://scim.example.com/v2/".into(),
            auth: HttpAuth::Bearer("very-secret".into()),
            update_style: UpdateStyle::Patch,
            matching_attribute: "userName".into(),
        };
        let c = ScimConnector::new(&t).unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
        assert_eq!(
            c.url(&["Users", "a/b?c"]).unwrap().as_str(),
            "https://scim.example.com/v2/Users/a%2Fb%3Fc"
        );
        let bad = ScimTarget {
            base_url: "http://scim.example.com/v2".into(),
            ..t.clone()
        };
        assert!(matches!(ScimConnector::new(&bad), Err(SetupError::Url(_))));
        let bad = ScimTarget {
            matching_attribute: "emails[type eq \"work\"]".into(),
            ..t
        };
        assert!(matches!(
            ScimConnector::new(&bad),
            Err(SetupError::Config(_))
        ));
    }
}
