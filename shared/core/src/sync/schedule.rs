//! The schedule: one cycle pulls every pull-mode source, reconciles every `scheduled`
//! target, writes the outcome of runs that became settled (earlier reconciles and
//! on-demand syncs whose changes were still queued), resends outbox records whose first
//! send did not happen and reports dead letters. `scheduled-sync` runs one cycle per EventBridge event, `provisync serve` one
//! every `PROVISYNC_SCHEDULE_SECONDS`, `POST /admin/schedule/run` one on demand.

use std::sync::Arc;
use std::time::Duration;

use crate::config::ConfigError;
use crate::event::{OutboxError, sweep_outbox_until};
use crate::queue::{Queue, QueueError};
use crate::store::Store;
use crate::sync::PHASE_GRACE;
use crate::sync::pull::Puller;
use crate::sync::reconcile::Reconciler;

/// Oldest age of an outbox record the schedule resends (younger ones may be being
/// published by the request that wrote them).
pub const OUTBOX_MIN_AGE: Duration = Duration::from_secs(60);
/// Time the schedule spends resending the outbox at most (`scheduled-sync` runs for up
/// to 300 s); what is left waits for the next cycle.
pub const OUTBOX_SWEEP_BUDGET: Duration = Duration::from_secs(120);

/// Time one scheduled cycle takes at most (the `scheduled-sync` function's timeout is
/// 300 s): pull gets the first quarter, reconcile up to three quarters, the outbox sweep
/// what is left. A cycle ends within its budget plus [`PHASE_GRACE`].
pub const CYCLE_BUDGET: Duration = Duration::from_secs(240);

/// The budget to give a cycle (or a reconcile) that must end `margin` before `deadline`
/// (an invocation's; `None`: no deadline): `requested`, cut to what is left of the time
/// once [`PHASE_GRACE`] and the margin are kept in hand. Zero when nothing is left (the
/// cycle then still makes one page of progress per phase, within the grace).
pub fn budget_within(
    requested: Duration,
    deadline: Option<tokio::time::Instant>,
    margin: Duration,
) -> Duration {
    match deadline {
        None => requested,
        Some(d) => d
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(PHASE_GRACE + margin)
            .min(requested),
    }
}

/// What one scheduled cycle did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CycleReport {
    /// One report per pulled source.
    pub pulled: Vec<crate::sync::pull::PullReport>,
    /// One report per reconciled target (`scheduled` mode).
    pub reconciled: Vec<crate::sync::reconcile::ReconcileReport>,
    /// Messages in the dead-letter queue.
    pub dead_letters: usize,
    /// Change events resent from the outbox (their first send did not happen).
    pub outbox_resent: usize,
    /// `false` when the sweep ran out of time and left records for the next cycle.
    pub outbox_complete: bool,
    /// Outbox records the queue refuses for good (too large): skipped and left in place.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbox_unsendable: Vec<String>,
    /// Runs of earlier cycles (or on-demand syncs) whose outcomes became all known, and
    /// whose outcome this cycle wrote to the audit log.
    #[serde(default)]
    pub runs_settled: usize,
    /// Deferred deletions (`delete_mode`) of each target that has some: deleted, held,
    /// restored, waiting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred_deletes: Vec<crate::sync::reconcile::DeferredCounts>,
}

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error("reconcile: {0}")]
    Reconcile(#[from] crate::sync::reconcile::ReconcileError),
    #[error("pull: {0}")]
    Pull(#[from] crate::sync::pull::PullError),
    #[error("dead-letter report: {0}")]
    Queue(#[from] QueueError),
    #[error("outbox sweep: {0}")]
    Outbox(#[from] OutboxError),
}

/// What a full cycle needs: the store and queue, the reconciler and the puller. Built by
/// the composition root ([`crate::hub::Hub::schedule`]).
#[derive(Clone)]
pub struct Schedule {
    /// Moved to the current key layout before each cycle (a no-op once done).
    pub directory: crate::directory::Directory,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub reconciler: Reconciler,
    pub puller: Puller,
    /// With a value, every phase is stopped this long after its deadline ([`Self::bounded`]).
    pub grace: Option<Duration>,
}

impl Schedule {
    /// This schedule for an invocation that ends at a fixed time (Lambda): every phase (a
    /// source's pull, a target's reconcile, the dead-letter count and outbox sweep) is
    /// stopped [`PHASE_GRACE`] after its deadline if a call is still in flight, so a cycle
    /// given a budget ends within the budget plus the grace, its leases released.
    pub fn bounded(&self) -> Schedule {
        Schedule {
            directory: self.directory.clone(),
            store: self.store.clone(),
            queue: self.queue.clone(),
            reconciler: self.reconciler.bounded(),
            puller: self.puller.bounded(),
            grace: Some(PHASE_GRACE),
        }
    }
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("store", &self.store.backend())
            .field("queue", &self.queue.backend())
            .finish_non_exhaustive()
    }
}

/// `PROVISYNC_SCHEDULE_SECONDS`: the period of the schedule inside `provisync serve`
/// (default 300 = every five minutes, like the template's EventBridge rule; `0` = off).
pub fn schedule_period_from_env() -> Result<Option<Duration>, ConfigError> {
    parse_schedule_period(std::env::var("PROVISYNC_SCHEDULE_SECONDS").ok().as_deref())
}

fn parse_schedule_period(v: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(Some(Duration::from_secs(300))),
        Some(v) => match v.parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(Duration::from_secs(n))),
            Err(_) => Err(ConfigError::Invalid(
                "PROVISYNC_SCHEDULE_SECONDS must be a whole number of seconds (0 = off)".into(),
            )),
        },
    }
}

