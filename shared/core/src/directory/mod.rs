//! The directory: SCIM users and groups kept on any [`Store`].
//!
//! Every write is one conditional transaction over the resource item, its uniqueness keys
//! and (for groups) its membership items, so a failed or concurrent write leaves nothing
//! half done. Reads compute `groups` (users) and `members` (groups) from the membership
//! items only when the client will see them.

mod counts;
mod create;
mod cursor;
mod delete;
mod error;
mod group_members;
mod index;
pub mod keys;
mod layout;
mod lookup;
mod matcher;
mod members;
mod paged;
mod positions;
mod read;
mod search;
mod update;

#[cfg(test)]
mod tests;

pub use cursor::CursorError;
pub use error::DirectoryError;
pub use index::Ordering;
pub use layout::{LAYOUT_VERSION, MigrationReport};
pub use paged::PAGE_READ_BUDGET;
pub use positions::POSITION_TTL_SECS;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::{Map, Value, json};

use crate::crypto::SecretBox;
use crate::event::{ChangeEvent, ChangeOp, EventSink, Origin, outbox_write, publish};
use crate::store::{Item, Key, Store, StoreError, Write};
use keys::{
    UniqueAttr, member_key, member_of_pk, modified_index_pk, modified_index_sk, resource_key,
    shard_of, type_index_pk,
};
use provisync_scim::filter::Filter;
use provisync_scim::patch::MemberRef;
use provisync_scim::projection::Projection;
use provisync_scim::schema::AttrPath;
use provisync_scim::{ResourceKind, SchemaRegistry};

/// Longest value accepted in an attribute that becomes part of a key (DynamoDB allows
/// 2048 bytes for a partition key; we keep well under it).
pub const MAX_KEY_VALUE_BYTES: usize = 1024;
/// How many times a write retries after losing an optimistic-concurrency race.
const WRITE_ATTEMPTS: usize = 5;
/// How long a cursor stays valid after the page that issued it (RFC 9865
/// `cursorTimeout`), by default.
pub const CURSOR_TIMEOUT_SECS: u64 = 3600;

/// Where a write came from and what else commits with it: the change event's origin
/// (a webhook's source is never sent the change back) and extra writes (a replay marker,
/// a last-writer-wins stamp, a source link) that must land in the same transaction as
/// the resource, or not at all.
#[derive(Clone, Debug, Default)]
pub struct WriteContext {
    /// `None`: [`Origin::Scim`].
    pub origin: Option<Origin>,
    pub extra: Vec<Write>,
    /// The id a created resource gets (a UUIDv7 the caller made, so its extra writes can
    /// name it); `None`: a fresh one.
    pub new_id: Option<String>,
}

impl WriteContext {
    fn origin(&self) -> Origin {
        self.origin.clone().unwrap_or(Origin::Scim)
    }
}

/// A resource as stored, with its version.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub resource: Value,
    pub version: u64,
}

/// What a create or an update returns: the resource as stored, and the write-only
/// password the body carried, if any (handed to targets in the change event, never kept
/// in the directory).
#[derive(Clone, Debug, PartialEq)]
pub struct Saved {
    pub stored: Stored,
    pub password: Option<String>,
}

impl Stored {
    pub fn id(&self) -> &str {
        self.resource
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    /// The weak entity tag (RFC 7644 §3.14).
    pub fn etag(&self) -> String {
        etag(self.version)
    }
}

pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// `If-Match` precondition (RFC 7644 §3.14, RFC 7232 §3.1): `*` or a list of tags; weak
/// comparison, since our tags are weak.
pub fn if_match_ok(header: &str, version: u64) -> bool {
    let want = format!("\"{version}\"");
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == want)
}

/// A list / search request (RFC 7644 §3.4.2, §3.4.3), already parsed.
#[derive(Clone, Debug, Default)]
pub struct SearchRequest {
    pub filter: Option<Filter>,
    pub sort_by: Option<AttrPath>,
    pub descending: bool,
    /// 1-based.
    pub start_index: usize,
    /// `None`: the server's page size.
    pub count: Option<usize>,
    pub projection: Projection,
    /// RFC 9865 cursor paging: `Some("")` asks for the first page, `Some(c)` the page a
    /// `nextCursor` / `previousCursor` names; `None`: paging by `start_index`.
    pub cursor: Option<String>,
}

