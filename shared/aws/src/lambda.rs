//! The Lambda functions' glue (their `main.rs` files only wire it up): the hub every
//! function builds at cold start on DynamoDB and SQS with the operator key from Secrets
//! Manager ([`hub_from_env`]), the invocation's deadline ([`invocation_deadline`]), and
//! JSON logging for Lambda. `queue-deliver`'s batch handling is [`crate::queue_deliver`];
//! the scheduled cycle itself is `provisync_core::sync::schedule`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::metrics::{Metrics, schedule_lines};
use crate::secrets::{self, SecretError};
use crate::{AwsClients, AwsError, Backend};
use provisync_core::config::{self, ConfigError};
use provisync_core::connector::ConnectorFactory;
use provisync_core::connector::http::HttpFactory;
use provisync_core::hub::{Hub, HubParts};
use provisync_core::sync::schedule::{
    CYCLE_BUDGET, CycleError, CycleReport, Schedule, budget_within, run_schedule,
};

pub use crate::queue_deliver::{
    DeadlinePolicy, QueueDeliver, RecordOutcome, delivery_from_record, observe_deliveries,
    run_batch, take_order,
};

/// `tracing` as one JSON object per line, no ANSI colours, with the current span's fields
/// (the handlers open a span with the Lambda request id). Level from `RUST_LOG`
/// (default `info`). Safe to call twice.
pub fn init_tracing() {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_ansi(false)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_max_level(tracing::Level::TRACE)
        .finish()
        .with(filter)
        .try_init();
}

/// `RUST_LOG` as level directives (`info`, `debug`, `provisync_core=debug,warn`): the
/// template's `LogLevel` is one level. `tracing_subscriber`'s `Targets` rather than its
/// `EnvFilter`, whose span and field matching (and the regex engine behind it) a function
/// never uses. Unreadable or empty: `info`; without a bare level, what no directive names
/// logs at `info` (a typo never silences a function).
fn log_filter(v: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let t = v
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_default();
    match t.default_level() {
        Some(_) => t,
        None => t.with_default(LevelFilter::INFO),
    }
}

/// The invocation's deadline (the Lambda context's `deadline`, epoch milliseconds) on
/// this process's monotonic clock; `None` when unknown (0, as in tests and local runs).
pub fn invocation_deadline(deadline_ms: u64) -> Option<tokio::time::Instant> {
    deadline_at(deadline_ms, SystemTime::now(), tokio::time::Instant::now())
}

fn deadline_at(
    deadline_ms: u64,
    now: SystemTime,
    instant_now: tokio::time::Instant,
) -> Option<tokio::time::Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Some(instant_now + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("operator key: {0}")]
    Secret(#[from] SecretError),
}

/// The hub of a Lambda function, built once per cold start on DynamoDB and SQS, with the
/// connectors `connectors` links and the outbound HTTP client `http` builds (sources'
/// pulls and connection tests). The operator key (targets' credentials and passwords in
/// change events are sealed with it) is read from the Secrets Manager secret named by
/// `PROVISYNC_SECRET_KEY_ARN` ([`crate::secrets`]), at the same time as the queue is
/// resolved, and kept for the life of the execution environment; it is never taken from
/// the environment.
pub async fn hub_from_env(
    connectors: ConnectorFactory,
    http: HttpFactory,
) -> Result<(Backend, Hub), StartError> {
    // Functions call public https addresses only, unless the operator opts in.
    config::url_policy_from_env(provisync_core::net::PrivateTargets::None)?;
    let schemas = config::load_schemas(config::schema_dir().as_deref())?;
    let arn = secrets::secret_key_arn_from_env().ok_or(SecretError::NotConfigured)?;
    let clients = AwsClients::from_lambda_env()?;
    let (key, backend) = tokio::join!(
        secrets::operator_key(&clients.secrets, &arn),
        crate::aws_backend_with(clients.clone()),
    );
    let (secrets, backend) = (key?, backend?);
    let hub = Hub::new(HubParts {
        store: backend.store.clone(),
        queue: backend.queue.clone(),
        schemas,
        secrets,
        connectors,
        http,
    });
    Ok((backend, hub))
}

/// Time `scheduled-sync` keeps in hand beyond a cycle's budget and its grace
/// ([`provisync_core::sync::PHASE_GRACE`]), for the report and the metrics.
pub const SCHEDULE_ANSWER_MARGIN: Duration = Duration::from_secs(10);

