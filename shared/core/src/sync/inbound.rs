//! Inbound changes from a source: one [`Envelope`] applied to the hub, under that
//! source's policy. Signed webhooks (`POST /webhooks/{source}`) come here after their
//! signature is verified; pulled sources (SCIM, Drupal JSON:API) come here from the
//! schedule, without signatures.
//!
//! - **Policy** (403): users and groups only when `user_sync` is on; fields outside
//!   `allowed_fields` (default [`DEFAULT_ALLOWED_FIELDS`]: never `active`, `password`,
//!   `roles`, `groups`, `entitlements`, group `members`) are refused unless their value is
//!   what the hub already holds (a site echoing the hub's own state escalates nothing);
//!   entity types and configuration names must be allowlisted.
//! - **Matching**: a site's user is found through the source link (source id + the site's
//!   id, `externalId` in the data), else by `userName` (group: `displayName`). The site's
//!   id is never written into the hub resource's `externalId` (two sites would fight
//!   over it, and each echo would look like a change).
//! - **Last writer wins** by `occurred_at`: each item keeps the last applied one (the
//!   source link and a per-hub-resource stamp for users and groups, the record itself for
//!   entities and configuration); an older event is recorded as stale and not applied.
//! - **No-op**: an upsert that changes nothing produces no change event, which is what
//!   absorbs a site's echo of what the hub delivered to it.
//! - **Replays**: the delivery id is remembered for [`REPLAY_TTL_SECS`] in the same
//!   transaction as the change; a second delivery is answered as a replay, not applied.
//!
//! Every outcome is an audit entry (target = the source id) with the reason; refusals
//! never quote secrets or dump the body.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::directory::keys::UniqueAttr;
use crate::directory::{Directory, DirectoryError, Stored, WriteContext};
use crate::event::{ChangeEvent, ChangeOp, Origin, RecordChange};
use crate::records::{ConfigData, EntityData, Record, Records};
use crate::source::{Direction, SourceConfig};
use crate::store::{Condition, Item, Key, Store, StoreError, Write, now_epoch};
use crate::sync::audit::{Audit, AuditEntry, AuditOp, AuditStatus};
use provisync_scim::ResourceKind;

/// How long a delivery id is remembered (far beyond the ±5 minute signature window, so
/// a replay is always either refused by its timestamp or recognised).
pub const REPLAY_TTL_SECS: i64 = 24 * 3600;

/// User and group attributes a source may set when it has no `allowed_fields`.
pub const DEFAULT_ALLOWED_FIELDS: &[&str] = &[
    "userName",
    "name",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "emails",
    "phoneNumbers",
    "addresses",
    "photos",
    "ims",
];

/// Keys of the data that are not attributes to set: identity, metadata, and the
/// membership deltas the hub itself sends to sites (ignored when a site echoes them).
const STRUCTURAL: &[&str] = &[
    "schemas",
    "id",
    "externalId",
    "meta",
    "members_added",
    "members_removed",
];

/// The envelope types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvelopeType {
    #[serde(rename = "user.upsert")]
    UserUpsert,
    #[serde(rename = "user.delete")]
    UserDelete,
    #[serde(rename = "group.upsert")]
    GroupUpsert,
    #[serde(rename = "group.delete")]
    GroupDelete,
    #[serde(rename = "entity.upsert")]
    EntityUpsert,
    #[serde(rename = "entity.delete")]
    EntityDelete,
    #[serde(rename = "config.set")]
    ConfigSet,
    #[serde(rename = "config.delete")]
    ConfigDelete,
}

impl EnvelopeType {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvelopeType::UserUpsert => "user.upsert",
            EnvelopeType::UserDelete => "user.delete",
            EnvelopeType::GroupUpsert => "group.upsert",
            EnvelopeType::GroupDelete => "group.delete",
            EnvelopeType::EntityUpsert => "entity.upsert",
            EnvelopeType::EntityDelete => "entity.delete",
            EnvelopeType::ConfigSet => "config.set",
            EnvelopeType::ConfigDelete => "config.delete",
        }
    }

    fn is_delete(self) -> bool {
        matches!(
            self,
            EnvelopeType::UserDelete
                | EnvelopeType::GroupDelete
                | EnvelopeType::EntityDelete
                | EnvelopeType::ConfigDelete
        )
    }

    fn subject(self) -> &'static str {
        match self {
            EnvelopeType::UserUpsert | EnvelopeType::UserDelete => "User",
            EnvelopeType::GroupUpsert | EnvelopeType::GroupDelete => "Group",
            EnvelopeType::EntityUpsert | EnvelopeType::EntityDelete => "Entity",
            EnvelopeType::ConfigSet | EnvelopeType::ConfigDelete => "Config",
        }
    }
}

/// One change as sites send and receive it:
/// `{"type": "user.upsert", "occurred_at": "2025-01-31T12:00:00Z", "data": {…}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: EnvelopeType,
    /// RFC 3339.
    pub occurred_at: String,
    pub data: Value,
}

/// What applying an envelope did. `Created`, `Updated` and `Deleted` all changed the
/// hub (a change event was produced); the webhook answer says `applied` for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new user, group, entity or configuration value.
    Created,
    /// An existing one changed.
    Updated,
    /// One was deleted.
    Deleted,
    /// Nothing to change (the echo of what the hub holds): no change event.
    Unchanged,
    /// Older than what the hub holds for that item: recorded, not applied.
    Stale,
    /// This delivery id was applied before.
    Replay,
}

impl Applied {
    /// The word of the webhook answer and the audit detail.
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Created | Applied::Updated | Applied::Deleted => "applied",
            Applied::Unchanged => "unchanged",
            Applied::Stale => "stale",
            Applied::Replay => "replay",
        }
    }
}

