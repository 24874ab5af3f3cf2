//! Undo: the inverse of the deprovisions journaled on a target since a time
//! ([`super::journal`]), planned (`apply: false`) or applied.
//!
//! A deactivation is undone by reactivating the account with the state it had; a
//! deletion by creating the account again from that state (and re-adding it to the
//! target groups it was in); a membership removal by adding the members back. The hub is
//! not changed: when what caused the deprovision is still there (the user deleted or out
//! of scope in the hub), the next change or reconcile sends it again, through the
//! target's guard. An applied step leaves the journal; a failed one stays for another try.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::audit::{AuditEntry, AuditOp, AuditStatus};
use super::deliver::Deliverer;
use super::deliver_guard::HeldError;
use super::journal::JournalEntry;
use super::link::Link;
use super::mapping::content_hash;
use crate::connector::{Connector, ConnectorError};
use crate::store::StoreError;
use provisync_scim::ResourceKind;

/// One inverse change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoStep {
    /// The journal entry it undoes.
    pub journal: String,
    /// `reactivate`, `recreate`, `add_members`, or `not_restorable` (a deleted group).
    pub change: String,
    pub resource_type: String,
    /// The hub id.
    pub id: String,
    #[serde(rename = "userName")]
    pub user_name: String,
    /// When the deprovision was journaled.
    pub at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What an undo planned or did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoReport {
    pub target: String,
    pub applied: bool,
    pub steps: Vec<UndoStep>,
    /// Steps that failed when applied (journal id, why); they stay journaled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<(String, String)>,
    /// Steps applied.
    #[serde(default)]
    pub done: usize,
    /// Steps not tried: the undo ran out of its time (they stay journaled: undo again
    /// to go on).
    #[serde(default)]
    pub left: usize,
}

fn step_of(e: &JournalEntry) -> UndoStep {
    let (change, detail) = match (e.resource_type.as_str(), e.change) {
        ("User", AuditOp::Deactivate) => ("reactivate", String::new()),
        ("User", AuditOp::Delete) => ("recreate", format!("{} group(s)", e.groups.len())),
        ("Group", AuditOp::RemoveMembers) => {
            ("add_members", format!("{} member(s)", e.members.len()))
        }
        _ => (
            "not_restorable",
            format!("a {} {} is not undone", e.resource_type, e.change.as_str()),
        ),
    };
    UndoStep {
        journal: e.id.clone(),
        change: change.into(),
        resource_type: e.resource_type.clone(),
        id: e.resource_id.clone(),
        user_name: e.name.clone(),
        at: e.at.clone(),
        detail,
    }
}

/// The state journaled, active.
fn active(state: &Value) -> Value {
    let mut v = state.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("active".into(), Value::Bool(true));
    }
    v
}

