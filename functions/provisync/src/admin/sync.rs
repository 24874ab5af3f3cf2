//! `provisync sync`: an on-demand sync of users to a target, or a reconcile now — and
//! what the target answered. The hub answers within 20 s with the outcomes known then;
//! the command then follows the run (`GET /admin/runs/{run}`) until every change has its
//! outcome or `--wait` runs out. It exits 0 only when the target took every change.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use provisync_client::HubClient;
use provisync_client::wire::{
    OutcomeCounts, PlanReport, Problem, ReconcileReport, RunStatus, SyncRequest,
};

use super::{Remote, admin_client};

#[derive(Args, Debug)]
pub struct SyncArgs {
    #[arg(long)]
    target: String,
    /// SCIM filter on users (default: every user).
    #[arg(long, conflicts_with = "user")]
    filter: Option<String>,
    /// One user's id: pushed to the target at once.
    #[arg(long, conflicts_with = "reconcile")]
    user: Option<String>,
    /// Reconcile the target now: compare what it holds with the hub, fix only what differs.
    #[arg(long, conflicts_with = "filter")]
    reconcile: bool,
    /// Print what would be sent (the changes, with the accounts' userNames) and send
    /// nothing.
    #[arg(long)]
    plan: bool,
    /// Seconds to wait in all for the outcome of every change (0: report what is known
    /// when the hub answers).
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

pub async fn sync(remote: &Remote, args: SyncArgs) -> Result<()> {
    let admin = admin_client(remote)?;
    if args.plan {
        let request = SyncRequest {
            target: args.target.clone(),
            filter: args.filter,
            user: args.user,
            reconcile: args.reconcile,
            plan: true,
            wait: None,
        };
        let plan = admin.plan_sync(&request).await?;
        print_plan(&plan);
        if plan.state.as_deref() == Some("failed") {
            bail!("plan of {}: failed", plan.target);
        }
        return Ok(());
    }
    let started = tokio::time::Instant::now();
    let until = started + Duration::from_secs(args.wait);
    let status = if args.reconcile {
        let report = admin.reconcile(&args.target).await?;
        print_reconcile(&report);
        let pending = report.state == "pending";
        match report.run.as_deref() {
            Some(run) if pending => Some(follow(&admin, run, until).await?),
            _ => {
                if report.state == "failed" || report.state == "complete_with_failures" {
                    bail!("reconcile of {}: {}", report.target, report.state);
                }
                return Ok(());
            }
        }
    } else {
        let request = SyncRequest {
            target: args.target.clone(),
            filter: args.filter,
            user: args.user,
            reconcile: false,
            plan: false,
            wait: Some(args.wait.min(20)),
        };
        let answer = admin.sync(&request).await?;
        println!("{} change(s) queued for {}", answer.queued, args.target);
        match answer.outcome {
            Some(o) if o.state == "pending" => Some(follow(&admin, &o.run, until).await?),
            Some(o) => Some(o),
            // A hub from before syncs reported outcomes.
            None => return Ok(()),
        }
    };
    let Some(s) = status else {
        return Ok(());
    };
    print_status(&s);
    match s.state.as_str() {
        "complete" => Ok(()),
        "pending" | "running" => bail!(
            "the outcome of {} change(s) is not known yet (run {}): `provisync audit --target {}` shows it when it is",
            s.users.queued + s.groups.queued + s.follow_ups.as_ref().map_or(0, |f| f.queued),
            s.run,
            s.target
        ),
        other => bail!("{} to {}: {other}", s.kind, s.target),
    }
}

/// A plan as lines: the counts, then one line per change.
fn print_plan(p: &PlanReport) {
    let counts: Vec<String> = p
        .counts
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "plan for {}{}: {} (nothing sent)",
        p.target,
        p.state
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default(),
        if counts.is_empty() {
            "no changes".to_string()
        } else {
            counts.join("  ")
        }
    );
    if let Some(checked) = p.checked {
        println!("  checked {checked}");
    }
    for c in &p.changes {
        println!(
            "  {} {} {:?}{}",
            c.change,
            c.resource_type,
            c.user_name,
            if c.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.detail)
            }
        );
    }
    if let Some(e) = &p.error {
        println!("  error: {e}");
    }
}

