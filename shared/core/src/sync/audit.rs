//! The audit log: one entry per delivery attempt, connection test, on-demand sync, ... —
//! what the operator reads in `GET /admin/audit` and `provisync audit`.
//!
//! ## Layout (single table)
//!
//! | key            | value                                   | serves                      |
//! |----------------|-----------------------------------------|-----------------------------|
//! | pk / sk        | `AUDIT#{yyyy-mm-dd}` / `{at}#{uuid}`    | newest first over all targets (one partition per UTC day, read newest day first) |
//! | gsi1 pk / sk   | `AUDIT#T#{target}` / `{at}#{uuid}`      | one target's history        |
//! | gsi2 pk / sk   | `AUDIT#R#{resource_id}` / `{at}#{uuid}` | one user's / group's history |
//! | ttl            | `at` + retention                        | `PROVISYNC_AUDIT_RETENTION_DAYS` (default 90) |
//!
//! `at` is RFC 3339 in UTC with milliseconds (`2025-01-31T12:00:00.123Z`), so sort keys
//! order by time. A query reads the narrowest index its parameters allow (resource, else
//! target, else the day partitions) newest first, applies the other filters while paging,
//! and stops at `since`, at `limit` or after a read budget; the cursor it returns is
//! opaque (base64url of the position) and resumes exactly after the last entry examined.
//!
//! `detail` is cut to [`MAX_DETAIL_BYTES`]; keeping secrets out of it is the writer's job.

use crate::store::keyspace;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{Cursor, Index, Item, Query, Store, StoreError, Write};

/// Longest `detail` kept, in bytes.
pub const MAX_DETAIL_BYTES: usize = 1024;
/// Default and largest page size of [`Audit::query`].
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Default retention, days.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
pub const RETENTION_ENV: &str = "PROVISYNC_AUDIT_RETENTION_DAYS";
/// Entries one query call examines at most before it returns a cursor (keeps one admin
/// request bounded when filters match little).
const READ_BUDGET: usize = 5000;
/// Day partitions one query call walks at most.
const BUCKET_BUDGET: usize = 400;
const MAX_KEY_PART: usize = 512;

/// What was attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOp {
    Create,
    Update,
    Password,
    Deactivate,
    Delete,
    AddMembers,
    RemoveMembers,
    Reconcile,
    /// A scheduled pull of a source (target = the source id).
    Pull,
    /// A connection test (`POST /admin/targets/{id}/test`).
    Test,
    /// An on-demand sync request (`POST /admin/sync`).
    Sync,
    /// Dead letters sent back to the queue.
    Redrive,
    /// A target or source defined, changed or removed through the admin API.
    Configure,
    /// An operator signed in to the console.
    SignIn,
    /// An operator signed out of the console.
    SignOut,
    /// An API token created (resource `Token` / its id; never the secret).
    CreateToken,
    /// An API token revoked.
    RevokeToken,
    /// An operator released a change the deprovision guard held.
    ReleaseHeld,
    /// An operator discarded a change the deprovision guard held.
    DiscardHeld,
}

/// How it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditStatus {
    /// Done on the target.
    Delivered,
    /// Nothing to do (out of scope, unchanged, operation disabled, echo).
    Skipped,
    /// Not applied: older than the version the target holds, or about a resource deleted
    /// in the hub since (`skipped_stale`).
    SkippedStale,
    /// Failed for now; will be retried.
    Retry,
    /// Failed (a test that did not pass, an error of the hub).
    Failed,
    /// Gave up: moved to the dead-letter queue.
    Dead,
    /// The target refused it (4xx): retrying will not help.
    Refused,
    /// An existing account on the target was linked instead of created (or, inbound, an
    /// existing hub resource linked to a source: adopted, or delivered to its site).
    Linked,
    /// Accepted for later processing (on-demand sync, redrive).
    Queued,
    /// Inbound: a source's link to a hub resource it did not create was removed; the
    /// resource is kept.
    Unlinked,
    /// Beyond the target's deprovision guard: not sent, waiting for an operator's
    /// approval (`GET /admin/targets/{id}/held`).
    Held,
}

