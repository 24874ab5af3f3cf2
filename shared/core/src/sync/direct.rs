//! Deprovisions the hub makes on a target by the account's id there, not by delivering a
//! hub resource: a reconcile's orphans (deactivated or deleted), members unknown to the
//! hub removed from a group, orphan groups deleted, and deferred deletions coming due
//! ([`super::deferred`]).
//!
//! They pass the same deprovision guard as the delivery engine's ([`Held::admit`], the
//! same window) and are journaled the same way before they are sent
//! ([`super::journal`]); beyond the guard they are kept as a [`HeldChange`] with a
//! [`DirectChange`] inside, listed, released and discarded with the rest.

use std::sync::Arc;

use serde_json::Value;

use super::audit::{Audit, AuditEntry, AuditOp, AuditStatus};
use super::held::{DirectChange, Held, HeldChange};
use super::journal::{Journal, JournalEntry};
use crate::connector::{Connector, ConnectorError};
use crate::event::{ChangeEvent, ChangeOp, Origin};
use crate::store::{Store, StoreError};
use crate::target::TargetConfig;
use provisync_scim::ResourceKind;

/// One deprovision by target id, about to be sent.
#[derive(Clone, Debug)]
pub struct Deprovision {
    /// `deactivate`, `delete` or `remove_members`.
    pub op: AuditOp,
    pub kind: ResourceKind,
    /// The hub id, when the hub knows the resource (else the target's id).
    pub resource_id: String,
    /// `userName` / `displayName`.
    pub name: String,
    /// Why (`orphan: unknown to the hub (found by a reconcile)`, …).
    pub cause: String,
    pub change: DirectChange,
}

impl Deprovision {
    /// How many deprovisions it counts for (members removed, else 1).
    pub fn count(&self) -> u64 {
        if self.op == AuditOp::RemoveMembers {
            self.change.members.len() as u64
        } else {
            1
        }
    }

    /// The deprovision a held change by target id describes.
    pub fn from_held(h: &HeldChange) -> Option<Self> {
        let change = h.direct.clone()?;
        Some(Deprovision {
            op: h.change,
            kind: h.event.resource_type,
            resource_id: h.resource_id.clone(),
            name: h.name.clone(),
            cause: h.cause.clone(),
            change,
        })
    }

    /// An account listed on the target the hub does not know (`account` as listed).
    pub fn orphan_user(op: AuditOp, tid: &str, name: &str, account: &Value) -> Self {
        let groups = account
            .get("groups")
            .and_then(Value::as_array)
            .map(|gs| {
                gs.iter()
                    .filter_map(|g| g.get("value").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Deprovision {
            op,
            kind: ResourceKind::User,
            resource_id: tid.to_string(),
            name: name.to_string(),
            cause: "unknown to the hub (orphan found by a reconcile)".into(),
            change: DirectChange {
                target_id: tid.to_string(),
                members: Vec::new(),
                state: restorable(account),
                groups,
                unlinked: true,
            },
        }
    }
}

/// What the target holds of an account, as it can be sent back (no `id`, `meta`,
/// `groups`: the target sets those).
pub fn restorable(account: &Value) -> Value {
    let mut v = account.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["id", "meta", "groups"] {
            o.remove(k);
        }
    }
    v
}

/// What the guard said.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// Within the guard: journaled, send it now.
    Go,
    /// Beyond the guard: kept (and audited `held`) for an operator.
    Held(Box<HeldChange>),
    /// The same change is held already (from an earlier run): not held twice.
    AlreadyHeld,
}

/// The guard and the journal for deprovisions by target id.
#[derive(Clone)]
pub struct Direct {
    store: Arc<dyn Store>,
    held: Held,
    journal: Journal,
    audit: Audit,
}

impl Direct {
    pub fn new(store: Arc<dyn Store>, audit: Audit) -> Self {
        Direct {
            held: Held::new(store.clone()),
            journal: Journal::new(store.clone()),
            store,
            audit,
        }
    }

