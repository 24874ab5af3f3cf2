//! The directory: SCIM users and groups kept on any [`Store`].
//!
//! Every write is one conditional transaction over the resource item, its uniqueness keys
//! and (for groups) its membership items, so a failed or concurrent write leaves nothing
//! half done. Reads compute `groups` (users) and `members` (groups) from the membership
//! items only when the client will see them.

mod error;
pub mod keys;

pub use error::DirectoryError;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::event::{ChangeEvent, ChangeOp, EventSink, Origin, outbox_write, publish};
use crate::store::{
    Condition, Index, Item, Key, MAX_TRANSACT_ITEMS, Query, Store, StoreError, Write,
};
use keys::{UniqueAttr, member_key, member_of_pk, resource_key, type_index_pk};
use provisync_scim::filter::{CompValue, CompareOp, Filter};
use provisync_scim::patch::{MemberChange, MemberRef, apply_patch};
use provisync_scim::projection::Projection;
use provisync_scim::resource::{check_immutable, normalize};
use provisync_scim::schema::AttrPath;
use provisync_scim::{ResourceKind, SchemaRegistry, sort};

/// Longest value accepted in an attribute that becomes part of a key (DynamoDB allows
/// 2048 bytes for a partition key; we keep well under it).
pub const MAX_KEY_VALUE_BYTES: usize = 1024;
/// How many times a write retries after losing an optimistic-concurrency race.
const WRITE_ATTEMPTS: usize = 5;
/// Items read per store page while scanning a resource type.
const SCAN_PAGE: usize = 500;

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
}

#[derive(Clone, Debug)]
pub struct SearchResult {
    pub total_results: usize,
    pub start_index: usize,
    /// Full resources (with `groups` / `members` filled when the projection shows them).
    pub resources: Vec<Stored>,
}