impl Deliverer {
    /// The inverse of the deprovisions journaled on `target` at or after `since`
    /// (RFC 3339): planned, or applied when `apply` (audited with `actor`) until
    /// `until`: the steps not tried by then are counted in [`UndoReport::left`].
    pub async fn undo(
        &self,
        target: &str,
        since: &str,
        apply: bool,
        actor: &str,
        until: tokio::time::Instant,
    ) -> Result<UndoReport, HeldError> {
        let since = chrono::DateTime::parse_from_rfc3339(since)
            .map_err(|_| {
                HeldError::Invalid(format!(
                    "since must be an RFC 3339 time (2025-01-31T12:00:00Z), not {since:?}"
                ))
            })?
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let Some(t) = self
            .targets
            .get(target)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
        else {
            return Err(HeldError::NoTarget(target.to_string()));
        };
        let mut entries = self.journal.since(target, &since).await?;
        // Accounts first (members must exist to be added back), each kind oldest first.
        entries.sort_by_key(|e| (e.resource_type != "User", e.at.clone()));
        let mut report = UndoReport {
            target: target.to_string(),
            applied: apply,
            steps: entries.iter().map(step_of).collect(),
            failed: Vec::new(),
            done: 0,
            left: 0,
        };
        if !apply {
            return Ok(report);
        }
        let connector = self
            .connector(&t)
            .map_err(|e| HeldError::Invalid(format!("target {target}: {}", e.0)))?;
        // Each call takes a slot of the target's pace, as a delivery's do.
        let c = self.paced(&t, connector.as_ref());
        let restorable = report
            .steps
            .iter()
            .filter(|s| s.change != "not_restorable")
            .count();
        for (e, step) in entries.iter().zip(&report.steps) {
            if step.change == "not_restorable" {
                continue;
            }
            if tokio::time::Instant::now() >= until {
                report.left = restorable - report.done - report.failed.len();
                break;
            }
            let (op, result) = match step.change.as_str() {
                "reactivate" => (AuditOp::Update, self.reactivate(&c, e).await),
                "recreate" => (AuditOp::Create, self.recreate(&c, e).await),
                _ => (
                    AuditOp::AddMembers,
                    c.add_members(&e.target_id, &e.members).await,
                ),
            };
            let entry = AuditEntry::new(target, op, AuditStatus::Delivered)
                .resource(&e.resource_type, &e.resource_id)
                .actor(actor);
            let what = format!(
                "undo: {} of {} (journaled {})",
                step.change,
                if e.name.is_empty() {
                    &e.resource_id
                } else {
                    &e.name
                },
                e.at
            );
            let entry = match result {
                Ok(()) => {
                    self.journal.remove(e).await?;
                    report.done += 1;
                    entry.detail(what)
                }
                Err(err) => {
                    report.failed.push((e.id.clone(), err.to_string()));
                    AuditEntry {
                        status: AuditStatus::Refused,
                        ..entry
                    }
                    .detail(format!("{what}: {err}"))
                }
            };
            if let Err(e) = self.audit.record(entry).await {
                tracing::error!(error = %e, "audit entry not written");
            }
        }
        Ok(report)
    }

    async fn reactivate(&self, c: &dyn Connector, e: &JournalEntry) -> Result<(), ConnectorError> {
        let payload = active(&e.state);
        let new_id = c.update_user(&e.target_id, &payload, None, None).await?;
        let id = new_id.unwrap_or_else(|| e.target_id.clone());
        if !e.unlinked {
            self.relink(e, &id, payload).await?;
        }
        self.rejoin(c, e, &id).await
    }

    async fn recreate(&self, c: &dyn Connector, e: &JournalEntry) -> Result<(), ConnectorError> {
        let payload = active(&e.state);
        let id = match c.create_user(&payload, None).await {
            Ok(id) => id,
            Err(ConnectorError::Conflict(_)) => {
                c.find_user(&payload)
                    .await?
                    .ok_or(ConnectorError::Refused {
                        status: Some(409),
                        reason: "conflict, and no matching account found".into(),
                    })?
            }
            Err(err) => return Err(err),
        };
        if !e.unlinked {
            self.relink(e, &id, payload).await?;
        }
        self.rejoin(c, e, &id).await
    }

    /// The account back in the groups it was in (adding a member twice is harmless).
    async fn rejoin(
        &self,
        c: &dyn Connector,
        e: &JournalEntry,
        id: &str,
    ) -> Result<(), ConnectorError> {
        let member = [id.to_string()];
        for g in &e.groups {
            c.add_members(g, &member).await?;
        }
        Ok(())
    }

    /// The link says what the target holds again.
    async fn relink(
        &self,
        e: &JournalEntry,
        target_id: &str,
        payload: Value,
    ) -> Result<(), ConnectorError> {
        let store = |err: StoreError| ConnectorError::Retryable {
            status: None,
            retry_after: None,
            detail: format!("hub store: {err}"),
        };
        let old = self
            .links
            .get(&e.target, ResourceKind::User, &e.resource_id)
            .await
            .map_err(store)?;
        let link = Link {
            target: e.target.clone(),
            resource_type: ResourceKind::User,
            hub_id: e.resource_id.clone(),
            target_id: target_id.to_string(),
            hash: content_hash(&payload),
            delivered: payload,
            disabled: false,
            version: old.as_ref().map_or(0, |l| l.version),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        self.links.put(&link).await.map_err(store)
    }
}
