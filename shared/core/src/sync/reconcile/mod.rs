//! Reconcile: find and repair drift between the hub and one target, touching only what
//! differs.
//!
//! A run lists what the target holds ([`Connector::list_users`], a page at a time),
//! matches each account to a hub user — through the link (target id), then the
//! `externalId` the hub gave it (the hub id), then the target's matching attribute — and
//! compares the hub user *as the delivery engine would send it* (same mapping, same
//! scoping filter) with the target's copy, on the mapped attributes only. Then:
//!
//! - in the hub, in scope, not on the target -> a `create` change event;
//! - on the target and different -> an `update` change event (the link is first set to
//!   what the target really holds, so the engine's PATCH carries exactly the difference);
//! - on the target, out of scope -> an event the engine treats with the target's
//!   `out_of_scope` policy;
//! - on the target, unknown to the hub (an orphan) -> the target's [`OrphanPolicy`]:
//!   reported, deactivated or deleted (done here: there is no hub resource to send);
//! - everything else is unchanged: a target in sync receives no write at all.
//!
//! Events carry `Origin::Reconcile`, `only_targets = [target]` and the run's id, and go
//! through the normal delivery engine (retries, audit, links), which records each one's
//! outcome for the run ([`super::runs`]). The report counts a change as created, updated,
//! … only once the target answered; when the comparison is done, the run waits for its
//! outcomes within its time. What is still unknown then is reported `queued` (state
//! [`RunState::Pending`]) and its outcome goes to the audit log when the schedule finds
//! it settled. A run whose changes were refused or failed ends
//! [`RunState::CompleteWithFailures`], naming them.
//!
//! A run is bounded in time: between pages it checks its deadline and, when it has
//! passed, stores a checkpoint (`RECON#{target}` / `STATE`: listing cursor, counts, and
//! one `SEEN#…` record per page with the hub ids seen) so the next cycle continues there.
//! A lease (`LEASE#{target}` / `LEASE`, written only if absent or expired) keeps two
//! cycles from reconciling the same target at once.
//!
//! Groups follow the users, in the same run and resumable the same way (phases
//! `group_listing` and `group_missing`, `SEEN#G#…` records). A target group
//! ([`Connector::list_groups`], with its members) is matched through the group link, then
//! its `externalId` (the hub id), then its `displayName` (case-insensitively), and
//! compared with the hub group as delivery would send it (mapping, group mapping,
//! [`Connector::kept`]) on its attributes, and on its members: expected are the hub
//! group's members that are on the target (translated through this target's user and
//! group links). Missing ones and linked extra ones go out as an `update` event with
//! `members_added` / `members_removed`; members the hub does not know at all (a deleted
//! account's id left behind, a stranger) are removed here, audited. Hub groups missing on
//! the target get a `create` event with every member in `members_added`, as a SCIM create
//! of a group with members does. Orphan groups follow the orphan policy (`deactivate`
//! cannot apply to a group: it is reported). Users whose create this run queued are
//! left out of the member comparison: the engine adds a new account to its linked groups
//! itself (see [`super::deliver`]).
//!
//! Every call a run makes to the target (its pages, the deprovisions it sends by target
//! id) takes a slot of the target's pace, the one delivery uses ([`super::pace`]): the
//! operator's `max_rate` / `max_in_flight`, a `Retry-After` hold and a learned rate bind
//! it, and its 429s teach the pace. A call refused with 429 or 503 is tried again after
//! the hold while the run's deadline allows ([`patient`]).
//!
//! A target that cannot list its users (a webhook site) ends as
//! [`RunState::Unsupported`], audited as skipped; one that lists users but not groups
//! reconciles the users and reports groups as not supported.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::audit::{Audit, AuditEntry, AuditOp, AuditStatus};
use super::deliver::in_scope;
use super::direct::{Deprovision, Direct, Gate};
use super::link::{Link, Links};
use super::mapping::map_resource;
use super::pace::{PaceLimits, Pacer};
use super::paced::Paced;
use super::plan::{PlannedChange, planned_for_event};
use super::runs::{Problem, Runs, Sent, Tally};
use crate::connector::{Connector, ConnectorError, ConnectorFactory};
use crate::directory::{Directory, Stored};
use crate::event::{ChangeEvent, ChangeOp, Origin};
use crate::queue::{OutMessage, Queue};
use crate::store::{Store, StoreError};
use crate::target::{TargetConfig, Targets};
use provisync_scim::{ResourceKind, SchemaRegistry};

