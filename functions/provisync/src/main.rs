//! `provisync`: the local all-in-one server and the operator commands.
//!
//! `serve` and `aws-init` work on the store directly; the operator commands (`target`,
//! `token`, `audit`, `sync`, `deadletters`) talk to a running hub's admin API
//! ([`admin`]; `token --offline` writes the store).

mod admin;
mod transfer_cli;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use provisync_core::config;
use provisync_http::auth::{self, Scope};

#[derive(Parser)]
#[command(
    name = "provisync",
    version,
    about = "Identity provisioning and sync hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every surface (SCIM, admin, health) in one process on the local store.
    Serve {
        /// Port on 127.0.0.1 (env PORT).
        #[arg(long, env = "PORT", default_value_t = 8787)]
        port: u16,
    },
    /// Create the DynamoDB table and the SQS FIFO queue + dead-letter queue when missing
    /// (`PROVISYNC_TABLE`, `PROVISYNC_QUEUE`; `AWS_ENDPOINT_URL` for an emulator).
    /// Idempotent.
    AwsInit,
    /// Manage API tokens (stored hashed; shown once): through the running hub, or
    /// --offline on its store.
    Token {
        #[command(flatten)]
        remote: admin::Remote,
        #[command(flatten)]
        args: admin::TokenArgs,
    },
    /// Manage targets (the systems changes are delivered to).
    Target {
        #[command(flatten)]
        remote: admin::Remote,
        #[command(subcommand)]
        command: admin::TargetCommand,
    },
    /// Manage sources (sites that send the hub signed webhooks, or that it reads).
    Source {
        #[command(flatten)]
        remote: admin::Remote,
        #[command(subcommand)]
        command: admin::SourceCommand,
    },
    /// Show the audit log, newest first.
    Audit {
        #[command(flatten)]
        remote: admin::Remote,
        #[command(flatten)]
        args: admin::AuditArgs,
    },
    /// Queue an on-demand sync of users to a target, or reconcile it now (--reconcile).
    Sync {
        #[command(flatten)]
        remote: admin::Remote,
        #[command(flatten)]
        args: admin::SyncArgs,
    },
    /// Run one scheduled cycle now on the running hub (pull sources, reconcile
    /// `scheduled` targets, resend the outbox, count dead letters) and print the counts.
    RunSchedule {
        #[command(flatten)]
        remote: admin::Remote,
        #[command(flatten)]
        args: admin::ScheduleArgs,
    },
    /// Import users from a CSV or JSON file (into a running hub, or --data-dir).
    Import {
        #[command(flatten)]
        remote: admin::Remote,
        #[command(flatten)]
        args: transfer_cli::ImportArgs,
    },
    /// Export users as CSV or JSON (no passwords), optionally filtered.
    Export {
        #[command(flatten)]
        remote: admin::Remote,
        #[command(flatten)]
        args: transfer_cli::ExportArgs,
    },
    /// List dead letters (changes that could not be delivered), or send them back.
    Deadletters {
        #[command(flatten)]
        remote: admin::Remote,
        #[command(flatten)]
        args: admin::DeadLetterArgs,
    },
    /// List, release or discard the deprovisions a target's guard held.
    Held {
        #[command(flatten)]
        remote: admin::Remote,
        #[command(flatten)]
        args: admin::HeldArgs,
    },
    /// Plan (or --apply) the inverse of the deprovisions sent to a target since a time.
    Undo {
        #[command(flatten)]
        remote: admin::Remote,
        #[command(flatten)]
        args: admin::UndoArgs,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let cli = Cli::parse();
    // Errors end the command with one clear line (and their causes), not a backtrace.
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { port } => serve(port).await,
        Command::Target { remote, command } => admin::target(&remote, command).await,
        Command::Source { remote, command } => admin::source(&remote, command).await,
        Command::Audit { remote, args } => admin::audit(&remote, args).await,
        Command::Sync { remote, args } => admin::sync(&remote, args).await,
        Command::RunSchedule { remote, args } => admin::run_schedule(&remote, args).await,
        Command::Import { remote, args } => transfer_cli::import(&remote, args).await,
        Command::Export { remote, args } => transfer_cli::export(&remote, args).await,
        Command::Deadletters { remote, args } => admin::dead_letters(&remote, args).await,
        Command::Held { remote, args } => admin::held(&remote, args).await,
        Command::Undo { remote, args } => admin::undo(&remote, args).await,
        Command::Token { remote, args } => admin::token(&remote, args).await,
        Command::AwsInit => {
            let report = provisync_aws::aws_init_command().await?;
            println!("{report}");
            Ok(())
        }
    }
}

