//! The contract every [`Queue`] adapter must pass: one suite, run on the store-backed queue
//! in unit tests and on SQS (the moto emulator) in `shared/tests/sqs.rs`.
//!
//! Give it a fresh, empty queue configured with [`Setup`]'s visibility timeout and
//! receive count (short ones: the suite waits for timeouts to pass).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Delivery, OutMessage, Queue, QueueError};
use crate::store::{Condition, Item, Key, Store, StoreError, Write};

/// How the queue under test is configured.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub visibility_timeout: Duration,
    /// Receives before a message is dead-lettered.
    pub max_receive_count: u32,
    /// Whether a dedup id stays taken for the whole window after its message was acked
    /// (SQS: yes; moto only dedups against messages still in the queue).
    pub dedup_after_ack: bool,
}

fn ns() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Runs every check; panics (test failure) on the first broken rule.
pub async fn run_all(queue: &dyn Queue, setup: Setup) {
    send_in_batches_and_per_group_order(queue).await;
    group_blocked_while_in_flight(queue, setup).await;
    redelivery_after_visibility_timeout(queue, setup).await;
    renewed_lease(queue, setup).await;
    retry_later_delays(queue).await;
    dedup(queue, setup).await;
    dead_letter_and_redrive(queue, setup).await;
    invalid_receipts(queue).await;
}

/// Receives until `n` deliveries arrived (acking none) or `timeout` passed.
async fn collect(queue: &dyn Queue, n: usize, timeout: Duration) -> Vec<Delivery> {
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < n && start.elapsed() < timeout {
        out.extend(queue.receive(10, Duration::from_millis(500)).await.unwrap());
    }
    out
}