macro_rules! parse_by_serde {
    ($t:ty) => {
        impl $t {
            /// From its snake_case name (`add_members`, `delivered`).
            pub fn parse(s: &str) -> Option<Self> {
                serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
            }
            pub fn as_str(&self) -> String {
                serde_json::to_value(self)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            }
        }
    };
}
parse_by_serde!(AuditOp);
parse_by_serde!(AuditStatus);

/// One audit record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339, UTC, milliseconds (set on record when empty).
    pub at: String,
    #[serde(default)]
    pub event_id: String,
    /// `User`, `Group`, or empty for target-level entries (tests).
    #[serde(default)]
    pub resource_type: String,
    #[serde(default)]
    pub resource_id: String,
    #[serde(default)]
    pub target: String,
    pub op: AuditOp,
    pub status: AuditStatus,
    /// A short human-readable reason (the target's message, the error). Never secrets.
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub latency_ms: u64,
    /// Who asked for it, for operations an operator starts through the admin API
    /// (`admin:<token name>`, `admin:static`); absent for the hub's own work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl AuditEntry {
    /// An entry stamped now; fill in the other fields.
    pub fn new(target: impl Into<String>, op: AuditOp, status: AuditStatus) -> Self {
        AuditEntry {
            at: format_at(Utc::now()),
            event_id: String::new(),
            resource_type: String::new(),
            resource_id: String::new(),
            target: target.into(),
            op,
            status,
            detail: String::new(),
            latency_ms: 0,
            actor: None,
        }
    }

    pub fn resource(mut self, resource_type: &str, resource_id: &str) -> Self {
        self.resource_type = resource_type.to_string();
        self.resource_id = resource_id.to_string();
        self
    }

    pub fn event(mut self, event_id: &str) -> Self {
        self.event_id = event_id.to_string();
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn latency_ms(mut self, ms: u64) -> Self {
        self.latency_ms = ms;
        self
    }

    /// Who asked for it (see [`AuditEntry::actor`]).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }
}

/// What to read. `Default` is the newest [`DEFAULT_LIMIT`] entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditQuery {
    pub target: Option<String>,
    /// A resource id (user or group).
    pub resource: Option<String>,
    pub op: Option<AuditOp>,
    pub status: Option<AuditStatus>,
    /// Only entries at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// 1 to [`MAX_LIMIT`]; 0 means [`DEFAULT_LIMIT`].
    pub limit: usize,
    /// A `next_cursor` from a previous page.
    pub cursor: Option<String>,
}

impl AuditQuery {
    fn matches(&self, e: &AuditEntry) -> bool {
        self.target.as_ref().is_none_or(|t| *t == e.target)
            && self.resource.as_ref().is_none_or(|r| *r == e.resource_id)
            && self.op.is_none_or(|o| o == e.op)
            && self.status.is_none_or(|s| s == e.status)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid cursor")]
    BadCursor,
    #[error("invalid audit entry: {0}")]
    Invalid(String),
}

/// Told of every entry the audit log is given, as it is written (see [`Audit::observe`]).
pub type AuditObserver = Arc<dyn Fn(&AuditEntry) + Send + Sync>;

/// The audit log on a store. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn Store>,
    retention_days: u32,
    /// Shared by every clone, so an observer set on the hub's audit log also sees the
    /// entries the delivery engine (which holds a clone) writes.
    observer: Arc<OnceLock<AuditObserver>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("retention_days", &self.retention_days)
            .finish_non_exhaustive()
    }
}

/// Audit timestamps: RFC 3339, UTC, milliseconds, `Z`.
pub fn format_at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn bucket_pk(day: NaiveDate) -> String {
    format!("{}{}", keyspace::AUDIT_DAY, day.format("%Y-%m-%d"))
}

fn target_pk(target: &str) -> String {
    format!("{}{target}", keyspace::AUDIT_TARGET)
}

fn resource_pk(resource: &str) -> String {
    format!("{}{resource}", keyspace::AUDIT_RESOURCE)
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Where a query stopped: the partition it was reading and the last entry examined.
#[derive(Serialize, Deserialize)]
struct Position {
    /// The partition key being read (a day bucket, or the index partition).
    b: String,
    /// `[index_sk, pk, sk]` of the last entry examined, `None` to start the partition.
    k: Option<(String, String, String)>,
}

fn encode_position(b: &str, k: Option<&Cursor>) -> String {
    let p = Position {
        b: b.to_string(),
        k: k.map(|c| (c.index_sk.clone(), c.pk.clone(), c.sk.clone())),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&p).unwrap_or_default())
}

