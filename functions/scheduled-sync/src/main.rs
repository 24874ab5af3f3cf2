//! `scheduled-sync`: EventBridge schedule -> one sync cycle (`provisync_core::sync::schedule::run_schedule`):
//! pull every pull source, reconcile every `scheduled` target, resend change events whose
//! first send did not happen (outbox), report dead letters; bounded in time
//! ([`CYCLE_BUDGET`], under the function's 300 s timeout). The same code runs in
//! `provisync serve` (timer) and `provisync run-schedule`.

use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use provisync_aws::lambda::{hub_from_env, init_tracing};
use provisync_core::sync::schedule::{CYCLE_BUDGET, CycleReport, Schedule, run_schedule};

async fn handler(
    schedule: &Schedule,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<CycleReport, Error> {
    tracing::info!(
        detail_type = %event.payload.detail_type,
        scheduled_at = ?event.payload.time,
        "sync cycle starts"
    );
    let budget = cycle_budget(event.context.deadline, std::time::SystemTime::now());
    Ok(run_schedule(schedule, budget).await?)
}

/// What is left of the invocation (its deadline, epoch milliseconds), less a margin for
/// the report, and never more than [`CYCLE_BUDGET`]: a function deployed with a shorter
/// timeout still ends its cycle cleanly. An unknown deadline (0) gives the full budget.
fn cycle_budget(deadline_ms: u64, now: std::time::SystemTime) -> std::time::Duration {
    const MARGIN: std::time::Duration = std::time::Duration::from_secs(20);
    if deadline_ms == 0 {
        return CYCLE_BUDGET;
    }
    let deadline = std::time::UNIX_EPOCH + std::time::Duration::from_millis(deadline_ms);
    deadline
        .duration_since(now)
        .unwrap_or_default()
        .saturating_sub(MARGIN)
        .min(CYCLE_BUDGET)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    // SDK clients, the store and the hub wiring are built once, at cold start.
    let (_, hub) = hub_from_env(provisync_connectors::connectors_for).await?;
    let schedule = Arc::new(hub.schedule());
    lambda_runtime::run(service_fn(move |event| {
        let schedule = schedule.clone();
        async move { handler(&schedule, event).await }
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

    #[test]
    fn budget_follows_the_invocation_deadline() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ms = |d: Duration| {
            (now + d)
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        assert_eq!(cycle_budget(0, now), CYCLE_BUDGET);
        assert_eq!(
            cycle_budget(ms(Duration::from_secs(900)), now),
            CYCLE_BUDGET
        );
        assert_eq!(
            cycle_budget(ms(Duration::from_secs(60)), now),
            Duration::from_secs(40)
        );
        assert_eq!(
            cycle_budget(ms(Duration::from_secs(5)), now),
            Duration::ZERO
        );
        assert_eq!(
            cycle_budget(1, now),
            Duration::ZERO,
            "deadline already passed"
        );
    }

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
        });
        let schedule = hub.schedule();
        let path = format!(
            "{}/../../tests/fixtures/aws/eventbridge-scheduled-event.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let payload: EventBridgeEvent =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(payload.detail_type, "Scheduled Event");
        let invoke = |payload: &EventBridgeEvent| {
            handler(
                &schedule,
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
            serde_json::json!({"pulled": [], "reconciled": [], "dead_letters": 0, "outbox_resent": 1, "outbox_complete": true})
        );
    }
}
