//! Reconcile: find and repair drift between the hub and one target, touching only what
//! differs.
//!
//! A run lists what the target holds ([`Connector::list_users`], a page at a time),
//! matches each account to a hub user — through the link (target id), then the
//! `externalId` the hub gave it (the hub id), then the target's matching attribute — and
//! compares the hub user *as the delivery engine would send it* (same mapping, same
//! scoping filter) with the target's copy, on the mapped attributes only. Then:
//!
//! - in the hub, in scope, not on the target -> a `create` change event;
//! - on the target and different -> an `update` change event (the link is first set to
//!   what the target really holds, so the engine's PATCH carries exactly the difference);
//! - on the target, out of scope -> an event the engine treats with the target's
//!   `out_of_scope` policy;
//! - on the target, unknown to the hub (an orphan) -> the target's [`OrphanPolicy`]:
//!   reported, deactivated or deleted (done here: there is no hub resource to send);
//! - everything else is unchanged: a target in sync receives no write at all.
//!
//! Events carry `Origin::Reconcile` and `only_targets = [target]` and go through the
//! normal delivery engine (retries, audit, links).
//!
//! A run is bounded in time: between pages it checks its deadline and, when it has
//! passed, stores a checkpoint (`RECON#{target}` / `STATE`: listing cursor, counts, and
//! one `SEEN#…` record per page with the hub ids seen) so the next cycle continues there.
//! A lease (`LEASE#{target}` / `LEASE`, written only if absent or expired) keeps two
//! cycles from reconciling the same target at once.
//!
//! Groups follow the users, in the same run and resumable the same way (phases
//! `group_listing` and `group_missing`, `SEEN#G#…` records). A target group
//! ([`Connector::list_groups`], with its members) is matched through the group link, then
//! its `externalId` (the hub id), then its `displayName` (case-insensitively), and
//! compared with the hub group as delivery would send it (mapping, group mapping,
//! [`Connector::kept`]) on its attributes, and on its members: expected are the hub
//! group's members that are on the target (translated through this target's user and
//! group links). Missing ones and linked extra ones go out as an `update` event with
//! `members_added` / `members_removed`; members the hub does not know at all (a deleted
//! account's id left behind, a stranger) are removed here, audited. Hub groups missing on
//! the target get a `create` event with every member in `members_added`, as a SCIM create
//! of a group with members does. Orphan groups follow the orphan policy (`deactivate`
//! cannot apply to a group: it is reported). Users whose create this run queued are
//! left out of the member comparison: the engine adds a new account to its linked groups
//! itself (see [`super::deliver`]).
//!
//! A target that cannot list its users (a webhook site) ends as
//! [`RunState::Unsupported`], audited as skipped; one that lists users but not groups
//! reconciles the users and reports groups as not supported.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::audit::{Audit, AuditEntry, AuditOp, AuditStatus};
use super::deliver::in_scope;
use super::link::{Link, Links};
use super::mapping::{content_hash, map_resource};
use crate::connector::ConnectorFactory;
use crate::connector::{Connector, ConnectorError, listing_unsupported};
use crate::directory::{Directory, Stored};
use crate::event::{ChangeEvent, ChangeOp, Origin};
use crate::queue::{OutMessage, Queue};
use crate::store::{Condition, Index, Item, Key, Query, Store, StoreError, Write, now_epoch};
use crate::target::{OrphanPolicy, OutOfScope, TargetConfig, TargetKind, Targets};
use provisync_scim::path::read_path;
use provisync_scim::schema::AttrPath;
use provisync_scim::{ResourceKind, SchemaRegistry};

/// Counts of one reconcile run (or of the part done in this cycle plus the parts before
/// it, for a resumed run).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileCounts {
    /// Accounts read from the target.
    pub checked: u64,
    /// Hub users missing on the target: create events queued.
    pub created: u64,
    /// Accounts that differ: update events queued.
    pub updated: u64,
    /// Out-of-scope accounts or orphans deactivated (or queued for it).
    pub deactivated: u64,
    /// Out-of-scope accounts or orphans deleted (or queued for it).
    pub deleted: u64,
    /// Accounts the hub does not know (whatever the policy did with them).
    pub orphaned: u64,
    /// Accounts in sync.
    pub unchanged: u64,
    /// Accounts that could not be handled (see the logs and audit).
    pub failed: u64,
    /// The groups' part of the run (the fields above count user accounts).
    #[serde(default)]
    pub groups: GroupCounts,
}

/// Counts of the group phases of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupCounts {
    /// Groups read from the target.
    pub checked: u64,
    /// Hub groups missing on the target: create events queued.
    pub created: u64,
    /// Groups whose attributes or members differ: update events queued (or members the
    /// hub does not know removed).
    pub updated: u64,
    /// Orphan groups deleted (policy `delete`).
    pub deleted: u64,
    /// Groups the hub does not know.
    pub orphaned: u64,
    /// Groups in sync.
    pub unchanged: u64,
    /// Groups that could not be handled.
    pub failed: u64,
    /// Members queued for adding (creates included).
    pub members_added: u64,
    /// Members queued for removal, and members unknown to the hub removed at once.
    pub members_removed: u64,
    /// The target cannot list its groups: they were not reconciled.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unsupported: bool,
}

impl GroupCounts {
    fn add(&mut self, o: &GroupCounts) {
        self.checked += o.checked;
        self.created += o.created;
        self.updated += o.updated;
        self.deleted += o.deleted;
        self.orphaned += o.orphaned;
        self.unchanged += o.unchanged;
        self.failed += o.failed;
        self.members_added += o.members_added;
        self.members_removed += o.members_removed;
        self.unsupported |= o.unsupported;
    }

    /// `checked=… created=… …` of the groups.
    pub fn summary(&self) -> String {
        if self.unsupported {
            return "not supported (this kind of target cannot list groups)".into();
        }
        format!(
            "checked={} created={} updated={} deleted={} orphaned={} unchanged={} failed={} members_added={} members_removed={}",
            self.checked,
            self.created,
            self.updated,
            self.deleted,
            self.orphaned,
            self.unchanged,
            self.failed,
            self.members_added,
            self.members_removed
        )
    }
}

impl ReconcileCounts {
    fn add(&mut self, o: &ReconcileCounts) {
        self.checked += o.checked;
        self.created += o.created;
        self.updated += o.updated;
        self.deactivated += o.deactivated;
        self.deleted += o.deleted;
        self.orphaned += o.orphaned;
        self.unchanged += o.unchanged;
        self.failed += o.failed;
        self.groups.add(&o.groups);
    }

    /// `checked=… created=… … groups: checked=… …`: the audit detail and the log line
    /// (users first, as before groups were reconciled).
    pub fn summary(&self) -> String {
        format!(
            "checked={} created={} updated={} deactivated={} deleted={} orphaned={} unchanged={} failed={} groups: {}",
            self.checked,
            self.created,
            self.updated,
            self.deactivated,
            self.deleted,
            self.orphaned,
            self.unchanged,
            self.failed,
            self.groups.summary()
        )
    }
}

/// How a run of one target ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Done: the next run starts over.
    Complete,
    /// Out of time: a checkpoint holds the position; the next cycle continues.
    Suspended,
    /// Another cycle holds the target's lease: nothing done.
    Busy,
    /// The run failed (listing error, store error); the checkpoint is kept.
    Failed,
    /// This kind of target cannot list its accounts: nothing to reconcile (audited as
    /// skipped, not as a failure).
    Unsupported,
}

/// What a reconcile of one target did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub target: String,
    pub state: RunState,
    /// Counts of the whole run so far (a resumed run includes the earlier cycles).
    pub counts: ReconcileCounts,
    /// Whether this cycle continued a run started earlier.
    pub resumed: bool,
    /// Pages of the target's user listing read in this cycle.
    pub pages: u32,
    /// Why the run failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("directory: {0}")]
    Directory(String),
    #[error("target: {0}")]
    Connector(#[from] ConnectorError),
    #[error("queue: {0}")]
    Queue(String),
    #[error("{0}")]
    Setup(String),
}

// ---- the diff (pure) ------------------------------------------------------------------