#[derive(Clone)]
pub struct Directory {
    store: Arc<dyn Store>,
    schemas: SchemaRegistry,
    /// Where change events go (the transactional outbox, then the queue).
    events: Option<EventSink>,
    /// Page size when a client gives no `count`, and the most one page may hold.
    pub max_results: usize,
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
    Ok(Item::new(key.pk, key.sk, data)
        .with_gsi1(type_index_pk(kind), id)
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
        }
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
                Write::Check { .. } => {}
            }
        }
        e.password = password.and_then(|p| sink.seal.as_ref().and_then(|seal| seal(p)));
        Some(e)
    }

    /// Runs a transaction with the event's outbox item in it.
    async fn transact_with_event(
        &self,
        mut writes: Vec<Write>,
        event: Option<&ChangeEvent>,
    ) -> Result<(), DirectoryError> {
        if let Some(e) = event {
            writes.push(outbox_write(e).map_err(|e| DirectoryError::Internal(e.to_string()))?);
        }
        self.store.transact(writes).await.map_err(store_error)
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

    /// The stored resource, without computed attributes.
    pub async fn load(&self, kind: ResourceKind, id: &str) -> Result<Stored, DirectoryError> {
        let not_found = || DirectoryError::NotFound {
            kind,
            id: id.to_string(),
        };
        if id.is_empty() || id.len() > MAX_KEY_VALUE_BYTES {
            return Err(not_found());
        }
        let item = self
            .store
            .get(&resource_key(kind, id))
            .await
            .map_err(store_error)?
            .ok_or_else(not_found)?;
        from_item(&item)
    }

    /// The resource with `groups` / `members` computed if the projection shows them.
    pub async fn get(
        &self,
        kind: ResourceKind,
        id: &str,
        projection: &Projection,
    ) -> Result<Stored, DirectoryError> {
        let mut stored = self.load(kind, id).await?;
        self.expand(kind, &mut stored, projection).await?;
        Ok(stored)
    }

    async fn expand(
        &self,
        kind: ResourceKind,
        stored: &mut Stored,
        projection: &Projection,
    ) -> Result<(), DirectoryError> {
        let view = self.schemas.view(kind);
        let id = stored.id().to_string();
        match kind {
            ResourceKind::User => {
                if projection.includes(&view, &AttrPath::new("groups")) {
                    let groups = self.groups_of(&id).await?;
                    if !groups.is_empty() {
                        stored.resource["groups"] = Value::Array(groups);
                    }
                }
            }
            ResourceKind::Group => {
                if projection.includes(&view, &AttrPath::new("members")) {
                    let members = self.members_of(&id).await?;
                    if !members.is_empty() {
                        stored.resource["members"] = Value::Array(
                            members
                                .into_iter()
                                .map(|m| json!({"value": m.value, "type": m.kind.unwrap_or_else(|| "User".into())}))
                                .collect(),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// All members of a group, paging through the store.
    pub async fn members_of(&self, group_id: &str) -> Result<Vec<MemberRef>, DirectoryError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(
                        Index::Primary,
                        keys::resource_pk(ResourceKind::Group, group_id),
                    )
                    .prefix(keys::MEMBER_SK_PREFIX)
                    .limit(1000)
                    .after(after),
                )
                .await
                .map_err(store_error)?;
            for item in &page.items {
                let v: Value = serde_json::from_slice(&item.data).unwrap_or(Value::Null);
                let value = item
                    .sk
                    .trim_start_matches(keys::MEMBER_SK_PREFIX)
                    .to_string();
                let kind = v.get("type").and_then(Value::as_str).map(str::to_string);
                out.push(MemberRef { value, kind });
            }
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Direct group memberships of a user (the `groups` attribute, RFC 7643 §4.1.2).
    pub async fn groups_of(&self, member_id: &str) -> Result<Vec<Value>, DirectoryError> {
        let gids = self.groups_of_ids(member_id).await?;
        if gids.is_empty() {
            return Ok(vec![]);
        }
        let keys: Vec<Key> = gids
            .iter()
            .map(|g| resource_key(ResourceKind::Group, g))
            .collect();
        let mut names = HashMap::new();
        for chunk in keys.chunks(100) {
            for item in self.store.get_many(chunk).await.map_err(store_error)? {
                let s = from_item(&item)?;
                let name = s
                    .resource
                    .get("displayName")
                    .cloned()
                    .unwrap_or(Value::Null);
                names.insert(s.id().to_string(), name);
            }
        }
        Ok(gids
            .into_iter()
            .filter_map(|g| {
                let display = names.get(&g)?.clone();
                Some(json!({"value": g, "display": display, "type": "direct"}))
            })
            .collect())
    }

    /// List or search one resource type.
    pub async fn search(
        &self,
        kind: ResourceKind,
        req: &SearchRequest,
    ) -> Result<SearchResult, DirectoryError> {
        let view = self.schemas.view(kind);
        if let Some(f) = &req.filter {
            f.validate(&view)?;
        }
        let start_index = req.start_index.max(1);
        let count = req.count.unwrap_or(self.max_results).min(self.max_results);
        let matches = |s: &Stored| {
            req.filter
                .as_ref()
                .is_none_or(|f| f.matches(&view, &s.resource))
        };

        // Equality on a uniquely keyed attribute (what IdPs send before every create) is a
        // point read, never a scan; membership equalities read the membership index.
        let mut candidates: Option<Vec<Stored>> =
            match req.filter.as_ref().and_then(|f| indexed_lookup(kind, f)) {
                Some(Lookup::Id(id)) => Some(self.load_existing(kind, &[id]).await?),
                Some(Lookup::Unique(attr, value)) => Some(
                    self.lookup_unique(kind, attr, &value)
                        .await?
                        .into_iter()
                        .collect(),
                ),
                Some(Lookup::AnyOf(keys)) => Some(self.load_any_of(kind, &keys).await?),
                Some(Lookup::GroupsWithMember(member)) => {
                    let gids = self.groups_of_ids(&member).await?;
                    Some(self.load_existing(kind, &gids).await?)
                }
                Some(Lookup::MembersOfGroup(gid)) => {
                    let ids: Vec<String> = self
                        .members_of(&gid)
                        .await?
                        .into_iter()
                        .map(|m| m.value)
                        .collect();
                    Some(self.load_existing(kind, &ids).await?)
                }
                None => None,
            };
        // A filter on a computed attribute (`members`, `groups`) is evaluated on resources
        // with that attribute filled in.
        let computed = match kind {
            ResourceKind::User => "groups",
            ResourceKind::Group => "members",
        };
        if req
            .filter
            .as_ref()
            .is_some_and(|f| filter_mentions(f, computed))
        {
            let mut all = match candidates.take() {
                Some(c) => c,
                None => {
                    let mut all = Vec::new();
                    self.scan(kind, |s| all.push(s)).await?;
                    all
                }
            };
            let with_computed = Projection {
                attributes: vec![AttrPath::new(computed)],
                excluded: vec![],
            };
            for s in all.iter_mut() {
                self.expand(kind, s, &with_computed).await?;
            }
            candidates = Some(all);
        }

        let (total, mut page) = if let Some(c) = candidates {
            let mut all: Vec<Stored> = c.into_iter().filter(|s| matches(s)).collect();
            if let Some(sort_by) = &req.sort_by {
                sort_stored(&view, &mut all, sort_by, req.descending);
            }
            let total = all.len();
            (
                total,
                all.into_iter()
                    .skip(start_index - 1)
                    .take(count)
                    .collect::<Vec<_>>(),
            )
        } else if let Some(sort_by) = &req.sort_by {
            let mut all = Vec::new();
            self.scan(kind, |s| {
                if matches(&s) {
                    all.push(s);
                }
            })
            .await?;
            sort_stored(&view, &mut all, sort_by, req.descending);
            let total = all.len();
            (
                total,
                all.into_iter().skip(start_index - 1).take(count).collect(),
            )
        } else {
            // Unsorted: keep only the requested window in memory, count the rest.
            let mut total = 0usize;
            let mut window = Vec::new();
            self.scan(kind, |s| {
                if matches(&s) {
                    total += 1;
                    if total >= start_index && window.len() < count {
                        window.push(s);
                    }
                }
            })
            .await?;
            (total, window)
        };
        for s in page.iter_mut() {
            self.expand(kind, s, &req.projection).await?;
        }
        Ok(SearchResult {
            total_results: total,
            start_index,
            resources: page,
        })
    }

    /// Every resource of a type, in creation order, a page of the store at a time.
    pub async fn scan(
        &self,
        kind: ResourceKind,
        mut f: impl FnMut(Stored),
    ) -> Result<(), DirectoryError> {
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(Index::Gsi1, type_index_pk(kind))
                        .limit(SCAN_PAGE)
                        .after(after),
                )
                .await
                .map_err(store_error)?;
            for item in &page.items {
                f(from_item(item)?);
            }
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// The resource holding this value of a uniquely keyed attribute (`userName`,
    /// `externalId`, group `displayName`): a strongly consistent point read.
    pub async fn find_unique(
        &self,
        kind: ResourceKind,
        attr: UniqueAttr,
        value: &str,
    ) -> Result<Option<Stored>, DirectoryError> {
        self.lookup_unique(kind, attr, value).await
    }

    async fn lookup_unique(
        &self,
        kind: ResourceKind,
        attr: UniqueAttr,
        value: &str,
    ) -> Result<Option<Stored>, DirectoryError> {
        if value.len() > MAX_KEY_VALUE_BYTES {
            return Ok(None);
        }
        let Some(item) = self
            .store
            .get(&attr.key(kind, value))
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let id: Value = serde_json::from_slice(&item.data).unwrap_or(Value::Null);
        let Some(id) = id.get("id").and_then(Value::as_str) else {
            return Ok(None);
        };
        match self.load(kind, id).await {
            Ok(s) => Ok(Some(s)),
            Err(DirectoryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The resources holding any of these ids (`None`) or values of uniquely keyed
    /// attributes: one batched read of the uniqueness keys, one of the resources.
    async fn load_any_of(
        &self,
        kind: ResourceKind,
        keys: &[(Option<UniqueAttr>, String)],
    ) -> Result<Vec<Stored>, DirectoryError> {
        let mut ids: Vec<String> = Vec::new();
        let mut unique_keys: Vec<Key> = Vec::new();
        for (attr, value) in keys {
            match attr {
                None => ids.push(value.clone()),
                Some(a) if value.len() <= MAX_KEY_VALUE_BYTES => {
                    unique_keys.push(a.key(kind, value))
                }
                Some(_) => {}
            }
        }
        if !unique_keys.is_empty() {
            for item in self
                .store
                .get_many(&unique_keys)
                .await
                .map_err(store_error)?
            {
                let id: Value = serde_json::from_slice(&item.data).unwrap_or(Value::Null);
                if let Some(id) = id.get("id").and_then(Value::as_str) {
                    ids.push(id.to_string());
                }
            }
        }
        ids.sort();
        ids.dedup();
        self.load_existing(kind, &ids).await
    }

    /// The resources with these ids that exist (batched point reads).
    pub async fn load_existing(
        &self,
        kind: ResourceKind,
        ids: &[String],
    ) -> Result<Vec<Stored>, DirectoryError> {
        let keys: Vec<Key> = ids
            .iter()
            .filter(|id| !id.is_empty() && id.len() <= MAX_KEY_VALUE_BYTES)
            .map(|id| resource_key(kind, id))
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            for item in self.store.get_many(chunk).await.map_err(store_error)? {
                out.push(from_item(&item)?);
            }
        }
        // Keep creation order (ids are UUIDv7), as a scan would.
        out.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(out)
    }

    // ---- writes --------------------------------------------------------------------

    /// Creates a resource from a client body (POST). Returns the stored resource and the
    /// write-only password, if one was sent (never stored in the directory).
    pub async fn create(&self, kind: ResourceKind, body: &Value) -> Result<Saved, DirectoryError> {
        self.create_in(kind, body, &WriteContext::default()).await
    }

    /// [`Directory::create`] with an origin and extra writes in the same transaction.
    pub async fn create_in(
        &self,
        kind: ResourceKind,
        body: &Value,
        ctx: &WriteContext,
    ) -> Result<Saved, DirectoryError> {
        let view = self.schemas.view(kind);
        let mut resource = normalize(&view, body)?;
        let password = take_password(&mut resource);
        let members = take_members(kind, &mut resource)?;
        check_key_lengths(kind, &resource)?;
        self.check_members_exist(&members).await?;

        let id = ctx
            .new_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let now = now_rfc3339();
        let obj = as_object_mut(&mut resource)?;
        obj.insert("id".into(), json!(id));
        obj.insert(
            "meta".into(),
            json!({"resourceType": kind.as_str(), "created": now, "lastModified": now, "version": etag(1)}),
        );
        // Keep a readable key order: schemas, id, externalId, meta first.
        let resource = reorder(resource);

        let mut writes = vec![Write::put_new(to_item(kind, &id, &resource, 1)?)];
        let mut roles = vec![WriteRole::Resource];
        for attr in UniqueAttr::for_kind(kind) {
            if let Some(v) = attr.value_in(&resource) {
                writes.push(Write::put_new(unique_item(kind, *attr, v, &id)));
                roles.push(WriteRole::Unique(*attr, v.to_string()));
            }
        }
        for w in &ctx.extra {
            writes.push(w.clone());
            roles.push(WriteRole::Other);
        }
        // Room for the outbox item.
        let first_batch = MAX_TRANSACT_ITEMS.saturating_sub(1 + writes.len());
        let (now_members, later) = members.split_at(members.len().min(first_batch));
        let member_writes: Vec<Write> = now_members
            .iter()
            .map(|m| Write::put(member_item(&id, m)))
            .collect();
        let mut events = Vec::new();
        let event = self.event_for(
            kind,
            &id,
            ChangeOp::Create,
            (&resource, 1),
            &member_writes,
            password.as_deref(),
            &ctx.origin(),
        );
        roles.extend(member_writes.iter().map(|_| WriteRole::Other));
        writes.extend(member_writes);
        if let Some(e) = &event {
            writes.push(outbox_write(e).map_err(|e| DirectoryError::Internal(e.to_string()))?);
            roles.push(WriteRole::Other);
        }
        self.commit(kind, writes, &roles, None).await?;
        events.extend(event);
        // Groups created with more members than one transaction holds: the rest follow in
        // further transactions (idempotent puts; DynamoDB caps a transaction at 100 items),
        // each with its own change event.
        for chunk in later.chunks(MAX_TRANSACT_ITEMS - 1) {
            let writes: Vec<Write> = chunk
                .iter()
                .map(|m| Write::put(member_item(&id, m)))
                .collect();
            let event = self.event_for(
                kind,
                &id,
                ChangeOp::Update,
                (&resource, 1),
                &writes,
                None,
                &ctx.origin(),
            );
            self.transact_with_event(writes, event.as_ref()).await?;
            events.extend(event);
        }
        self.publish(&events).await;
        Ok(Saved {
            stored: Stored {
                resource,
                version: 1,
            },
            password,
        })
    }

    /// Creates many resources without members (an import), packing several into each
    /// transaction: one durable commit for up to 25 users instead of one each. Results
    /// are in the order of `bodies`; a body that fails (invalid, or its `userName` /
    /// `externalId` taken, in the hub or earlier in the same call) fails alone. A batch
    /// whose transaction loses a race falls back to one create per body.
    ///
    /// `publish`: hand the change events to the queue now; `false` leaves them in the
    /// outbox (committed with the users), for the sweep `serve` runs when it starts and
    /// the schedule runs after: an import into a store no server is using.
    pub async fn create_batch(
        &self,
        kind: ResourceKind,
        bodies: &[Value],
        origin: Origin,
        publish: bool,
    ) -> Vec<Result<Stored, DirectoryError>> {
        struct Prepared {
            index: usize,
            id: String,
            resource: Value,
            password: Option<String>,
            uniques: Vec<(UniqueAttr, String, Key)>,
        }
        let view = self.schemas.view(kind);
        let mut results: Vec<Option<Result<Stored, DirectoryError>>> =
            (0..bodies.len()).map(|_| None).collect();
        let mut prepared: Vec<Prepared> = Vec::new();
        let mut in_batch: HashSet<Key> = HashSet::new();
        let now = now_rfc3339();
        for (index, body) in bodies.iter().enumerate() {
            let ready = (|| {
                let mut resource = normalize(&view, body)?;
                let password = take_password(&mut resource);
                if !take_members(kind, &mut resource)?.is_empty() {
                    return Err(DirectoryError::MembersInBatch);
                }
                check_key_lengths(kind, &resource)?;
                let id = uuid::Uuid::now_v7().to_string();
                let obj = as_object_mut(&mut resource)?;
                obj.insert("id".into(), json!(id));
                obj.insert(
                    "meta".into(),
                    json!({"resourceType": kind.as_str(), "created": now, "lastModified": now, "version": etag(1)}),
                );
                let resource = reorder(resource);
                let mut uniques = Vec::new();
                for attr in UniqueAttr::for_kind(kind) {
                    if let Some(v) = attr.value_in(&resource) {
                        let key = attr.key(kind, v);
                        if !in_batch.insert(key.clone()) {
                            return Err(DirectoryError::Uniqueness {
                                kind,
                                attribute: *attr,
                                value: v.to_string(),
                                in_batch: true,
                            });
                        }
                        uniques.push((*attr, v.to_string(), key));
                    }
                }
                Ok(Prepared {
                    index,
                    id,
                    resource,
                    password,
                    uniques,
                })
            })();
            match ready {
                Ok(p) => prepared.push(p),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        // Taken in the hub already: one batched read of every uniqueness key.
        let keys: Vec<Key> = prepared
            .iter()
            .flat_map(|p| p.uniques.iter().map(|(_, _, k)| k.clone()))
            .collect();
        let mut taken: HashSet<Key> = HashSet::new();
        for chunk in keys.chunks(100) {
            match self.store.get_many(chunk).await {
                Ok(items) => taken.extend(items.iter().map(Item::key)),
                Err(e) => {
                    let e = store_error(e);
                    return bodies
                        .iter()
                        .enumerate()
                        .map(|(i, _)| match results[i].take() {
                            Some(r) => r,
                            None => Err(e.clone()),
                        })
                        .collect();
                }
            }
        }
        prepared.retain(
            |p| match p.uniques.iter().find(|(_, _, k)| taken.contains(k)) {
                Some((attr, v, _)) => {
                    results[p.index] = Some(Err(DirectoryError::Uniqueness {
                        kind,
                        attribute: *attr,
                        value: v.clone(),
                        in_batch: false,
                    }));
                    false
                }
                None => true,
            },
        );
        // Resource + uniqueness keys + outbox item per body.
        let per = 2 + UniqueAttr::for_kind(kind).len();
        let mut events = Vec::new();
        for chunk in prepared.chunks((MAX_TRANSACT_ITEMS / per).max(1)) {
            let mut writes = Vec::new();
            let mut chunk_events = Vec::new();
            let mut failed: Option<DirectoryError> = None;
            for p in chunk {
                match to_item(kind, &p.id, &p.resource, 1) {
                    Ok(item) => writes.push(Write::put_new(item)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                for (attr, v, _) in &p.uniques {
                    writes.push(Write::put_new(unique_item(kind, *attr, v, &p.id)));
                }
                if let Some(e) = self.event_for(
                    kind,
                    &p.id,
                    ChangeOp::Create,
                    (&p.resource, 1),
                    &[],
                    p.password.as_deref(),
                    &origin,
                ) {
                    match outbox_write(&e) {
                        Ok(w) => writes.push(w),
                        Err(err) => {
                            failed = Some(DirectoryError::Internal(err.to_string()));
                            break;
                        }
                    }
                    chunk_events.push(e);
                }
            }
            // `None`: committed; `Some(None)`: a key was taken meanwhile.
            let outcome: Option<Option<DirectoryError>> = match failed {
                Some(e) => Some(Some(e)),
                None => match self.store.transact(writes).await {
                    Ok(()) => None,
                    Err(StoreError::ConditionFailed { .. }) => Some(None),
                    Err(other) => Some(Some(store_error(other))),
                },
            };
            match outcome {
                None => {
                    events.extend(chunk_events);
                    for p in chunk {
                        results[p.index] = Some(Ok(Stored {
                            resource: p.resource.clone(),
                            version: 1,
                        }));
                    }
                }
                Some(None) => {
                    // Someone took a key meanwhile: one by one, each with its own answer.
                    let ctx = WriteContext {
                        origin: Some(origin.clone()),
                        ..Default::default()
                    };
                    for p in chunk {
                        results[p.index] = Some(
                            self.create_in(kind, &bodies[p.index], &ctx)
                                .await
                                .map(|saved| saved.stored),
                        );
                    }
                }
                Some(Some(e)) => {
                    for p in chunk {
                        results[p.index] = Some(Err(e.clone()));
                    }
                }
            }
        }
        if publish {
            self.publish(&events).await;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(DirectoryError::Internal("not attempted".into()))))
            .collect()
    }

    /// Replaces a resource (PUT, RFC 7644 §3.5.1).
    pub async fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Saved, DirectoryError> {
        self.replace_in(kind, id, body, if_match, &WriteContext::default())
            .await
    }

    /// [`Directory::replace`] with an origin and extra writes in the same transaction. A
    /// replacement that changes nothing writes nothing (not the extra writes either) and
    /// returns the stored version unchanged.
    pub async fn replace_in(
        &self,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        ctx: &WriteContext,
    ) -> Result<Saved, DirectoryError> {
        let view = self.schemas.view(kind);
        let mut incoming = normalize(&view, body)?;
        let password = take_password(&mut incoming);
        let members = take_members(kind, &mut incoming)?;
        check_key_lengths(kind, &incoming)?;
        self.check_members_exist(&members).await?;
        for attempt in 0.. {
            let current = self.load(kind, id).await?;
            check_if_match(if_match, current.version)?;
            check_immutable(&view, &current.resource, &incoming)?;
            let member_changes = match kind {
                ResourceKind::Group => vec![MemberChange::Replace(members.clone())],
                ResourceKind::User => vec![],
            };
            match self
                .write_update(
                    kind,
                    &current,
                    incoming.clone(),
                    &member_changes,
                    if_match.is_some(),
                    password.as_deref(),
                    ctx,
                )
                .await
            {
                Err(DirectoryError::Conflict) if attempt + 1 < WRITE_ATTEMPTS => {
                    continue;
                }
                r => return r.map(|stored| Saved { stored, password }),
            }
        }
        unreachable!("the loop returns")
    }

    /// Applies a PatchOp (RFC 7644 §3.5.2).
    pub async fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Saved, DirectoryError> {
        let view = self.schemas.view(kind);
        for attempt in 0.. {
            let current = self.load(kind, id).await?;
            check_if_match(if_match, current.version)?;
            let plan = apply_patch(&view, &current.resource, body)?;
            let mut resource = plan.resource;
            let password = take_password(&mut resource);
            check_key_lengths(kind, &resource)?;
            for change in &plan.member_changes {
                if let MemberChange::Add(m) | MemberChange::Replace(m) = change {
                    self.check_members_exist(m).await?;
                }
            }
            match self
                .write_update(
                    kind,
                    &current,
                    resource,
                    &plan.member_changes,
                    if_match.is_some(),
                    password.as_deref(),
                    &WriteContext::default(),
                )
                .await
            {
                Err(DirectoryError::Conflict) if attempt + 1 < WRITE_ATTEMPTS => {
                    continue;
                }
                r => return r.map(|stored| Saved { stored, password }),
            }
        }
        unreachable!("the loop returns")
    }

    /// Writes a new state of an existing resource: bumps the version (conditional on the
    /// one read), moves uniqueness keys that changed, applies membership changes.
    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        kind: ResourceKind,
        current: &Stored,
        mut resource: Value,
        member_changes: &[MemberChange],
        precondition: bool,
        password: Option<&str>,
        ctx: &WriteContext,
    ) -> Result<Stored, DirectoryError> {
        let id = current.id().to_string();
        let MembershipDiff { adds, removes } =
            self.resolve_member_changes(&id, member_changes).await?;
        // Carry over what the client cannot set.
        let obj = as_object_mut(&mut resource)?;
        obj.insert("id".into(), json!(id));
        obj.remove("groups");
        obj.remove("members");
        let mut meta = current
            .resource
            .get("meta")
            .cloned()
            .unwrap_or_else(|| json!({}));

        let unchanged = strip_meta(&resource) == strip_meta(&current.resource)
            && adds.is_empty()
            && removes.is_empty()
            // A new password is a change even though the directory does not keep it.
            && password.is_none();
        if unchanged {
            // A PATCH or PUT that changes nothing writes nothing (IdPs resend a lot).
            return Ok(current.clone());
        }
        let version = current.version + 1;
        meta["lastModified"] = json!(now_rfc3339());
        meta["version"] = json!(etag(version));
        as_object_mut(&mut resource)?.insert("meta".into(), meta);
        let resource = reorder(resource);

        let mut writes = vec![Write::Put {
            item: to_item(kind, &id, &resource, version)?,
            condition: Condition::VersionIs(current.version),
        }];
        let mut roles = vec![WriteRole::Resource];
        for attr in UniqueAttr::for_kind(kind) {
            let old = attr.value_in(&current.resource).map(|v| attr.normalise(v));
            let new = attr.value_in(&resource);
            if old.as_deref() == new.map(|v| attr.normalise(v)).as_deref() {
                continue;
            }
            if let Some(old) = attr.value_in(&current.resource) {
                writes.push(Write::delete(attr.key(kind, old)));
                roles.push(WriteRole::Other);
            }
            if let Some(new) = new {
                writes.push(Write::put_new(unique_item(kind, *attr, new, &id)));
                roles.push(WriteRole::Unique(*attr, new.to_string()));
            }
        }
        for w in &ctx.extra {
            writes.push(w.clone());
            roles.push(WriteRole::Other);
        }
        let room = MAX_TRANSACT_ITEMS.saturating_sub(1 + writes.len());
        let mut member_writes: Vec<Write> = adds
            .iter()
            .map(|m| Write::put(member_item(&id, m)))
            .chain(removes.iter().map(|m| Write::delete(member_key(&id, m))))
            .collect();
        let later = if member_writes.len() > room {
            member_writes.split_off(room)
        } else {
            vec![]
        };
        let mut events = Vec::new();
        let event = self.event_for(
            kind,
            &id,
            ChangeOp::Update,
            (&resource, version),
            &member_writes,
            password,
            &ctx.origin(),
        );
        roles.extend(member_writes.iter().map(|_| WriteRole::Other));
        writes.extend(member_writes);
        if let Some(e) = &event {
            writes.push(outbox_write(e).map_err(|e| DirectoryError::Internal(e.to_string()))?);
            roles.push(WriteRole::Other);
        }
        let failed_precondition = if precondition {
            Some(DirectoryError::VersionConflict)
        } else {
            None
        };
        self.commit(kind, writes, &roles, failed_precondition)
            .await?;
        events.extend(event);
        for chunk in later.chunks(MAX_TRANSACT_ITEMS - 1) {
            let event = self.event_for(
                kind,
                &id,
                ChangeOp::Update,
                (&resource, version),
                chunk,
                None,
                &ctx.origin(),
            );
            self.transact_with_event(chunk.to_vec(), event.as_ref())
                .await?;
            events.extend(event);
        }
        self.publish(&events).await;
        Ok(Stored { resource, version })
    }

    /// Turns membership changes into the member ids to add and to remove, reading the
    /// current members only when a change needs them (replace, remove all, remove by a
    /// filter other than `value eq`).
    async fn resolve_member_changes(
        &self,
        group_id: &str,
        changes: &[MemberChange],
    ) -> Result<MembershipDiff, DirectoryError> {
        if changes.is_empty() {
            return Ok(MembershipDiff::default());
        }
        let needs_listing = changes.iter().any(|c| {
            matches!(
                c,
                MemberChange::Replace(_) | MemberChange::RemoveAll | MemberChange::RemoveWhere(_)
            )
        });
        // Simulate the changes in order on a view of the membership that only holds what
        // the changes touch (or everything, when one needs the full list).
        let mut present: Option<HashMap<String, MemberRef>> = None;
        if needs_listing {
            present = Some(
                self.members_of(group_id)
                    .await?
                    .into_iter()
                    .map(|m| (m.value.clone(), m))
                    .collect(),
            );
        }
        let before: BTreeSet<String> = present
            .as_ref()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut added: HashMap<String, MemberRef> = HashMap::new();
        let mut removed: BTreeSet<String> = BTreeSet::new();
        let group_attr = self
            .schemas
            .view(ResourceKind::Group)
            .core
            .attribute("members")
            .cloned();
        for change in changes {
            match change {
                MemberChange::Add(ms) => {
                    for m in ms {
                        removed.remove(&m.value);
                        added.insert(m.value.clone(), m.clone());
                        if let Some(p) = present.as_mut() {
                            p.insert(m.value.clone(), m.clone());
                        }
                    }
                }
                MemberChange::Remove(ids) => {
                    for id in ids {
                        added.remove(id);
                        removed.insert(id.clone());
                        if let Some(p) = present.as_mut() {
                            p.remove(id);
                        }
                    }
                }
                MemberChange::RemoveAll
                | MemberChange::Replace(_)
                | MemberChange::RemoveWhere(_) => {
                    let p = present.get_or_insert_with(HashMap::new);
                    let drop: Vec<String> = match change {
                        MemberChange::RemoveWhere(f) => p
                            .values()
                            .filter(|m| {
                                let el = json!({"value": m.value, "type": m.kind.as_deref().unwrap_or("User")});
                                group_attr.as_ref().is_some_and(|a| f.matches_element(a, &el))
                            })
                            .map(|m| m.value.clone())
                            .collect(),
                        _ => p.keys().cloned().collect(),
                    };
                    for id in drop {
                        p.remove(&id);
                        added.remove(&id);
                        removed.insert(id);
                    }
                    if let MemberChange::Replace(ms) = change {
                        for m in ms {
                            removed.remove(&m.value);
                            added.insert(m.value.clone(), m.clone());
                            p.insert(m.value.clone(), m.clone());
                        }
                    }
                }
            }
        }
        // Only real differences are written: without a full listing, look up just the
        // memberships these changes touch (O(changes), not O(group size)).
        let before = if needs_listing {
            before
        } else {
            let keys: Vec<Key> = added
                .keys()
                .chain(removed.iter())
                .map(|m| member_key(group_id, m))
                .collect();
            let mut present = BTreeSet::new();
            for chunk in keys.chunks(100) {
                for item in self.store.get_many(chunk).await.map_err(store_error)? {
                    present.insert(
                        item.sk
                            .trim_start_matches(keys::MEMBER_SK_PREFIX)
                            .to_string(),
                    );
                }
            }
            present
        };
        let adds: Vec<MemberRef> = added
            .into_values()
            .filter(|m| !before.contains(&m.value))
            .collect();
        let removes: Vec<String> = removed
            .into_iter()
            .filter(|id| before.contains(id))
            .collect();
        Ok(MembershipDiff { adds, removes })
    }

    /// Deletes a resource and everything that points at it (uniqueness keys, its
    /// memberships, and a group's member items).
    pub async fn delete(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<Stored, DirectoryError> {
        self.delete_in(kind, id, if_match, &WriteContext::default())
            .await
    }

    /// [`Directory::delete`] with an origin and extra writes in the same transaction as
    /// the resource's removal.
    pub async fn delete_in(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
        ctx: &WriteContext,
    ) -> Result<Stored, DirectoryError> {
        let current = self.load(kind, id).await?;
        check_if_match(if_match, current.version)?;
        // Memberships first: if we stop half way the resource still exists and a retry
        // finishes the job; the reverse would leave memberships of a ghost.
        let membership_keys: Vec<Key> = match kind {
            ResourceKind::User => self
                .groups_of_ids(id)
                .await?
                .into_iter()
                .map(|g| member_key(&g, id))
                .collect(),
            ResourceKind::Group => {
                let mut ks: Vec<Key> = self
                    .members_of(id)
                    .await?
                    .into_iter()
                    .map(|m| member_key(id, &m.value))
                    .collect();
                // A group can be a member of other groups too.
                ks.extend(
                    self.groups_of_ids(id)
                        .await?
                        .into_iter()
                        .map(|g| member_key(&g, id)),
                );
                ks
            }
        };
        for chunk in membership_keys.chunks(MAX_TRANSACT_ITEMS) {
            self.store
                .transact(chunk.iter().cloned().map(Write::delete).collect())
                .await
                .map_err(store_error)?;
        }
        let mut writes = vec![Write::Delete {
            key: resource_key(kind, id),
            condition: Condition::VersionIs(current.version),
        }];
        for attr in UniqueAttr::for_kind(kind) {
            if let Some(v) = attr.value_in(&current.resource) {
                writes.push(Write::delete(attr.key(kind, v)));
            }
        }
        // Targets need what identified the resource there: the last state rides along.
        let event = self.event_for(
            kind,
            id,
            ChangeOp::Delete,
            (&current.resource, 0),
            &[],
            None,
            &ctx.origin(),
        );
        writes.extend(ctx.extra.iter().cloned());
        if let Some(e) = &event {
            writes.push(outbox_write(e).map_err(|e| DirectoryError::Internal(e.to_string()))?);
        }
        match self.store.transact(writes).await {
            Ok(()) => {
                self.publish(&event.into_iter().collect::<Vec<_>>()).await;
                Ok(current)
            }
            Err(StoreError::ConditionFailed { .. }) if if_match.is_some() => {
                Err(DirectoryError::VersionConflict)
            }
            Err(StoreError::ConditionFailed { .. }) => Err(DirectoryError::Conflict),
            Err(e) => Err(store_error(e)),
        }
    }

    /// The ids of the groups `member_id` is a direct member of.
    pub async fn groups_of_ids(&self, member_id: &str) -> Result<Vec<String>, DirectoryError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(Index::Gsi1, member_of_pk(member_id))
                        .limit(1000)
                        .after(after),
                )
                .await
                .map_err(store_error)?;
            out.extend(
                page.items
                    .iter()
                    .filter_map(|i| i.gsi1.as_ref().map(|(_, g)| g.clone())),
            );
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(out),
            }
        }
    }

    async fn check_members_exist(&self, members: &[MemberRef]) -> Result<(), DirectoryError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut wanted: HashMap<Key, &str> = HashMap::new();
        for m in members {
            if m.value.is_empty() || m.value.len() > MAX_KEY_VALUE_BYTES {
                return Err(DirectoryError::InvalidMemberId {
                    value: m.value.clone(),
                });
            }
            let kind = match m.kind.as_deref() {
                None => None,
                Some(k) => Some(ResourceKind::parse(k).ok_or_else(|| {
                    DirectoryError::InvalidMemberType {
                        member_type: k.to_string(),
                    }
                })?),
            };
            // Untyped members may be users or groups: look for both.
            for k in kind
                .map(|k| vec![k])
                .unwrap_or_else(|| vec![ResourceKind::User, ResourceKind::Group])
            {
                wanted.insert(resource_key(k, &m.value), m.value.as_str());
            }
        }
        let keys: Vec<Key> = wanted.keys().cloned().collect();
        let mut found: BTreeSet<String> = BTreeSet::new();
        for chunk in keys.chunks(100) {
            for item in self.store.get_many(chunk).await.map_err(store_error)? {
                if let Some(v) = wanted.get(&item.key()) {
                    found.insert(v.to_string());
                }
            }
        }
        if let Some(missing) = members.iter().find(|m| !found.contains(&m.value)) {
            return Err(DirectoryError::MissingMember {
                value: missing.value.clone(),
            });
        }
        Ok(())
    }

    /// Runs a transaction and turns condition failures into the right SCIM error.
    async fn commit(
        &self,
        kind: ResourceKind,
        writes: Vec<Write>,
        roles: &[WriteRole],
        on_version_mismatch: Option<DirectoryError>,
    ) -> Result<(), DirectoryError> {
        match self.store.transact(writes).await {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed { index }) => match roles.get(index) {
                Some(WriteRole::Unique(attr, value)) => Err(DirectoryError::Uniqueness {
                    kind,
                    attribute: *attr,
                    value: value.clone(),
                    in_batch: false,
                }),
                Some(WriteRole::Resource) => {
                    Err(on_version_mismatch.unwrap_or(DirectoryError::Conflict))
                }
                _ => Err(DirectoryError::Conflict),
            },
            Err(e) => Err(store_error(e)),
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
    for m in members.as_array().into_iter().flatten() {
        let value = m
            .get("value")
            .and_then(Value::as_str)
            .ok_or(DirectoryError::MemberWithoutValue)?;
        if out.iter().any(|o| o.value == value) {
            continue;
        }
        out.push(MemberRef {
            value: value.to_string(),
            kind: m.get("type").and_then(Value::as_str).map(str::to_string),
        });
    }
    Ok(out)
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

fn sort_stored(
    view: &provisync_scim::ResourceSchema<'_>,
    all: &mut Vec<Stored>,
    sort_by: &AttrPath,
    descending: bool,
) {
    let mut resources: Vec<(Value, u64)> = all.drain(..).map(|s| (s.resource, s.version)).collect();
    let mut values: Vec<Value> = resources.iter().map(|(r, _)| r.clone()).collect();
    sort::sort_resources(view, &mut values, sort_by, descending);
    // Re-attach versions by id (sort only moves resources).
    let versions: HashMap<String, u64> = resources
        .drain(..)
        .map(|(r, v)| {
            (
                r.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                v,
            )
        })
        .collect();
    all.extend(values.into_iter().map(|r| {
        let version = versions
            .get(r.get("id").and_then(Value::as_str).unwrap_or_default())
            .copied()
            .unwrap_or(0);
        Stored {
            resource: r,
            version,
        }
    }));
}

enum Lookup {
    Id(String),
    Unique(UniqueAttr, String),
    /// Groups having this member (`members[value eq "id"]`, `members.value eq "id"`).
    GroupsWithMember(String),
    /// Members of this group (`groups[value eq "id"]`, `groups.value eq "id"`).
    MembersOfGroup(String),
    /// `id` (`None`) or uniquely keyed equalities joined by `or` (`userName eq "a" or
    /// userName eq "b" or externalId eq "c"`: what a batched import looks users up with).
    AnyOf(Vec<(Option<UniqueAttr>, String)>),
}

/// The equality of `f` on `id` (`None`) or on a uniquely keyed attribute, if it is one.
fn keyed_equality(kind: ResourceKind, f: &Filter) -> Option<(Option<UniqueAttr>, String)> {
    let Filter::Compare {
        path,
        op: CompareOp::Eq,
        value: CompValue::Str(v),
    } = f
    else {
        return None;
    };
    let urn_ok = path
        .urn
        .as_deref()
        .is_none_or(|u| u.eq_ignore_ascii_case(kind.core_schema()));
    if path.sub_attr.is_some() || !urn_ok {
        return None;
    }
    if path.attr.eq_ignore_ascii_case("id") {
        return Some((None, v.clone()));
    }
    UniqueAttr::for_kind(kind)
        .iter()
        .find(|a| a.attr_name().eq_ignore_ascii_case(&path.attr))
        .map(|a| (Some(*a), v.clone()))
}

/// Every branch of an `or` chain, if each is a keyed equality. The chain is walked with a
/// stack, not recursion (its length is bounded by the filter's length only).
fn keyed_disjunction(kind: ResourceKind, f: &Filter) -> Option<Vec<(Option<UniqueAttr>, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![f];
    while let Some(f) = stack.pop() {
        match f {
            Filter::Or(a, b) => {
                stack.push(b);
                stack.push(a);
            }
            leaf => out.push(keyed_equality(kind, leaf)?),
        }
    }
    Some(out)
}

/// Does the filter name this top-level attribute anywhere?
fn filter_mentions(f: &Filter, attr: &str) -> bool {
    match f {
        Filter::Compare { path, .. } | Filter::Present(path) | Filter::ValuePath { path, .. } => {
            path.urn.is_none() && path.attr.eq_ignore_ascii_case(attr)
        }
        Filter::And(a, b) | Filter::Or(a, b) => {
            filter_mentions(a, attr) || filter_mentions(b, attr)
        }
        Filter::Not(a) => filter_mentions(a, attr),
    }
}

/// Finds an equality on a keyed attribute that every match must satisfy: the filter
/// itself or one side of a top-level `and`.
fn indexed_lookup(kind: ResourceKind, f: &Filter) -> Option<Lookup> {
    let membership = |attr: &str, id: String| -> Option<Lookup> {
        match kind {
            ResourceKind::Group if attr.eq_ignore_ascii_case("members") => {
                Some(Lookup::GroupsWithMember(id))
            }
            ResourceKind::User if attr.eq_ignore_ascii_case("groups") => {
                Some(Lookup::MembersOfGroup(id))
            }
            _ => None,
        }
    };
    match f {
        Filter::ValuePath { path, filter } if path.urn.is_none() => match filter.as_ref() {
            Filter::Compare {
                path: inner,
                op: CompareOp::Eq,
                value: CompValue::Str(v),
            } if inner.attr.eq_ignore_ascii_case("value") && inner.sub_attr.is_none() => {
                membership(&path.attr, v.clone())
            }
            _ => None,
        },
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(v),
        } if path.urn.is_none()
            && path
                .sub_attr
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("value")) =>
        {
            membership(&path.attr, v.clone())
        }
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(v),
        } if path.sub_attr.is_none() => {
            let urn_ok = path
                .urn
                .as_deref()
                .is_none_or(|u| u.eq_ignore_ascii_case(kind.core_schema()));
            if !urn_ok {
                return None;
            }
            if path.attr.eq_ignore_ascii_case("id") {
                return Some(Lookup::Id(v.clone()));
            }
            UniqueAttr::for_kind(kind)
                .iter()
                .find(|a| a.attr_name().eq_ignore_ascii_case(&path.attr))
                .map(|a| Lookup::Unique(*a, v.clone()))
        }
        Filter::And(a, b) => indexed_lookup(kind, a).or_else(|| indexed_lookup(kind, b)),
        Filter::Or(..) => keyed_disjunction(kind, f).map(Lookup::AnyOf),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use provisync_scim::filter::parse;

    #[test]
    fn or_of_keyed_equalities_is_a_lookup() {
        let f = parse(r#"userName eq "a" or externalId eq "x" or id eq "i""#).unwrap();
        match indexed_lookup(ResourceKind::User, &f) {
            Some(Lookup::AnyOf(keys)) => assert_eq!(
                keys,
                vec![
                    (Some(UniqueAttr::UserName), "a".to_string()),
                    (Some(UniqueAttr::ExternalId), "x".to_string()),
                    (None, "i".to_string()),
                ]
            ),
            _ => panic!("not a keyed lookup"),
        }
        // One branch that is not a keyed equality: a scan.
        let f = parse(r#"userName eq "a" or title eq "x""#).unwrap();
        assert!(indexed_lookup(ResourceKind::User, &f).is_none());
        let f = parse(r#"userName eq "a" or userName sw "b""#).unwrap();
        assert!(indexed_lookup(ResourceKind::User, &f).is_none());
    }

    #[tokio::test]
    async fn search_by_or_of_user_names_finds_each_once() {
        let dir = Directory::new(
            Arc::new(EmbeddedStore::in_memory()),
            SchemaRegistry::builtin(),
        );
        for (name, ext) in [("ann", "e-1"), ("ben", "e-2"), ("cat", "e-3")] {
            dir.create(
                ResourceKind::User,
                &json!({"schemas": [provisync_scim::schema::USER_SCHEMA], "userName": name, "externalId": ext}),
            )
            .await
            .unwrap();
        }
        // Case-insensitive userName, case-exact externalId, a user named twice, one
        // that does not exist.
        let filter = parse(
            r#"userName eq "ANN" or externalId eq "e-1" or externalId eq "E-2" or userName eq "cat" or userName eq "nobody""#,
        )
        .unwrap();
        let r = dir
            .search(
                ResourceKind::User,
                &SearchRequest {
                    filter: Some(filter),
                    start_index: 1,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let mut names: Vec<&str> = r
            .resources
            .iter()
            .filter_map(|s| s.resource["userName"].as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["ann", "cat"]);
        assert_eq!(r.total_results, 2);
    }
}
