//! Group memberships on a target, as the hub holds them now.
//!
//! Membership changes travel as deltas in change events, and events of one group can
//! reach the engine out of order (concurrent requests publish after their own commits;
//! the outbox sweep and a dead-letter redrive resend old events). Applying a delta as it
//! is would let an old "add" undo a newer "remove". So an event only says *which* members
//! to look at: for each, the hub's current membership decides whether the target gets an
//! add or a remove. Any order of delivery then ends in the hub's state.
//!
//! That also lets a delivery stop part way. Member calls are paced like any other
//! (`sync/paced.rs`): 10,000 members to a target that takes one member per call at 10
//! calls a second is 1,000 s, and the `queue-deliver` function has at most 55 s for a
//! record (a record cut off at its deadline is retried from the start, and never ends).
//! So a delivery works at members for a bounded time; the members it did not reach go
//! into follow-up events for the same target (`member_work.rs`), written to the outbox
//! before the delivery's receipt, so none is lost (`deliver_outcome.rs`).

use std::collections::HashSet;

use super::audit::{AuditEntry, AuditOp, AuditStatus};
use super::deliver::{Deliverer, DeliveryOutcome, retryable};
use super::link::Link;
use super::member_work::{MemberWork, OnTarget};
use crate::connector::{Connector, ConnectorError};
use crate::event::ChangeEvent;
use crate::target::TargetConfig;
use provisync_scim::ResourceKind;

/// Members looked up (their links read) at a time when a whole group is sent.
const MEMBERS_PER_LOOKUP: usize = 100;

type Failure = (AuditOp, ConnectorError);

/// Sends `members` (on-target pairs) to `group` in calls of the connector's size
/// (`add`: additions, else removals), while `work` has time. Returns how many were sent:
/// all of them, or fewer when the time ran out first (at least one call's worth).
async fn send_members(
    c: &dyn Connector,
    group: &str,
    members: &[OnTarget],
    add: bool,
    work: &MemberWork,
) -> Result<usize, Failure> {
    let per_call = c.members_per_call().max(1);
    let mut sent = 0;
    for call in members.chunks(per_call) {
        if sent > 0 && work.spent() {
            break;
        }
        let ids: Vec<String> = call.iter().map(|(_, t)| t.clone()).collect();
        if add {
            c.add_members(group, &ids).await
        } else {
            c.remove_members(group, &ids).await
        }
        .map_err(|e| {
            let op = if add {
                AuditOp::AddMembers
            } else {
                AuditOp::RemoveMembers
            };
            (op, e)
        })?;
        sent += call.len();
    }
    Ok(sent)
}

fn hub_ids(members: &[OnTarget]) -> Vec<String> {
    members.iter().map(|(h, _)| h.clone()).collect()
}

impl Deliverer {
    /// Brings the members an event names to the hub's current state on the target group
    /// `target_group`. Returns what was done (`None`: nothing to send), or that the
    /// removals are held by the target's deprovision guard (the additions are made).
    /// Members not reached in `work`'s time are left to it for a follow-up event.
    pub(super) async fn sync_members(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        c: &dyn Connector,
        target_group: &str,
        work: &mut MemberWork,
    ) -> Result<Option<DeliveryOutcome>, Failure> {
        let mut seen = HashSet::new();
        let touched: Vec<String> = event
            .members_added
            .iter()
            .chain(&event.members_removed)
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .collect();
        if touched.is_empty() {
            return Ok(None);
        }
        let present = self
            .directory
            .members_present(&event.resource_id, &touched)
            .await
            .map_err(|e| (AuditOp::AddMembers, retryable(e)))?;
        let (now_in, now_out): (Vec<String>, Vec<String>) =
            touched.into_iter().partition(|id| present.contains(id));
        let group = event.resource_id.as_str();
        let mut done = None;
        let added = self.on_target(t, &now_in).await?;
        if !added.is_empty() {
            let sent = send_members(c, target_group, &added, true, work).await?;
            done = Some(AuditOp::AddMembers);
            if sent < added.len() {
                work.leave(group, hub_ids(&added[sent..]), now_out, false);
                return Ok(done.map(DeliveryOutcome::Delivered));
            }
        }
        let removed = self.on_target(t, &now_out).await?;
        if removed.is_empty() {
            return Ok(done.map(DeliveryOutcome::Delivered));
        }
        if done.is_some() && work.spent() {
            work.leave(group, vec![], hub_ids(&removed), false);
            return Ok(done.map(DeliveryOutcome::Delivered));
        }
        let target_ids: Vec<String> = removed.iter().map(|(_, id)| id.clone()).collect();
        if let Some(held) = self
            .guard_members(event, t, target_group, &target_ids)
            .await?
        {
            return Ok(Some(held));
        }
        let sent = send_members(c, target_group, &removed, false, work).await?;
        work.leave(group, vec![], hub_ids(&removed[sent..]), true);
        Ok(Some(DeliveryOutcome::Delivered(
            done.unwrap_or(AuditOp::RemoveMembers),
        )))
    }

