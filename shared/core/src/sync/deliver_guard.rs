//! The deprovision guard in the delivery engine: the check before each deactivation,
//! deletion and membership removal, and an operator's release or discard of what it held
//! ([`super::held`]).

use serde_json::Value;

use super::audit::{AuditEntry, AuditOp, AuditStatus};
use super::deferred::{Deferred, PendingDelete};
use super::deliver::{Deliverer, DeliveryOutcome, in_scope, retryable};
use super::direct::{self, Deprovision};
use super::held::{Held, HeldChange};
use super::journal::JournalEntry;
use super::link::{Link, LinkChange};
use crate::connector::{Connector, ConnectorError};
use crate::directory::DirectoryError;
use crate::event::{ChangeEvent, ChangeOp, Origin};
use crate::store::StoreError;
use crate::target::TargetConfig;
use provisync_scim::ResourceKind;

type Failure = (AuditOp, ConnectorError);

/// What a release did, by held change id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Sent to the target (its outcome is in the audit log).
    pub released: Vec<String>,
    /// Not sent: the hub changed the account since (a newer change was delivered or is
    /// held itself); forgotten.
    pub superseded: Vec<String>,
    /// Could not be sent now (kept held): id and why.
    pub failed: Vec<(String, String)>,
    /// Still held and not tried: the release ran out of its time (release again to go
    /// on). A release of all that tried the whole of a capped listing counts the changes
    /// held past it.
    pub left: usize,
}

