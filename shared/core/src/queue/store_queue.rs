//! A [`Queue`] built on the [`Store`] port: in-process, and durable when the store is (the
//! embedded redb store: `provisync serve` killed mid-delivery loses nothing). Same
//! semantics as SQS FIFO (see [`super`]).
//!
//! Items, for queue `q` (every key starts with `Q#q#`):
//!
//! | item | pk | sk | index / TTL | data |
//! | --- | --- | --- | --- | --- |
//! | group state | `Q#q#G#<group>` | `STATE` | gsi1 `Q#q#READY` / `<visible_at ms, 16 digits>#<group>` | next sequence number, in-flight delivery nonce, visible-at |
//! | message | `Q#q#G#<group>` | `M#<seq, 20 digits>` | | body, dedup id, receive count |
//! | dedup key | `Q#q#D#<dedup id>` | `D` | TTL 5 minutes | |
//! | dead letter | `Q#q#DLQ` | `<moved ms>#<uuid>` | | body, group, dedup id, receive count |
//!
//! A group has a state item exactly while it has messages; its head message is the first
//! `M#` item of its partition. The ready index lists every non-empty group by the time it
//! becomes visible (now for a fresh group, the visibility deadline while in flight), so
//! `receive` reads the front of one index partition. Every change to a group goes through
//! a transaction conditioned on the state item's version, so two consumers never get the
//! same message and a send never races an ack. Each operation is one or two reads and one
//! transaction.

use crate::store::keyspace;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{
    DEDUP_WINDOW, DeadLetter, Delivery, InlineSend, MAX_VISIBILITY, MAX_WAIT, OutMessage, Queue,
    QueueError, StoreAck,
};
use crate::store::{Condition, Cursor, Index, Item, Key, Page, Query, Store, StoreError, Write};

/// Attempts for one operation that lost a race on a group's state.
const MAX_RACES: usize = 20;
/// Messages one `send` writes per transaction (3 items each, under the 100-item cap).
const SEND_BATCH: usize = 33;
/// How often a long poll looks again (visibility timeouts expire without a send).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug)]
pub struct StoreQueueSettings {
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
}

impl Default for StoreQueueSettings {
    fn default() -> Self {
        StoreQueueSettings {
            visibility_timeout: Duration::from_secs(u64::from(
                crate::queue::DEFAULT_VISIBILITY_TIMEOUT_SECS,
            )),
            max_receive_count: crate::queue::DEFAULT_MAX_RECEIVE_COUNT,
        }
    }
}

#[derive(Clone)]
pub struct StoreQueue {
    store: Arc<dyn Store>,
    name: String,
    settings: StoreQueueSettings,
    sent: Arc<Notify>,
}