#[derive(Clone, Debug)]
pub struct SearchResult {
    /// `None` on a cursor page of a filtered walk, where counting would read everything
    /// (RFC 9865 §2 lets it be left out).
    pub total_results: Option<usize>,
    pub start_index: usize,
    /// Full resources (with `groups` / `members` filled when the projection shows them).
    pub resources: Vec<Stored>,
    /// Cursor paging: the next page, unless this is the last.
    pub next_cursor: Option<String>,
    /// Cursor paging: the page before, unless this is the first.
    pub previous_cursor: Option<String>,
}

#[derive(Clone)]
pub struct Directory {
    store: Arc<dyn Store>,
    schemas: SchemaRegistry,
    /// Where change events go (the transactional outbox, then the queue).
    events: Option<EventSink>,
    /// Page size when a client gives no `count`, and the most one page may hold.
    pub max_results: usize,
    /// Seals cursors (a key derived from the operator key, so that every process of a
    /// deployment opens the cursors of the others).
    cursor_key: Arc<SecretBox>,
    cursor_timeout_secs: i64,
    /// Resources one cursor page of a filtered walk examines at most.
    page_read_budget: usize,
    /// The store is known to be in the current key layout.
    layout_ready: Arc<AtomicBool>,
    positions: Arc<positions::Positions>,
}

