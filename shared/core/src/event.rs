//! Change events and the transactional outbox.
//!
//! Every write to the directory produces a [`ChangeEvent`] and writes it, in the same
//! store transaction as the resource, as an outbox item, or as its message when the
//! queue keeps its messages in that same store ([`crate::queue::InlineSend`]; nothing is
//! left to do after the commit). After the commit an outbox item's event is sent to the
//! queue and the outbox item removed. If the send fails or the process dies
//! in between, [`sweep_outbox`] (run by the schedule and when `serve` starts) sends it
//! again: nothing acknowledged to a client is lost. Sending twice is harmless: the queue
//! drops a second message with the same dedup id (the event id) within five minutes, and
//! delivery is idempotent by event id after that.

use crate::store::keyspace;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::queue::{OutMessage, Queue, QueueError};
pub use crate::records::{ConfigData, EntityData};
use crate::store::{Index, Item, Key, Query, Store, StoreError, Write};
use provisync_scim::ResourceKind;

/// What happened to the resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
}

/// Where a change came from (so it is never delivered back to its origin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// The SCIM API (an identity provider).
    Scim,
    /// A signed webhook from a source site.
    Webhook { source: String },
    /// CSV/JSON import.
    Import,
    /// `POST /admin/sync`: an operator asked for this resource to be sent now.
    OnDemand,
    /// A reconcile found a difference.
    Reconcile,
}

/// One change, as it travels through the queue. Never carries a clear-text password:
/// `password` is sealed with the operator key and dropped once delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// UUIDv7: unique, and ordered by time.
    pub id: String,
    pub resource_type: ResourceKind,
    pub resource_id: String,
    pub op: ChangeOp,
    /// The resource after the change (groups without members); `None` for deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
    /// The resource's version after the change; for a delete, the last version plus one
    /// (0 in events queued before deletes had versions).
    pub version: u64,
    /// Group membership changes made by this write (member ids in the hub).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members_added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members_removed: Vec<String>,
    /// The write-only password sent with this change, sealed (`crate::crypto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub origin: Origin,
    pub occurred_at: String,
    /// Deliver only to these targets (on-demand sync); empty: every realtime target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only_targets: Vec<String>,
    /// The run (reconcile, on-demand sync) this event belongs to: the engine records its
    /// outcome there ([`crate::sync::runs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Set when the change is to an entity or configuration record rather than a SCIM
    /// resource: `resource_type` is then meaningless (`User`) and `resource_id` is the
    /// record's key (`ENTITY#node#{uuid}`, `CONFIG#{name}`), so changes to one record stay
    /// in order in the queue. Absent in messages queued before records existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordChange>,
    /// An operator released this change after the deprovision guard held it: the guard
    /// lets it through ([`crate::sync::held`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approved: bool,
    /// A follow-up of a delivery that ran out of time for members
    /// (`crate::sync::deliver_members`): the removals it names were admitted by the
    /// deprovision guard and journaled with the event that left them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removals_admitted: bool,
    /// Members a delivery of an earlier event did not reach in its time, sent on for one
    /// target: the batch of follow-ups that delivery left (one id for all of them). Its
    /// run (when it has one) waits for the batch ([`crate::sync::runs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up_of: Option<String>,
}

/// The record an entity or configuration change is about, with its state after the
/// change (its last state for a delete).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordChange {
    Entity(EntityData),
    Config(ConfigData),
}

impl ChangeEvent {
    /// A change event about an entity or configuration record.
    pub fn for_record(key: &str, op: ChangeOp, origin: Origin, record: RecordChange) -> Self {
        let mut e = ChangeEvent::new(ResourceKind::User, key, op, origin);
        e.record = Some(record);
        e
    }

    /// What the change is about, for audit entries: `User`, `Group`, `Entity`, `Config`.
    pub fn subject(&self) -> &'static str {
        match &self.record {
            None => self.resource_type.as_str(),
            Some(RecordChange::Entity(_)) => "Entity",
            Some(RecordChange::Config(_)) => "Config",
        }
    }
}

impl ChangeEvent {
    pub fn new(kind: ResourceKind, resource_id: &str, op: ChangeOp, origin: Origin) -> Self {
        ChangeEvent {
            id: uuid::Uuid::now_v7().to_string(),
            resource_type: kind,
            resource_id: resource_id.to_string(),
            op,
            resource: None,
            version: 0,
            members_added: vec![],
            members_removed: vec![],
            password: None,
            origin,
            occurred_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            only_targets: vec![],
            run: None,
            record: None,
            approved: false,
            removals_admitted: false,
            follow_up_of: None,
        }
    }

    /// The queue message: FIFO group = resource id (changes to one resource stay in
    /// order), dedup id = event id.
    pub fn to_message(&self) -> Result<OutMessage, serde_json::Error> {
        Ok(OutMessage::new(
            self.resource_id.clone(),
            self.id.clone(),
            serde_json::to_string(self)?,
        ))
    }