/// One full scheduled cycle: pull every pull source, reconcile every `scheduled` target,
/// then sweep the outbox and report dead letters ([`run_sync_cycle`]), all within
/// `budget` (each phase may finish its call in flight for [`PHASE_GRACE`] past its share;
/// the cycle ends by `budget + PHASE_GRACE` when [`Schedule::bounded`]). A source or target that fails is reported
/// in its own entry and does not stop the others; an error is returned only when a step
/// could not run at all.
pub async fn run_schedule(s: &Schedule, budget: Duration) -> Result<CycleReport, CycleError> {
    let start = tokio::time::Instant::now();
    let mut first_error: Option<CycleError> = None;
    // A store written by an earlier version moves to the current key layout here (once;
    // afterwards two small reads), within a tenth of the budget, resumed next cycle.
    let migrate_until = crate::store::now_epoch() + (budget / 10).as_secs().max(1) as i64;
    match s.directory.migrate_layout(Some(migrate_until)).await {
        Ok(r) if r.users_moved + r.groups_moved > 0 || !r.complete => {
            tracing::info!(report = %r, "directory key layout")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "directory key layout migration failed"),
    }
    let mut pulled = Vec::new();
    match s.puller.pull_all(start + budget / 4).await {
        Ok(r) => pulled = r,
        Err(e) => {
            tracing::error!(error = %e, "pull failed");
            first_error = Some(e.into());
        }
    }
    let mut reconciled = Vec::new();
    match s
        .reconciler
        .reconcile_scheduled(start + budget * 3 / 4)
        .await
    {
        Ok(list) => reconciled = list,
        Err(e) => {
            tracing::error!(error = %e, "reconcile failed");
            first_error.get_or_insert(e.into());
        }
    }
    // Runs left pending by earlier cycles and on-demand syncs: their outcome, once known.
    let runs_settled = match s.reconciler.settle_open_runs().await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "settling open runs failed");
            first_error.get_or_insert(e.into());
            0
        }
    };
    // Deferred deletions that came due (`delete_mode`), unless their users came back.
    let deferred_deletes = match s.reconciler.delete_due(crate::store::now_epoch()).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "deferred deletions failed");
            first_error.get_or_insert(e.into());
            Vec::new()
        }
    };
    let mut report =
        match sync_cycle_until(s.store.as_ref(), s.queue.as_ref(), start + budget, s.grace).await {
            Ok(r) => r,
            Err(e) => {
                first_error.get_or_insert(e);
                CycleReport::default()
            }
        };
    report.pulled = pulled;
    report.reconciled = reconciled;
    report.runs_settled = runs_settled;
    report.deferred_deletes = deferred_deletes;
    tracing::info!(
        sources = report.pulled.len(),
        targets = report.reconciled.len(),
        outbox_resent = report.outbox_resent,
        dead_letters = report.dead_letters,
        ms = start.elapsed().as_millis() as u64,
        "sync cycle done"
    );
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// The outbox and dead-letter part of a cycle: reports the dead letters, then resends
/// outbox records older than [`OUTBOX_MIN_AGE`] for at most `budget` (checked between
/// pages; both steps are stopped [`PHASE_GRACE`] after it). Both steps run even if one
/// fails; the first failure is returned (after logging), so the invocation shows as
/// failed.
pub async fn run_sync_cycle(
    store: &dyn Store,
    queue: &dyn Queue,
    budget: Duration,
) -> Result<CycleReport, CycleError> {
    sync_cycle_until(store, queue, tokio::time::Instant::now() + budget, None).await
}

