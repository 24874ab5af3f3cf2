//! Driving one run: the lease, the phases in order (user listing, missing users, group
//! listing, missing groups), suspending at the deadline, waiting for the outcomes of what
//! it queued, and the report.

use std::sync::Arc;
use std::time::Duration;

use super::checkpoint::{Checkpoint, Phase, SeenOf, seen_key};
use super::lease::Lease;
use super::patient::Patient;
use super::{
    GroupCounts, PlanSink, ReconcileCounts, ReconcileError, ReconcilePlan, ReconcileReport,
    Reconciler, RunState, SEND_CHUNK,
};
use crate::connector::{Connector, listing_position_lost, listing_unsupported};
use crate::sync::audit::{AuditEntry, AuditOp, AuditStatus};
use crate::sync::plan::Plan;
use crate::sync::runs::{RunKind, RunRecord, Sent, Settlement, Tally, append_problems};
use crate::target::TargetConfig;

impl Reconciler {
    /// Reconciles one target until done or until `deadline`, under its lease, and waits
    /// for the outcomes of what it queued until `deadline` too. The deadline is checked
    /// between pages (a run always reads at least one page). Bounded
    /// ([`Reconciler::bounded`]), a call still in flight [`crate::sync::PHASE_GRACE`] after
    /// it is abandoned, the run reported failed (its checkpoint kept for the next cycle)
    /// and the lease released, so a target that hangs never leaves the lease held past the
    /// invocation.
    pub async fn reconcile_target(
        &self,
        t: &TargetConfig,
        deadline: tokio::time::Instant,
    ) -> ReconcileReport {
        self.reconcile_target_until(t, deadline, deadline).await
    }

    /// Compares until `deadline`; then, if the comparison is done, waits for the
    /// outcomes of the changes the run queued until `settle_by` (a run that is not done
    /// reports the outcomes known so far). Logs and audits how it ended.
    pub async fn reconcile_target_until(
        &self,
        t: &TargetConfig,
        deadline: tokio::time::Instant,
        settle_by: tokio::time::Instant,
    ) -> ReconcileReport {
        let compared = self.compare_target(t, deadline).await;
        self.settle(t, compared, settle_by).await
    }

