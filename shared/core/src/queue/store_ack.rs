//! A delivery's ack written in the same store transaction as other writes, when the queue
//! keeps its messages in that store ([`Queue::ack_writes`]): `provisync serve` acks a
//! delivered event's message with the event's last receipt (audit entry and link), one
//! transaction (and on the embedded store one flush) fewer per delivered change.
//!
//! Exactly once as with [`Queue::ack`]: the transaction is atomic, so the caller's writes
//! and the ack are both written or neither is (then the message comes back after its
//! visibility timeout, and the caller's own idempotence, a delivery's receipts, makes
//! that harmless). The ack's writes are conditioned on the queue's state when they were
//! made; if a send to the same group moved it on meanwhile, they are asked for again.

use std::sync::Arc;

use super::Queue;
use crate::store::{MAX_TRANSACT_ITEMS, Store, StoreError, Write};

/// The writes that ack a delivery, for the caller to commit in one transaction with its own
/// writes to the store the queue lives in ([`Queue::ack_writes`]).
pub struct StoreAck {
    /// Conditioned on the queue's state when they were made: if the transaction fails on
    /// one of them, nothing was acked (ask again, or [`Queue::ack`]).
    pub writes: Vec<Write>,
    committed: Box<dyn FnOnce() + Send + Sync>,
}

impl StoreAck {
    /// `committed`: what the queue does once the writes are committed (wake receivers).
    pub fn new(writes: Vec<Write>, committed: impl FnOnce() + Send + Sync + 'static) -> Self {
        StoreAck {
            writes,
            committed: Box::new(committed),
        }
    }

    /// Call once the transaction holding [`StoreAck::writes`] has committed.
    pub fn committed(self) {
        (self.committed)()
    }
}

impl std::fmt::Debug for StoreAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAck")
            .field("writes", &self.writes)
            .finish_non_exhaustive()
    }
}

/// A received message to ack with other writes: the queue and the delivery's receipt.
#[derive(Clone, Copy)]
pub struct AckWith<'a> {
    pub queue: &'a dyn Queue,
    pub receipt: &'a str,
}

/// Times the ack's writes are asked for when the queue moved on under them.
const ATTEMPTS: usize = 3;

impl AckWith<'_> {
    /// Commits `writes` to `store` in one transaction with the ack of this message when
    /// the queue lives in `store`; else (or when the receipt is no longer current, or the
    /// queue kept moving on) `writes` alone. `Ok(true)`: acked too; `Ok(false)`: still to
    /// ack with [`Queue::ack`].
    pub async fn commit_with(
        self,
        store: &Arc<dyn Store>,
        writes: Vec<Write>,
    ) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let mut acking = match self.queue.ack_writes(self.receipt, store).await {
                Ok(Some(a)) => a,
                Ok(None) => break,
                Err(e) => {
                    // Not current any more (delivered again after its visibility
                    // timeout): the caller's `ack` reports it.
                    tracing::debug!(error = %e, "ack not joined to the other writes");
                    break;
                }
            };
            let own = writes.len();
            if own + acking.writes.len() > MAX_TRANSACT_ITEMS {
                break;
            }
            let mut all = Vec::with_capacity(own + acking.writes.len());
            all.extend(writes.iter().cloned());
            all.append(&mut acking.writes);
            match store.transact(all).await {
                Ok(()) => {
                    acking.committed();
                    return Ok(true);
                }
                // The queue's own writes lost a race (its group's state moved on): nothing
                // was written; ask for them again.
                Err(StoreError::ConditionFailed { index }) if index >= own => {}
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        store.transact(writes).await.map(|()| false)
    }
}
