//! `scheduled-sync`: EventBridge schedule -> one sync cycle (`provisync::lambda::run_sync_cycle`):
//! dead-letter report and outbox sweep (resends change events whose first send did not
//! happen), bounded in time.

use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use provisync::aws::{Backend, backend_from_env};
use provisync::lambda::{CycleReport, OUTBOX_SWEEP_BUDGET, init_tracing, run_sync_cycle};

async fn handler(
    backend: &Backend,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<CycleReport, Error> {
    tracing::info!(
        detail_type = %event.payload.detail_type,
        scheduled_at = ?event.payload.time,
        "sync cycle starts"
    );
    let report = run_sync_cycle(
        backend.store.as_ref(),
        backend.queue.as_ref(),
        OUTBOX_SWEEP_BUDGET,
    )
    .await?;
    tracing::info!(
        dead_letters = report.dead_letters,
        outbox_resent = report.outbox_resent,
        outbox_complete = report.outbox_complete,
        "sync cycle done"
    );
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
    use provisync::queue::Queue;
    use provisync::queue::store_queue::{StoreQueue, StoreQueueSettings};
    use provisync::scim::ResourceKind;
    use provisync::store::Store;
    use provisync::store::embedded::EmbeddedStore;
    use provisync::sync::event::{ChangeEvent, ChangeOp, Origin, outbox_write};
    use std::time::Duration;

    #[tokio::test]
    async fn aws_sample_scheduled_event() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let queue = Arc::new(StoreQueue::new(
            store.clone(),
            "t",
            StoreQueueSettings::default(),
        ));
        let backend = Backend {
            kind: BackendKind::Embedded,
            store: store.clone(),
            queue: queue.clone(),
            aws: None,
        };
        let path = format!(
            "{}/../../tests/fixtures/aws/eventbridge-scheduled-event.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let payload: EventBridgeEvent =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(payload.detail_type, "Scheduled Event");
        let invoke = |payload: &EventBridgeEvent| {
            handler(
                &backend,
                LambdaEvent::new(payload.clone(), lambda_runtime::Context::default()),
            )
        };
        let report = invoke(&payload).await.unwrap();
        assert_eq!(
            report,
            CycleReport {
                dead_letters: 0,
                outbox_resent: 0,
                outbox_complete: true
            }
        );

        // A change event committed with its write, whose send never happened (the
        // function died in between), two minutes ago: the cycle sends it.
        let mut e = ChangeEvent::new(ResourceKind::User, "u1", ChangeOp::Create, Origin::Scim);
        e.occurred_at = (chrono::Utc::now() - chrono::Duration::minutes(2)).to_rfc3339();
        store
            .transact(vec![outbox_write(&e).unwrap()])
            .await
            .unwrap();
        let report = invoke(&payload).await.unwrap();
        assert_eq!(report.outbox_resent, 1);
        let got = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].dedup_id, e.id);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"dead_letters": 0, "outbox_resent": 1, "outbox_complete": true})
        );
    }
}
