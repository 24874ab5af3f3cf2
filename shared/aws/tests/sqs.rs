//! The queue contract against SQS FIFO on the moto emulator (`PROVISYNC_TEST_MOTO`, set by
//! `scripts/test-env.sh`). Skips without it unless `PROVISYNC_REQUIRE_PEERS` is set.
//! Kept small: moto's FIFO sends are slow.

use std::time::Duration;

use provisync_aws::sqs::SqsQueue;
use provisync_aws::{AwsClients, AwsInitConfig, aws_init_with};
use provisync_core::queue::contract::{Setup, run_all};

#[tokio::test]
async fn contract_on_moto() {
    let Some(endpoint) = std::env::var("PROVISYNC_TEST_MOTO")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        if std::env::var_os("PROVISYNC_REQUIRE_PEERS").is_some() {
            panic!(
                "PROVISYNC_TEST_MOTO is not set but PROVISYNC_REQUIRE_PEERS is: run through scripts/test-env.sh"
            );
        }
        eprintln!("skipped: PROVISYNC_TEST_MOTO not set (run through scripts/test-env.sh)");
        return;
    };
    let clients = AwsClients::for_endpoint(&endpoint).await;
    let name = format!("pq-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let table = format!("pt-{name}");
    let setup = Setup {
        visibility_timeout: Duration::from_secs(2),
        max_receive_count: 3,
        dedup_after_ack: false,
    };
    let mut cfg = AwsInitConfig::new(table, Some(name.clone()));
    cfg.visibility_timeout_secs = 2;
    cfg.max_receive_count = setup.max_receive_count;
    let report = aws_init_with(&clients, &cfg)
        .await
        .expect("aws-init on moto");
    assert!(report.queue_created && report.dlq_created);
    let url = report.queue_url.clone().unwrap();
    assert!(url.ends_with(&format!("{name}.fifo")), "{url}");
    assert!(
        report
            .dlq_url
            .as_deref()
            .unwrap()
            .ends_with(&format!("{name}-dlq.fifo"))
    );
    // Idempotent.
    let again = aws_init_with(&clients, &cfg).await.unwrap();
    assert!(!again.queue_created && !again.dlq_created && again.queue_url == report.queue_url);
    // Name and URL resolve to the same queue.
    assert_eq!(
        provisync_aws::queue_url(&clients.sqs, &name).await.unwrap(),
        url
    );

    let queue = SqsQueue::new(clients.sqs.clone(), url);
    run_all(&queue, setup).await;
}

/// Large change events through the outbox sweep to SQS on moto: batches are split by
/// size as well as by count, and an event too large for SQS is reported and skipped
/// instead of holding back the events behind it.
#[tokio::test]
async fn outbox_sweep_with_large_events_on_moto() {
    use provisync_core::event::{ChangeEvent, ChangeOp, Origin, outbox_write, sweep_outbox_until};
    use provisync_core::queue::Queue;
    use provisync_core::store::Store;
    use provisync_scim::ResourceKind;

    let Some(endpoint) = std::env::var("PROVISYNC_TEST_MOTO")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        assert!(
            std::env::var_os("PROVISYNC_REQUIRE_PEERS").is_none(),
            "PROVISYNC_TEST_MOTO is not set but PROVISYNC_REQUIRE_PEERS is"
        );
        eprintln!("skipped: PROVISYNC_TEST_MOTO not set (run through scripts/test-env.sh)");
        return;
    };
    let clients = AwsClients::for_endpoint(&endpoint).await;
    let name = format!("pl-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let table = format!("pt-{name}");
    let report = aws_init_with(&clients, &AwsInitConfig::new(table.clone(), Some(name)))
        .await
        .expect("aws-init on moto");
    let store = provisync_aws::dynamodb::DynamoStore::new(clients.dynamodb.clone(), table);
    let queue = SqsQueue::new(clients.sqs.clone(), report.queue_url.clone().unwrap());
    let event = |user: &str, kib: usize| {
        let mut e = ChangeEvent::new(ResourceKind::User, user, ChangeOp::Update, Origin::Scim);
        e.resource = Some(serde_json::json!({"userName": user, "title": "x".repeat(kib * 1024)}));
        e
    };
    // The oldest record is too large for SQS; ten of 150 KiB follow (1.5 MiB together,
    // more than one SendMessageBatch may carry).
    let too_large = event("big", 300);
    store
        .transact(vec![outbox_write(&too_large).unwrap()])
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        let e = event(&format!("u{i}"), 150);
        ids.push(e.id.clone());
        store
            .transact(vec![outbox_write(&e).unwrap()])
            .await
            .unwrap();
    }
    let sweep = sweep_outbox_until(&store, &queue, Duration::ZERO, None)
        .await
        .expect("the sweep goes on past a record SQS cannot take");
    assert_eq!(sweep.sent, 10);
    assert_eq!(sweep.unsendable, vec![too_large.id.clone()]);
    let mut got = Vec::new();
    for _ in 0..20 {
        let batch = queue.receive(10, Duration::ZERO).await.unwrap();
        if batch.is_empty() && got.len() == 10 {
            break;
        }
        for d in batch {
            got.push(ChangeEvent::from_body(&d.body).unwrap().id);
            queue.ack(&d.receipt).await.unwrap();
        }
    }
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    // The unsendable record stays where an operator can find it; the others are gone.
    let again = sweep_outbox_until(&store, &queue, Duration::ZERO, None)
        .await
        .unwrap();
    assert_eq!((again.sent, again.unsendable), (0, vec![too_large.id]));
}