/// Why an envelope was not applied (the webhook edge answers 403, 400 and 503). Messages
/// are shown to the sender: no secrets, no body dumps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// The source's policy forbids it.
    #[error("{0}")]
    Forbidden(String),
    /// The envelope or its data is not what the type needs.
    #[error("{0}")]
    Malformed(String),
    /// The hub's storage failed or a concurrent change won: retry.
    #[error("the hub's storage is unavailable, retry later")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> InboundError {
    InboundError::Unavailable(e.to_string())
}

/// Parses an RFC 3339 timestamp (`occurred_at`).
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Is `incoming` older than `held` (an unreadable `held` never wins)?
fn older(incoming: DateTime<Utc>, held: Option<&str>) -> bool {
    held.and_then(parse_time).is_some_and(|h| incoming < h)
}

/// The source link of a site's user or group: source id + the site's id -> hub id, with
/// the last `occurred_at` applied from that source (kept after a delete, `hub_id` null).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SourceLink {
    hub_id: Option<String>,
    occurred_at: String,
}

fn source_link_key(source: &str, kind: ResourceKind, site_id: &str) -> Key {
    Key::new(
        format!("SRCLINK#{source}#{}#{site_id}", kind.as_str()),
        "SRCLINK",
    )
}

/// The last `occurred_at` applied to a hub user or group, from any source.
fn stamp_key(kind: ResourceKind, hub_id: &str) -> Key {
    Key::new(format!("STAMP#{}#{hub_id}", kind.as_str()), "STAMP")
}

fn replay_key(source: &str, delivery_id: &str) -> Key {
    Key::new(format!("WHID#{source}#{delivery_id}"), "WHID")
}

/// Applies envelopes to the hub.
#[derive(Clone)]
pub struct Inbound {
    directory: Directory,
    audit: Audit,
    records: Records,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}

/// A write decided by a handler: what to commit, and what it means.
struct Outcome {
    applied: Applied,
    op: AuditOp,
    resource_id: String,
    detail: String,
}

