//! Group memberships on a target, as the hub holds them now.
//!
//! Membership changes travel as deltas in change events, and events of one group can
//! reach the engine out of order (concurrent requests publish after their own commits;
//! the outbox sweep and a dead-letter redrive resend old events). Applying a delta as it
//! is would let an old "add" undo a newer "remove". So an event only says *which* members
//! to look at: for each, the hub's current membership decides whether the target gets an
//! add or a remove. Any order of delivery then ends in the hub's state.

use std::collections::HashSet;

use super::audit::{AuditEntry, AuditOp, AuditStatus};
use super::deliver::{Deliverer, DeliveryOutcome, retryable};
use super::link::Link;
use crate::connector::{Connector, ConnectorError};
use crate::event::ChangeEvent;
use crate::target::TargetConfig;
use provisync_scim::ResourceKind;

/// Members sent to a target per call when a whole group is sent.
const MEMBERS_PER_CALL: usize = 100;

type Failure = (AuditOp, ConnectorError);

impl Deliverer {
    /// Brings the members an event names to the hub's current state on the target group
    /// `target_group`. Returns what was done (`None`: nothing to send), or that the
    /// removals are held by the target's deprovision guard (the additions are made).
    pub(super) async fn sync_members(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        c: &dyn Connector,
        target_group: &str,
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
        let mut done = None;
        let added = self.on_target(t, &now_in).await?;
        if !added.is_empty() {
            c.add_members(target_group, &added)
                .await
                .map_err(|e| (AuditOp::AddMembers, e))?;
            done = Some(AuditOp::AddMembers);
        }
        let removed = self.on_target(t, &now_out).await?;
        if !removed.is_empty()
            && let Some(held) = self.guard_members(event, t, target_group, &removed).await?
        {
            return Ok(Some(held));
        }
        if !removed.is_empty() {
            c.remove_members(target_group, &removed)
                .await
                .map_err(|e| (AuditOp::RemoveMembers, e))?;
            done = done.or(Some(AuditOp::RemoveMembers));
        }
        Ok(done.map(DeliveryOutcome::Delivered))
    }

    /// A user now on the target (created or linked) joins the groups the hub has it in
    /// that are on the target already (linked); groups not there yet take their members
    /// when they are created. Adding a member a group has already is harmless on every
    /// connector (SCIM: RFC 7644 §3.5.2.1 add merges values), so a group event that adds
    /// the same member too does no harm. A failure a retry can fix fails the event (the
    /// retry matches the account and joins again); a refusal is audited and the user's
    /// delivery stands.
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
            self.add_to_groups(t, c, hub_id, target_id, &group_ids, &linked)
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
        group_ids: &[String],
        linked: &std::collections::HashMap<String, Link>,
    ) -> Result<(), (AuditOp, ConnectorError)> {
        let member = [target_id.to_string()];
        for gid in group_ids {
            let Some(group) = linked.get(gid) else {
                continue;
            };
            match c.add_members(&group.target_id, &member).await {
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
    /// event names gets them all.
    pub(super) async fn send_all_members(
        &self,
        group_id: &str,
        t: &TargetConfig,
        c: &dyn Connector,
        target_group: &str,
    ) -> Result<(), Failure> {
        let ids: Vec<String> = self
            .directory
            .members_of(group_id)
            .await
            .map_err(|e| (AuditOp::AddMembers, retryable(e)))?
            .into_iter()
            .map(|m| m.value)
            .collect();
        for chunk in ids.chunks(MEMBERS_PER_CALL) {
            let on_target = self.on_target(t, chunk).await?;
            if !on_target.is_empty() {
                c.add_members(target_group, &on_target)
                    .await
                    .map_err(|e| (AuditOp::AddMembers, e))?;
            }
        }
        Ok(())
    }

    /// The target ids of hub members that exist on the target (linked users or groups),
    /// in the order given; the others are left out. Batched reads.
    async fn on_target(&self, t: &TargetConfig, ids: &[String]) -> Result<Vec<String>, Failure> {
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
            .filter_map(|id| users.get(id).or_else(|| groups.get(id)))
            .map(|l| l.target_id.clone())
            .collect())
    }
}
