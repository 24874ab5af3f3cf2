//! `scheduled-sync`: EventBridge schedule -> one sync cycle (`provisync::lambda::run_sync_cycle`).

use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use provisync::aws::{Backend, backend_from_env};
use provisync::lambda::{CycleReport, init_tracing, run_sync_cycle};

async fn handler(
    backend: &Backend,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<CycleReport, Error> {
    tracing::info!(
        detail_type = %event.payload.detail_type,
        scheduled_at = ?event.payload.time,
        "sync cycle starts"
    );
    let report = run_sync_cycle(backend.queue.as_ref()).await?;
    tracing::info!(dead_letters = report.dead_letters, "sync cycle done");
    Ok(report)
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

    #[tokio::test]
    async fn aws_sample_scheduled_event() {
        let store = Arc::new(EmbeddedStore::in_memory());
        let queue = Arc::new(StoreQueue::new(
            store.clone(),
            "t",
            StoreQueueSettings::default(),
        ));
        let backend = Backend {
            kind: BackendKind::Embedded,
            store,
            queue,
            aws: None,
        };
        let path = format!(
            "{}/../../tests/fixtures/aws/eventbridge-scheduled-event.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let payload: EventBridgeEvent =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(payload.detail_type, "Scheduled Event");
        let report = handler(
            &backend,
            LambdaEvent::new(payload, lambda_runtime::Context::default()),
        )
        .await
        .unwrap();
        assert_eq!(report, CycleReport { dead_letters: 0 });
    }
}
