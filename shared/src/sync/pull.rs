//! Pull: the schedule reads `pull` / `bidirectional` sources and applies what changed.
//!
//! - **SCIM** (`"pull": {"kind": "scim", …}`): pages through `/Users` (RFC 7644
//!   §3.4.2.4, `startIndex`/`count`) with `filter=meta.lastModified gt "<cursor>"` when the
//!   source's `/ServiceProviderConfig` says it filters (§5, `filter.supported`), the full
//!   listing otherwise.
//! - **Drupal JSON:API** (`"kind": "jsonapi"`): `/jsonapi/user/user?sort=changed` filtered
//!   on `changed > <cursor>`, 50 a page, following `links.next` (Drupal documents that
//!   clients must follow the links rather than build paging URLs). `name` -> `userName`,
//!   `mail` -> the primary e-mail, `status` -> `active`, role ids -> `roles`, the UUID ->
//!   `externalId`.
//!
//! Each user becomes a `user.upsert` envelope with `occurred_at` = its `meta.lastModified`
//! / `changed`, applied by [`Inbound::apply`] (the webhook path: source links, the
//! source's allowed fields, last writer wins, no-op detection) through [`InboundSink`]. The cursor
//! (`CURSOR#{source}` / `CURSOR`) records the pass's filter value, its position and the
//! newest modification seen; it is written only after a page is applied, so a cycle that
//! stops half-way continues from the last applied page and never skips a change.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::{Method, Url, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::inbound::{
    Applied as InboundApplied, DEFAULT_ALLOWED_FIELDS, Envelope, EnvelopeType, Inbound,
};
use super::source::{PullConfig, PullKind, SourceConfig, Sources};
use crate::connector::ConnectorError;
use crate::connector::http::{Credentials, HttpClient, check_target_url};
use crate::store::{Item, Key, Store, StoreError, Write};

/// Users per SCIM page.
pub const SCIM_PAGE: usize = 100;
/// Users per JSON:API page (the issue's `page[limit]=50`; Drupal's maximum is 50).
pub const JSONAPI_PAGE: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("sources: {0}")]
    Sources(String),
    #[error("source: {0}")]
    Remote(#[from] ConnectorError),
    #[error("{0}")]
    Setup(String),
}

/// How applying one pulled user ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The hub changed (created or updated; a change event went out).
    Applied,
    /// Nothing to change.
    Unchanged,
    /// The hub holds a later change of that user (last writer wins).
    Stale,
}

/// Where pulled users go: the inbound path shared with webhooks.
#[async_trait]
pub trait PullSink: Send + Sync {
    /// Applies `user` (SCIM-shaped, `externalId` = the source's id of the user) as a
    /// `user.upsert` from `source`, modified at `occurred_at` (RFC 3339).
    async fn upsert_user(
        &self,
        source: &SourceConfig,
        user: &Value,
        occurred_at: &str,
    ) -> Result<Applied, String>;
}

/// What one source's pull did in this cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullReport {
    pub source: String,
    /// Users read from the source.
    pub fetched: u64,
    /// Users created or changed in the hub.
    pub applied: u64,
    pub unchanged: u64,
    /// Older than what the hub holds (last writer wins): not applied.
    pub stale: u64,
    /// Users that could not be applied (logged; the cursor still advances past them).
    pub failed: u64,
    /// `false` when the cycle ran out of time (the next one continues).
    pub complete: bool,
    /// Whether the source was read incrementally (filter on the cursor).
    pub incremental: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A source's pull position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullCursor {
    /// Changes after this are read in the current pass (`None`: everything).
    pub since: Option<String>,
    /// The newest modification applied so far in this pass: the next pass's `since`.
    pub newest: Option<String>,
    /// Where the current pass continues (`None`: a new pass starts).
    pub next: Option<String>,
}

fn cursor_key(source: &str) -> Key {
    Key::new(format!("CURSOR#{source}"), "CURSOR")
}

