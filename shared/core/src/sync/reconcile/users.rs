//! The user phases: one page of target accounts (compare, update, orphans) and the
//! creates of hub users the target lacks.

use serde_json::Value;

use super::diff::{HubIndex, Matched, Verdict, judge, project};
use super::{
    ClassifiedPage, Deprovisioned, ReconcileCounts, ReconcileError, Reconciler, event_for,
};
use crate::connector::Connector;
use crate::event::ChangeOp;
use crate::sync::audit::AuditOp;
use crate::sync::direct::Deprovision;
use crate::sync::link::Link;
use crate::sync::mapping::{content_hash, map_resource};
use crate::sync::plan::PlannedChange;
use crate::target::{OrphanPolicy, TargetConfig, TargetKind};
use provisync_scim::ResourceKind;

impl Reconciler {
    /// The hub side of a run: every user (scope, matching value) and the target's links.
    pub async fn hub_index(&self, t: &TargetConfig) -> Result<HubIndex, ReconcileError> {
        let matching = match &t.kind {
            TargetKind::Scim(s) => s.matching_attribute.as_str(),
            _ => "userName",
        };
        self.index_of(t, ResourceKind::User, matching).await
    }

    /// One page of target accounts: classify, compare, queue what differs (in run
    /// `run`), apply the orphan policy. Returns the hub ids seen on the target and how
    /// many changes were queued.
    pub(super) async fn reconcile_page(
        &self,
        t: &TargetConfig,
        run: &str,
        c: &dyn Connector,
        index: &HubIndex,
        accounts: &[Value],
        counts: &mut ReconcileCounts,
    ) -> Result<(Vec<String>, u64), ReconcileError> {
        let ClassifiedPage {
            matched: classified,
            hub,
            mut links,
        } = self
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
                            version: link.as_ref().map_or(0, |l| l.version),
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
                        version: link.as_ref().map_or(0, |l| l.version),
                    });
                    // Counted as updated, deactivated or deleted when the target has
                    // answered (the engine applies the out-of-scope policy).
                    events.push(event_for(t, run, user, ChangeOp::Update)?);
                }
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
        let op = match t.orphans {
            OrphanPolicy::Report => return,
            OrphanPolicy::Deactivate if !active => return,
            OrphanPolicy::Deactivate if self.planning() => {
                self.planned(PlannedChange::new("deactivate", "User", tid, label).detail("orphan"));
                return;
            }
            OrphanPolicy::Delete if self.planning() => {
                self.planned(PlannedChange::new("delete", "User", tid, label).detail("orphan"));
                return;
            }
            OrphanPolicy::Deactivate => AuditOp::Deactivate,
            OrphanPolicy::Delete => AuditOp::Delete,
        };
        let what = format!("orphan {label:?}");
        let d = Deprovision::orphan_user(op, tid, label, account);
        match self.deprovision(t, c, d, &what).await {
            Deprovisioned::Done if op == AuditOp::Delete => counts.deleted += 1,
            Deprovisioned::Done => counts.deactivated += 1,
            Deprovisioned::Held => counts.held += 1,
            Deprovisioned::Failed => counts.failed += 1,
        }
    }

    /// Create events (in run `run`) for hub users missing on the target (stale links
    /// dropped first, so the engine creates instead of updating an account that is
    /// gone). Returns how many were queued.
    pub(super) async fn queue_creates(
        &self,
        t: &TargetConfig,
        run: &str,
        hub_ids: &[String],
    ) -> Result<u64, ReconcileError> {
        let users = self
            .directory
            .load_existing(ResourceKind::User, hub_ids)
            .await
            .map_err(|e| ReconcileError::Directory(e.to_string()))?;
        let ids: Vec<String> = users.iter().map(|u| u.id().to_string()).collect();
        let stale = self.links.get_many(&t.id, ResourceKind::User, &ids).await?;
        let mut events = Vec::new();
        for u in &users {
            if stale.contains_key(u.id()) && !self.planning() {
                self.links.delete(&t.id, ResourceKind::User, u.id()).await?;
            }
            events.push(event_for(t, run, u, ChangeOp::Create)?);
        }
        let sent = events.len() as u64;
        self.send(events).await?;
        Ok(sent)
    }
}
