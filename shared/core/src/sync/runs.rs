//! Runs: work the hub does on an operator's request or on its schedule that *queues*
//! change events for one target — a reconcile, an on-demand sync — and must report what
//! the target answered, not what was queued.
//!
//! Each event of a run carries the run's id ([`ChangeEvent::run`]). The delivery engine
//! records its outcome on the run's target (delivered, linked, skipped, refused, retrying,
//! dead) in the same transaction as the audit entry it writes ([`outcome_write`]). The run
//! knows how many events it sent; it is **settled** when every one has a final outcome.
//! A run waits for that within its time budget ([`Runs::wait`]); what is still unknown
//! then is reported as queued, and the schedule settles the run later
//! ([`Runs::settle_open`]), writing the outcome to the audit log.
//!
//! A delivery that did not reach all of a group's members in its time leaves them to
//! follow-up events ([`ChangeEvent::follow_up_of`], `sync::member_work`), one batch per
//! delivery, which carry the run too. The outcome of the event that left them records
//! the batch and its size (a constant-size item, however many it left), and counts only
//! the members it reached; the run is not settled until each follow-up of a recorded batch
//! has an outcome of its own ([`FollowUps`]), so a report never calls a big group's
//! memberships done while some are still queued. A batch kept by an attempt whose receipt
//! then failed is recorded by no outcome and not counted (the retry leaves its own).
//!
//! | record  | pk          | sk                        | gsi1 (pk / sk)                          | ttl    |
//! |---------|-------------|---------------------------|-----------------------------------------|--------|
//! | run     | `RUN#{id}`  | `RUN`                     | `RUNS#OPEN` / `{started}#{id}` until settled | 7 days |
//! | outcome | `RUN#{id}`  | `EV#{event id}#{target}`  |                                         | 7 days |
//!
//! Reading a run's outcomes is one query of its partition, so a wait polls less often
//! the more events it waits for (one millisecond of interval per event, at least).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::audit::{Audit, AuditEntry, AuditOp, AuditStatus};
use super::link::RECEIPT_TTL_SECS;
use crate::event::ChangeEvent;
use crate::store::{Index, Item, Key, Query, Store, StoreError, Write, keyspace, now_epoch};
use provisync_scim::ResourceKind;

/// How long a run and its outcomes are kept: as long as delivery receipts, longer than
/// any redelivery.
pub const RUN_TTL_SECS: i64 = RECEIPT_TTL_SECS;
/// Problems (refusals, failures) a report names at most; the counts have them all.
pub const MAX_PROBLEMS: usize = 20;
/// Open runs the schedule settles per cycle at most.
const SETTLE_PER_CYCLE: usize = 50;

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A reconcile of one target (scheduled, or `POST /admin/sync` with `reconcile`).
    Reconcile,
    /// An on-demand sync of users to one target (`POST /admin/sync`).
    Sync,
}

impl RunKind {
    fn audit_op(self) -> AuditOp {
        match self {
            RunKind::Reconcile => AuditOp::Reconcile,
            RunKind::Sync => AuditOp::Sync,
        }
    }
}

/// Change events a run sent, by resource type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sent {
    pub users: u64,
    pub groups: u64,
}

/// A run as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub kind: RunKind,
    pub target: String,
    /// RFC 3339.
    pub started_at: String,
    pub sent: Sent,
    /// Every event of the run is sent (a reconcile suspended mid-run is not).
    pub finished: bool,
    /// Who asked (`admin:<token name>`), for runs an operator started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl RunRecord {
    /// A new run, started now.
    pub fn new(id: &str, kind: RunKind, target: &str) -> Self {
        RunRecord {
            id: id.to_string(),
            kind,
            target: target.to_string(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            sent: Sent::default(),
            finished: false,
            actor: None,
        }
    }

    /// A fresh run id (UUIDv7, hex: ordered by time).
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().simple().to_string()
    }
}

/// One event's outcome on the run's target, as the delivery engine recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Outcome {
    resource_type: String,
    resource_id: String,
    /// `userName` / `displayName`, when the event carried the resource.
    #[serde(default)]
    label: String,
    op: AuditOp,
    status: AuditStatus,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    members_added: u64,
    #[serde(default)]
    members_removed: u64,
    /// The batch of follow-ups this event belongs to, if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    follow_up_of: Option<String>,
    /// The batch of follow-up events this delivery left, and how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left: Option<(String, u64)>,
}