mod checkpoint;
mod deferred;
mod diff;
mod groups;
mod lease;
mod patient;
mod run;
mod users;

pub use deferred::DeferredCounts;
pub use diff::{
    HubIndex, Matched, MemberDiff, MemberLinks, Verdict, covers, differs, judge, project,
    target_members,
};
pub use lease::Lease;

/// Counts of one reconcile run (or of the part done in this cycle plus the parts before
/// it, for a resumed run). What the run changed counts only once the target answered:
/// a change handed to the delivery engine is `queued` until its outcome is known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileCounts {
    /// Accounts read from the target.
    pub checked: u64,
    /// Hub users missing on the target, created there (the target answered success).
    pub created: u64,
    /// Accounts that differed, updated on the target (an account found by its matching
    /// attribute and brought up to date counts here too).
    pub updated: u64,
    /// Out-of-scope accounts or orphans deactivated.
    pub deactivated: u64,
    /// Out-of-scope accounts or orphans deleted.
    pub deleted: u64,
    /// Deactivations and deletions the target's deprovision guard held for an operator
    /// (not sent: `GET /admin/targets/{id}/held`).
    #[serde(default)]
    pub held: u64,
    /// Accounts the hub does not know (whatever the policy did with them).
    pub orphaned: u64,
    /// Accounts in sync.
    pub unchanged: u64,
    /// Changes the target refused (final; named in the report's `problems` and the audit).
    #[serde(default)]
    pub refused: u64,
    /// Changes that failed: dead-lettered after their retries, or an orphan policy the
    /// target did not carry out (see the audit log).
    pub failed: u64,
    /// Changes the delivery engine found nothing to do for (operation not enabled, …).
    #[serde(default)]
    pub skipped: u64,
    /// Changes queued whose outcome is not known yet (being delivered or retried).
    #[serde(default)]
    pub queued: u64,
    /// The groups' part of the run (the fields above count user accounts).
    #[serde(default)]
    pub groups: GroupCounts,
}

/// Counts of the group phases of a run (changes count once the target answered, as
/// for users).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupCounts {
    /// Groups read from the target.
    pub checked: u64,
    /// Hub groups missing on the target, created there.
    pub created: u64,
    /// Groups whose attributes or members differed, updated (or members the hub does not
    /// know removed).
    pub updated: u64,
    /// Orphan groups deleted (policy `delete`).
    pub deleted: u64,
    /// Group changes (membership removals, deletions) the deprovision guard held.
    pub held: u64,
    /// Groups the hub does not know.
    pub orphaned: u64,
    /// Groups in sync.
    pub unchanged: u64,
    /// Group changes the target refused.
    pub refused: u64,
    /// Group changes that failed.
    pub failed: u64,
    /// Group changes the engine found nothing to do for.
    pub skipped: u64,
    /// Group changes queued whose outcome is not known yet, with the follow-up events
    /// that carry members a delivery did not reach in its time.
    pub queued: u64,
    /// Members added on the target (creates included), once the change was delivered.
    pub members_added: u64,
    /// Members removed: by delivered changes, and members unknown to the hub removed at
    /// once.
    pub members_removed: u64,
    /// The target cannot list its groups: they were not reconciled.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unsupported: bool,
}

impl GroupCounts {
    fn add(&mut self, o: &GroupCounts) {
        self.checked += o.checked;
        self.created += o.created;
        self.updated += o.updated;
        self.deleted += o.deleted;
        self.orphaned += o.orphaned;
        self.held += o.held;
        self.unchanged += o.unchanged;
        self.refused += o.refused;
        self.failed += o.failed;
        self.skipped += o.skipped;
        self.queued += o.queued;
        self.members_added += o.members_added;
        self.members_removed += o.members_removed;
        self.unsupported |= o.unsupported;
    }

