//! `queue-deliver`: SQS FIFO batch -> change events delivered, partial batch failures
//! reported (`ReportBatchItemFailures`). Logic lives in `provisync::lambda`.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use provisync::aws::{Backend, backend_from_env};
use provisync::lambda::{deliver_change_event, init_tracing, process_batch};

async fn handler(
    backend: &Backend,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let records = event.payload.records;
    tracing::info!(
        records = records.len(),
        backend = backend.store.backend(),
        "batch received"
    );
    let response = process_batch(records, |d| async move { deliver_change_event(&d).await }).await;
    tracing::info!(failed = response.batch_item_failures.len(), "batch done");
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    // SDK clients and the store are built once, at cold start.
    let backend = Arc::new(backend_from_env().await?);
    lambda_runtime::run(service_fn(move |event| {
        let backend = backend.clone();
        async move { handler(&backend, event).await }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use provisync::aws::BackendKind;
    use provisync::queue::store_queue::{StoreQueue, StoreQueueSettings};
    use provisync::store::embedded::EmbeddedStore;

    fn backend() -> Backend {
        let store = Arc::new(EmbeddedStore::in_memory());
        let queue = Arc::new(StoreQueue::new(
            store.clone(),
            "t",
            StoreQueueSettings::default(),
        ));
        Backend {
            kind: BackendKind::Embedded,
            store,
            queue,
            aws: None,
        }
    }

    fn event(name: &str) -> LambdaEvent<SqsEvent> {
        let path = format!(
            "{}/../../tests/fixtures/aws/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let raw = std::fs::read_to_string(&path).unwrap();
        LambdaEvent::new(
            serde_json::from_str(&raw).unwrap(),
            lambda_runtime::Context::default(),
        )
    }

    #[tokio::test]
    async fn aws_sample_fifo_event() {
        // The AWS sample's body is plain text, not a change event: reported failed.
        let resp = handler(&backend(), event("sqs-fifo-event.json"))
            .await
            .unwrap();
        let json = serde_json::to_value(&resp).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "11d6ee51-4cc7-4302-9e22-7cd8afdaadf5"}]})
        );
    }

    #[tokio::test]
    async fn batch_with_a_failing_group() {
        let resp = handler(&backend(), event("sqs-fifo-batch.json"))
            .await
            .unwrap();
        let failed: Vec<_> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failed, ["msg-3", "msg-5"]);
    }
}
