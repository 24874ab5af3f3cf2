//! `provisync audit`: the audit log, newest first.

use anyhow::Result;
use clap::Args;
use provisync_client::wire::AuditFilter;

use super::{Remote, admin_client, short, table};

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[arg(long)]
    target: Option<String>,
    /// A user or group id.
    #[arg(long)]
    resource: Option<String>,
    /// create, update, password, deactivate, delete, add_members, remove_members, test, sync, ...
    #[arg(long)]
    op: Option<String>,
    /// delivered, skipped, retry, failed, dead, refused, linked, queued, unlinked.
    #[arg(long)]
    status: Option<String>,
    /// RFC 3339 timestamp.
    #[arg(long)]
    since: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Continue after a previous page.
    #[arg(long)]
    cursor: Option<String>,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
}

pub async fn audit(remote: &Remote, args: AuditArgs) -> Result<()> {
    let admin = admin_client(remote)?;
    let filter = AuditFilter {
        limit: args.limit,
        target: args.target,
        resource: args.resource,
        op: args.op,
        status: args.status,
        since: args.since,
        cursor: args.cursor,
    };
    let page = admin.audit(&filter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    if page.entries.is_empty() {
        println!("no audit entries");
    } else {
        let rows: Vec<Vec<String>> = page
            .entries
            .iter()
            .map(|e| {
                let res = match (e.resource_type.clone(), e.resource_id.clone()) {
                    (_, id) if id.is_empty() => String::new(),
                    (t, id) if t.is_empty() => id,
                    (t, id) => format!("{t}/{id}"),
                };
                vec![
                    e.at.clone(),
                    e.target.clone(),
                    e.op.clone(),
                    e.status.clone(),
                    res,
                    format!("{} ms", e.latency_ms),
                    e.actor.clone().unwrap_or_default(),
                    short(&e.detail, 80),
                ]
            })
            .collect();
        table(
            &[
                "AT", "TARGET", "OP", "STATUS", "RESOURCE", "LATENCY", "BY", "DETAIL",
            ],
            &rows,
        );
    }
    if let Some(c) = &page.next_cursor {
        println!("more: provisync audit --cursor {c} (same filters)");
    }
    Ok(())
}