/// Reads and writes pull cursors.
pub async fn load_cursor(store: &dyn Store, source: &str) -> Result<PullCursor, StoreError> {
    Ok(store
        .get(&cursor_key(source))
        .await?
        .and_then(|i| serde_json::from_slice(&i.data).ok())
        .unwrap_or_default())
}

pub async fn save_cursor(
    store: &dyn Store,
    source: &str,
    c: &PullCursor,
) -> Result<(), StoreError> {
    let key = cursor_key(source);
    let data = serde_json::to_vec(c).map_err(|e| StoreError::Invalid(e.to_string()))?;
    store
        .transact(vec![Write::put(Item::new(key.pk, key.sk, data))])
        .await
}

/// One page read from a source: users (SCIM-shaped) with their modification time.
#[derive(Debug, Default)]
pub struct PulledPage {
    pub users: Vec<(Value, String)>,
    pub next: Option<String>,
}

/// A source reader.
struct Reader {
    base: Url,
    creds: Credentials,
    http: HttpClient,
}

impl Reader {
    fn new(pull: &PullConfig, http: HttpClient) -> Result<Reader, PullError> {
        let base = check_target_url(&pull.base_url).map_err(PullError::Setup)?;
        let creds =
            Credentials::from_auth(&pull.auth).map_err(|e| PullError::Setup(e.to_string()))?;
        Ok(Reader { base, creds, http })
    }

    fn url(&self, segments: &[&str]) -> Result<Url, PullError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| PullError::Setup("the base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn get(&self, url: Url, accept: &str) -> Result<Value, PullError> {
        let req = self
            .creds
            .apply(self.http.request(Method::GET, url))
            .header(header::ACCEPT, accept);
        let resp = self.http.send(req).await?.ok(Some(&self.creds))?;
        Ok(resp.json()?)
    }

    /// RFC 7644 §5: does the source filter?
    async fn scim_filters(&self) -> Result<bool, PullError> {
        let spc = self
            .get(
                self.url(&["ServiceProviderConfig"])?,
                "application/scim+json",
            )
            .await?;
        Ok(spc["filter"]["supported"].as_bool().unwrap_or(false))
    }

    async fn scim_page(
        &self,
        since: Option<&str>,
        next: Option<&str>,
    ) -> Result<PulledPage, PullError> {
        let start: u64 = next.and_then(|n| n.parse().ok()).unwrap_or(1).max(1);
        let mut url = self.url(&["Users"])?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = since {
                let lit = serde_json::to_string(s).unwrap_or_default();
                q.append_pair("filter", &format!("meta.lastModified gt {lit}"));
            }
            q.append_pair("startIndex", &start.to_string())
                .append_pair("count", &SCIM_PAGE.to_string());
        }
        let list = self.get(url, "application/scim+json").await?;
        let resources = list["Resources"].as_array().cloned().unwrap_or_default();
        let got = resources.len() as u64;
        let total = list["totalResults"].as_u64();
        let more = got > 0
            && match total {
                Some(t) => start + got <= t,
                None => got >= SCIM_PAGE as u64,
            };
        let users = resources
            .into_iter()
            .filter_map(|r| {
                let modified = r["meta"]["lastModified"].as_str().unwrap_or("").to_string();
                scim_user(&r).map(|u| (u, modified))
            })
            .collect();
        Ok(PulledPage {
            users,
            next: more.then(|| (start + got).to_string()),
        })
    }

    /// One JSON:API page: the first from the filter, the next ones from `links.next`.
    async fn jsonapi_page(
        &self,
        since: Option<&str>,
        next: Option<&str>,
    ) -> Result<PulledPage, PullError> {
        let url = match next {
            Some(n) => {
                let u = Url::parse(n)
                    .map_err(|e| PullError::Setup(format!("links.next is not a URL: {e}")))?;
                // Credentials go to the configured site only.
                if u.origin() != self.base.origin() {
                    return Err(PullError::Setup(
                        "links.next points to another site: refused".into(),
                    ));
                }
                u
            }
            None => {
                let mut url = self.url(&["jsonapi", "user", "user"])?;
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("sort", "changed");
                    if let Some(s) = since {
                        q.append_pair("filter[changed][condition][path]", "changed")
                            .append_pair("filter[changed][condition][operator]", ">")
                            .append_pair("filter[changed][condition][value]", s);
                    }
                    q.append_pair("page[limit]", &JSONAPI_PAGE.to_string());
                }
                url
            }
        };
        let doc = self.get(url, "application/vnd.api+json").await?;
        let data = doc["data"].as_array().cloned().unwrap_or_default();
        let users = data
            .iter()
            .filter_map(|d| {
                let (u, changed) = drupal_user(d)?;
                Some((u, changed))
            })
            .collect();
        let next = doc["links"]["next"]["href"]
            .as_str()
            .or_else(|| doc["links"]["next"].as_str())
            .map(str::to_string);
        Ok(PulledPage { users, next })
    }
}

