//! Users and groups from sources: the source's id resolved to a hub resource under the
//! ownership rules ([`super::ownership`]), the last-writer-wins stamp, upserts within
//! `allowed_fields`, deletes of what the source created and unlinks of the rest.

use super::ownership::{Claim, Linked, Ownership, SourceLink, source_link_key, tombstone};
use super::{
    Applied, DEFAULT_ALLOWED_FIELDS, Envelope, EnvelopeType, Inbound, InboundError, Outcome,
    STRUCTURAL, directory_error, not_newer, older, op_for, stamp_key, unavailable,
};
use crate::directory::{DirectoryError, WriteContext};
use crate::event::Origin;
use crate::source::SourceConfig;
use crate::store::{Condition, Item, Write, now_epoch};
use crate::sync::audit::AuditOp;
use chrono::{DateTime, Utc};
use provisync_scim::ResourceKind;
use serde_json::{Map, Value, json};

/// How long a deleted resource's stamp is kept as a tombstone: longer than any webhook
/// window (at most 7 days), so that a change no newer than the delete, from another
/// source still linked to the resource, is stale rather than a resurrection.
pub const STAMP_TOMBSTONE_TTL_SECS: i64 = 30 * 24 * 3600;

/// A concurrent change to the same item won: the sender retries (503), and the retry
/// sees it.
fn raced() -> InboundError {
    InboundError::Unavailable("a concurrent change to the same item won, retry".into())
}

/// The last `occurred_at` applied to a hub resource from any source.
struct Stamp {
    occurred_at: String,
    /// A source deleted the resource at `occurred_at`.
    deleted: bool,
    version: u64,
}

impl Inbound {
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

    /// The stamp of a hub resource (the last `occurred_at` applied to it from any
    /// source; a tombstone once a source deleted it), with its version.
    async fn stamp(&self, kind: ResourceKind, hub_id: &str) -> Result<Option<Stamp>, InboundError> {
        Ok(self
            .store()
            .get(&stamp_key(kind, hub_id))
            .await
            .map_err(unavailable)?
            .and_then(|i| {
                let v: Value = serde_json::from_slice(&i.data).ok()?;
                Some(Stamp {
                    occurred_at: v.get("occurred_at")?.as_str()?.to_string(),
                    deleted: v.get("deleted").and_then(Value::as_bool).unwrap_or(false),
                    version: i.version,
                })
            }))
    }

    /// The write of a source link, conditional on the version read (a concurrent writer
    /// makes this one retry).
    fn link_write(
        source: &SourceConfig,
        kind: ResourceKind,
        site_id: &str,
        link: &SourceLink,
        held: Option<u64>,
    ) -> Result<Write, InboundError> {
        let lk = source_link_key(&source.id, kind, site_id);
        let data = serde_json::to_vec(link).map_err(unavailable)?;
        Ok(Write::Put {
            item: Item::new(lk.pk, lk.sk, data).with_version(held.map_or(1, |v| v + 1)),
            condition: held.map_or(Condition::NotExists, Condition::VersionIs),
        })
    }

    /// The write of a hub resource's stamp at `at`, conditional on the version read. A
    /// deleted resource's stamp stays as a tombstone for [`STAMP_TOMBSTONE_TTL_SECS`].
    fn stamp_write(
        kind: ResourceKind,
        hub_id: &str,
        held: Option<&Stamp>,
        at: &str,
        deleted: bool,
    ) -> Write {
        let sk = stamp_key(kind, hub_id);
        let mut data = json!({"occurred_at": at});
        let mut item =
            Item::new(sk.pk, sk.sk, Vec::new()).with_version(held.map_or(1, |s| s.version + 1));
        if deleted {
            data["deleted"] = json!(true);
            item = item.with_expiry(now_epoch().saturating_add(STAMP_TOMBSTONE_TTL_SECS));
        }
        item.data = data.to_string().into_bytes();
        Write::Put {
            item,
            condition: held.map_or(Condition::NotExists, |s| Condition::VersionIs(s.version)),
        }
    }

    fn allowed(source: &SourceConfig, field: &str) -> bool {
        match &source.allowed_fields {
            Some(list) => list.iter().any(|f| f == field),
            None => DEFAULT_ALLOWED_FIELDS.contains(&field),
        }
    }

