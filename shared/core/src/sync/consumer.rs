//! The queue consumer: receive change events, deliver them, ack or schedule a retry.
//! `provisync serve` runs [`run_consumer`] in-process on the store-backed queue; the
//! `queue-deliver` Lambda gets its batches from SQS and calls [`handle_delivery`] for each.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::deliver::{Deliverer, DeliveryError, backoff};
use crate::queue::{AckWith, Delivery, MAX_VISIBILITY, Queue, QueueError};

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
    dispose(deliverer, d, max_receives, None).await.0
}

/// Delivers one received message and acks it on `queue` (or schedules its retry there).
/// When the queue lives in the deliverer's store, the ack is written in the same
/// transaction as the event's last receipt ([`AckWith`]).
pub async fn deliver_and_ack(
    queue: &dyn Queue,
    deliverer: &Deliverer,
    d: &Delivery,
    max_receives: u32,
) -> Result<(), QueueError> {
    let ack = AckWith {
        queue,
        receipt: &d.receipt,
    };
    match dispose(deliverer, d, max_receives, Some(ack)).await {
        (Disposition::Ack, true) => Ok(()),
        (Disposition::Ack, false) => queue.ack(&d.receipt).await,
        (Disposition::RetryAfter(delay), _) => queue.retry_later(&d.receipt, delay).await,
    }
}

/// [`handle_delivery`], and whether the message was acked with the event's last receipt.
async fn dispose(
    deliverer: &Deliverer,
    d: &Delivery,
    max_receives: u32,
    ack: Option<AckWith<'_>>,
) -> (Disposition, bool) {
    let final_attempt = d.receive_count >= max_receives;
    let disposition = match deliverer
        .deliver_body_acking(&d.body, final_attempt, ack)
        .await
    {
        Ok(acked) => return (Disposition::Ack, acked),
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
    };
    (disposition, false)
}

/// Deliveries one consumer runs at once (each waits for its target's pace,
/// [`super::pace`]). More than a target's window: a delivery spends most of its time in
/// the hub's own store work (its claim, link and receipt), not in its call.
pub const MAX_DELIVERIES: usize = 32;
/// Deliveries one consumer keeps at most, parked ones included: each parked delivery
/// waits for its turn at a slow target (spaced at its rate, or held by a `Retry-After`)
/// after the targets that were not slow had the change (`Deliverer` calls them first), and
/// its message's lease is renewed meanwhile ([`leased`]). Parked deliveries do not count
/// against [`MAX_DELIVERIES`], so one target taking a few calls a second does not hold
/// every other target to its pace until this many changes wait for it. A parked delivery
/// costs its event in memory and a lease renewal every third of the visibility timeout.
pub const MAX_PARKED: usize = 1_000;
/// The message bodies one consumer holds at most while it delivers them, in bytes: with
/// [`MAX_PARKED`] deliveries of the largest messages (256 KB, SQS's limit) memory would
/// otherwise reach a quarter of a gigabyte; changes are a few KB, so this binds only then.
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// While deliveries run, the consumer receives again only once this many have ended
/// (SQS's batch size): each receive is a request (SQS) or a store transaction with its
/// flush (the store queue). Receiving as each one ended claimed one message per receive,
/// one after another: 2.3 ms each in the bench, which bounded delivery to `scim2-server`
/// at about 400 changes a second whatever the target's pace.
const REFILL: usize = 10;
/// With deliveries running and nothing received, how long the consumer waits for one to
/// end (its ack may free its group's next message) before it looks at the queue again
/// for new messages (on SQS each look is a request: at most 5 a second).
const LOOK_AGAIN: Duration = Duration::from_millis(200);

