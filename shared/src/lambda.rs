//! The Lambda functions' logic (their `main.rs` files only wire it up): the state every
//! function builds at cold start ([`hub_from_env`]), `queue-deliver` (SQS batch -> the
//! delivery engine, partial batch failures), `scheduled-sync` (EventBridge schedule -> one
//! sync cycle), plus JSON logging for Lambda.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};

use crate::aws::Backend;
use crate::config::{self, ConfigError};
use crate::http::AppState;
use crate::queue::{Delivery, Queue, QueueError};
use crate::store::Store;
use crate::sync::consumer::{Disposition, handle_delivery};
use crate::sync::deliver::Deliverer;
use crate::sync::event::{OutboxError, sweep_outbox_until};

/// `tracing` as one JSON object per line, no ANSI colours, with the current span's fields
/// (the handlers open a span with the Lambda request id). Level from `RUST_LOG`
/// (default `info`). Safe to call twice.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_ansi(false)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .try_init();
}

/// An SQS record as a queue [`Delivery`] (the same type the local consumer handles).
pub fn delivery_from_record(r: &SqsMessage) -> Delivery {
    let attr = |k: &str| r.attributes.get(k).cloned().unwrap_or_default();
    Delivery {
        receipt: r.receipt_handle.clone().unwrap_or_default(),
        body: r.body.clone().unwrap_or_default(),
        group_id: attr("MessageGroupId"),
        dedup_id: attr("MessageDeduplicationId"),
        receive_count: r
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
    }
}

/// Runs `handler` on each record in order and reports the failures
/// (`FunctionResponseTypes: [ReportBatchItemFailures]`). FIFO rule: once a record of a
/// message group failed, every later record of that group in the batch is reported failed
/// without being handled, so the group's order holds when SQS redelivers them. Records
/// without a group (standard queues) fail alone. A failed record without a message id is
/// reported with an empty identifier, which makes Lambda retry the whole batch (the safe
/// choice).
pub async fn process_batch<F, Fut, E>(records: Vec<SqsMessage>, mut handler: F) -> SqsBatchResponse
where
    F: FnMut(Delivery) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut failed_groups: HashSet<String> = HashSet::new();
    let mut response = SqsBatchResponse::default();
    for record in records {
        let id = record.message_id.clone().unwrap_or_default();
        let delivery = delivery_from_record(&record);
        let group = (!delivery.group_id.is_empty()).then(|| delivery.group_id.clone());
        if let Some(g) = group.as_ref().filter(|g| failed_groups.contains(*g)) {
            tracing::info!(message_id = %id, group = %g, "skipped: an earlier message of its group failed");
            response.batch_item_failures.push(failure(id));
            continue;
        }
        let receive_count = delivery.receive_count;
        if let Err(e) = handler(delivery).await {
            tracing::warn!(message_id = %id, group = group.as_deref().unwrap_or(""), receive_count, error = %e, "delivery failed");
            if let Some(g) = group {
                failed_groups.insert(g);
            }
            response.batch_item_failures.push(failure(id));
        }
    }
    response
}

fn failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}

/// What every function of the hub shares, built once per cold start: the backend
/// (`PROVISYNC_BACKEND`), the HTTP state with change events, the admin surface and
/// on-demand sync wired ([`crate::config::wire_hub`]), and the delivery engine.
pub struct Hub {
    pub backend: Backend,
    pub state: AppState,
    pub deliverer: Arc<Deliverer>,
}

/// Builds the [`Hub`] from the environment. `PROVISYNC_SECRET_KEY` is required (targets'
/// credentials and passwords in change events are sealed with it); it is checked first,
/// before any network call.
pub async fn hub_from_env() -> Result<Hub, ConfigError> {
    let secrets = config::secret_box_from_env()?;
    let schemas = config::load_schemas(config::schema_dir().as_deref())?;
    let backend = crate::aws::backend_from_env().await?;
    let state = config::state_for_store(backend.store.clone(), schemas)?;
    let (state, deliverer) = config::wire_hub(
        state,
        backend.queue.clone(),
        secrets,
        crate::sync::connectors_for,
    );
    Ok(Hub {
        backend,
        state,
        deliverer,
    })
}

/// State for the HTTP functions (`scim-api`, `admin-api`, `webhook-ingest`): one wiring,
/// so a SCIM or webhook write produces its change event on AWS as it does locally.
pub async fn http_state_from_env() -> Result<AppState, ConfigError> {
    Ok(hub_from_env().await?.state)
}