/// A change the target refused, or that failed: named in reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `User` or `Group`.
    pub resource_type: String,
    /// The hub id (or the target's id, for an orphan).
    pub resource_id: String,
    /// `userName` / `displayName`, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What was attempted (`create`, `update`, …).
    pub op: AuditOp,
    /// `refused`, `dead`, `failed`, `retry`.
    pub status: AuditStatus,
    /// The target's or the hub's words.
    pub detail: String,
}

/// The outcomes of one resource type so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindTally {
    /// The target answered success.
    pub created: u64,
    pub updated: u64,
    pub deactivated: u64,
    pub deleted: u64,
    /// The engine found nothing to do there (operation not enabled, out of scope, …).
    pub skipped: u64,
    /// The target refused (final).
    pub refused: u64,
    /// Gave up (dead-lettered after its retries) or failed in the hub.
    pub failed: u64,
    /// Failed for now; the engine retries (not final).
    pub retrying: u64,
    /// Held by the target's deprovision guard for an operator (final for the run).
    #[serde(default)]
    pub held: u64,
    /// Members of delivered group changes.
    pub members_added: u64,
    pub members_removed: u64,
}

impl KindTally {
    /// Events with a final outcome.
    pub fn known(&self) -> u64 {
        self.created
            + self.updated
            + self.deactivated
            + self.deleted
            + self.skipped
            + self.refused
            + self.failed
            + self.held
    }

    fn add(&mut self, o: &Outcome) {
        match o.status {
            // Linked: an account that existed was matched and brought up to date.
            AuditStatus::Delivered | AuditStatus::Linked => match o.op {
                AuditOp::Create if o.status == AuditStatus::Delivered => self.created += 1,
                AuditOp::Deactivate => self.deactivated += 1,
                AuditOp::Delete => self.deleted += 1,
                _ => self.updated += 1,
            },
            // Stale: a newer version of it reached (or will reach) the target instead.
            AuditStatus::Skipped | AuditStatus::SkippedStale | AuditStatus::Unlinked => {
                self.skipped += 1
            }
            AuditStatus::Refused => self.refused += 1,
            AuditStatus::Dead | AuditStatus::Failed => self.failed += 1,
            AuditStatus::Retry | AuditStatus::Queued => self.retrying += 1,
            AuditStatus::Held => self.held += 1,
        }
        if matches!(o.status, AuditStatus::Delivered | AuditStatus::Linked) {
            self.members_added += o.members_added;
            self.members_removed += o.members_removed;
        }
    }
}

/// The follow-up events of a run: members its deliveries did not reach in their time,
/// sent on in events of their own. Counted apart from the run's changes (they are parts
/// of them); their members count in the groups' `members_added` / `members_removed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FollowUps {
    /// Listed by the outcomes of the events that left them.
    pub sent: u64,
    pub delivered: u64,
    /// Nothing left to do on the target (the members went another way, the target was
    /// removed, …).
    pub skipped: u64,
    pub held: u64,
    pub refused: u64,
    pub failed: u64,
}

impl FollowUps {
    /// Listed, with no final outcome yet.
    pub fn queued(&self) -> u64 {
        self.sent
            .saturating_sub(self.delivered + self.skipped + self.held + self.refused + self.failed)
    }

    fn add(&mut self, status: AuditStatus) {
        match status {
            AuditStatus::Delivered | AuditStatus::Linked => self.delivered += 1,
            AuditStatus::Skipped | AuditStatus::SkippedStale | AuditStatus::Unlinked => {
                self.skipped += 1
            }
            AuditStatus::Held => self.held += 1,
            AuditStatus::Refused => self.refused += 1,
            AuditStatus::Dead | AuditStatus::Failed => self.failed += 1,
            AuditStatus::Retry | AuditStatus::Queued => {}
        }
    }
}

