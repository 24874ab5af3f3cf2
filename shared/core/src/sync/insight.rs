//! What the operator console's overview shows, read from the audit log: operations over
//! time by outcome (a chart for the last 24 hours and 30 days) and each target's or
//! source's health (last success, last error, consecutive failures, changes waiting to be
//! retried, dead letters, the last reconcile).
//!
//! ## Operations over time
//!
//! An hour is counted by reading its audit entries (the day partition `AUDIT#{day}` with
//! the hour's sort-key prefix); a UTC day is the sum of its hours. A bucket that ended
//! more than [`SETTLE`] ago cannot change any more (entries are stamped when the attempt
//! starts and written within seconds), so its counts are kept at `STATS#H#{yyyy-mm-ddThh}`
//! / `STATS#D#{yyyy-mm-dd}` and never counted again: a chart reads at most 30 small items
//! plus the current hours. One call reads at most [`READ_BUDGET`] entries; buckets it
//! could not count come back `counted: false`, and the next call goes on where it stopped,
//! since every settled hour it counted is kept.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::audit::{Audit, AuditEntry, AuditError, AuditOp, AuditQuery, AuditStatus};
use crate::store::{Index, Item, Key, Query, Store, Write, keyspace};

/// How long after its end a bucket is final.
pub const SETTLE: Duration = Duration::minutes(10);
/// Audit entries one call reads at most.
pub const READ_BUDGET: usize = 50_000;
/// Audit entries of one target examined for its health.
pub const HEALTH_WINDOW: usize = 200;

/// How an operation on a target ended, as the chart shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Deactivated,
    Deleted,
    Failed,
    Refused,
}

/// Counts of one bucket, by [`Outcome`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    pub created: u64,
    pub updated: u64,
    pub deactivated: u64,
    pub deleted: u64,
    pub failed: u64,
    pub refused: u64,
}

impl OutcomeCounts {
    fn merge(&mut self, o: &OutcomeCounts) {
        self.created += o.created;
        self.updated += o.updated;
        self.deactivated += o.deactivated;
        self.deleted += o.deleted;
        self.failed += o.failed;
        self.refused += o.refused;
    }

    fn add(&mut self, o: Outcome) {
        let n = match o {
            Outcome::Created => &mut self.created,
            Outcome::Updated => &mut self.updated,
            Outcome::Deactivated => &mut self.deactivated,
            Outcome::Deleted => &mut self.deleted,
            Outcome::Failed => &mut self.failed,
            Outcome::Refused => &mut self.refused,
        };
        *n += 1;
    }
}

/// The outcome an audit entry counts as, if it is an operation on a target at all (tests,
/// syncs asked for, reconcile runs, pulls and skipped changes are not).
pub fn outcome_of(e: &AuditEntry) -> Option<Outcome> {
    let operation = matches!(
        e.op,
        AuditOp::Create
            | AuditOp::Update
            | AuditOp::Password
            | AuditOp::Deactivate
            | AuditOp::Delete
            | AuditOp::AddMembers
            | AuditOp::RemoveMembers
    );
    if !operation {
        return None;
    }
    match e.status {
        AuditStatus::Delivered | AuditStatus::Linked => Some(match e.op {
            AuditOp::Create => Outcome::Created,
            AuditOp::Deactivate => Outcome::Deactivated,
            AuditOp::Delete => Outcome::Deleted,
            _ => Outcome::Updated,
        }),
        AuditStatus::Failed | AuditStatus::Dead => Some(Outcome::Failed),
        AuditStatus::Refused => Some(Outcome::Refused),
        _ => None,
    }
}

/// The two windows of the chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last 24 hours, by hour.
    Day,
    /// The last 30 days, by UTC day.
    Month,
}

impl Window {
    /// `24h` or `30d`.
    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "24h" => Some(Window::Day),
            "30d" => Some(Window::Month),
            _ => None,
        }
    }

    fn step(self) -> Duration {
        match self {
            Window::Day => Duration::hours(1),
            Window::Month => Duration::days(1),
        }
    }

    fn len(self) -> i32 {
        match self {
            Window::Day => 24,
            Window::Month => 30,
        }
    }
}

/// One bar of the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub counts: OutcomeCounts,
    /// False when the read budget ran out before this bucket was counted.
    pub counted: bool,
}

/// Operations over time, oldest bucket first.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub window: Window,
    pub buckets: Vec<Bucket>,
}

/// Counts operations over time from the audit log.
#[derive(Clone)]
pub struct OperationStats {
    store: Arc<dyn Store>,
    retention_days: u32,
}