/// [`run_sync_cycle`] until an instant (a cycle's end, whatever the earlier phases took),
/// each step stopped `grace` after it if given.
async fn sync_cycle_until(
    store: &dyn Store,
    queue: &dyn Queue,
    deadline: tokio::time::Instant,
    grace: Option<Duration>,
) -> Result<CycleReport, CycleError> {
    let mut report = CycleReport::default();
    let mut first_error: Option<CycleError> = None;
    let stop = grace.map(|grace| deadline + grace);
    let count = crate::sync::until(stop, queue.dead_letter_count())
        .await
        .unwrap_or_else(|| {
            Err(QueueError::Unavailable(
                "the dead-letter count did not answer in time".into(),
            ))
        });
    match count {
        Ok(n) => {
            report.dead_letters = n;
            if n > 0 {
                tracing::warn!(
                    dead_letters = n,
                    backend = queue.backend(),
                    "dead letters waiting: inspect and redrive"
                );
            } else {
                tracing::info!(
                    dead_letters = n,
                    backend = queue.backend(),
                    "no dead letters"
                );
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "dead-letter count failed");
            first_error = Some(e.into());
        }
    }
    // The deadline is checked between pages; the stop covers a call that hangs.
    match crate::sync::until(
        stop,
        sweep_outbox_until(store, queue, OUTBOX_MIN_AGE, Some(deadline)),
    )
    .await
    {
        Some(Ok(sweep)) => {
            report.outbox_resent = sweep.sent;
            report.outbox_complete = sweep.complete;
            if !sweep.unsendable.is_empty() {
                tracing::error!(
                    events = ?sweep.unsendable,
                    "outbox records the queue refuses (too large): skipped"
                );
            }
            report.outbox_unsendable = sweep.unsendable;
            if !sweep.complete {
                tracing::warn!(
                    resent = sweep.sent,
                    "outbox sweep ran out of time: the rest waits for the next cycle"
                );
            } else if sweep.sent > 0 {
                tracing::info!(resent = sweep.sent, "outbox: resent change events");
            }
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "outbox sweep failed");
            first_error.get_or_insert(e.into());
        }
        None => {
            tracing::warn!("outbox sweep stopped: a call did not answer in time");
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn budgets_fit_inside_the_deadline() {
        let now = tokio::time::Instant::now();
        let margin = Duration::from_secs(3);
        // No deadline: what was asked.
        assert_eq!(budget_within(CYCLE_BUDGET, None, margin), CYCLE_BUDGET);
        // Plenty of time: what was asked.
        let late = now + Duration::from_secs(900);
        assert_eq!(
            budget_within(CYCLE_BUDGET, Some(late), margin),
            CYCLE_BUDGET
        );
        // A 29 s API function asked for 240 s: what is left, less the grace and margin.
        let api = now + Duration::from_secs(29);
        assert_eq!(
            budget_within(CYCLE_BUDGET, Some(api), margin),
            Duration::from_secs(29) - PHASE_GRACE - margin
        );
        // Nothing left, or the deadline already passed: zero, never a panic.
        assert_eq!(
            budget_within(CYCLE_BUDGET, Some(now + Duration::from_secs(5)), margin),
            Duration::ZERO
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            budget_within(CYCLE_BUDGET, Some(api), margin),
            Duration::ZERO
        );
    }

    #[test]
    fn schedule_period_parses() {
        assert_eq!(
            parse_schedule_period(None).unwrap(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_schedule_period(Some("0")).unwrap(), None);
        assert_eq!(
            parse_schedule_period(Some(" 30 ")).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert!(parse_schedule_period(Some("-1")).is_err());
        assert!(parse_schedule_period(Some("5m")).is_err());
    }

    #[tokio::test]
    async fn cycle_reports_dead_letters_and_sweeps_the_outbox() {
        use crate::event::{ChangeEvent, ChangeOp, Origin, outbox_write};
        use crate::queue::OutMessage;
        use crate::queue::store_queue::{StoreQueue, StoreQueueSettings};
        use provisync_scim::ResourceKind;
        let store: Arc<dyn Store> = Arc::new(crate::store::embedded::EmbeddedStore::in_memory());
        let q = StoreQueue::new(
            store.clone(),
            "cycle",
            StoreQueueSettings {
                visibility_timeout: Duration::from_secs(30),
                max_receive_count: 1,
            },
        );
        let budget = OUTBOX_SWEEP_BUDGET;
        assert_eq!(
            run_sync_cycle(store.as_ref(), &q, budget).await.unwrap(),
            CycleReport {
                dead_letters: 0,
                outbox_resent: 0,
                outbox_complete: true,
                ..Default::default()
            }
        );
        q.send(vec![OutMessage::new("g", "e1", "{}")])
            .await
            .unwrap();
        let d = q.receive(1, Duration::ZERO).await.unwrap();
        q.retry_later(&d[0].receipt, Duration::ZERO).await.unwrap();
        assert!(q.receive(1, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(
            run_sync_cycle(store.as_ref(), &q, budget)
                .await
                .unwrap()
                .dead_letters,
            1
        );

        // Outbox records whose send never happened: an old one is resent, a fresh one
        // (its request may be publishing it right now) is left alone.
        let mut old = ChangeEvent::new(ResourceKind::User, "u-old", ChangeOp::Create, Origin::Scim);
        old.occurred_at = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
        let fresh = ChangeEvent::new(ResourceKind::User, "u-new", ChangeOp::Create, Origin::Scim);
        store
            .transact(vec![
                outbox_write(&old).unwrap(),
                outbox_write(&fresh).unwrap(),
            ])
            .await
            .unwrap();
        let report = run_sync_cycle(store.as_ref(), &q, budget).await.unwrap();
        assert_eq!(report.outbox_resent, 1);
        assert!(report.outbox_complete);
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].group_id, "u-old");
        assert_eq!(got[0].dedup_id, old.id);
        // Resent once: the next cycle finds nothing old.
        let report = run_sync_cycle(store.as_ref(), &q, budget).await.unwrap();
        assert_eq!(report.outbox_resent, 0);
    }

    #[tokio::test]
    async fn sweep_stops_at_its_deadline() {
        use crate::event::{ChangeEvent, ChangeOp, Origin, outbox_write};
        use crate::queue::store_queue::{StoreQueue, StoreQueueSettings};
        use provisync_scim::ResourceKind;
        let store: Arc<dyn Store> = Arc::new(crate::store::embedded::EmbeddedStore::in_memory());
        let q = StoreQueue::new(store.clone(), "t", StoreQueueSettings::default());
        // 150 old records: two pages of 100.
        let writes = (0..150)
            .map(|i| {
                let mut e = ChangeEvent::new(
                    ResourceKind::User,
                    &format!("u{i}"),
                    ChangeOp::Create,
                    Origin::Scim,
                );
                e.occurred_at = "2020-01-01T00:00:00Z".into();
                outbox_write(&e).unwrap()
            })
            .collect::<Vec<_>>();
        for chunk in writes.chunks(crate::store::MAX_TRANSACT_ITEMS) {
            store.transact(chunk.to_vec()).await.unwrap();
        }
        // No time at all: the first page is still sent, then the sweep stops.
        let report = run_sync_cycle(store.as_ref(), &q, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.outbox_resent, 100);
        assert!(!report.outbox_complete);
        let report = run_sync_cycle(store.as_ref(), &q, OUTBOX_SWEEP_BUDGET)
            .await
            .unwrap();
        assert_eq!(report.outbox_resent, 50);
        assert!(report.outbox_complete);
    }
}