    /// `checked=… created=… …` of the groups.
    pub fn summary(&self) -> String {
        if self.unsupported {
            return "not supported (this kind of target cannot list groups)".into();
        }
        format!(
            "checked={} created={} updated={} deleted={} orphaned={} unchanged={} refused={} failed={} skipped={} queued={} members_added={} members_removed={} held={}",
            self.checked,
            self.created,
            self.updated,
            self.deleted,
            self.orphaned,
            self.unchanged,
            self.refused,
            self.failed,
            self.skipped,
            self.queued,
            self.members_added,
            self.members_removed,
            self.held
        )
    }
}

impl ReconcileCounts {
    fn add(&mut self, o: &ReconcileCounts) {
        self.checked += o.checked;
        self.created += o.created;
        self.updated += o.updated;
        self.deactivated += o.deactivated;
        self.deleted += o.deleted;
        self.held += o.held;
        self.orphaned += o.orphaned;
        self.unchanged += o.unchanged;
        self.refused += o.refused;
        self.failed += o.failed;
        self.skipped += o.skipped;
        self.queued += o.queued;
        self.groups.add(&o.groups);
    }

    /// These counts (what the run found, and did itself) with the outcomes of the
    /// changes it queued: confirmed ones counted by what the target did, the rest queued.
    pub fn with_outcomes(&self, sent: Sent, tally: &Tally) -> ReconcileCounts {
        let mut c = self.clone();
        let queued = tally.queued(sent);
        let u = &tally.users;
        c.created += u.created;
        c.updated += u.updated;
        c.deactivated += u.deactivated;
        c.deleted += u.deleted;
        c.held += u.held;
        c.refused += u.refused;
        c.failed += u.failed;
        c.skipped += u.skipped;
        c.queued += queued.users;
        let g = &tally.groups;
        c.groups.created += g.created;
        // A group "deactivated" is no such thing: counted as updated.
        c.groups.updated += g.updated + g.deactivated;
        c.groups.deleted += g.deleted;
        c.groups.held += g.held;
        c.groups.refused += g.refused;
        c.groups.failed += g.failed;
        c.groups.skipped += g.skipped;
        c.groups.queued += queued.groups;
        c.groups.members_added += g.members_added;
        c.groups.members_removed += g.members_removed;
        // Members a group change left to follow-up events: still queued, or what became
        // of them when it was not their delivery.
        let f = &tally.follow_ups;
        c.groups.queued += f.queued();
        c.groups.held += f.held;
        c.groups.refused += f.refused;
        c.groups.failed += f.failed;
        c
    }

    /// `checked=… created=… … groups: checked=… …`: the audit detail and the log line
    /// (users first, as before groups were reconciled).
    pub fn summary(&self) -> String {
        format!(
            "checked={} created={} updated={} deactivated={} deleted={} orphaned={} unchanged={} refused={} failed={} skipped={} queued={} held={} groups: {}",
            self.checked,
            self.created,
            self.updated,
            self.deactivated,
            self.deleted,
            self.orphaned,
            self.unchanged,
            self.refused,
            self.failed,
            self.skipped,
            self.queued,
            self.held,
            self.groups.summary()
        )
    }
}

/// How a run of one target ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Done, and the target took every change the run made: the next run starts over.
    Complete,
    /// Done, and every change has its outcome, but the target refused some or some
    /// failed (`refused`, `failed`, named in `problems`).
    CompleteWithFailures,
    /// Done comparing; some changes are still queued (or being retried) and their
    /// outcome was not known within the run's time. It is written to the audit log when
    /// known (`GET /admin/runs/{run}` shows it meanwhile).
    Pending,
    /// Out of time: a checkpoint holds the position; the next cycle continues.
    Suspended,
    /// Another cycle holds the target's lease: nothing done.
    Busy,
    /// The run failed (listing error, store error); the checkpoint is kept.
    Failed,
    /// This kind of target cannot list its accounts: nothing to reconcile (audited as
    /// skipped, not as a failure).
    Unsupported,
}

