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
