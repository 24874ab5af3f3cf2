//! The Lambda functions' glue (their `main.rs` files only wire it up): the hub every
//! function builds at cold start on DynamoDB and SQS ([`hub_from_env`]), `queue-deliver`
//! (SQS batch -> the delivery engine, partial batch failures), plus JSON logging for
//! Lambda. The scheduled cycle itself is `provisync_core::sync::schedule`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};

use crate::{AwsError, Backend};
use provisync_core::config::{self, ConfigError};
use provisync_core::connector::ConnectorFactory;
use provisync_core::hub::{Hub, HubParts};
use provisync_core::queue::{Delivery, Queue};
use provisync_core::sync::consumer::{Disposition, handle_delivery};
use provisync_core::sync::deliver::Deliverer;

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

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// The hub of a Lambda function, built once per cold start on DynamoDB and SQS, with the
/// connectors `connectors` links. `PROVISYNC_SECRET_KEY` is required (targets'
/// credentials and passwords in change events are sealed with it); it is checked first,
/// before any network call.
pub async fn hub_from_env(connectors: ConnectorFactory) -> Result<(Backend, Hub), StartError> {
    let secrets = config::secret_box_from_env()?;
    // Functions call public https addresses only, unless the operator opts in.
    config::url_policy_from_env(provisync_core::net::PrivateTargets::None)?;
    let schemas = config::load_schemas(config::schema_dir().as_deref())?;
    let backend = crate::aws_backend_from_env().await?;
    let hub = Hub::new(HubParts {
        store: backend.store.clone(),
        queue: backend.queue.clone(),
        schemas,
        secrets,
        connectors,
    });
    Ok((backend, hub))
}

/// `PROVISYNC_MAX_RECEIVE_COUNT`: receives of one message before SQS moves it to the
/// dead-letter queue (the template passes its `MaxReceiveCount`); default 5.
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

/// The `queue-deliver` function's state: the delivery engine, the queue (for
/// `ChangeMessageVisibility`) and the dead-letter threshold.
pub struct QueueDeliver {
    deliverer: Arc<Deliverer>,
    queue: Arc<dyn Queue>,
    max_receives: u32,
}

/// Builds [`QueueDeliver`] from the environment, once per cold start.
pub async fn deliverer_from_env(connectors: ConnectorFactory) -> Result<QueueDeliver, StartError> {
    let max_receives = max_receive_count_from_env()?;
    let (backend, hub) = hub_from_env(connectors).await?;
    Ok(QueueDeliver::new(
        hub.deliverer,
        backend.queue,
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsEvent;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/aws/{name}",
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
    fn max_receive_count_parses() {
        assert_eq!(parse_max_receive_count(None).unwrap(), 5);
        assert_eq!(parse_max_receive_count(Some("")).unwrap(), 5);
        assert_eq!(parse_max_receive_count(Some(" 7 ")).unwrap(), 7);
        for bad in ["0", "-1", "five"] {
            assert!(parse_max_receive_count(Some(bad)).is_err(), "{bad}");
        }
    }
}