/// The outcomes of a run so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub users: KindTally,
    pub groups: KindTally,
    /// Follow-up events the run's deliveries left (big groups at slow targets).
    #[serde(default)]
    pub follow_ups: FollowUps,
    /// Refusals and failures (and changes still being retried), named; at most
    /// [`MAX_PROBLEMS`].
    pub problems: Vec<Problem>,
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settlement {
    /// Every change has its outcome and the target took them all.
    Confirmed,
    /// Every change has its outcome; some were refused or failed.
    WithFailures,
    /// Some changes are queued (or being retried): their outcome is not known yet.
    Pending,
}

impl Tally {
    /// Names `o` among the problems if it is one (and there is room).
    fn name_problem(&mut self, o: Outcome) {
        let problem = matches!(
            o.status,
            AuditStatus::Refused | AuditStatus::Dead | AuditStatus::Failed | AuditStatus::Retry
        );
        if problem && self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem {
                resource_type: o.resource_type,
                resource_id: o.resource_id,
                name: o.label,
                op: o.op,
                status: o.status,
                detail: o.detail,
            });
        }
    }

    /// Changes sent whose outcome is not known yet.
    pub fn queued(&self, sent: Sent) -> Sent {
        Sent {
            users: sent.users.saturating_sub(self.users.known()),
            groups: sent.groups.saturating_sub(self.groups.known()),
        }
    }

    pub fn settlement(&self, sent: Sent) -> Settlement {
        let q = self.queued(sent);
        let f = &self.follow_ups;
        if q.users + q.groups + f.queued() > 0 {
            Settlement::Pending
        } else if self.users.refused
            + self.users.failed
            + self.groups.refused
            + self.groups.failed
            + f.refused
            + f.failed
            > 0
        {
            Settlement::WithFailures
        } else {
            Settlement::Confirmed
        }
    }

    /// `created=… updated=… … refused=… failed=… queued=…` (groups after users, when any).
    pub fn summary(&self, sent: Sent) -> String {
        let q = self.queued(sent);
        let one = |k: &KindTally, queued: u64| {
            format!(
                "created={} updated={} deactivated={} deleted={} skipped={} refused={} failed={} queued={}",
                k.created,
                k.updated,
                k.deactivated,
                k.deleted,
                k.skipped,
                k.refused,
                k.failed,
                queued
            ) + &if k.held > 0 {
                format!(" held={}", k.held)
            } else {
                String::new()
            }
        };
        let mut s = one(&self.users, q.users);
        if sent.groups > 0 {
            s.push_str(&format!(" groups: {}", one(&self.groups, q.groups)));
        }
        let f = &self.follow_ups;
        if f.sent > 0 {
            s.push_str(&format!(
                " follow-ups: sent={} delivered={} skipped={} held={} refused={} failed={} queued={}",
                f.sent,
                f.delivered,
                f.skipped,
                f.held,
                f.refused,
                f.failed,
                f.queued()
            ));
        }
        s
    }
}

fn run_key(id: &str) -> Key {
    Key::new(format!("{}{id}", keyspace::RUN), "RUN")
}

fn outcome_sk(event_id: &str, target: &str) -> String {
    format!("EV#{event_id}#{target}")
}

/// The store write recording what `entry` (the engine's audit entry for this event on
/// `target`) says, for the event's run. `None` when the event belongs to no run.
/// `follow_ups`: the events the delivery left for the members it did not reach (kept in
/// the outbox already); the run waits for them, and the members they name are not
/// counted here.
pub fn outcome_write(
    event: &ChangeEvent,
    target: &str,
    entry: &AuditEntry,
    follow_ups: &[ChangeEvent],
) -> Result<Option<Write>, StoreError> {
    let Some(run) = &event.run else {
        return Ok(None);
    };
    let label = event
        .resource
        .as_ref()
        .and_then(|r| r.get("userName").or_else(|| r.get("displayName")))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // Members of the event's own group left to follow-ups were not reached here.
    let (mut added, mut removed) = (
        event.members_added.len() as u64,
        event.members_removed.len() as u64,
    );
    for f in follow_ups.iter().filter(|f| {
        event.record.is_none()
            && event.resource_type == ResourceKind::Group
            && f.resource_id == event.resource_id
    }) {
        added = added.saturating_sub(f.members_added.len() as u64);
        removed = removed.saturating_sub(f.members_removed.len() as u64);
    }
    let outcome = Outcome {
        resource_type: event.subject().to_string(),
        resource_id: event.resource_id.clone(),
        label,
        op: entry.op,
        status: entry.status,
        detail: entry.detail.chars().take(512).collect(),
        members_added: added,
        members_removed: removed,
        follow_up_of: event.follow_up_of.clone(),
        left: follow_ups
            .first()
            .and_then(|f| f.follow_up_of.clone())
            .map(|batch| (batch, follow_ups.len() as u64)),
    };
    let data = serde_json::to_vec(&outcome).map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(Some(Write::put(
        Item::new(
            format!("{}{run}", keyspace::RUN),
            outcome_sk(&event.id, target),
            data,
        )
        .with_expiry(now_epoch() + RUN_TTL_SECS),
    )))
}