impl Inbound {
    pub fn new(directory: Directory, audit: Audit) -> Self {
        let records = Records::new(directory.store().clone());
        Inbound {
            directory,
            audit,
            records,
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.directory.store()
    }

    pub fn records(&self) -> &Records {
        &self.records
    }

    /// Webhooks are accepted only from `push` and `bidirectional` sources that are
    /// enabled (a `pull` source is read by the schedule, never written to the hub by
    /// whoever knows its URL).
    pub fn check_webhook_allowed(source: &SourceConfig) -> Result<(), InboundError> {
        if !source.enabled {
            return Err(InboundError::Forbidden("this source is disabled".into()));
        }
        match source.direction {
            Direction::Push | Direction::Bidirectional => Ok(()),
            Direction::Pull => Err(InboundError::Forbidden(
                "this source is pull-only: the hub reads it, it does not send webhooks".into(),
            )),
        }
    }

    /// Records a refusal decided before [`Inbound::apply`] (signature, direction, a body
    /// that is not an envelope). `what`: the envelope type when known.
    pub async fn record_refusal(&self, source_id: &str, what: Option<EnvelopeType>, reason: &str) {
        let op = what.map(op_for).unwrap_or(AuditOp::Update);
        let entry = AuditEntry::new(source_id, op, AuditStatus::Refused)
            .resource(what.map(EnvelopeType::subject).unwrap_or(""), "")
            .detail(format!(
                "inbound {}: refused: {reason}",
                what.map(EnvelopeType::as_str).unwrap_or("webhook")
            ));
        if let Err(e) = self.audit.record(entry).await {
            tracing::warn!(error = %e, source = %source_id, "audit entry for a refusal not written");
        }
    }

    /// The ids among `site_ids` (a source's own user ids) that no hub user is linked to
    /// from that source: a group's members that a `group.upsert` would leave out. One
    /// batched read.
    pub async fn unlinked_users(
        &self,
        source_id: &str,
        site_ids: &[String],
    ) -> Result<Vec<String>, InboundError> {
        let keys: Vec<Key> = site_ids
            .iter()
            .map(|s| source_link_key(source_id, ResourceKind::User, s))
            .collect();
        let linked: std::collections::HashSet<String> = self
            .store()
            .get_many(&keys)
            .await
            .map_err(unavailable)?
            .into_iter()
            .filter(|i| {
                serde_json::from_slice::<SourceLink>(&i.data).is_ok_and(|l| l.hub_id.is_some())
            })
            .map(|i| i.pk)
            .collect();
        Ok(site_ids
            .iter()
            .zip(&keys)
            .filter(|(_, k)| !linked.contains(&k.pk))
            .map(|(s, _)| s.clone())
            .collect())
    }

    /// Applies one envelope from `source`. `delivery_id`: the webhook id (replay
    /// protection); `None` for pulled changes.
    pub async fn apply(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        delivery_id: Option<&str>,
    ) -> Result<Applied, InboundError> {
        let result = self.apply_inner(source, envelope, delivery_id).await;
        match &result {
            Ok(_) => {}
            Err(InboundError::Unavailable(detail)) => {
                tracing::warn!(source = %source.id, kind = envelope.kind.as_str(), error = %detail, "inbound change not applied (retryable)");
            }
            Err(e) => {
                self.record_refusal(&source.id, Some(envelope.kind), &e.to_string())
                    .await;
            }
        }
        result
    }

    async fn apply_inner(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        delivery_id: Option<&str>,
    ) -> Result<Applied, InboundError> {
        let at = parse_time(&envelope.occurred_at).ok_or_else(|| {
            InboundError::Malformed("occurred_at must be an RFC 3339 timestamp".into())
        })?;
        if let Some(id) = delivery_id {
            let seen = self
                .store()
                .get(&replay_key(&source.id, id))
                .await
                .map_err(unavailable)?;
            if seen.is_some() {
                self.audit_outcome(
                    source,
                    envelope.kind,
                    Outcome {
                        applied: Applied::Replay,
                        op: op_for(envelope.kind),
                        resource_id: String::new(),
                        detail: "replay of a delivery already applied".into(),
                    },
                    None,
                )
                .await;
                return Ok(Applied::Replay);
            }
        }
        let marker = delivery_id.map(|id| {
            let key = replay_key(&source.id, id);
            Write::put_new(
                Item::new(key.pk, key.sk, b"{}".to_vec())
                    .with_expiry(now_epoch() + REPLAY_TTL_SECS),
            )
        });
        let result = match envelope.kind {
            EnvelopeType::UserUpsert | EnvelopeType::GroupUpsert => {
                self.upsert_scim(source, envelope, at, marker.clone()).await
            }
            EnvelopeType::UserDelete | EnvelopeType::GroupDelete => {
                self.delete_scim(source, envelope, at, marker.clone()).await
            }
            EnvelopeType::EntityUpsert | EnvelopeType::EntityDelete => {
                self.entity(source, envelope, at, marker.clone()).await
            }
            EnvelopeType::ConfigSet | EnvelopeType::ConfigDelete => {
                self.config(source, envelope, at, marker.clone()).await
            }
        };
        match result {
            Ok(applied) => Ok(applied),
            // The marker's condition failed: the same delivery was applied concurrently.
            Err(InboundError::Unavailable(d)) if delivery_id.is_some() => {
                let key = replay_key(&source.id, delivery_id.unwrap_or_default());
                match self.store().get(&key).await {
                    Ok(Some(_)) => Ok(Applied::Replay),
                    _ => Err(InboundError::Unavailable(d)),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the audit entry of an outcome now (`None`), or returns its write to commit
    /// with the change.
    async fn audit_outcome(
        &self,
        source: &SourceConfig,
        kind: EnvelopeType,
        o: Outcome,
        into: Option<&mut Vec<Write>>,
    ) {
        let status = match o.applied {
            Applied::Created | Applied::Updated | Applied::Deleted => AuditStatus::Delivered,
            Applied::Unchanged | Applied::Stale | Applied::Replay => AuditStatus::Skipped,
        };
        let mut detail = format!("inbound {}: {}", kind.as_str(), o.applied.as_str());
        if !o.detail.is_empty() {
            detail.push_str(": ");
            detail.push_str(&o.detail);
        }
        let entry = AuditEntry::new(&source.id, o.op, status)
            .resource(kind.subject(), &o.resource_id)
            .detail(detail);
        match into {
            Some(writes) => match self.audit.write_for(entry) {
                Ok(w) => writes.push(w),
                Err(e) => tracing::warn!(error = %e, "inbound audit entry not written"),
            },
            None => {
                if let Err(e) = self.audit.record(entry).await {
                    tracing::warn!(error = %e, "inbound audit entry not written");
                }
            }
        }
    }

    /// Commits writes that carry no change (a no-op's marker and stamps, a stale event's
    /// marker) with the outcome's audit entry.
    async fn commit_quiet(
        &self,
        source: &SourceConfig,
        kind: EnvelopeType,
        mut writes: Vec<Write>,
        o: Outcome,
    ) -> Result<Applied, InboundError> {
        let applied = o.applied;
        self.audit_outcome(source, kind, o, Some(&mut writes)).await;
        if !writes.is_empty() {
            self.store().transact(writes).await.map_err(|e| match e {
                StoreError::ConditionFailed { .. } => {
                    InboundError::Unavailable("concurrent delivery".into())
                }
                e => unavailable(e),
            })?;
        }
        Ok(applied)
    }

    // ---- users and groups ------------------------------------------------------------

    fn scim_kind(kind: EnvelopeType) -> ResourceKind {
        match kind {
            EnvelopeType::GroupUpsert | EnvelopeType::GroupDelete => ResourceKind::Group,
            _ => ResourceKind::User,
        }
    }

    /// The site's id (`externalId`), the data as an object, after the `user_sync` check.
    fn scim_data<'a>(
        source: &SourceConfig,
        envelope: &'a Envelope,
    ) -> Result<(&'a Map<String, Value>, String), InboundError> {
        if !source.user_sync {
            return Err(InboundError::Forbidden(
                "user_sync is off for this source: users and groups are not accepted".into(),
            ));
        }
        let data = envelope.data.as_object().ok_or_else(|| {
            InboundError::Malformed("data must be a SCIM resource (an object)".into())
        })?;
        let site_id = match data.get("externalId") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 && !s.contains('#') => {
                s.clone()
            }
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(InboundError::Malformed(
                    "data.externalId (the site's own id: 1 to 256 characters) is required".into(),
                ));
            }
        };
        Ok((data, site_id))
    }

    /// The hub resource a site's item stands for: through the source link, else by the
    /// unique name. Returns the link as stored too.
    async fn resolve(
        &self,
        source: &SourceConfig,
        kind: ResourceKind,
        site_id: &str,
        data: &Map<String, Value>,
    ) -> Result<(Option<Stored>, Option<(SourceLink, u64)>), InboundError> {
        let link = match self
            .store()
            .get(&source_link_key(&source.id, kind, site_id))
            .await
            .map_err(unavailable)?
        {
            Some(item) => serde_json::from_slice::<SourceLink>(&item.data)
                .ok()
                .map(|l| (l, item.version)),
            None => None,
        };
        if let Some(hub_id) = link.as_ref().and_then(|(l, _)| l.hub_id.as_deref()) {
            match self.directory.load(kind, hub_id).await {
                Ok(s) => return Ok((Some(s), link)),
                Err(DirectoryError::NotFound { .. }) => {}
                Err(e) => return Err(directory_error(e)),
            }
        }
        let (attr, name) = match kind {
            ResourceKind::User => (UniqueAttr::UserName, "userName"),
            ResourceKind::Group => (UniqueAttr::DisplayName, "displayName"),
        };
        let found = match data.get(name).and_then(Value::as_str) {
            Some(v) => self
                .directory
                .find_unique(kind, attr, v)
                .await
                .map_err(directory_error)?,
            None => None,
        };
        Ok((found, link))
    }

    /// The stamp of a hub resource, with its version.
    async fn stamp(
        &self,
        kind: ResourceKind,
        hub_id: &str,
    ) -> Result<Option<(String, u64)>, InboundError> {
        Ok(self
            .store()
            .get(&stamp_key(kind, hub_id))
            .await
            .map_err(unavailable)?
            .and_then(|i| {
                let v: Value = serde_json::from_slice(&i.data).ok()?;
                Some((v.get("occurred_at")?.as_str()?.to_string(), i.version))
            }))
    }

    /// The writes that record `at` as the last change of the item: the source link and
    /// the hub resource's stamp (both conditional on what was read: a concurrent writer
    /// makes this one retry).
    fn stamp_writes(
        source: &SourceConfig,
        kind: ResourceKind,
        site_id: &str,
        hub_id: Option<&str>,
        link: Option<&(SourceLink, u64)>,
        stamp: Option<&(String, u64)>,
        at: &str,
    ) -> Result<Vec<Write>, InboundError> {
        let lk = source_link_key(&source.id, kind, site_id);
        let data = serde_json::to_vec(&SourceLink {
            hub_id: hub_id.map(str::to_string),
            occurred_at: at.to_string(),
        })
        .map_err(unavailable)?;
        let cond = |v: Option<u64>| match v {
            Some(v) => Condition::VersionIs(v),
            None => Condition::NotExists,
        };
        let mut writes = vec![Write::Put {
            item: Item::new(lk.pk, lk.sk, data).with_version(link.map_or(1, |(_, v)| v + 1)),
            condition: cond(link.map(|(_, v)| *v)),
        }];
        if let Some(h) = hub_id {
            let sk = stamp_key(kind, h);
            writes.push(Write::Put {
                item: Item::new(
                    sk.pk,
                    sk.sk,
                    json!({"occurred_at": at}).to_string().into_bytes(),
                )
                .with_version(stamp.map_or(1, |(_, v)| v + 1)),
                condition: cond(stamp.map(|(_, v)| *v)),
            });
        }
        Ok(writes)
    }

    fn allowed(source: &SourceConfig, field: &str) -> bool {
        match &source.allowed_fields {
            Some(list) => list.iter().any(|f| f == field),
            None => DEFAULT_ALLOWED_FIELDS.contains(&field),
        }
    }

    async fn upsert_scim(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        at: DateTime<Utc>,
        marker: Option<Write>,
    ) -> Result<Applied, InboundError> {
        let kind = Self::scim_kind(envelope.kind);
        let (data, site_id) = Self::scim_data(source, envelope)?;
        let (current, link) = self.resolve(source, kind, &site_id, data).await?;
        // Privilege escalation by webhook: a field outside the allowlist may only repeat
        // what the hub holds.
        for (k, v) in data {
            if STRUCTURAL.contains(&k.as_str()) || Self::allowed(source, k) {
                continue;
            }
            let same = current
                .as_ref()
                .and_then(|c| c.resource.get(k))
                .is_some_and(|held| held == v);
            if !same {
                return Err(InboundError::Forbidden(format!(
                    "field `{}` is not in this source's allowed_fields",
                    k.chars().take(64).collect::<String>()
                )));
            }
        }
        let hub_id = current.as_ref().map(|c| c.id().to_string());
        let stamp = match &hub_id {
            Some(h) => self.stamp(kind, h).await?,
            None => None,
        };
        let at_s = envelope.occurred_at.clone();
        let mut quiet: Vec<Write> = marker.iter().cloned().collect();
        if older(at, link.as_ref().map(|(l, _)| l.occurred_at.as_str()))
            || older(at, stamp.as_ref().map(|(s, _)| s.as_str()))
        {
            return self
                .commit_quiet(
                    source,
                    envelope.kind,
                    quiet,
                    Outcome {
                        applied: Applied::Stale,
                        op: op_for(envelope.kind),
                        resource_id: hub_id.unwrap_or_default(),
                        detail: "older than the change the hub holds".into(),
                    },
                )
                .await;
        }
        // Members: the site's ids, translated through its links; unknown ones are left out.
        let members = match (kind, data.get("members")) {
            (ResourceKind::Group, Some(Value::Array(ms))) => {
                let mut out = Vec::new();
                for m in ms {
                    let Some(site_member) = m.get("value").and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    }) else {
                        return Err(InboundError::Malformed(
                            "each member needs a `value` (the site's user id)".into(),
                        ));
                    };
                    let link = self
                        .store()
                        .get(&source_link_key(
                            &source.id,
                            ResourceKind::User,
                            &site_member,
                        ))
                        .await
                        .map_err(unavailable)?
                        .and_then(|i| serde_json::from_slice::<SourceLink>(&i.data).ok())
                        .and_then(|l| l.hub_id);
                    out.extend(link.map(|h| json!({"value": h, "type": "User"})));
                }
                Some(out)
            }
            _ => None,
        };
        let mut body = match &current {
            Some(c) => {
                let mut b = c.resource.clone();
                if let Some(o) = b.as_object_mut() {
                    o.remove("meta");
                    o.remove("groups");
                }
                b
            }
            None => json!({}),
        };
        let obj = body
            .as_object_mut()
            .ok_or_else(|| unavailable("stored resource is not an object"))?;
        for (k, v) in data {
            if STRUCTURAL.contains(&k.as_str()) || k == "members" {
                continue;
            }
            obj.insert(k.clone(), v.clone());
        }
        if !obj.contains_key("schemas") {
            obj.insert("schemas".into(), json!([kind.core_schema()]));
        }
        if kind == ResourceKind::Group {
            let members = match (members, &hub_id) {
                (Some(m), _) => m,
                (None, Some(h)) => self
                    .directory
                    .members_of(h)
                    .await
                    .map_err(directory_error)?
                    .into_iter()
                    .map(|m| json!({"value": m.value, "type": m.kind.unwrap_or_else(|| "User".into())}))
                    .collect(),
                (None, None) => vec![],
            };
            obj.insert("members".into(), Value::Array(members));
        }
        let new_id = hub_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut extra: Vec<Write> = marker.into_iter().collect();
        extra.extend(Self::stamp_writes(
            source,
            kind,
            &site_id,
            Some(&new_id),
            link.as_ref(),
            stamp.as_ref(),
            &at_s,
        )?);
        let (op, applied) = match current {
            Some(_) => (AuditOp::Update, Applied::Updated),
            None => (AuditOp::Create, Applied::Created),
        };
        let mut ctx = WriteContext {
            origin: Some(Origin::Webhook {
                source: source.id.clone(),
            }),
            extra: extra.clone(),
            new_id: Some(new_id.clone()),
        };
        self.audit_outcome(
            source,
            envelope.kind,
            Outcome {
                applied,
                op,
                resource_id: new_id.clone(),
                detail: String::new(),
            },
            Some(&mut ctx.extra),
        )
        .await;
        let written = match &current {
            Some(c) => self
                .directory
                .replace_in(kind, c.id(), &body, None, &ctx)
                .await
                .map(|saved| saved.stored.version != c.version),
            None => self
                .directory
                .create_in(kind, &body, &ctx)
                .await
                .map(|_| true),
        };
        match written {
            Ok(true) => Ok(applied),
            Ok(false) => {
                // Nothing changed (the echo of what the hub delivered): no event; the
                // link, the stamp and the delivery id are still recorded.
                quiet = extra;
                self.commit_quiet(
                    source,
                    envelope.kind,
                    quiet,
                    Outcome {
                        applied: Applied::Unchanged,
                        op,
                        resource_id: new_id,
                        detail: String::new(),
                    },
                )
                .await
            }
            Err(e) => Err(directory_error(e)),
        }
    }