/// Consumes the queue until `shutdown` turns true, then lets the deliveries it started
/// end. Messages of different groups are delivered concurrently, up to
/// [`MAX_DELIVERIES`] at once besides those parked at a slow target (up to [`MAX_PARKED`]
/// in all); one group's messages stay in order (the queue hands out a group's next
/// message only after the previous one is acked).
///
/// The consumer takes more messages once 10 deliveries (`REFILL`) have ended, not after a
/// whole batch: waiting for a whole batch left a target's window half empty at the end
/// of each batch and idle while the next was received; taking one as each ended made a
/// receive (a flush, on the store queue) per message.
pub async fn run_consumer(
    queue: Arc<dyn Queue>,
    deliverer: Arc<Deliverer>,
    max_receives: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let lease = queue.lease().await;
    // The bodies of the messages being delivered, in bytes.
    let bodies = Arc::new(AtomicUsize::new(0));
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Deliveries waiting for their turn at a slow target (its rate, a
        // `Retry-After`) are parked: they take no room from the running ones.
        let parked = deliverer.pacer().parked().min(tasks.len());
        let free = if bodies.load(Ordering::Relaxed) >= MAX_BODY_BYTES {
            0
        } else {
            MAX_DELIVERIES
                .saturating_sub(tasks.len() - parked)
                .min(MAX_PARKED.saturating_sub(tasks.len()))
        };
        if free < REFILL && !tasks.is_empty() {
            tokio::select! {
                _ = tasks.join_next() => continue,
                // A running delivery may park meanwhile.
                _ = tokio::time::sleep(LOOK_AGAIN) => continue,
                _ = shutdown.changed() => break,
            }
        }
        // Long-poll only when nothing is running (a running delivery's end is awaited
        // below instead).
        let wait = if tasks.is_empty() {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        let batch = tokio::select! {
            r = queue.receive(free, wait) => r,
            _ = shutdown.changed() => break,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "queue receive failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => break,
                }
                continue;
            }
        };
        let received = batch.len();
        for d in batch {
            let queue = queue.clone();
            let deliverer = deliverer.clone();
            let bytes = BodyBytes::new(bodies.clone(), d.body.len());
            tasks.spawn(async move {
                let _bytes = bytes;
                let work = deliver_and_ack(queue.as_ref(), &deliverer, &d, max_receives);
                let result = leased(queue.as_ref(), &d.receipt, lease, work).await;
                if let Err(e) = result {
                    // The visibility timeout brings it back: at-least-once.
                    tracing::warn!(error = %e, group = %d.group_id, "ack/retry failed");
                }
            });
        }
        if received == 0 && !tasks.is_empty() {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = tokio::time::sleep(LOOK_AGAIN) => {}
                _ = shutdown.changed() => break,
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs `work`, the delivery of the message `receipt` names, and renews the message's
/// `lease` (its visibility timeout) every third of it while `work` runs, so that a
/// delivery that outlives it (waiting for its target's slot behind a slow pace or a long
/// `Retry-After`, or on a loaded machine) is not handed out again and sent twice, once by
/// each. A crashed process renews nothing: its messages come back after the lease as
/// before. Renewed for at most SQS's longest visibility ([`MAX_VISIBILITY`]); `None`
/// (the queue's lease unknown): not renewed.
///
/// A renewal that meets the delivery's own ack (the message acked meanwhile, or acked
/// and its group's next message handed out) fails on the receipt and changes nothing;
/// an ack that meets a renewal is asked for again ([`AckWith`], [`Queue::ack`]).
pub async fn leased<F: std::future::Future>(
    queue: &dyn Queue,
    receipt: &str,
    lease: Option<Duration>,
    work: F,
) -> F::Output {
    let Some(lease) = lease.filter(|l| !l.is_zero()) else {
        return work.await;
    };
    let every = lease / 3;
    let end = tokio::time::Instant::now() + MAX_VISIBILITY;
    tokio::pin!(work);
    let mut next = tokio::time::Instant::now() + every;
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            () = tokio::time::sleep_until(next) => {
                let renew = lease.min(end.saturating_duration_since(tokio::time::Instant::now()));
                if renew.is_zero() {
                    return work.await;
                }
                match queue.retry_later(receipt, renew).await {
                    Ok(()) => tracing::debug!(lease_ms = renew.as_millis() as u64, "delivery still running: its message's lease renewed"),
                    Err(QueueError::InvalidReceipt) => return work.await,
                    Err(e) => tracing::warn!(error = %e, "could not renew a running delivery's lease"),
                }
                next = tokio::time::Instant::now() + every;
            }
        }
    }
}

/// A delivery's message body counted in the consumer's total until the delivery ends
/// (or its task is aborted).
struct BodyBytes {
    total: Arc<AtomicUsize>,
    bytes: usize,
}

impl BodyBytes {
    fn new(total: Arc<AtomicUsize>, bytes: usize) -> Self {
        total.fetch_add(bytes, Ordering::Relaxed);
        BodyBytes { total, bytes }
    }
}

impl Drop for BodyBytes {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}