fn decode_position(s: &str) -> Result<Position, AuditError> {
    if s.len() > 4096 {
        return Err(AuditError::BadCursor);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| AuditError::BadCursor)?;
    let p: Position = serde_json::from_slice(&raw).map_err(|_| AuditError::BadCursor)?;
    if let Some((isk, pk, sk)) = &p.k
        && (isk.len() > MAX_KEY_PART
            || pk.len() > MAX_KEY_PART
            || sk.len() > MAX_KEY_PART
            || !pk.starts_with(keyspace::AUDIT_DAY)
            || isk.is_empty()
            || sk.is_empty())
    {
        return Err(AuditError::BadCursor);
    }
    Ok(p)
}

/// How a walk over one partition ended.
enum Walk {
    /// The partition has nothing more.
    Exhausted,
    /// Reached entries older than `since`: nothing more anywhere older either.
    PastSince,
    /// Page full or budget spent: resume after this entry.
    Stopped(Cursor),
}

impl Audit {
    /// Retention from `PROVISYNC_AUDIT_RETENTION_DAYS` (default 90).
    pub fn new(store: Arc<dyn Store>) -> Self {
        let retention_days = std::env::var(RETENTION_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|d| (1..=3650).contains(d))
            .unwrap_or(DEFAULT_RETENTION_DAYS);
        Audit {
            store,
            retention_days,
            observer: Arc::new(OnceLock::new()),
        }
    }

    /// Sets the observer of this log and of every clone of it (once per log; `false` if
    /// one was set already). The edge uses it to turn delivery outcomes into metrics
    /// (`provisync_aws::metrics`) without the engine knowing about them. It is called as
    /// an entry is prepared for its write: an entry written with a delivery receipt whose
    /// transaction then fails is observed too (that event is retried, and observed again).
    pub fn observe(&self, observer: AuditObserver) -> bool {
        self.observer.set(observer).is_ok()
    }

    pub fn with_retention_days(mut self, days: u32) -> Self {
        self.retention_days = days.clamp(1, 3650);
        self
    }

    pub fn retention_days(&self) -> u32 {
        self.retention_days
    }

    /// Writes one entry (normalised: `at` in the canonical form, `detail` cut to 1 KB).
    pub async fn record(&self, entry: AuditEntry) -> Result<(), AuditError> {
        let write = self.write_for(entry)?;
        self.store.transact(vec![write]).await?;
        Ok(())
    }

    /// The store write of an entry, to commit together with the change it reports (the
    /// delivery engine writes it in the same transaction as its delivery receipt, so a
    /// crash can never leave a delivery without its audit entry).
    pub fn write_for(&self, mut entry: AuditEntry) -> Result<Write, AuditError> {
        let at = if entry.at.is_empty() {
            Utc::now()
        } else {
            DateTime::parse_from_rfc3339(&entry.at)
                .map_err(|_| AuditError::Invalid(format!("`at` is not RFC 3339: {}", entry.at)))?
                .with_timezone(&Utc)
        };
        entry.at = format_at(at);
        truncate(&mut entry.detail, MAX_DETAIL_BYTES);
        if entry.target.len() > MAX_KEY_PART || entry.resource_id.len() > MAX_KEY_PART {
            return Err(AuditError::Invalid("target or resource id too long".into()));
        }
        let sk = format!("{}#{}", entry.at, uuid::Uuid::new_v4().simple());
        let data = serde_json::to_vec(&entry).map_err(|e| AuditError::Invalid(e.to_string()))?;
        if let Some(observe) = self.observer.get() {
            observe(&entry);
        }
        let expires = at.timestamp() + i64::from(self.retention_days) * 86_400;
        let mut item = Item::new(bucket_pk(at.date_naive()), sk.clone(), data).with_expiry(expires);
        if !entry.target.is_empty() {
            item = item.with_gsi1(target_pk(&entry.target), sk.clone());
        }
        if !entry.resource_id.is_empty() {
            item = item.with_gsi2(resource_pk(&entry.resource_id), sk);
        }
        Ok(Write::put(item))
    }