    async fn delete_scim(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        at: DateTime<Utc>,
        marker: Option<Write>,
    ) -> Result<Applied, InboundError> {
        let kind = Self::scim_kind(envelope.kind);
        let (data, site_id) = Self::scim_data(source, envelope)?;
        let (current, link) = self.resolve(source, kind, &site_id, data).await?;
        let hub_id = current.as_ref().map(|c| c.id().to_string());
        let stamp = match &hub_id {
            Some(h) => self.stamp(kind, h).await?,
            None => None,
        };
        let mut extra: Vec<Write> = marker.into_iter().collect();
        if older(at, link.as_ref().map(|(l, _)| l.occurred_at.as_str()))
            || older(at, stamp.as_ref().map(|(s, _)| s.as_str()))
        {
            return self
                .commit_quiet(
                    source,
                    envelope.kind,
                    extra,
                    Outcome {
                        applied: Applied::Stale,
                        op: AuditOp::Delete,
                        resource_id: hub_id.unwrap_or_default(),
                        detail: "older than the change the hub holds".into(),
                    },
                )
                .await;
        }
        // The link stays as a tombstone with the delete's time; the stamp goes with the
        // resource.
        extra.extend(Self::stamp_writes(
            source,
            kind,
            &site_id,
            None,
            link.as_ref(),
            None,
            &envelope.occurred_at,
        )?);
        let Some(current) = current else {
            return self
                .commit_quiet(
                    source,
                    envelope.kind,
                    extra,
                    Outcome {
                        applied: Applied::Unchanged,
                        op: AuditOp::Delete,
                        resource_id: String::new(),
                        detail: "not in the hub".into(),
                    },
                )
                .await;
        };
        if stamp.is_some() {
            extra.push(Write::delete(stamp_key(kind, current.id())));
        }
        let mut ctx = WriteContext {
            origin: Some(Origin::Webhook {
                source: source.id.clone(),
            }),
            extra,
            new_id: None,
        };
        self.audit_outcome(
            source,
            envelope.kind,
            Outcome {
                applied: Applied::Deleted,
                op: AuditOp::Delete,
                resource_id: current.id().to_string(),
                detail: String::new(),
            },
            Some(&mut ctx.extra),
        )
        .await;
        match self
            .directory
            .delete_in(kind, current.id(), None, &ctx)
            .await
        {
            Ok(_) => Ok(Applied::Deleted),
            Err(e) => Err(directory_error(e)),
        }
    }

