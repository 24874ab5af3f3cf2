//! Pull: the schedule reads `pull` / `bidirectional` sources and applies what changed.
//!
//! - **SCIM** (`"pull": {"kind": "scim", …}`): pages through `/Users`, then `/Groups`
//!   (RFC 7644 §3.4.2.4, `startIndex`/`count`) with `filter=meta.lastModified gt
//!   "<cursor>"` when the source's `/ServiceProviderConfig` says it filters (§5,
//!   `filter.supported`), the full listing otherwise. A source without `/Groups` (404) has
//!   no groups.
//! - **Drupal JSON:API** (`"kind": "jsonapi"`): `/jsonapi/user/user?sort=changed` filtered
//!   on `changed > <cursor>`, 50 a page, following `links.next` (Drupal documents that
//!   clients must follow the links rather than build paging URLs). `name` -> `userName`,
//!   `mail` -> the primary e-mail, `status` -> `active`, role ids -> `roles`, the UUID ->
//!   `externalId`. Users only.
//!
//! Each user becomes a `user.upsert` envelope, each group a `group.upsert` (`externalId` =
//! the source's group id, `displayName`, `members` = the source's user ids), with
//! `occurred_at` = its `meta.lastModified` / `changed`, applied by [`Inbound::apply`] (the
//! webhook path: source links, the source's allowed fields, last writer wins, no-op
//! detection) through [`InboundSink`]. Group members are translated through the source's
//! user links, so the users of a pass are applied before its groups; a member the hub has
//! no link for yet (created at the source after the users were read) is read from the
//! source (`GET /Users/{id}`) and applied first. Group membership is taken only when the
//! source's `allowed_fields` name `members` (the webhook policy: membership can grant
//! rights).
//!
//! The cursor (`CURSOR#{source}` / `CURSOR`) keeps one position per listing (the pass's
//! filter value, the page to continue from, the newest modification seen) and which
//! listing the pass is in; it is written only after a page is applied, so a cycle that
//! stops half-way (in the users, between users and groups, in the groups) continues from
//! the last applied page and never skips a change.
//!
//! Deletions at the source are not seen: a listing filtered on `lastModified` cannot show
//! what is gone. Users and groups the source no longer has stay in the hub until an
//! operator (or the source, by webhook: `user.delete` / `group.delete`) removes them.

mod probe;
mod scim_list;

pub use probe::test_pull;

use crate::store::keyspace;
use std::sync::Arc;

use async_trait::async_trait;
use http::header::{self, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use super::audit::{Audit, AuditEntry, AuditOp, AuditStatus};
use super::inbound::{
    Applied as InboundApplied, DEFAULT_ALLOWED_FIELDS, Envelope, EnvelopeType, Inbound,
    InboundError,
};
use crate::connector::ConnectorError;
use crate::connector::http::{
    Credentials, HttpFactory, HttpPort, HttpRequest, HttpResponse, check_target_url,
};
use crate::source::{PullConfig, PullKind, SourceConfig, Sources};
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
    #[error(transparent)]
    Inbound(#[from] InboundError),
}

/// How applying one pulled user or group ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// New in the hub (a change event went out).
    Created,
    /// Changed in the hub (a change event went out).
    Updated,
    /// Nothing to change.
    Unchanged,
    /// The hub holds a later change of it (last writer wins).
    Stale,
}

/// Where pulled users and groups go: the inbound path shared with webhooks.
#[async_trait]
pub trait PullSink: Send + Sync {
    /// Applies `user` (SCIM-shaped, `externalId` = the source's id of the user) as a
    /// `user.upsert` from `source`, modified at `occurred_at` (RFC 3339).
    async fn upsert_user(
        &self,
        source: &SourceConfig,
        user: &Value,
        occurred_at: &str,
    ) -> Result<Applied, InboundError>;

    /// Applies `group` (`externalId` = the source's id, `members[].value` = the source's
    /// user ids) as a `group.upsert` from `source`.
    async fn upsert_group(
        &self,
        source: &SourceConfig,
        group: &Value,
        occurred_at: &str,
    ) -> Result<Applied, InboundError>;