/// What a reconcile of one target did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub target: String,
    pub state: RunState,
    /// Counts of the whole run so far (a resumed run includes the earlier cycles).
    pub counts: ReconcileCounts,
    /// Whether this cycle continued a run started earlier.
    pub resumed: bool,
    /// Pages of the target's user listing read in this cycle.
    pub pages: u32,
    /// Why the run failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run's id, when it queued changes (`GET /admin/runs/{run}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Changes the target refused or that failed (or are being retried), named; at most
    /// [`MAX_PROBLEMS`](super::runs::MAX_PROBLEMS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// What a reconcile would send (`POST /admin/sync` with `"reconcile": true, "plan": true`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcilePlan {
    pub target: String,
    /// `complete`, `suspended` (out of time: what was found so far), `busy`, `failed`,
    /// `unsupported`.
    pub state: RunState,
    /// Target accounts compared.
    pub checked: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub plan: super::plan::Plan,
}

impl RunState {
    /// Whether a run that ended so reports a failure (what `provisync sync` exits
    /// non-zero for).
    pub fn is_failure(self) -> bool {
        matches!(self, RunState::Failed | RunState::CompleteWithFailures)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("directory: {0}")]
    Directory(String),
    #[error("target: {0}")]
    Connector(#[from] ConnectorError),
    #[error("queue: {0}")]
    Queue(String),
    #[error("{0}")]
    Setup(String),
    /// A call to the target was still unanswered at the deadline's grace.
    #[error("stopped at the deadline: a call to the target did not answer in time")]
    Stopped,
}

// ---- the reconciler (I/O) -------------------------------------------------------------

/// Runs reconciles. One per process, shared by the schedule and `POST /admin/sync`.
#[derive(Clone)]
pub struct Reconciler {
    store: Arc<dyn Store>,
    directory: Directory,
    targets: Targets,
    links: Links,
    audit: Audit,
    queue: Arc<dyn Queue>,
    factory: ConnectorFactory,
    /// The pace of each target, the deliverer's: every call a run makes to the target
    /// takes a slot of it ([`super::paced`]).
    pacer: Arc<Pacer>,
    runs: Runs,
    /// The deprovision guard and journal for what a run changes by target id (orphans,
    /// members unknown to the hub).
    direct: Direct,
    /// With a value, a run is stopped this long after its deadline ([`Self::bounded`]).
    grace: Option<std::time::Duration>,
    /// Set in a plan ([`Reconciler::plan_target`]): the changes are collected here, and
    /// nothing is sent to the target or written to the store.
    plan: Option<Arc<PlanSink>>,
}

/// Where a plan collects its changes.
struct PlanSink {
    target: TargetConfig,
    changes: std::sync::Mutex<Vec<PlannedChange>>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler").finish_non_exhaustive()
    }
}

/// Change events sent to the queue per call.
const SEND_CHUNK: usize = 100;

impl Reconciler {
    pub fn new(
        directory: Directory,
        targets: Targets,
        audit: Audit,
        queue: Arc<dyn Queue>,
        factory: ConnectorFactory,
        pacer: Arc<Pacer>,
    ) -> Self {
        let store = directory.store().clone();
        Reconciler {
            links: Links::new(store.clone()),
            runs: Runs::new(store.clone()),
            direct: Direct::new(store.clone(), audit.clone()),
            store,
            directory,
            targets,
            audit,
            queue,
            factory,
            pacer,
            grace: None,
            plan: None,
        }
    }

    /// This reconciler, stopping a run whose call is still in flight
    /// [`crate::sync::PHASE_GRACE`] after its deadline (inside an invocation that ends at a
    /// fixed time), so a target that hangs never leaves its lease held past it.
    pub fn bounded(&self) -> Self {
        Reconciler {
            grace: Some(crate::sync::PHASE_GRACE),
            ..self.clone()
        }
    }

    /// Whether this is a plan: nothing is sent or written.
    fn planning(&self) -> bool {
        self.plan.is_some()
    }

