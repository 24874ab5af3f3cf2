//! Delivery to a site (a `webhook` target): the change event itself, as a signed envelope
//! (`webhook-id` = event id), within the site's filters and its `scope_filter`.
//!
//! A site keeps no account ids of its own for the hub, but the hub keeps a link per user
//! it sent a site (target id = the hub id), so that a user leaving the site's scope is
//! taken off it: the site gets a `user.delete` naming only the hub id (never the data of
//! a user outside its scope), and the link stays, disabled, as "not at the site" so that
//! later changes of that user send nothing. A user with no link that is outside the scope
//! may have been sent before sites had links: it gets the `user.delete` once too.
//!
//! A `user.delete`, an update that sends an inactive user the site last had active, a
//! `group.delete` and a group's members removed ask the target's deprovision guard first,
//! as any target's deprovisions do: beyond its allowance they are held for an operator,
//! and a release sends them.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::deliver::{Deliverer, DeliveryOutcome, default_op};
use super::deliver_guard::label_of;
use super::link::LinkChange;
use crate::connector::{Connector, ConnectorError};
use crate::event::{ChangeEvent, ChangeOp};
use crate::sync::audit::AuditOp;
use crate::sync::deliver::retryable;
use crate::sync::envelope::envelope_for;
use crate::target::{TargetConfig, WebhookTarget};
use provisync_scim::ResourceKind;

type Failure = (AuditOp, ConnectorError);

impl Deliverer {
    pub(super) async fn deliver_webhook(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        w: &WebhookTarget,
    ) -> Result<(DeliveryOutcome, LinkChange), Failure> {
        let op = default_op(event);
        let scoped = self.scoped_members(event, t).await?;
        let event = scoped.as_ref().unwrap_or(event);
        let Some(envelope) = envelope_for(w, event) else {
            return Ok((
                DeliveryOutcome::Skipped("not in this site's filters"),
                LinkChange::Keep,
            ));
        };
        // Entity and configuration records, and groups: no scope. A group's deletion and
        // its members' removals go through the guard, counted as at any target.
        if event.record.is_some() || event.resource_type != ResourceKind::User {
            if event.record.is_none()
                && let Some(held) = self.group_guard(event, t).await?
            {
                return Ok((held, LinkChange::Keep));
            }
            self.send_to_site(event, t, op, &envelope).await?;
            return Ok((DeliveryOutcome::Delivered(op), LinkChange::Keep));
        }
        let id = &event.resource_id;
        let in_scope = event
            .resource
            .as_ref()
            .is_none_or(|r| self.in_scope(t, ResourceKind::User, r));
        if in_scope {
            let guarded = if event.op == ChangeOp::Delete {
                Some((AuditOp::Delete, "deleted in the hub"))
            } else if self.deactivates(event, t).await? {
                Some((AuditOp::Deactivate, "deactivated in the hub"))
            } else {
                None
            };
            if let Some((gop, cause)) = guarded
                && let Some(held) = self.site_guard(event, t, gop, 1, cause).await?
            {
                return Ok((held, LinkChange::Keep));
            }
            self.send_to_site(event, t, op, &envelope).await?;
            let link = match event.op {
                ChangeOp::Delete => LinkChange::Remove(ResourceKind::User, id.clone()),
                _ => self.site_link(t, event, false),
            };
            return Ok((DeliveryOutcome::Delivered(op), link));
        }
        let link = self
            .links
            .get(&t.id, ResourceKind::User, id)
            .await
            .map_err(|e| (op, retryable(e)))?;
        // Known not to be at the site, or just created outside its scope: nothing to send
        // (a deleted user's "not at the site" link goes with it).
        if link.as_ref().is_some_and(|l| l.disabled) || event.op == ChangeOp::Create {
            let link = match (&link, event.op) {
                (Some(_), ChangeOp::Delete) => LinkChange::Remove(ResourceKind::User, id.clone()),
                _ => LinkChange::Keep,
            };
            return Ok((
                DeliveryOutcome::Skipped("not in this site's scope_filter"),
                link,
            ));
        }
        // At the site (or perhaps, sent before sites had links): taken off it, by id only,
        // through the guard.
        let cause = if event.op == ChangeOp::Delete {
            "deleted in the hub"
        } else {
            "left the target's scope"
        };
        if let Some(held) = self.site_guard(event, t, AuditOp::Delete, 1, cause).await? {
            return Ok((held, LinkChange::Keep));
        }
        let gone = json!({"type": "user.delete", "occurred_at": event.occurred_at,
            "data": {"id": id}});
        self.send_to_site(event, t, AuditOp::Delete, &gone).await?;
        let link = match event.op {
            ChangeOp::Delete => LinkChange::Remove(ResourceKind::User, id.clone()),
            _ => self.site_link(t, event, true),
        };
        Ok((DeliveryOutcome::Delivered(AuditOp::Delete), link))
    }

