//! `scheduled-sync`: EventBridge schedule -> one sync cycle (`provisync_core::sync::schedule::run_schedule`):
//! pull every pull source, reconcile every `scheduled` target, resend change events whose
//! first send did not happen (outbox), report dead letters; bounded in time
//! (`CYCLE_BUDGET`, cut to what the invocation has left: `provisync_aws::lambda::scheduled_cycle`),
//! its counts out as CloudWatch metric lines. The same cycle runs in `provisync serve`
//! (timer) and `provisync run-schedule`.

use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use provisync_aws::lambda::{hub_from_env, init_tracing, invocation_deadline, scheduled_cycle};
use provisync_aws::metrics::Metrics;
use provisync_core::sync::schedule::{CycleReport, Schedule};

async fn handler(
    schedule: &Schedule,
    metrics: &Metrics,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<CycleReport, Error> {
    tracing::info!(
        detail_type = %event.payload.detail_type,
        scheduled_at = ?event.payload.time,
        "scheduled event"
    );
    let deadline = invocation_deadline(event.context.deadline);
    Ok(scheduled_cycle(schedule, deadline, metrics).await?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    // SDK clients, the store and the hub wiring are built once, at cold start.
    let (_, hub) = hub_from_env(
        provisync_connectors::connectors_for,
        provisync_connectors::http::http_port,
    )
    .await?;
    let schedule = Arc::new(hub.schedule());
    let metrics = Metrics::stdout();
    lambda_runtime::run(service_fn(move |event| {
        let (schedule, metrics) = (schedule.clone(), metrics.clone());
        async move { handler(&schedule, &metrics, event).await }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use provisync_core::event::{ChangeEvent, ChangeOp, Origin, outbox_write};
    use provisync_core::queue::Queue;
    use provisync_core::queue::store_queue::{StoreQueue, StoreQueueSettings};
    use provisync_core::store::Store;
    use provisync_core::store::embedded::EmbeddedStore;
    use provisync_scim::ResourceKind;
    use std::time::Duration;

    #[tokio::test]
    async fn aws_sample_scheduled_event() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let queue = Arc::new(StoreQueue::new(
            store.clone(),
            "t",
            StoreQueueSettings::default(),
        ));
        let (secrets, _) = provisync_core::crypto::SecretBox::generate();
        let hub = provisync_core::hub::Hub::new(provisync_core::hub::HubParts {
            store: store.clone(),
            queue: queue.clone(),
            schemas: provisync_scim::SchemaRegistry::builtin(),
            secrets,
            connectors: provisync_connectors::connectors_for,
            http: provisync_connectors::http::http_port,
        });
        let schedule = hub.schedule();
        let path = format!(
            "{}/../../tests/fixtures/aws/eventbridge-scheduled-event.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let payload: EventBridgeEvent =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(payload.detail_type, "Scheduled Event");
        let (metrics, lines) = Metrics::collecting();
        let invoke = |payload: &EventBridgeEvent| {
            handler(
                &schedule,
                &metrics,
                LambdaEvent::new(payload.clone(), lambda_runtime::Context::default()),
            )
        };
        let report = invoke(&payload).await.unwrap();
        assert_eq!(
            report,
            CycleReport {
                dead_letters: 0,
                outbox_resent: 0,
                outbox_complete: true,
                ..Default::default()
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
            serde_json::json!({"pulled": [], "reconciled": [], "dead_letters": 0, "outbox_resent": 1, "outbox_complete": true, "runs_settled": 0})
        );
        // One metric line per cycle, in the Embedded Metric Format.
        let lines = lines.lock().unwrap().clone();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let last: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(last["Function"], "scheduled-sync");
        assert_eq!(last["OutboxResent"], 1);
        assert_eq!(last["DeadLetters"], 0);
        assert_eq!(
            last["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Provisync"
        );
    }

    /// An invocation that ends in 22 s, a scheduled target that hangs: the cycle's budget
    /// is cut to what is left, the reconcile stopped at its grace, the function answers in
    /// time and the target's lease is free for the next cycle.
    #[tokio::test]
    async fn a_hanging_target_does_not_outlive_the_invocation() {
        provisync_tests::allow_loopback_peers();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let queue = Arc::new(StoreQueue::new(
            store.clone(),
            "t",
            StoreQueueSettings::default(),
        ));
        let hub = provisync_core::hub::Hub::new(provisync_core::hub::HubParts {
            store: store.clone(),
            queue,
            schemas: provisync_scim::SchemaRegistry::builtin(),
            secrets: provisync_core::crypto::SecretBox::generate().0,
            connectors: provisync_connectors::connectors_for,
            http: provisync_connectors::http::http_port,
        });
        let peer = provisync_tests::peers::hanging_peer().await;
        let target: provisync_core::target::TargetConfig =
            serde_json::from_value(serde_json::json!({
                "id": "hangs", "kind": "scim", "mode": "scheduled",
                "base_url": format!("{peer}/scim/v2"), "auth": {"bearer": "t"},
            }))
            .unwrap();
        hub.targets.put(&target).await.unwrap();
        let path = format!(
            "{}/../../tests/fixtures/aws/eventbridge-scheduled-event.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let payload: EventBridgeEvent =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let left = Duration::from_secs(22);
        let mut context = lambda_runtime::Context::default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        context.deadline = (now + left).as_millis() as u64;
        let (metrics, lines) = Metrics::collecting();
        let started = std::time::Instant::now();
        let report = handler(
            &hub.schedule(),
            &metrics,
            LambdaEvent::new(payload, context),
        )
        .await
        .unwrap();
        let took = started.elapsed();
        assert!(took < left, "answered after the invocation's end: {took:?}");
        assert_eq!(report.reconciled.len(), 1);
        assert_eq!(
            report.reconciled[0].state,
            provisync_core::sync::reconcile::RunState::Failed
        );
        let lease = provisync_core::sync::reconcile::Lease::acquire(
            store.as_ref(),
            "hangs",
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert!(lease.is_some(), "the reconcile lease was left held");
        // Its metrics: the failed run of the target.
        let lines = lines.lock().unwrap().clone();
        let target: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(target["Target"], "hangs");
        assert_eq!(target["ReconcileError"], 1);
    }
}
