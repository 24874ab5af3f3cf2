//! `queue-deliver`: SQS FIFO batch -> change events delivered to the targets within the
//! invocation's time, partial batch failures reported (`ReportBatchItemFailures`), retries
//! scheduled with `ChangeMessageVisibility`, metrics as CloudWatch EMF lines. Logic lives
//! in `provisync_aws::queue_deliver`. The operator key comes from Secrets Manager
//! (`PROVISYNC_SECRET_KEY_ARN`); `PROVISYNC_MAX_RECEIVE_COUNT` (default 5) is the queue's
//! dead-letter threshold.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
#[cfg(test)]
use provisync_aws::lambda::DeadlinePolicy;
use provisync_aws::lambda::{QueueDeliver, deliverer_from_env, init_tracing, invocation_deadline};

async fn handler(
    deliver: &QueueDeliver,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let records = event.payload.records;
    tracing::info!(records = records.len(), "batch received");
    let deadline = invocation_deadline(event.context.deadline);
    let response = deliver.handle(records, deadline).await;
    tracing::info!(failed = response.batch_item_failures.len(), "batch done");
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    // SDK clients, the store and the delivery engine are built once, at cold start.
    let deliver = Arc::new(
        deliverer_from_env(
            provisync_connectors::connectors_for,
            // Delivers only: no source is pulled here (the connectors have their own client).
            provisync_core::connector::http::no_http,
        )
        .await?,
    );
    lambda_runtime::run(service_fn(move |event| {
        let deliver = deliver.clone();
        async move { handler(&deliver, event).await }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use provisync_core::crypto::SecretBox;
    use provisync_core::event::{ChangeEvent, ChangeOp, Origin};
    use provisync_core::queue::store_queue::{StoreQueue, StoreQueueSettings};
    use provisync_core::queue::{DeadLetter, Delivery, OutMessage, Queue, QueueError};
    use provisync_core::store::Store;
    use provisync_core::store::embedded::EmbeddedStore;
    use provisync_core::sync::audit::AuditStatus;
    use provisync_core::target::TargetConfig;
    use provisync_scim::ResourceKind;
    use serde_json::{Value, json};

    /// The store-backed queue, recording `retry_later` calls (SQS `ChangeMessageVisibility`)
    /// and sends.
    struct Recording {
        inner: StoreQueue,
        retries: Mutex<Vec<(String, Duration)>>,
        sent: Mutex<Vec<OutMessage>>,
    }

    #[async_trait]
    impl Queue for Recording {
        async fn send(&self, m: Vec<OutMessage>) -> Result<(), QueueError> {
            self.sent.lock().unwrap().extend(m.iter().cloned());
            self.inner.send(m).await
        }
        async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
            self.inner.receive(max, wait).await
        }
        async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
            self.inner.ack(receipt).await
        }
        async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
            self.retries
                .lock()
                .unwrap()
                .push((receipt.to_string(), delay));
            Ok(())
        }
        async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
            self.inner.dead_letters(limit).await
        }
        async fn dead_letter_count(&self) -> Result<usize, QueueError> {
            self.inner.dead_letter_count().await
        }
        async fn redrive(&self, limit: usize) -> Result<usize, QueueError> {
            self.inner.redrive(limit).await
        }
        async fn redrive_one(&self, dedup_id: &str) -> Result<bool, QueueError> {
            self.inner.redrive_one(dedup_id).await
        }
        fn backend(&self) -> &'static str {
            "recording"
        }
    }

    struct Setup {
        deliver: QueueDeliver,
        queue: Arc<Recording>,
        admin: provisync_core::hub::Hub,
    }

    /// The real engine (the same composition root the functions use) on an in-memory store.
    fn setup() -> Setup {
        // The test targets listen on loopback, which the process policy refuses unless
        // the operator opts in (`PROVISYNC_ALLOW_PRIVATE_TARGETS=loopback`).
        provisync_tests::allow_loopback_peers();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let queue = Arc::new(Recording {
            inner: StoreQueue::new(store.clone(), "t", StoreQueueSettings::default()),
            retries: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
        });
        let hub = provisync_core::hub::Hub::new(provisync_core::hub::HubParts {
            store,
            queue: queue.clone(),
            schemas: provisync_scim::SchemaRegistry::builtin(),
            secrets: SecretBox::generate().0,
            connectors: provisync_connectors::connectors_for,
            http: provisync_connectors::http::http_port,
        });
        Setup {
            deliver: QueueDeliver::new(hub.deliverer.clone(), queue.clone(), 5),
            queue,
            admin: hub,
        }
    }

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../../tests/fixtures/aws/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn event(v: Value) -> LambdaEvent<SqsEvent> {
        LambdaEvent::new(
            serde_json::from_value(v).unwrap(),
            lambda_runtime::Context::default(),
        )
    }

    /// An event whose invocation ends `left` from now (the context's deadline).
    fn event_ending_in(v: Value, left: Duration) -> LambdaEvent<SqsEvent> {
        let mut context = lambda_runtime::Context::default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        context.deadline = (now + left).as_millis() as u64;
        LambdaEvent::new(serde_json::from_value(v).unwrap(), context)
    }

    /// A target that accepts connections and never answers (a loopback listener that holds
    /// every connection open).
    async fn hanging_target() -> TargetConfig {
        let peer = provisync_tests::peers::hanging_peer().await;
        serde_json::from_value(json!({
            "id": "hangs",
            "kind": "scim",
            "base_url": format!("{peer}/scim/v2"),
            "auth": {"bearer": "t0ken"},
        }))
        .unwrap()
    }

    /// Three users' events for a target that hangs, with `receive_count` receives so far.
    async fn hanging_batch(hub: &provisync_core::hub::Hub, receive_count: u32) -> Value {
        let mut v = fixture("sqs-fifo-batch.json");
        let records = v["Records"].as_array_mut().unwrap();
        records.truncate(3);
        for (i, r) in records.iter_mut().enumerate() {
            let user = format!("user-{i}");
            r["body"] = change_event(&hub_user(hub, &user).await, &[]).into();
            r["attributes"]["MessageGroupId"] = user.into();
            r["attributes"]["ApproximateReceiveCount"] = receive_count.to_string().into();
        }
        v
    }

    /// Short margins, so the test's invocation can last 3 s.
    const TEST_POLICY: DeadlinePolicy = DeadlinePolicy {
        start_margin: Duration::from_secs(1),
        finish_margin: Duration::from_millis(500),
    };

    fn failed(resp: &SqsBatchResponse) -> Vec<String> {
        resp.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    }

    /// A target on a loopback port nobody listens on: connection refused, retryable.
    fn down_target() -> TargetConfig {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        serde_json::from_value(json!({
            "id": "down",
            "kind": "scim",
            "base_url": format!("http://127.0.0.1:{port}/scim/v2"),
            "auth": {"bearer": "t0ken"},
        }))
        .unwrap()
    }

    /// A user the hub holds (a change to a resource the hub no longer holds is stale and
    /// never reaches a target), created without a change event of its own; its id.
    async fn hub_user(
        hub: &provisync_core::hub::Hub,
        name: &str,
    ) -> provisync_core::directory::Stored {
        let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("{name}@example.org")});
        provisync_core::directory::Directory::new(
            hub.store.clone(),
            provisync_scim::SchemaRegistry::builtin(),
        )
        .create(ResourceKind::User, &body)
        .await
        .unwrap()
        .stored
    }

    /// The change event of `user`'s creation, as a queue message body.
    fn change_event(user: &provisync_core::directory::Stored, only_targets: &[&str]) -> String {
        let mut e = ChangeEvent::new(
            ResourceKind::User,
            user.id(),
            ChangeOp::Create,
            Origin::Scim,
        );
        e.resource = Some(user.resource.clone());
        e.version = user.version;
        e.only_targets = only_targets.iter().map(|s| s.to_string()).collect();
        e.to_message().unwrap().body
    }

    #[tokio::test]
    async fn aws_sample_fifo_event_is_malformed() {
        // The AWS sample's body is plain text, not a change event: reported failed, made
        // visible again at once so it reaches the dead-letter queue quickly.
        let s = setup();
        let resp = handler(&s.deliver, event(fixture("sqs-fifo-event.json")))
            .await
            .unwrap();
        let json = serde_json::to_value(&resp).unwrap();
        assert_eq!(
            json,
            json!({"batchItemFailures": [{"itemIdentifier": "11d6ee51-4cc7-4302-9e22-7cd8afdaadf5"}]})
        );
        let retries = s.queue.retries.lock().unwrap().clone();
        assert_eq!(retries.len(), 1);
        assert!(retries[0].0.starts_with("AQEB"));
        assert_eq!(retries[0].1, Duration::ZERO);
    }

    #[tokio::test]
    async fn change_events_without_targets_are_delivered() {
        // The batch fixture: valid change events, except msg-3 (user-a) which is not one.
        // No target is defined, so a valid event is delivered (to nobody) and acked; the
        // malformed one fails, and msg-5 of the same group fails with it, unattempted.
        let s = setup();
        let resp = handler(&s.deliver, event(fixture("sqs-fifo-batch.json")))
            .await
            .unwrap();
        assert_eq!(failed(&resp), ["msg-3", "msg-5"]);
        let retries = s.queue.retries.lock().unwrap().clone();
        assert_eq!(
            retries,
            [
                ("receipt-3".to_string(), Duration::ZERO),
                ("receipt-5".to_string(), Duration::ZERO)
            ]
        );
    }

    #[tokio::test]
    async fn retryable_failure_fails_the_rest_of_its_group() {
        let s = setup();
        s.admin.targets.put(&down_target()).await.unwrap();

        let mut v = fixture("sqs-fifo-batch.json");
        let records = v["Records"].as_array_mut().unwrap();
        // user-a: two events for the dead target; user-b: events only for another target.
        let (a, b) = (
            hub_user(&s.admin, "user-a").await,
            hub_user(&s.admin, "user-b").await,
        );
        records[0]["body"] = change_event(&a, &[]).into();
        records[2]["body"] = change_event(&a, &[]).into();
        records[4]["body"] = change_event(&a, &[]).into();
        records[1]["body"] = change_event(&b, &["elsewhere"]).into();
        records[3]["body"] = change_event(&b, &["elsewhere"]).into();
        let resp = handler(&s.deliver, event(v)).await.unwrap();
        assert_eq!(failed(&resp), ["msg-1", "msg-3", "msg-5"]);
        // Every record of the failed group gets the same backoff (1 s with jitter on the
        // first receive), so the group comes back together.
        let retries = s.queue.retries.lock().unwrap().clone();
        let receipts: Vec<&str> = retries.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(receipts, ["receipt-1", "receipt-3", "receipt-5"]);
        let delay = retries[0].1;
        assert!(delay >= Duration::from_millis(500) && delay <= Duration::from_secs(1));
        assert!(retries.iter().all(|(_, d)| *d == delay));
        // The one attempt is audited as a retry (receive 1 of 5, not the final one).
        let (entries, _) = s.admin.audit.query(&Default::default()).await.unwrap();
        let statuses: Vec<_> = entries
            .iter()
            .map(|e| (e.target.as_str(), e.resource_id.as_str(), e.status))
            .collect();
        assert_eq!(statuses, [("down", a.id(), AuditStatus::Retry)]);
    }

    #[tokio::test]
    async fn last_receive_is_audited_dead() {
        let s = setup();
        s.admin.targets.put(&down_target()).await.unwrap();
        let mut v = fixture("sqs-fifo-event.json");
        v["Records"][0]["body"] = change_event(&hub_user(&s.admin, "user-z").await, &[]).into();
        v["Records"][0]["attributes"]["ApproximateReceiveCount"] = "5".into();
        let resp = handler(&s.deliver, event(v)).await.unwrap();
        assert_eq!(failed(&resp), ["11d6ee51-4cc7-4302-9e22-7cd8afdaadf5"]);
        let (entries, _) = s.admin.audit.query(&Default::default()).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].status, AuditStatus::Dead);
    }

    /// A target that never answers: the three users' records (three message groups) are
    /// tried side by side, each stopped before the invocation's deadline and retried with
    /// backoff; the function answers in time with every record failed.
    #[tokio::test]
    async fn a_hanging_target_does_not_time_the_invocation_out() {
        let s = setup();
        s.admin.targets.put(&hanging_target().await).await.unwrap();
        let deliver = QueueDeliver::new(s.admin.deliverer.clone(), s.queue.clone(), 5)
            .with_policy(TEST_POLICY);
        let started = std::time::Instant::now();
        let resp = handler(
            &deliver,
            event_ending_in(hanging_batch(&s.admin, 1).await, Duration::from_secs(3)),
        )
        .await
        .unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "answered after {took:?}");
        assert!(
            took >= Duration::from_millis(2400),
            "stopped early: {took:?}"
        );
        assert_eq!(failed(&resp), ["msg-1", "msg-2", "msg-3"]);
        let retries = s.queue.retries.lock().unwrap().clone();
        assert_eq!(retries.len(), 3, "{retries:?}");
        // All three attempted (none left untried behind another group): backoff each.
        assert!(
            retries.iter().all(|r| r.1 >= Duration::from_millis(500)),
            "{retries:?}"
        );
        assert!(s.queue.sent.lock().unwrap().is_empty());
    }

    /// A SCIM target of the hub that answers after `latency`.
    async fn slow_target(s: &Setup, latency: Duration) -> provisync_tests::peers::FaultyTarget {
        let target = provisync_tests::peers::FaultyTarget::start().await;
        target.set_latency(latency);
        let config = json!({
            "id": "slow", "kind": "scim", "base_url": target.base,
            "auth": {"bearer": target.token},
        });
        s.admin
            .targets
            .put(&serde_json::from_value(config).unwrap())
            .await
            .unwrap();
        target
    }

    /// A batch's message groups go side by side: eight users' changes to a target that
    /// answers after 600 ms all reach it within a 3 s invocation (a call's time, 1 s,
    /// kept free at the end). One after another, four were delivered and four left for
    /// the next invocation.
    #[tokio::test]
    async fn a_batch_s_groups_go_side_by_side() {
        let s = setup();
        let target = slow_target(&s, Duration::from_millis(600)).await;
        let deliver = QueueDeliver::new(s.admin.deliverer.clone(), s.queue.clone(), 5)
            .with_policy(TEST_POLICY);
        let mut batch = fixture("sqs-fifo-batch.json");
        {
            let records = batch["Records"].as_array_mut().unwrap();
            let template = records[0].clone();
            records.clear();
            for i in 0..8 {
                let user = format!("side-{i}");
                let mut r = template.clone();
                r["messageId"] = format!("msg-{i}").into();
                r["body"] = change_event(&hub_user(&s.admin, &user).await, &[]).into();
                r["attributes"]["MessageGroupId"] = user.into();
                r["attributes"]["MessageDeduplicationId"] = format!("side-{i}").into();
                records.push(r);
            }
        }
        let resp = handler(&deliver, event_ending_in(batch, Duration::from_secs(3)))
            .await
            .unwrap();
        assert_eq!(failed(&resp), Vec::<String>::new());
        assert_eq!(target.user_count(), 8);
    }

    /// Records never tried whose receive count is at the dead-letter threshold are sent
    /// again as fresh messages (same group and body, new deduplication id) and not
    /// reported failed, so SQS does not dead-letter changes nobody tried to deliver.
    /// Here one user's three changes (one message group) at a target that answers after
    /// 2.2 s: the first is delivered, leaving less than a call's time for the others.
    #[tokio::test]
    async fn untried_records_at_the_threshold_are_resent_not_dead_lettered() {
        let s = setup();
        let target = slow_target(&s, Duration::from_millis(2200)).await;
        let deliver = QueueDeliver::new(s.admin.deliverer.clone(), s.queue.clone(), 5)
            .with_policy(TEST_POLICY);
        let mut batch = fixture("sqs-fifo-batch.json");
        let user = hub_user(&s.admin, "one-group").await;
        {
            let records = batch["Records"].as_array_mut().unwrap();
            records.truncate(3);
            for r in records.iter_mut() {
                r["body"] = change_event(&user, &[]).into();
                r["attributes"]["MessageGroupId"] = "one-group".into();
                r["attributes"]["ApproximateReceiveCount"] = "5".into();
            }
        }
        let resp = handler(
            &deliver,
            event_ending_in(batch.clone(), Duration::from_secs(3)),
        )
        .await
        .unwrap();
        // The one attempted (its last receive) is delivered; the two others are resent.
        assert_eq!(failed(&resp), Vec::<String>::new());
        assert_eq!(target.user_count(), 1);
        let sent = s.queue.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 2, "{sent:?}");
        for (m, r) in sent.iter().zip(&batch["Records"].as_array().unwrap()[1..]) {
            assert_eq!(m.body, r["body"].as_str().unwrap());
            assert_eq!(
                m.group_id,
                r["attributes"]["MessageGroupId"].as_str().unwrap()
            );
            let original = r["attributes"]["MessageDeduplicationId"].as_str().unwrap();
            assert!(m.dedup_id.starts_with(original) && m.dedup_id != original);
        }
    }
}