/// Does the target's copy hold every value of the hub's mapped user? Objects: every key
/// of `hub` (case-insensitively), recursively; arrays: as many elements, each covered by
/// one of the target's (order does not matter); scalars: equal. A `null` or empty array
/// in the hub is covered by an absent value. Extra attributes and sub-attributes the
/// target adds (server defaults, `meta`, `formatted`) do not count as a difference.
pub fn covers(target: Option<&Value>, hub: &Value) -> bool {
    match (hub, target) {
        (Value::Null, None | Some(Value::Null)) => true,
        (Value::Array(h), None | Some(Value::Null)) => h.is_empty(),
        (Value::Object(h), None | Some(Value::Null)) => h.values().all(|v| covers(None, v)),
        (_, None) => false,
        (Value::Object(h), Some(Value::Object(t))) => {
            h.iter().all(|(k, hv)| covers(get_ci(t, k), hv))
        }
        (Value::Array(h), Some(Value::Array(t))) => {
            if h.len() != t.len() {
                return false;
            }
            let mut used = vec![false; t.len()];
            h.iter().all(|hv| {
                for (i, tv) in t.iter().enumerate() {
                    if !used[i] && covers(Some(tv), hv) {
                        used[i] = true;
                        return true;
                    }
                }
                false
            })
        }
        (h, Some(t)) => h == t,
    }
}

fn get_ci<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    m.get(k).or_else(|| {
        m.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    })
}

fn is_absent(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_absent),
        _ => false,
    }
}

/// Does the target's copy differ from the hub's mapped user? Compared on the mapped
/// attributes (`schemas` aside), plus the attributes delivered before that the hub has
/// since dropped: those must be gone from the target too.
pub fn differs(mapped: &Value, target: &Value, delivered: Option<&Value>) -> bool {
    let (Some(m), Some(t)) = (mapped.as_object(), target.as_object()) else {
        return true;
    };
    for (k, v) in m {
        if k == "schemas" {
            continue;
        }
        if !covers(get_ci(t, k), v) {
            return true;
        }
    }
    if let Some(d) = delivered.and_then(Value::as_object) {
        for k in d.keys() {
            if k == "schemas" || get_ci(m, k).is_some() {
                continue;
            }
            if get_ci(t, k).is_some_and(|v| !is_absent(v)) {
                return true;
            }
        }
    }
    false
}

/// The target's copy cut to the shape of `shape` (the mapped user and what was delivered
/// before): what the engine passes as `previous`, so its PATCH names exactly the
/// attributes that differ and never removes what the target adds on its own.
pub fn project(target: &Value, shape: &[&Value]) -> Value {
    fn cut(t: &Value, shapes: &[&Map<String, Value>]) -> Value {
        let Some(tm) = t.as_object() else {
            return t.clone();
        };
        let mut out = Map::new();
        for (k, v) in tm {
            let subs: Vec<&Value> = shapes.iter().filter_map(|s| get_ci(s, k)).collect();
            if subs.is_empty() {
                continue;
            }
            let sub_objs: Vec<&Map<String, Value>> =
                subs.iter().filter_map(|s| s.as_object()).collect();
            let value = if v.is_object() && sub_objs.len() == subs.len() {
                cut(v, &sub_objs)
            } else {
                v.clone()
            };
            out.insert(k.clone(), value);
        }
        Value::Object(out)
    }
    let shapes: Vec<&Map<String, Value>> = shape.iter().filter_map(|s| s.as_object()).collect();
    cut(target, &shapes)
}

/// How a target account relates to the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matched {
    /// Linked: the hub delivered it.
    Linked(String),
    /// Not linked, but its `externalId` or matching attribute names this hub user.
    Found(String),
    /// Unknown to the hub.
    Orphan,
}

#[derive(Clone, Debug)]
struct HubUser {
    in_scope: bool,
    linked_to: Option<String>,
}

/// What a run keeps in memory about the hub side: every user (scope, matching value) and
/// every link of the target. About 100 bytes per user.
#[derive(Debug)]
pub struct HubIndex {
    matching: AttrPath,
    users: HashMap<String, HubUser>,
    by_key: HashMap<String, String>,
    by_target_id: HashMap<String, String>,
}

impl HubIndex {
    /// `matching`: the target's matching attribute (as in the target definition).
    pub fn new(matching: &str) -> Self {
        HubIndex {
            matching: AttrPath::parse(matching).unwrap_or_else(|| AttrPath::new("userName")),
            users: HashMap::new(),
            by_key: HashMap::new(),
            by_target_id: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// A hub user: its id, whether it is in the target's scope, and its mapped form
    /// (for the matching value).
    pub fn add_user(&mut self, hub_id: &str, in_scope: bool, mapped: &Value) {
        if let Some(v) = read_path(mapped, &self.matching) {
            self.by_key.insert(v.to_lowercase(), hub_id.to_string());
        }
        let linked_to = self.users.remove(hub_id).and_then(|u| u.linked_to);
        self.users.insert(
            hub_id.to_string(),
            HubUser {
                in_scope,
                linked_to,
            },
        );
    }

    /// A link of the target (add users first).
    pub fn add_link(&mut self, hub_id: &str, target_id: &str) {
        self.by_target_id
            .insert(target_id.to_string(), hub_id.to_string());
        if let Some(u) = self.users.get_mut(hub_id) {
            u.linked_to = Some(target_id.to_string());
        }
    }

    /// Which hub user a target account is.
    pub fn classify(&self, account: &Value) -> Matched {
        let tid = account
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(h) = self.by_target_id.get(tid) {
            return Matched::Linked(h.clone());
        }
        let unlinked = |h: &String| self.users.get(h).is_some_and(|u| u.linked_to.is_none());
        // The hub sets `externalId` to its own id on every account it creates.
        if let Some(ext) = account.get("externalId").and_then(Value::as_str)
            && self.users.contains_key(ext)
            && unlinked(&ext.to_string())
        {
            return Matched::Found(ext.to_string());
        }
        if let Some(v) = read_path(account, &self.matching)
            && let Some(h) = self.by_key.get(&v.to_lowercase())
            && unlinked(h)
        {
            return Matched::Found(h.clone());
        }
        Matched::Orphan
    }

    /// Is this hub user in the target's scope?
    pub fn in_scope(&self, hub_id: &str) -> bool {
        self.users.get(hub_id).is_some_and(|u| u.in_scope)
    }

    /// Hub users in scope that `seen` does not hold, in id order (creation order),
    /// after `after`: the accounts missing on the target.
    pub fn missing(&self, seen: &HashSet<String>, after: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = self
            .users
            .iter()
            .filter(|(id, u)| {
                u.in_scope && !seen.contains(*id) && after.is_none_or(|a| id.as_str() > a)
            })
            .map(|(id, _)| id.clone())
            .collect();
        out.sort_unstable();
        out
    }
}

// ---- the group diff (pure) ------------------------------------------------------------

/// How a target group's members differ from the hub group's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberDiff {
    /// Hub ids of members that are on the target (linked) but not in its group.
    pub added: Vec<String>,
    /// Hub ids of linked hub users (or groups) in the target's group that the hub group
    /// does not have.
    pub removed: Vec<String>,
    /// Target ids of members the hub does not know at all: removed by reconcile itself
    /// (no hub resource to send), like orphans.
    pub strangers: Vec<String>,
}

impl MemberDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.strangers.is_empty()
    }
}

/// The links of one target that translate members (users and groups), both ways, and
/// the hub users whose create this run queued.
#[derive(Debug, Default)]
pub struct MemberLinks {
    to_target: HashMap<String, String>,
    to_hub: HashMap<String, String>,
    pending: HashSet<String>,
}

impl MemberLinks {
    /// A linked member: `hub_id` is `target_id` on the target.
    pub fn add(&mut self, hub_id: &str, target_id: &str) {
        self.to_target
            .insert(hub_id.to_string(), target_id.to_string());
        self.to_hub
            .insert(target_id.to_string(), hub_id.to_string());
    }

    /// A hub user whose create this run queued: its memberships follow that create (the
    /// engine joins a new account to its linked groups), so reconcile neither expects it
    /// in a group nor takes it out of one.
    pub fn pending(&mut self, hub_id: &str) {
        self.pending.insert(hub_id.to_string());
    }