fn store_error(e: StoreError) -> DirectoryError {
    DirectoryError::from(e)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn to_item(
    kind: ResourceKind,
    id: &str,
    resource: &Value,
    version: u64,
) -> Result<Item, DirectoryError> {
    let data = serde_json::to_vec(resource).map_err(|e| DirectoryError::Internal(e.to_string()))?;
    let key = resource_key(kind, id);
    let shard = shard_of(id);
    Ok(Item::new(key.pk, key.sk, data)
        .with_gsi1(type_index_pk(kind, shard), id)
        .with_gsi2(
            modified_index_pk(kind, shard),
            modified_index_sk(resource, id),
        )
        .with_version(version))
}

fn from_item(item: &Item) -> Result<Stored, DirectoryError> {
    let resource: Value = serde_json::from_slice(&item.data)
        .map_err(|e| DirectoryError::Internal(format!("stored resource is not JSON: {e}")))?;
    Ok(Stored {
        resource,
        version: item.version,
    })
}

fn member_item(group_id: &str, m: &MemberRef) -> Item {
    let key = member_key(group_id, &m.value);
    let data = json!({"value": m.value, "type": m.kind.as_deref().unwrap_or("User")});
    Item::new(key.pk, key.sk, data.to_string().into_bytes())
        .with_gsi1(member_of_pk(&m.value), group_id)
}

/// The membership writes a set of changes comes to: members to add, member ids to
/// remove (only real differences from what is stored).
#[derive(Default)]
struct MembershipDiff {
    adds: Vec<MemberRef>,
    removes: Vec<String>,
}

/// Why a transaction's condition failed, by write index.
#[derive(Clone)]
enum WriteRole {
    Resource,
    Unique(UniqueAttr, String),
    Other,
}

impl Directory {
    pub fn new(store: Arc<dyn Store>, schemas: SchemaRegistry) -> Self {
        Directory {
            store,
            schemas,
            events: None,
            max_results: 1000,
            // Until the operator key is given: cursors of this process only.
            cursor_key: Arc::new(SecretBox::generate().0),
            cursor_timeout_secs: CURSOR_TIMEOUT_SECS as i64,
            page_read_budget: PAGE_READ_BUDGET,
            layout_ready: Arc::new(AtomicBool::new(false)),
            positions: Arc::new(positions::Positions::default()),
        }
    }

    /// Seal cursors with a key derived from the operator key (every process of a
    /// deployment then opens the cursors of the others).
    pub fn with_cursor_key(mut self, operator_key: &SecretBox) -> Self {
        self.cursor_key = Arc::new(operator_key.derive("scim cursors"));
        self
    }

    /// How long a cursor stays valid after the page that issued it.
    pub fn with_cursor_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.cursor_timeout_secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// How many resources one cursor page of a filtered walk examines at most (by
    /// default [`PAGE_READ_BUDGET`]).
    pub fn with_page_read_budget(mut self, budget: usize) -> Self {
        self.page_read_budget = budget.max(1);
        self
    }

    /// How long a cursor stays valid (`cursorTimeout` of `/ServiceProviderConfig`).
    pub fn cursor_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::try_from(self.cursor_timeout_secs).unwrap_or(0))
    }

    /// Produce a change event for every write, through the outbox, into `sink`.
    pub fn with_events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    pub fn events(&self) -> Option<&EventSink> {
        self.events.as_ref()
    }

    /// The change event of a write, with the membership changes its member writes make;
    /// `None` when events are off.
    #[allow(clippy::too_many_arguments)]
    fn event_for(
        &self,
        kind: ResourceKind,
        id: &str,
        op: ChangeOp,
        state: (&Value, u64),
        member_writes: &[Write],
        password: Option<&str>,
        origin: &Origin,
    ) -> Option<ChangeEvent> {
        let sink = self.events.as_ref()?;
        let mut e = ChangeEvent::new(kind, id, op, origin.clone());
        e.resource = Some(state.0.clone());
        e.version = state.1;
        for w in member_writes {
            let member = |k: &Key| {
                k.sk.strip_prefix(keys::MEMBER_SK_PREFIX)
                    .map(str::to_string)
            };
            match w {
                Write::Put { item, .. } => e.members_added.extend(member(&item.key())),
                Write::Delete { key, .. } => e.members_removed.extend(member(key)),
                Write::Check { .. } | Write::Add { .. } => {}
            }
        }
        e.password = password.and_then(|p| sink.seal.as_ref().and_then(|seal| seal(p)));
        Some(e)
    }

    /// Commits `writes` with the outbox item of `event` (when events are on), then hands
    /// the event to the queue: the path entity and configuration records take, the same
    /// as users'.
    pub async fn transact_change(
        &self,
        mut writes: Vec<Write>,
        event: ChangeEvent,
    ) -> Result<(), StoreError> {
        let event = self.events.as_ref().map(|_| event);
        if let Some(e) = &event {
            writes.push(outbox_write(e).map_err(|e| StoreError::Invalid(e.to_string()))?);
        }
        self.store.transact(writes).await?;
        if let Some(e) = event {
            self.publish(&[e]).await;
        }
        Ok(())
    }

    /// The queue's way to send inside this directory's own transactions, when change
    /// events are on and the queue keeps its messages in this store.
    fn inline_send(&self) -> Option<&dyn crate::queue::InlineSend> {
        self.events.as_ref()?.queue.inline(&self.store)
    }

    /// Places a change event takes in its resource's transaction: its message in the
    /// queue, or its outbox item.
    fn event_room(&self) -> usize {
        self.inline_send().map_or(1, |q| q.writes_per_message())
    }

    /// Commits a change (`writes`, their `roles` for the errors, as [`Directory::commit`])
    /// with its change event, and hands the event on:
    /// - when the queue keeps its messages in this store, the event's message is written
    ///   in the same transaction (`new_group`: the resource is created by it, so its
    ///   queue group cannot exist). If the queue's state of the resource moved meanwhile
    ///   (a consumer took or finished one of its messages), the change is committed again
    ///   with an outbox item instead;
    /// - otherwise with its outbox item, sent to the queue after the commit (the outbox
    ///   keeps it for the sweep if that send fails).
    async fn commit_change(
        &self,
        kind: ResourceKind,
        writes: Vec<Write>,
        roles: &[WriteRole],
        on_version_mismatch: Option<DirectoryError>,
        event: Option<ChangeEvent>,
        new_group: bool,
    ) -> Result<(), DirectoryError> {
        let internal = |e: String| DirectoryError::Internal(e);
        let Some(event) = event else {
            return self.commit(kind, writes, roles, on_version_mismatch).await;
        };
        if let Some(q) = self.inline_send() {
            let message = event.to_message().map_err(|e| internal(e.to_string()))?;
            let queued = q
                .append_writes(&message, new_group)
                .await
                .map_err(|e| internal(e.to_string()))?;
            let mut all = writes.clone();
            all.extend(queued);
            match self.store.transact(all).await {
                Ok(()) => {
                    q.committed();
                    return Ok(());
                }
                // Lost the race on the queue's group: through the outbox below.
                Err(StoreError::ConditionFailed { index }) if index >= writes.len() => {}
                Err(e) => return Err(self.commit_error(kind, e, roles, on_version_mismatch)),
            }
        }
        let mut writes = writes;
        writes.push(outbox_write(&event).map_err(|e| internal(e.to_string()))?);
        let mut roles = roles.to_vec();
        roles.push(WriteRole::Other);
        self.commit(kind, writes, &roles, on_version_mismatch)
            .await?;
        self.publish(&[event]).await;
        Ok(())
    }

    /// After the commit: hand the events to the queue. A failure here loses nothing (the
    /// outbox keeps them for the sweeper), so it is logged, not returned.
    async fn publish(&self, events: &[ChangeEvent]) {
        let Some(sink) = &self.events else { return };
        if let Err(e) = publish(self.store.as_ref(), sink.queue.as_ref(), events).await {
            tracing::warn!(error = %e, events = events.len(), "change events left in the outbox for the sweeper");
        }
    }

    pub fn schemas(&self) -> &SchemaRegistry {
        &self.schemas
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    // ---- reads ---------------------------------------------------------------------

    // ---- writes --------------------------------------------------------------------

    /// Runs a transaction and turns condition failures into the right SCIM error.
    async fn commit(
        &self,
        kind: ResourceKind,
        writes: Vec<Write>,
        roles: &[WriteRole],
        on_version_mismatch: Option<DirectoryError>,
    ) -> Result<(), DirectoryError> {
        self.store
            .transact(writes)
            .await
            .map_err(|e| self.commit_error(kind, e, roles, on_version_mismatch))
    }

    /// The SCIM error of a failed transaction: a failed condition by the role of its write.
    fn commit_error(
        &self,
        kind: ResourceKind,
        e: StoreError,
        roles: &[WriteRole],
        on_version_mismatch: Option<DirectoryError>,
    ) -> DirectoryError {
        match e {
            StoreError::ConditionFailed { index } => match roles.get(index) {
                Some(WriteRole::Unique(attr, value)) => DirectoryError::Uniqueness {
                    kind,
                    attribute: *attr,
                    value: value.clone(),
                    in_batch: false,
                },
                Some(WriteRole::Resource) => {
                    on_version_mismatch.unwrap_or(DirectoryError::Conflict)
                }
                _ => DirectoryError::Conflict,
            },
            e => store_error(e),
        }
    }
}

