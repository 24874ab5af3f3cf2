//! `provisync sync`: an on-demand sync of users to a target, or a reconcile now.

use anyhow::Result;
use clap::Args;
use provisync_client::wire::{ReconcileReport, SyncRequest};

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
}

pub async fn sync(remote: &Remote, args: SyncArgs) -> Result<()> {
    let admin = admin_client(remote)?;
    if args.reconcile {
        let report = admin.reconcile(&args.target).await?;
        print_reconcile(&report);
        return Ok(());
    }
    let request = SyncRequest {
        target: args.target.clone(),
        filter: args.filter,
        user: args.user,
        reconcile: false,
    };
    let answer = admin.sync(&request).await?;
    println!("{} change(s) queued for {}", answer.queued, args.target);
    Ok(())
}

/// A reconcile report as lines (also for each target of a scheduled cycle).
pub(super) fn print_reconcile(r: &ReconcileReport) {
    let c = &r.counts;
    println!(
        "reconcile {}: {}{}",
        r.target,
        r.state,
        if r.resumed { " (resumed)" } else { "" }
    );
    println!(
        "  checked {}  created {}  updated {}  deactivated {}  deleted {}  orphaned {}  unchanged {}  failed {}",
        c.checked,
        c.created,
        c.updated,
        c.deactivated,
        c.deleted,
        c.orphaned,
        c.unchanged,
        c.failed
    );
    // A hub from before groups were reconciled answers without `groups`.
    match &c.groups {
        Some(g) if g.unsupported => {
            println!("  groups: not supported (this kind of target cannot list groups)")
        }
        Some(g) => println!(
            "  groups: checked {}  created {}  updated {}  deleted {}  orphaned {}  unchanged {}  failed {}  members +{} -{}",
            g.checked,
            g.created,
            g.updated,
            g.deleted,
            g.orphaned,
            g.unchanged,
            g.failed,
            g.members_added,
            g.members_removed
        ),
        None => {}
    }
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
}
