//! `queue-deliver` against SQS FIFO on the moto emulator (`PROVISYNC_TEST_MOTO`, set by
//! `scripts/test-env.sh`), with a target that hangs: real receive counts and visibility.
//! Skips without the emulator unless `PROVISYNC_REQUIRE_PEERS` is set.
//!
//! Lambda's event source mapping is played by the test: it receives a batch, hands it to
//! `QueueDeliver::handle` and deletes the records not reported failed.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use provisync_aws::lambda::{DeadlinePolicy, QueueDeliver};
use provisync_aws::sqs::SqsQueue;
use provisync_aws::{AwsClients, AwsInitConfig, aws_init_with};
use provisync_core::event::{ChangeEvent, ChangeOp, Origin};
use provisync_core::queue::Queue;
use provisync_core::store::Store;
use provisync_core::store::embedded::EmbeddedStore;
use provisync_core::target::TargetConfig;
use provisync_scim::ResourceKind;
use serde_json::json;

const MAX_RECEIVES: u32 = 2;
const POLICY: DeadlinePolicy = DeadlinePolicy {
    start_margin: Duration::from_secs(1),
    finish_margin: Duration::from_millis(500),
};

/// A webhook target on a loopback port that accepts connections and never answers.
async fn hanging_target() -> TargetConfig {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    serde_json::from_value(json!({
        "id": "hangs",
        "kind": "webhook",
        "url": format!("http://127.0.0.1:{port}/hook"),
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "user_sync": true,
    }))
    .unwrap()
}

/// One receive of up to 10 messages, as the event source mapping hands them over.
async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, wait: i32) -> Vec<SqsMessage> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    out.messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let mut r = SqsMessage::default();
            r.message_id = m.message_id.clone();
            r.receipt_handle = m.receipt_handle.clone();
            r.body = m.body.clone();
            for (k, v) in m.attributes.unwrap_or_default() {
                r.attributes.insert(k.as_str().to_string(), v);
            }
            r
        })
        .collect()
}

fn count(r: &SqsMessage) -> u32 {
    r.attributes["ApproximateReceiveCount"].parse().unwrap()
}

fn group(r: &SqsMessage) -> &str {
    &r.attributes["MessageGroupId"]
}

/// One invocation of 3 s: handle, then delete what was not reported failed. Returns the
/// ids reported failed.
async fn invoke(
    deliver: &QueueDeliver,
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    batch: Vec<SqsMessage>,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let resp = deliver.handle(batch.clone(), Some(deadline)).await;
    assert!(
        tokio::time::Instant::now() < deadline,
        "answered after the deadline"
    );
    let failed: Vec<String> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    for r in batch {
        if !failed.contains(r.message_id.as_ref().unwrap()) {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(r.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    failed
}

#[tokio::test]
async fn records_never_tried_do_not_march_to_the_dead_letter_queue() {
    // The hanging target listens on loopback: allowed, as `provisync serve` allows it.
    provisync_core::net::set_process_policy(provisync_core::net::UrlPolicy::new(
        provisync_core::net::PrivateTargets::Loopback,
    ));
    let Some(endpoint) = std::env::var("PROVISYNC_TEST_MOTO")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        assert!(
            std::env::var_os("PROVISYNC_REQUIRE_PEERS").is_none(),
            "PROVISYNC_TEST_MOTO is not set but PROVISYNC_REQUIRE_PEERS is: run through scripts/test-env.sh"
        );
        eprintln!("skipped: PROVISYNC_TEST_MOTO not set (run through scripts/test-env.sh)");
        return;
    };
    let clients = AwsClients::for_endpoint(&endpoint).await;
    let name = format!("qd-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut cfg = AwsInitConfig::new(format!("t-{name}"), Some(name));
    cfg.max_receive_count = MAX_RECEIVES;
    cfg.visibility_timeout_secs = 30;
    let report = aws_init_with(&clients, &cfg).await.unwrap();
    let (url, dlq) = (report.queue_url.unwrap(), report.dlq_url.unwrap());
    let queue = Arc::new(SqsQueue::new(clients.sqs.clone(), url.clone()).with_dlq_url(dlq));

    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    // The users are in the hub (a change to a resource the hub no longer holds is stale
    // and never reaches a target); written without change events of their own.
    let directory = provisync_core::directory::Directory::new(
        store.clone(),
        provisync_scim::SchemaRegistry::builtin(),
    );
    let mut users = Vec::new();
    for u in ["u1", "u2", "u3"] {
        let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("{u}@example.org")});
        let stored = directory
            .create(ResourceKind::User, &body)
            .await
            .unwrap()
            .stored;
        users.push(stored);
    }
    let hub = provisync_core::hub::Hub::new(provisync_core::hub::HubParts {
        store,
        queue: queue.clone(),
        schemas: provisync_scim::SchemaRegistry::builtin(),
        secrets: provisync_core::crypto::SecretBox::generate().0,
        connectors: provisync_connectors::connectors_for,
        http: provisync_connectors::http::http_port,
    });
    hub.targets.put(&hanging_target().await).await.unwrap();
    let deliver =
        QueueDeliver::new(hub.deliverer.clone(), queue.clone(), MAX_RECEIVES).with_policy(POLICY);
    // Three users, three message groups.
    let mut messages = Vec::new();
    for u in &users {
        let mut e = ChangeEvent::new(ResourceKind::User, u.id(), ChangeOp::Create, Origin::Scim);
        e.resource = Some(u.resource.clone());
        e.version = u.version;
        messages.push(e.to_message().unwrap());
    }
    queue.send(messages).await.unwrap();

    // Invocation 1: u1 is tried and stopped at the deadline; u2 and u3 are not tried.
    let batch = receive(&clients.sqs, &url, 1).await;
    assert_eq!(batch.len(), 3);
    assert!(batch.iter().all(|r| count(r) == 1));
    let first = group(&batch[0]).to_string();
    assert_eq!(invoke(&deliver, &clients.sqs, &url, batch).await.len(), 3);

    // The untried ones are back at once (no backoff), received a second time: now at the
    // dead-letter threshold. The tried one waits for its backoff.
    let batch = receive(&clients.sqs, &url, 0).await;
    let groups: Vec<&str> = batch.iter().map(group).collect();
    assert_eq!(batch.len(), 2, "{groups:?}");
    assert!(!groups.contains(&first.as_str()));
    assert!(batch.iter().all(|r| count(r) == MAX_RECEIVES));
    let second = group(&batch[0]).to_string();
    let third = group(&batch[1]).to_string();
    let old_dedup = batch[1].attributes["MessageDeduplicationId"].clone();

    // Invocation 2: the second is tried (its last attempt) and stopped; the third, never
    // tried, would be dead-lettered by its next receive: it is sent again instead.
    let failed = invoke(&deliver, &clients.sqs, &url, batch).await;
    assert_eq!(failed.len(), 1);

    // The resent copy: same group and body, a fresh receive count and dedup id.
    let batch = receive(&clients.sqs, &url, 0).await;
    let copy = batch
        .iter()
        .find(|r| group(r) == third)
        .expect("the untried change is in the queue again");
    assert_eq!(count(copy), 1);
    assert_ne!(copy.attributes["MessageDeduplicationId"], old_dedup);
    assert!(batch.iter().all(|r| group(r) != second));
    // Nothing untried reached the dead-letter queue.
    assert_eq!(queue.dead_letter_count().await.unwrap(), 0);
}