    /// A group event as a site with a `scope_filter` may see it: the members it names,
    /// only those the site is sent (linked to it, and not taken off it; or, not sent yet,
    /// in its scope), so that a site scoped to contractors learns nothing of who else is
    /// in a group. `None`: the event as it is (no scope, or no member outside it).
    async fn scoped_members(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
    ) -> Result<Option<ChangeEvent>, Failure> {
        if t.scope_filter.is_none()
            || event.record.is_some()
            || event.resource_type != ResourceKind::Group
            || (event.members_added.is_empty() && event.members_removed.is_empty())
        {
            return Ok(None);
        }
        let op = default_op(event);
        let named: Vec<String> = event
            .members_added
            .iter()
            .chain(&event.members_removed)
            .cloned()
            .collect();
        let links = self
            .links
            .get_many(&t.id, ResourceKind::User, &named)
            .await
            .map_err(|e| (op, retryable(e)))?;
        let unlinked: Vec<String> = named
            .iter()
            .filter(|id| !links.contains_key(*id))
            .cloned()
            .collect();
        let users = self
            .directory
            .load_existing(ResourceKind::User, &unlinked)
            .await
            .map_err(|e| (op, retryable(e)))?;
        let sent: HashSet<&str> = links
            .values()
            .filter(|l| !l.disabled)
            .map(|l| l.hub_id.as_str())
            .chain(
                users
                    .iter()
                    .filter(|u| self.in_scope(t, ResourceKind::User, &u.resource))
                    .map(|u| u.id()),
            )
            .collect();
        if named.iter().all(|id| sent.contains(id.as_str())) {
            return Ok(None);
        }
        let mut seen = event.clone();
        seen.members_added.retain(|id| sent.contains(id.as_str()));
        seen.members_removed.retain(|id| sent.contains(id.as_str()));
        Ok(Some(seen))
    }

    /// The target's guard for a group's deletion (1) or its members' removals (as many as
    /// it names): `Some` when held (the whole event: its additions wait with the
    /// removals).
    async fn group_guard(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
    ) -> Result<Option<DeliveryOutcome>, Failure> {
        if event.op == ChangeOp::Delete {
            self.site_guard(event, t, AuditOp::Delete, 1, "deleted in the hub")
                .await
        } else if event.members_removed.is_empty() {
            Ok(None)
        } else {
            let n = event.members_removed.len() as u64;
            let cause = "members removed from the group in the hub";
            self.site_guard(event, t, AuditOp::RemoveMembers, n, cause)
                .await
        }
    }

    /// Whether this update sends the site an inactive user it last had active (or had
    /// from before sites had links): a deactivation, for the target's guard. A user
    /// created inactive is none.
    async fn deactivates(&self, event: &ChangeEvent, t: &TargetConfig) -> Result<bool, Failure> {
        let inactive = event
            .resource
            .as_ref()
            .and_then(|r| r.get("active"))
            .and_then(Value::as_bool)
            == Some(false);
        if !inactive || event.op == ChangeOp::Create || event.approved {
            return Ok(false);
        }
        if t.deprovision_guard.is_none() {
            return Ok(false);
        }
        let link = self
            .links
            .get(&t.id, ResourceKind::User, &event.resource_id)
            .await
            .map_err(|e| (AuditOp::Deactivate, retryable(e)))?;
        Ok(link.is_none_or(|l| l.delivered.get("active").and_then(Value::as_bool) != Some(false)))
    }

    /// The target's guard, for `n` deprovisions sent to the site (not for those an
    /// operator released): `Some` when they are held. They are held under the user's
    /// `userName` (the group's `displayName`), or for a user deleted in the hub, the one
    /// its link kept.
    async fn site_guard(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        op: AuditOp,
        n: u64,
        cause: &str,
    ) -> Result<Option<DeliveryOutcome>, Failure> {
        if event.approved || t.deprovision_guard.is_none() {
            return Ok(None);
        }
        let mut label = event.resource.as_ref().and_then(label_of);
        if label.is_none() && event.resource_type == ResourceKind::User {
            label = self
                .links
                .get(&t.id, ResourceKind::User, &event.resource_id)
                .await
                .map_err(|e| (op, retryable(e)))?
                .and_then(|l| label_of(&l.delivered));
        }
        self.admit(event, t, op, n, label.unwrap_or_default(), cause)
            .await
    }

    /// The link of a user the hub sent a site (`false`), or knows is not there (`true`):
    /// the site's id for it is the hub id; it keeps the `userName` (what a held deletion
    /// is listed under once the hub user is gone) and `active` (whether the next update is
    /// a deactivation) it was sent.
    fn site_link(&self, t: &TargetConfig, event: &ChangeEvent, not_there: bool) -> LinkChange {
        let id = &event.resource_id;
        let mut delivered = serde_json::Map::new();
        if let Some(r) = &event.resource {
            for key in ["userName", "active"] {
                if let Some(v) = r.get(key).filter(|_| !not_there) {
                    delivered.insert(key.into(), v.clone());
                }
            }
        }
        let delivered = Value::Object(delivered);
        LinkChange::Put(Box::new(self.link(
            t,
            ResourceKind::User,
            id,
            id,
            String::new(),
            delivered,
            not_there,
        )))
    }

    /// Signs and sends `envelope` to the site, paced as any target's calls.
    async fn send_to_site(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        op: AuditOp,
        envelope: &Value,
    ) -> Result<(), Failure> {
        let sender = self.connector(t).map_err(|e| {
            (
                op,
                ConnectorError::Refused {
                    status: None,
                    reason: e.0,
                },
            )
        })?;
        self.paced(t, sender.as_ref())
            .relay(&event.id, envelope)
            .await
            .map_err(|e| (op, e))
    }
}
