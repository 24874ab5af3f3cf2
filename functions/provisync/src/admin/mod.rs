//! Operator commands over the admin API of a running hub (`/admin/...`), one file per
//! command; the calls go through [`provisync_client::HubClient`].
//!
//! The hub is `--url` / `PROVISYNC_URL` (default `http://127.0.0.1:8787`); the token is
//! `--token` / `PROVISYNC_ADMIN_TOKEN`, else the `admin-token` file `provisync serve`
//! writes into the data folder (`PROVISYNC_DATA_DIR`, default `./.provisync`).
//! Secrets for `target add` can come from an environment variable or stdin to keep
//! them out of shell history.

mod audit;
mod deadletters;
mod edit;
mod held;
mod schedule;
mod sources;
mod sync;
mod target_body;
mod targets;
mod tokens;

use anyhow::{Result, anyhow};
use clap::Args;
use provisync_client::HubClient;
use serde_json::Value;

pub use audit::{AuditArgs, audit};
pub use deadletters::{DeadLetterArgs, dead_letters};
pub use held::{HeldArgs, UndoArgs, held, undo};
pub use schedule::{ScheduleArgs, run_schedule};
pub use sources::{SourceCommand, source};
pub use sync::{SyncArgs, sync};
pub use targets::{TargetCommand, target};
pub use tokens::{TokenArgs, token};

#[derive(Args, Debug)]
pub struct Remote {
    /// Base URL of the hub (for the operator commands).
    #[arg(
        long,
        global = true,
        env = "PROVISYNC_URL",
        default_value = "http://127.0.0.1:8787"
    )]
    pub(crate) url: String,
    /// Admin token (default: PROVISYNC_ADMIN_TOKEN, else the local `.provisync/admin-token`).
    #[arg(
        long,
        global = true,
        env = "PROVISYNC_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

/// The admin token: `--token` / `PROVISYNC_ADMIN_TOKEN`, else the file `serve` wrote.
fn admin_token(remote: &Remote) -> Option<String> {
    match remote.token.as_ref().filter(|t| !t.is_empty()) {
        Some(t) => Some(t.clone()),
        None => std::fs::read_to_string(admin_token_file())
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()),
    }
}

fn admin_token_file() -> std::path::PathBuf {
    provisync_aws::data_dir_from_env().join("admin-token")
}

/// A client of the hub's admin API with the admin token.
fn admin_client(remote: &Remote) -> Result<HubClient> {
    let token = admin_token(remote).ok_or_else(|| {
        anyhow!(
            "no admin token: pass --token, set PROVISYNC_ADMIN_TOKEN, or run `provisync serve` here first (it writes {})",
            admin_token_file().display()
        )
    })?;
    Ok(HubClient::new(&remote.url, &token)?)
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Prints rows as aligned columns (the last column is not padded).
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(&c);
            } else {
                let pad = widths[i] - c.chars().count();
                out.push_str(&c);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn short(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut t: String = one_line.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