    /// In a plan: notes a change the run would make (`false` when not planning: do it).
    fn planned(&self, change: PlannedChange) -> bool {
        match &self.plan {
            Some(p) => {
                p.changes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(change);
                true
            }
            None => false,
        }
    }

    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// `c`, each of its calls paced as `t`'s ([`super::paced`]): within the target's
    /// `max_rate` / `max_in_flight`, after a `Retry-After`, at the rate its 429s taught,
    /// and teaching the pace in turn.
    fn paced<'a>(&'a self, t: &'a TargetConfig, c: &'a dyn Connector) -> Paced<'a> {
        Paced {
            inner: c,
            pacer: &self.pacer,
            target: &t.id,
            limits: PaceLimits::of(t),
        }
    }

    fn schemas(&self) -> &SchemaRegistry {
        self.directory.schemas()
    }

    /// Every hub resource of `kind` (scope, the matching value of its mapped form) and
    /// the target's links of that kind. Groups are always in scope (the scoping filter
    /// is about users).
    async fn index_of(
        &self,
        t: &TargetConfig,
        kind: ResourceKind,
        matching: &str,
    ) -> Result<HubIndex, ReconcileError> {
        let mut index = HubIndex::new(matching);
        let schemas = self.schemas().clone();
        self.directory
            .scan(kind, |s| {
                let mapped = map_resource(kind, s.id(), &s.resource, &t.mapping, &t.group_mapping);
                let scoped =
                    kind == ResourceKind::Group || in_scope(&schemas, t, kind, &s.resource);
                index.add_user(s.id(), scoped, &mapped);
            })
            .await
            .map_err(|e| ReconcileError::Directory(e.to_string()))?;
        let mut links = Vec::new();
        self.links
            .list(&t.id, kind, |l| links.push((l.hub_id, l.target_id)))
            .await?;
        for (h, tid) in links {
            index.add_link(&h, &tid);
        }
        Ok(index)
    }

    /// One page of target objects matched to the hub, with the hub resources they name
    /// and the target's links to them (both read once for the page).
    async fn classify_page<'a>(
        &self,
        t: &TargetConfig,
        kind: ResourceKind,
        index: &HubIndex,
        objects: &'a [Value],
    ) -> Result<ClassifiedPage<'a>, ReconcileError> {
        let classified: Vec<(&Value, Matched)> =
            objects.iter().map(|o| (o, index.classify(o))).collect();
        let hub_ids: Vec<String> = classified
            .iter()
            .filter_map(|(_, m)| match m {
                Matched::Linked(h) | Matched::Found(h) => Some(h.clone()),
                Matched::Orphan => None,
            })
            .collect();
        let hub: HashMap<String, Stored> = self
            .directory
            .load_existing(kind, &hub_ids)
            .await
            .map_err(|e| ReconcileError::Directory(e.to_string()))?
            .into_iter()
            .map(|s| (s.id().to_string(), s))
            .collect();
        let links = self.links.get_many(&t.id, kind, &hub_ids).await?;
        Ok(ClassifiedPage {
            matched: classified,
            hub,
            links,
        })
    }

    /// Audits what the orphan policy did to one account or group (`what` names it):
    /// done (or gone already), else the error, as a retry or a refusal. Returns whether
    /// it was done.
    async fn orphan_done(
        &self,
        t: &TargetConfig,
        op: AuditOp,
        resource_type: &str,
        tid: &str,
        what: &str,
        result: Result<(), ConnectorError>,
    ) -> bool {
        let entry = AuditEntry::new(&t.id, op, AuditStatus::Delivered)
            .resource(resource_type, tid)
            .detail(format!("{what} (reconcile)"));
        let (done, entry) = match result {
            Ok(()) | Err(ConnectorError::NotFound) => (true, entry),
            Err(e) => {
                tracing::warn!(target_id = %t.id, object = tid, error = %e, "orphan policy failed");
                let status = if e.is_retryable() {
                    AuditStatus::Retry
                } else {
                    AuditStatus::Refused
                };
                let detail = format!("{what}: {e}");
                (
                    false,
                    AuditEntry {
                        status,
                        detail,
                        ..entry
                    },
                )
            }
        };
        if let Err(e) = self.audit.record(entry).await {
            tracing::warn!(error = %e, "audit entry not written");
        }
        done
    }

    /// Sends a deprovision by target id through the target's guard and journal
    /// ([`super::direct`]), audited (`what` names it).
    async fn deprovision(
        &self,
        t: &TargetConfig,
        c: &dyn Connector,
        d: Deprovision,
        what: &str,
    ) -> Deprovisioned {
        match self.direct.gate(t, &d).await {
            Ok(Gate::Go) => {}
            Ok(Gate::Held(_) | Gate::AlreadyHeld) => return Deprovisioned::Held,
            Err(e) => {
                tracing::warn!(target_id = %t.id, error = %e, "deprovision guard not asked: not sent");
                let entry = AuditEntry::new(&t.id, d.op, AuditStatus::Retry)
                    .resource(d.kind.as_str(), &d.change.target_id)
                    .detail(format!(
                        "{what}: not sent, the guard could not be asked: {e}"
                    ));
                if let Err(e) = self.audit.record(entry).await {
                    tracing::warn!(error = %e, "audit entry not written");
                }
                return Deprovisioned::Failed;
            }
        }
        let result = super::direct::send(c, d.op, d.kind, &d.change).await;
        if self
            .orphan_done(t, d.op, d.kind.as_str(), &d.change.target_id, what, result)
            .await
        {
            Deprovisioned::Done
        } else {
            Deprovisioned::Failed
        }
    }

    async fn send(&self, messages: Vec<OutMessage>) -> Result<(), ReconcileError> {
        if let Some(p) = &self.plan {
            for m in &messages {
                let event = ChangeEvent::from_body(&m.body)
                    .map_err(|e| ReconcileError::Queue(format!("event encoding: {e}")))?;
                if let Some(c) = planned_for_event(self.schemas(), &p.target, &event) {
                    self.planned(c);
                }
            }
            return Ok(());
        }
        for chunk in messages.chunks(SEND_CHUNK) {
            self.queue
                .send(chunk.to_vec())
                .await
                .map_err(|e| ReconcileError::Queue(e.to_string()))?;
        }
        Ok(())
    }
}

