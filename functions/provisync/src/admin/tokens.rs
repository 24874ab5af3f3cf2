//! `provisync token create|list|revoke`: API tokens.
//!
//! Through the running hub's admin API (`/admin/tokens`) whenever a hub answers at
//! `--url` / `PROVISYNC_URL` with the admin token: that works while `provisync serve`
//! holds its store, and on either backend. Without a hub (none answers, no admin token,
//! or `--offline`) the command writes the store directly — only one that exists already
//! (`PROVISYNC_DATA_DIR` or `./.provisync` with a store in it, or DynamoDB with
//! `PROVISYNC_BACKEND=aws`), and it says which one it opened.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use provisync_client::{ClientError, HubClient};
use provisync_core::store::Store;
use provisync_core::sync::audit::{Audit, AuditEntry, AuditOp, AuditStatus};
use provisync_http::auth::{self, Scope, TokenInfo};

use super::{Remote, admin_token, table};

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Write the store directly instead of asking a running hub (the store must exist:
    /// PROVISYNC_DATA_DIR, or PROVISYNC_BACKEND=aws with PROVISYNC_TABLE).
    #[arg(long, global = true)]
    offline: bool,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it (shown once: only its hash is kept).
    Create {
        /// `scim` (identity providers) or `admin` (operators).
        #[arg(long, default_value = "scim")]
        scope: String,
        /// A label for the token (e.g. the IdP it is for).
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List the stored tokens (ids, scopes, names; never the secrets).
    List,
    /// Revoke a token: by its id (`tok_…`, from `token list`), or, with no id, the token
    /// itself read from stdin (kept out of shell history).
    Revoke { id: Option<String> },
}

/// What `revoke` was given.
enum Which {
    Id(String),
    Secret(String),
}

fn which(id: &Option<String>) -> Result<Which> {
    match id {
        Some(id) if id.starts_with("tok_") => Ok(Which::Id(id.clone())),
        Some(_) => bail!(
            "give the token's id (tok_…, see `provisync token list`), or no argument and the token on stdin"
        ),
        None => {
            let mut s = String::new();
            std::io::stdin().read_line(&mut s)?;
            let s = s.trim().to_string();
            if s.is_empty() {
                bail!("no token on stdin (or give the token's id: tok_…)");
            }
            Ok(Which::Secret(s))
        }
    }
}

pub async fn token(remote: &Remote, args: TokenArgs) -> Result<()> {
    let scope_of = |s: &str| Scope::parse(s).context("--scope must be 'scim' or 'admin'");
    if let TokenCommand::Create { scope, .. } = &args.command {
        scope_of(scope)?;
    }
    let which = match &args.command {
        TokenCommand::Revoke { id } => Some(which(id)?),
        _ => None,
    };
    if !args.offline
        && let Some(t) = admin_token(remote)
    {
        let hub = HubClient::new(&remote.url, &t)?;
        match on_hub(&hub, &args.command, which.as_ref()).await {
            Ok(()) => return Ok(()),
            Err(ClientError::Unreachable { base, source }) if source.is_connect() => {
                eprintln!("no hub answers at {base}: working on the store directly");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let (store, named) = offline_store().await?;
    eprintln!("store: {named}");
    match args.command {
        TokenCommand::Create { scope, name } => {
            let t = auth::issue_token(store.as_ref(), scope_of(&scope)?, &name, Some("offline"))
                .await?;
            offline_audit(&store, AuditOp::CreateToken, &t.info).await;
            print_created(&t.info, &t.token);
        }
        TokenCommand::List => print_list(&auth::list_tokens(store.as_ref()).await?),
        TokenCommand::Revoke { .. } => {
            let revoked = match which {
                Some(Which::Id(id)) => auth::revoke_token_by_id(store.as_ref(), &id).await?,
                Some(Which::Secret(s)) => auth::revoke_token(store.as_ref(), &s).await?,
                None => None,
            };
            let t = revoked.ok_or_else(|| anyhow!("no such stored token"))?;
            offline_audit(&store, AuditOp::RevokeToken, &t).await;
            eprintln!("revoked {} ({} token {:?})", t.id, t.scope, t.name);
        }
    }
    Ok(())
}

async fn on_hub(
    hub: &HubClient,
    command: &TokenCommand,
    which: Option<&Which>,
) -> Result<(), ClientError> {
    match command {
        TokenCommand::Create { scope, name } => {
            let t = hub.create_token(scope, name).await?;
            println!("{}", t.token);
            eprintln!(
                "{} token {:?} created as {}. Store it now: only its hash is kept.",
                t.info.scope, t.info.name, t.info.id
            );
        }
        TokenCommand::List => {
            let list = hub.tokens().await?.tokens;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|t| {
                    row(
                        &t.id,
                        &t.scope,
                        &t.name,
                        &t.created,
                        t.created_by.as_deref(),
                    )
                })
                .collect();
            print_rows(&rows);
        }
        TokenCommand::Revoke { .. } => {
            match which {
                Some(Which::Id(id)) => hub.revoke_token(id).await?,
                Some(Which::Secret(s)) => hub.revoke_token_secret(s).await?,
                None => {}
            }
            eprintln!("revoked");
        }
    }
    Ok(())
}

fn row(id: &str, scope: &str, name: &str, created: &str, by: Option<&str>) -> Vec<String> {
    [id, scope, name, created, by.unwrap_or("")]
        .map(str::to_string)
        .to_vec()
}

fn print_rows(rows: &[Vec<String>]) {
    if rows.is_empty() {
        println!("no stored tokens (create one with `provisync token create`)");
    } else {
        table(&["ID", "SCOPE", "NAME", "CREATED", "BY"], rows);
    }
}

fn print_list(list: &[TokenInfo]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            row(
                &t.id,
                &t.scope.to_string(),
                &t.name,
                &t.created,
                t.created_by.as_deref(),
            )
        })
        .collect();
    print_rows(&rows);
}

fn print_created(t: &TokenInfo, secret: &str) {
    println!("{secret}");
    eprintln!(
        "{} token {:?} created as {}. Store it now: only its hash is kept.",
        t.scope, t.name, t.id
    );
}

/// The store the environment names, if it exists: never a new one in the current folder.
async fn offline_store() -> Result<(Arc<dyn Store>, String)> {
    let aws = matches!(
        provisync_aws::BackendKind::from_env()?,
        provisync_aws::BackendKind::Aws
    );
    if aws {
        let table = std::env::var("PROVISYNC_TABLE").unwrap_or_default();
        let store = provisync_aws::store_from_env().await?;
        return Ok((store, format!("DynamoDB table {table:?}")));
    }
    let dir: PathBuf = provisync_aws::data_dir_from_env();
    if !dir.join("provisync.redb").is_file() {
        bail!(
            "no hub to ask and no store in {}: run this where a hub answers (PROVISYNC_URL and \
             PROVISYNC_ADMIN_TOKEN), or set PROVISYNC_DATA_DIR to the folder `provisync serve` \
             uses (PROVISYNC_BACKEND=aws for DynamoDB)",
            dir.display()
        );
    }
    let shown = std::fs::canonicalize(&dir).unwrap_or(dir.clone());
    let store = provisync_core::store::embedded::EmbeddedStore::open(&dir).with_context(|| {
        format!(
            "opening the embedded store in {}: if `provisync serve` runs on it, set PROVISYNC_URL \
             and PROVISYNC_ADMIN_TOKEN to reach it instead",
            shown.display()
        )
    })?;
    Ok((
        Arc::new(store),
        format!("embedded store in {}", shown.display()),
    ))
}

async fn offline_audit(store: &Arc<dyn Store>, op: AuditOp, t: &TokenInfo) {
    let verb = if op == AuditOp::CreateToken {
        "created"
    } else {
        "revoked"
    };
    let entry = AuditEntry::new("", op, AuditStatus::Delivered)
        .resource("Token", &t.id)
        .detail(format!("{} token {:?} {verb} (offline)", t.scope, t.name))
        .actor("offline");
    if let Err(e) = Audit::new(store.clone()).record(entry).await {
        eprintln!("warning: audit entry not written: {e}");
    }
}