    /// A group's members as the source names them (its own user ids), translated through
    /// its links: a source can only name users linked to it (created, adopted or
    /// delivered to it); the others are left out.
    async fn translate_members(
        &self,
        source: &SourceConfig,
        members: &[Value],
    ) -> Result<Vec<Value>, InboundError> {
        let mut out = Vec::new();
        for m in members {
            let Some(site_member) = m.get("value").and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }) else {
                return Err(InboundError::Malformed(
                    "each member needs a `value` (the site's user id)".into(),
                ));
            };
            let hub_id = self
                .read_link(source, ResourceKind::User, &site_member)
                .await?
                .and_then(|(l, _)| l.hub_id);
            out.extend(hub_id.map(|h| json!({"value": h, "type": "User"})));
        }
        Ok(out)
    }

    /// Did a concurrent delivery link this item since `held` was read?
    async fn raced(
        &self,
        source: &SourceConfig,
        kind: ResourceKind,
        site_id: &str,
        held: Option<&SourceLink>,
    ) -> Result<bool, InboundError> {
        let now = self.read_link(source, kind, site_id).await?;
        let now_live = now.as_ref().and_then(|(l, _)| l.live());
        Ok(now_live.is_some() && now_live != held.and_then(SourceLink::live))
    }

    /// The answer to a change older than what the hub holds: recorded, not applied.
    async fn stale(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        marker: Option<Write>,
        hub_id: &str,
    ) -> Result<Applied, InboundError> {
        self.commit_quiet(
            source,
            envelope.kind,
            marker.into_iter().collect(),
            Outcome::new(Applied::Stale, op_for(envelope.kind), hub_id)
                .detail("older than the change the hub holds"),
        )
        .await
    }

    pub(super) async fn upsert_scim(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        at: DateTime<Utc>,
        marker: Option<Write>,
    ) -> Result<Applied, InboundError> {
        let kind = Self::scim_kind(envelope.kind);
        let (data, site_id) = Self::scim_data(source, envelope)?;
        let link = self.read_link(source, kind, &site_id).await?;
        let held_link = link.as_ref().map(|(l, _)| l);
        let linked = self.follow(kind, held_link).await?;
        // Last writer wins against this source's own history first: an older change, or
        // one that would bring back what was deleted (or unlinked) and is no newer than
        // that.
        let link_at = held_link.map(|l| l.occurred_at.as_str());
        let back = !matches!(linked, Linked::Present(..));
        if older(at, link_at) || (back && not_newer(at, link_at)) {
            let id = held_link.and_then(SourceLink::live).unwrap_or_default();
            return self.stale(source, envelope, marker, id).await;
        }
        // A resource deleted since, by another source: its stamp is a tombstone.
        if let Linked::Gone(gone) = &linked
            && let Some(st) = self.stamp(kind, gone).await?
            && st.deleted
            && not_newer(at, Some(&st.occurred_at))
        {
            return self.stale(source, envelope, marker, gone).await;
        }
        let (current, claim) = match linked {
            // Received from the hub, and the hub no longer sends it to this site (it left
            // the twin target's scope, or the target stopped taking users): no longer the
            // site's to edit.
            Linked::Present(s, Ownership::Delivered)
                if !self.still_delivered(source, kind, &s).await? =>
            {
                return Err(InboundError::Forbidden(format!(
                    "the hub no longer sends this {} to this source's site (out of its target's \
                     scope_filter, or the target takes no users): its changes are not taken",
                    match kind {
                        ResourceKind::User => "user",
                        ResourceKind::Group => "group",
                    }
                )));
            }
            Linked::Present(s, ownership) => (
                Some(s),
                Claim {
                    ownership,
                    matched_by: None,
                    new_link: false,
                },
            ),
            Linked::Nothing | Linked::Gone(_) => {
                match self.claim_existing(source, kind, data).await {
                    Ok(Some((s, claim))) => (Some(s), claim),
                    Ok(None) => (
                        None,
                        Claim {
                            ownership: Ownership::Created,
                            matched_by: None,
                            new_link: true,
                        },
                    ),
                    // The name may have been taken a moment ago by this very item (a
                    // concurrent delivery of it): then a retry updates it.
                    Err(InboundError::Conflict(_))
                        if self.raced(source, kind, &site_id, held_link).await? =>
                    {
                        return Err(raced());
                    }
                    Err(e) => return Err(e),
                }
            }
        };
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
        if older(at, stamp.as_ref().map(|s| s.occurred_at.as_str())) {
            return self
                .stale(
                    source,
                    envelope,
                    marker,
                    hub_id.as_deref().unwrap_or_default(),
                )
                .await;
        }
        let members = match (kind, data.get("members")) {
            (ResourceKind::Group, Some(Value::Array(ms))) => {
                Some(self.translate_members(source, ms).await?)
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
        let at_s = envelope.occurred_at.as_str();
        let mut extra: Vec<Write> = marker.into_iter().collect();
        extra.push(Self::link_write(
            source,
            kind,
            &site_id,
            &claim.link(held_link, Some(&new_id), at_s),
            link.as_ref().map(|(_, v)| *v),
        )?);
        extra.push(Self::stamp_write(
            kind,
            &new_id,
            stamp.as_ref(),
            at_s,
            false,
        ));
        let (op, applied) = match current {
            Some(_) => (AuditOp::Update, Applied::Updated),
            None => (AuditOp::Create, Applied::Created),
        };
        let linked_now = claim.describe(source, kind);
        let outcome = |applied| Outcome {
            linked: linked_now.clone(),
            ..Outcome::new(applied, op, new_id.clone())
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
            outcome(applied),
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
            // Nothing changed (the echo of what the hub delivered): no event; the link,
            // the stamp and the delivery id are still recorded.
            Ok(false) => {
                self.commit_quiet(source, envelope.kind, extra, outcome(Applied::Unchanged))
                    .await
            }
            // A create that lost a race for the name: if this source holds or may claim
            // what took it (its own concurrent create of the same item, or a resource it
            // may adopt), a retry resolves it; otherwise the name is another's (409).
            Err(e @ DirectoryError::Uniqueness { .. }) if current.is_none() => {
                let mine = self.raced(source, kind, &site_id, held_link).await?
                    || !matches!(
                        self.claim_existing(source, kind, data).await,
                        Err(InboundError::Conflict(_))
                    );
                Err(if mine { raced() } else { directory_error(e) })
            }
            Err(e) => Err(directory_error(e)),
        }
    }

    pub(super) async fn delete_scim(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        at: DateTime<Utc>,
        marker: Option<Write>,
    ) -> Result<Applied, InboundError> {
        let kind = Self::scim_kind(envelope.kind);
        let (_, site_id) = Self::scim_data(source, envelope)?;
        // Only through the link: a delete never looks a resource up by name.
        let link = self.read_link(source, kind, &site_id).await?;
        let held_link = link.as_ref().map(|(l, _)| l);
        let linked = self.follow(kind, held_link).await?;
        if older(at, held_link.map(|l| l.occurred_at.as_str())) {
            let id = held_link.and_then(SourceLink::live).unwrap_or_default();
            return self.stale(source, envelope, marker, id).await;
        }
        let why = match &linked {
            Linked::Gone(_) => "not in the hub",
            _ => "nothing of this source's by that id",
        };
        let present = match linked {
            Linked::Present(s, ownership) => Some((s, ownership)),
            Linked::Nothing | Linked::Gone(_) => None,
        };
        let stamp = match &present {
            Some((s, _)) => self.stamp(kind, s.id()).await?,
            None => None,
        };
        if let Some((s, _)) = &present
            && older(at, stamp.as_ref().map(|st| st.occurred_at.as_str()))
        {
            return self.stale(source, envelope, marker, s.id()).await;
        }
        let mut extra: Vec<Write> = marker.into_iter().collect();
        // The link stays as a tombstone with the delete's time.
        extra.push(Self::link_write(
            source,
            kind,
            &site_id,
            &tombstone(held_link, &envelope.occurred_at),
            link.as_ref().map(|(_, v)| *v),
        )?);
        let Some((current, ownership)) = present else {
            return self
                .commit_quiet(
                    source,
                    envelope.kind,
                    extra,
                    Outcome::new(Applied::Unchanged, AuditOp::Delete, "").detail(why),
                )
                .await;
        };
        if !ownership.may_delete() {
            // Adopted or delivered: the source lets go of it; the hub keeps it.
            return self
                .commit_quiet(
                    source,
                    envelope.kind,
                    extra,
                    Outcome::new(Applied::Unlinked, AuditOp::Delete, current.id()).detail(format!(
                        "{} by this source, not created by it: unlinked, not deleted",
                        match ownership {
                            Ownership::Delivered => "delivered to",
                            _ => "adopted",
                        }
                    )),
                )
                .await;
        }
        extra.push(Self::stamp_write(
            kind,
            current.id(),
            stamp.as_ref(),
            &envelope.occurred_at,
            true,
        ));
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
            Outcome::new(Applied::Deleted, AuditOp::Delete, current.id()),
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
}