/// A SCIM user from a source as the hub takes it: the source's id as `externalId`,
/// without the source's server-side attributes.
pub fn scim_user(r: &Value) -> Option<Value> {
    let id = r.get("id")?.as_str()?;
    r.get("userName")?.as_str()?;
    let mut u = r.clone();
    let o = u.as_object_mut()?;
    for k in ["id", "meta", "groups", "password"] {
        o.remove(k);
    }
    o.insert("externalId".into(), Value::String(id.to_string()));
    Some(u)
}

/// A Drupal JSON:API `user--user` resource as a SCIM user, with its `changed` time as
/// RFC 3339 (Drupal 8.7+ renders timestamps as RFC 3339; older sites send seconds).
/// The anonymous user (no `name`) is skipped.
pub fn drupal_user(d: &Value) -> Option<(Value, String)> {
    let uuid = d.get("id")?.as_str()?;
    let a = d.get("attributes")?;
    let name = a.get("name")?.as_str().filter(|n| !n.is_empty())?;
    let mut u = json!({
        "schemas": [crate::scim::schema::USER_SCHEMA],
        "userName": name,
        "externalId": uuid,
    });
    if let Some(display) = a.get("display_name").and_then(Value::as_str) {
        u["displayName"] = json!(display);
    }
    if let Some(mail) = a
        .get("mail")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
    {
        u["emails"] = json!([{"value": mail, "type": "work", "primary": true}]);
    }
    if let Some(status) = a.get("status").and_then(Value::as_bool) {
        u["active"] = json!(status);
    }
    // Roles: relationship targets; their machine name (`meta.drupal_internal__target_id`)
    // when the site gives it, else the role entity's UUID.
    let roles: Vec<Value> = d["relationships"]["roles"]["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    r["meta"]["drupal_internal__target_id"]
                        .as_str()
                        .or_else(|| r["id"].as_str())
                        .map(|v| json!({"value": v}))
                })
                .collect()
        })
        .unwrap_or_default();
    if !roles.is_empty() {
        u["roles"] = Value::Array(roles);
    }
    let changed = match a.get("changed") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
        _ => String::new(),
    };
    Some((u, changed))
}

/// The later of two RFC 3339 times (unparseable ones lose).
fn newest(a: Option<String>, b: &str) -> Option<String> {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (a, parse(b)) {
        (None, Some(_)) => Some(b.to_string()),
        (Some(a), Some(tb)) => match parse(&a) {
            Some(ta) if ta >= tb => Some(a),
            _ => Some(b.to_string()),
        },
        (a, None) => a,
    }
}

/// The cursor value a source filters on: RFC 3339 for SCIM (`meta.lastModified` is a
/// dateTime, RFC 7643 §3.1); Unix seconds for Drupal (`changed` is a timestamp field,
/// and its entity query compares the stored integer).
fn filter_value(kind: PullKind, since: &str) -> Option<String> {
    match kind {
        PullKind::Scim => Some(since.to_string()),
        PullKind::Jsonapi => chrono::DateTime::parse_from_rfc3339(since)
            .ok()
            .map(|t| t.timestamp().to_string()),
    }
}