    /// The difference between a hub group's members (`hub_members`, hub ids) and the
    /// member ids its copy on the target lists. Expected on the target: the hub members
    /// linked there, translated. Hub members not on the target are not expected (they
    /// join when they are created).
    pub fn diff(&self, hub_members: &[String], target_members: &[String]) -> MemberDiff {
        let mut expected: HashMap<&str, &str> = HashMap::new();
        for h in hub_members {
            if self.pending.contains(h) {
                continue;
            }
            if let Some(tid) = self.to_target.get(h) {
                expected.insert(tid.as_str(), h.as_str());
            }
        }
        let mut out = MemberDiff::default();
        let mut present: HashSet<&str> = HashSet::new();
        for tid in target_members {
            if !present.insert(tid.as_str()) || expected.contains_key(tid.as_str()) {
                continue;
            }
            match self.to_hub.get(tid) {
                Some(h) if self.pending.contains(h) => {}
                Some(h) => out.removed.push(h.clone()),
                None => out.strangers.push(tid.clone()),
            }
        }
        // In the hub's order (stable events).
        for h in hub_members {
            if let Some(tid) = self.to_target.get(h)
                && expected.contains_key(tid.as_str())
                && !present.contains(tid.as_str())
                && !out.added.contains(h)
            {
                out.added.push(h.clone());
            }
        }
        out
    }
}

