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
//! - **Ownership** ([`ownership`]): a source changes only what it created or what is
//!   linked to it. A site's user is found through the source link (source id + the
//!   site's id, `externalId` in the data); with no link it is created, and a `userName`
//!   (group: `displayName`) held by a hub resource the source may not claim is refused
//!   (409), never taken over. A source claims an existing resource only when it adopts it
//!   (`adopt_existing`) or when the hub delivers it to the source's twin webhook target
//!   (a bidirectional site); a delete of a claimed resource only unlinks it. The site's
//!   id is never written into the hub resource's `externalId` (two sites would fight
//!   over it, and each echo would look like a change).
//! - **Last writer wins** by `occurred_at`: each item keeps the last applied one (the
//!   source link and a per-hub-resource stamp for users and groups, the record itself for
//!   entities and configuration); an older event is recorded as stale and not applied.
//!   A delete leaves tombstones (the link, the stamp) that win ties: a change stamped no
//!   later than the delete cannot bring the resource back.
//! - **No-op**: an upsert that changes nothing produces no change event, which is what
//!   absorbs a site's echo of what the hub delivered to it.
//! - **Replays and the window** (webhooks): the delivery id (Standard Webhooks: the
//!   signed `webhook-id`; GitHub scheme: the SHA-256 of the signed body, since
//!   `X-GitHub-Delivery` is not signed) is remembered in the same transaction as the
//!   change, for longer than the window; a second delivery is answered as a replay, not
//!   applied. An `occurred_at` older than the source's `max_event_age_secs` or more than
//!   [`FUTURE_SKEW_SECS`] ahead is refused. Pulled changes have neither.
//!
//! Every outcome is an audit entry (target = the source id, actor `source:{id}`) with the
//! reason; refusals never quote secrets or dump the body, and a flood of them costs a
//! bounded number of writes ([`refusals`]).

mod ownership;
mod records;
mod refusals;
mod scim;

pub use ownership::{MatchedBy, Ownership};

use crate::store::keyspace;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::directory::{Directory, DirectoryError};
use crate::records::Records;
use crate::source::{Direction, SourceConfig};
use crate::store::{Item, Key, Store, StoreError, Write, now_epoch};
use crate::sync::audit::{Audit, AuditEntry, AuditOp, AuditStatus};
use crate::target::Targets;
use provisync_scim::ResourceKind;

/// How far ahead of the hub's clock a webhook's `occurred_at` may be (clock skew). A
/// change stamped in the future would otherwise win every later one.
pub const FUTURE_SKEW_SECS: i64 = 5 * 60;

/// How long a delivery id is remembered for `source`: as long as its envelopes are
/// accepted (`max_event_age_secs` plus the skew), so that a replay is always either
/// refused by its `occurred_at` or recognised.
pub fn replay_ttl_secs(source: &SourceConfig) -> i64 {
    i64::try_from(source.max_event_age_secs())
        .unwrap_or(i64::MAX / 2)
        .saturating_add(FUTURE_SKEW_SECS)
}

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
    /// Every type, in the order the docs list them.
    pub const ALL: [EnvelopeType; 8] = [
        EnvelopeType::UserUpsert,
        EnvelopeType::UserDelete,
        EnvelopeType::GroupUpsert,
        EnvelopeType::GroupDelete,
        EnvelopeType::EntityUpsert,
        EnvelopeType::EntityDelete,
        EnvelopeType::ConfigSet,
        EnvelopeType::ConfigDelete,
    ];

    /// The type named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<EnvelopeType> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

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
    /// A delete of a resource the source did not create: its link is removed, the
    /// resource kept.
    Unlinked,
}

impl Applied {
    /// The word of the webhook answer and the audit detail.
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Created | Applied::Updated | Applied::Deleted => "applied",
            Applied::Unchanged => "unchanged",
            Applied::Stale => "stale",
            Applied::Replay => "replay",
            Applied::Unlinked => "unlinked",
        }
    }
}

/// Why an envelope was not applied (the webhook edge answers 403, 400, 409 and 503).
/// Messages are shown to the sender: no secrets, no body dumps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// The source's policy forbids it.
    #[error("{0}")]
    Forbidden(String),
    /// The envelope or its data is not what the type needs (or its `occurred_at` is
    /// outside the window).
    #[error("{0}")]
    Malformed(String),
    /// It contradicts what the hub holds: a unique name taken by another resource, or by
    /// one the source may not claim. Retrying the same change will not help.
    #[error("{0}")]
    Conflict(String),
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