/// The runs on a store. Cheap to clone.
#[derive(Clone)]
pub struct Runs {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runs").finish_non_exhaustive()
    }
}

impl Runs {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Runs { store }
    }

    /// Writes the run record; an unsettled run is in the open index, where the schedule
    /// finds it.
    pub async fn save(&self, run: &RunRecord, open: bool) -> Result<(), StoreError> {
        let key = run_key(&run.id);
        let data = serde_json::to_vec(run).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut item = Item::new(key.pk, key.sk, data).with_expiry(now_epoch() + RUN_TTL_SECS);
        if open {
            item = item.with_gsi1(
                keyspace::RUNS_OPEN,
                format!("{}#{}", run.started_at, run.id),
            );
        }
        self.store.transact(vec![Write::put(item)]).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<(RunRecord, bool)>, StoreError> {
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let Some(item) = self.store.get(&run_key(id)).await? else {
            return Ok(None);
        };
        let open = item.gsi1.is_some();
        Ok(serde_json::from_slice(&item.data).ok().map(|r| (r, open)))
    }

    /// The outcomes recorded for a run so far. A follow-up counts when its batch is
    /// recorded by a counted outcome: one of the run's own events, or a counted follow-up
    /// that left more (a batch kept by an attempt whose receipt then failed is recorded by
    /// nothing, and the retry leaves its own).
    pub async fn tally(&self, id: &str) -> Result<Tally, StoreError> {
        let mut tally = Tally::default();
        // Batches recorded by counted outcomes, with their sizes; follow-up outcomes by
        // batch, not counted yet.
        let mut batches: HashMap<String, u64> = HashMap::new();
        let mut follow_ups: HashMap<String, Vec<Outcome>> = HashMap::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(Index::Primary, format!("{}{id}", keyspace::RUN))
                        .prefix("EV#")
                        .after(after),
                )
                .await?;
            for item in &page.items {
                let Ok(mut o) = serde_json::from_slice::<Outcome>(&item.data) else {
                    continue;
                };
                if let Some(batch) = o.follow_up_of.clone() {
                    follow_ups.entry(batch).or_default().push(o);
                    continue;
                }
                batches.extend(o.left.take());
                match o.resource_type.as_str() {
                    "Group" => tally.groups.add(&o),
                    _ => tally.users.add(&o),
                }
                tally.name_problem(o);
            }
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        // Batch by batch from the recorded ones: a counted follow-up's own batch is
        // recorded in turn.
        let mut todo: Vec<String> = batches.keys().cloned().collect();
        while let Some(batch) = todo.pop() {
            for mut o in follow_ups.remove(&batch).unwrap_or_default() {
                if let Some((b, n)) = o.left.take()
                    && !batches.contains_key(&b)
                {
                    batches.insert(b.clone(), n);
                    todo.push(b);
                }
                tally.follow_ups.add(o.status);
                if matches!(o.status, AuditStatus::Delivered | AuditStatus::Linked) {
                    tally.groups.members_added += o.members_added;
                    tally.groups.members_removed += o.members_removed;
                }
                tally.name_problem(o);
            }
        }
        tally.follow_ups.sent = batches.values().sum();
        Ok(tally)
    }

    /// Waits until every event of `run` has a final outcome, or `deadline`: the tally
    /// then. Polls with a growing interval (at least one millisecond per event sent).
    pub async fn wait(
        &self,
        run: &RunRecord,
        deadline: tokio::time::Instant,
    ) -> Result<Tally, StoreError> {
        let floor = Duration::from_millis(run.sent.users + run.sent.groups);
        let mut interval = Duration::from_millis(100);
        loop {
            let tally = self.tally(&run.id).await?;
            let now = tokio::time::Instant::now();
            if tally.settlement(run.sent) != Settlement::Pending || now >= deadline {
                return Ok(tally);
            }
            let pause = interval.max(floor).min(deadline - now);
            tokio::time::sleep(pause).await;
            interval = (interval * 2).min(Duration::from_secs(5));
        }
    }

    /// Records the outcome of a settled run: its audit entry (what the target answered)
    /// and the run taken out of the open index.
    pub async fn close(
        &self,
        audit: &Audit,
        run: &RunRecord,
        tally: &Tally,
    ) -> Result<(), StoreError> {
        let status = match tally.settlement(run.sent) {
            Settlement::Confirmed => AuditStatus::Delivered,
            Settlement::WithFailures => AuditStatus::Failed,
            Settlement::Pending => AuditStatus::Queued,
        };
        let mut detail = format!("outcome of run {}: {}", run.id, tally.summary(run.sent));
        append_problems(&mut detail, &tally.problems);
        let mut entry = AuditEntry::new(&run.target, run.kind.audit_op(), status).detail(detail);
        if let Some(a) = &run.actor {
            entry = entry.actor(a.clone());
        }
        if let Err(e) = audit.record(entry).await {
            tracing::warn!(error = %e, run = %run.id, "audit entry of a run's outcome not written");
        }
        self.save(run, false).await
    }

    /// The schedule's part: settles the runs that finished sending and whose outcomes
    /// are now all known (or that are past the time outcomes are kept), writing each
    /// one's outcome to the audit log. Returns how many were settled.
    pub async fn settle_open(&self, audit: &Audit) -> Result<usize, StoreError> {
        let page = self
            .store
            .query(&Query::new(Index::Gsi1, keyspace::RUNS_OPEN).limit(SETTLE_PER_CYCLE))
            .await?;
        let horizon = chrono::Utc::now() - chrono::Duration::seconds(RUN_TTL_SECS - 3600);
        let mut settled = 0;
        for item in &page.items {
            let Ok(run) = serde_json::from_slice::<RunRecord>(&item.data) else {
                continue;
            };
            let expired = chrono::DateTime::parse_from_rfc3339(&run.started_at)
                .map(|t| t < horizon)
                .unwrap_or(true);
            if !run.finished && !expired {
                continue;
            }
            let tally = self.tally(&run.id).await?;
            if tally.settlement(run.sent) == Settlement::Pending && !expired {
                continue;
            }
            self.close(audit, &run, &tally).await?;
            settled += 1;
        }
        Ok(settled)
    }
}