async fn drain_acking(queue: &dyn Queue, timeout: Duration) -> Vec<Delivery> {
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < timeout {
        let batch = queue.receive(10, Duration::from_millis(300)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for d in batch {
            queue.ack(&d.receipt).await.unwrap();
            out.push(d);
        }
    }
    out
}

async fn send_in_batches_and_per_group_order(queue: &dyn Queue) {
    let p = ns();
    let mut msgs = Vec::new();
    // 3 groups x 5 messages, interleaved: 15 messages, more than one SQS batch.
    for i in 0..5 {
        for g in ["a", "b", "c"] {
            msgs.push(OutMessage::new(
                format!("{p}-{g}"),
                format!("{p}-{g}-{i}"),
                format!("{g}{i}"),
            ));
        }
    }
    queue.send(msgs).await.unwrap();
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let start = Instant::now();
    let mut total = 0;
    while total < 15 && start.elapsed() < Duration::from_secs(30) {
        let batch = queue.receive(10, Duration::from_millis(500)).await.unwrap();
        for d in batch {
            assert_eq!(d.receive_count, 1, "first delivery counts 1");
            assert!(d.dedup_id.ends_with(&d.body[1..]), "dedup id kept: {d:?}");
            seen.entry(d.group_id.clone())
                .or_default()
                .push(d.body.clone());
            queue.ack(&d.receipt).await.unwrap();
            total += 1;
        }
    }
    assert_eq!(total, 15, "all messages delivered: {seen:?}");
    for g in ["a", "b", "c"] {
        let want: Vec<String> = (0..5).map(|i| format!("{g}{i}")).collect();
        assert_eq!(seen[&format!("{p}-{g}")], want, "group {g} out of order");
    }
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
}

async fn group_blocked_while_in_flight(queue: &dyn Queue, setup: Setup) {
    let p = ns();
    let g = format!("{p}-g");
    queue
        .send(vec![
            OutMessage::new(&g, format!("{p}-1"), "first"),
            OutMessage::new(&g, format!("{p}-2"), "second"),
        ])
        .await
        .unwrap();
    let first = collect(queue, 1, Duration::from_secs(10)).await;
    assert!(!first.is_empty());
    assert_eq!(first[0].body, "first");
    // The backend may hand out several of a group's messages in one receive (SQS does),
    // in order; it must not hand out more of the group while they are in flight.
    let again = queue.receive(10, Duration::from_millis(300)).await.unwrap();
    assert!(
        again.is_empty(),
        "group delivered while in flight: {again:?}"
    );
    let mut bodies: Vec<String> = first.iter().map(|d| d.body.clone()).collect();
    for d in &first {
        queue.ack(&d.receipt).await.unwrap();
    }
    bodies.extend(
        drain_acking(queue, setup.visibility_timeout * 3)
            .await
            .into_iter()
            .map(|d| d.body),
    );
    assert_eq!(bodies, ["first", "second"]);
}

/// Sends one message with `body` to a fresh group and receives it.
async fn one_received(queue: &dyn Queue, body: &str) -> Delivery {
    let p = ns();
    queue
        .send(vec![OutMessage::new(
            format!("{p}-g"),
            format!("{p}-1"),
            body,
        )])
        .await
        .unwrap();
    let mut d = collect(queue, 1, Duration::from_secs(10)).await;
    assert_eq!(d.len(), 1);
    d.remove(0)
}

async fn redelivery_after_visibility_timeout(queue: &dyn Queue, setup: Setup) {
    let d1 = one_received(queue, "again").await;
    assert_eq!(d1.receive_count, 1);
    assert!(
        queue.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "visible while in flight"
    );
    tokio::time::sleep(setup.visibility_timeout + Duration::from_millis(300)).await;
    let d2 = collect(queue, 1, Duration::from_secs(10)).await;
    assert_eq!(d2.len(), 1, "not redelivered after the visibility timeout");
    assert_eq!(d2[0].body, "again");
    assert_eq!(d2[0].receive_count, 2);
    ack_leaves_nothing(queue, &d2[0].receipt).await;
}

/// The queue knows its lease, and a renewal ([`Queue::retry_later`] while in flight, as
/// the consumer renews a running delivery's) keeps the message hidden past the visibility
/// timeout and its receipt valid.
async fn renewed_lease(queue: &dyn Queue, setup: Setup) {
    assert_eq!(queue.lease().await, Some(setup.visibility_timeout));
    let d = one_received(queue, "leased").await;
    // Renewed twice, each time after half the lease: in all, past the first lease's end.
    for _ in 0..2 {
        tokio::time::sleep(setup.visibility_timeout / 2).await;
        queue
            .retry_later(&d.receipt, setup.visibility_timeout)
            .await
            .unwrap();
    }
    tokio::time::sleep(setup.visibility_timeout / 3).await;
    assert!(
        queue.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "handed out again while its lease was renewed"
    );
    ack_leaves_nothing(queue, &d.receipt).await;
}

/// Acks `receipt`; then nothing is left to receive.
async fn ack_leaves_nothing(queue: &dyn Queue, receipt: &str) {
    queue.ack(receipt).await.unwrap();
    assert!(
        queue
            .receive(10, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn retry_later_delays(queue: &dyn Queue) {
    let p = ns();
    queue
        .send(vec![OutMessage::new(
            format!("{p}-g"),
            format!("{p}-1"),
            "later",
        )])
        .await
        .unwrap();
    let d = collect(queue, 1, Duration::from_secs(10)).await;
    assert_eq!(d.len(), 1);
    queue
        .retry_later(&d[0].receipt, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        queue.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "visible before the delay"
    );
    let d = collect(queue, 1, Duration::from_secs(10)).await;
    assert_eq!(d.len(), 1, "not visible again after the delay");
    assert_eq!(d[0].receive_count, 2);
    // Zero delay: visible at once.
    queue
        .retry_later(&d[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let d = collect(queue, 1, Duration::from_secs(5)).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].receive_count, 3);
    queue.ack(&d[0].receipt).await.unwrap();
}

async fn dedup(queue: &dyn Queue, setup: Setup) {
    let p = ns();
    let m = OutMessage::new(format!("{p}-g"), format!("{p}-same"), "once");
    queue.send(vec![m.clone(), m.clone()]).await.unwrap();
    queue.send(vec![m.clone()]).await.unwrap();
    let got = drain_acking(queue, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "duplicates delivered: {got:?}");
    if !setup.dedup_after_ack {
        return;
    }
    // Still a duplicate after delivery and ack (within the window).
    queue.send(vec![m]).await.unwrap();
    assert!(
        queue
            .receive(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn dead_letter_and_redrive(queue: &dyn Queue, setup: Setup) {
    let p = ns();
    let body = format!("poison-{p}");
    queue
        .send(vec![OutMessage::new(
            format!("{p}-g"),
            format!("{p}-1"),
            &body,
        )])
        .await
        .unwrap();
    for n in 1..=setup.max_receive_count {
        let d = collect(queue, 1, Duration::from_secs(10)).await;
        assert_eq!(d.len(), 1, "receive {n}");
        assert_eq!(d[0].receive_count, n);
        queue
            .retry_later(&d[0].receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    // One more receive moves it to the dead-letter queue instead of delivering it.
    let d = queue.receive(10, Duration::from_millis(500)).await.unwrap();
    assert!(d.is_empty(), "delivered beyond the receive count: {d:?}");
    let start = Instant::now();
    let letters = loop {
        let letters = queue.dead_letters(10).await.unwrap();
        if letters.iter().any(|l| l.body == body) || start.elapsed() > Duration::from_secs(5) {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let letter = letters
        .iter()
        .find(|l| l.body == body)
        .expect("dead letter listed");
    assert_eq!(letter.group_id, format!("{p}-g"));
    assert!(queue.dead_letter_count().await.unwrap() >= 1);
    // Listing does not consume.
    assert!(
        queue
            .dead_letters(10)
            .await
            .unwrap()
            .iter()
            .any(|l| l.body == body)
    );
    // One letter by its dedup id (a letter not there: false).
    assert!(!queue.redrive_one(&format!("{p}-none")).await.unwrap());
    assert!(queue.redrive_one(&letter.dedup_id).await.unwrap());
    let d = collect(queue, 1, Duration::from_secs(10)).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].body, body);
    // Dead again (a new message to the queue: its receive count starts over), then
    // every letter at once.
    let mut receipt = d[0].receipt.clone();
    for n in 1..=setup.max_receive_count {
        if n > 1 {
            let d = collect(queue, 1, Duration::from_secs(10)).await;
            assert_eq!(d.len(), 1, "receive {n} after redrive");
            receipt = d[0].receipt.clone();
        }
        queue.retry_later(&receipt, Duration::ZERO).await.unwrap();
    }
    let d = queue.receive(10, Duration::from_millis(500)).await.unwrap();
    assert!(d.is_empty(), "delivered beyond the receive count: {d:?}");
    let start = Instant::now();
    let moved = loop {
        let moved = queue.redrive(10).await.unwrap();
        if moved >= 1 || start.elapsed() > Duration::from_secs(10) {
            break moved;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(moved >= 1);
    let d = collect(queue, 1, Duration::from_secs(10)).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].body, body);
    queue.ack(&d[0].receipt).await.unwrap();
    assert!(
        !queue
            .dead_letters(10)
            .await
            .unwrap()
            .iter()
            .any(|l| l.body == body)
    );
}

async fn invalid_receipts(queue: &dyn Queue) {
    let p = ns();
    queue
        .send(vec![OutMessage::new(
            format!("{p}-g"),
            format!("{p}-1"),
            "r",
        )])
        .await
        .unwrap();
    let d = collect(queue, 1, Duration::from_secs(10)).await;
    assert_eq!(d.len(), 1);
    queue.ack(&d[0].receipt).await.unwrap();
    let err = queue.ack("not-a-receipt").await.unwrap_err();
    assert!(
        matches!(err, QueueError::InvalidReceipt | QueueError::Invalid(_)),
        "got {err:?}"
    );
    // Too many messages in one receive is capped, not an error.
    assert!(queue.receive(50, Duration::ZERO).await.unwrap().is_empty());
}

/// [`Queue::ack_writes`] for a queue that keeps its messages in `store`: the ack committed
/// in one transaction with the caller's own writes is an ack; a transaction that fails
/// (on the caller's writes, or on the queue's after a send moved the group on) acks
/// nothing and writes nothing, and the message comes back after its visibility timeout;
/// a used receipt gives no writes.
pub async fn ack_in_store(queue: &dyn Queue, store: &Arc<dyn Store>, setup: Setup) {
    let p = ns();
    let mine = |n: &str| Item::new(format!("ACKTEST#{p}"), n.to_string(), b"{}".to_vec());
    let g = format!("{p}-g");
    queue
        .send(vec![
            OutMessage::new(&g, format!("{p}-1"), "first"),
            OutMessage::new(&g, format!("{p}-2"), "second"),
        ])
        .await
        .unwrap();
    let d = collect(queue, 1, Duration::from_secs(10)).await;
    assert_eq!(d[0].body, "first");
    let ack = queue
        .ack_writes(&d[0].receipt, store)
        .await
        .unwrap()
        .expect("the queue lives in this store");
    let mut writes = vec![Write::put_new(mine("a"))];
    writes.extend(ack.writes.iter().cloned());
    store.transact(writes).await.unwrap();
    ack.committed();
    assert!(store.get(&mine("a").key()).await.unwrap().is_some());
    // Acked: the group moved on, and the receipt is used.
    let next = collect(queue, 1, Duration::from_secs(10)).await;
    assert_eq!(next.len(), 1);
    assert_eq!(
        (next[0].body.as_str(), next[0].receive_count),
        ("second", 1)
    );
    assert!(matches!(
        queue.ack_writes(&d[0].receipt, store).await,
        Err(QueueError::InvalidReceipt)
    ));
    assert!(matches!(
        queue.ack(&d[0].receipt).await,
        Err(QueueError::InvalidReceipt)
    ));

    // The caller's part fails: nothing of either is written, the message comes back.
    let ack = queue
        .ack_writes(&next[0].receipt, store)
        .await
        .unwrap()
        .expect("ack writes");
    let mut writes = vec![
        Write::put_new(mine("b")),
        Write::Check {
            key: Key::new(format!("ACKTEST#{p}"), "absent"),
            condition: Condition::Exists,
        },
    ];
    writes.extend(ack.writes.iter().cloned());
    assert!(matches!(
        store.transact(writes).await,
        Err(StoreError::ConditionFailed { index: 1 })
    ));
    assert!(store.get(&mine("b").key()).await.unwrap().is_none());
    tokio::time::sleep(setup.visibility_timeout + Duration::from_millis(300)).await;
    let again = collect(queue, 1, Duration::from_secs(10)).await;
    assert_eq!(again.len(), 1, "not acked: delivered again");
    assert_eq!(
        (again[0].body.as_str(), again[0].receive_count),
        ("second", 2)
    );

    // A send to the group after the writes were made: they no longer hold, and fail
    // alone; asked for again, they ack.
    let stale = queue
        .ack_writes(&again[0].receipt, store)
        .await
        .unwrap()
        .expect("ack writes");
    queue
        .send(vec![OutMessage::new(&g, format!("{p}-3"), "third")])
        .await
        .unwrap();
    let mut writes = vec![Write::put_new(mine("c"))];
    writes.extend(stale.writes.iter().cloned());
    assert!(matches!(
        store.transact(writes).await,
        Err(StoreError::ConditionFailed { index }) if index >= 1
    ));
    assert!(store.get(&mine("c").key()).await.unwrap().is_none());
    let fresh = queue
        .ack_writes(&again[0].receipt, store)
        .await
        .unwrap()
        .expect("ack writes");
    let mut writes = vec![Write::put_new(mine("c"))];
    writes.extend(fresh.writes.iter().cloned());
    store.transact(writes).await.unwrap();
    fresh.committed();
    let last = drain_acking(queue, Duration::from_secs(10)).await;
    let bodies: Vec<&str> = last.iter().map(|d| d.body.as_str()).collect();
    assert_eq!(bodies, ["third"], "each message once, in order");
    assert!(
        queue
            .receive(10, setup.visibility_timeout + Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "nothing comes back"
    );
}