fn stats_key(window: Window, start: DateTime<Utc>) -> Key {
    let pk = match window {
        Window::Day => format!("{}H#{}", keyspace::STATS, start.format("%Y-%m-%dT%H")),
        Window::Month => format!("{}D#{}", keyspace::STATS, start.format("%Y-%m-%d")),
    };
    Key::new(pk, "STATS")
}

impl OperationStats {
    pub fn new(store: Arc<dyn Store>, retention_days: u32) -> Self {
        OperationStats {
            store,
            retention_days,
        }
    }

    /// The series of `window` ending with the bucket holding `now`.
    pub async fn series(&self, window: Window, now: DateTime<Utc>) -> Result<Series, AuditError> {
        let step = window.step();
        let current = match window {
            Window::Day => now.duration_trunc(step).unwrap_or(now),
            Window::Month => now
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .map(|d| d.and_utc())
                .unwrap_or(now),
        };
        let mut budget = READ_BUDGET;
        let mut buckets = Vec::with_capacity(window.len() as usize);
        // Newest first, so a spent budget leaves the oldest buckets uncounted.
        for i in 0..window.len() {
            let start = current - step * i;
            let counts = match window {
                Window::Day => self.hours(&[start], now, &mut budget).await?,
                Window::Month => self.day(start, now, &mut budget).await?,
            };
            buckets.push(Bucket {
                start,
                counts: counts.unwrap_or_default(),
                counted: counts.is_some(),
            });
        }
        buckets.reverse();
        Ok(Series { window, buckets })
    }

    /// A day: kept once settled, else the sum of its hours (so a day's count progresses
    /// hour by hour across calls, whatever the budget).
    async fn day(
        &self,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
        budget: &mut usize,
    ) -> Result<Option<OutcomeCounts>, AuditError> {
        let key = stats_key(Window::Month, start);
        let settled = start + Duration::days(1) + SETTLE <= now;
        if settled
            && let Some(item) = self.store.get(&key).await?
            && let Ok(counts) = serde_json::from_slice::<OutcomeCounts>(&item.data)
        {
            return Ok(Some(counts));
        }
        let hours: Vec<DateTime<Utc>> = (0..24)
            .map(|h| start + Duration::hours(h))
            .filter(|h| *h <= now)
            .collect();
        let counts = self.hours(&hours, now, budget).await?;
        if let (Some(c), true) = (&counts, settled) {
            self.keep(key, start, c).await;
        }
        Ok(counts)
    }

    /// The sum of these hours: each from its kept counts, else counted (and kept once
    /// settled); `None` when the budget ran out before all were counted.
    async fn hours(
        &self,
        starts: &[DateTime<Utc>],
        now: DateTime<Utc>,
        budget: &mut usize,
    ) -> Result<Option<OutcomeCounts>, AuditError> {
        let settled = |start: &DateTime<Utc>| *start + Duration::hours(1) + SETTLE <= now;
        let keys: Vec<Key> = starts
            .iter()
            .filter(|s| settled(s))
            .map(|s| stats_key(Window::Day, *s))
            .collect();
        let cached: Vec<Item> = if keys.is_empty() {
            Vec::new()
        } else {
            self.store.get_many(&keys).await?
        };
        let mut total = OutcomeCounts::default();
        let mut complete = true;
        for start in starts {
            let key = stats_key(Window::Day, *start);
            if let Some(item) = cached.iter().find(|i| i.pk == key.pk)
                && let Ok(counts) = serde_json::from_slice::<OutcomeCounts>(&item.data)
            {
                total.merge(&counts);
                continue;
            }
            match self.count_hour(*start, budget).await? {
                Some(counts) => {
                    if settled(start) {
                        self.keep(key, *start, &counts).await;
                    }
                    total.merge(&counts);
                }
                None => complete = false,
            }
        }
        Ok(complete.then_some(total))
    }

    /// Counts one hour's entries (the day partition, the hour's sort-key prefix); `None`
    /// when the budget runs out first.
    async fn count_hour(
        &self,
        start: DateTime<Utc>,
        budget: &mut usize,
    ) -> Result<Option<OutcomeCounts>, AuditError> {
        if *budget == 0 {
            return Ok(None);
        }
        let day: NaiveDate = start.date_naive();
        let pk = format!("{}{}", keyspace::AUDIT_DAY, day.format("%Y-%m-%d"));
        let query = Query::new(Index::Primary, pk)
            .limit(1000)
            .prefix(start.format("%Y-%m-%dT%H").to_string());
        let mut counts = OutcomeCounts::default();
        let mut after = None;
        loop {
            let page = self.store.query(&query.clone().after(after)).await?;
            for item in &page.items {
                if let Ok(e) = serde_json::from_slice::<AuditEntry>(&item.data)
                    && let Some(o) = outcome_of(&e)
                {
                    counts.add(o);
                }
            }
            *budget = budget.saturating_sub(page.items.len());
            match page.next {
                Some(_) if *budget == 0 => return Ok(None),
                Some(c) => after = Some(c),
                None => return Ok(Some(counts)),
            }
        }
    }