    /// The comparison of one target, under its lease: how it stopped.
    async fn compare_target(
        &self,
        t: &TargetConfig,
        deadline: tokio::time::Instant,
    ) -> Result<RunOutcome, Box<FailedRun>> {
        if self.planning() {
            // A plan writes nothing, not even a lease.
            return self.run(t, deadline).await;
        }
        let stop = self.grace.map(|grace| deadline + grace);
        // Only a process killed mid-run leaves the lease behind: it expires shortly after
        // the run would have been stopped (or, unbounded, two minutes after its deadline).
        let lease_ttl = match stop {
            Some(stop) => {
                stop.saturating_duration_since(tokio::time::Instant::now())
                    + Duration::from_secs(30)
            }
            None => {
                deadline.saturating_duration_since(tokio::time::Instant::now())
                    + Duration::from_secs(120)
            }
        };
        let lease = match Lease::acquire(self.store.as_ref(), &t.id, lease_ttl).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                tracing::info!(target_id = %t.id, "reconcile skipped: another cycle holds the target");
                return Ok(RunOutcome {
                    state: RunState::Busy,
                    counts: ReconcileCounts::default(),
                    resumed: false,
                    pages: 0,
                    run: None,
                });
            }
            Err(e) => return Err(Box::new(FailedRun::before_start(e.into()))),
        };
        let result = match crate::sync::until(stop, self.run(t, deadline)).await {
            Some(result) => result,
            None => Err(Box::new(FailedRun::before_start(ReconcileError::Stopped))),
        };
        if let Err(e) = lease.release(self.store.as_ref()).await {
            tracing::warn!(target_id = %t.id, error = %e, "lease not released (it expires)");
        }
        result
    }

    /// What a reconcile of `t` would send now, compared until `deadline`: the changes
    /// named and counted, nothing sent to the target, nothing written in the hub (no
    /// lease, no checkpoint, no links, no audit entry). A plan that runs out of time is
    /// `suspended` and names what it found so far.
    pub async fn plan_target(
        &self,
        t: &TargetConfig,
        deadline: tokio::time::Instant,
    ) -> ReconcilePlan {
        let sink = Arc::new(PlanSink {
            target: t.clone(),
            changes: std::sync::Mutex::new(Vec::new()),
        });
        let planner = Reconciler {
            plan: Some(sink.clone()),
            ..self.clone()
        };
        let (state, checked, error) = match planner.run(t, deadline).await {
            Ok(o) => (o.state, o.counts.checked, None),
            Err(f) => (
                RunState::Failed,
                f.counts.checked,
                Some(f.error.to_string()),
            ),
        };
        drop(planner);
        let changes = std::mem::take(&mut *sink.changes.lock().unwrap_or_else(|e| e.into_inner()));
        ReconcilePlan {
            target: t.id.clone(),
            state,
            checked,
            error,
            plan: Plan::from_changes(changes),
        }
    }

    /// The outcomes of what the run queued (waited for until `settle_by` when the
    /// comparison is done), the run's record kept for the schedule while they are not
    /// all known, and the report, logged and audited.
    async fn settle(
        &self,
        t: &TargetConfig,
        result: Result<RunOutcome, Box<FailedRun>>,
        settle_by: tokio::time::Instant,
    ) -> ReconcileReport {
        let (state, counts, resumed, pages, error, run) = match result {
            Ok(o) => (o.state, o.counts, o.resumed, o.pages, None, o.run),
            Err(failed) => {
                let f = *failed;
                (
                    RunState::Failed,
                    f.counts,
                    f.resumed,
                    f.pages,
                    Some(f.error.to_string()),
                    f.run,
                )
            }
        };
        let (state, counts, problems, run) = match run.filter(|r| r.sent != Sent::default()) {
            None => (state, counts, Vec::new(), None),
            Some(run) => {
                let tally = if run.finished {
                    self.runs.wait(&run, settle_by).await
                } else {
                    self.runs.tally(&run.id).await
                };
                let tally = tally.unwrap_or_else(|e| {
                    tracing::warn!(target_id = %t.id, error = %e, "run outcomes not read: reported queued");
                    Tally::default()
                });
                let settlement = tally.settlement(run.sent);
                let state = match (state, settlement) {
                    (RunState::Complete, Settlement::Confirmed) => RunState::Complete,
                    (RunState::Complete, Settlement::WithFailures) => {
                        RunState::CompleteWithFailures
                    }
                    (RunState::Complete, Settlement::Pending) => RunState::Pending,
                    (other, _) => other,
                };
                // Open (for the schedule to settle) until finished and every outcome known.
                let open = !run.finished || settlement == Settlement::Pending;
                if let Err(e) = self.runs.save(&run, open).await {
                    tracing::warn!(target_id = %t.id, error = %e, "run record not written");
                }
                let counts = counts.with_outcomes(run.sent, &tally);
                (state, counts, tally.problems, Some(run.id))
            }
        };
        let summary = counts.summary();
        let (status, mut detail) = match state {
            RunState::Complete => (AuditStatus::Delivered, format!("complete: {summary}")),
            RunState::CompleteWithFailures => (
                AuditStatus::Failed,
                format!("complete with failures: {summary}"),
            ),
            RunState::Pending => (
                AuditStatus::Queued,
                format!(
                    "compared; {} change(s) still queued, their outcome is recorded when known (run {}): {summary}",
                    counts.queued + counts.groups.queued,
                    run.as_deref().unwrap_or_default()
                ),
            ),
            RunState::Suspended => (
                AuditStatus::Queued,
                format!("out of time, continues next cycle: {summary}"),
            ),
            RunState::Busy => (AuditStatus::Skipped, "another cycle holds the lease".into()),
            RunState::Unsupported => (
                AuditStatus::Skipped,
                "skipped: this kind of target cannot be listed".into(),
            ),
            RunState::Failed => (
                AuditStatus::Failed,
                format!("{}: {summary}", error.clone().unwrap_or_default()),
            ),
        };
        append_problems(&mut detail, &problems);
        match state {
            RunState::Failed => {
                tracing::warn!(target_id = %t.id, error = error.as_deref().unwrap_or(""), checked = counts.checked, "reconcile failed")
            }
            _ => tracing::info!(
                target_id = %t.id,
                state = ?state,
                resumed,
                pages,
                checked = counts.checked,
                created = counts.created,
                updated = counts.updated,
                deactivated = counts.deactivated,
                deleted = counts.deleted,
                orphaned = counts.orphaned,
                unchanged = counts.unchanged,
                refused = counts.refused,
                failed = counts.failed,
                queued = counts.queued,
                groups = %counts.groups.summary(),
                "reconcile"
            ),
        }
        let entry = AuditEntry::new(&t.id, AuditOp::Reconcile, status).detail(detail);
        if let Err(e) = self.audit.record(entry).await {
            tracing::warn!(error = %e, "reconcile audit entry not written");
        }
        ReconcileReport {
            target: t.id.clone(),
            state,
            counts,
            resumed,
            pages,
            error,
            run,
            problems,
        }
    }

    async fn run(
        &self,
        t: &TargetConfig,
        deadline: tokio::time::Instant,
    ) -> Result<RunOutcome, Box<FailedRun>> {
        let built = (self.factory)(t)
            .map_err(|e| Box::new(FailedRun::before_start(ReconcileError::Setup(e.0))))?;
        // Every call to the target paced as delivery's are (one pace per target), and
        // tried again after a 429 or 503 while the deadline allows.
        let paced = self.paced(t, built.as_ref());
        let patient = Patient {
            inner: &paced,
            deadline,
        };
        let connector: &dyn Connector = &patient;
        let (mut cp, resumed) = match self.load_checkpoint(&t.id).await {
            Ok(Some(cp)) => (cp, true),
            Ok(None) => (
                Checkpoint {
                    run: uuid::Uuid::now_v7().simple().to_string(),
                    started_at: chrono::Utc::now().to_rfc3339(),
                    phase: Phase::Listing,
                    cursor: None,
                    pages: 0,
                    group_pages: 0,
                    missing_after: None,
                    counts: ReconcileCounts::default(),
                    sent: Sent::default(),
                },
                false,
            ),
            Err(e) => return Err(Box::new(FailedRun::before_start(e))),
        };
        let mut pages_now = 0;
        let mut group_pages_now = 0;
        let record = |cp: &Checkpoint, finished: bool| RunRecord {
            finished,
            sent: cp.sent,
            started_at: cp.started_at.clone(),
            ..RunRecord::new(&cp.run, RunKind::Reconcile, &t.id)
        };
        let fail = |error: ReconcileError, cp: &Checkpoint, pages: u32| {
            Err(Box::new(FailedRun {
                error,
                counts: cp.counts.clone(),
                resumed,
                pages,
                run: Some(record(cp, false)),
            }))
        };
        let stop = |state: RunState, cp: &Checkpoint, pages: u32| {
            Ok(RunOutcome {
                state,
                counts: cp.counts.clone(),
                resumed,
                pages,
                run: Some(record(cp, state == RunState::Complete)),
            })
        };
        let index = match self.hub_index(t).await {
            Ok(i) => i,
            Err(e) => return fail(e, &cp, 0),
        };
        let mut seen = match self.load_seen(&t.id, &cp, SeenOf::Users).await {
            Ok(s) => s,
            Err(e) => return fail(e, &cp, 0),
        };
        if cp.phase == Phase::Listing {
            loop {
                if pages_now > 0 && tokio::time::Instant::now() >= deadline {
                    if let Err(e) = self.save_checkpoint(&t.id, &cp).await {
                        return fail(e, &cp, pages_now);
                    }
                    return stop(RunState::Suspended, &cp, pages_now);
                }
                let page = match connector.list_users(cp.cursor.as_deref()).await {
                    Ok(p) => p,
                    Err(e) if cp.pages == 0 && e == listing_unsupported() => {
                        // Nothing to compare with: not a failure, and nothing to resume.
                        return stop(RunState::Unsupported, &cp, 0);
                    }
                    Err(e) if e == listing_position_lost() => {
                        // Nowhere to resume: the next run starts over.
                        let _ = self.clear_checkpoint(&t.id).await;
                        return fail(e.into(), &cp, pages_now);
                    }
                    Err(e) => {
                        // Keep what was done: the next cycle retries this page.
                        let _ = self.save_checkpoint(&t.id, &cp).await;
                        return fail(e.into(), &cp, pages_now);
                    }
                };
                pages_now += 1;
                let mut counts = ReconcileCounts::default();
                let (seen_now, sent) = match self
                    .reconcile_page(t, &cp.run, connector, &index, &page.resources, &mut counts)
                    .await
                {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = self.save_checkpoint(&t.id, &cp).await;
                        return fail(e, &cp, pages_now);
                    }
                };
                cp.counts.add(&counts);
                cp.sent.users += sent;
                cp.pages += 1;
                cp.cursor = page.next.clone();
                if cp.cursor.is_none() {
                    cp.phase = Phase::Missing;
                }
                // The page's seen ids and the advanced cursor, together.
                let key = seen_key(&t.id, &cp.run, SeenOf::Users, cp.pages);
                if let Err(e) = self.save_page(&t.id, &cp, key, &seen_now).await {
                    return fail(e, &cp, pages_now);
                }
                seen.extend(seen_now);
                if cp.phase == Phase::Missing {
                    break;
                }
            }
        }
        // Hub users in scope the listing did not show: create them.
        if cp.phase == Phase::Missing {
            let missing = index.missing(&seen, cp.missing_after.as_deref());
            for chunk in missing.chunks(SEND_CHUNK) {
                if tokio::time::Instant::now() >= deadline && pages_now > 0 {
                    if let Err(e) = self.save_checkpoint(&t.id, &cp).await {
                        return fail(e, &cp, pages_now);
                    }
                    return stop(RunState::Suspended, &cp, pages_now);
                }
                match self.queue_creates(t, &cp.run, chunk).await {
                    Ok(sent) => cp.sent.users += sent,
                    Err(e) => {
                        let _ = self.save_checkpoint(&t.id, &cp).await;
                        return fail(e, &cp, pages_now);
                    }
                }
                cp.missing_after = chunk.last().cloned();
            }
            cp.phase = Phase::GroupListing;
            cp.cursor = None;
            cp.missing_after = None;
        }

        // Groups, after the users (their members are users). The first group page is
        // read in any cycle that gets here, as the first user page is.
        let groups = match self.group_index(t).await {
            Ok(g) => g,
            Err(e) => {
                let _ = self.save_checkpoint(&t.id, &cp).await;
                return fail(e, &cp, pages_now);
            }
        };
        // Users created in this run join their groups through their creates.
        let created_users = index.missing(&seen, None);
        let members = match self.member_links(t, &created_users).await {
            Ok(m) => m,
            Err(e) => {
                let _ = self.save_checkpoint(&t.id, &cp).await;
                return fail(e, &cp, pages_now);
            }
        };
        drop(seen);
        let mut seen_groups = match self.load_seen(&t.id, &cp, SeenOf::Groups).await {
            Ok(s) => s,
            Err(e) => return fail(e, &cp, pages_now),
        };
        if cp.phase == Phase::GroupListing {
            loop {
                if group_pages_now > 0 && tokio::time::Instant::now() >= deadline {
                    if let Err(e) = self.save_checkpoint(&t.id, &cp).await {
                        return fail(e, &cp, pages_now);
                    }
                    return stop(RunState::Suspended, &cp, pages_now);
                }
                let page = match connector.list_groups(cp.cursor.as_deref()).await {
                    Ok(p) => p,
                    Err(e) if cp.group_pages == 0 && e == listing_unsupported() => {
                        // Users done; groups cannot be read here: say so, and finish.
                        cp.counts.groups.unsupported = true;
                        if let Err(e) = self.clear_checkpoint(&t.id).await {
                            tracing::warn!(target_id = %t.id, error = %e, "reconcile checkpoint not cleared");
                        }
                        return stop(RunState::Complete, &cp, pages_now);
                    }
                    Err(e) if e == listing_position_lost() => {
                        let _ = self.clear_checkpoint(&t.id).await;
                        return fail(e.into(), &cp, pages_now);
                    }
                    Err(e) => {
                        let _ = self.save_checkpoint(&t.id, &cp).await;
                        return fail(e.into(), &cp, pages_now);
                    }
                };
                group_pages_now += 1;
                let mut counts = GroupCounts::default();
                let (seen_now, sent) = match self
                    .reconcile_group_page(
                        t,
                        &cp.run,
                        connector,
                        &groups,
                        &members,
                        &page.resources,
                        &mut counts,
                    )
                    .await
                {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = self.save_checkpoint(&t.id, &cp).await;
                        return fail(e, &cp, pages_now);
                    }
                };
                cp.counts.groups.add(&counts);
                cp.sent.groups += sent;
                cp.group_pages += 1;
                cp.cursor = page.next.clone();
                if cp.cursor.is_none() {
                    cp.phase = Phase::GroupMissing;
                }
                let key = seen_key(&t.id, &cp.run, SeenOf::Groups, cp.group_pages);
                if let Err(e) = self.save_page(&t.id, &cp, key, &seen_now).await {
                    return fail(e, &cp, pages_now);
                }
                seen_groups.extend(seen_now);
                if cp.phase == Phase::GroupMissing {
                    break;
                }
            }
        }
        // Hub groups the listing did not show: create them, with their members.
        let missing = groups.missing(&seen_groups, cp.missing_after.as_deref());
        for chunk in missing.chunks(SEND_CHUNK) {
            if tokio::time::Instant::now() >= deadline && pages_now + group_pages_now > 0 {
                if let Err(e) = self.save_checkpoint(&t.id, &cp).await {
                    return fail(e, &cp, pages_now);
                }
                return stop(RunState::Suspended, &cp, pages_now);
            }
            match self.queue_group_creates(t, &cp.run, chunk).await {
                Ok(sent) => cp.sent.groups += sent,
                Err(e) => {
                    let _ = self.save_checkpoint(&t.id, &cp).await;
                    return fail(e, &cp, pages_now);
                }
            }
            cp.missing_after = chunk.last().cloned();
        }
        if let Err(e) = self.clear_checkpoint(&t.id).await {
            tracing::warn!(target_id = %t.id, error = %e, "reconcile checkpoint not cleared");
        }
        stop(RunState::Complete, &cp, pages_now)
    }

    /// Reconciles every enabled target in `scheduled` mode, each with what is left of
    /// the time: every comparison first, then the waits for their outcomes (delivery
    /// runs meanwhile), all until `deadline`.
    pub async fn reconcile_scheduled(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<ReconcileReport>, ReconcileError> {
        let targets = self
            .targets
            .list()
            .await
            .map_err(|e| ReconcileError::Setup(format!("targets: {e}")))?;
        let scheduled: Vec<&TargetConfig> = targets
            .iter()
            .filter(|t| t.enabled && t.mode == crate::target::DeliveryMode::Scheduled)
            .collect();
        let mut compared = Vec::new();
        for t in &scheduled {
            compared.push(self.compare_target(t, deadline).await);
        }
        let mut out = Vec::new();
        for (t, c) in scheduled.into_iter().zip(compared) {
            out.push(self.settle(t, c, deadline).await);
        }
        Ok(out)
    }

    /// Settles the runs the schedule left open whose outcomes are now all known: each
    /// one's outcome goes to the audit log. Returns how many.
    pub async fn settle_open_runs(&self) -> Result<usize, ReconcileError> {
        Ok(self.runs.settle_open(&self.audit).await?)
    }
}

/// How a run that did not fail stopped: done, out of time, or not possible here.
struct RunOutcome {
    state: RunState,
    /// The counts of the whole run so far (this cycle and the cycles before it).
    counts: ReconcileCounts,
    /// Whether this cycle continued a run a checkpoint left.
    resumed: bool,
    /// User pages this cycle read.
    pages: u32,
    /// The run, as its record says (`None` when nothing ran: busy).
    run: Option<RunRecord>,
}

/// A failed run: the error, the counts so far, resumed, the user pages this cycle read
/// (returned boxed: the counts are large).
struct FailedRun {
    error: ReconcileError,
    counts: ReconcileCounts,
    resumed: bool,
    pages: u32,
    run: Option<RunRecord>,
}

impl FailedRun {
    /// A run that failed before it read anything (no lease, no connector, no
    /// checkpoint).
    fn before_start(error: ReconcileError) -> Self {
        FailedRun {
            error,
            counts: ReconcileCounts::default(),
            resumed: false,
            pages: 0,
            run: None,
        }
    }
}