/// Reads pull sources and applies what changed.
#[derive(Clone)]
pub struct Puller {
    store: Arc<dyn Store>,
    sources: Sources,
    sink: Arc<dyn PullSink>,
    http: Option<HttpClient>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller").finish_non_exhaustive()
    }
}

impl Puller {
    pub fn new(store: Arc<dyn Store>, sources: Sources, sink: Arc<dyn PullSink>) -> Self {
        Puller {
            store,
            sources,
            sink,
            http: None,
        }
    }

    /// Reads sources with this client (tests use short timeouts).
    pub fn with_client(mut self, http: HttpClient) -> Self {
        self.http = Some(http);
        self
    }

    /// Pulls every enabled pull source until `deadline`.
    pub async fn pull_all(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<PullReport>, PullError> {
        let list = self
            .sources
            .list()
            .await
            .map_err(|e| PullError::Sources(e.to_string()))?;
        let mut out = Vec::new();
        for s in list.iter().filter(|s| s.enabled && s.is_pulled()) {
            out.push(self.pull_source(s, deadline).await);
        }
        Ok(out)
    }

    /// Pulls one source; errors end up in the report (the cursor keeps the position).
    pub async fn pull_source(
        &self,
        source: &SourceConfig,
        deadline: tokio::time::Instant,
    ) -> PullReport {
        let mut report = PullReport {
            source: source.id.clone(),
            ..Default::default()
        };
        if let Err(e) = self.pull_into(source, deadline, &mut report).await {
            tracing::warn!(source = %source.id, error = %e, "pull failed");
            report.error = Some(e.to_string());
        }
        tracing::info!(
            source = %source.id,
            fetched = report.fetched,
            applied = report.applied,
            unchanged = report.unchanged,
            stale = report.stale,
            failed = report.failed,
            complete = report.complete,
            "pull"
        );
        report
    }

    async fn pull_into(
        &self,
        source: &SourceConfig,
        deadline: tokio::time::Instant,
        report: &mut PullReport,
    ) -> Result<(), PullError> {
        let Some(pull) = &source.pull else {
            return Ok(());
        };
        if !source.user_sync {
            return Err(PullError::Setup(
                "user_sync is off for this source: nothing to pull".into(),
            ));
        }
        let http = match &self.http {
            Some(h) => h.clone(),
            None => HttpClient::shared().map_err(|e| PullError::Setup(e.to_string()))?,
        };
        let reader = Reader::new(pull, http)?;
        let mut cursor = load_cursor(self.store.as_ref(), &source.id).await?;
        let incremental = match pull.kind {
            PullKind::Scim => reader.scim_filters().await?,
            PullKind::Jsonapi => true,
        };
        report.incremental = incremental;
        let since = if incremental {
            cursor
                .since
                .as_deref()
                .and_then(|s| filter_value(pull.kind, s))
        } else {
            None
        };
        let mut first = true;
        loop {
            if !first && tokio::time::Instant::now() >= deadline {
                report.complete = false;
                return Ok(());
            }
            first = false;
            let page = match pull.kind {
                PullKind::Scim => {
                    reader
                        .scim_page(since.as_deref(), cursor.next.as_deref())
                        .await?
                }
                PullKind::Jsonapi => {
                    reader
                        .jsonapi_page(since.as_deref(), cursor.next.as_deref())
                        .await?
                }
            };
            for (user, modified) in &page.users {
                report.fetched += 1;
                let at = if modified.is_empty() {
                    chrono::Utc::now().to_rfc3339()
                } else {
                    modified.clone()
                };
                match self.sink.upsert_user(source, user, &at).await {
                    Ok(Applied::Applied) => report.applied += 1,
                    Ok(Applied::Unchanged) => report.unchanged += 1,
                    Ok(Applied::Stale) => report.stale += 1,
                    Err(e) => {
                        report.failed += 1;
                        tracing::warn!(source = %source.id, error = %e, "pulled user not applied");
                    }
                }
                cursor.newest = newest(cursor.newest.take(), modified);
            }
            // The page is applied: now the cursor may move.
            match page.next {
                Some(n) => cursor.next = Some(n),
                None => {
                    cursor.next = None;
                    if cursor.newest.is_some() {
                        cursor.since = cursor.newest.clone();
                    }
                }
            }
            save_cursor(self.store.as_ref(), &source.id, &cursor).await?;
            if cursor.next.is_none() {
                report.complete = true;
                return Ok(());
            }
        }
    }
}

/// [`PullSink`] through [`Inbound::apply`]: the webhook path (source links, policy, last
/// writer wins, no-op detection), with a `user.upsert` envelope per pulled user. A full
/// listing carries every attribute the source has; those this source may not set
/// (its `allowed_fields`, else [`DEFAULT_ALLOWED_FIELDS`]) are left out of the envelope
/// rather than refusing the user (a webhook that sends them is refused).
#[derive(Clone, Debug)]
pub struct InboundSink {
    inbound: Arc<Inbound>,
}

impl InboundSink {
    pub fn new(inbound: Arc<Inbound>) -> Self {
        InboundSink { inbound }
    }
}

fn may_set(source: &SourceConfig, field: &str) -> bool {
    matches!(field, "schemas" | "externalId")
        || match &source.allowed_fields {
            Some(list) => list.iter().any(|f| f == field),
            None => DEFAULT_ALLOWED_FIELDS.contains(&field),
        }
}

#[async_trait]
impl PullSink for InboundSink {
    async fn upsert_user(
        &self,
        source: &SourceConfig,
        user: &Value,
        occurred_at: &str,
    ) -> Result<Applied, String> {
        let data: serde_json::Map<String, Value> = user
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| may_set(source, k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let envelope = Envelope {
            kind: EnvelopeType::UserUpsert,
            occurred_at: occurred_at.to_string(),
            data: Value::Object(data),
        };
        match self.inbound.apply(source, &envelope, None).await {
            Ok(InboundApplied::Applied) => Ok(Applied::Applied),
            Ok(InboundApplied::Unchanged) | Ok(InboundApplied::Replay) => Ok(Applied::Unchanged),
            Ok(InboundApplied::Stale) => Ok(Applied::Stale),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drupal_user_maps_name_mail_status_roles_uuid() {
        let d = json!({
            "type": "user--user",
            "id": "0b5e3a5c-1111-4a2b-9c3d-222222222222",
            "attributes": {"name": "alice", "mail": "alice@example.com", "status": true,
                "changed": "2024-05-01T10:00:00+00:00", "display_name": "alice"},
            "relationships": {"roles": {"data": [
                {"type": "user_role--user_role", "id": "r-uuid",
                 "meta": {"drupal_internal__target_id": "editor"}}]}}
        });
        let (u, changed) = drupal_user(&d).unwrap();
        assert_eq!(u["userName"], "alice");
        assert_eq!(u["externalId"], "0b5e3a5c-1111-4a2b-9c3d-222222222222");
        assert_eq!(u["emails"][0]["value"], "alice@example.com");
        assert_eq!(u["active"], true);
        assert_eq!(u["roles"][0]["value"], "editor");
        assert_eq!(changed, "2024-05-01T10:00:00+00:00");
        // The anonymous user has no name.
        assert!(drupal_user(&json!({"id": "x", "attributes": {"name": ""}})).is_none());
        // Timestamps as seconds (older sites).
        let old = json!({"id": "y", "attributes": {"name": "b", "changed": 0}});
        assert_eq!(drupal_user(&old).unwrap().1, "1970-01-01T00:00:00+00:00");
    }

    #[test]
    fn cursor_keeps_the_newest_time() {
        let a = newest(None, "2024-01-01T00:00:00Z");
        let b = newest(a.clone(), "2023-01-01T00:00:00Z");
        assert_eq!(b, a);
        let c = newest(b, "2025-01-01T00:00:00+01:00");
        assert_eq!(c.as_deref(), Some("2025-01-01T00:00:00+01:00"));
        assert_eq!(newest(c.clone(), "garbage"), c);
        assert_eq!(
            filter_value(PullKind::Jsonapi, "1970-01-01T00:01:40Z").as_deref(),
            Some("100")
        );
    }
}