    // ---- entities and configuration -------------------------------------------------

    async fn entity(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        at: DateTime<Utc>,
        marker: Option<Write>,
    ) -> Result<Applied, InboundError> {
        let data: EntityData = serde_json::from_value(envelope.data.clone()).map_err(|e| {
            InboundError::Malformed(format!(
                "data must be {{\"entity_type\",\"uuid\",\"langcode\"?,\"fields\",\"changed\"?}}: {}",
                short_serde(&e)
            ))
        })?;
        data.validate().map_err(InboundError::Malformed)?;
        if !source.entity_types.iter().any(|t| t == &data.entity_type) {
            return Err(InboundError::Forbidden(format!(
                "entity type `{}` is not in this source's entity_types",
                data.entity_type
            )));
        }
        let key = data.key();
        let held: Option<(Record<EntityData>, u64)> =
            self.records.get(&key).await.map_err(unavailable)?;
        self.write_record(
            source,
            envelope,
            at,
            marker,
            &key,
            held,
            data,
            RecordChange::Entity,
            |r, v| r.to_item(v),
            |a: &EntityData, b: &EntityData| a.fields == b.fields && a.changed == b.changed,
        )
        .await
    }

    async fn config(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        at: DateTime<Utc>,
        marker: Option<Write>,
    ) -> Result<Applied, InboundError> {
        let data: ConfigData = serde_json::from_value(envelope.data.clone()).map_err(|e| {
            InboundError::Malformed(format!(
                "data must be {{\"name\",\"value\"}}: {}",
                short_serde(&e)
            ))
        })?;
        data.validate().map_err(InboundError::Malformed)?;
        if !source
            .config_prefixes
            .iter()
            .any(|p| data.name.starts_with(p.as_str()))
        {
            return Err(InboundError::Forbidden(format!(
                "configuration `{}` is outside this source's config_prefixes",
                data.name
            )));
        }
        let key = data.key();
        let held: Option<(Record<ConfigData>, u64)> =
            self.records.get(&key).await.map_err(unavailable)?;
        self.write_record(
            source,
            envelope,
            at,
            marker,
            &key,
            held,
            data,
            RecordChange::Config,
            |r, v| r.to_item(v),
            |a: &ConfigData, b: &ConfigData| a.value == b.value,
        )
        .await
    }

