//! `provisync target …`: targets on the running hub.

use anyhow::{Result, bail};
use clap::Subcommand;

pub use super::target_body::AddArgs;
use super::target_body::{target_body, target_patch};
use super::{Remote, admin_client, s, short, table};

#[derive(Subcommand, Debug)]
pub enum TargetCommand {
    /// Create or replace a target (secrets left out, or "***" as `show` prints them, keep
    /// the stored ones).
    Add(Box<AddArgs>),
    /// Change some fields of a target (PATCH with a JSON merge patch): the options given,
    /// or --file PATCH.json; the rest, secrets included, stays as stored.
    Update(Box<AddArgs>),
    /// List targets (secrets are never shown).
    List,
    /// Show one target as JSON (secrets redacted).
    Show { id: String },
    /// Check a target's credentials and reachability (recorded in the audit log).
    Test { id: String },
    /// How fast delivery to a target goes: calls in flight (found by AIMD), answers per
    /// second, the backlog and the estimated time to drain it.
    Pace { id: String },
    /// Remove a target.
    Remove { id: String },
}

pub async fn target(remote: &Remote, cmd: TargetCommand) -> Result<()> {
    let admin = admin_client(remote)?;
    match cmd {
        TargetCommand::Add(args) => {
            let body = target_body(&args)?;
            let t = admin.put_target(&args.id, &body).await?;
            println!("target {} saved", s(&t, "id"));
            println!("{}", serde_json::to_string_pretty(&t)?);
        }
        TargetCommand::Update(args) => {
            let stored = admin.target(&args.id).await?;
            let kind = s(&stored, "kind");
            let patch = target_patch(&args, &kind)?;
            let t = admin.patch_target(&args.id, &patch).await?;
            println!("target {} updated", s(&t, "id"));
            println!("{}", serde_json::to_string_pretty(&t)?);
        }
        TargetCommand::List => {
            let list = admin.targets().await?.targets;
            if list.is_empty() {
                println!("no targets (add one with `provisync target add`)");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.kind.clone(),
                        if t.enabled { "yes" } else { "no" }.to_string(),
                        t.mode.clone().unwrap_or_default(),
                        t.base_url.clone().unwrap_or_default(),
                        short(t.scope_filter.as_deref().unwrap_or_default(), 60),
                    ]
                })
                .collect();
            table(
                &["ID", "KIND", "ENABLED", "MODE", "BASE URL", "SCOPE"],
                &rows,
            );
        }
        TargetCommand::Show { id } => {
            let t = admin.target(&id).await?;
            println!("{}", serde_json::to_string_pretty(&t)?);
        }
        TargetCommand::Test { id } => {
            let r = admin.test_target(&id).await?;
            println!(
                "{} {} ({} ms): {}",
                if r.ok { "OK" } else { "FAILED" },
                id,
                r.latency_ms,
                r.detail
            );
            if !r.ok {
                bail!("connection test of {id} failed");
            }
        }
        TargetCommand::Pace { id } => {
            let p = admin.target_pace(&id).await?;
            let limit = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            table(
                &[
                    "ID",
                    "WINDOW",
                    "IN FLIGHT",
                    "RATE/S",
                    "LEARNED RATE/S",
                    "ADVERTISED RATE/S",
                    "BACKLOG",
                    "DRAIN",
                    "SLOW-DOWNS",
                    "HOLD UNTIL",
                    "MAX RATE",
                    "MAX IN FLIGHT",
                ],
                &[vec![
                    p.target.clone(),
                    format!("{:.2}", p.window),
                    p.in_flight.to_string(),
                    format!("{:.2}", p.rate),
                    limit(p.learned_rate.map(|r| format!("{r:.2}"))),
                    limit(p.advertised_rate.map(|r| format!("{r:.2}"))),
                    p.backlog.to_string(),
                    limit(p.drain_seconds.map(|d| format!("{d:.1} s"))),
                    p.slow_downs.to_string(),
                    limit(p.hold_until.clone()),
                    limit(p.max_rate.map(|r| r.to_string())),
                    limit(p.max_in_flight.map(|m| m.to_string())),
                ]],
            );
        }
        TargetCommand::Remove { id } => {
            admin.delete_target(&id).await?;
            println!("target {id} removed");
        }
    }
    Ok(())
}