/// The member ids (`members[].value`) a target group lists.
pub fn target_members(group: &Value) -> Vec<String> {
    let members = group.as_object().and_then(|o| get_ci(o, "members"));
    match members {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|m| {
                m.as_object()
                    .and_then(|o| get_ci(o, "value"))
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// What to do with one matched account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    /// Differs: send the hub's version.
    Update,
    /// Out of scope and still there: the engine applies `out_of_scope`.
    Leave(OutOfScope),
}

/// The verdict for a target account matched to a hub user.
pub fn judge(
    t: &TargetConfig,
    in_scope: bool,
    mapped: &Value,
    account: &Value,
    delivered: Option<&Value>,
) -> Verdict {
    if !in_scope {
        let active = account.get("active").and_then(Value::as_bool) != Some(false);
        return match t.out_of_scope {
            OutOfScope::Leave => Verdict::Unchanged,
            OutOfScope::Deactivate if !active => Verdict::Unchanged,
            p => Verdict::Leave(p),
        };
    }
    if differs(mapped, account, delivered) {
        Verdict::Update
    } else {
        Verdict::Unchanged
    }
}

// ---- leases ---------------------------------------------------------------------------

fn lease_key(target: &str) -> Key {
    Key::new(format!("LEASE#{target}"), "LEASE")
}

/// A held lease on one target; released with [`Lease::release`] (or it expires).
#[derive(Debug)]
pub struct Lease {
    key: Key,
    token: u64,
}

impl Lease {
    /// Takes the lease for `ttl` if nobody holds it (absent or expired: the store's
    /// `NotExists` condition treats an expired item as absent). `None`: held elsewhere.
    pub async fn acquire(
        store: &dyn Store,
        target: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let key = lease_key(target);
        // A random version identifies the holder: only it can release the lease.
        let token = rand::random::<u64>() | 1;
        let data = serde_json::to_vec(&serde_json::json!({
            "holder": uuid::Uuid::new_v4().to_string(),
            "taken_at": chrono::Utc::now().to_rfc3339(),
        }))
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let item = Item::new(key.pk.clone(), key.sk.clone(), data)
            .with_version(token)
            .with_expiry(now_epoch() + ttl.as_secs().max(1) as i64);
        match store.transact(vec![Write::put_new(item)]).await {
            Ok(()) => Ok(Some(Lease { key, token })),
            Err(StoreError::ConditionFailed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease back (only if still ours).
    pub async fn release(self, store: &dyn Store) -> Result<(), StoreError> {
        match store
            .transact(vec![Write::Delete {
                key: self.key,
                condition: Condition::VersionIs(self.token),
            }])
            .await
        {
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

// ---- checkpoints ----------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    /// Reading the target's accounts.
    Listing,
    /// Queuing creates for hub users not seen on the target.
    Missing,
    /// Reading the target's groups.
    GroupListing,
    /// Queuing creates for hub groups not seen on the target.
    GroupMissing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Checkpoint {
    run: String,
    started_at: String,
    phase: Phase,
    /// The target listing's next page (phase `listing`).
    cursor: Option<String>,
    /// User pages read so far (numbers the users' `SEEN` records).
    pages: u32,
    /// Group pages read so far (numbers the groups' `SEEN` records).
    #[serde(default)]
    group_pages: u32,
    /// Last hub id handled (phases `missing`, `group_missing`).
    missing_after: Option<String>,
    counts: ReconcileCounts,
}

fn state_key(target: &str) -> Key {
    Key::new(format!("RECON#{target}"), "STATE")
}

/// Whose hub ids a `SEEN` record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SeenOf {
    Users,
    Groups,
}

/// `SEEN#{run}#…` for users, `SEEN#G#{run}#…` for groups (a run id is hex: never `G`).
fn seen_prefix(run: &str, of: SeenOf) -> String {
    match of {
        SeenOf::Users => format!("SEEN#{run}#"),
        SeenOf::Groups => format!("SEEN#G#{run}#"),
    }
}

fn seen_key(target: &str, run: &str, of: SeenOf, page: u32) -> Key {
    Key::new(
        format!("RECON#{target}"),
        format!("{}{page:08}", seen_prefix(run, of)),
    )
}

/// How long checkpoint records live at most (a run abandoned for two days starts over).
const CHECKPOINT_TTL_SECS: i64 = 2 * 24 * 3600;

// ---- the reconciler (I/O) -------------------------------------------------------------

/// Runs reconciles. One per process, shared by the schedule and `POST /admin/sync`.
#[derive(Clone)]
pub struct Reconciler {
    store: Arc<dyn Store>,
    directory: Directory,
    targets: Targets,
    links: Links,
    audit: Audit,
    queue: Arc<dyn Queue>,
    factory: ConnectorFactory,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler").finish_non_exhaustive()
    }
}

/// Change events sent to the queue per call.
const SEND_CHUNK: usize = 100;

impl Reconciler {
    pub fn new(
        directory: Directory,
        targets: Targets,
        audit: Audit,
        queue: Arc<dyn Queue>,
        factory: ConnectorFactory,
    ) -> Self {
        let store = directory.store().clone();
        Reconciler {
            links: Links::new(store.clone()),
            store,
            directory,
            targets,
            audit,
            queue,
            factory,
        }
    }

    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    fn schemas(&self) -> &SchemaRegistry {
        self.directory.schemas()
    }

    /// Reconciles one target until done or until `deadline`, under its lease.
    pub async fn reconcile_target(
        &self,
        t: &TargetConfig,
        deadline: tokio::time::Instant,
    ) -> ReconcileReport {
        let budget = deadline.saturating_duration_since(tokio::time::Instant::now());
        let lease_ttl = budget + Duration::from_secs(120);
        let lease = match Lease::acquire(self.store.as_ref(), &t.id, lease_ttl).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                tracing::info!(target_id = %t.id, "reconcile skipped: another cycle holds the target");
                return ReconcileReport {
                    target: t.id.clone(),
                    state: RunState::Busy,
                    counts: ReconcileCounts::default(),
                    resumed: false,
                    pages: 0,
                    error: None,
                };
            }
            Err(e) => {
                return self
                    .finish(
                        t,
                        Err(Box::new((e.into(), ReconcileCounts::default(), false, 0))),
                    )
                    .await;
            }
        };
        let result = self.run(t, deadline).await;
        if let Err(e) = lease.release(self.store.as_ref()).await {
            tracing::warn!(target_id = %t.id, error = %e, "lease not released (it expires)");
        }
        self.finish(t, result).await
    }

    /// Logs and audits the end of a run.
    async fn finish(
        &self,
        t: &TargetConfig,
        result: Result<(RunState, ReconcileCounts, bool, u32), FailedRun>,
    ) -> ReconcileReport {
        let (state, counts, resumed, pages, error) = match result {
            Ok((s, c, r, p)) => (s, c, r, p, None),
            Err(failed) => {
                let (e, c, r, p) = *failed;
                (RunState::Failed, c, r, p, Some(e.to_string()))
            }
        };
        let summary = counts.summary();
        let (status, detail) = match state {
            RunState::Complete => (AuditStatus::Delivered, format!("complete: {summary}")),
            RunState::Suspended => (
                AuditStatus::Queued,
                format!("out of time, continues next cycle: {summary}"),
            ),
            RunState::Busy => (AuditStatus::Skipped, "another cycle holds the lease".into()),
            RunState::Unsupported => (
                AuditStatus::Skipped,
                "skipped: this kind of target cannot be listed".into(),
            ),
            RunState::Failed => (
                AuditStatus::Failed,
                format!("{}: {summary}", error.clone().unwrap_or_default()),
            ),
        };
        match state {
            RunState::Failed => {
                tracing::warn!(target_id = %t.id, error = error.as_deref().unwrap_or(""), checked = counts.checked, "reconcile failed")
            }
            _ => tracing::info!(
                target_id = %t.id,
                state = ?state,
                resumed,
                pages,
                checked = counts.checked,
                created = counts.created,
                updated = counts.updated,
                deactivated = counts.deactivated,
                deleted = counts.deleted,
                orphaned = counts.orphaned,
                unchanged = counts.unchanged,
                failed = counts.failed,
                groups = %counts.groups.summary(),
                "reconcile"
            ),
        }
        let entry = AuditEntry::new(&t.id, AuditOp::Reconcile, status).detail(detail);
        if let Err(e) = self.audit.record(entry).await {
            tracing::warn!(error = %e, "reconcile audit entry not written");
        }
        ReconcileReport {
            target: t.id.clone(),
            state,
            counts,
            resumed,
            pages,
            error,
        }
    }

    /// The hub side of a run: every user (scope, matching value) and the target's links.
    pub async fn hub_index(&self, t: &TargetConfig) -> Result<HubIndex, ReconcileError> {
        let matching = match &t.kind {
            TargetKind::Scim(s) => s.matching_attribute.as_str(),
            _ => "userName",
        };
        self.index_of(t, ResourceKind::User, matching).await
    }

    /// Every hub resource of `kind` (scope, the matching value of its mapped form) and
    /// the target's links of that kind. Groups are always in scope (the scoping filter
    /// is about users).
    async fn index_of(
        &self,
        t: &TargetConfig,
        kind: ResourceKind,
        matching: &str,
    ) -> Result<HubIndex, ReconcileError> {
        let mut index = HubIndex::new(matching);
        let schemas = self.schemas().clone();
        self.directory
            .scan(kind, |s| {
                let mapped = map_resource(kind, s.id(), &s.resource, &t.mapping, &t.group_mapping);
                let scoped =
                    kind == ResourceKind::Group || in_scope(&schemas, t, kind, &s.resource);
                index.add_user(s.id(), scoped, &mapped);
            })
            .await
            .map_err(|e| ReconcileError::Directory(e.to_string()))?;
        let mut links = Vec::new();
        self.links
            .list(&t.id, kind, |l| links.push((l.hub_id, l.target_id)))
            .await?;
        for (h, tid) in links {
            index.add_link(&h, &tid);
        }
        Ok(index)
    }

    async fn run(
        &self,
        t: &TargetConfig,
        deadline: tokio::time::Instant,
    ) -> Result<(RunState, ReconcileCounts, bool, u32), FailedRun> {
        let connector = (self.factory)(t).map_err(|e| {
            Box::new((
                ReconcileError::Setup(e),
                ReconcileCounts::default(),
                false,
                0,
            ))
        })?;
        let (mut cp, resumed) = match self.load_checkpoint(&t.id).await {
            Ok(Some(cp)) => (cp, true),
            Ok(None) => (
                Checkpoint {
                    run: uuid::Uuid::now_v7().simple().to_string(),
                    started_at: chrono::Utc::now().to_rfc3339(),
                    phase: Phase::Listing,
                    cursor: None,
                    pages: 0,
                    group_pages: 0,
                    missing_after: None,
                    counts: ReconcileCounts::default(),
                },
                false,
            ),
            Err(e) => return Err(Box::new((e, ReconcileCounts::default(), false, 0))),
        };
        let mut pages_now = 0;
        let mut group_pages_now = 0;
        let fail = |e: ReconcileError, cp: &Checkpoint, pages: u32| {
            Err(Box::new((e, cp.counts.clone(), resumed, pages)))
        };
        let index = match self.hub_index(t).await {
            Ok(i) => i,
            Err(e) => return fail(e, &cp, 0),
        };
        let mut seen = match self.load_seen(&t.id, &cp, SeenOf::Users).await {
            Ok(s) => s,
            Err(e) => return fail(e, &cp, 0),
        };
        if cp.phase == Phase::Listing {
            loop {
                if pages_now > 0 && tokio::time::Instant::now() >= deadline {
                    if let Err(e) = self.save_checkpoint(&t.id, &cp).await {
                        return fail(e, &cp, pages_now);
                    }
                    return Ok((RunState::Suspended, cp.counts, resumed, pages_now));
                }
                let page = match connector.list_users(cp.cursor.as_deref()).await {
                    Ok(p) => p,
                    Err(e) if cp.pages == 0 && e == listing_unsupported() => {
                        // Nothing to compare with: not a failure, and nothing to resume.
                        return Ok((RunState::Unsupported, cp.counts, resumed, 0));
                    }
                    Err(e) => {
                        // Keep what was done: the next cycle retries this page.
                        let _ = self.save_checkpoint(&t.id, &cp).await;
                        return fail(e.into(), &cp, pages_now);
                    }
                };
                pages_now += 1;
                let mut counts = ReconcileCounts::default();
                let seen_now = match self
                    .reconcile_page(t, connector.as_ref(), &index, &page.resources, &mut counts)
                    .await
                {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = self.save_checkpoint(&t.id, &cp).await;
                        return fail(e, &cp, pages_now);
                    }
                };
                cp.counts.add(&counts);
                cp.pages += 1;
                cp.cursor = page.next.clone();
                if cp.cursor.is_none() {
                    cp.phase = Phase::Missing;
                }
                // The page's seen ids and the advanced cursor, together.
                let key = seen_key(&t.id, &cp.run, SeenOf::Users, cp.pages);
                if let Err(e) = self.save_page(&t.id, &cp, key, &seen_now).await {
                    return fail(e, &cp, pages_now);
                }
                seen.extend(seen_now);
                if cp.phase == Phase::Missing {
                    break;
                }
            }
        }
        // Hub users in scope the listing did not show: create them.
        if cp.phase == Phase::Missing {
            let missing = index.missing(&seen, cp.missing_after.as_deref());
            for chunk in missing.chunks(SEND_CHUNK) {
                if tokio::time::Instant::now() >= deadline && pages_now > 0 {
                    if let Err(e) = self.save_checkpoint(&t.id, &cp).await {
                        return fail(e, &cp, pages_now);
                    }
                    return Ok((RunState::Suspended, cp.counts, resumed, pages_now));
                }
                let mut counts = ReconcileCounts::default();
                if let Err(e) = self.queue_creates(t, chunk, &mut counts).await {
                    let _ = self.save_checkpoint(&t.id, &cp).await;
                    return fail(e, &cp, pages_now);
                }
                cp.counts.add(&counts);
                cp.missing_after = chunk.last().cloned();
            }
            cp.phase = Phase::GroupListing;
            cp.cursor = None;
            cp.missing_after = None;
        }

        // Groups, after the users (their members are users). The first group page is
        // read in any cycle that gets here, as the first user page is.
        let groups = match self.group_index(t).await {
            Ok(g) => g,
            Err(e) => {
                let _ = self.save_checkpoint(&t.id, &cp).await;
                return fail(e, &cp, pages_now);
            }
        };
        // Users created in this run join their groups through their creates.
        let created_users = index.missing(&seen, None);
        let members = match self.member_links(t, &created_users).await {
            Ok(m) => m,
            Err(e) => {
                let _ = self.save_checkpoint(&t.id, &cp).await;
                return fail(e, &cp, pages_now);
            }
        };
        drop(seen);
        let mut seen_groups = match self.load_seen(&t.id, &cp, SeenOf::Groups).await {
            Ok(s) => s,
            Err(e) => return fail(e, &cp, pages_now),
        };
        if cp.phase == Phase::GroupListing {
            loop {
                if group_pages_now > 0 && tokio::time::Instant::now() >= deadline {
                    if let Err(e) = self.save_checkpoint(&t.id, &cp).await {
                        return fail(e, &cp, pages_now);
                    }
                    return Ok((RunState::Suspended, cp.counts, resumed, pages_now));
                }
                let page = match connector.list_groups(cp.cursor.as_deref()).await {
                    Ok(p) => p,
                    Err(e) if cp.group_pages == 0 && e == listing_unsupported() => {
                        // Users done; groups cannot be read here: say so, and finish.
                        cp.counts.groups.unsupported = true;
                        if let Err(e) = self.clear_checkpoint(&t.id).await {
                            tracing::warn!(target_id = %t.id, error = %e, "reconcile checkpoint not cleared");
                        }
                        return Ok((RunState::Complete, cp.counts, resumed, pages_now));
                    }
                    Err(e) => {
                        let _ = self.save_checkpoint(&t.id, &cp).await;
                        return fail(e.into(), &cp, pages_now);
                    }
                };
                group_pages_now += 1;
                let mut counts = GroupCounts::default();
                let seen_now = match self
                    .reconcile_group_page(
                        t,
                        connector.as_ref(),
                        &groups,
                        &members,
                        &page.resources,
                        &mut counts,
                    )
                    .await
                {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = self.save_checkpoint(&t.id, &cp).await;
                        return fail(e, &cp, pages_now);
                    }
                };
                cp.counts.groups.add(&counts);
                cp.group_pages += 1;
                cp.cursor = page.next.clone();
                if cp.cursor.is_none() {
                    cp.phase = Phase::GroupMissing;
                }
                let key = seen_key(&t.id, &cp.run, SeenOf::Groups, cp.group_pages);
                if let Err(e) = self.save_page(&t.id, &cp, key, &seen_now).await {
                    return fail(e, &cp, pages_now);
                }
                seen_groups.extend(seen_now);
                if cp.phase == Phase::GroupMissing {
                    break;
                }
            }
        }
        // Hub groups the listing did not show: create them, with their members.
        let missing = groups.missing(&seen_groups, cp.missing_after.as_deref());
        for chunk in missing.chunks(SEND_CHUNK) {
            if tokio::time::Instant::now() >= deadline && pages_now + group_pages_now > 0 {
                if let Err(e) = self.save_checkpoint(&t.id, &cp).await {
                    return fail(e, &cp, pages_now);
                }
                return Ok((RunState::Suspended, cp.counts, resumed, pages_now));
            }
            let mut counts = GroupCounts::default();
            if let Err(e) = self.queue_group_creates(t, chunk, &mut counts).await {
                let _ = self.save_checkpoint(&t.id, &cp).await;
                return fail(e, &cp, pages_now);
            }
            cp.counts.groups.add(&counts);
            cp.missing_after = chunk.last().cloned();
        }
        if let Err(e) = self.clear_checkpoint(&t.id).await {
            tracing::warn!(target_id = %t.id, error = %e, "reconcile checkpoint not cleared");
        }
        Ok((RunState::Complete, cp.counts, resumed, pages_now))
    }

    /// One page of target objects matched to the hub, with the hub resources they name
    /// and the target's links to them (both read once for the page).
    async fn classify_page<'a>(
        &self,
        t: &TargetConfig,
        kind: ResourceKind,
        index: &HubIndex,
        objects: &'a [Value],
    ) -> Result<ClassifiedPage<'a>, ReconcileError> {
        let classified: Vec<(&Value, Matched)> =
            objects.iter().map(|o| (o, index.classify(o))).collect();
        let hub_ids: Vec<String> = classified
            .iter()
            .filter_map(|(_, m)| match m {
                Matched::Linked(h) | Matched::Found(h) => Some(h.clone()),
                Matched::Orphan => None,
            })
            .collect();
        let hub: HashMap<String, Stored> = self
            .directory
            .load_existing(kind, &hub_ids)
            .await
            .map_err(|e| ReconcileError::Directory(e.to_string()))?
            .into_iter()
            .map(|s| (s.id().to_string(), s))
            .collect();
        let links = self.links.get_many(&t.id, kind, &hub_ids).await?;
        Ok((classified, hub, links))
    }

    /// One page of target accounts: classify, compare, queue what differs, apply the
    /// orphan policy. Returns the hub ids seen on the target.
    async fn reconcile_page(
        &self,
        t: &TargetConfig,
        c: &dyn Connector,
        index: &HubIndex,
        accounts: &[Value],
        counts: &mut ReconcileCounts,
    ) -> Result<Vec<String>, ReconcileError> {
        let (classified, hub, mut links) = self
            .classify_page(t, ResourceKind::User, index, accounts)
            .await?;
        let mut link_writes: Vec<Link> = Vec::new();
        let mut seen = Vec::new();
        let mut events = Vec::new();
        for (account, m) in classified {
            counts.checked += 1;
            let tid = account
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let hub_id = match &m {
                Matched::Linked(h) | Matched::Found(h) => h,
                Matched::Orphan => {
                    self.orphan(t, c, &tid, account, counts).await;
                    continue;
                }
            };
            let Some(user) = hub.get(hub_id) else {
                // Linked to a user the hub no longer has: an orphan now.
                self.orphan(t, c, &tid, account, counts).await;
                continue;
            };
            if seen.contains(hub_id) {
                // A second account for a hub user seen on this page already.
                self.orphan(t, c, &tid, account, counts).await;
                continue;
            }
            seen.push(hub_id.clone());
            let link = links.remove(hub_id);
            let mapped = map_resource(
                ResourceKind::User,
                hub_id,
                &user.resource,
                &t.mapping,
                &t.group_mapping,
            );
            let delivered = link.as_ref().map(|l| &l.delivered);
            // Compared on what this kind of target keeps only.
            let kept_mapped = c.kept(ResourceKind::User, &mapped);
            let kept_delivered = delivered.map(|d| c.kept(ResourceKind::User, d));
            let verdict = judge(
                t,
                index.in_scope(hub_id),
                &kept_mapped,
                account,
                kept_delivered.as_ref(),
            );
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            match verdict {
                Verdict::Unchanged => {
                    counts.unchanged += 1;
                    if link.is_none() && index.in_scope(hub_id) {
                        // Matched an account the hub had not linked: link it as is.
                        let hash = content_hash(&mapped);
                        link_writes.push(Link {
                            target: t.id.clone(),
                            resource_type: ResourceKind::User,
                            hub_id: hub_id.clone(),
                            target_id: tid,
                            hash,
                            delivered: mapped,
                            disabled: false,
                            at: now,
                        });
                    }
                }
                Verdict::Update | Verdict::Leave(_) => {
                    // The link says what the target really holds: the engine then sends
                    // exactly the difference (an empty hash never equals a payload's).
                    // The compared form too: what a target derives (Entra's displayName
                    // from the names) must be in `previous` for the PATCH to carry it.
                    let mut shape: Vec<&Value> = vec![&mapped, &kept_mapped];
                    shape.extend(delivered);
                    let previous = project(account, &shape);
                    link_writes.push(Link {
                        target: t.id.clone(),
                        resource_type: ResourceKind::User,
                        hub_id: hub_id.clone(),
                        target_id: tid,
                        hash: String::new(),
                        delivered: previous,
                        disabled: false,
                        at: now,
                    });
                    match verdict {
                        Verdict::Leave(OutOfScope::Delete) => counts.deleted += 1,
                        Verdict::Leave(_) => counts.deactivated += 1,
                        _ => counts.updated += 1,
                    }
                    events.push(event_for(t, user, ChangeOp::Update)?);
                }
            }
        }
        // Links first: the events must find them.
        self.links.put_many(&link_writes).await?;
        self.send(events).await?;
        Ok(seen)
    }

    async fn orphan(
        &self,
        t: &TargetConfig,
        c: &dyn Connector,
        tid: &str,
        account: &Value,
        counts: &mut ReconcileCounts,
    ) {
        counts.orphaned += 1;
        let label = account
            .get("userName")
            .and_then(Value::as_str)
            .unwrap_or(tid);
        let active = account.get("active").and_then(Value::as_bool) != Some(false);
        let (op, result) = match t.orphans {
            OrphanPolicy::Report => return,
            OrphanPolicy::Deactivate if !active => return,
            OrphanPolicy::Deactivate => (AuditOp::Deactivate, c.disable_user(tid).await),
            OrphanPolicy::Delete => (AuditOp::Delete, c.delete_user(tid).await),
        };
        let what = format!("orphan {label:?}");
        if self.orphan_done(t, op, "User", tid, &what, result).await {
            match op {
                AuditOp::Delete => counts.deleted += 1,
                _ => counts.deactivated += 1,
            }
        } else {
            counts.failed += 1;
        }
    }

    /// Audits what the orphan policy did to one account or group (`what` names it):
    /// done (or gone already), else the error, as a retry or a refusal. Returns whether
    /// it was done.
    async fn orphan_done(
        &self,
        t: &TargetConfig,
        op: AuditOp,
        resource_type: &str,
        tid: &str,
        what: &str,
        result: Result<(), ConnectorError>,
    ) -> bool {
        let entry = AuditEntry::new(&t.id, op, AuditStatus::Delivered)
            .resource(resource_type, tid)
            .detail(format!("{what} (reconcile)"));
        let (done, entry) = match result {
            Ok(()) | Err(ConnectorError::NotFound) => (true, entry),
            Err(e) => {
                tracing::warn!(target_id = %t.id, object = tid, error = %e, "orphan policy failed");
                let status = if e.is_retryable() {
                    AuditStatus::Retry
                } else {
                    AuditStatus::Refused
                };
                let detail = format!("{what}: {e}");
                (
                    false,
                    AuditEntry {
                        status,
                        detail,
                        ..entry
                    },
                )
            }
        };
        if let Err(e) = self.audit.record(entry).await {
            tracing::warn!(error = %e, "audit entry not written");
        }
        done
    }

    /// Create events for hub users missing on the target (stale links dropped first, so
    /// the engine creates instead of updating an account that is gone).
    async fn queue_creates(
        &self,
        t: &TargetConfig,
        hub_ids: &[String],
        counts: &mut ReconcileCounts,
    ) -> Result<(), ReconcileError> {
        let users = self
            .directory
            .load_existing(ResourceKind::User, hub_ids)
            .await
            .map_err(|e| ReconcileError::Directory(e.to_string()))?;
        let ids: Vec<String> = users.iter().map(|u| u.id().to_string()).collect();
        let stale = self.links.get_many(&t.id, ResourceKind::User, &ids).await?;
        let mut events = Vec::new();
        for u in &users {
            if stale.contains_key(u.id()) {
                self.links.delete(&t.id, ResourceKind::User, u.id()).await?;
            }
            events.push(event_for(t, u, ChangeOp::Create)?);
            counts.created += 1;
        }
        self.send(events).await
    }

    /// The hub side of the group phases: every group (mapped display name) and the
    /// target's group links.
    async fn group_index(&self, t: &TargetConfig) -> Result<HubIndex, ReconcileError> {
        self.index_of(t, ResourceKind::Group, "displayName").await
    }

    /// The target's user and group links as they are now (after the user phases: stale
    /// links of re-created users are gone), and the users whose create this run queued.
    async fn member_links(
        &self,
        t: &TargetConfig,
        created_users: &[String],
    ) -> Result<MemberLinks, ReconcileError> {
        let mut m = MemberLinks::default();
        for kind in [ResourceKind::User, ResourceKind::Group] {
            self.links
                .list(&t.id, kind, |l| m.add(&l.hub_id, &l.target_id))
                .await?;
        }
        for h in created_users {
            m.pending(h);
        }
        Ok(m)
    }

    /// One page of target groups: classify, compare attributes and members, queue what
    /// differs, remove members the hub does not know, apply the orphan policy. Returns
    /// the hub ids seen on the target.
    async fn reconcile_group_page(
        &self,
        t: &TargetConfig,
        c: &dyn Connector,
        index: &HubIndex,
        members: &MemberLinks,
        groups: &[Value],
        counts: &mut GroupCounts,
    ) -> Result<Vec<String>, ReconcileError> {
        let kind = ResourceKind::Group;
        let (classified, hub, mut links) = self.classify_page(t, kind, index, groups).await?;
        let mut link_writes: Vec<Link> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut events = Vec::new();
        for (group, m) in classified {
            counts.checked += 1;
            let tid = group
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let hub_id = match &m {
                Matched::Linked(h) | Matched::Found(h) => h,
                Matched::Orphan => {
                    self.orphan_group(t, c, &tid, group, counts).await;
                    continue;
                }
            };
            // Linked to a group the hub no longer has, or a second copy: an orphan.
            let Some(stored) = hub.get(hub_id).filter(|_| !seen.contains(hub_id)) else {
                self.orphan_group(t, c, &tid, group, counts).await;
                continue;
            };
            seen.push(hub_id.clone());
            let link = links.remove(hub_id);
            let mapped = map_resource(kind, hub_id, &stored.resource, &t.mapping, &t.group_mapping);
            let delivered = link.as_ref().map(|l| &l.delivered);
            let kept_mapped = c.kept(kind, &mapped);
            let kept_delivered = delivered.map(|d| c.kept(kind, d));
            // `mapped` has no members (they are compared below, not as an attribute).
            let attrs_differ = differs(&kept_mapped, group, kept_delivered.as_ref());
            let hub_members: Vec<String> = self
                .directory
                .members_of(hub_id)
                .await
                .map_err(|e| ReconcileError::Directory(e.to_string()))?
                .into_iter()
                .map(|m| m.value)
                .collect();
            let diff = members.diff(&hub_members, &target_members(group));
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            if attrs_differ {
                // As for users: the link says what the target holds, so the engine's
                // update names exactly the attributes that differ.
                let mut shape: Vec<&Value> = vec![&mapped];
                shape.extend(delivered);
                link_writes.push(Link {
                    target: t.id.clone(),
                    resource_type: kind,
                    hub_id: hub_id.clone(),
                    target_id: tid.clone(),
                    hash: String::new(),
                    delivered: project(group, &shape),
                    disabled: false,
                    at: now,
                });
            } else if link.is_none() {
                // Matched a group the hub had not linked: link it as is.
                link_writes.push(Link {
                    target: t.id.clone(),
                    resource_type: kind,
                    hub_id: hub_id.clone(),
                    target_id: tid.clone(),
                    hash: content_hash(&mapped),
                    delivered: mapped.clone(),
                    disabled: false,
                    at: now,
                });
            }
            let mut changed = attrs_differ;
            if !diff.strangers.is_empty() {
                changed = true;
                if self
                    .remove_strangers(t, c, &tid, group, &diff.strangers)
                    .await
                {
                    counts.members_removed += diff.strangers.len() as u64;
                } else {
                    counts.failed += 1;
                }
            }
            if attrs_differ || !diff.added.is_empty() || !diff.removed.is_empty() {
                changed = true;
                counts.members_added += diff.added.len() as u64;
                counts.members_removed += diff.removed.len() as u64;
                let mut e = change_event(t, kind, stored, ChangeOp::Update);
                e.members_added = diff.added;
                e.members_removed = diff.removed;
                events.push(to_message(&e)?);
            }
            if changed {
                counts.updated += 1;
            } else {
                counts.unchanged += 1;
            }
        }
        // Links first: the events must find them.
        self.links.put_many(&link_writes).await?;
        self.send(events).await?;
        Ok(seen)
    }

    /// Removes from a target group the members the hub does not know (no hub resource
    /// to send: done here, audited). `false` when the target refused.
    async fn remove_strangers(
        &self,
        t: &TargetConfig,
        c: &dyn Connector,
        tid: &str,
        group: &Value,
        strangers: &[String],
    ) -> bool {
        let label = group_label(group, tid);
        let result = c.remove_members(tid, strangers).await;
        let entry = AuditEntry::new(&t.id, AuditOp::RemoveMembers, AuditStatus::Delivered)
            .resource("Group", tid);
        let (entry, ok) = match result {
            Ok(()) | Err(ConnectorError::NotFound) => (
                entry.detail(format!(
                    "{} member(s) unknown to the hub removed from {label:?} (reconcile)",
                    strangers.len()
                )),
                true,
            ),
            Err(e) => {
                tracing::warn!(target_id = %t.id, group = tid, error = %e, "unknown members not removed");
                let status = if e.is_retryable() {
                    AuditStatus::Retry
                } else {
                    AuditStatus::Refused
                };
                (
                    AuditEntry { status, ..entry }.detail(format!(
                        "{} member(s) unknown to the hub in {label:?} not removed: {e}",
                        strangers.len()
                    )),
                    false,
                )
            }
        };
        if let Err(e) = self.audit.record(entry).await {
            tracing::warn!(error = %e, "audit entry not written");
        }
        ok
    }

    /// A target group the hub does not know: the target's [`OrphanPolicy`]. A group
    /// cannot be deactivated: under `deactivate` it is reported only.
    async fn orphan_group(
        &self,
        t: &TargetConfig,
        c: &dyn Connector,
        tid: &str,
        group: &Value,
        counts: &mut GroupCounts,
    ) {
        counts.orphaned += 1;
        match t.orphans {
            OrphanPolicy::Report | OrphanPolicy::Deactivate => return,
            OrphanPolicy::Delete => {}
        }
        let label = group_label(group, tid);
        let what = format!("orphan group {label:?}");
        let result = c.delete_group(tid).await;
        if self
            .orphan_done(t, AuditOp::Delete, "Group", tid, &what, result)
            .await
        {
            counts.deleted += 1;
        } else {
            counts.failed += 1;
        }
    }

    /// Create events for hub groups missing on the target, each with every member in
    /// `members_added` (as the SCIM server's create of a group with members says it);
    /// stale links dropped first so the engine creates.
    async fn queue_group_creates(
        &self,
        t: &TargetConfig,
        hub_ids: &[String],
        counts: &mut GroupCounts,
    ) -> Result<(), ReconcileError> {
        let kind = ResourceKind::Group;
        let groups = self
            .directory
            .load_existing(kind, hub_ids)
            .await
            .map_err(|e| ReconcileError::Directory(e.to_string()))?;
        let ids: Vec<String> = groups.iter().map(|g| g.id().to_string()).collect();
        let stale = self.links.get_many(&t.id, kind, &ids).await?;
        let mut events = Vec::new();
        for g in &groups {
            if stale.contains_key(g.id()) {
                self.links.delete(&t.id, kind, g.id()).await?;
            }
            let mut e = change_event(t, kind, g, ChangeOp::Create);
            e.members_added = self
                .directory
                .members_of(g.id())
                .await
                .map_err(|e| ReconcileError::Directory(e.to_string()))?
                .into_iter()
                .map(|m| m.value)
                .collect();
            counts.members_added += e.members_added.len() as u64;
            events.push(to_message(&e)?);
            counts.created += 1;
        }
        self.send(events).await
    }

    async fn send(&self, messages: Vec<OutMessage>) -> Result<(), ReconcileError> {
        for chunk in messages.chunks(SEND_CHUNK) {
            self.queue
                .send(chunk.to_vec())
                .await
                .map_err(|e| ReconcileError::Queue(e.to_string()))?;
        }
        Ok(())
    }

    async fn load_checkpoint(&self, target: &str) -> Result<Option<Checkpoint>, ReconcileError> {
        let Some(item) = self.store.get(&state_key(target)).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&item.data) {
            Ok(cp) => Ok(Some(cp)),
            Err(e) => {
                tracing::warn!(target_id = target, error = %e, "unreadable reconcile checkpoint: starting over");
                Ok(None)
            }
        }
    }

    async fn load_seen(
        &self,
        target: &str,
        cp: &Checkpoint,
        of: SeenOf,
    ) -> Result<HashSet<String>, ReconcileError> {
        let mut seen = HashSet::new();
        let pages = match of {
            SeenOf::Users => cp.pages,
            SeenOf::Groups => cp.group_pages,
        };
        if pages == 0 {
            return Ok(seen);
        }
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(Index::Primary, format!("RECON#{target}"))
                        .prefix(seen_prefix(&cp.run, of))
                        .limit(100)
                        .after(after),
                )
                .await?;
            for item in &page.items {
                if let Ok(ids) = serde_json::from_slice::<Vec<String>>(&item.data) {
                    seen.extend(ids);
                }
            }
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(seen),
            }
        }
    }

    fn checkpoint_item(target: &str, cp: &Checkpoint) -> Result<Item, ReconcileError> {
        let key = state_key(target);
        let data = serde_json::to_vec(cp).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(Item::new(key.pk, key.sk, data).with_expiry(now_epoch() + CHECKPOINT_TTL_SECS))
    }

    async fn save_checkpoint(&self, target: &str, cp: &Checkpoint) -> Result<(), ReconcileError> {
        self.store
            .transact(vec![Write::put(Self::checkpoint_item(target, cp)?)])
            .await?;
        Ok(())
    }

    async fn save_page(
        &self,
        target: &str,
        cp: &Checkpoint,
        key: Key,
        seen: &[String],
    ) -> Result<(), ReconcileError> {
        let data = serde_json::to_vec(seen).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let seen_item =
            Item::new(key.pk, key.sk, data).with_expiry(now_epoch() + CHECKPOINT_TTL_SECS);
        self.store
            .transact(vec![
                Write::put(seen_item),
                Write::put(Self::checkpoint_item(target, cp)?),
            ])
            .await?;
        Ok(())
    }

    async fn clear_checkpoint(&self, target: &str) -> Result<(), ReconcileError> {
        let mut keys = vec![state_key(target)];
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(Index::Primary, format!("RECON#{target}"))
                        .prefix("SEEN#")
                        .limit(100)
                        .after(after),
                )
                .await?;
            keys.extend(page.items.iter().map(Item::key));
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        for chunk in keys.chunks(crate::store::MAX_TRANSACT_ITEMS) {
            self.store
                .transact(chunk.iter().cloned().map(Write::delete).collect())
                .await?;
        }
        Ok(())
    }

    /// Reconciles every enabled target in `scheduled` mode, each with what is left of
    /// the time.
    pub async fn reconcile_scheduled(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<ReconcileReport>, ReconcileError> {
        let targets = self
            .targets
            .list()
            .await
            .map_err(|e| ReconcileError::Setup(format!("targets: {e}")))?;
        let mut out = Vec::new();
        for t in targets
            .iter()
            .filter(|t| t.enabled && t.mode == crate::target::DeliveryMode::Scheduled)
        {
            out.push(self.reconcile_target(t, deadline).await);
        }
        Ok(out)
    }
}