    /// Keeps a settled bucket's counts (a failure only costs a recount next time).
    async fn keep(&self, key: Key, start: DateTime<Utc>, counts: &OutcomeCounts) {
        let Ok(data) = serde_json::to_vec(counts) else {
            return;
        };
        let expires = start.timestamp() + i64::from(self.retention_days) * 86_400;
        let item = Item::new(key.pk, key.sk, data).with_expiry(expires);
        if let Err(e) = self.store.transact(vec![Write::put(item)]).await {
            tracing::warn!(error = %e, "operation counts not kept");
        }
    }
}

/// How a target (or a source: its pulls and webhooks) has been doing, from its newest
/// [`HEALTH_WINDOW`] audit entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// When the newest successful operation, test or pull was.
    pub last_success: Option<String>,
    /// The newest failure or refusal: when, and why.
    pub last_error: Option<(String, String)>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Changes whose newest attempt failed and will be retried.
    pub retrying: usize,
    /// Changes given up on for this target that are still in the dead-letter queue.
    pub dead_letters: usize,
    /// The newest reconcile run's entry (its detail holds the counts).
    pub last_reconcile: Option<AuditEntry>,
}

/// When the newest signed webhook from `source` was accepted (the audit entry of what it
/// did: `inbound …`; refusals, bad signatures included, do not count), among its newest
/// [`HEALTH_WINDOW`] audit entries.
pub async fn last_signed_delivery(
    audit: &Audit,
    source: &str,
) -> Result<Option<String>, AuditError> {
    Ok(newest_entries(audit, source)
        .await?
        .into_iter()
        .find(|e| e.status != AuditStatus::Refused && e.detail.starts_with("inbound "))
        .map(|e| e.at))
}

/// Reads one target's health. `dead_ids`: the event ids now in the dead-letter queue.
pub async fn health(
    audit: &Audit,
    target: &str,
    dead_ids: &HashSet<String>,
) -> Result<Health, AuditError> {
    Ok(health_of(&newest_entries(audit, target).await?, dead_ids))
}

/// The newest [`HEALTH_WINDOW`] audit entries of a target or source, newest first.
async fn newest_entries(audit: &Audit, target: &str) -> Result<Vec<AuditEntry>, AuditError> {
    let (entries, _) = audit
        .query(&AuditQuery {
            target: Some(target.to_string()),
            limit: HEALTH_WINDOW,
            ..AuditQuery::default()
        })
        .await?;
    Ok(entries)
}