    /// One page of entries, newest first, and the cursor of the next page (if any).
    pub async fn query(
        &self,
        q: &AuditQuery,
    ) -> Result<(Vec<AuditEntry>, Option<String>), AuditError> {
        let limit = if q.limit == 0 {
            DEFAULT_LIMIT
        } else {
            q.limit.min(MAX_LIMIT)
        };
        let since = q.since.map(format_at);
        let pos = q.cursor.as_deref().map(decode_position).transpose()?;
        let mut out = Vec::new();
        let mut budget = READ_BUDGET;
        let indexed = match (&q.resource, &q.target) {
            (Some(r), _) => Some((Index::Gsi2, resource_pk(r))),
            (None, Some(t)) => Some((Index::Gsi1, target_pk(t))),
            (None, None) => None,
        };
        if let Some((index, pk)) = indexed {
            let after = match pos {
                Some(p) if p.b == pk => p.k,
                Some(_) => return Err(AuditError::BadCursor),
                None => None,
            };
            let walk = self
                .walk(
                    index,
                    &pk,
                    after,
                    since.as_deref(),
                    q,
                    limit,
                    &mut out,
                    &mut budget,
                )
                .await?;
            let next = match walk {
                Walk::Stopped(c) => Some(encode_position(&pk, Some(&c))),
                Walk::Exhausted | Walk::PastSince => None,
            };
            return Ok((out, next));
        }
        // Day partitions, newest first: from tomorrow (clock skew) down to `since` or the
        // retention horizon.
        let today = Utc::now().date_naive();
        let floor = match q.since {
            Some(s) => s.date_naive(),
            None => today - ChronoDuration::days(i64::from(self.retention_days) + 1),
        };
        let (mut day, mut after) = match pos {
            Some(p) => {
                let d =
                    p.b.strip_prefix(keyspace::AUDIT_DAY)
                        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                        .ok_or(AuditError::BadCursor)?;
                (d, p.k)
            }
            None => (today + ChronoDuration::days(1), None),
        };
        let mut buckets = BUCKET_BUDGET;
        loop {
            if day < floor {
                return Ok((out, None));
            }
            let pk = bucket_pk(day);
            let walk = self
                .walk(
                    Index::Primary,
                    &pk,
                    after.take(),
                    since.as_deref(),
                    q,
                    limit,
                    &mut out,
                    &mut budget,
                )
                .await?;
            match walk {
                Walk::Stopped(c) => return Ok((out, Some(encode_position(&pk, Some(&c))))),
                Walk::PastSince => return Ok((out, None)),
                Walk::Exhausted => {}
            }
            let Some(prev) = day.pred_opt() else {
                return Ok((out, None));
            };
            day = prev;
            buckets -= 1;
            if buckets == 0 {
                return Ok((out, Some(encode_position(&bucket_pk(day), None))));
            }
        }
    }