    /// Last writer wins, no-op, tombstones: the same for both kinds of record.
    #[allow(clippy::too_many_arguments)]
    async fn write_record<T: Clone>(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        at: DateTime<Utc>,
        marker: Option<Write>,
        key: &Key,
        held: Option<(Record<T>, u64)>,
        data: T,
        change: impl Fn(T) -> RecordChange,
        to_item: impl Fn(&Record<T>, u64) -> Result<Item, StoreError>,
        same: impl Fn(&T, &T) -> bool,
    ) -> Result<Applied, InboundError> {
        let delete = envelope.kind.is_delete();
        let op = op_for(envelope.kind);
        let quiet = |applied, detail: &str| Outcome {
            applied,
            op,
            resource_id: key.pk.clone(),
            detail: detail.to_string(),
        };
        let writes: Vec<Write> = marker.into_iter().collect();
        if let Some((r, _)) = &held
            && older(at, Some(&r.occurred_at))
        {
            return self
                .commit_quiet(
                    source,
                    envelope.kind,
                    writes,
                    quiet(Applied::Stale, "older than the change the hub holds"),
                )
                .await;
        }
        let unchanged = match &held {
            None => delete,
            Some((r, _)) if r.deleted => delete,
            Some((r, _)) => !delete && same(&r.data, &data),
        };
        if unchanged {
            return self
                .commit_quiet(source, envelope.kind, writes, quiet(Applied::Unchanged, ""))
                .await;
        }
        // A delete keeps the last state in the tombstone (targets may need it).
        let state = match (&held, delete) {
            (Some((r, _)), true) => r.data.clone(),
            _ => data,
        };
        let record = Record {
            data: state.clone(),
            occurred_at: envelope.occurred_at.clone(),
            source: source.id.clone(),
            deleted: delete,
        };
        let (condition, version) = match &held {
            Some((_, v)) => (Condition::VersionIs(*v), v + 1),
            None => (Condition::NotExists, 1),
        };
        let mut all = vec![Write::Put {
            item: to_item(&record, version).map_err(unavailable)?,
            condition,
        }];
        all.extend(writes);
        let (change_op, applied) = match (delete, &held) {
            (true, _) => (ChangeOp::Delete, Applied::Deleted),
            (false, Some((r, _))) if !r.deleted => (ChangeOp::Update, Applied::Updated),
            (false, _) => (ChangeOp::Create, Applied::Created),
        };
        self.audit_outcome(
            source,
            envelope.kind,
            Outcome {
                applied,
                op,
                resource_id: key.pk.clone(),
                detail: String::new(),
            },
            Some(&mut all),
        )
        .await;
        let event = ChangeEvent::for_record(
            &key.pk,
            change_op,
            Origin::Webhook {
                source: source.id.clone(),
            },
            change(state),
        );
        match self.directory.transact_change(all, event).await {
            Ok(()) => Ok(applied),
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => Err(
                InboundError::Unavailable("a concurrent change to the same item won".into()),
            ),
            Err(StoreError::Invalid(d)) => Err(InboundError::Malformed(format!(
                "the record cannot be stored: {d}"
            ))),
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn op_for(kind: EnvelopeType) -> AuditOp {
    if kind.is_delete() {
        AuditOp::Delete
    } else {
        AuditOp::Update
    }
}

/// A serde message without the input it quotes (no body dumps in answers or audit).
fn short_serde(e: &serde_json::Error) -> String {
    let m = e.to_string();
    let m = m.split(" at line ").next().unwrap_or_default();
    m.chars().take(200).collect()
}

/// A directory error as an inbound error: bad data is 400, the rest is retryable.
fn directory_error(e: DirectoryError) -> InboundError {
    match e {
        // Found a moment ago: a concurrent delete won.
        DirectoryError::NotFound { .. } => {
            InboundError::Unavailable("the resource vanished concurrently".into())
        }
        DirectoryError::Uniqueness { .. }
        | DirectoryError::Conflict
        | DirectoryError::PreconditionFailed { .. }
        | DirectoryError::VersionConflict
        | DirectoryError::Busy
        | DirectoryError::Unavailable
        | DirectoryError::Internal(_) => InboundError::Unavailable(e.to_string()),
        // The SCIM layer's refusals are bad input, but for its internal errors.
        DirectoryError::Scim(e) if e.status >= 500 => InboundError::Unavailable(e.detail),
        DirectoryError::Scim(e) => InboundError::Malformed(e.detail),
        DirectoryError::KeyTooLong { .. }
        | DirectoryError::InvalidMemberId { .. }
        | DirectoryError::InvalidMemberType { .. }
        | DirectoryError::MissingMember { .. }
        | DirectoryError::MemberWithoutValue
        | DirectoryError::MembersInBatch
        | DirectoryError::NotAnObject
        | DirectoryError::StoreRejected(_) => InboundError::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventSink;
    use crate::queue::Queue;
    use crate::queue::store_queue::{StoreQueue, StoreQueueSettings};
    use crate::store::embedded::EmbeddedStore;
    use provisync_scim::SchemaRegistry;

    struct T {
        inbound: Inbound,
        queue: Arc<dyn Queue>,
        dir: Directory,
    }

    fn setup() -> T {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let queue: Arc<dyn Queue> = Arc::new(StoreQueue::new(
            store.clone(),
            "q",
            StoreQueueSettings::default(),
        ));
        let dir = Directory::new(store.clone(), SchemaRegistry::builtin()).with_events(EventSink {
            queue: queue.clone(),
            seal: None,
        });
        T {
            inbound: Inbound::new(dir.clone(), Audit::new(store)),
            queue,
            dir,
        }
    }

    fn source(v: Value) -> SourceConfig {
        let mut base =
            json!({"id": "site-a", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]});
        for (k, x) in v.as_object().unwrap() {
            base[k] = x.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn env(kind: &str, at: &str, data: Value) -> Envelope {
        serde_json::from_value(json!({"type": kind, "occurred_at": at, "data": data})).unwrap()
    }

    /// Every queued event (FIFO groups release one message at a time: drain in rounds).
    async fn events(q: &Arc<dyn Queue>) -> Vec<ChangeEvent> {
        let mut out = Vec::new();
        loop {
            let got = q.receive(100, std::time::Duration::ZERO).await.unwrap();
            if got.is_empty() {
                return out;
            }
            for d in &got {
                q.ack(&d.receipt).await.unwrap();
                out.push(ChangeEvent::from_body(&d.body).unwrap());
            }
        }
    }

    fn alice(given: &str) -> Value {
        json!({"externalId": "42", "userName": "alice", "name": {"givenName": given},
            "emails": [{"value": "alice@example.com", "primary": true}]})
    }

    #[tokio::test]
    async fn user_upsert_echo_stale_replay_delete() {
        let t = setup();
        let src = source(json!({"user_sync": true}));
        let a = |at, given| env("user.upsert", at, alice(given));
        assert_eq!(
            t.inbound
                .apply(&src, &a("2025-01-01T10:00:00Z", "Alice"), Some("d1"))
                .await,
            Ok(Applied::Created)
        );
        let ev = events(&t.queue).await;
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].op, ChangeOp::Create);
        assert_eq!(
            ev[0].origin,
            Origin::Webhook {
                source: "site-a".into()
            }
        );
        let user = t
            .dir
            .find_unique(ResourceKind::User, UniqueAttr::UserName, "alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.resource["name"]["givenName"], "Alice");
        // The site's id is a link, not the hub's externalId.
        assert!(user.resource.get("externalId").is_none());
        // Replay: acknowledged, not applied again.
        assert_eq!(
            t.inbound
                .apply(&src, &a("2025-01-01T10:00:00Z", "Alice"), Some("d1"))
                .await,
            Ok(Applied::Replay)
        );
        // The same content again (an echo): no event.
        assert_eq!(
            t.inbound
                .apply(&src, &a("2025-01-01T10:00:05Z", "Alice"), Some("d2"))
                .await,
            Ok(Applied::Unchanged)
        );
        assert!(events(&t.queue).await.is_empty());
        // Newer change applies; an older one is stale and leaves it alone.
        assert_eq!(
            t.inbound
                .apply(&src, &a("2025-01-01T11:00:00Z", "Alicia"), Some("d3"))
                .await,
            Ok(Applied::Updated)
        );
        assert_eq!(
            t.inbound
                .apply(&src, &a("2025-01-01T10:30:00Z", "Old"), Some("d4"))
                .await,
            Ok(Applied::Stale)
        );
        let now = t.dir.load(ResourceKind::User, user.id()).await.unwrap();
        assert_eq!(now.resource["name"]["givenName"], "Alicia");
        assert_eq!(events(&t.queue).await.len(), 1);
        // Delete through the link.
        assert_eq!(
            t.inbound
                .apply(
                    &src,
                    &env(
                        "user.delete",
                        "2025-01-01T12:00:00Z",
                        json!({"externalId": "42"})
                    ),
                    Some("d5")
                )
                .await,
            Ok(Applied::Deleted)
        );
        assert!(t.dir.load(ResourceKind::User, user.id()).await.is_err());
        // An upsert older than the delete does not bring it back.
        assert_eq!(
            t.inbound
                .apply(&src, &a("2025-01-01T11:30:00Z", "Back"), Some("d6"))
                .await,
            Ok(Applied::Stale)
        );
    }

    #[tokio::test]
    async fn policy_refusals_store_nothing() {
        let t = setup();
        let off = source(json!({}));
        let at = "2025-01-01T10:00:00Z";
        assert!(matches!(
            t.inbound.apply(&off, &env("user.upsert", at, alice("A")), Some("x1")).await,
            Err(InboundError::Forbidden(m)) if m.contains("user_sync")
        ));
        let on = source(json!({"user_sync": true}));
        for (field, value) in [
            ("active", json!(false)),
            ("roles", json!([{"value": "admin"}])),
            ("password", json!("pw")),
        ] {
            let mut d = alice("A");
            d[field] = value;
            let r = t
                .inbound
                .apply(&on, &env("user.upsert", at, d), Some("x2"))
                .await;
            assert!(
                matches!(&r, Err(InboundError::Forbidden(m)) if m.contains(field)),
                "{r:?}"
            );
        }
        // Explicitly allowed: accepted.
        let allow = source(
            json!({"user_sync": true, "allowed_fields": ["userName", "name", "emails", "active"]}),
        );
        let mut d = alice("A");
        d["active"] = json!(true);
        assert_eq!(
            t.inbound
                .apply(&allow, &env("user.upsert", at, d), Some("x3"))
                .await,
            Ok(Applied::Created)
        );
        // Entities and configuration outside the allowlists.
        let ent = env(
            "entity.upsert",
            at,
            json!({"entity_type": "node", "uuid": "u1", "fields": {"title": "T"}}),
        );
        assert!(matches!(
            t.inbound.apply(&on, &ent, None).await,
            Err(InboundError::Forbidden(_))
        ));
        let cfg = env(
            "config.set",
            at,
            json!({"name": "system.site", "value": {"name": "X"}}),
        );
        let some = source(json!({"config_prefixes": ["shared."]}));
        assert!(matches!(
            t.inbound.apply(&some, &cfg, None).await,
            Err(InboundError::Forbidden(_))
        ));
        assert!(
            t.inbound
                .records()
                .get::<ConfigData>(&Key::new("CONFIG#system.site", "CONFIG"))
                .await
                .unwrap()
                .is_none()
        );
        // Malformed.
        assert!(matches!(
            t.inbound
                .apply(&on, &env("user.upsert", "yesterday", alice("A")), None)
                .await,
            Err(InboundError::Malformed(_))
        ));
        assert!(matches!(
            t.inbound
                .apply(
                    &on,
                    &env("user.upsert", at, json!({"userName": "no-id"})),
                    None
                )
                .await,
            Err(InboundError::Malformed(_))
        ));
        // The refusals are audited with their reason.
        let (entries, _) = t.inbound.audit.query(&Default::default()).await.unwrap();
        assert!(
            entries
                .iter()
                .any(|e| e.status == AuditStatus::Refused && e.detail.contains("allowed_fields"))
        );
    }

    #[tokio::test]
    async fn entities_and_config_last_writer_wins() {
        let t = setup();
        let src = source(json!({"entity_types": ["node"], "config_prefixes": ["shared."]}));
        let node = |at, title| {
            env(
                "entity.upsert",
                at,
                json!({"entity_type": "node", "uuid": "n1", "langcode": "en", "fields": {"title": title}}),
            )
        };
        assert_eq!(
            t.inbound
                .apply(&src, &node("2025-01-01T10:00:00Z", "One"), Some("e1"))
                .await,
            Ok(Applied::Created)
        );
        assert_eq!(
            t.inbound
                .apply(&src, &node("2025-01-01T10:01:00Z", "One"), Some("e2"))
                .await,
            Ok(Applied::Unchanged)
        );
        assert_eq!(
            t.inbound
                .apply(&src, &node("2025-01-01T09:00:00Z", "Zero"), Some("e3"))
                .await,
            Ok(Applied::Stale)
        );
        let ev = events(&t.queue).await;
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].resource_id, "ENTITY#node#n1#en");
        assert!(
            matches!(&ev[0].record, Some(RecordChange::Entity(e)) if e.fields["title"] == "One")
        );
        let set = |at, v| {
            env(
                "config.set",
                at,
                json!({"name": "shared.colors", "value": v}),
            )
        };
        assert_eq!(
            t.inbound
                .apply(&src, &set("2025-01-01T10:00:00Z", json!({"a": 1})), None)
                .await,
            Ok(Applied::Created)
        );
        assert_eq!(
            t.inbound
                .apply(
                    &src,
                    &env(
                        "config.delete",
                        "2025-01-01T10:05:00Z",
                        json!({"name": "shared.colors"})
                    ),
                    None
                )
                .await,
            Ok(Applied::Deleted)
        );
        assert_eq!(
            t.inbound
                .apply(&src, &set("2025-01-01T10:03:00Z", json!({"a": 2})), None)
                .await,
            Ok(Applied::Stale)
        );
        let export = t
            .inbound
            .records()
            .export_entities(None, None, 100)
            .await
            .unwrap();
        assert_eq!(export.records.len(), 1);
        assert!(
            t.inbound
                .records()
                .export_config(None, None, 100)
                .await
                .unwrap()
                .records
                .is_empty()
        );
        let ev = events(&t.queue).await;
        assert_eq!(
            ev.iter().map(|e| e.op).collect::<Vec<_>>(),
            vec![ChangeOp::Create, ChangeOp::Delete]
        );
    }

    #[tokio::test]
    async fn unlinked_users_are_those_without_a_live_link() {
        let t = setup();
        let src = source(json!({"user_sync": true}));
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            t.inbound
                .unlinked_users(&src.id, &ids(&["42", "43"]))
                .await
                .unwrap(),
            ids(&["42", "43"])
        );
        t.inbound
            .apply(
                &src,
                &env("user.upsert", "2025-01-01T10:00:00Z", alice("A")),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            t.inbound
                .unlinked_users(&src.id, &ids(&["42", "43"]))
                .await
                .unwrap(),
            ids(&["43"])
        );
        // Another source's link does not count.
        assert_eq!(
            t.inbound
                .unlinked_users("site-b", &ids(&["42"]))
                .await
                .unwrap(),
            ids(&["42"])
        );
        // After a delete the link is a tombstone: unlinked again.
        t.inbound
            .apply(
                &src,
                &env(
                    "user.delete",
                    "2025-01-01T11:00:00Z",
                    json!({"externalId": "42"}),
                ),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            t.inbound
                .unlinked_users(&src.id, &ids(&["42"]))
                .await
                .unwrap(),
            ids(&["42"])
        );
    }
}