    /// The ids among `site_ids` (the source's user ids) that the hub has no user for from
    /// this source yet.
    async fn unlinked_users(
        &self,
        source: &SourceConfig,
        site_ids: &[String],
    ) -> Result<Vec<String>, InboundError>;
}

/// Counts of one kind of resource in one source's pull.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullCounts {
    /// Read from the source.
    pub fetched: u64,
    /// New in the hub.
    pub created: u64,
    /// Changed in the hub.
    pub updated: u64,
    pub unchanged: u64,
    /// Older than what the hub holds (last writer wins): not applied.
    pub stale: u64,
    /// Could not be applied (logged; the cursor still advances past them).
    pub failed: u64,
}

impl PullCounts {
    fn count(&mut self, outcome: &Result<Applied, InboundError>) {
        match outcome {
            Ok(Applied::Created) => self.created += 1,
            Ok(Applied::Updated) => self.updated += 1,
            Ok(Applied::Unchanged) => self.unchanged += 1,
            Ok(Applied::Stale) => self.stale += 1,
            Err(_) => self.failed += 1,
        }
    }

    /// `fetched=… created=… …`: the audit detail.
    pub fn summary(&self) -> String {
        format!(
            "fetched={} created={} updated={} unchanged={} stale={} failed={}",
            self.fetched, self.created, self.updated, self.unchanged, self.stale, self.failed
        )
    }
}

/// What one source's pull did in this cycle. In JSON the user counts are at the top
/// (`fetched`, `created`, …) and the group counts under `groups`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullReport {
    pub source: String,
    /// Users (including members read because a group named them).
    #[serde(flatten)]
    pub users: PullCounts,
    #[serde(default)]
    pub groups: PullCounts,
    /// `false` when the cycle ran out of time (the next one continues).
    pub complete: bool,
    /// Whether the source was read incrementally (filter on the cursor).
    pub incremental: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PullReport {
    /// The report of a pull stopped at the deadline (what it did is in its cursor).
    fn stopped(source: &str) -> Self {
        PullReport {
            source: source.to_string(),
            users: PullCounts::default(),
            groups: PullCounts::default(),
            complete: false,
            incremental: false,
            error: Some("stopped at the deadline: the source did not answer in time".into()),
        }
    }

    /// `users: fetched=… …; groups: fetched=… …`: the audit detail.
    pub fn summary(&self) -> String {
        format!(
            "users: {}; groups: {}",
            self.users.summary(),
            self.groups.summary()
        )
    }
}

/// Which listing a pass is reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPhase {
    #[default]
    Users,
    /// The users of this pass are applied; the groups are being read.
    Groups,
}

/// The position in one listing (`/Users` or `/Groups`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassCursor {
    /// Changes after this are read in the current pass (`None`: everything).
    pub since: Option<String>,
    /// The newest modification applied so far in this pass: the next pass's `since`.
    pub newest: Option<String>,
    /// Where the current pass continues (`None`: from the start).
    pub next: Option<String>,
}

/// A source's pull position. The users' fields are at the top of the record (where the
/// first version, which pulled users only, kept them), so its records still read: they
/// continue the users pass, and the first groups pass reads every group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullCursor {
    #[serde(flatten)]
    pub users: PassCursor,
    #[serde(default)]
    pub phase: PullPhase,
    #[serde(default)]
    pub groups: PassCursor,
}