    /// Asks `t`'s guard for `d`: within it, `d` is journaled ([`Gate::Go`]: the caller
    /// sends it); beyond it, kept and audited `held` ([`Gate::Held`]), unless the same
    /// change is held already. A held copy of a change that goes now is forgotten (it
    /// must not be sent twice on a release).
    pub async fn gate(&self, t: &TargetConfig, d: &Deprovision) -> Result<Gate, StoreError> {
        let held_before = self.held_copy(&t.id, d).await?;
        if !self.held.admit(t, d.count()).await? {
            if held_before.is_some() {
                return Ok(Gate::AlreadyHeld);
            }
            let h = self.held_change(t, d);
            let entry = AuditEntry::new(&t.id, d.op, AuditStatus::Held)
                .resource(d.kind.as_str(), &d.resource_id)
                .event(&h.event.id)
                .detail(format!("held: {} ({})", d.cause, label(d)));
            let audit = self
                .audit
                .write_for(entry)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            self.store
                .transact(vec![Held::hold_write(&h)?, audit])
                .await?;
            return Ok(Gate::Held(Box::new(h)));
        }
        if let Some(id) = held_before {
            self.held.remove(&t.id, &[id]).await?;
        }
        self.journal(t, d).await?;
        Ok(Gate::Go)
    }

    /// Journals `d` (what the target holds, before it is sent).
    pub async fn journal(&self, t: &TargetConfig, d: &Deprovision) -> Result<(), StoreError> {
        let mut e = JournalEntry::new(&t.id, d.op, d.kind.as_str(), &d.resource_id);
        e.name = d.name.clone();
        e.target_id = d.change.target_id.clone();
        e.state = d.change.state.clone();
        e.groups = d.change.groups.clone();
        e.members = d.change.members.clone();
        e.unlinked = d.change.unlinked;
        self.journal.record(&e).await
    }

    /// The id of a held change that is `d` (same change of the same account), if any: one
    /// read, whatever else is held ([`DirectChange::held_id`]).
    async fn held_copy(&self, target: &str, d: &Deprovision) -> Result<Option<String>, StoreError> {
        let id = d.change.held_id(d.op, d.kind);
        Ok(self.held.get(target, &id).await?.and_then(|h| {
            let same = h.change == d.op
                && h.resource_type == d.kind.as_str()
                && h.direct.as_ref().is_some_and(|c| {
                    c.target_id == d.change.target_id && c.held_id(d.op, d.kind) == id
                });
            same.then_some(h.id)
        }))
    }

    fn held_change(&self, t: &TargetConfig, d: &Deprovision) -> HeldChange {
        let op = if d.op == AuditOp::Delete {
            ChangeOp::Delete
        } else {
            ChangeOp::Update
        };
        let mut event = ChangeEvent::new(d.kind, &d.resource_id, op, Origin::Reconcile);
        event.only_targets = vec![t.id.clone()];
        let mut h = HeldChange::new(
            &event,
            &t.id,
            d.op,
            d.name.clone(),
            d.cause.clone(),
            d.count(),
        );
        h.id = d.change.held_id(d.op, d.kind);
        h.direct = Some(d.change.clone());
        h
    }
}

fn label(d: &Deprovision) -> String {
    if d.name.is_empty() {
        d.change.target_id.clone()
    } else {
        format!("{:?}", d.name)
    }
}

/// Sends a deprovision by target id (`op` on `change`). A target that no longer has the
/// account answers done.
pub async fn send(
    c: &dyn Connector,
    op: AuditOp,
    kind: ResourceKind,
    change: &DirectChange,
) -> Result<(), ConnectorError> {
    let result = match (op, kind) {
        (AuditOp::Deactivate, _) => c.disable_user(&change.target_id).await,
        (AuditOp::Delete, ResourceKind::Group) => c.delete_group(&change.target_id).await,
        (AuditOp::Delete, _) => c.delete_user(&change.target_id).await,
        (AuditOp::RemoveMembers, _) => c.remove_members(&change.target_id, &change.members).await,
        (other, _) => Err(ConnectorError::Refused {
            status: None,
            reason: format!("{} is not a deprovision", other.as_str()),
        }),
    };
    match result {
        Ok(()) | Err(ConnectorError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}