/// ` problems: User "ada" create refused: …; …` (as many as fit the audit detail).
pub fn append_problems(detail: &mut String, problems: &[Problem]) {
    for (i, p) in problems.iter().enumerate() {
        detail.push_str(if i == 0 { "; problems: " } else { "; " });
        let name = if p.name.is_empty() {
            &p.resource_id
        } else {
            &p.name
        };
        detail.push_str(&format!(
            "{} {name:?} {} {}: {}",
            p.resource_type,
            p.op.as_str(),
            p.status.as_str(),
            p.detail
        ));
        if detail.len() > super::audit::MAX_DETAIL_BYTES {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ChangeOp, Origin};
    use crate::store::embedded::EmbeddedStore;
    use provisync_scim::ResourceKind;
    use serde_json::json;

    fn event(run: &str, kind: ResourceKind, name: &str) -> ChangeEvent {
        let mut e = ChangeEvent::new(
            kind,
            &format!("h-{name}"),
            ChangeOp::Create,
            Origin::Reconcile,
        );
        e.resource = Some(match kind {
            ResourceKind::User => json!({"userName": name}),
            ResourceKind::Group => json!({"displayName": name}),
        });
        e.run = Some(run.to_string());
        e
    }

    async fn record(store: &Arc<dyn Store>, e: &ChangeEvent, op: AuditOp, status: AuditStatus) {
        let entry = AuditEntry::new("crm", op, status).detail("the target's words");
        let w = outcome_write(e, "crm", &entry, &[]).unwrap().unwrap();
        store.transact(vec![w]).await.unwrap();
    }

    /// A group change whose delivery left members to follow-up events is not the end of
    /// them: the run stays pending until each follow-up it lists has an outcome, and
    /// counts the members as they reach the target.
    #[tokio::test]
    async fn follow_ups_keep_a_run_pending() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let runs = Runs::new(store.clone());
        let mut run = RunRecord::new(&RunRecord::new_id(), RunKind::Reconcile, "crm");
        run.sent = Sent {
            users: 0,
            groups: 1,
        };
        run.finished = true;
        let mut g = event(&run.id, ResourceKind::Group, "g");
        g.members_added = (0..250).map(|i| format!("m{i}")).collect();
        let part = |batch: &str, from: usize, to: usize| {
            let mut f = ChangeEvent::new(
                ResourceKind::Group,
                "h-g",
                ChangeOp::Update,
                Origin::Reconcile,
            );
            f.members_added = (from..to).map(|i| format!("m{i}")).collect();
            f.run = Some(run.id.clone());
            f.follow_up_of = Some(batch.to_string());
            f
        };
        let (f1, f2) = (part("b1", 100, 200), part("b1", 200, 250));
        let delivered = AuditEntry::new("crm", AuditOp::Create, AuditStatus::Delivered);
        let w = outcome_write(&g, "crm", &delivered, &[f1.clone(), f2.clone()])
            .unwrap()
            .unwrap();
        store.transact(vec![w]).await.unwrap();
        // A follow-up kept by an attempt whose receipt failed: its batch recorded by none.
        let stray = part("b0", 100, 200);
        record(&store, &stray, AuditOp::Update, AuditStatus::Delivered).await;
        let t = runs.tally(&run.id).await.unwrap();
        assert_eq!((t.groups.created, t.groups.members_added), (1, 100));
        assert_eq!((t.follow_ups.sent, t.follow_ups.queued()), (2, 2));
        assert_eq!(t.settlement(run.sent), Settlement::Pending);
        assert!(
            t.summary(run.sent).ends_with(
                "follow-ups: sent=2 delivered=0 skipped=0 held=0 refused=0 failed=0 queued=2"
            ),
            "{}",
            t.summary(run.sent)
        );
        record(&store, &f1, AuditOp::Update, AuditStatus::Delivered).await;
        let t = runs.tally(&run.id).await.unwrap();
        assert_eq!((t.groups.members_added, t.follow_ups.queued()), (200, 1));
        assert_eq!(t.settlement(run.sent), Settlement::Pending);
        // Not a group change of its own: the groups' counts stay one create.
        assert_eq!((t.groups.created, t.groups.updated), (1, 0));
        record(&store, &f2, AuditOp::Update, AuditStatus::Refused).await;
        let t = runs.tally(&run.id).await.unwrap();
        assert_eq!(t.settlement(run.sent), Settlement::WithFailures);
        assert_eq!((t.follow_ups.delivered, t.follow_ups.refused), (1, 1));
        assert_eq!(t.groups.members_added, 200, "the refused 50 never arrived");
        assert_eq!(t.problems.len(), 1);
        assert_eq!(t.problems[0].status, AuditStatus::Refused);
        // A follow-up that ran out of time too leaves a batch of its own, counted in turn
        // (its outcome now counts the 90 members it reached).
        let child = part("b2", 190, 200);
        let update = AuditEntry::new("crm", AuditOp::Update, AuditStatus::Delivered);
        let w = outcome_write(&f1, "crm", &update, std::slice::from_ref(&child))
            .unwrap()
            .unwrap();
        store.transact(vec![w]).await.unwrap();
        let t = runs.tally(&run.id).await.unwrap();
        assert_eq!((t.follow_ups.sent, t.follow_ups.queued()), (3, 1));
        assert_eq!(t.groups.members_added, 190);
        assert_eq!(t.settlement(run.sent), Settlement::Pending);
        record(&store, &child, AuditOp::Update, AuditStatus::Delivered).await;
        let t = runs.tally(&run.id).await.unwrap();
        assert_eq!((t.follow_ups.sent, t.follow_ups.queued()), (3, 0));
        assert_eq!(t.groups.members_added, 200);
        // The outcome records a batch and its size, not every id: a constant-size item.
        let item = store
            .get(&Key::new(
                format!("{}{}", keyspace::RUN, run.id),
                outcome_sk(&g.id, "crm"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert!(
            item.data.len() < 400,
            "{}",
            String::from_utf8_lossy(&item.data)
        );
    }

    #[tokio::test]
    async fn outcomes_settle_a_run() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let runs = Runs::new(store.clone());
        let audit = Audit::new(store.clone());
        let mut run = RunRecord::new(&RunRecord::new_id(), RunKind::Reconcile, "crm");
        run.sent = Sent {
            users: 3,
            groups: 1,
        };
        run.finished = true;
        runs.save(&run, true).await.unwrap();
        // Nothing known yet: all queued.
        let t = runs.tally(&run.id).await.unwrap();
        assert_eq!(t.queued(run.sent), run.sent);
        assert_eq!(t.settlement(run.sent), Settlement::Pending);
        let (a, b, c) = (
            event(&run.id, ResourceKind::User, "a"),
            event(&run.id, ResourceKind::User, "b"),
            event(&run.id, ResourceKind::User, "c"),
        );
        let mut g = event(&run.id, ResourceKind::Group, "g");
        g.members_added = vec!["h-a".into(), "h-b".into()];
        record(&store, &a, AuditOp::Create, AuditStatus::Delivered).await;
        record(&store, &b, AuditOp::Create, AuditStatus::Retry).await;
        record(&store, &c, AuditOp::Create, AuditStatus::Refused).await;
        record(&store, &g, AuditOp::Create, AuditStatus::Delivered).await;
        let t = runs.tally(&run.id).await.unwrap();
        assert_eq!(
            (t.users.created, t.users.refused, t.users.retrying),
            (1, 1, 1)
        );
        assert_eq!(
            t.queued(run.sent),
            Sent {
                users: 1,
                groups: 0
            }
        );
        assert_eq!((t.groups.created, t.groups.members_added), (1, 2));
        assert_eq!(t.settlement(run.sent), Settlement::Pending);
        // A settle pass leaves a pending run open.
        assert_eq!(runs.settle_open(&audit).await.unwrap(), 0);
        // The retry ends dead: every outcome known, with failures, named.
        record(&store, &b, AuditOp::Create, AuditStatus::Dead).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let t = runs.wait(&run, deadline).await.unwrap();
        assert_eq!(t.settlement(run.sent), Settlement::WithFailures);
        assert_eq!((t.users.failed, t.users.refused), (1, 1));
        let names: Vec<&str> = t.problems.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert!(t.summary(run.sent).contains("refused=1 failed=1 queued=0"));
        // The schedule records the outcome once and closes the run.
        assert_eq!(runs.settle_open(&audit).await.unwrap(), 1);
        assert_eq!(runs.settle_open(&audit).await.unwrap(), 0);
        let (_, open) = runs.get(&run.id).await.unwrap().unwrap();
        assert!(!open);
        let (entries, _) = audit
            .query(&super::super::audit::AuditQuery {
                op: Some(AuditOp::Reconcile),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].status, AuditStatus::Failed);
        assert!(
            entries[0].detail.contains("User \"c\" create refused"),
            "{}",
            entries[0].detail
        );
        // Events outside runs record nothing; a wait without events is settled at once.
        let mut plain = a.clone();
        plain.run = None;
        let entry = AuditEntry::new("crm", AuditOp::Create, AuditStatus::Delivered);
        assert!(outcome_write(&plain, "crm", &entry, &[]).unwrap().is_none());
        let empty = RunRecord::new(&RunRecord::new_id(), RunKind::Sync, "crm");
        let t = runs.wait(&empty, deadline).await.unwrap();
        assert_eq!(t.settlement(empty.sent), Settlement::Confirmed);
        assert!(runs.get("not/an id").await.unwrap().is_none());
    }
}