fn unique_item(kind: ResourceKind, attr: UniqueAttr, value: &str, id: &str) -> Item {
    let key = attr.key(kind, value);
    Item::new(key.pk, key.sk, json!({"id": id}).to_string().into_bytes())
}

fn check_if_match(if_match: Option<&str>, version: u64) -> Result<(), DirectoryError> {
    match if_match {
        Some(h) if !if_match_ok(h, version) => {
            Err(DirectoryError::PreconditionFailed { current: version })
        }
        _ => Ok(()),
    }
}

fn check_key_lengths(kind: ResourceKind, resource: &Value) -> Result<(), DirectoryError> {
    for attr in UniqueAttr::for_kind(kind) {
        if attr
            .value_in(resource)
            .is_some_and(|v| v.len() > MAX_KEY_VALUE_BYTES)
        {
            return Err(DirectoryError::KeyTooLong { attribute: *attr });
        }
    }
    Ok(())
}

fn as_object_mut(v: &mut Value) -> Result<&mut Map<String, Value>, DirectoryError> {
    v.as_object_mut().ok_or(DirectoryError::NotAnObject)
}

fn take_password(resource: &mut Value) -> Option<String> {
    resource
        .as_object_mut()?
        .remove("password")
        .and_then(|p| p.as_str().map(str::to_string))
}