/// A failed run: the error, the counts so far, resumed, pages (boxed: the counts are large).
/// A page's objects with how each matched, the hub resources, the target's links.
type ClassifiedPage<'a> = (
    Vec<(&'a Value, Matched)>,
    HashMap<String, Stored>,
    HashMap<String, Link>,
);

type FailedRun = Box<(ReconcileError, ReconcileCounts, bool, u32)>;

/// The change event for one user to one target (the engine's format).
fn event_for(t: &TargetConfig, u: &Stored, op: ChangeOp) -> Result<OutMessage, ReconcileError> {
    to_message(&change_event(t, ResourceKind::User, u, op))
}

/// The change event for one resource to one target, from reconcile.
fn change_event(t: &TargetConfig, kind: ResourceKind, s: &Stored, op: ChangeOp) -> ChangeEvent {
    let mut e = ChangeEvent::new(kind, s.id(), op, Origin::Reconcile);
    e.resource = Some(s.resource.clone());
    e.version = s.version;
    e.only_targets = vec![t.id.clone()];
    e
}

fn to_message(e: &ChangeEvent) -> Result<OutMessage, ReconcileError> {
    e.to_message()
        .map_err(|e| ReconcileError::Queue(format!("event encoding: {e}")))
}

/// How a target group is named in audit entries.
fn group_label<'a>(group: &'a Value, tid: &'a str) -> &'a str {
    group
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or(tid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use serde_json::json;

    #[test]
    fn covers_ignores_what_the_target_adds() {
        let hub = json!({"userName": "a", "name": {"givenName": "A"},
            "emails": [{"value": "a@x", "primary": true}]});
        let target = json!({"id": "t1", "userName": "a", "meta": {},
            "name": {"givenName": "A", "formatted": "A"},
            "emails": [{"value": "a@x", "primary": true, "type": "work"}], "active": true});
        assert!(!differs(&hub, &target, None));
        let edited = json!({"id": "t1", "userName": "a", "name": {"givenName": "B"},
            "emails": [{"value": "a@x", "primary": true}]});
        assert!(differs(&hub, &edited, None));
        // Arrays: as many elements, any order.
        let two = json!({"emails": [{"value": "b"}, {"value": "a"}]});
        assert!(covers(
            two.get("emails"),
            &json!([{"value": "a"}, {"value": "b"}])
        ));
        assert!(!covers(two.get("emails"), &json!([{"value": "a"}])));
        // Null / empty in the hub is covered by absence.
        assert!(!differs(
            &json!({"nickName": null, "x": []}),
            &json!({}),
            None
        ));
        // Dropped in the hub since the last delivery, still on the target: differs.
        let delivered = json!({"userName": "a", "title": "Boss"});
        assert!(differs(
            &json!({"userName": "a"}),
            &json!({"userName": "a", "title": "Boss"}),
            Some(&delivered)
        ));
    }

    #[test]
    fn project_keeps_the_shape_of_the_hub_side() {
        let target = json!({"id": "t", "userName": "a", "meta": {"x": 1},
            "name": {"givenName": "B", "formatted": "B"}, "title": "T"});
        let mapped = json!({"userName": "a", "name": {"givenName": "A"}});
        let p = project(&target, &[&mapped]);
        assert_eq!(p, json!({"userName": "a", "name": {"givenName": "B"}}));
    }

    #[test]
    fn classify_by_link_external_id_then_matching_attribute() {
        let mut idx = HubIndex::new("userName");
        idx.add_user("h1", true, &json!({"userName": "Alice"}));
        idx.add_user("h2", true, &json!({"userName": "bob"}));
        idx.add_user("h3", false, &json!({"userName": "carol"}));
        idx.add_link("h1", "t1");
        assert_eq!(
            idx.classify(&json!({"id": "t1", "userName": "x"})),
            Matched::Linked("h1".into())
        );
        assert_eq!(
            idx.classify(&json!({"id": "t9", "externalId": "h2"})),
            Matched::Found("h2".into())
        );
        assert_eq!(
            idx.classify(&json!({"id": "t8", "userName": "BOB"})),
            Matched::Found("h2".into())
        );
        // Already linked elsewhere: a second account with the same name is an orphan.
        assert_eq!(
            idx.classify(&json!({"id": "t7", "userName": "alice"})),
            Matched::Orphan
        );
        assert_eq!(
            idx.classify(&json!({"id": "t6", "userName": "stranger"})),
            Matched::Orphan
        );
        let seen: HashSet<String> = ["h1".to_string()].into();
        assert_eq!(idx.missing(&seen, None), vec!["h2".to_string()]);
        assert!(idx.missing(&seen, Some("h2")).is_empty());
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn member_diff_translates_through_the_links() {
        let mut links = MemberLinks::default();
        links.add("hu1", "t1");
        links.add("hu2", "t2");
        links.add("hu3", "t3");
        links.add("hg1", "tg1");
        // Hub: hu1, hu2, hg1 (a nested group), hu4 (not on the target: not expected).
        let hub = ids(&["hu1", "hu2", "hg1", "hu4"]);
        // Target: hu1, hu3 (linked, not in the hub group), x9 (unknown), hu1 twice.
        let target = ids(&["t1", "t3", "x9", "t1"]);
        let d = links.diff(&hub, &target);
        assert_eq!(d.added, ids(&["hu2", "hg1"]));
        assert_eq!(d.removed, ids(&["hu3"]));
        assert_eq!(d.strangers, ids(&["x9"]));
        assert!(!d.is_empty());
        // In sync: nothing.
        let d = links.diff(&ids(&["hu1", "hu2"]), &ids(&["t2", "t1"]));
        assert!(d.is_empty(), "{d:?}");
        // Empty on both sides.
        assert!(links.diff(&[], &[]).is_empty());
    }

    #[test]
    fn member_diff_leaves_users_being_created_to_their_creates() {
        let mut links = MemberLinks::default();
        links.add("hu1", "t1");
        // hu2 is re-created in this run; its new account may already be linked and in
        // the group (the engine joined it), or not yet: neither is a difference.
        links.add("hu2", "t2-new");
        links.pending("hu2");
        let hub = ids(&["hu1", "hu2"]);
        assert!(links.diff(&hub, &ids(&["t1"])).is_empty());
        assert!(links.diff(&hub, &ids(&["t1", "t2-new"])).is_empty());
        // The deleted account's id left behind in the group is unknown: removed.
        let d = links.diff(&hub, &ids(&["t1", "t2-old"]));
        assert_eq!(d.strangers, ids(&["t2-old"]));
        assert!(d.added.is_empty() && d.removed.is_empty());
        // Not a member in the hub any more, and being created: left alone too.
        assert!(
            links
                .diff(&ids(&["hu1"]), &ids(&["t1", "t2-new"]))
                .is_empty()
        );
    }

    #[test]
    fn target_members_reads_values_case_insensitively() {
        let g = json!({"displayName": "g", "Members": [{"value": "a"}, {"Value": "b"},
            {"display": "no value"}, {"value": ""}]});
        assert_eq!(target_members(&g), ids(&["a", "b"]));
        assert!(target_members(&json!({"displayName": "g"})).is_empty());
    }

    #[test]
    fn groups_match_by_link_external_id_then_display_name() {
        let mut idx = HubIndex::new("displayName");
        idx.add_user("g1", true, &json!({"displayName": "Staff"}));
        idx.add_user("g2", true, &json!({"displayName": "Admins"}));
        idx.add_user("g3", true, &json!({"displayName": "Ops"}));
        idx.add_link("g1", "t1");
        // Renamed on the target: still matched through the link.
        assert_eq!(
            idx.classify(&json!({"id": "t1", "displayName": "Renamed"})),
            Matched::Linked("g1".into())
        );
        assert_eq!(
            idx.classify(&json!({"id": "t2", "externalId": "g2", "displayName": "x"})),
            Matched::Found("g2".into())
        );
        assert_eq!(
            idx.classify(&json!({"id": "t3", "displayName": "OPS"})),
            Matched::Found("g3".into())
        );
        assert_eq!(
            idx.classify(&json!({"id": "t4", "displayName": "Strangers"})),
            Matched::Orphan
        );
        let seen: HashSet<String> = ["g1".to_string()].into();
        assert_eq!(idx.missing(&seen, None), ids(&["g2", "g3"]));
    }

    #[test]
    fn group_attributes_differ_on_the_mapped_attributes_not_members() {
        let mapped = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Staff", "externalId": "g1"});
        let target = json!({"id": "t1", "displayName": "Staff", "externalId": "g1",
            "members": [{"value": "x"}], "meta": {}});
        assert!(!differs(&mapped, &target, None));
        let renamed = json!({"id": "t1", "displayName": "Renamed", "externalId": "g1"});
        assert!(differs(&mapped, &renamed, None));
    }

    #[test]
    fn counts_add_up_and_read_well() {
        let mut a = ReconcileCounts::default();
        let mut b = ReconcileCounts {
            checked: 2,
            ..Default::default()
        };
        b.groups.checked = 3;
        b.groups.members_added = 1;
        a.add(&b);
        a.add(&b);
        assert_eq!(
            (a.checked, a.groups.checked, a.groups.members_added),
            (4, 6, 2)
        );
        let s = a.summary();
        assert!(s.starts_with("checked=4 created=0"), "{s}");
        assert!(s.contains("groups: checked=6 created=0"), "{s}");
        a.groups.unsupported = true;
        assert!(a.summary().contains("groups: not supported"));
        // A checkpoint written before groups were reconciled still reads.
        let old: ReconcileCounts = serde_json::from_value(json!({"checked": 1, "created": 0,
            "updated": 0, "deactivated": 0, "deleted": 0, "orphaned": 0, "unchanged": 1,
            "failed": 0}))
        .unwrap();
        assert_eq!(old.groups, GroupCounts::default());
        // `unsupported` appears in the JSON only when true.
        let v = serde_json::to_value(ReconcileCounts::default()).unwrap();
        assert!(v["groups"].get("unsupported").is_none(), "{v}");
    }

    #[tokio::test]
    async fn a_lease_is_exclusive_until_released_or_expired() {
        let store = EmbeddedStore::in_memory();
        let a = Lease::acquire(&store, "crm", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("first");
        assert!(
            Lease::acquire(&store, "crm", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
        // Another target is independent.
        assert!(
            Lease::acquire(&store, "hr", Duration::from_secs(60))
                .await
                .unwrap()
                .is_some()
        );
        a.release(&store).await.unwrap();
        let b = Lease::acquire(&store, "crm", Duration::from_secs(1))
            .await
            .unwrap()
            .expect("after release");
        // An expired lease counts as absent.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let c = Lease::acquire(&store, "crm", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("after expiry");
        // The old holder's release does not drop the new holder's lease.
        b.release(&store).await.unwrap();
        assert!(
            Lease::acquire(&store, "crm", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
        c.release(&store).await.unwrap();
    }
}