/// [`health`] over entries already read, newest first.
pub fn health_of(entries: &[AuditEntry], dead_ids: &HashSet<String>) -> Health {
    let mut h = Health::default();
    let mut seen_events: HashSet<&str> = HashSet::new();
    let mut dead_events: HashSet<&str> = HashSet::new();
    let mut failing = true;
    for e in entries {
        // What operators did (definitions saved, sign-ins, syncs asked for, redrives)
        // says nothing about how the target is doing.
        if matches!(
            e.op,
            AuditOp::Configure
                | AuditOp::SignIn
                | AuditOp::SignOut
                | AuditOp::Sync
                | AuditOp::Redrive
                | AuditOp::ReleaseHeld
                | AuditOp::DiscardHeld
        ) {
            continue;
        }
        if e.op == AuditOp::Reconcile && h.last_reconcile.is_none() {
            h.last_reconcile = Some(e.clone());
        }
        let success = matches!(e.status, AuditStatus::Delivered | AuditStatus::Linked);
        let failure = matches!(
            e.status,
            AuditStatus::Failed | AuditStatus::Dead | AuditStatus::Refused | AuditStatus::Retry
        );
        if success {
            failing = false;
            if h.last_success.is_none() {
                h.last_success = Some(e.at.clone());
            }
        }
        if failure {
            if failing {
                h.consecutive_failures += 1;
            }
            if h.last_error.is_none() {
                h.last_error = Some((e.at.clone(), e.detail.clone()));
            }
        }
        if !e.event_id.is_empty() && seen_events.insert(e.event_id.as_str()) {
            // The newest entry of each change says where it stands.
            if e.status == AuditStatus::Retry {
                h.retrying += 1;
            }
            if e.status == AuditStatus::Dead && dead_ids.contains(&e.event_id) {
                dead_events.insert(e.event_id.as_str());
            }
        }
    }
    h.dead_letters = dead_events.len();
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::sync::audit::format_at;

    fn entry(t: &str, op: AuditOp, status: AuditStatus, when: &str) -> AuditEntry {
        let mut e = AuditEntry::new(t, op, status);
        e.at = when.to_string();
        e
    }

    #[tokio::test]
    async fn counts_by_outcome_and_keeps_settled_buckets() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let audit = Audit::new(store.clone());
        // Two days ago (within the audit's retention), 12:30.
        let noon = (Utc::now() - Duration::days(2))
            .date_naive()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc();
        let now = noon + Duration::minutes(30);
        let t = |minutes: i64| format_at(noon + Duration::minutes(minutes));
        for (op, status, when) in [
            (AuditOp::Create, AuditStatus::Delivered, t(5)),
            (AuditOp::Create, AuditStatus::Linked, t(-55)),
            (AuditOp::Update, AuditStatus::Delivered, t(-54)),
            (AuditOp::Deactivate, AuditStatus::Delivered, t(-53)),
            (AuditOp::Delete, AuditStatus::Refused, t(-52)),
            (AuditOp::Update, AuditStatus::Dead, t(-24 * 60 - 52)),
            // Not operations: a test, a skipped change, a retry.
            (AuditOp::Test, AuditStatus::Failed, t(-51)),
            (AuditOp::Update, AuditStatus::Skipped, t(-51)),
            (AuditOp::Update, AuditStatus::Retry, t(-51)),
        ] {
            audit.record(entry("t1", op, status, &when)).await.unwrap();
        }
        let stats = OperationStats::new(store.clone(), 90);
        let day = stats.series(Window::Day, now).await.unwrap();
        assert_eq!(day.buckets.len(), 24);
        assert!(day.buckets.iter().all(|b| b.counted));
        let last = &day.buckets[23];
        assert_eq!(last.start, noon);
        assert_eq!(last.counts.created, 1);
        let prev = &day.buckets[22].counts;
        assert_eq!(
            (
                prev.created,
                prev.updated,
                prev.deactivated,
                prev.refused,
                prev.failed
            ),
            (1, 1, 1, 1, 0)
        );
        let month = stats.series(Window::Month, now).await.unwrap();
        assert_eq!(month.buckets.len(), 30);
        assert_eq!(month.buckets[29].counts.created, 2);
        assert_eq!(month.buckets[28].counts.failed, 1);
        // The settled hour is kept: an entry written late into it is not counted again;
        // the current (unsettled) hour is counted afresh.
        for when in [t(-30), t(10)] {
            audit
                .record(entry("t1", AuditOp::Create, AuditStatus::Delivered, &when))
                .await
                .unwrap();
        }
        let again = stats.series(Window::Day, now).await.unwrap();
        assert_eq!(again.buckets[22].counts.created, 1);
        assert_eq!(again.buckets[23].counts.created, 2);
    }

    #[test]
    fn health_from_entries() {
        let mut entries = vec![
            entry(
                "t",
                AuditOp::Configure,
                AuditStatus::Delivered,
                "2026-03-10T12:06:00Z",
            ),
            entry(
                "t",
                AuditOp::Update,
                AuditStatus::Retry,
                "2026-03-10T12:05:00Z",
            ),
            entry(
                "t",
                AuditOp::Create,
                AuditStatus::Dead,
                "2026-03-10T12:04:00Z",
            ),
            entry(
                "t",
                AuditOp::Reconcile,
                AuditStatus::Delivered,
                "2026-03-10T12:03:00Z",
            ),
            entry(
                "t",
                AuditOp::Update,
                AuditStatus::Retry,
                "2026-03-10T12:02:00Z",
            ),
            entry(
                "t",
                AuditOp::Create,
                AuditStatus::Delivered,
                "2026-03-10T12:01:00Z",
            ),
        ];
        entries[1].event_id = "e1".into();
        entries[2].event_id = "e2".into();
        entries[4].event_id = "e1".into();
        entries[2].detail = "boom".into();
        let dead: HashSet<String> = ["e2".to_string()].into();
        let h = health_of(&entries, &dead);
        assert_eq!(h.consecutive_failures, 2);
        assert_eq!(h.last_success.as_deref(), Some("2026-03-10T12:03:00Z"));
        assert_eq!(
            h.last_error,
            Some(("2026-03-10T12:05:00Z".into(), String::new()))
        );
        assert_eq!(h.retrying, 1);
        assert_eq!(h.dead_letters, 1);
        assert!(h.last_reconcile.is_some());
    }
}
