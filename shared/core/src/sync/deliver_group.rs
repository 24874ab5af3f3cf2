//! Delivering a group's change to one target: create (matching an existing group first)
//! with all its members, update with the members the event names, delete. An event
//! without the group's state (a follow-up of a delivery that ran out of time for members,
//! `member_work`) changes only the members it names.

use super::audit::AuditOp;
use super::deliver::{Deliverer, DeliveryOutcome, UNCONFIRMED, is_stale, op_allowed, retryable};
use super::link::LinkChange;
use super::mapping::{content_hash, map_resource};
use super::member_work::MemberWork;
use crate::connector::{Connector, ConnectorError};
use crate::event::{ChangeEvent, ChangeOp};
use crate::target::{Operation, TargetConfig};
use provisync_scim::ResourceKind;

impl Deliverer {
    pub(super) async fn deliver_group(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        c: &dyn Connector,
        work: &mut MemberWork,
    ) -> Result<(DeliveryOutcome, LinkChange), (AuditOp, ConnectorError)> {
        let kind = ResourceKind::Group;
        let link = self
            .links
            .get(&t.id, kind, &event.resource_id)
            .await
            .map_err(|e| (AuditOp::Update, retryable(e)))?;
        if event.op == ChangeOp::Delete {
            let Some(link) = link else {
                return Ok((
                    DeliveryOutcome::Skipped("not on the target"),
                    LinkChange::Keep,
                ));
            };
            if !op_allowed(t, Operation::Delete) {
                return Ok((
                    DeliveryOutcome::Skipped("delete not enabled for this target"),
                    LinkChange::Keep,
                ));
            }
            if let Some(held) = self.guard(event, t, AuditOp::Delete, 1, &link).await? {
                return Ok((held, LinkChange::Keep));
            }
            match c.delete_group(&link.target_id).await {
                Ok(()) | Err(ConnectorError::NotFound) => {}
                Err(e) => return Err((AuditOp::Delete, e)),
            }
            return Ok((
                DeliveryOutcome::Delivered(AuditOp::Delete),
                LinkChange::Remove(kind, event.resource_id.clone()),
            ));
        }
        // Stored before the group took its members, never confirmed (the process stopped
        // in between): create again, which finds the group, links it and sends them all.
        let link = link.filter(|l| l.hash != UNCONFIRMED);
        if let Some(l) = link
            .as_ref()
            .filter(|l| is_stale(event, Some(l)) || event.resource.is_none())
        {
            // The group's attributes are older than the target's (or not in the event);
            // the members it names are still brought to the hub's current state.
            let nothing = if event.resource.is_none() {
                DeliveryOutcome::Skipped("no member to change")
            } else {
                DeliveryOutcome::Stale("older than the version the target holds")
            };
            let outcome = self
                .sync_members(event, t, c, &l.target_id, work)
                .await?
                .unwrap_or(nothing);
            return Ok((outcome, LinkChange::Keep));
        }
        let Some(resource) = event.resource.as_ref() else {
            return Ok((DeliveryOutcome::Skipped("no state"), LinkChange::Keep));
        };
        let payload = map_resource(
            kind,
            &event.resource_id,
            resource,
            &t.mapping,
            &t.group_mapping,
        );
        let hash = content_hash(&payload);
        let mut op = AuditOp::Update;
        let (target_id, mut new_link) = match link {
            Some(link) => {
                if link.hash != hash {
                    match c
                        .update_group(&link.target_id, &payload, Some(&link.delivered))
                        .await
                    {
                        Ok(()) => {}
                        Err(e) => return Err((AuditOp::Update, e)),
                    }
                }
                let id = link.target_id.clone();
                (
                    id.clone(),
                    self.link(t, kind, &event.resource_id, &id, hash, payload, false),
                )
            }
            None => {
                if !op_allowed(t, Operation::Create) {
                    return Ok((
                        DeliveryOutcome::Skipped("create not enabled for this target"),
                        LinkChange::Keep,
                    ));
                }
                op = AuditOp::Create;
                let id = match c
                    .find_group(&payload)
                    .await
                    .map_err(|e| (AuditOp::Create, e))?
                {
                    Some(id) => id,
                    None => match c.create_group(&payload).await {
                        Ok(id) => id,
                        Err(ConnectorError::Conflict(_)) => c
                            .find_group(&payload)
                            .await
                            .map_err(|e| (AuditOp::Create, e))?
                            .ok_or((
                                AuditOp::Create,
                                ConnectorError::Refused {
                                    status: Some(409),
                                    reason: "conflict, and no matching group found".into(),
                                },
                            ))?,
                        Err(e) => return Err((AuditOp::Create, e)),
                    },
                };
                (
                    id.clone(),
                    self.link(t, kind, &event.resource_id, &id, hash, payload, false),
                )
            }
        };
        // Memberships: only members that exist on this target (linked users) are sent; a
        // group new there takes all its members.
        if op == AuditOp::Create {
            // The group's link first, marked unconfirmed, then its members' links are read:
            // a member's delivery running beside this one stores its own link before it
            // reads the links of its groups (`join_groups`), so at least one of the two
            // sees the other and the membership is sent.
            let mut early = new_link.clone();
            early.target_id = target_id.clone();
            early.hash = UNCONFIRMED.to_string();
            if let Err(e) = self.links.put_unconfirmed(&early).await {
                return Err((AuditOp::AddMembers, retryable(e)));
            }
            if let Err(e) = self
                .send_all_members(&event.resource_id, t, c, &target_id, work)
                .await
            {
                if let Err(e) = self.links.delete(&t.id, kind, &event.resource_id).await {
                    tracing::warn!(target_id = %t.id, error = %e, "unconfirmed link not removed");
                }
                return Err(e);
            }
        } else {
            match self.sync_members(event, t, c, &target_id, work).await? {
                // The attributes went; the removals wait (the release sends them).
                Some(held @ DeliveryOutcome::Held { .. }) => {
                    new_link.target_id = target_id;
                    return Ok((held, LinkChange::Put(Box::new(new_link))));
                }
                Some(DeliveryOutcome::Delivered(done)) if op == AuditOp::Update => op = done,
                _ => {}
            }
        }
        new_link.target_id = target_id;
        Ok((
            DeliveryOutcome::Delivered(op),
            LinkChange::Put(Box::new(new_link)),
        ))
    }
}
