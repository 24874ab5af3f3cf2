//! The group phases: one page of target groups (attributes, members, strangers,
//! orphans) and the creates of hub groups the target lacks.

use serde_json::Value;

use super::diff::{HubIndex, Matched, MemberLinks, differs, project, target_members};
use super::{
    ClassifiedPage, Deprovisioned, GroupCounts, ReconcileError, Reconciler, change_event,
    to_message,
};
use crate::connector::Connector;
use crate::event::ChangeOp;
use crate::sync::audit::AuditOp;
use crate::sync::direct::{self, Deprovision};
use crate::sync::held::DirectChange;
use crate::sync::link::Link;
use crate::sync::mapping::{content_hash, map_resource};
use crate::sync::plan::PlannedChange;
use crate::target::{OrphanPolicy, TargetConfig};
use provisync_scim::ResourceKind;

impl Reconciler {
    /// The hub side of the group phases: every group (mapped display name) and the
    /// target's group links.
    pub(super) async fn group_index(&self, t: &TargetConfig) -> Result<HubIndex, ReconcileError> {
        self.index_of(t, ResourceKind::Group, "displayName").await
    }

    /// The target's user and group links as they are now (after the user phases: stale
    /// links of re-created users are gone), and the users whose create this run queued.
    pub(super) async fn member_links(
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
    /// differs (in run `run`), remove members the hub does not know, apply the orphan
    /// policy. Returns the hub ids seen on the target and how many changes were queued.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn reconcile_group_page(
        &self,
        t: &TargetConfig,
        run: &str,
        c: &dyn Connector,
        index: &HubIndex,
        members: &MemberLinks,
        groups: &[Value],
        counts: &mut GroupCounts,
    ) -> Result<(Vec<String>, u64), ReconcileError> {
        let kind = ResourceKind::Group;
        let ClassifiedPage {
            matched: classified,
            hub,
            mut links,
        } = self.classify_page(t, kind, index, groups).await?;
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
                    version: link.as_ref().map_or(0, |l| l.version),
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
                    version: link.as_ref().map_or(0, |l| l.version),
                });
            }
            // Removing members unknown to the hub is done here; the rest is queued and
            // counted (updated, members) when the target has answered.
            let queued = attrs_differ || !diff.added.is_empty() || !diff.removed.is_empty();
            let strangers = self.still_unknown(&t.id, &diff.strangers).await;
            if !strangers.is_empty() {
                match self
                    .remove_strangers(t, c, hub_id, &tid, group, &strangers)
                    .await
                {
                    Deprovisioned::Done => {
                        counts.members_removed += strangers.len() as u64;
                        if !queued {
                            counts.updated += 1;
                        }
                    }
                    Deprovisioned::Held => counts.held += 1,
                    Deprovisioned::Failed => counts.failed += 1,
                }
            }
            if queued {
                let mut e = change_event(t, run, kind, stored, ChangeOp::Update);
                e.members_added = diff.added;
                e.members_removed = diff.removed;
                events.push(to_message(&e)?);
            } else if strangers.is_empty() {
                counts.unchanged += 1;
            }
        }
        // Links first: the events must find them.
        if !self.planning() {
            self.links.put_many(&link_writes).await?;
        }
        let sent = events.len() as u64;
        self.send(events).await?;
        Ok((seen, sent))
    }

    /// The members of `strangers` (target ids no link named when this run read the
    /// target's links) that are still unknown now: this run's own deliveries may have
    /// created an account since (a user deleted on the target is re-created, and its
    /// memberships go with it), and removing that one would undo the repair. A member
    /// whose link cannot be read is kept (not removed on uncertain knowledge).
    async fn still_unknown(&self, target: &str, strangers: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(strangers.len());
        'members: for s in strangers {
            for kind in [ResourceKind::User, ResourceKind::Group] {
                match self.links.hub_id_of(target, kind, s).await {
                    Ok(None) => {}
                    Ok(Some(_)) => continue 'members,
                    Err(e) => {
                        tracing::warn!(target_id = %target, member = %s, error = %e, "member's link not read; not removed");
                        continue 'members;
                    }
                }
            }
            out.push(s.clone());
        }
        out
    }

    /// Removes from a target group the members the hub does not know (no hub resource
    /// to send: done here by target id, through the target's guard and journal,
    /// audited).
    async fn remove_strangers(
        &self,
        t: &TargetConfig,
        c: &dyn Connector,
        hub_id: &str,
        tid: &str,
        group: &Value,
        strangers: &[String],
    ) -> Deprovisioned {
        let label = group_label(group, tid);
        if self.planned(
            PlannedChange::new("update", "Group", tid, label).detail(format!(
                "remove {} member(s) unknown to the hub",
                strangers.len()
            )),
        ) {
            return Deprovisioned::Done;
        }
        let d = Deprovision {
            op: AuditOp::RemoveMembers,
            kind: ResourceKind::Group,
            resource_id: hub_id.to_string(),
            name: label.to_string(),
            cause: format!(
                "{} member(s) unknown to the hub (found by a reconcile)",
                strangers.len()
            ),
            change: DirectChange {
                target_id: tid.to_string(),
                members: strangers.to_vec(),
                state: Value::Null,
                groups: Vec::new(),
                unlinked: false,
            },
        };
        let what = format!(
            "{} member(s) unknown to the hub removed from {label:?}",
            strangers.len()
        );
        self.deprovision(t, c, d, &what).await
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
        if self.planned(PlannedChange::new("delete", "Group", tid, label).detail("orphan")) {
            return;
        }
        let d = Deprovision {
            op: AuditOp::Delete,
            kind: ResourceKind::Group,
            resource_id: tid.to_string(),
            name: label.to_string(),
            cause: "unknown to the hub (orphan group found by a reconcile)".into(),
            change: DirectChange {
                target_id: tid.to_string(),
                members: Vec::new(),
                state: direct::restorable(group),
                groups: Vec::new(),
                unlinked: true,
            },
        };
        match self.deprovision(t, c, d, &what).await {
            Deprovisioned::Done => counts.deleted += 1,
            Deprovisioned::Held => counts.held += 1,
            Deprovisioned::Failed => counts.failed += 1,
        }
    }

    /// Create events (in run `run`) for hub groups missing on the target, each with every
    /// member in `members_added` (as the SCIM server's create of a group with members
    /// says it); stale links dropped first so the engine creates. Returns how many were
    /// queued.
    pub(super) async fn queue_group_creates(
        &self,
        t: &TargetConfig,
        run: &str,
        hub_ids: &[String],
    ) -> Result<u64, ReconcileError> {
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
            if stale.contains_key(g.id()) && !self.planning() {
                self.links.delete(&t.id, kind, g.id()).await?;
            }
            let mut e = change_event(t, run, kind, g, ChangeOp::Create);
            e.members_added = self
                .directory
                .members_of(g.id())
                .await
                .map_err(|e| ReconcileError::Directory(e.to_string()))?
                .into_iter()
                .map(|m| m.value)
                .collect();
            events.push(to_message(&e)?);
        }
        let sent = events.len() as u64;
        self.send(events).await?;
        Ok(sent)
    }
}

/// How a target group is named in audit entries.
fn group_label<'a>(group: &'a Value, tid: &'a str) -> &'a str {
    group
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or(tid)
}