/// Is `incoming` no later than `held`? What a tombstone asks of a change that would
/// bring its resource back: ties go to the delete.
fn not_newer(incoming: DateTime<Utc>, held: Option<&str>) -> bool {
    held.and_then(parse_time).is_some_and(|h| incoming <= h)
}

/// The last `occurred_at` applied to a hub user or group, from any source.
fn stamp_key(kind: ResourceKind, hub_id: &str) -> Key {
    Key::new(
        format!("{}{}#{hub_id}", keyspace::STAMP, kind.as_str()),
        "STAMP",
    )
}

fn replay_key(source: &str, delivery_id: &str) -> Key {
    Key::new(format!("{}{source}#{delivery_id}", keyspace::WHID), "WHID")
}

/// Applies envelopes to the hub.
#[derive(Clone)]
pub struct Inbound {
    directory: Directory,
    audit: Audit,
    records: Records,
    /// The webhook targets (a bidirectional source's twin).
    targets: Targets,
    /// Which refusals are audited one by one (the rest are counted).
    refusals: Arc<refusals::RefusalGate>,
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
    /// A new link to an existing resource (adopted, delivered), audited as `linked`.
    linked: Option<String>,
}

impl Outcome {
    fn new(applied: Applied, op: AuditOp, resource_id: impl Into<String>) -> Self {
        Outcome {
            applied,
            op,
            resource_id: resource_id.into(),
            detail: String::new(),
            linked: None,
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

impl Inbound {
    pub fn new(directory: Directory, audit: Audit, targets: Targets) -> Self {
        let records = Records::new(directory.store().clone());
        Inbound {
            directory,
            audit,
            records,
            targets,
            refusals: Arc::new(refusals::RefusalGate::new(refusals::REFUSAL_WINDOW)),
        }
    }

    /// The same, with another window for aggregating refusals (tests).
    pub fn with_refusal_window(mut self, window: std::time::Duration) -> Self {
        self.refusals = Arc::new(refusals::RefusalGate::new(window));
        self
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
    /// that is not an envelope), or by it. `what`: the envelope type when known.
    ///
    /// The first refusal of a source for a reason in each window is an audit entry; the
    /// ones after it in that window are counted and logged, and the count goes into the
    /// next entry for that reason ([`refusals`]): a flood of bad requests costs a bounded
    /// number of writes.
    pub async fn record_refusal(&self, source_id: &str, what: Option<EnvelopeType>, reason: &str) {
        let what_s = what.map(EnvelopeType::as_str).unwrap_or("webhook");
        let mut detail = format!("inbound {what_s}: refused: {reason}");
        match self.refusals.admit(source_id, &detail) {
            refusals::Admit::Suppress => return,
            refusals::Admit::Record { suppressed: 0 } => {}
            refusals::Admit::Record { suppressed } => {
                detail.push_str(&format!(
                    " (and {suppressed} more like it in the {} s before, counted, not recorded one by one)",
                    self.refusals.window().as_secs()
                ));
            }
        }
        let op = what.map(op_for).unwrap_or(AuditOp::Update);
        let entry = AuditEntry::new(source_id, op, AuditStatus::Refused)
            .resource(what.map(EnvelopeType::subject).unwrap_or(""), "")
            .detail(detail)
            .actor(actor(source_id));
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
            .map(|s| ownership::source_link_key(source_id, ResourceKind::User, s))
            .collect();
        let linked: std::collections::HashSet<String> = self
            .store()
            .get_many(&keys)
            .await
            .map_err(unavailable)?
            .into_iter()
            .filter(|i| {
                serde_json::from_slice::<ownership::SourceLink>(&i.data)
                    .is_ok_and(|l| l.live().is_some())
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
                let reason = match item_label(envelope) {
                    Some(item) => format!("{e} [{item}]"),
                    None => e.to_string(),
                };
                self.record_refusal(&source.id, Some(envelope.kind), &reason)
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
        if delivery_id.is_some() {
            check_window(source, at, Utc::now())?;
        }
        if let Some(id) = delivery_id {
            let seen = self
                .store()
                .get(&replay_key(&source.id, id))
                .await
                .map_err(unavailable)?;
            if seen.is_some() {
                // A captured delivery may be replayed at will: its entries are gated like
                // refusals (one per source and kind per window).
                let reason = format!("replay of {}", envelope.kind.as_str());
                if let refusals::Admit::Record { suppressed } =
                    self.refusals.admit(&source.id, &reason)
                {
                    let mut detail = "replay of a delivery already applied".to_string();
                    if suppressed > 0 {
                        detail.push_str(&format!(" (and {suppressed} more before)"));
                    }
                    self.audit_outcome(
                        source,
                        envelope.kind,
                        Outcome::new(Applied::Replay, op_for(envelope.kind), "").detail(detail),
                        None,
                    )
                    .await;
                }
                return Ok(Applied::Replay);
            }
        }
        let marker = delivery_id.map(|id| {
            let key = replay_key(&source.id, id);
            Write::put_new(
                Item::new(key.pk, key.sk, b"{}".to_vec())
                    .with_expiry(now_epoch().saturating_add(replay_ttl_secs(source))),
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
        match (result, delivery_id) {
            // A condition failed (the marker's, or a uniqueness key's): the same delivery
            // may have been applied concurrently.
            (Err(e @ (InboundError::Unavailable(_) | InboundError::Conflict(_))), Some(id)) => {
                match self.store().get(&replay_key(&source.id, id)).await {
                    Ok(Some(_)) => Ok(Applied::Replay),
                    _ => Err(e),
                }
            }
            (result, _) => result,
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
        let status = match (o.applied, &o.linked) {
            (Applied::Unlinked, _) => AuditStatus::Unlinked,
            (_, Some(_)) => AuditStatus::Linked,
            (Applied::Created | Applied::Updated | Applied::Deleted, None) => {
                AuditStatus::Delivered
            }
            (Applied::Unchanged | Applied::Stale | Applied::Replay, None) => AuditStatus::Skipped,
        };
        let mut detail = format!("inbound {}: {}", kind.as_str(), o.applied.as_str());
        for part in [o.linked.as_deref(), Some(o.detail.as_str())]
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty())
        {
            detail.push_str(": ");
            detail.push_str(part);
        }
        let entry = AuditEntry::new(&source.id, o.op, status)
            .resource(kind.subject(), &o.resource_id)
            .detail(detail)
            .actor(actor(&source.id));
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
}

/// Which item an envelope is about, for the audit entry of its refusal (the source's own
/// id: `externalId`, the entity's type and uuid, the configuration name), cut short.
fn item_label(envelope: &Envelope) -> Option<String> {
    let d = &envelope.data;
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let label = match envelope.kind.subject() {
        "User" | "Group" => format!("externalId {}", text(d.get("externalId")?)?),
        "Entity" => format!("{} {}", text(d.get("entity_type")?)?, text(d.get("uuid")?)?),
        _ => format!("name {}", text(d.get("name")?)?),
    };
    Some(label.chars().take(100).collect())
}

/// The audit entries' actor of what a source did.
fn actor(source_id: &str) -> String {
    format!("source:{source_id}")
}

/// A webhook's `occurred_at` must be within the source's window: at most
/// `max_event_age_secs` old and at most [`FUTURE_SKEW_SECS`] ahead. (Replay markers live as
/// long as the window, so an envelope is either refused here or recognised as a replay.)
fn check_window(
    source: &SourceConfig,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), InboundError> {
    let age = now.signed_duration_since(at).num_seconds();
    let max_age = i64::try_from(source.max_event_age_secs()).unwrap_or(i64::MAX);
    if age > max_age {
        return Err(InboundError::Malformed(format!(
            "occurred_at is more than {max_age} seconds old (this source's max_event_age_secs): \
             send the current state with a new occurred_at"
        )));
    }
    if -age > FUTURE_SKEW_SECS {
        return Err(InboundError::Malformed(format!(
            "occurred_at is more than {FUTURE_SKEW_SECS} seconds ahead of the hub's clock"
        )));
    }
    Ok(())
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

/// A directory error as an inbound error: bad data is 400, a taken unique name 409, the
/// rest is retryable.
fn directory_error(e: DirectoryError) -> InboundError {
    match e {
        // Found a moment ago: a concurrent delete won.
        DirectoryError::NotFound { .. } => {
            InboundError::Unavailable("the resource vanished concurrently".into())
        }
        // Retrying the same change cannot succeed: the sender must not retry forever.
        DirectoryError::Uniqueness { .. } => InboundError::Conflict(e.to_string()),
        DirectoryError::Conflict
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
        | DirectoryError::Cursor(_)
        | DirectoryError::StoreRejected(_) => InboundError::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
