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
            println!("{} held change(s) on {}", v.held.len(), args.target);
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
            let v = admin.release_held(&args.target, ids).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "released={} superseded={} failed={}",
                v.released.len(),
                v.superseded.len(),
                v.failed.len()
            );
            for f in &v.failed {
                println!("still held: {} ({})", f.id, f.reason);
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
    let v = admin.undo(&args.target, &args.since, args.apply).await?;
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
            "{} step(s) applied, {} failed",
            v.steps.len() - v.failed.len(),
            v.failed.len()
        );
        for f in &v.failed {
            println!("failed: {} ({})", f.id, f.reason);
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
