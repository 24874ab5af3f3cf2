//! The `Queue` port: change events on their way to the targets, with SQS FIFO semantics.
//!
//! - Messages of one **group** (the resource id) are delivered in send order, and a group's
//!   next message is not delivered while an earlier one is in flight or waiting to retry.
//! - A received message is hidden for the **visibility timeout**; unless acked it becomes
//!   visible again (at-least-once), with its receive count raised.
//! - After the configured number of receives it moves to the **dead-letter** queue, from
//!   which [`Queue::redrive`] moves it back.
//! - A second message with the same **dedup id** within five minutes is dropped.
//!
//! Adapters: [`sqs::SqsQueue`] (AWS) and [`store_queue::StoreQueue`] (any [`crate::store::Store`];
//! on the embedded store it is durable across restarts). Both pass [`contract`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::store::{Store, Write};

pub mod contract;
pub mod store_ack;
pub mod store_queue;

pub use store_ack::{AckWith, StoreAck};

/// Receives before a message moves to the dead-letter queue. With the delivery engine's
/// backoff (`sync::deliver::backoff`: about 1, 2, 4 … s, at most 5 minutes, jittered down
/// to half) 16 receives wait 19 to 38 minutes in all: a target down for less than that
/// loses nothing to the dead-letter queue. (5, as before, waited 7.5 to 15 seconds: a
/// target restarting for a minute dead-lettered every change sent to it meanwhile.)
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 16;
/// How long the delivery consumer may take for one batch (`queue-deliver`'s Lambda
/// timeout), seconds.
pub const DELIVER_FUNCTION_TIMEOUT_SECS: u32 = 60;
/// AWS asks for a visibility timeout of at least 6x the consumer function's timeout.
pub const DEFAULT_VISIBILITY_TIMEOUT_SECS: u32 = 6 * DELIVER_FUNCTION_TIMEOUT_SECS;

/// SQS's limit on entries per batch call.
pub const SQS_BATCH_MAX: usize = 10;
/// SQS FIFO's deduplication interval.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);
/// SQS's longest long-poll.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// SQS's longest visibility timeout (12 h).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutMessage {
    /// Ordering scope (FIFO `MessageGroupId`): the resource id.
    pub group_id: String,
    /// Deduplication id (FIFO `MessageDeduplicationId`): the change event id.
    pub dedup_id: String,
    pub body: String,
}

impl OutMessage {
    pub fn new(
        group_id: impl Into<String>,
        dedup_id: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        OutMessage {
            group_id: group_id.into(),
            dedup_id: dedup_id.into(),
            body: body.into(),
        }
    }
}

/// A received message. Ack it with its `receipt` when done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Opaque handle for [`Queue::ack`] / [`Queue::retry_later`], valid for this delivery.
    pub receipt: String,
    pub body: String,
    pub group_id: String,
    pub dedup_id: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
}

/// A message in the dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub body: String,
    pub group_id: String,
    pub dedup_id: String,
    /// Receives before it was moved (when the backend tells).
    pub receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The receipt does not name a current delivery (acked already, or the message was
    /// delivered again since).
    #[error("receipt is not valid (expired or already used)")]
    InvalidReceipt,
    #[error("invalid queue request: {0}")]
    Invalid(String),
    #[error("queue throttled")]
    Throttled,
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Sending inside the caller's own store transaction, for a queue that keeps its messages
/// in the same store as the caller's data (see [`Queue::inline`]): the change and its
/// message commit together, with no outbox item to write before and remove after.
#[async_trait]
pub trait InlineSend: Send + Sync {
    /// The writes that append `message` to its group, for the caller's transaction. They
    /// are conditioned on the group's state as read now: if a consumer or another send
    /// changes it first, the transaction fails on one of them (the caller sends another
    /// way). `new_group`: the group cannot exist yet (its resource is created by the same
    /// transaction), so nothing is read. The dedup id is claimed as by `send`.
    async fn append_writes(
        &self,
        message: &OutMessage,
        new_group: bool,
    ) -> Result<Vec<Write>, QueueError>;

    /// How many writes [`InlineSend::append_writes`] returns at most (room to keep in a
    /// transaction).
    fn writes_per_message(&self) -> usize;

    /// After the transaction committed: wakes consumers waiting for a message.
    fn committed(&self);
}

/// The port. Adapters: [`sqs::SqsQueue`], [`store_queue::StoreQueue`].
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// `Some` when this queue keeps its messages in `store` itself (the same store, not
    /// another one of the same kind): messages can then be sent in the caller's own
    /// transaction. `None` (SQS; a store queue on another store): send after the commit.
    fn inline(&self, store: &Arc<dyn Store>) -> Option<&dyn InlineSend> {
        let _ = store;
        None
    }

    /// Sends messages (in batches of [`SQS_BATCH_MAX`]); order within a group is the order
    /// in `messages`. Duplicates (same dedup id within [`DEDUP_WINDOW`]) are accepted and
    /// dropped.
    async fn send(&self, messages: Vec<OutMessage>) -> Result<(), QueueError>;

    /// Up to `max` (at most 10) visible messages, waiting up to `wait` (long poll) for one.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;

    /// Done with a delivery: the message is removed.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;

    /// Makes a delivery visible again after `delay` (SQS `ChangeMessageVisibility`); its
    /// group stays blocked until then.
    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError>;

    /// Up to `limit` dead letters, oldest first where the backend allows, without removing them.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// How many messages are in the dead-letter queue (approximate on SQS).
    async fn dead_letter_count(&self) -> Result<usize, QueueError>;

    /// Moves up to `limit` dead letters back to the queue; returns how many moved.
    async fn redrive(&self, limit: usize) -> Result<usize, QueueError>;

    /// Moves the dead letter with this dedup id (as [`Queue::dead_letters`] lists it) back
    /// to the queue; `false` when no dead letter has it (redriven already).
    async fn redrive_one(&self, dedup_id: &str) -> Result<bool, QueueError>;

    /// A short name for logs (`sqs`, `store`).
    fn backend(&self) -> &'static str;

    /// How long a received message stays hidden (its visibility timeout), when known.
    /// A consumer whose delivery outlives a third of it renews it ([`Queue::retry_later`]
    /// with this lease, which keeps the receipt valid), so the message is not handed out
    /// again while its first delivery still runs (`sync::consumer`). `None` (the default):
    /// not renewed.
    async fn lease(&self) -> Option<Duration> {
        None
    }

    /// When this queue keeps its messages in `store` (the very same instance): the writes
    /// that ack `receipt` as [`Queue::ack`] would, for the caller to commit atomically with
    /// its own writes to `store` (a delivery's receipt: one transaction instead of two),
    /// then [`StoreAck::committed`]. `Ok(None)` (the default; SQS; a store queue on
    /// another store): ack with [`Queue::ack`]. Errors as [`Queue::ack`]'s.
    async fn ack_writes(
        &self,
        receipt: &str,
        store: &Arc<dyn Store>,
    ) -> Result<Option<StoreAck>, QueueError> {
        let _ = (receipt, store);
        Ok(None)
    }
}