/// `PROVISYNC_MAX_RECEIVE_COUNT`: receives of one message before SQS moves it to the
/// dead-letter queue (the template passes its `MaxReceiveCount`); default 5.
pub fn max_receive_count_from_env() -> Result<u32, ConfigError> {
    parse_max_receive_count(std::env::var("PROVISYNC_MAX_RECEIVE_COUNT").ok().as_deref())
}

fn parse_max_receive_count(v: Option<&str>) -> Result<u32, ConfigError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(crate::aws::queue::DEFAULT_MAX_RECEIVE_COUNT),
        Some(v) => v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            ConfigError::Invalid("PROVISYNC_MAX_RECEIVE_COUNT must be a whole number from 1".into())
        }),
    }
}

/// The `queue-deliver` function's state: the delivery engine, the queue (for
/// `ChangeMessageVisibility`) and the dead-letter threshold.
pub struct QueueDeliver {
    deliverer: Arc<Deliverer>,
    queue: Arc<dyn Queue>,
    max_receives: u32,
}

/// Builds [`QueueDeliver`] from the environment, once per cold start.
pub async fn deliverer_from_env() -> Result<QueueDeliver, ConfigError> {
    let max_receives = max_receive_count_from_env()?;
    let hub = hub_from_env().await?;
    Ok(QueueDeliver::new(
        hub.deliverer,
        hub.backend.queue,
        max_receives,
    ))
}

impl QueueDeliver {
    pub fn new(deliverer: Arc<Deliverer>, queue: Arc<dyn Queue>, max_receives: u32) -> Self {
        QueueDeliver {
            deliverer,
            queue,
            max_receives: max_receives.max(1),
        }
    }

    /// Delivers an SQS batch ([`process_batch`] with the engine, the same per-message
    /// code as the local consumer: [`handle_delivery`]). A record that fails is reported
    /// failed and its visibility changed to the retry delay (exponential backoff, never
    /// sooner than the target's `Retry-After`; at once for a malformed event, so it reaches
    /// the dead-letter queue without waiting). The records of its group that were not
    /// attempted get the same delay, so the group comes back together and in order.
    pub async fn handle(&self, records: Vec<SqsMessage>) -> SqsBatchResponse {
        let index: HashMap<String, (String, String)> = records
            .iter()
            .filter_map(|r| {
                let d = delivery_from_record(r);
                r.message_id.clone().map(|id| (id, (d.receipt, d.group_id)))
            })
            .collect();
        let delays: Mutex<HashMap<String, Duration>> = Mutex::new(HashMap::new());
        let mut attempted: HashSet<String> = HashSet::new();
        let response = process_batch(records, |d| {
            attempted.insert(d.receipt.clone());
            let delays = &delays;
            async move {
                match handle_delivery(&self.deliverer, &d, self.max_receives).await {
                    Disposition::Ack => Ok(()),
                    Disposition::RetryAfter(delay) => {
                        if !d.group_id.is_empty() {
                            lock(delays).insert(d.group_id.clone(), delay);
                        }
                        self.retry_later(&d.receipt, delay).await;
                        Err(format!("retry in {} ms", delay.as_millis()))
                    }
                }
            }
        })
        .await;
        for f in &response.batch_item_failures {
            let Some((receipt, group)) = index.get(&f.item_identifier) else {
                continue;
            };
            if attempted.contains(receipt) {
                continue;
            }
            let delay = lock(&delays).get(group).copied();
            if let Some(delay) = delay {
                self.retry_later(receipt, delay).await;
            }
        }
        response
    }