/// The local development token for a scope: from the environment, else one generated
/// once and kept in the data folder (readable by its owner only) so restarts keep it.
fn local_token(env: &str, file: &Path) -> Result<String> {
    if let Ok(t) = std::env::var(env)
        && !t.is_empty()
    {
        return Ok(t);
    }
    if let Ok(t) = std::fs::read_to_string(file) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    use base64::Engine;
    let mut raw = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
    let t = format!(
        "psy_local_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(file, &t).with_context(|| format!("writing {}", file.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(t)
}

async fn serve(port: u16) -> Result<()> {
    let backend = provisync_aws::backend_from_env().await?;
    let store = backend.store.clone();
    let data = provisync_aws::data_dir_from_env();
    let secrets = config::local_secret_box(&data)?;
    // Locally, targets and sources on this machine (a SCIM server on loopback) work
    // without opting in; private networks and metadata addresses still need the variable.
    let urls = config::url_policy_from_env(provisync_core::net::PrivateTargets::Loopback)?;
    let scim_token = local_token("PROVISYNC_SCIM_TOKEN", &data.join("scim-token"))?;
    let admin_token = local_token("PROVISYNC_ADMIN_TOKEN", &data.join("admin-token"))?;
    // Tokens go to the authenticator directly, never through the process environment.
    let schemas = config::load_schemas(config::schema_dir().as_deref())?;
    let hub = provisync_core::hub::Hub::new(provisync_core::hub::HubParts {
        store: store.clone(),
        queue: backend.queue.clone(),
        schemas,
        secrets,
        connectors: provisync_connectors::connectors_for,
        http: provisync_connectors::http::http_port,
    });
    let auth = auth::Authenticator::new(Some(store))
        .with_static_token(&scim_token, Scope::Scim)
        .with_static_token(&admin_token, Scope::Admin);
    let deliverer = hub.deliverer.clone();
    let schedule = hub.schedule();
    let period = provisync_core::sync::schedule::schedule_period_from_env()?;
    let mut http_config = provisync_http::HttpConfig::from_env()?;
    // Resources are located where this server listens unless the operator says
    // otherwise; never where a client's Host header claims.
    http_config
        .public_url
        .get_or_insert_with(|| format!("http://127.0.0.1:{port}"));
    let app = provisync_http::app(provisync_http::AppState::new(hub, auth, http_config));
    // Delivery runs in this process: first whatever a previous run left in the outbox,
    // then the queue consumer, and the outbox sweeper every minute.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // As `queue-deliver` reads it (default 16).
    let max_receives =
        provisync_aws::lambda::max_receive_count_from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    let consumer = tokio::spawn(provisync_core::sync::consumer::run_consumer(
        backend.queue.clone(),
        deliverer,
        max_receives,
        stop_rx.clone(),
    ));
    let sweeper = {
        let store = backend.store.clone();
        let queue = backend.queue.clone();
        let mut stop = stop_rx;
        tokio::spawn(async move {
            // At start nothing is in flight: everything in the outbox is stale. Later, only
            // what is older than a minute (a request may be publishing right now).
            let mut min_age = std::time::Duration::ZERO;
            loop {
                match provisync_core::event::sweep_outbox(store.as_ref(), queue.as_ref(), min_age)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "outbox: resent change events"),
                    Err(e) => tracing::warn!(error = %e, "outbox sweep failed"),
                }
                min_age = std::time::Duration::from_secs(60);
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    };
    // The schedule (what EventBridge runs in AWS): every PROVISYNC_SCHEDULE_SECONDS.
    let scheduler = match period {
        Some(period) => {
            let mut stop = stop_tx.subscribe();
            Some(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(period) => {}
                        _ = stop.changed() => return,
                    }
                    let budget = provisync_core::sync::schedule::CYCLE_BUDGET
                        .min(period.max(std::time::Duration::from_secs(10)));
                    if let Err(e) =
                        provisync_core::sync::schedule::run_schedule(&schedule, budget).await
                    {
                        tracing::warn!(error = %e, "scheduled cycle failed");
                    }
                }
            }))
        }
        None => None,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let base = format!("http://{addr}");
    match backend.kind {
        provisync_aws::BackendKind::Embedded => {
            println!("Provisync is running (store: {}).", backend.describe())
        }
        provisync_aws::BackendKind::Aws => println!(
            "Provisync is running (store: {}; local tokens and key in {}).",
            backend.describe(),
            data.display()
        ),
    }
    println!("  SCIM base URL:  {base}/scim/v2");
    println!("  SCIM token:     {scim_token}");
    println!("  Admin API:      {base}/admin  (CLI: provisync target list)");
    println!("  Admin token:    {admin_token}");
    println!("  Console:        {base}/console/  (sign in with the admin token)");
    println!("  Webhooks:       {base}/webhooks/{{source}}  (CLI: provisync source add)");
    println!("  Health:         {base}/healthz");
    println!(
        "  Target URLs:    public https{} ({}={})",
        match urls.private {
            provisync_core::net::PrivateTargets::None => "",
            provisync_core::net::PrivateTargets::Loopback => ", and loopback",
            provisync_core::net::PrivateTargets::Private => ", and loopback and private networks",
        },
        provisync_core::net::ALLOW_PRIVATE_ENV,
        urls.private.as_str()
    );
    match period {
        Some(p) => println!(
            "  Schedule:       every {} s (PROVISYNC_SCHEDULE_SECONDS; 0 = off)",
            p.as_secs()
        ),
        None => println!("  Schedule:       off (PROVISYNC_SCHEDULE_SECONDS=0)"),
    }
    println!("Try: curl -H 'Authorization: Bearer {scim_token}' {base}/scim/v2/Users");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let _ = stop_tx.send(true);
    let _ = consumer.await;
    let _ = sweeper.await;
    if let Some(s) = scheduler {
        let _ = s.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