fn cursor_key(source: &str) -> Key {
    Key::new(format!("{}{source}", keyspace::CURSOR), "CURSOR")
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

/// One page read from a source: users or groups (SCIM-shaped, as the hub takes them)
/// with their modification time.
#[derive(Debug, Default)]
pub struct PulledPage {
    pub items: Vec<(Value, String)>,
    pub next: Option<String>,
}

/// A source reader.
struct Reader {
    base: Url,
    creds: Credentials,
    http: Arc<dyn HttpPort>,
    /// The source pages by cursor (RFC 9865), as its `/ServiceProviderConfig` says.
    cursors: bool,
}

impl Reader {
    fn new(pull: &PullConfig, http: Arc<dyn HttpPort>) -> Result<Reader, PullError> {
        let base = check_target_url(&pull.base_url).map_err(|e| PullError::Setup(e.to_string()))?;
        let creds =
            Credentials::from_auth(&pull.auth).map_err(|e| PullError::Setup(e.to_string()))?;
        Ok(Reader {
            base,
            creds,
            http,
            cursors: false,
        })
    }

    fn url(&self, segments: &[&str]) -> Result<Url, PullError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| PullError::Setup("the base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// A GET, answered as it came (any status).
    async fn get_raw(&self, url: Url, accept: &'static str) -> Result<HttpResponse, PullError> {
        let req = HttpRequest::get(url)
            .authorized(&self.creds)
            .header(header::ACCEPT, HeaderValue::from_static(accept));
        Ok(self.http.send(req).await?)
    }

    async fn get(&self, url: Url, accept: &'static str) -> Result<Value, PullError> {
        let resp = self.get_raw(url, accept).await?.ok(Some(&self.creds))?;
        Ok(resp.json()?)
    }

    /// One user by the source's id (`GET /Users/{id}`); `None` when the source has no such
    /// user (404).
    async fn scim_user_by_id(&self, id: &str) -> Result<Option<(Value, String)>, PullError> {
        match self
            .get(self.url(&["Users", id])?, "application/scim+json")
            .await
        {
            Ok(r) => {
                let modified = r["meta"]["lastModified"].as_str().unwrap_or("").to_string();
                Ok(scim_user(&r).map(|u| (u, modified)))
            }
            Err(PullError::Remote(ConnectorError::NotFound)) => Ok(None),
            Err(e) => Err(e),
        }
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
        let items = data.iter().filter_map(drupal_user).collect();
        let next = doc["links"]["next"]["href"]
            .as_str()
            .or_else(|| doc["links"]["next"].as_str())
            .map(str::to_string);
        Ok(PulledPage { items, next })
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

/// A SCIM group from a source as the hub takes it: the source's id as `externalId`,
/// `displayName`, and `members` as the source's ids of its users (`{"value": id}`).
/// Members that are groups (`"type": "Group"`) are left out: the hub translates members
/// through the source's user links only.
pub fn scim_group(r: &Value) -> Option<Value> {
    let id = r.get("id")?.as_str()?;
    let name = r.get("displayName")?.as_str()?;
    let members: Vec<Value> = r
        .get("members")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter(|m| m.get("type").and_then(Value::as_str) != Some("Group"))
                .filter_map(|m| m.get("value")?.as_str())
                .map(|v| json!({"value": v}))
                .collect()
        })
        .unwrap_or_default();
    Some(json!({
        "schemas": [provisync_scim::schema::GROUP_SCHEMA],
        "externalId": id,
        "displayName": name,
        "members": members,
    }))
}

/// A Drupal JSON:API `user--user` resource as a SCIM user, with its `changed` time as
/// RFC 3339 (Drupal 8.7+ renders timestamps as RFC 3339; older sites send seconds).
/// The anonymous user (no `name`) is skipped.
pub fn drupal_user(d: &Value) -> Option<(Value, String)> {
    let uuid = d.get("id")?.as_str()?;
    let a = d.get("attributes")?;
    let name = a.get("name")?.as_str().filter(|n| !n.is_empty())?;
    let mut u = json!({
        "schemas": [provisync_scim::schema::USER_SCHEMA],
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
    /// The process's outbound client, built on the first pull.
    http: HttpFactory,
    /// A client given instead ([`Self::with_client`]).
    client: Option<Arc<dyn HttpPort>>,
    audit: Option<Audit>,
    /// With a value, a source's pull is stopped this long after the deadline
    /// ([`Self::bounded`]).
    grace: Option<std::time::Duration>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller").finish_non_exhaustive()
    }
}

impl Puller {
    /// Reads sources through the client `http` builds (on the first pull).
    pub fn new(
        store: Arc<dyn Store>,
        sources: Sources,
        sink: Arc<dyn PullSink>,
        http: HttpFactory,
    ) -> Self {
        Puller {
            store,
            sources,
            sink,
            http,
            client: None,
            audit: None,
            grace: None,
        }
    }

    /// This puller, stopping a source whose call is still in flight
    /// [`crate::sync::PHASE_GRACE`] after the deadline (inside an invocation that ends at a
    /// fixed time); its cursor keeps the position.
    pub fn bounded(&self) -> Self {
        Puller {
            grace: Some(crate::sync::PHASE_GRACE),
            ..self.clone()
        }
    }

    /// Reads sources with this client (tests use short timeouts).
    pub fn with_client(mut self, http: Arc<dyn HttpPort>) -> Self {
        self.client = Some(http);
        self
    }

    /// Writes one audit entry per pulled source and cycle (target = the source id, op
    /// `pull`, the counts in the detail).
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = Some(audit);
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
        // The deadline is checked between pages; bounded, a source whose call is still in
        // flight the grace later is stopped (its cursor keeps the position).
        let stop = self.grace.map(|grace| deadline + grace);
        for s in list.iter().filter(|s| s.enabled && s.is_pulled()) {
            let report = match crate::sync::until(stop, self.pull_source(s, deadline)).await {
                Some(report) => report,
                None => {
                    tracing::warn!(source = %s.id, "pull stopped at the deadline: the source did not answer in time");
                    PullReport::stopped(&s.id)
                }
            };
            out.push(report);
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
        let (u, g) = (&report.users, &report.groups);
        tracing::info!(
            source = %source.id,
            fetched = u.fetched,
            created = u.created,
            updated = u.updated,
            unchanged = u.unchanged,
            stale = u.stale,
            failed = u.failed,
            groups_fetched = g.fetched,
            groups_created = g.created,
            groups_updated = g.updated,
            groups_unchanged = g.unchanged,
            groups_stale = g.stale,
            groups_failed = g.failed,
            complete = report.complete,
            "pull"
        );
        if let Some(audit) = &self.audit {
            let (status, detail) = match (&report.error, report.complete) {
                (Some(e), _) => (AuditStatus::Failed, format!("{e}: {}", report.summary())),
                (None, true) => (
                    AuditStatus::Delivered,
                    format!("complete: {}", report.summary()),
                ),
                (None, false) => (
                    AuditStatus::Queued,
                    format!("out of time, continues next cycle: {}", report.summary()),
                ),
            };
            let entry = AuditEntry::new(&source.id, AuditOp::Pull, status).detail(detail);
            if let Err(e) = audit.record(entry).await {
                tracing::warn!(source = %source.id, error = %e, "pull audit entry not written");
            }
        }
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
        let http = match &self.client {
            Some(h) => h.clone(),
            None => (self.http)().map_err(|e| PullError::Setup(e.to_string()))?,
        };
        let mut reader = Reader::new(pull, http)?;
        let mut cursor = load_cursor(self.store.as_ref(), &source.id).await?;
        let incremental = match pull.kind {
            PullKind::Scim => reader.scim_config().await?,
            PullKind::Jsonapi => true,
        };
        report.incremental = incremental;
        // Only SCIM sources have groups; a cursor of a source whose kind changed starts
        // its users over.
        if pull.kind == PullKind::Jsonapi && cursor.phase == PullPhase::Groups {
            cursor.phase = PullPhase::Users;
        }
        let mut first = true;
        loop {
            if !first && tokio::time::Instant::now() >= deadline {
                report.complete = false;
                return Ok(());
            }
            first = false;
            let phase = cursor.phase;
            let pass = match phase {
                PullPhase::Users => &mut cursor.users,
                PullPhase::Groups => &mut cursor.groups,
            };
            let since = if incremental {
                pass.since
                    .as_deref()
                    .and_then(|s| filter_value(pull.kind, s))
            } else {
                None
            };
            let page = match (pull.kind, phase) {
                (PullKind::Scim, PullPhase::Groups) => {
                    match reader
                        .scim_page(phase, since.as_deref(), pass.next.as_deref())
                        .await
                    {
                        // RFC 7644 §3.2: a service provider may have no groups endpoint.
                        Err(PullError::Remote(ConnectorError::NotFound)) => PulledPage::default(),
                        r => r?,
                    }
                }
                (PullKind::Scim, PullPhase::Users) => {
                    reader
                        .scim_page(phase, since.as_deref(), pass.next.as_deref())
                        .await?
                }
                (PullKind::Jsonapi, _) => {
                    reader
                        .jsonapi_page(since.as_deref(), pass.next.as_deref())
                        .await?
                }
            };
            for (item, modified) in &page.items {
                let at = if modified.is_empty() {
                    chrono::Utc::now().to_rfc3339()
                } else {
                    modified.clone()
                };
                match phase {
                    PullPhase::Users => {
                        report.users.fetched += 1;
                        let r = self.sink.upsert_user(source, item, &at).await;
                        if let Err(e) = &r {
                            tracing::warn!(source = %source.id, error = %e, "pulled user not applied");
                        }
                        report.users.count(&r);
                    }
                    PullPhase::Groups => {
                        self.read_missing_members(source, &reader, item, report)
                            .await?;
                        report.groups.fetched += 1;
                        let r = self.sink.upsert_group(source, item, &at).await;
                        if let Err(e) = &r {
                            tracing::warn!(source = %source.id, error = %e, "pulled group not applied");
                        }
                        report.groups.count(&r);
                    }
                }
                pass.newest = newest(pass.newest.take(), modified);
            }
            // The page is applied: now the cursor may move.
            let pass_done = page.next.is_none();
            pass.next = page.next;
            if pass_done && pass.newest.is_some() {
                pass.since = pass.newest.clone();
            }
            let cycle_done = match (pass_done, phase, pull.kind) {
                (false, _, _) => false,
                (true, PullPhase::Users, PullKind::Scim) => {
                    cursor.phase = PullPhase::Groups;
                    false
                }
                (true, PullPhase::Groups, _) => {
                    cursor.phase = PullPhase::Users;
                    true
                }
                (true, PullPhase::Users, PullKind::Jsonapi) => true,
            };
            save_cursor(self.store.as_ref(), &source.id, &cursor).await?;
            if cycle_done {
                report.complete = true;
                return Ok(());
            }
        }
    }

    /// Members of a pulled group that the hub has no user for from this source (a user
    /// created at the source after this pass read the users): read one by one from the
    /// source and applied first, so that the group's membership is whole. Only when the
    /// source may set `members` at all.
    async fn read_missing_members(
        &self,
        source: &SourceConfig,
        reader: &Reader,
        group: &Value,
        report: &mut PullReport,
    ) -> Result<(), PullError> {
        if !may_set(source, "members") {
            return Ok(());
        }
        let ids: Vec<String> = group["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m["value"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(());
        }
        let missing = self.sink.unlinked_users(source, &ids).await?;
        for id in missing {
            let Some((user, modified)) = reader.scim_user_by_id(&id).await? else {
                continue;
            };
            report.users.fetched += 1;
            let at = if modified.is_empty() {
                chrono::Utc::now().to_rfc3339()
            } else {
                modified
            };
            let r = self.sink.upsert_user(source, &user, &at).await;
            if let Err(e) = &r {
                tracing::warn!(source = %source.id, error = %e, "group member not applied");
            }
            report.users.count(&r);
        }
        Ok(())
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

impl InboundSink {
    async fn upsert(
        &self,
        source: &SourceConfig,
        kind: EnvelopeType,
        resource: &Value,
        occurred_at: &str,
    ) -> Result<Applied, InboundError> {
        let data: serde_json::Map<String, Value> = resource
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| may_set(source, k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let envelope = Envelope {
            kind,
            occurred_at: occurred_at.to_string(),
            data: Value::Object(data),
        };
        match self.inbound.apply(source, &envelope, None).await {
            Ok(InboundApplied::Created) => Ok(Applied::Created),
            // A pulled upsert never deletes; `Deleted` cannot come back from one.
            Ok(InboundApplied::Updated) | Ok(InboundApplied::Deleted) => Ok(Applied::Updated),
            Ok(InboundApplied::Unchanged | InboundApplied::Replay | InboundApplied::Unlinked) => {
                Ok(Applied::Unchanged)
            }
            Ok(InboundApplied::Stale) => Ok(Applied::Stale),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl PullSink for InboundSink {
    async fn upsert_user(
        &self,
        source: &SourceConfig,
        user: &Value,
        occurred_at: &str,
    ) -> Result<Applied, InboundError> {
        self.upsert(source, EnvelopeType::UserUpsert, user, occurred_at)
            .await
    }

    async fn upsert_group(
        &self,
        source: &SourceConfig,
        group: &Value,
        occurred_at: &str,
    ) -> Result<Applied, InboundError> {
        self.upsert(source, EnvelopeType::GroupUpsert, group, occurred_at)
            .await
    }

    async fn unlinked_users(
        &self,
        source: &SourceConfig,
        site_ids: &[String],
    ) -> Result<Vec<String>, InboundError> {
        self.inbound.unlinked_users(&source.id, site_ids).await
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
    fn scim_group_keeps_name_and_user_members() {
        let g = json!({"schemas": [provisync_scim::schema::GROUP_SCHEMA], "id": "g-1",
            "displayName": "Ops", "meta": {"lastModified": "2024-05-01T10:00:00Z"},
            "members": [{"value": "u-1", "type": "User"}, {"value": "u-2"},
                {"value": "g-2", "type": "Group"}, {"display": "no value"}]});
        let out = scim_group(&g).unwrap();
        assert_eq!(out["externalId"], "g-1");
        assert_eq!(out["displayName"], "Ops");
        assert_eq!(out["members"], json!([{"value": "u-1"}, {"value": "u-2"}]));
        assert!(out.get("id").is_none() && out.get("meta").is_none());
        assert!(
            scim_group(&json!({"id": "g"})).is_none(),
            "displayName is required"
        );
    }

    #[test]
    fn cursor_of_the_users_only_version_still_reads() {
        // What the first version wrote: the users' position at the top, nothing else.
        let old =
            br#"{"since":"2024-01-01T00:00:00Z","newest":"2024-02-01T00:00:00Z","next":"101"}"#;
        let c: PullCursor = serde_json::from_slice(old).unwrap();
        assert_eq!(c.users.since.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(c.users.newest.as_deref(), Some("2024-02-01T00:00:00Z"));
        assert_eq!(c.users.next.as_deref(), Some("101"));
        // It continues the users pass; the first groups pass reads every group.
        assert_eq!(c.phase, PullPhase::Users);
        assert_eq!(c.groups, PassCursor::default());
        // And the new record keeps the users at the top.
        let again = serde_json::to_value(&c).unwrap();
        assert_eq!(again["since"], "2024-01-01T00:00:00Z");
        assert_eq!(again["phase"], "users");
        let back: PullCursor = serde_json::from_value(again).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            serde_json::from_slice::<PullCursor>(b"{}").unwrap(),
            PullCursor::default()
        );
    }

    #[test]
    fn report_counts_and_summary() {
        let mut r = PullReport::default();
        for o in [
            Ok(Applied::Created),
            Ok(Applied::Created),
            Ok(Applied::Updated),
            Ok(Applied::Unchanged),
            Ok(Applied::Stale),
            Err(InboundError::Malformed("x".to_string())),
        ] {
            r.users.count(&o);
        }
        r.groups.count(&Ok(Applied::Updated));
        assert_eq!(
            r.summary(),
            "users: fetched=0 created=2 updated=1 unchanged=1 stale=1 failed=1; \
             groups: fetched=0 created=0 updated=1 unchanged=0 stale=0 failed=0"
        );
        // JSON: the user counts at the top (what `provisync run-schedule` prints).
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            (v["created"].as_u64(), v["updated"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(v["groups"]["updated"], 1);
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