    /// Reads one partition newest first from `after`, collecting matching entries.
    #[allow(clippy::too_many_arguments)]
    async fn walk(
        &self,
        index: Index,
        pk: &str,
        after: Option<(String, String, String)>,
        since: Option<&str>,
        q: &AuditQuery,
        limit: usize,
        out: &mut Vec<AuditEntry>,
        budget: &mut usize,
    ) -> Result<Walk, AuditError> {
        let mut after = after.map(|(index_sk, pk, sk)| Cursor { index_sk, pk, sk });
        let page_size = (limit - out.len()).clamp(25, 500);
        loop {
            let page = self
                .store
                .query(
                    &Query::new(index, pk)
                        .descending()
                        .limit(page_size)
                        .after(after.take()),
                )
                .await?;
            for item in &page.items {
                let index_sk = match index {
                    Index::Primary => Some(&item.sk),
                    Index::Gsi1 => item.gsi1.as_ref().map(|(_, s)| s),
                    Index::Gsi2 => item.gsi2.as_ref().map(|(_, s)| s),
                }
                .cloned()
                .unwrap_or_default();
                if since.is_some_and(|s| index_sk.as_str() < s) {
                    return Ok(Walk::PastSince);
                }
                *budget = budget.saturating_sub(1);
                let position = Cursor {
                    index_sk,
                    pk: item.pk.clone(),
                    sk: item.sk.clone(),
                };
                match serde_json::from_slice::<AuditEntry>(&item.data) {
                    Ok(e) if q.matches(&e) => out.push(e),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(pk = %item.pk, sk = %item.sk, error = %e, "unreadable audit entry skipped");
                    }
                }
                if out.len() >= limit || *budget == 0 {
                    return Ok(Walk::Stopped(position));
                }
            }
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(Walk::Exhausted),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    fn at(s: &str) -> String {
        s.to_string()
    }

    fn entry(t: &str, target: &str, res: &str, op: AuditOp, status: AuditStatus) -> AuditEntry {
        AuditEntry {
            at: at(t),
            ..AuditEntry::new(target, op, status).resource("User", res)
        }
    }

    async fn seeded() -> (Arc<dyn Store>, Audit, Vec<String>) {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let audit = Audit::new(store.clone()).with_retention_days(30);
        // 30 entries over three days, newest last; two targets, three users.
        let base = Utc::now() - ChronoDuration::days(2);
        let mut ats = Vec::new();
        for i in 0..30i64 {
            let t = format_at(base + ChronoDuration::hours(i * 2));
            let target = if i % 2 == 0 { "crm" } else { "wiki" };
            let res = format!("u{}", i % 3);
            let status = if i % 5 == 0 {
                AuditStatus::Failed
            } else {
                AuditStatus::Delivered
            };
            let op = if i % 3 == 0 {
                AuditOp::Create
            } else {
                AuditOp::Update
            };
            audit
                .record(entry(&t, target, &res, op, status).event(&format!("e{i}")))
                .await
                .unwrap();
            ats.push(t);
        }
        (store, audit, ats)
    }

    fn events(v: &[AuditEntry]) -> Vec<String> {
        v.iter().map(|e| e.event_id.clone()).collect()
    }

    #[tokio::test]
    async fn newest_first_with_pagination() {
        let (_, audit, _) = seeded().await;
        let (all, next) = audit.query(&AuditQuery::default()).await.unwrap();
        assert_eq!(all.len(), 30);
        assert_eq!(next, None);
        assert_eq!(all[0].event_id, "e29");
        assert_eq!(all[29].event_id, "e0");
        assert!(all.windows(2).all(|w| w[0].at >= w[1].at));
        // Pages of 7 across day partitions give the same sequence.
        let mut paged = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let (page, next) = audit
                .query(&AuditQuery {
                    limit: 7,
                    cursor: cursor.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(page.len() <= 7);
            paged.extend(page);
            pages += 1;
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(events(&paged), events(&all));
        assert!(pages >= 5);
    }

    #[tokio::test]
    async fn filters_by_index_and_in_code() {
        let (_, audit, ats) = seeded().await;
        let q = |f: AuditQuery| {
            let audit = audit.clone();
            async move { audit.query(&f).await.unwrap().0 }
        };
        let crm = q(AuditQuery {
            target: Some("crm".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(crm.len(), 15);
        assert!(crm.iter().all(|e| e.target == "crm"));
        assert_eq!(crm[0].event_id, "e28");

        let u1 = q(AuditQuery {
            resource: Some("u1".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(u1.len(), 10);
        assert!(u1.iter().all(|e| e.resource_id == "u1"));

        let both = q(AuditQuery {
            resource: Some("u1".into()),
            target: Some("wiki".into()),
            status: Some(AuditStatus::Failed),
            ..Default::default()
        })
        .await;
        // i % 3 == 1, odd, i % 5 == 0: i = 25.
        assert_eq!(events(&both), ["e25"]);

        let failed_creates = q(AuditQuery {
            op: Some(AuditOp::Create),
            status: Some(AuditStatus::Failed),
            ..Default::default()
        })
        .await;
        assert_eq!(events(&failed_creates), ["e15", "e0"]);

        let since = DateTime::parse_from_rfc3339(&ats[20])
            .unwrap()
            .with_timezone(&Utc);
        let recent = q(AuditQuery {
            since: Some(since),
            ..Default::default()
        })
        .await;
        assert_eq!(recent.len(), 10);
        assert_eq!(recent.last().unwrap().event_id, "e20");
        let recent_crm = q(AuditQuery {
            since: Some(since),
            target: Some("crm".into()),
            limit: 2,
            ..Default::default()
        })
        .await;
        assert_eq!(events(&recent_crm), ["e28", "e26"]);

        assert!(
            q(AuditQuery {
                target: Some("nope".into()),
                ..Default::default()
            })
            .await
            .is_empty()
        );
    }

    #[tokio::test]
    async fn filtered_pages_by_target() {
        let (_, audit, _) = seeded().await;
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = audit
                .query(&AuditQuery {
                    target: Some("wiki".into()),
                    status: Some(AuditStatus::Delivered),
                    limit: 4,
                    cursor,
                    ..Default::default()
                })
                .await
                .unwrap();
            seen.extend(page);
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        // Odd i not divisible by 5: 15 odd minus 5, 15, 25.
        assert_eq!(seen.len(), 12);
        assert!(seen.windows(2).all(|w| w[0].at > w[1].at));
    }

    #[tokio::test]
    async fn bad_cursors_are_rejected() {
        let (_, audit, _) = seeded().await;
        for c in [
            "nope!",
            "e30",
            &URL_SAFE_NO_PAD.encode(b"{\"b\":\"X\",\"k\":null}"),
        ] {
            let r = audit
                .query(&AuditQuery {
                    cursor: Some(c.to_string()),
                    ..Default::default()
                })
                .await;
            assert!(matches!(r, Err(AuditError::BadCursor)), "{c}");
        }
        // A cursor of one index does not resume another.
        let (_, next) = audit
            .query(&AuditQuery {
                target: Some("crm".into()),
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        let r = audit
            .query(&AuditQuery {
                target: Some("wiki".into()),
                cursor: next,
                ..Default::default()
            })
            .await;
        assert!(matches!(r, Err(AuditError::BadCursor)));
    }

    #[tokio::test]
    async fn ttl_detail_and_timestamps() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let audit = Audit::new(store.clone()).with_retention_days(7);
        let long = "é".repeat(2000);
        let mut e = AuditEntry::new("crm", AuditOp::Test, AuditStatus::Delivered)
            .detail(long)
            .latency_ms(12);
        e.at = "2030-05-01T10:00:00+02:00".into();
        audit.record(e).await.unwrap();
        let page = store
            .query(&Query::new(Index::Primary, "AUDIT#2030-05-01"))
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        let item = &page.items[0];
        let at = DateTime::parse_from_rfc3339("2030-05-01T08:00:00Z")
            .unwrap()
            .timestamp();
        assert_eq!(item.expires_at, Some(at + 7 * 86_400));
        assert!(item.sk.starts_with("2030-05-01T08:00:00.000Z#"));
        assert_eq!(item.gsi1.as_ref().unwrap().0, "AUDIT#T#crm");
        assert_eq!(item.gsi2, None, "no resource, not in the resource index");
        let stored: AuditEntry = serde_json::from_slice(&item.data).unwrap();
        assert!(stored.detail.len() <= MAX_DETAIL_BYTES);
        assert!(stored.detail.len() > MAX_DETAIL_BYTES - 2);
        assert_eq!(stored.at, "2030-05-01T08:00:00.000Z");
        // Expired entries are gone from queries.
        let old = Audit::new(store.clone()).with_retention_days(1);
        let mut e = AuditEntry::new("old", AuditOp::Test, AuditStatus::Failed);
        e.at = format_at(Utc::now() - ChronoDuration::days(3));
        old.record(e).await.unwrap();
        let (found, _) = old
            .query(&AuditQuery {
                target: Some("old".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(found.is_empty());
        // Bad timestamps are refused.
        let mut e = AuditEntry::new("crm", AuditOp::Test, AuditStatus::Failed);
        e.at = "yesterday".into();
        assert!(matches!(audit.record(e).await, Err(AuditError::Invalid(_))));
    }

    #[test]
    fn enum_names() {
        assert_eq!(AuditOp::parse("add_members"), Some(AuditOp::AddMembers));
        assert_eq!(AuditOp::AddMembers.as_str(), "add_members");
        assert_eq!(AuditStatus::parse("dead"), Some(AuditStatus::Dead));
        assert_eq!(AuditStatus::parse("Dead"), None);
        assert_eq!(AuditStatus::Refused.as_str(), "refused");
    }
}