fn take_members(
    kind: ResourceKind,
    resource: &mut Value,
) -> Result<Vec<MemberRef>, DirectoryError> {
    let Some(obj) = resource.as_object_mut() else {
        return Ok(vec![]);
    };
    let Some(members) = obj.remove("members") else {
        return Ok(vec![]);
    };
    if kind != ResourceKind::Group {
        return Ok(vec![]);
    }
    let mut out: Vec<MemberRef> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for m in members.as_array().into_iter().flatten() {
        let value = m
            .get("value")
            .and_then(Value::as_str)
            .ok_or(DirectoryError::MemberWithoutValue)?;
        if !seen.insert(value) {
            continue;
        }
        out.push(MemberRef {
            value: value.to_string(),
            kind: m.get("type").and_then(Value::as_str).map(str::to_string),
        });
    }
    Ok(out)
}

/// A client's resource body, normalised (RFC 7643 schema rules) off the reactor threads:
/// the resource to store, the write-only password, and the group members it names.
async fn prepare_body(
    schemas: &SchemaRegistry,
    kind: ResourceKind,
    body: &Value,
) -> Result<(Value, Option<String>, Vec<MemberRef>), DirectoryError> {
    fn prepare(
        schemas: &SchemaRegistry,
        kind: ResourceKind,
        body: &Value,
    ) -> Result<(Value, Option<String>, Vec<MemberRef>), DirectoryError> {
        let mut resource = provisync_scim::resource::normalize(&schemas.view(kind), body)?;
        let password = take_password(&mut resource);
        let members = take_members(kind, &mut resource)?;
        check_key_lengths(kind, &resource)?;
        Ok((resource, password, members))
    }
    // A body of a few dozen values (a user as identity providers send them) costs
    // microseconds: normalised here. Handing it to the blocking pool would cost more in
    // copies and thread switches than the work itself.
    if json_nodes_within(body, SMALL_BODY_NODES) {
        return prepare(schemas, kind, body);
    }
    let schemas = schemas.clone();
    let body = body.clone();
    crate::cpu::run(move || prepare(&schemas, kind, &body))
        .await
        .map_err(|e| DirectoryError::Internal(e.to_string()))?
}

/// JSON values (objects, arrays, scalars) of a body normalised on the calling task;
/// larger bodies go to the blocking pool (`cpu::run`).
const SMALL_BODY_NODES: usize = 256;

/// Whether `v` has at most `budget` JSON values (a string or key counting one per 64
/// bytes), counted until the budget runs out: the cost of asking is bounded by the
/// budget, not by the body.
fn json_nodes_within(v: &Value, budget: usize) -> bool {
    fn count(v: &Value, left: &mut usize) -> bool {
        if *left == 0 {
            return false;
        }
        *left -= 1;
        match v {
            Value::Array(a) => a.iter().all(|x| count(x, left)),
            Value::Object(o) => o.iter().all(|(k, x)| {
                *left = left.saturating_sub(k.len() / 64);
                count(x, left)
            }),
            // Long strings count by their length (64 bytes a value).
            Value::String(s) => {
                *left = left.saturating_sub(s.len() / 64);
                *left > 0
            }
            _ => true,
        }
    }
    let mut left = budget;
    count(v, &mut left)
}

fn strip_meta(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("meta");
    }
    v
}

/// `schemas`, `id`, `externalId`, `meta` first, then the rest as given.
fn reorder(v: Value) -> Value {
    let Value::Object(mut obj) = v else { return v };
    let mut out = Map::new();
    for k in ["schemas", "id", "externalId", "meta"] {
        if let Some(x) = obj.remove(k) {
            out.insert(k.to_string(), x);
        }
    }
    out.extend(obj);
    Value::Object(out)
}