    /// A user now on the target (created or linked) joins the groups the hub has it in
    /// that are on the target already (linked); groups not there yet take their members
    /// when they are created. Adding a member a group has already is harmless on every
    /// connector (SCIM: RFC 7644 §3.5.2.1 add merges values), so a group event that adds
    /// the same member too does no harm. A failure a retry can fix fails the event (the
    /// retry matches the account and joins again); a refusal is audited and the user's
    /// delivery stands. Groups not reached in `work`'s time are left to it (a follow-up
    /// event per group, naming the user).
    ///
    /// `early`: the account's link, marked unconfirmed, stored first, before its groups
    /// and their links are read: a group's delivery running beside this one stores its
    /// link before it reads its members' links (`deliver_group`), so at least one of the
    /// two sees the other and the membership is sent (read first on both sides, both
    /// could miss it). A reconcile reading those groups meanwhile also knows this account,
    /// and does not remove it as a member the hub does not know. If joining fails the
    /// link goes, so the retry creates (or matches) the account and joins again.
    pub(super) async fn join_groups(
        &self,
        t: &TargetConfig,
        c: &dyn Connector,
        early: &Link,
        work: &mut MemberWork,
    ) -> Result<(), (AuditOp, ConnectorError)> {
        let (hub_id, target_id) = (early.hub_id.as_str(), early.target_id.as_str());
        self.links
            .put_unconfirmed(early)
            .await
            .map_err(|e| (AuditOp::AddMembers, retryable(e)))?;
        let joined = async {
            let group_ids = self
                .directory
                .groups_of_ids(hub_id)
                .await
                .map_err(|e| (AuditOp::AddMembers, retryable(e.to_string())))?;
            if group_ids.is_empty() {
                return Ok(());
            }
            let linked = self
                .links
                .get_many(&t.id, ResourceKind::Group, &group_ids)
                .await
                .map_err(|e| (AuditOp::AddMembers, retryable(e)))?;
            let groups: Vec<OnTarget> = group_ids
                .iter()
                .filter_map(|g| linked.get(g).map(|l| (g.clone(), l.target_id.clone())))
                .collect();
            self.add_to_groups(t, c, hub_id, target_id, &groups, work)
                .await
        }
        .await;
        if joined.is_err()
            && let Err(e) = self.links.delete(&t.id, ResourceKind::User, hub_id).await
        {
            tracing::warn!(target_id = %t.id, error = %e, "unconfirmed link not removed");
        }
        joined
    }

    async fn add_to_groups(
        &self,
        t: &TargetConfig,
        c: &dyn Connector,
        hub_id: &str,
        target_id: &str,
        groups: &[OnTarget],
        work: &mut MemberWork,
    ) -> Result<(), (AuditOp, ConnectorError)> {
        let member = [target_id.to_string()];
        for (i, (gid, group)) in groups.iter().enumerate() {
            if i > 0 && work.spent() {
                for (gid, _) in &groups[i..] {
                    work.leave(gid, vec![hub_id.to_string()], vec![], false);
                }
                break;
            }
            match c.add_members(group, &member).await {
                Ok(()) => {}
                Err(e) if e.is_retryable() => return Err((AuditOp::AddMembers, e)),
                Err(e) => {
                    tracing::warn!(target_id = %t.id, group = %gid, error = %e, "a new account could not join its group");
                    let entry =
                        AuditEntry::new(t.id.clone(), AuditOp::AddMembers, AuditStatus::Refused)
                            .resource("Group", gid)
                            .detail(format!("user {hub_id} not added: {e}"));
                    if let Err(e) = self.audit.record(entry).await {
                        tracing::error!(error = %e, "audit entry not written");
                    }
                }
            }
        }
        Ok(())
    }

    /// A group just created (or linked) on the target takes every member the hub has
    /// for it that is on the target: a group created with more members than one change
    /// event names gets them all. Members not reached in `work`'s time are left to it.
    pub(super) async fn send_all_members(
        &self,
        group_id: &str,
        t: &TargetConfig,
        c: &dyn Connector,
        target_group: &str,
        work: &mut MemberWork,
    ) -> Result<(), Failure> {
        let ids: Vec<String> = self
            .directory
            .members_of(group_id)
            .await
            .map_err(|e| (AuditOp::AddMembers, retryable(e)))?
            .into_iter()
            .map(|m| m.value)
            .collect();
        // A target that takes any number in one call (a read-modify-write PUT of the whole
        // group) gets them all at once: in lookups of 100 it read and wrote the whole
        // group again for every 100 members, quadratic in the group's size.
        let per_lookup = c.members_per_call().max(MEMBERS_PER_LOOKUP);
        let mut from = 0;
        while from < ids.len() {
            let lookup = &ids[from..from.saturating_add(per_lookup).min(ids.len())];
            let on_target = self.on_target(t, lookup).await?;
            let sent = send_members(c, target_group, &on_target, true, work).await?;
            if sent < on_target.len() {
                // The rest of this lookup's members (those on the target), then the
                // members not looked up yet.
                let mut rest = hub_ids(&on_target[sent..]);
                rest.extend_from_slice(&ids[from + lookup.len()..]);
                work.leave(group_id, rest, vec![], false);
                return Ok(());
            }
            from += lookup.len();
            if from < ids.len() && sent > 0 && work.spent() {
                work.leave(group_id, ids[from..].to_vec(), vec![], false);
                return Ok(());
            }
        }
        Ok(())
    }

    /// The hub members `ids` that exist on the target (linked users or groups), with
    /// their target ids, in the order given; the others are left out. Batched reads.
    async fn on_target(&self, t: &TargetConfig, ids: &[String]) -> Result<Vec<OnTarget>, Failure> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let store_failure = |e| (AuditOp::AddMembers, retryable(e));
        let users = self
            .links
            .get_many(&t.id, ResourceKind::User, ids)
            .await
            .map_err(store_failure)?;
        let rest: Vec<String> = ids
            .iter()
            .filter(|id| !users.contains_key(*id))
            .cloned()
            .collect();
        let groups = self
            .links
            .get_many(&t.id, ResourceKind::Group, &rest)
            .await
            .map_err(store_failure)?;
        Ok(ids
            .iter()
            .filter_map(|id| {
                users
                    .get(id)
                    .or_else(|| groups.get(id))
                    .map(|l| (id.clone(), l.target_id.clone()))
            })
            .collect())
    }
}