/// Polls a run until it is settled or `until`. Each look reads every outcome of the run
/// on the hub, so it looks no more often than once per millisecond per change (as the
/// hub's own wait does): a run of 100,000 changes every 100 s.
async fn follow(admin: &HubClient, run: &str, until: tokio::time::Instant) -> Result<RunStatus> {
    let mut pause = Duration::from_millis(500);
    loop {
        let s = admin.run(run).await?;
        let now = tokio::time::Instant::now();
        if (s.state != "pending" && s.state != "running") || now >= until {
            return Ok(s);
        }
        let floor = Duration::from_millis(s.users.sent + s.groups.sent);
        tokio::time::sleep(pause.max(floor).min(until - now)).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

fn outcome_line(what: &str, c: &OutcomeCounts) -> String {
    format!(
        "{what}: queued {}  created {}  updated {}  deactivated {}  deleted {}  skipped {}  refused {}  failed {}  no outcome yet {}",
        c.sent,
        c.created,
        c.updated,
        c.deactivated,
        c.deleted,
        c.skipped,
        c.refused,
        c.failed,
        c.queued
    )
}

fn print_problems(problems: &[Problem]) {
    for p in problems {
        let name = if p.name.is_empty() {
            &p.resource_id
        } else {
            &p.name
        };
        println!(
            "  {} {} {name:?} {}: {}",
            p.status, p.op, p.resource_type, p.detail
        );
    }
}

/// A run's outcomes as lines.
fn print_status(s: &RunStatus) {
    println!("{} {} (run {}): {}", s.kind, s.target, s.run, s.state);
    println!("  {}", outcome_line("users", &s.users));
    if s.groups.sent > 0 {
        println!("  {}", outcome_line("groups", &s.groups));
    }
    if let Some(f) = &s.follow_ups {
        println!(
            "  members sent on in follow-up events: queued {}  delivered {}  skipped {}  held {}  refused {}  failed {}  no outcome yet {}",
            f.sent, f.delivered, f.skipped, f.held, f.refused, f.failed, f.queued
        );
    }
    print_problems(&s.problems);
}

/// A reconcile report as lines (also for each target of a scheduled cycle).
pub(super) fn print_reconcile(r: &ReconcileReport) {
    let c = &r.counts;
    println!(
        "reconcile {}: {}{}{}",
        r.target,
        r.state,
        if r.resumed { " (resumed)" } else { "" },
        r.run
            .as_deref()
            .map(|id| format!(" (run {id})"))
            .unwrap_or_default()
    );
    println!(
        "  checked {}  created {}  updated {}  deactivated {}  deleted {}  held {}  orphaned {}  unchanged {}  refused {}  failed {}  skipped {}  queued {}",
        c.checked,
        c.created,
        c.updated,
        c.deactivated,
        c.deleted,
        c.held,
        c.orphaned,
        c.unchanged,
        c.refused,
        c.failed,
        c.skipped,
        c.queued
    );
    // A hub from before groups were reconciled answers without `groups`.
    match &c.groups {
        Some(g) if g.unsupported => {
            println!("  groups: not supported (this kind of target cannot list groups)")
        }
        Some(g) => println!(
            "  groups: checked {}  created {}  updated {}  deleted {}  held {}  orphaned {}  unchanged {}  refused {}  failed {}  skipped {}  queued {}  members +{} -{}",
            g.checked,
            g.created,
            g.updated,
            g.deleted,
            g.held,
            g.orphaned,
            g.unchanged,
            g.refused,
            g.failed,
            g.skipped,
            g.queued,
            g.members_added,
            g.members_removed
        ),
        None => {}
    }
    print_problems(&r.problems);
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
}