impl std::fmt::Debug for StoreQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreQueue")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct GroupState {
    next_seq: u64,
    /// Nonce of the current delivery of the head message, if any (in flight or waiting).
    in_flight: Option<String>,
    visible_at_ms: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredMessage {
    body: String,
    group_id: String,
    dedup_id: String,
    receive_count: u32,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, QueueError> {
    serde_json::to_vec(v).map_err(|e| QueueError::Invalid(e.to_string()))
}

fn parse<T: for<'de> Deserialize<'de>>(item: &Item) -> Result<T, QueueError> {
    serde_json::from_slice(&item.data).map_err(|e| {
        QueueError::Unavailable(format!("corrupt queue item {}/{}: {e}", item.pk, item.sk))
    })
}

/// A lost race (retry) versus a real failure.
fn is_race(e: &StoreError) -> bool {
    matches!(e, StoreError::ConditionFailed { .. } | StoreError::Conflict)
}

#[derive(Serialize, Deserialize)]
struct Receipt(String, String, String);

impl StoreQueue {
    pub fn new(
        store: Arc<dyn Store>,
        name: impl Into<String>,
        settings: StoreQueueSettings,
    ) -> Self {
        StoreQueue {
            store,
            name: name.into(),
            settings,
            sent: Arc::new(Notify::new()),
        }
    }

    fn group_pk(&self, group: &str) -> String {
        format!("{}{}#G#{group}", keyspace::QUEUE, self.name)
    }
    fn ready_pk(&self) -> String {
        format!("{}{}#READY", keyspace::QUEUE_INDEX, self.name)
    }
    fn dlq_pk(&self) -> String {
        format!("{}{}#DLQ", keyspace::QUEUE_INDEX, self.name)
    }
    fn state_key(&self, group: &str) -> Key {
        Key::new(self.group_pk(group), "STATE")
    }

    fn state_item(
        &self,
        group: &str,
        state: &GroupState,
        version: u64,
    ) -> Result<Item, QueueError> {
        Ok(Item::new(self.group_pk(group), "STATE", json(state)?)
            .with_gsi1(
                self.ready_pk(),
                format!("{:016}#{group}", state.visible_at_ms.max(0)),
            )
            .with_version(version))
    }

    /// The writes that append `m` to its group: its dedup key (when `dedup`), the group
    /// state (`state` already advanced past it, at `version`, written under `cond`) and
    /// the message itself as sequence number `seq`.
    fn message_writes(
        &self,
        m: &OutMessage,
        dedup: bool,
        (state, version, cond): (&GroupState, u64, Condition),
        seq: u64,
    ) -> Result<Vec<Write>, QueueError> {
        let msg = StoredMessage {
            body: m.body.clone(),
            group_id: m.group_id.clone(),
            dedup_id: m.dedup_id.clone(),
            receive_count: 0,
        };
        let mut writes = Vec::with_capacity(3);
        if dedup {
            let expires = crate::store::now_epoch() + DEDUP_WINDOW.as_secs() as i64;
            writes.push(Write::put_new(
                Item::new(
                    format!("{}{}#D#{}", keyspace::QUEUE, self.name, m.dedup_id),
                    "D",
                    Vec::new(),
                )
                .with_expiry(expires),
            ));
        }
        writes.push(Write::Put {
            item: self.state_item(&m.group_id, state, version + 1)?,
            condition: cond,
        });
        writes.push(Write::put_new(
            Item::new(
                self.group_pk(&m.group_id),
                format!("M#{seq:020}"),
                json(&msg)?,
            )
            .with_version(1),
        ));
        Ok(writes)
    }

    /// The group's state to append to: the stored one, or a fresh one when the group has
    /// no message (`current` is `None`); with its version and the condition that keeps it.
    fn group_state(current: Option<&Item>) -> Result<(GroupState, u64, Condition), QueueError> {
        Ok(match current {
            Some(item) => (
                parse::<GroupState>(item)?,
                item.version,
                Condition::VersionIs(item.version),
            ),
            None => (
                GroupState {
                    next_seq: 0,
                    in_flight: None,
                    visible_at_ms: now_ms(),
                },
                0,
                Condition::NotExists,
            ),
        })
    }

    /// Appends messages of distinct groups in one transaction. `false`: nothing was
    /// written (a condition failed: the caller sends them one by one).
    async fn append_new_groups(&self, chunk: &[&OutMessage]) -> Result<bool, QueueError> {
        let keys: Vec<Key> = chunk.iter().map(|m| self.state_key(&m.group_id)).collect();
        let current: std::collections::HashMap<Key, Item> = self
            .store
            .get_many(&keys)
            .await?
            .into_iter()
            .map(|i| (i.key(), i))
            .collect();
        let mut writes = Vec::with_capacity(chunk.len() * 3);
        for (m, key) in chunk.iter().zip(&keys) {
            let (mut state, version, cond) = Self::group_state(current.get(key))?;
            let seq = state.next_seq;
            state.next_seq += 1;
            writes.extend(self.message_writes(m, true, (&state, version, cond), seq)?);
        }
        match self.store.transact(writes).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Appends one message to its group (creating the group state if needed), together
    /// with `extra` writes. `dedup`: also claim the dedup key (a duplicate returns Ok(false)).
    async fn append(
        &self,
        m: &OutMessage,
        dedup: bool,
        extra: Vec<Write>,
    ) -> Result<bool, QueueError> {
        for _ in 0..MAX_RACES {
            let current = self.store.get(&self.state_key(&m.group_id)).await?;
            let (mut state, version, cond) = Self::group_state(current.as_ref())?;
            let seq = state.next_seq;
            state.next_seq += 1;
            let mut writes = self.message_writes(m, dedup, (&state, version, cond), seq)?;
            writes.extend(extra.iter().cloned());
            match self.store.transact(writes).await {
                Ok(()) => return Ok(true),
                Err(StoreError::ConditionFailed { index: 0 }) if dedup => return Ok(false),
                Err(e) if is_race(&e) => tokio::task::yield_now().await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(QueueError::Unavailable(format!(
            "send to group {}: too much contention",
            m.group_id
        )))
    }

    /// The first two messages of a group (head and whether there is another).
    async fn head(&self, group: &str) -> Result<Vec<Item>, QueueError> {
        Ok(self
            .store
            .query(
                &Query::new(Index::Primary, self.group_pk(group))
                    .prefix("M#")
                    .limit(2),
            )
            .await?
            .items)
    }

    /// Writes that take the head message off a group: the state moves on to the next
    /// message (ready now) or goes away with the last one.
    fn advance(
        &self,
        group: &str,
        state_item: &Item,
        state: &GroupState,
        more: bool,
    ) -> Result<Write, QueueError> {
        let cond = Condition::VersionIs(state_item.version);
        Ok(if more {
            let next = GroupState {
                next_seq: state.next_seq,
                in_flight: None,
                visible_at_ms: now_ms(),
            };
            Write::Put {
                item: self.state_item(group, &next, state_item.version + 1)?,
                condition: cond,
            }
        } else {
            Write::Delete {
                key: state_item.key(),
                condition: cond,
            }
        })
    }

    /// Tries to deliver the head message of the group whose state is `state_item`.
    /// `Ok(None)`: lost a race, dead-lettered, or nothing there.
    async fn claim(&self, state_item: &Item) -> Result<Option<Delivery>, QueueError> {
        let state: GroupState = parse(state_item)?;
        let Some(group) = state_item
            .pk
            .strip_prefix(&self.group_pk(""))
            .map(str::to_string)
        else {
            return Ok(None);
        };
        let head = self.head(&group).await?;
        let Some(msg_item) = head.first() else {
            // A state without messages (should not happen): clean up.
            let _ = self
                .store
                .transact(vec![Write::Delete {
                    key: state_item.key(),
                    condition: Condition::VersionIs(state_item.version),
                }])
                .await;
            return Ok(None);
        };
        let mut msg: StoredMessage = parse(msg_item)?;
        let msg_cond = Condition::VersionIs(msg_item.version);
        if msg.receive_count >= self.settings.max_receive_count {
            let letter = DeadLetter {
                body: msg.body,
                group_id: msg.group_id,
                dedup_id: msg.dedup_id,
                receive_count: msg.receive_count,
            };
            let writes = vec![
                self.advance(&group, state_item, &state, head.len() > 1)?,
                Write::Delete {
                    key: msg_item.key(),
                    condition: msg_cond,
                },
                Write::put_new(Item::new(
                    self.dlq_pk(),
                    format!("{:016}#{}", now_ms(), uuid::Uuid::new_v4().simple()),
                    json(&StoredDeadLetter::from(&letter))?,
                )),
            ];
            match self.store.transact(writes).await {
                Ok(()) => {
                    tracing::warn!(queue = %self.name, group = %letter.group_id, dedup_id = %letter.dedup_id,
                        receive_count = letter.receive_count, "message moved to the dead-letter queue");
                }
                Err(e) if is_race(&e) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(None);
        }
        msg.receive_count += 1;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let new_state = GroupState {
            next_seq: state.next_seq,
            in_flight: Some(nonce.clone()),
            visible_at_ms: now_ms().saturating_add(ms(self.settings.visibility_timeout)),
        };
        let writes = vec![
            Write::Put {
                item: self.state_item(&group, &new_state, state_item.version + 1)?,
                condition: Condition::VersionIs(state_item.version),
            },
            Write::Put {
                item: Item {
                    data: json(&msg)?,
                    version: msg_item.version + 1,
                    ..msg_item.clone()
                },
                condition: msg_cond,
            },
        ];
        match self.store.transact(writes).await {
            Ok(()) => {}
            Err(e) if is_race(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let receipt = serde_json::to_vec(&Receipt(group, msg_item.sk.clone(), nonce))
            .map(|raw| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
            .map_err(|e| QueueError::Invalid(e.to_string()))?;
        Ok(Some(Delivery {
            receipt,
            body: msg.body,
            group_id: msg.group_id,
            dedup_id: msg.dedup_id,
            receive_count: msg.receive_count,
        }))
    }

    /// Claims up to `max` of the `visible` groups' head messages, in their order. The
    /// claims run concurrently (on the embedded store they share one flush instead of
    /// one each, the consumer's target idle meanwhile); groups lost to a race are made
    /// up from the rest. An error fails the receive only when nothing was claimed:
    /// what was claimed is handed out (else it would stay hidden for the visibility
    /// timeout).
    async fn claim_many(
        &self,
        visible: Vec<Item>,
        max: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut out = Vec::new();
        let mut failed = None;
        let mut rest = visible.into_iter();
        while out.len() < max && failed.is_none() {
            let claims: Vec<_> = rest
                .by_ref()
                .take(max - out.len())
                .map(|state_item| {
                    let queue = self.clone();
                    tokio::spawn(async move { queue.claim(&state_item).await })
                })
                .collect();
            if claims.is_empty() {
                break;
            }
            for claim in claims {
                match claim.await {
                    Ok(Ok(Some(d))) => out.push(d),
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => failed = Some(e),
                    Err(e) => failed = Some(QueueError::Unavailable(format!("claim: {e}"))),
                }
            }
        }
        match failed {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// Makes every received but unacknowledged message visible again now; returns how
    /// many groups it released. Only for a queue no other process consumes, when its
    /// consumer starts: whatever is in flight then was received by a process that died
    /// (killed, crashed) and would otherwise stay hidden for the whole visibility timeout
    /// (6 minutes). `provisync serve` on the embedded store is such a case: redb lets one
    /// process at a time open the file. A message waiting for a retry is released too:
    /// after a restart it is retried at once.
    pub async fn release_in_flight(&self) -> Result<usize, QueueError> {
        let mut released = 0;
        let mut after = None;
        loop {
            let now = now_ms();
            let page = self
                .store
                .query(
                    &Query::new(Index::Gsi1, self.ready_pk())
                        .limit(1000)
                        .after(after),
                )
                .await?;
            for item in &page.items {
                let mut state: GroupState = parse(item)?;
                if state.in_flight.is_none() || state.visible_at_ms <= now {
                    continue;
                }
                let Some(group) = item.pk.strip_prefix(&self.group_pk("")) else {
                    continue;
                };
                state.in_flight = None;
                state.visible_at_ms = now;
                let write = Write::Put {
                    item: self.state_item(group, &state, item.version + 1)?,
                    condition: Condition::VersionIs(item.version),
                };
                match self.store.transact(vec![write]).await {
                    Ok(()) => released += 1,
                    // Acked or received meanwhile: nothing to release.
                    Err(e) if is_race(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        if released > 0 {
            self.sent.notify_waiters();
        }
        Ok(released)
    }

    /// The writes that ack a receipt now: its message goes, its group moves on to the
    /// next message (`true`: there is one) or goes away. Conditioned on the group's state
    /// as read here, so a send or receive in between fails them (a race: read again).
    async fn ack_writes_now(&self, receipt: &str) -> Result<(Vec<Write>, bool), QueueError> {
        let (group, state_item, state, head) = self.current(receipt).await?;
        let more = head.len() > 1;
        let message = head.first().ok_or(QueueError::InvalidReceipt)?.key();
        let writes = vec![
            self.advance(&group, &state_item, &state, more)?,
            Write::Delete {
                key: message,
                condition: Condition::Exists,
            },
        ];
        Ok((writes, more))
    }

    /// The group state item and head message a receipt names, if it is still current.
    async fn current(
        &self,
        receipt: &str,
    ) -> Result<(String, Item, GroupState, Vec<Item>), QueueError> {
        let Receipt(group, sk, nonce) = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(receipt)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .ok_or(QueueError::InvalidReceipt)?;
        let state_item = self
            .store
            .get(&self.state_key(&group))
            .await?
            .ok_or(QueueError::InvalidReceipt)?;
        let state: GroupState = parse(&state_item)?;
        if state.in_flight.as_deref() != Some(nonce.as_str()) {
            return Err(QueueError::InvalidReceipt);
        }
        let head = self.head(&group).await?;
        if head.first().map(|i| i.sk.as_str()) != Some(sk.as_str()) {
            return Err(QueueError::InvalidReceipt);
        }
        Ok((group, state_item, state, head))
    }

    async fn dead_letter_items(&self, limit: usize) -> Result<Vec<Item>, QueueError> {
        Ok(self
            .store
            .query(&Query::new(Index::Primary, self.dlq_pk()).limit(limit.max(1)))
            .await?
            .items)
    }
}

#[derive(Serialize, Deserialize)]
struct StoredDeadLetter {
    body: String,
    group_id: String,
    dedup_id: String,
    receive_count: u32,
}

impl From<&DeadLetter> for StoredDeadLetter {
    fn from(l: &DeadLetter) -> Self {
        StoredDeadLetter {
            body: l.body.clone(),
            group_id: l.group_id.clone(),
            dedup_id: l.dedup_id.clone(),
            receive_count: l.receive_count,
        }
    }
}

impl From<StoredDeadLetter> for DeadLetter {
    fn from(l: StoredDeadLetter) -> Self {
        DeadLetter {
            body: l.body,
            group_id: l.group_id,
            dedup_id: l.dedup_id,
            receive_count: l.receive_count,
        }
    }
}

#[async_trait]
impl InlineSend for StoreQueue {
    async fn append_writes(
        &self,
        message: &OutMessage,
        new_group: bool,
    ) -> Result<Vec<Write>, QueueError> {
        if message.group_id.is_empty() || message.dedup_id.is_empty() {
            return Err(QueueError::Invalid("empty group or dedup id".into()));
        }
        let current = if new_group {
            None
        } else {
            self.store.get(&self.state_key(&message.group_id)).await?
        };
        let (mut state, version, cond) = Self::group_state(current.as_ref())?;
        let seq = state.next_seq;
        state.next_seq += 1;
        self.message_writes(message, true, (&state, version, cond), seq)
    }

    fn writes_per_message(&self) -> usize {
        3
    }

    fn committed(&self) {
        self.sent.notify_waiters();
    }
}

#[async_trait]
impl Queue for StoreQueue {
    fn inline(&self, store: &Arc<dyn Store>) -> Option<&dyn InlineSend> {
        // The same store object: one transaction holds the caller's writes and these.
        let same = std::ptr::eq(
            Arc::as_ptr(&self.store).cast::<()>(),
            Arc::as_ptr(store).cast::<()>(),
        );
        same.then_some(self as &dyn InlineSend)
    }

    async fn send(&self, messages: Vec<OutMessage>) -> Result<(), QueueError> {
        for m in &messages {
            if m.group_id.is_empty() || m.dedup_id.is_empty() {
                return Err(QueueError::Invalid("empty group or dedup id".into()));
            }
        }
        // Many messages of distinct groups share one transaction (one durable commit
        // instead of one each: an import or a reconcile sends thousands). A chunk that
        // fails (a duplicate dedup id, a race on a group) is sent one by one, which
        // handles both exactly as before.
        let mut i = 0;
        while i < messages.len() {
            let mut groups = std::collections::HashSet::new();
            let mut chunk = Vec::new();
            while i < messages.len()
                && chunk.len() < SEND_BATCH
                && groups.insert(messages[i].group_id.as_str())
            {
                chunk.push(&messages[i]);
                i += 1;
            }
            if chunk.len() == 1 || !self.append_new_groups(&chunk).await? {
                for m in chunk {
                    self.append(m, true, Vec::new()).await?;
                }
            }
        }
        self.sent.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let max = max.clamp(1, super::SQS_BATCH_MAX);
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            // Register interest before looking, so a send in between still wakes us.
            let notified = self.sent.notified();
            let now = now_ms();
            let ready = self
                .store
                .query(&Query::new(Index::Gsi1, self.ready_pk()).limit(max * 4))
                .await?;
            let mut visible = Vec::new();
            for state_item in ready.items {
                if parse::<GroupState>(&state_item)?.visible_at_ms > now {
                    break;
                }
                visible.push(state_item);
            }
            let out = self.claim_many(visible, max).await?;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !out.is_empty() || remaining.is_zero() {
                return Ok(out);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(remaining.min(POLL_INTERVAL)) => {}
            }
        }
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        for _ in 0..MAX_RACES {
            let (writes, more) = self.ack_writes_now(receipt).await?;
            match self.store.transact(writes).await {
                Ok(()) => {
                    if more {
                        self.sent.notify_waiters();
                    }
                    return Ok(());
                }
                Err(e) if is_race(&e) => tokio::task::yield_now().await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(QueueError::Unavailable("ack: too much contention".into()))
    }

    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        for _ in 0..MAX_RACES {
            let (group, state_item, mut state, _) = self.current(receipt).await?;
            state.visible_at_ms = now_ms().saturating_add(ms(delay.min(MAX_VISIBILITY)));
            let write = Write::Put {
                item: self.state_item(&group, &state, state_item.version + 1)?,
                condition: Condition::VersionIs(state_item.version),
            };
            match self.store.transact(vec![write]).await {
                Ok(()) => {
                    if delay.is_zero() {
                        self.sent.notify_waiters();
                    }
                    return Ok(());
                }
                Err(e) if is_race(&e) => tokio::task::yield_now().await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(QueueError::Unavailable(
            "retry_later: too much contention".into(),
        ))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.dead_letter_items(limit)
            .await?
            .iter()
            .map(|i| parse::<StoredDeadLetter>(i).map(DeadLetter::from))
            .collect()
    }

    async fn dead_letter_count(&self) -> Result<usize, QueueError> {
        let mut count = 0;
        let mut after = None;
        loop {
            let page = self.dead_letter_page(after).await?;
            count += page.items.len();
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(count),
            }
        }
    }

    async fn redrive(&self, limit: usize) -> Result<usize, QueueError> {
        let items = self.dead_letter_items(limit).await?;
        self.redrive_items(items).await
    }

    async fn redrive_one(&self, dedup_id: &str) -> Result<bool, QueueError> {
        let mut after = None;
        loop {
            let page = self.dead_letter_page(after).await?;
            if let Some(item) = page
                .items
                .iter()
                .find(|i| parse::<StoredDeadLetter>(i).is_ok_and(|l| l.dedup_id == dedup_id))
            {
                return Ok(self.redrive_items(vec![item.clone()]).await? == 1);
            }
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(false),
            }
        }
    }

    fn backend(&self) -> &'static str {
        "store"
    }

    async fn lease(&self) -> Option<Duration> {
        Some(self.settings.visibility_timeout)
    }

    async fn ack_writes(
        &self,
        receipt: &str,
        store: &Arc<dyn Store>,
    ) -> Result<Option<StoreAck>, QueueError> {
        // The same instance only: another handle on the same data would do as well, but
        // cannot be told apart from another store.
        if !std::ptr::addr_eq(Arc::as_ptr(&self.store), Arc::as_ptr(store)) {
            return Ok(None);
        }
        let (writes, more) = self.ack_writes_now(receipt).await?;
        let sent = self.sent.clone();
        Ok(Some(StoreAck::new(writes, move || {
            if more {
                sent.notify_waiters();
            }
        })))
    }
}

impl StoreQueue {
    /// One page (up to 1,000) of the dead-letter list, after `after`.
    async fn dead_letter_page(&self, after: Option<Cursor>) -> Result<Page, QueueError> {
        Ok(self
            .store
            .query(
                &Query::new(Index::Primary, self.dlq_pk())
                    .limit(1000)
                    .after(after),
            )
            .await?)
    }

    /// Moves these dead-letter items back to the queue; returns how many moved.
    async fn redrive_items(&self, items: Vec<Item>) -> Result<usize, QueueError> {
        let mut moved = 0;
        for item in items {
            let letter: DeadLetter = parse::<StoredDeadLetter>(&item)?.into();
            let m = OutMessage::new(letter.group_id, letter.dedup_id, letter.body);
            let remove = Write::Delete {
                key: item.key(),
                condition: Condition::Exists,
            };
            match self.append(&m, false, vec![remove]).await {
                Ok(_) => moved += 1,
                // Someone else redrove it meanwhile.
                Err(QueueError::Store(e)) if is_race(&e) => {}
                Err(QueueError::Unavailable(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if moved > 0 {
            self.sent.notify_waiters();
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    fn settings() -> StoreQueueSettings {
        StoreQueueSettings {
            visibility_timeout: Duration::from_secs(1),
            max_receive_count: 3,
        }
    }

    #[tokio::test]
    async fn contract_on_embedded_store() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let q = StoreQueue::new(store, "test", settings());
        super::super::contract::run_all(
            &q,
            super::super::contract::Setup {
                visibility_timeout: Duration::from_secs(1),
                max_receive_count: 3,
                dedup_after_ack: true,
            },
        )
        .await;
    }

    #[tokio::test]
    async fn ack_in_the_callers_transaction() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let q = StoreQueue::new(store.clone(), "test", settings());
        super::super::contract::ack_in_store(
            &q,
            &store,
            super::super::contract::Setup {
                visibility_timeout: Duration::from_secs(1),
                max_receive_count: 3,
                dedup_after_ack: true,
            },
        )
        .await;
        // Another store (even a handle on the same data): no writes, ack as usual.
        q.send(vec![OutMessage::new("g", "e", "x")]).await.unwrap();
        let d = q.receive(1, Duration::ZERO).await.unwrap();
        let other: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        assert!(q.ack_writes(&d[0].receipt, &other).await.unwrap().is_none());
        let same_data: Arc<dyn Store> = Arc::new(ByRef(store.clone()));
        assert!(
            q.ack_writes(&d[0].receipt, &same_data)
                .await
                .unwrap()
                .is_none()
        );
        q.ack(&d[0].receipt).await.unwrap();
    }

    /// Another instance over the same store.
    struct ByRef(Arc<dyn Store>);

    #[async_trait]
    impl Store for ByRef {
        async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
            self.0.get(key).await
        }
        async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
            self.0.get_many(keys).await
        }
        async fn query(&self, query: &Query) -> Result<Page, StoreError> {
            self.0.query(query).await
        }
        async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
            self.0.transact(writes).await
        }
        fn backend(&self) -> &'static str {
            "by-ref"
        }
    }

    #[tokio::test]
    async fn release_in_flight_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let long = StoreQueueSettings {
            visibility_timeout: Duration::from_secs(300),
            max_receive_count: 3,
        };
        let stale_receipt = {
            let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            let q = StoreQueue::new(store, "deliver", long);
            q.send(vec![
                OutMessage::new("a", "e1", "one"),
                OutMessage::new("a", "e2", "two"),
                OutMessage::new("b", "e3", "three"),
            ])
            .await
            .unwrap();
            let d = q.receive(10, Duration::ZERO).await.unwrap();
            assert_eq!(d.len(), 2);
            d[0].receipt.clone()
            // "Crash" before the acks.
        };
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let q = StoreQueue::new(store, "deliver", long);
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(q.release_in_flight().await.unwrap(), 2);
        assert_eq!(q.release_in_flight().await.unwrap(), 0, "nothing left");
        let mut d = q.receive(10, Duration::ZERO).await.unwrap();
        d.sort_by(|x, y| x.body.cmp(&y.body));
        let bodies: Vec<&str> = d.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(bodies, ["one", "three"], "heads again, in group order");
        assert!(d.iter().all(|d| d.receive_count == 2));
        assert!(matches!(
            q.ack(&stale_receipt).await,
            Err(QueueError::InvalidReceipt)
        ));
    }

    #[tokio::test]
    async fn survives_restart_mid_delivery() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            let q = StoreQueue::new(store, "deliver", settings());
            q.send(vec![
                OutMessage::new("g", "e1", "one"),
                OutMessage::new("g", "e2", "two"),
            ])
            .await
            .unwrap();
            let d = q.receive(10, Duration::ZERO).await.unwrap();
            assert_eq!(d.len(), 1);
            // "Crash" before the ack.
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let q = StoreQueue::new(store, "deliver", settings());
        let d = q.receive(10, Duration::from_secs(2)).await.unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].body.as_str(), d[0].receive_count), ("one", 2));
        q.ack(&d[0].receipt).await.unwrap();
        let d = q.receive(10, Duration::from_secs(2)).await.unwrap();
        assert_eq!((d[0].body.as_str(), d[0].receive_count), ("two", 1));
        q.ack(&d[0].receipt).await.unwrap();
        // Nothing left over: no group state, no messages.
        let rest = q
            .store
            .query(&Query::new(Index::Gsi1, q.ready_pk()))
            .await
            .unwrap();
        assert!(rest.items.is_empty());
    }

    #[tokio::test]
    async fn concurrent_consumers_never_share_a_message() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let q = StoreQueue::new(
            store,
            "race",
            StoreQueueSettings {
                visibility_timeout: Duration::from_secs(30),
                max_receive_count: 5,
            },
        );
        let msgs = (0..40)
            .map(|i| OutMessage::new(format!("g{}", i % 8), format!("e{i}"), format!("{i}")))
            .collect();
        q.send(msgs).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = q.receive(3, Duration::from_millis(300)).await.unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    for d in batch {
                        assert_eq!(d.receive_count, 1, "delivered twice: {d:?}");
                        q.ack(&d.receipt).await.unwrap();
                        got.push(d.body);
                    }
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort_by_key(|b| b.parse::<u32>().unwrap());
        assert_eq!(all, (0..40).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}
