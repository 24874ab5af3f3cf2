//! The event-driven Lambda functions' logic (their `main.rs` files only wire it up):
//! `queue-deliver` (SQS batch -> partial batch failures) and `scheduled-sync`
//! (EventBridge schedule -> one sync cycle), plus JSON logging for Lambda.

use std::collections::HashSet;
use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};

use crate::queue::{Delivery, Queue, QueueError};

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

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("malformed change event: {0}")]
    Malformed(String),
}

/// Handles one change event from the queue. The connector fan-out (scoping, mapping,
/// links, audit) arrives with the delivery issue; until then an event is checked to be a
/// JSON object, logged (ids only, never the body: it may carry personal data), and acked.
pub async fn deliver_change_event(d: &Delivery) -> Result<(), DeliveryError> {
    let v: serde_json::Value =
        serde_json::from_str(&d.body).map_err(|e| DeliveryError::Malformed(e.to_string()))?;
    if !v.is_object() {
        return Err(DeliveryError::Malformed("not a JSON object".into()));
    }
    tracing::info!(group = %d.group_id, event_id = %d.dedup_id, receive_count = d.receive_count, "change event received");
    Ok(())
}

/// What one scheduled cycle did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CycleReport {
    /// Messages in the dead-letter queue.
    pub dead_letters: usize,
}

/// One sync cycle (the `scheduled-sync` function, and the schedule of `provisync serve`).
/// Pulling sources, reconciling targets and sweeping the outbox come with their issues;
/// today the cycle reports the dead letters.
pub async fn run_sync_cycle(queue: &dyn Queue) -> Result<CycleReport, QueueError> {
    let dead_letters = queue.dead_letter_count().await?;
    if dead_letters > 0 {
        tracing::warn!(
            dead_letters,
            backend = queue.backend(),
            "dead letters waiting: inspect and redrive"
        );
    } else {
        tracing::info!(dead_letters, backend = queue.backend(), "no dead letters");
    }
    Ok(CycleReport { dead_letters })
}

/// State for an HTTP function (`scim-api`, ...): the store `PROVISYNC_BACKEND` selects,
/// tokens and schemas from the environment. Built once, before the runtime starts.
pub async fn http_state_from_env() -> Result<crate::http::AppState, crate::config::ConfigError> {
    let store = crate::aws::store_from_env().await?;
    let schemas = crate::config::load_schemas(crate::config::schema_dir().as_deref())?;
    crate::config::state_for_store(store, schemas)
}

/// State for the `admin-api` function: the store and queue `PROVISYNC_BACKEND` selects,
/// tokens and schemas from the environment, `PROVISYNC_SECRET_KEY` required.
pub async fn admin_state_from_env() -> Result<crate::http::AppState, crate::config::ConfigError> {
    let backend = crate::aws::backend_from_env().await?;
    let schemas = crate::config::load_schemas(crate::config::schema_dir().as_deref())?;
    let state = crate::config::state_for_store(backend.store, schemas)?;
    let secrets = crate::config::secret_box_from_env()?;
    Ok(crate::config::with_admin(state, backend.queue, secrets))
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

    #[tokio::test]
    async fn change_events_must_be_json_objects() {
        let event: SqsEvent = serde_json::from_str(&fixture("sqs-fifo-batch.json")).unwrap();
        let resp = process_batch(
            event.records,
            |d| async move { deliver_change_event(&d).await },
        )
        .await;
        assert_eq!(resp.batch_item_failures.len(), 2);
    }

    #[tokio::test]
    async fn cycle_reports_dead_letters() {
        use crate::queue::OutMessage;
        use crate::queue::store_queue::{StoreQueue, StoreQueueSettings};
        use std::sync::Arc;
        use std::time::Duration;
        let store = Arc::new(crate::store::embedded::EmbeddedStore::in_memory());
        let q = StoreQueue::new(
            store,
            "cycle",
            StoreQueueSettings {
                visibility_timeout: Duration::from_secs(30),
                max_receive_count: 1,
            },
        );
        assert_eq!(run_sync_cycle(&q).await.unwrap().dead_letters, 0);
        q.send(vec![OutMessage::new("g", "e1", "{}")])
            .await
            .unwrap();
        let d = q.receive(1, Duration::ZERO).await.unwrap();
        q.retry_later(&d[0].receipt, Duration::ZERO).await.unwrap();
        assert!(q.receive(1, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(run_sync_cycle(&q).await.unwrap().dead_letters, 1);
    }
}
