//! `provisync run-schedule`: one scheduled cycle now on the running hub.

use anyhow::Result;
use clap::Args;

use super::sync::print_reconcile;
use super::{Remote, admin_client};

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// Seconds the cycle may take at most (1 to 240; a large reconcile continues next cycle).
    #[arg(long, default_value_t = 25)]
    budget: u64,
    /// Print the raw JSON report.
    #[arg(long)]
    json: bool,
}

pub async fn run_schedule(remote: &Remote, args: ScheduleArgs) -> Result<()> {
    let admin = admin_client(remote)?;
    let v = admin.run_schedule(args.budget).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for p in &v.pulled {
        let u = &p.users;
        println!(
            "pull {}: fetched {}  created {}  updated {}  unchanged {}  failed {}{}{}",
            p.source,
            u.fetched,
            u.created,
            u.updated,
            u.unchanged,
            u.failed,
            if !p.complete {
                "  (continues next cycle)"
            } else {
                ""
            },
            p.error
                .as_deref()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default()
        );
        let g = &p.groups;
        if g.fetched > 0 {
            println!(
                "  groups: fetched {}  created {}  updated {}  unchanged {}  failed {}",
                g.fetched, g.created, g.updated, g.unchanged, g.failed,
            );
        }
    }
    for r in &v.reconciled {
        print_reconcile(r);
    }
    if v.runs_settled > 0 {
        println!(
            "{} earlier run(s) settled: their outcome is in the audit log",
            v.runs_settled
        );
    }
    if v.pulled.is_empty() && v.reconciled.is_empty() {
        println!("no pull sources and no scheduled targets");
    }
    println!(
        "outbox: {} resent{}; dead letters: {}",
        v.outbox_resent,
        if !v.outbox_complete {
            " (more next cycle)"
        } else {
            ""
        },
        v.dead_letters
    );
    // A cycle in which something failed says so in its exit status.
    let failed: Vec<&str> = v
        .reconciled
        .iter()
        .filter(|r| r.state == "failed" || r.state == "complete_with_failures")
        .map(|r| r.target.as_str())
        .chain(
            v.pulled
                .iter()
                .filter(|p| p.error.is_some())
                .map(|p| p.source.as_str()),
        )
        .collect();
    if !failed.is_empty() {
        anyhow::bail!("failures in this cycle: {}", failed.join(", "));
    }
    Ok(())
}