/// What a deprovision by target id came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deprovisioned {
    Done,
    /// Held by the target's guard (now, or by an earlier run).
    Held,
    Failed,
}

/// One page of target objects matched to the hub.
struct ClassifiedPage<'a> {
    /// Each object of the page with how it matched, in the page's order.
    matched: Vec<(&'a Value, Matched)>,
    /// The hub resources the matched objects name, by hub id.
    hub: HashMap<String, Stored>,
    /// The target's links to those resources, by hub id.
    links: HashMap<String, Link>,
}

/// The change event for one user to one target (the engine's format), in run `run`.
fn event_for(
    t: &TargetConfig,
    run: &str,
    u: &Stored,
    op: ChangeOp,
) -> Result<OutMessage, ReconcileError> {
    to_message(&change_event(t, run, ResourceKind::User, u, op))
}

/// The change event for one resource to one target, from reconcile run `run` (the
/// engine records its outcome there).
fn change_event(
    t: &TargetConfig,
    run: &str,
    kind: ResourceKind,
    s: &Stored,
    op: ChangeOp,
) -> ChangeEvent {
    let mut e = ChangeEvent::new(kind, s.id(), op, Origin::Reconcile);
    e.resource = Some(s.resource.clone());
    e.version = s.version;
    e.only_targets = vec![t.id.clone()];
    e.run = Some(run.to_string());
    e
}

fn to_message(e: &ChangeEvent) -> Result<OutMessage, ReconcileError> {
    e.to_message()
        .map_err(|e| ReconcileError::Queue(format!("event encoding: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_add_up_and_read_well() {
        let mut a = ReconcileCounts::default();
        let mut b = ReconcileCounts {
            checked: 2,
            ..Default::default()
        };
        b.groups.checked = 3;
        b.groups.members_added = 1;
        a.add(&b);
        a.add(&b);
        assert_eq!(
            (a.checked, a.groups.checked, a.groups.members_added),
            (4, 6, 2)
        );
        let s = a.summary();
        assert!(s.starts_with("checked=4 created=0"), "{s}");
        assert!(s.contains("groups: checked=6 created=0"), "{s}");
        a.groups.unsupported = true;
        assert!(a.summary().contains("groups: not supported"));
        // A checkpoint written before groups were reconciled still reads.
        let old: ReconcileCounts = serde_json::from_value(json!({"checked": 1, "created": 0,
            "updated": 0, "deactivated": 0, "deleted": 0, "orphaned": 0, "unchanged": 1,
            "failed": 0}))
        .unwrap();
        assert_eq!(old.groups, GroupCounts::default());
        // `unsupported` appears in the JSON only when true.
        let v = serde_json::to_value(ReconcileCounts::default()).unwrap();
        assert!(v["groups"].get("unsupported").is_none(), "{v}");
    }
}
