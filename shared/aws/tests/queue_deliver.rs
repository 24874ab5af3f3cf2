//! `queue-deliver` against SQS FIFO on the moto emulator (`PROVISYNC_TEST_MOTO`, set by
//! `scripts/test-env.sh`), with a target that answers slowly: real receive counts and visibility.
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

/// A webhook target on a loopback port that answers every request `200`, after `delay`.
async fn slow_target(delay: Duration) -> TargetConfig {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The request's head, then as much body as it announces.
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let body_at = loop {
                    let Ok(n) = conn.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&got[..body_at]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while got.len() < body_at + length {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                tokio::time::sleep(delay).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    serde_json::from_value(json!({
        "id": "slow",
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
    // The slow target listens on loopback: allowed, as `provisync serve` allows it.
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
    let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "u1@example.org"});
    let user = directory
        .create(ResourceKind::User, &body)
        .await
        .unwrap()
        .stored;
    let hub = provisync_core::hub::Hub::new(provisync_core::hub::HubParts {
        store,
        queue: queue.clone(),
        schemas: provisync_scim::SchemaRegistry::builtin(),
        secrets: provisync_core::crypto::SecretBox::generate().0,
        connectors: provisync_connectors::connectors_for,
        http: provisync_connectors::http::http_port,
    });
    // Answers after 2.2 s of the invocation's 3: one delivery leaves less than a call's
    // time (1 s) for the next record of its group.
    hub.targets
        .put(&slow_target(Duration::from_millis(2200)).await)
        .await
        .unwrap();
    let deliver =
        QueueDeliver::new(hub.deliverer.clone(), queue.clone(), MAX_RECEIVES).with_policy(POLICY);
    // Three changes of one user (one message group), each with other content (a change
    // the target has already is skipped without a call).
    let mut messages = Vec::new();
    for (n, title) in ["One", "Two", "Three"].into_iter().enumerate() {
        let op = if n == 0 {
            ChangeOp::Create
        } else {
            ChangeOp::Update
        };
        let mut e = ChangeEvent::new(ResourceKind::User, user.id(), op, Origin::Scim);
        let mut resource = user.resource.clone();
        resource["title"] = json!(title);
        e.resource = Some(resource);
        e.version = user.version + n as u64;
        messages.push(e.to_message().unwrap());
    }
    queue.send(messages).await.unwrap();

    // Invocation 1: the first is delivered; the two others are not tried.
    let batch = receive(&clients.sqs, &url, 1).await;
    assert_eq!(batch.len(), 3);
    assert!(batch.iter().all(|r| count(r) == 1));
    assert_eq!(invoke(&deliver, &clients.sqs, &url, batch).await.len(), 2);

    // The untried ones are back at once (no backoff), received a second time: now at the
    // dead-letter threshold.
    let batch = receive(&clients.sqs, &url, 0).await;
    assert_eq!(batch.len(), 2);
    assert!(batch.iter().all(|r| count(r) == MAX_RECEIVES));
    let old_dedup = batch[1].attributes["MessageDeduplicationId"].clone();

    // Invocation 2: the second is delivered (its last receive); the third, never tried,
    // would be dead-lettered by its next receive: it is sent again instead.
    let failed = invoke(&deliver, &clients.sqs, &url, batch).await;
    assert!(failed.is_empty(), "{failed:?}");

    // The resent copy: same group, a fresh receive count and dedup id.
    let batch = receive(&clients.sqs, &url, 0).await;
    assert_eq!(batch.len(), 1);
    assert_eq!(count(&batch[0]), 1);
    assert_ne!(batch[0].attributes["MessageDeduplicationId"], old_dedup);
    // Nothing untried reached the dead-letter queue.
    assert_eq!(queue.dead_letter_count().await.unwrap(), 0);
}