    pub fn from_body(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

const OUTBOX_INDEX: &str = keyspace::OUTBOX_BY_AGE;

fn outbox_key(event_id: &str) -> Key {
    Key::new(format!("{}{event_id}", keyspace::OUTBOX), "OUTBOX")
}

/// The outbox item of an event, to be written in the same transaction as the change.
/// Indexed by time (`gsi1` `OUTBOX` / event id, which is a UUIDv7) for the sweeper.
pub fn outbox_write(event: &ChangeEvent) -> Result<Write, serde_json::Error> {
    let key = outbox_key(&event.id);
    let item = Item::new(key.pk, key.sk, serde_json::to_vec(event)?)
        .with_gsi1(OUTBOX_INDEX, event.id.clone());
    Ok(Write::put(item))
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("event encoding: {0}")]
    Encoding(#[from] serde_json::Error),
}

/// Sends committed events to the queue and clears their outbox items.
pub async fn publish(
    store: &dyn Store,
    queue: &dyn Queue,
    events: &[ChangeEvent],
) -> Result<(), OutboxError> {
    if events.is_empty() {
        return Ok(());
    }
    let messages = events
        .iter()
        .map(ChangeEvent::to_message)
        .collect::<Result<Vec<_>, _>>()?;
    queue.send(messages).await?;
    for chunk in events.chunks(crate::store::MAX_TRANSACT_ITEMS) {
        store
            .transact(
                chunk
                    .iter()
                    .map(|e| Write::delete(outbox_key(&e.id)))
                    .collect(),
            )
            .await?;
    }
    Ok(())
}

/// Resends outbox items older than `min_age` (their original send failed or the process
/// died before it). Returns how many were sent.
pub async fn sweep_outbox(
    store: &dyn Store,
    queue: &dyn Queue,
    min_age: std::time::Duration,
) -> Result<usize, OutboxError> {
    Ok(sweep_outbox_until(store, queue, min_age, None).await?.sent)
}

/// What one bounded sweep did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sweep {
    /// Events sent again.
    pub sent: usize,
    /// `false` when the deadline came before the last page (the rest is left in place).
    pub complete: bool,
    /// Events the queue refuses for good (too large for it): skipped, left in the outbox,
    /// reported on every sweep.
    pub unsendable: Vec<String>,
}

impl OutboxError {
    /// The queue will never take this record (retrying cannot help).
    pub fn is_unsendable(&self) -> bool {
        matches!(
            self,
            OutboxError::Encoding(_)
                | OutboxError::Queue(QueueError::Invalid(_))
                | OutboxError::Queue(QueueError::Store(StoreError::Invalid(_)))
        )
    }
}

/// [`sweep_outbox`], stopping between pages (100 records each) once `deadline` has passed.
pub async fn sweep_outbox_until(
    store: &dyn Store,
    queue: &dyn Queue,
    min_age: std::time::Duration,
    deadline: Option<tokio::time::Instant>,
) -> Result<Sweep, OutboxError> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(min_age).unwrap_or_default();
    let mut sent = 0;
    let mut unsendable = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .query(
                &Query::new(Index::Gsi1, OUTBOX_INDEX)
                    .limit(100)
                    .after(after),
            )
            .await?;
        let mut batch = Vec::new();
        for item in &page.items {
            let Ok(event) = serde_json::from_slice::<ChangeEvent>(&item.data) else {
                tracing::error!(pk = %item.pk, "unreadable outbox item left in place");
                continue;
            };
            let old = chrono::DateTime::parse_from_rfc3339(&event.occurred_at)
                .map(|t| t < cutoff)
                .unwrap_or(true);
            if old {
                batch.push(event);
            }
        }
        if publish(store, queue, &batch).await.is_ok() {
            sent += batch.len();
        } else {
            // One by one: a record the queue can never take (too large for it) is
            // reported and left in place; it must not hold back the records behind it.
            // Any other failure (the queue is down) stops the sweep as before.
            for event in batch {
                match publish(store, queue, std::slice::from_ref(&event)).await {
                    Ok(()) => sent += 1,
                    Err(e) if e.is_unsendable() => {
                        tracing::error!(event_id = %event.id, resource_id = %event.resource_id, error = %e,
                            "outbox record cannot be sent: skipped, left in the outbox");
                        unsendable.push(event.id.clone());
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        match page.next {
            Some(_) if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) => {
                return Ok(Sweep {
                    sent,
                    complete: false,
                    unsendable,
                });
            }
            Some(c) => after = Some(c),
            None => {
                return Ok(Sweep {
                    sent,
                    complete: true,
                    unsendable,
                });
            }
        }
    }
}

/// Seals a password for travel (`crate::crypto`); `None` when it cannot.
pub type Sealer = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where the directory sends its change events. `None` in [`crate::directory::Directory`]
/// means events are not produced (pure SCIM server use, and some unit tests).
#[derive(Clone)]
pub struct EventSink {
    pub queue: Arc<dyn Queue>,
    /// Seals a write-only password for travel inside an event; `None`: passwords are
    /// dropped (never stored or sent in clear).
    pub seal: Option<Sealer>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::store_queue::{StoreQueue, StoreQueueSettings};
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn outbox_publish_and_sweep() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let queue = StoreQueue::new(store.clone(), "t", StoreQueueSettings::default());
        let mut e = ChangeEvent::new(ResourceKind::User, "u1", ChangeOp::Create, Origin::Scim);
        e.resource = Some(serde_json::json!({"userName": "a"}));
        // Written with the change, but the send "failed" (process died).
        store
            .transact(vec![outbox_write(&e).unwrap()])
            .await
            .unwrap();
        // Too young to sweep.
        assert_eq!(
            sweep_outbox(store.as_ref(), &queue, std::time::Duration::from_secs(60))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            sweep_outbox(store.as_ref(), &queue, std::time::Duration::ZERO)
                .await
                .unwrap(),
            1
        );
        let got = queue.receive(10, std::time::Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(ChangeEvent::from_body(&got[0].body).unwrap(), e);
        assert_eq!(got[0].group_id, "u1");
        // A message queued before records existed still reads.
        let mut old: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
        old.as_object_mut().unwrap().remove("record");
        assert_eq!(ChangeEvent::from_body(&old.to_string()).unwrap(), e);
        // Cleared: a second sweep sends nothing.
        assert_eq!(
            sweep_outbox(store.as_ref(), &queue, std::time::Duration::ZERO)
                .await
                .unwrap(),
            0
        );
    }
}