    async fn retry_later(&self, receipt: &str, delay: Duration) {
        if receipt.is_empty() {
            return;
        }
        if let Err(e) = self.queue.retry_later(receipt, delay).await {
            // The queue's visibility timeout brings the message back anyway.
            tracing::warn!(error = %e, "could not change the message visibility");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Oldest age of an outbox record the schedule resends (younger ones may be being
/// published by the request that wrote them).
pub const OUTBOX_MIN_AGE: Duration = Duration::from_secs(60);
/// Time the schedule spends resending the outbox at most (`scheduled-sync` runs for up
/// to 300 s); what is left waits for the next cycle.
pub const OUTBOX_SWEEP_BUDGET: Duration = Duration::from_secs(120);

/// Time one scheduled cycle takes at most (the `scheduled-sync` function's timeout is
/// 300 s): pull gets the first quarter, reconcile up to three quarters, the outbox sweep
/// what is left.
pub const CYCLE_BUDGET: Duration = Duration::from_secs(240);

/// What one scheduled cycle did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CycleReport {
    /// One report per pulled source.
    pub pulled: Vec<crate::sync::pull::PullReport>,
    /// One report per reconciled target (`scheduled` mode).
    pub reconciled: Vec<crate::sync::reconcile::ReconcileReport>,
    /// Messages in the dead-letter queue.
    pub dead_letters: usize,
    /// Change events resent from the outbox (their first send did not happen).
    pub outbox_resent: usize,
    /// `false` when the sweep ran out of time and left records for the next cycle.
    pub outbox_complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error("reconcile: {0}")]
    Reconcile(#[from] crate::sync::reconcile::ReconcileError),
    #[error("pull: {0}")]
    Pull(#[from] crate::sync::pull::PullError),
    #[error("dead-letter report: {0}")]
    Queue(#[from] QueueError),
    #[error("outbox sweep: {0}")]
    Outbox(#[from] OutboxError),
}

/// What a full cycle needs: the store and queue, and the reconciler and puller the hub
/// wiring built ([`crate::config::wire_hub`]).
#[derive(Clone)]
pub struct Schedule {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub reconciler: Option<crate::sync::reconcile::Reconciler>,
    pub puller: Option<crate::sync::pull::Puller>,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("reconcile", &self.reconciler.is_some())
            .field("pull", &self.puller.is_some())
            .finish_non_exhaustive()
    }
}

impl Schedule {
    /// The schedule of a wired hub state (see [`crate::config::wire_hub`]).
    pub fn of(state: &AppState) -> Option<Schedule> {
        let admin = state.admin.as_ref()?;
        Some(Schedule {
            store: state.directory.store().clone(),
            queue: admin.queue.clone(),
            reconciler: admin.reconciler.clone(),
            puller: admin.puller.clone(),
        })
    }
}

/// `PROVISYNC_SCHEDULE_SECONDS`: the period of the schedule inside `provisync serve`
/// (default 300 = every five minutes, like the template's EventBridge rule; `0` = off).
pub fn schedule_period_from_env() -> Result<Option<Duration>, ConfigError> {
    parse_schedule_period(std::env::var("PROVISYNC_SCHEDULE_SECONDS").ok().as_deref())
}

fn parse_schedule_period(v: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(Some(Duration::from_secs(300))),
        Some(v) => match v.parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(Duration::from_secs(n))),
            Err(_) => Err(ConfigError::Invalid(
                "PROVISYNC_SCHEDULE_SECONDS must be a whole number of seconds (0 = off)".into(),
            )),
        },
    }
}

/// One full scheduled cycle: pull every pull source, reconcile every `scheduled` target,
/// then sweep the outbox and report dead letters ([`run_sync_cycle`]), all within
/// `budget`. A source or target that fails is reported in its own entry and does not stop
/// the others; an error is returned only when a step could not run at all.
pub async fn run_schedule(s: &Schedule, budget: Duration) -> Result<CycleReport, CycleError> {
    let start = tokio::time::Instant::now();
    let mut first_error: Option<CycleError> = None;
    let mut pulled = Vec::new();
    if let Some(p) = &s.puller {
        match p.pull_all(start + budget / 4).await {
            Ok(r) => pulled = r,
            Err(e) => {
                tracing::error!(error = %e, "pull failed");
                first_error = Some(e.into());
            }
        }
    }
    let mut reconciled = Vec::new();
    if let Some(r) = &s.reconciler {
        match r.reconcile_scheduled(start + budget * 3 / 4).await {
            Ok(list) => reconciled = list,
            Err(e) => {
                tracing::error!(error = %e, "reconcile failed");
                first_error.get_or_insert(e.into());
            }
        }
    }
    let left = budget.saturating_sub(start.elapsed());
    let mut report = match run_sync_cycle(s.store.as_ref(), s.queue.as_ref(), left).await {
        Ok(r) => r,
        Err(e) => {
            first_error.get_or_insert(e);
            CycleReport::default()
        }
    };
    report.pulled = pulled;
    report.reconciled = reconciled;
    tracing::info!(
        sources = report.pulled.len(),
        targets = report.reconciled.len(),
        outbox_resent = report.outbox_resent,
        dead_letters = report.dead_letters,
        ms = start.elapsed().as_millis() as u64,
        "sync cycle done"
    );
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// The outbox and dead-letter part of a cycle: reports the dead letters, then resends
/// outbox records older than [`OUTBOX_MIN_AGE`] for at most `budget`. Both steps run even
/// if one fails; the first failure is returned (after logging), so the invocation shows
/// as failed.
pub async fn run_sync_cycle(
    store: &dyn Store,
    queue: &dyn Queue,
    budget: Duration,
) -> Result<CycleReport, CycleError> {
    let mut report = CycleReport::default();
    let mut first_error: Option<CycleError> = None;
    match queue.dead_letter_count().await {
        Ok(n) => {
            report.dead_letters = n;
            if n > 0 {
                tracing::warn!(
                    dead_letters = n,
                    backend = queue.backend(),
                    "dead letters waiting: inspect and redrive"
                );
            } else {
                tracing::info!(
                    dead_letters = n,
                    backend = queue.backend(),
                    "no dead letters"
                );
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "dead-letter count failed");
            first_error = Some(e.into());
        }
    }
    let deadline = tokio::time::Instant::now() + budget;
    // The deadline is checked between pages; the hard limit covers a call that hangs.
    let hard_limit = budget + Duration::from_secs(30);
    match tokio::time::timeout(
        hard_limit,
        sweep_outbox_until(store, queue, OUTBOX_MIN_AGE, Some(deadline)),
    )
    .await
    {
        Ok(Ok(sweep)) => {
            report.outbox_resent = sweep.sent;
            report.outbox_complete = sweep.complete;
            if !sweep.complete {
                tracing::warn!(
                    resent = sweep.sent,
                    "outbox sweep ran out of time: the rest waits for the next cycle"
                );
            } else if sweep.sent > 0 {
                tracing::info!(resent = sweep.sent, "outbox: resent change events");
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "outbox sweep failed");
            first_error.get_or_insert(e.into());
        }
        Err(_) => {
            tracing::warn!(
                limit_s = hard_limit.as_secs(),
                "outbox sweep stopped: a call did not answer in time"
            );
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsEvent;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../tests/fixtures/aws/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn fifo_record_becomes_a_delivery() {
        let event: SqsEvent = serde_json::from_str(&fixture("sqs-fifo-event.json")).unwrap();
        let d = delivery_from_record(&event.records[0]);
        assert_eq!(d.group_id, "1");
        assert_eq!(d.dedup_id, "1");
        assert_eq!(d.receive_count, 1);
        assert_eq!(d.body, "Test message.");
        assert!(d.receipt.starts_with("AQEB"));
    }

    #[tokio::test]
    async fn later_records_of_a_failed_group_fail_too() {
        let event: SqsEvent = serde_json::from_str(&fixture("sqs-fifo-batch.json")).unwrap();
        let mut handled = Vec::new();
        let resp = process_batch(event.records, |d| {
            handled.push(d.dedup_id.clone());
            async move {
                if d.body == "FAIL" {
                    Err("connector said no")
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let failed: Vec<&str> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        // msg-3 (user-a) failed, so msg-5 (user-a) is not attempted; user-b is unaffected.
        assert_eq!(failed, ["msg-3", "msg-5"]);
        assert_eq!(handled, ["e1", "e2", "e3", "e4"]);
        let json = serde_json::to_value(&resp).unwrap();
        assert_eq!(json["batchItemFailures"][0]["itemIdentifier"], "msg-3");
    }

    #[tokio::test]
    async fn standard_queue_records_fail_alone() {
        let event: SqsEvent = serde_json::from_str(&fixture("sqs-standard-event.json")).unwrap();
        let mut records = event.records;
        records.push(records[0].clone());
        records[1].message_id = Some("MessageID_2".into());
        let mut first = true;
        let resp = process_batch(records, |_| {
            let fail = std::mem::take(&mut first);
            async move { if fail { Err("boom") } else { Ok(()) } }
        })
        .await;
        let failed: Vec<&str> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["MessageID_1"]);
    }

    #[test]
    fn schedule_period_parses() {
        assert_eq!(
            parse_schedule_period(None).unwrap(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_schedule_period(Some("0")).unwrap(), None);
        assert_eq!(
            parse_schedule_period(Some(" 30 ")).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert!(parse_schedule_period(Some("-1")).is_err());
        assert!(parse_schedule_period(Some("5m")).is_err());
    }

    #[test]
    fn max_receive_count_parses() {
        assert_eq!(parse_max_receive_count(None).unwrap(), 5);
        assert_eq!(parse_max_receive_count(Some("")).unwrap(), 5);
        assert_eq!(parse_max_receive_count(Some(" 7 ")).unwrap(), 7);
        for bad in ["0", "-1", "five"] {
            assert!(parse_max_receive_count(Some(bad)).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn cycle_reports_dead_letters_and_sweeps_the_outbox() {
        use crate::queue::OutMessage;
        use crate::queue::store_queue::{StoreQueue, StoreQueueSettings};
        use crate::scim::ResourceKind;
        use crate::sync::event::{ChangeEvent, ChangeOp, Origin, outbox_write};
        let store: Arc<dyn Store> = Arc::new(crate::store::embedded::EmbeddedStore::in_memory());
        let q = StoreQueue::new(
            store.clone(),
            "cycle",
            StoreQueueSettings {
                visibility_timeout: Duration::from_secs(30),
                max_receive_count: 1,
            },
        );
        let budget = OUTBOX_SWEEP_BUDGET;
        assert_eq!(
            run_sync_cycle(store.as_ref(), &q, budget).await.unwrap(),
            CycleReport {
                dead_letters: 0,
                outbox_resent: 0,
                outbox_complete: true,
                ..Default::default()
            }
        );
        q.send(vec![OutMessage::new("g", "e1", "{}")])
            .await
            .unwrap();
        let d = q.receive(1, Duration::ZERO).await.unwrap();
        q.retry_later(&d[0].receipt, Duration::ZERO).await.unwrap();
        assert!(q.receive(1, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(
            run_sync_cycle(store.as_ref(), &q, budget)
                .await
                .unwrap()
                .dead_letters,
            1
        );

        // Outbox records whose send never happened: an old one is resent, a fresh one
        // (its request may be publishing it right now) is left alone.
        let mut old = ChangeEvent::new(ResourceKind::User, "u-old", ChangeOp::Create, Origin::Scim);
        old.occurred_at = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
        let fresh = ChangeEvent::new(ResourceKind::User, "u-new", ChangeOp::Create, Origin::Scim);
        store
            .transact(vec![
                outbox_write(&old).unwrap(),
                outbox_write(&fresh).unwrap(),
            ])
            .await
            .unwrap();
        let report = run_sync_cycle(store.as_ref(), &q, budget).await.unwrap();
        assert_eq!(report.outbox_resent, 1);
        assert!(report.outbox_complete);
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].group_id, "u-old");
        assert_eq!(got[0].dedup_id, old.id);
        // Resent once: the next cycle finds nothing old.
        let report = run_sync_cycle(store.as_ref(), &q, budget).await.unwrap();
        assert_eq!(report.outbox_resent, 0);
    }

    #[tokio::test]
    async fn sweep_stops_at_its_deadline() {
        use crate::queue::store_queue::{StoreQueue, StoreQueueSettings};
        use crate::scim::ResourceKind;
        use crate::sync::event::{ChangeEvent, ChangeOp, Origin, outbox_write};
        let store: Arc<dyn Store> = Arc::new(crate::store::embedded::EmbeddedStore::in_memory());
        let q = StoreQueue::new(store.clone(), "t", StoreQueueSettings::default());
        // 150 old records: two pages of 100.
        let writes = (0..150)
            .map(|i| {
                let mut e = ChangeEvent::new(
                    ResourceKind::User,
                    &format!("u{i}"),
                    ChangeOp::Create,
                    Origin::Scim,
                );
                e.occurred_at = "2020-01-01T00:00:00Z".into();
                outbox_write(&e).unwrap()
            })
            .collect::<Vec<_>>();
        for chunk in writes.chunks(crate::store::MAX_TRANSACT_ITEMS) {
            store.transact(chunk.to_vec()).await.unwrap();
        }
        // No time at all: the first page is still sent, then the sweep stops.
        let report = run_sync_cycle(store.as_ref(), &q, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.outbox_resent, 100);
        assert!(!report.outbox_complete);
        let report = run_sync_cycle(store.as_ref(), &q, OUTBOX_SWEEP_BUDGET)
            .await
            .unwrap();
        assert_eq!(report.outbox_resent, 50);
        assert!(report.outbox_complete);
    }
}