/// Why a release or discard could not run.
#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    #[error("no such target: {0}")]
    NoTarget(String),
    #[error("target {0} is disabled: enable it before releasing its held changes")]
    Disabled(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// ` (SCIM)`, ` (webhook from crm)`, …: where the change came from.
fn origin_of(event: &ChangeEvent) -> String {
    match &event.origin {
        Origin::Scim => " (SCIM)".into(),
        Origin::Webhook { source } => format!(" (webhook from {source})"),
        Origin::Import => " (import)".into(),
        Origin::OnDemand => " (on-demand sync)".into(),
        Origin::Reconcile => " (found by a reconcile)".into(),
    }
}

pub(super) fn label_of(v: &Value) -> Option<String> {
    ["userName", "displayName"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::to_string)
}

impl Deliverer {
    /// The changes held on targets.
    pub fn held(&self) -> &Held {
        &self.held
    }

    /// Asks the target's guard for `n` deprovisions of the account `link` names: `None`
    /// when they may go, the [`DeliveryOutcome::Held`] otherwise.
    pub(super) async fn guard(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        op: AuditOp,
        n: u64,
        link: &Link,
    ) -> Result<Option<DeliveryOutcome>, Failure> {
        let cause = if event.op == ChangeOp::Delete {
            "deleted in the hub"
        } else if event
            .resource
            .as_ref()
            .is_some_and(|r| in_scope(&self.schemas, t, event.resource_type, r))
        {
            "deactivated in the hub"
        } else {
            "left the target's scope"
        };
        let label = label_of(&link.delivered)
            .or_else(|| event.resource.as_ref().and_then(label_of))
            .unwrap_or_default();
        if !event.approved
            && let Some(held) = self.admit(event, t, op, n, label.clone(), cause).await?
        {
            return Ok(Some(held));
        }
        // Going: journal what the target holds first (the way back).
        let mut entry =
            JournalEntry::new(&t.id, op, event.resource_type.as_str(), &event.resource_id);
        entry.name = label;
        entry.target_id = link.target_id.clone();
        entry.state = link.delivered.clone();
        if event.resource_type == ResourceKind::User {
            let groups = self
                .directory
                .groups_of_ids(&event.resource_id)
                .await
                .map_err(|e| (op, retryable(e)))?;
            let linked = self
                .links
                .get_many(&t.id, ResourceKind::Group, &groups)
                .await
                .map_err(|e| (op, retryable(e)))?;
            entry.groups = linked.into_values().map(|l| l.target_id).collect();
        }
        self.journal
            .record(&entry)
            .await
            .map_err(|e| (op, retryable(e)))?;
        Ok(None)
    }

    /// [`Deliverer::guard`] for the members `removed` (their ids on the target) from the
    /// event's group, `target_group` there.
    pub(super) async fn guard_members(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        target_group: &str,
        removed: &[String],
    ) -> Result<Option<DeliveryOutcome>, Failure> {
        if event.removals_admitted {
            // The rest of a removal admitted and journaled whole by an earlier delivery.
            return Ok(None);
        }
        let op = AuditOp::RemoveMembers;
        let label = event
            .resource
            .as_ref()
            .and_then(label_of)
            .unwrap_or_default();
        let cause = "members removed from the group in the hub";
        if !event.approved
            && let Some(held) = self
                .admit(event, t, op, removed.len() as u64, label.clone(), cause)
                .await?
        {
            return Ok(Some(held));
        }
        let mut entry = JournalEntry::new(&t.id, op, "Group", &event.resource_id);
        entry.name = label;
        entry.target_id = target_group.to_string();
        entry.members = removed.to_vec();
        self.journal
            .record(&entry)
            .await
            .map_err(|e| (op, retryable(e)))?;
        Ok(None)
    }

    pub(super) async fn admit(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        op: AuditOp,
        n: u64,
        label: String,
        cause: &str,
    ) -> Result<Option<DeliveryOutcome>, Failure> {
        match self.held.admit(t, n).await {
            Ok(true) => Ok(None),
            Ok(false) => Ok(Some(DeliveryOutcome::Held {
                op,
                label,
                cause: format!("{cause}{}", origin_of(event)),
                count: n,
            })),
            Err(e) => Err((op, retryable(e))),
        }
    }

    /// The held changes of `target` that `ids` names (all when `None`: the first
    /// `MAX_LISTED`), and whether more are held than listed.
    async fn chosen(
        &self,
        target: &str,
        ids: Option<&[String]>,
    ) -> Result<(Vec<HeldChange>, bool), HeldError> {
        if self.targets.get(target).await.ok().flatten().is_none() {
            return Err(HeldError::NoTarget(target.to_string()));
        }
        Ok(match ids {
            None => self.held.list(target).await?,
            // By id: point reads, not a listing of every held change.
            Some(ids) => (self.held.get_many(target, ids).await?, false),
        })
    }

    /// Sends held changes of `target` now (all when `ids` is `None`), oldest first, past
    /// its guard, until `until`: what is not tried by then stays held and is counted in
    /// [`Released::left`] (a release of thousands at a paced target takes longer than
    /// one API request may). A user change the hub has superseded since (a newer version
    /// of the user) is not sent: the newer change went (or is held) instead. `actor`: who
    /// released them.
    pub async fn release_held(
        &self,
        target: &str,
        ids: Option<&[String]>,
        actor: &str,
        until: tokio::time::Instant,
    ) -> Result<Released, HeldError> {
        let (chosen, more) = self.chosen(target, ids).await?;
        let chosen_count = chosen.len();
        let enabled = self
            .targets
            .list_enabled()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if !enabled.iter().any(|t| t.id == target) {
            return Err(HeldError::Disabled(target.to_string()));
        }
        let mut out = Released::default();
        for (tried, h) in chosen.into_iter().enumerate() {
            if tokio::time::Instant::now() >= until {
                out.left = chosen_count - tried;
                break;
            }
            if let Some(d) = Deprovision::from_held(&h) {
                // By target id (a reconcile's orphan, a deferred deletion): journaled, sent.
                let sent = match enabled.iter().find(|t| t.id == target) {
                    Some(t) => self.release_direct(t, &d).await,
                    None => Err(HeldError::Disabled(target.to_string())),
                };
                match sent {
                    Ok(()) => self.mark_released(h, actor, &mut out).await?,
                    Err(e) => out.failed.push((h.id, e.to_string())),
                }
                continue;
            }
            if self.superseded(&h).await? {
                self.audit_held(
                    &h,
                    AuditOp::ReleaseHeld,
                    AuditStatus::SkippedStale,
                    actor,
                    "superseded by a newer change in the hub",
                )
                .await;
                self.held
                    .remove(target, std::slice::from_ref(&h.id))
                    .await?;
                out.superseded.push(h.id);
                continue;
            }
            let mut event = h.event.clone();
            event.id = uuid::Uuid::now_v7().to_string();
            event.approved = true;
            event.run = None;
            event.only_targets = vec![target.to_string()];
            match self.deliver(&event, false).await {
                Ok(()) => self.mark_released(h, actor, &mut out).await?,
                Err(e) => out.failed.push((h.id, e.to_string())),
            }
        }
        if more && out.left == 0 {
            // All of a capped listing tried: the rest past it wait as the untried do.
            let (held, _) = self
                .held
                .count_upto(target, super::held::MAX_LISTED)
                .await?;
            out.left = held.saturating_sub(out.failed.len());
        }
        Ok(out)
    }

    /// A deletion under `delete_mode: {"deactivate_then_delete_after_days": N}`: the
    /// account is deactivated now (through the guard, journaled) and its deletion kept
    /// pending for the scheduled cycle ([`super::deferred`]).
    pub(super) async fn defer_delete(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        c: &dyn Connector,
        mut link: Link,
        days: u32,
    ) -> Result<(DeliveryOutcome, LinkChange), Failure> {
        let op = AuditOp::Deactivate;
        let state = link.delivered.clone();
        if !link.disabled {
            if let Some(held) = self.guard(event, t, op, 1, &link).await? {
                return Ok((held, LinkChange::Keep));
            }
            match c.disable_user(&link.target_id).await {
                Ok(()) => {}
                Err(ConnectorError::NotFound) => {
                    return Ok((
                        DeliveryOutcome::Skipped("not on the target any more"),
                        LinkChange::Remove(ResourceKind::User, event.resource_id.clone()),
                    ));
                }
                Err(e) => return Err((op, e)),
            }
        }
        let deleted = event.op == ChangeOp::Delete;
        let mut p = PendingDelete::new(
            &t.id,
            &event.resource_id,
            &link.target_id,
            days,
            crate::store::now_epoch(),
        );
        p.name = label_of(&state)
            .or_else(|| event.resource.as_ref().and_then(label_of))
            .unwrap_or_default();
        p.cause = if deleted {
            "deleted in the hub".into()
        } else {
            "left the target's scope".into()
        };
        p.state = state;
        Deferred::new(self.links.store().clone())
            .put(&p)
            .await
            .map_err(|e| (op, retryable(e)))?;
        let change = if deleted {
            // The hub user is gone: a re-created one links to the account again.
            LinkChange::Remove(ResourceKind::User, event.resource_id.clone())
        } else {
            link.disabled = true;
            link.hash = String::new();
            if let Some(obj) = link.delivered.as_object_mut() {
                obj.insert("active".into(), Value::Bool(false));
            }
            LinkChange::Put(Box::new(link))
        };
        Ok((DeliveryOutcome::Delivered(op), change))
    }

    /// A held deprovision by target id, sent now past the guard (journaled first).
    async fn release_direct(&self, t: &TargetConfig, d: &Deprovision) -> Result<(), HeldError> {
        let c = self
            .connector(t)
            .map_err(|e| HeldError::Invalid(format!("target {}: {}", t.id, e.0)))?;
        self.direct.journal(t, d).await?;
        let result = direct::send(&self.paced(t, c.as_ref()), d.op, d.kind, &d.change).await;
        let entry = AuditEntry::new(&t.id, d.op, AuditStatus::Delivered)
            .resource(d.kind.as_str(), &d.resource_id)
            .detail(format!("{:?}: {} (released)", d.name, d.cause));
        let (entry, out) = match result {
            Ok(()) => (entry, Ok(())),
            Err(e) => (
                AuditEntry {
                    status: AuditStatus::Refused,
                    ..entry
                }
                .detail(format!("{:?} not changed: {e}", d.name)),
                Err(HeldError::Invalid(e.to_string())),
            ),
        };
        if let Err(e) = self.audit.record(entry).await {
            tracing::error!(error = %e, "audit entry not written");
        }
        out
    }

    /// Drops held changes of `target` (all when `ids` is `None`), audited. What caused
    /// them is not undone: a reconcile whose next run finds the cause still there (the
    /// account deleted or out of scope in the hub, still active on the target) sends the
    /// deprovision again, through the guard.
    pub async fn discard_held(
        &self,
        target: &str,
        ids: Option<&[String]>,
        actor: &str,
    ) -> Result<Vec<HeldChange>, HeldError> {
        let (chosen, _) = self.chosen(target, ids).await?;
        let ids: Vec<String> = chosen.iter().map(|h| h.id.clone()).collect();
        self.held.remove(target, &ids).await?;
        for h in &chosen {
            self.audit_held(
                h,
                AuditOp::DiscardHeld,
                AuditStatus::Skipped,
                actor,
                "discarded",
            )
            .await;
        }
        Ok(chosen)
    }

    /// A held user change older than the user's current version in the hub (or about a
    /// user deleted since, when the change is not the delete itself).
    async fn superseded(&self, h: &HeldChange) -> Result<bool, StoreError> {
        if h.event.resource_type != ResourceKind::User || h.event.op == ChangeOp::Delete {
            return Ok(false);
        }
        match self
            .directory
            .load(ResourceKind::User, &h.resource_id)
            .await
        {
            Ok(s) => Ok(s.version > h.event.version),
            Err(DirectoryError::NotFound { .. }) => Ok(true),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// A held change sent on release: audited, forgotten, counted.
    async fn mark_released(
        &self,
        h: HeldChange,
        actor: &str,
        out: &mut Released,
    ) -> Result<(), HeldError> {
        self.audit_held(
            &h,
            AuditOp::ReleaseHeld,
            AuditStatus::Delivered,
            actor,
            "released",
        )
        .await;
        self.held
            .remove(&h.target, std::slice::from_ref(&h.id))
            .await?;
        out.released.push(h.id);
        Ok(())
    }

    async fn audit_held(
        &self,
        h: &HeldChange,
        op: AuditOp,
        status: AuditStatus,
        actor: &str,
        what: &str,
    ) {
        let entry = AuditEntry::new(h.target.clone(), op, status)
            .resource(&h.resource_type, &h.resource_id)
            .event(&h.event.id)
            .actor(actor)
            .detail(format!(
                "{what}: {} of {} ({}; held {})",
                h.change.as_str(),
                if h.name.is_empty() {
                    &h.resource_id
                } else {
                    &h.name
                },
                h.cause,
                h.at
            ));
        if let Err(e) = self.audit.record(entry).await {
            tracing::error!(error = %e, "audit entry not written");
        }
    }
}
