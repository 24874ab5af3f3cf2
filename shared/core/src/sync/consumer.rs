//! The queue consumer: receive change events, deliver them, ack or schedule a retry.
//! `provisync serve` runs [`run_consumer`] in-process on the store-backed queue; the
//! `queue-deliver` Lambda gets its batches from SQS and calls [`handle_delivery`] for each.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::deliver::{Deliverer, DeliveryError, backoff};
use crate::queue::{Delivery, Queue};

/// What to do with one received message.
#[derive(Debug, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    RetryAfter(Duration),
}

/// Delivers one received message. `max_receives`: the queue's dead-letter threshold (the
/// last attempt is audited as `dead` when it fails).
pub async fn handle_delivery(
    deliverer: &Deliverer,
    d: &Delivery,
    max_receives: u32,
) -> Disposition {
    let final_attempt = d.receive_count >= max_receives;
    match deliverer.deliver_body(&d.body, final_attempt).await {
        Ok(()) => Disposition::Ack,
        Err(DeliveryError::Retry { after, detail }) => {
            let delay = backoff(d.receive_count, after);
            tracing::info!(group = %d.group_id, receive_count = d.receive_count, delay_ms = delay.as_millis() as u64, %detail, "delivery will be retried");
            Disposition::RetryAfter(delay)
        }
        Err(DeliveryError::Malformed(e)) => {
            // Retrying cannot fix it: let it reach the dead-letter queue quickly.
            tracing::error!(group = %d.group_id, error = %e, "malformed change event");
            Disposition::RetryAfter(Duration::ZERO)
        }
    }
}

/// Consumes the queue until `shutdown` turns true. Messages of different groups are
/// delivered concurrently; one group's messages stay in order (the queue hands out a
/// group's next message only after the previous one is acked).
pub async fn run_consumer(
    queue: Arc<dyn Queue>,
    deliverer: Arc<Deliverer>,
    max_receives: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let batch = tokio::select! {
            r = queue.receive(10, Duration::from_secs(1)) => r,
            _ = shutdown.changed() => return,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "queue receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for d in batch {
            let queue = queue.clone();
            let deliverer = deliverer.clone();
            tasks.spawn(async move {
                let result = match handle_delivery(&deliverer, &d, max_receives).await {
                    Disposition::Ack => queue.ack(&d.receipt).await,
                    Disposition::RetryAfter(delay) => queue.retry_later(&d.receipt, delay).await,
                };
                if let Err(e) = result {
                    // The visibility timeout brings it back: at-least-once.
                    tracing::warn!(error = %e, group = %d.group_id, "ack/retry failed");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}
