//! The domain's reports and records in their wire form ([`provisync_wire`]): the admin
//! API serializes these, and a client reads them without `provisync-core`. A unit test
//! checks that each conversion serializes to the very bytes of the domain type.

use provisync_core::sync::audit::AuditEntry;
use provisync_core::sync::pull::{PullCounts, PullReport};
use provisync_core::sync::reconcile::{GroupCounts, ReconcileCounts, ReconcileReport};
use provisync_core::sync::runs::{KindTally, Problem, RunRecord, Settlement, Tally};
use provisync_core::sync::schedule::CycleReport;
use provisync_wire as wire;

/// The snake_case name a domain enum serializes to (`complete`, `add_members`).
pub(super) fn name_of(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(super) fn audit_entry(e: &AuditEntry) -> wire::AuditEntry {
    wire::AuditEntry {
        at: e.at.clone(),
        event_id: e.event_id.clone(),
        resource_type: e.resource_type.clone(),
        resource_id: e.resource_id.clone(),
        target: e.target.clone(),
        op: e.op.as_str(),
        status: e.status.as_str(),
        detail: e.detail.clone(),
        latency_ms: e.latency_ms,
        actor: e.actor.clone(),
    }
}

fn group_counts(g: &GroupCounts) -> wire::GroupCounts {
    wire::GroupCounts {
        checked: g.checked,
        created: g.created,
        updated: g.updated,
        deleted: g.deleted,
        held: g.held,
        orphaned: g.orphaned,
        unchanged: g.unchanged,
        refused: g.refused,
        failed: g.failed,
        skipped: g.skipped,
        queued: g.queued,
        members_added: g.members_added,
        members_removed: g.members_removed,
        unsupported: g.unsupported,
    }
}

fn reconcile_counts(c: &ReconcileCounts) -> wire::ReconcileCounts {
    wire::ReconcileCounts {
        checked: c.checked,
        created: c.created,
        updated: c.updated,
        deactivated: c.deactivated,
        deleted: c.deleted,
        held: c.held,
        orphaned: c.orphaned,
        unchanged: c.unchanged,
        refused: c.refused,
        failed: c.failed,
        skipped: c.skipped,
        queued: c.queued,
        groups: Some(group_counts(&c.groups)),
    }
}

pub(super) fn reconcile_report(r: &ReconcileReport) -> wire::ReconcileReport {
    wire::ReconcileReport {
        target: r.target.clone(),
        state: name_of(&r.state),
        counts: reconcile_counts(&r.counts),
        resumed: r.resumed,
        pages: r.pages,
        error: r.error.clone(),
        run: r.run.clone(),
        problems: r.problems.iter().map(problem).collect(),
    }
}

pub(super) fn problem(p: &Problem) -> wire::Problem {
    wire::Problem {
        resource_type: p.resource_type.clone(),
        resource_id: p.resource_id.clone(),
        name: p.name.clone(),
        op: p.op.as_str(),
        status: p.status.as_str(),
        detail: p.detail.clone(),
    }
}

fn outcome_counts(sent: u64, k: &KindTally, queued: u64) -> wire::OutcomeCounts {
    wire::OutcomeCounts {
        sent,
        created: k.created,
        updated: k.updated,
        deactivated: k.deactivated,
        deleted: k.deleted,
        skipped: k.skipped,
        refused: k.refused,
        failed: k.failed,
        queued,
        members_added: k.members_added,
        members_removed: k.members_removed,
    }
}

/// Where a run stands: `running` until it has queued everything, then what its
/// outcomes say.
pub(super) fn run_status(run: &RunRecord, tally: &Tally) -> wire::RunStatus {
    let state = if !run.finished {
        "running".to_string()
    } else {
        match tally.settlement(run.sent) {
            Settlement::Confirmed => "complete",
            Settlement::WithFailures => "complete_with_failures",
            Settlement::Pending => "pending",
        }
        .to_string()
    };
    let queued = tally.queued(run.sent);
    wire::RunStatus {
        run: run.id.clone(),
        kind: name_of(&run.kind),
        target: run.target.clone(),
        started_at: run.started_at.clone(),
        state,
        users: outcome_counts(run.sent.users, &tally.users, queued.users),
        groups: outcome_counts(run.sent.groups, &tally.groups, queued.groups),
        follow_ups: (tally.follow_ups.sent > 0).then(|| {
            let f = &tally.follow_ups;
            wire::FollowUpCounts {
                sent: f.sent,
                delivered: f.delivered,
                skipped: f.skipped,
                held: f.held,
                refused: f.refused,
                failed: f.failed,
                queued: f.queued(),
            }
        }),
        problems: tally.problems.iter().map(problem).collect(),
    }
}

fn pull_counts(c: &PullCounts) -> wire::PullCounts {
    wire::PullCounts {
        fetched: c.fetched,
        created: c.created,
        updated: c.updated,
        unchanged: c.unchanged,
        stale: c.stale,
        failed: c.failed,
    }
}

fn pull_report(p: &PullReport) -> wire::PullReport {
    wire::PullReport {
        source: p.source.clone(),
        users: pull_counts(&p.users),
        groups: pull_counts(&p.groups),
        complete: p.complete,
        incremental: p.incremental,
        error: p.error.clone(),
    }
}

pub(super) fn cycle_report(r: &CycleReport) -> wire::CycleReport {
    wire::CycleReport {
        pulled: r.pulled.iter().map(pull_report).collect(),
        reconciled: r.reconciled.iter().map(reconcile_report).collect(),
        dead_letters: r.dead_letters,
        outbox_resent: r.outbox_resent,
        outbox_complete: r.outbox_complete,
        outbox_unsendable: r.outbox_unsendable.clone(),
        runs_settled: r.runs_settled,
        deferred_deletes: r
            .deferred_deletes
            .iter()
            .map(|d| wire::DeferredCounts {
                target: d.target.clone(),
                deleted: d.deleted,
                held: d.held,
                restored: d.restored,
                failed: d.failed,
                waiting: d.waiting,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provisync_core::sync::audit::{AuditOp, AuditStatus};
    use provisync_core::sync::reconcile::{DeferredCounts, RunState};

    fn same_bytes(domain: &impl serde::Serialize, wire: &impl serde::Serialize) {
        assert_eq!(
            serde_json::to_string(domain).unwrap(),
            serde_json::to_string(wire).unwrap()
        );
    }

    fn report(state: RunState, error: Option<&str>, unsupported: bool) -> ReconcileReport {
        ReconcileReport {
            target: "crm".into(),
            state,
            counts: ReconcileCounts {
                checked: 1,
                created: 2,
                updated: 3,
                deactivated: 4,
                deleted: 5,
                held: 24,
                orphaned: 6,
                unchanged: 7,
                refused: 18,
                failed: 8,
                skipped: 19,
                queued: 20,
                groups: GroupCounts {
                    checked: 9,
                    created: 10,
                    updated: 11,
                    deleted: 12,
                    held: 25,
                    orphaned: 13,
                    unchanged: 14,
                    refused: 21,
                    failed: 15,
                    skipped: 22,
                    queued: 23,
                    members_added: 16,
                    members_removed: 17,
                    unsupported,
                },
            },
            resumed: true,
            pages: 3,
            error: error.map(str::to_string),
            run: error.is_none().then(|| "0190f0a1".to_string()),
            problems: if unsupported {
                vec![]
            } else {
                vec![Problem {
                    resource_type: "User".into(),
                    resource_id: "h1".into(),
                    name: if error.is_some() { "" } else { "ada" }.into(),
                    op: AuditOp::Create,
                    status: AuditStatus::Refused,
                    detail: "invalidSyntax".into(),
                }]
            },
        }
    }

    #[test]
    fn reports_serialize_as_the_domain_does() {
        for r in [
            report(RunState::Complete, None, false),
            report(RunState::CompleteWithFailures, None, false),
            report(RunState::Pending, Some("x"), false),
            report(RunState::Failed, Some("boom"), true),
            report(RunState::Unsupported, None, true),
        ] {
            same_bytes(&r, &reconcile_report(&r));
            let back: wire::ReconcileReport =
                serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            assert_eq!(back, reconcile_report(&r));
        }
        let pull = |error: Option<&str>| PullReport {
            source: "site-a".into(),
            users: PullCounts {
                fetched: 1,
                created: 2,
                updated: 3,
                unchanged: 4,
                stale: 5,
                failed: 6,
            },
            groups: PullCounts {
                fetched: 7,
                ..PullCounts::default()
            },
            complete: false,
            incremental: true,
            error: error.map(str::to_string),
        };
        let cycle = CycleReport {
            pulled: vec![pull(None), pull(Some("down"))],
            reconciled: vec![report(RunState::Suspended, None, false)],
            dead_letters: 2,
            outbox_resent: 3,
            outbox_complete: false,
            outbox_unsendable: vec!["e1".into()],
            runs_settled: 4,
            deferred_deletes: vec![DeferredCounts {
                target: "crm".into(),
                deleted: 1,
                held: 2,
                restored: 3,
                failed: 4,
                waiting: 5,
            }],
        };
        same_bytes(&cycle, &cycle_report(&cycle));
        same_bytes(
            &CycleReport::default(),
            &cycle_report(&CycleReport::default()),
        );
    }

    #[test]
    fn audit_entries_serialize_as_the_domain_does() {
        let e = AuditEntry::new("crm", AuditOp::AddMembers, AuditStatus::Delivered)
            .resource("Group", "g1")
            .detail("ok")
            .latency_ms(12);
        same_bytes(&e, &audit_entry(&e));
        let e = AuditEntry::new("", AuditOp::Redrive, AuditStatus::Queued);
        same_bytes(&e, &audit_entry(&e));
    }
}
