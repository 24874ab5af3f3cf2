//! Deferred deletions coming due ([`crate::sync::deferred`]), in the scheduled cycle: an
//! account whose user was not restored is deleted, by its id on the target, through the
//! target's guard and journal ([`crate::sync::direct`]).

use serde::{Deserialize, Serialize};

use super::{Deprovisioned, ReconcileError, Reconciler};
use crate::connector::Connector;
use crate::directory::DirectoryError;
use crate::sync::audit::{AuditEntry, AuditOp, AuditStatus};
use crate::sync::deferred::{Deferred, PendingDelete};
use crate::sync::deliver::in_scope;
use crate::sync::direct::Deprovision;
use crate::sync::held::DirectChange;
use crate::target::TargetConfig;
use provisync_scim::ResourceKind;

/// What the deferred deletions of one target came to in a cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferredCounts {
    pub target: String,
    /// Due and deleted on the target.
    pub deleted: u64,
    /// Due, and held by the target's guard (listed with the held changes).
    pub held: u64,
    /// The user was restored in the meantime: not deleted, forgotten.
    pub restored: u64,
    /// Due, not done (the target refused or failed): tried again next cycle.
    pub failed: u64,
    /// Not due yet.
    pub waiting: u64,
}

impl Reconciler {
    /// Deletes the deferred deletions of every enabled target that are due at `now`
    /// (epoch seconds), unless their user was restored.
    pub async fn delete_due(&self, now: i64) -> Result<Vec<DeferredCounts>, ReconcileError> {
        let targets = self
            .targets
            .list_enabled()
            .await
            .map_err(|e| ReconcileError::Setup(format!("targets: {e}")))?;
        let deferred = Deferred::new(self.store.clone());
        let mut out = Vec::new();
        for t in targets.iter() {
            // Read by due time: the cycle reads the deletions due and one that is not,
            // whatever the number waiting (the count tells that).
            let pending = deferred.count(&t.id).await?;
            if pending == 0 {
                continue;
            }
            let mut counts = DeferredCounts {
                target: t.id.clone(),
                ..Default::default()
            };
            let (mut due, mut next) = deferred.due_page(&t.id, now, None).await?;
            if !due.is_empty() {
                let built = (self.factory)(t).map_err(|e| ReconcileError::Setup(e.0))?;
                // Paced as delivery is; a deletion not done is tried again next cycle.
                let c = self.paced(t, built.as_ref());
                loop {
                    for p in std::mem::take(&mut due) {
                        self.settle_one(t, &c, &deferred, p, now, &mut counts)
                            .await?;
                    }
                    // A cursor is a position: what this page removed does not move the next.
                    let Some(after) = next.take() else {
                        break;
                    };
                    (due, next) = deferred.due_page(&t.id, now, Some(after)).await?;
                }
            }
            // What is left and was not tried (one written during the cycle is counted in
            // the next).
            let settled = counts.deleted + counts.held + counts.restored + counts.failed;
            counts.waiting = pending.saturating_sub(settled);
            out.push(counts);
        }
        Ok(out)
    }

    /// One pending deletion in the cycle at `now`: waiting, restored, or deleted (held by
    /// the guard, or failed for now), counted.
    async fn settle_one(
        &self,
        t: &TargetConfig,
        c: &dyn Connector,
        deferred: &Deferred,
        p: PendingDelete,
        now: i64,
        counts: &mut DeferredCounts,
    ) -> Result<(), ReconcileError> {
        if p.due > now {
            return Ok(());
        }
        if self.restored(t, &p).await? {
            deferred.remove(&t.id, &p.hub_id).await?;
            self.note(
                t,
                &p,
                AuditStatus::Skipped,
                "not deleted: restored in the hub",
            )
            .await;
            counts.restored += 1;
            return Ok(());
        }
        let d = Deprovision {
            op: AuditOp::Delete,
            kind: ResourceKind::User,
            resource_id: p.hub_id.clone(),
            name: p.name.clone(),
            cause: format!(
                "deferred deletion due ({}, deactivated {})",
                p.cause, p.deactivated_at
            ),
            change: DirectChange {
                target_id: p.target_id.clone(),
                members: Vec::new(),
                state: p.state.clone(),
                groups: Vec::new(),
                unlinked: true,
            },
        };
        let what = format!("deferred deletion of {:?}", p.name);
        match self.deprovision(t, c, d, &what).await {
            Deprovisioned::Done => {
                // An out-of-scope user kept its (disabled) link: the account is gone.
                self.links
                    .delete(&t.id, ResourceKind::User, &p.hub_id)
                    .await?;
                deferred.remove(&t.id, &p.hub_id).await?;
                counts.deleted += 1;
            }
            Deprovisioned::Held => {
                // The held change carries it now (released or discarded there).
                deferred.remove(&t.id, &p.hub_id).await?;
                counts.held += 1;
            }
            Deprovisioned::Failed => counts.failed += 1,
        }
        Ok(())
    }

    /// Whether the user of a pending deletion is back: a hub user linked to the account
    /// again (re-created), or the same user in scope and active again.
    async fn restored(&self, t: &TargetConfig, p: &PendingDelete) -> Result<bool, ReconcileError> {
        let mut candidates = vec![p.hub_id.clone()];
        if let Some(h) = self
            .links
            .hub_id_of(&t.id, ResourceKind::User, &p.target_id)
            .await?
        {
            candidates.push(h);
        }
        for h in candidates {
            match self.directory.load(ResourceKind::User, &h).await {
                Ok(s) => {
                    let active = s.resource.get("active").and_then(|v| v.as_bool()) != Some(false);
                    if active && in_scope(self.schemas(), t, ResourceKind::User, &s.resource) {
                        return Ok(true);
                    }
                }
                Err(DirectoryError::NotFound { .. }) => {}
                Err(e) => return Err(ReconcileError::Directory(e.to_string())),
            }
        }
        Ok(false)
    }

    async fn note(&self, t: &TargetConfig, p: &PendingDelete, status: AuditStatus, what: &str) {
        let entry = AuditEntry::new(&t.id, AuditOp::Delete, status)
            .resource("User", &p.hub_id)
            .detail(format!(
                "deferred deletion of {:?} ({}, due {}): {what}",
                p.name, p.cause, p.delete_after
            ));
        if let Err(e) = self.audit.record(entry).await {
            tracing::warn!(error = %e, "audit entry not written");
        }
    }
}
