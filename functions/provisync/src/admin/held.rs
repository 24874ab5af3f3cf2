//! `provisync held list|release|discard --target T`: deprovisions a target's guard held.

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::{Remote, admin_client, table};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum HeldAction {
    /// Show them.
    List,
    /// Send them to the target now.
    Release,
    /// Drop them (audited).
    Discard,
}

#[derive(Args, Debug)]
pub struct HeldArgs {
    action: HeldAction,
    /// The target.
    #[arg(long)]
    target: String,
    /// Only these held changes (ids from `held list`, comma-separated); default: all.
    #[arg(long, value_delimiter = ',')]
    ids: Vec<String>,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
}

pub async fn held(remote: &Remote, args: HeldArgs) -> Result<()> {
    let admin = admin_client(remote)?;
    let ids = (!args.ids.is_empty()).then(|| args.ids.clone());
    match args.action {
        HeldAction::List => {
            let v = admin.held(&args.target).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            if v.more {
                println!(
                    "{} held change(s) on {} shown; more are held (release or discard these to see the rest)",
                    v.held.len(),
                    args.target
                );
            } else {
                println!("{} held change(s) on {}", v.held.len(), args.target);
            }
            let rows: Vec<Vec<String>> = v
                .held
                .iter()
                .map(|h| {
                    vec![
                        h.id.clone(),
                        h.at.clone(),
                        h.change.clone(),
                        h.account.user_name.clone(),
                        h.cause.clone(),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                table(&["ID", "HELD AT", "CHANGE", "ACCOUNT", "CAUSE"], &rows);
                println!(
                    "send them with: provisync held release --target {}",
                    args.target
                );
            }
        }
        HeldAction::Release => {
            let v = release_all(&admin, &args.target, ids, args.json).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "released={} superseded={} failed={} left={}",
                v.released.len(),
                v.superseded.len(),
                v.failed.len(),
                v.left
            );
            for f in &v.failed {
                println!("still held: {} ({})", f.id, f.reason);
            }
            if v.left > 0 {
                println!(
                    "{} not tried: run `provisync held release --target {}` again",
                    v.left, args.target
                );
            }
        }
        HeldAction::Discard => {
            let v = admin.discard_held(&args.target, ids).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("discarded={}", v.discarded.len());
        }
    }
    Ok(())
}

/// Asks the hub to release until nothing is left untried: each request sends for a
/// limited time ([`provisync_client::wire::HeldReleased::left`]). Stops when a request got
/// nothing through (the target refuses or is down): those stay held, as failed.
async fn release_all(
    admin: &provisync_client::HubClient,
    target: &str,
    ids: Option<Vec<String>>,
    quiet: bool,
) -> Result<provisync_client::wire::HeldReleased> {
    let mut total = provisync_client::wire::HeldReleased {
        released: Vec::new(),
        superseded: Vec::new(),
        failed: Vec::new(),
        left: 0,
    };
    loop {
        let v = admin.release_held(target, ids.clone()).await?;
        let progressed = !(v.released.is_empty() && v.superseded.is_empty());
        total.released.extend(v.released);
        total.superseded.extend(v.superseded);
        total.failed = v.failed;
        total.left = v.left;
        if total.left == 0 || !progressed {
            return Ok(total);
        }
        if !quiet {
            eprintln!(
                "released {} so far, {} still held: going on",
                total.released.len() + total.superseded.len(),
                total.left + total.failed.len()
            );
        }
    }
}

#[derive(Args, Debug)]
pub struct UndoArgs {
    /// The target.
    #[arg(long)]
    target: String,
    /// Undo the deprovisions journaled at or after this time (RFC 3339).
    #[arg(long)]
    since: String,
    /// Apply the inverse changes (default: show the plan).
    #[arg(long, conflicts_with = "plan")]
    apply: bool,
    /// Show the plan and change nothing (the default; says so explicitly).
    #[arg(long)]
    plan: bool,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
}

/// `provisync undo --target T --since TIME [--apply]`.
pub async fn undo(remote: &Remote, args: UndoArgs) -> Result<()> {
    let admin = admin_client(remote)?;
    let mut v = admin.undo(&args.target, &args.since, args.apply).await?;
    // Each request applies for a limited time: ask again while steps are left and the
    // last request got some through (applied steps leave the journal, so the next plan
    // holds only what is left).
    let mut done = v.done;
    let plan = v.steps.clone();
    while v.applied && v.left > 0 && v.done > 0 {
        if !args.json {
            eprintln!("{done} step(s) applied so far, {} left: going on", v.left);
        }
        v = admin.undo(&args.target, &args.since, true).await?;
        done += v.done;
    }
    v.done = done;
    v.steps = plan;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v
        .steps
        .iter()
        .map(|s| {
            vec![
                s.at.clone(),
                s.change.clone(),
                s.resource_type.clone(),
                s.user_name.clone(),
                s.detail.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        table(&["JOURNALED", "CHANGE", "TYPE", "NAME", "DETAIL"], &rows);
    }
    if v.applied {
        println!(
            "{} step(s) applied, {} failed, {} not tried",
            v.done,
            v.failed.len(),
            v.left
        );
        for f in &v.failed {
            println!("failed: {} ({})", f.id, f.reason);
        }
        if v.left > 0 {
            println!(
                "undo again to go on: provisync undo --target {} --since {} --apply",
                args.target, args.since
            );
        }
    } else {
        println!(
            "{} step(s) planned; apply with: provisync undo --target {} --since {} --apply",
            v.steps.len(),
            args.target,
            args.since
        );
    }
    Ok(())
}