/// One scheduled cycle inside the invocation's time (`deadline`: see
/// [`invocation_deadline`]): the budget is [`CYCLE_BUDGET`] cut to what is left of the
/// invocation, and the cycle is [`Schedule::bounded`], so it ends, and releases its
/// reconcile leases, before the function's timeout. Its counts go out as metric lines ([`schedule_lines`]).
pub async fn scheduled_cycle(
    schedule: &Schedule,
    deadline: Option<tokio::time::Instant>,
    metrics: &Metrics,
) -> Result<CycleReport, CycleError> {
    let budget = budget_within(CYCLE_BUDGET, deadline, SCHEDULE_ANSWER_MARGIN);
    tracing::info!(budget_ms = budget.as_millis() as u64, "sync cycle starts");
    let report = match deadline {
        Some(_) => run_schedule(&schedule.bounded(), budget).await?,
        None => run_schedule(schedule, budget).await?,
    };
    for line in schedule_lines("scheduled-sync", &report) {
        metrics.emit(&line);
    }
    Ok(report)
}

/// `PROVISYNC_MAX_RECEIVE_COUNT`: receives of one message before SQS moves it to the
/// dead-letter queue (the template passes its `MaxReceiveCount`); default 16.
pub fn max_receive_count_from_env() -> Result<u32, ConfigError> {
    parse_max_receive_count(std::env::var("PROVISYNC_MAX_RECEIVE_COUNT").ok().as_deref())
}

fn parse_max_receive_count(v: Option<&str>) -> Result<u32, ConfigError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(provisync_core::queue::DEFAULT_MAX_RECEIVE_COUNT),
        Some(v) => v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            ConfigError::Invalid("PROVISYNC_MAX_RECEIVE_COUNT must be a whole number from 1".into())
        }),
    }
}

/// `queue-deliver`'s state, built once per cold start: the hub's delivery engine on SQS,
/// `PROVISYNC_MAX_RECEIVE_COUNT`, metrics on stdout (one line per delivery outcome and
/// per batch, [`crate::metrics`]).
pub async fn deliverer_from_env(
    connectors: ConnectorFactory,
    http: HttpFactory,
) -> Result<QueueDeliver, StartError> {
    let max_receives = max_receive_count_from_env()?;
    let (backend, hub) = hub_from_env(connectors, http).await?;
    let metrics = Metrics::stdout();
    observe_deliveries(&hub.audit, metrics.clone());
    Ok(QueueDeliver::new(hub.deliverer, backend.queue, max_receives).with_metrics(metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_from_the_context() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let instant = tokio::time::Instant::now();
        let ms = |d: Duration| (now + d).duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert_eq!(deadline_at(0, now, instant), None);
        assert_eq!(
            deadline_at(ms(Duration::from_millis(2500)), now, instant),
            Some(instant + Duration::from_millis(2500))
        );
        // Already past: now, not a panic.
        assert_eq!(deadline_at(1, now, instant), Some(instant));
    }

    #[test]
    fn log_levels_from_rust_log() {
        use tracing::Level;
        use tracing_subscriber::filter::LevelFilter;
        let at = |v: Option<&str>, target: &str, level: Level| {
            log_filter(v).would_enable(target, &level)
        };
        // The template's LogLevel values, one level for everything.
        assert!(at(Some("debug"), "provisync_core::sync", Level::DEBUG));
        assert!(!at(Some("warn"), "provisync_core::sync", Level::INFO));
        assert!(at(Some("trace"), "aws_smithy_runtime", Level::TRACE));
        // Per-crate directives, as RUST_LOG writes them.
        let v = Some("provisync_core=debug,warn");
        assert!(at(v, "provisync_core::deliver", Level::DEBUG));
        assert!(!at(v, "aws_smithy_runtime", Level::INFO));
        // Unset, empty, unreadable or without a bare level: info for the rest.
        assert!(at(
            Some("provisync_core=debug"),
            "aws_smithy_runtime",
            Level::INFO
        ));
        assert!(!at(
            Some("provisync_core=debug"),
            "aws_smithy_runtime",
            Level::DEBUG
        ));
        for v in [None, Some(""), Some("  "), Some("loud=")] {
            assert_eq!(
                log_filter(v).default_level(),
                Some(LevelFilter::INFO),
                "{v:?}"
            );
        }
    }

    #[test]
    fn max_receive_count_parses() {
        assert_eq!(parse_max_receive_count(None).unwrap(), 16);
        assert_eq!(parse_max_receive_count(Some("")).unwrap(), 16);
        assert_eq!(parse_max_receive_count(Some(" 7 ")).unwrap(), 7);
        for bad in ["0", "-1", "five"] {
            assert!(parse_max_receive_count(Some(bad)).is_err(), "{bad}");
        }
    }
}
