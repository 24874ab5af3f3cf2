//! Provision on demand, with the steps shown (as Entra's "Provision on demand" does): one
//! user to one target now, through the delivery engine itself, and a report of what
//! happened on the way — is the user in the target's scope, how is the account on the
//! target found (already linked, matched by the matching attribute, or to be created),
//! which attributes change, what the target receives, and its answer.
//!
//! The delivery is the engine's ([`Deliverer::deliver`] of an on-demand change event),
//! so a provision on demand does exactly what a queued change would: the same link, the
//! same audit entry, the same idempotency. A failure a retry can fix is queued like any
//! other change, so it is retried with backoff.
//!
//! [`preview`] is the same mapping without any call: what a target with these rules would
//! receive for a user (the mapping editor's preview).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::audit::{Audit, AuditEntry, AuditQuery, AuditStatus};
use super::deliver::{DeliveryError, in_scope};
use super::link::Links;
use super::mapping::{content_hash, map_resource};
use crate::connector::{Connector, ConnectorFactory};
use crate::directory::{Directory, Stored};
use crate::event::{ChangeEvent, ChangeOp, Origin};
use crate::queue::Queue;
use crate::sync::deliver::Deliverer;
use crate::target::{AttributeMapping, TargetConfig, TargetKind};
use provisync_scim::{ResourceKind, SchemaRegistry, filter};

/// What a step says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepState {
    /// Passed (in scope, matched, delivered).
    Passed,
    /// Nothing to do at this step (out of scope, unchanged).
    Skipped,
    /// Failed: the steps after it did not run, or the target refused.
    Failed,
}

/// The steps, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    Scope,
    Match,
    Attributes,
    Send,
}

/// One step of a provision on demand.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    pub state: StepState,
    pub detail: String,
}

/// One attribute that differs from what the target received last.
#[derive(Clone, Debug, PartialEq)]
pub struct AttributeChange {
    /// The attribute (`name`, `emails`, an extension's URN).
    pub attribute: String,
    /// What the target had from the hub (`None`: nothing delivered yet, or absent).
    pub before: Option<Value>,
    /// What it gets now (`None`: removed).
    pub after: Option<Value>,
}

/// What a provision on demand did.
#[derive(Clone, Debug, PartialEq)]
pub struct ProvisionReport {
    pub target: String,
    pub user_id: String,
    pub user_name: String,
    pub steps: Vec<Step>,
    pub changes: Vec<AttributeChange>,
    /// The user as the target receives it (mapped; never a password).
    pub payload: Value,
    /// The audit entry of the delivery (its op, status and the target's answer), when the
    /// delivery ran.
    pub outcome: Option<AuditEntry>,
    /// The account's id on the target afterwards.
    pub target_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The hub's store or queue failed.
    #[error("{0}")]
    Failed(String),
}

/// The parts a provision on demand uses (the hub's).
pub struct Provision<'a> {
    pub directory: &'a Directory,
    pub links: &'a Links,
    pub deliverer: &'a Deliverer,
    pub audit: &'a Audit,
    pub queue: &'a Arc<dyn Queue>,
    pub connectors: ConnectorFactory,
}

fn failed(e: impl std::fmt::Display) -> ProvisionError {
    ProvisionError::Failed(e.to_string())
}

impl Provision<'_> {
    /// Provisions `user` to `t` (existing and enabled: the caller checked) now.
    pub async fn run(
        &self,
        t: &TargetConfig,
        user: &Stored,
    ) -> Result<ProvisionReport, ProvisionError> {
        let id = user.id().to_string();
        let schemas = self.directory.schemas();
        let mut report = ProvisionReport {
            target: t.id.clone(),
            user_id: id.clone(),
            user_name: user_name(&user.resource),
            steps: Vec::new(),
            changes: Vec::new(),
            payload: map_resource(
                ResourceKind::User,
                &id,
                &user.resource,
                &t.mapping,
                &t.group_mapping,
            ),
            outcome: None,
            target_id: None,
        };
        let step = |kind, state, detail: String| Step {
            kind,
            state,
            detail,
        };

        // 1. Scope.
        let scoped = in_scope(schemas, t, ResourceKind::User, &user.resource);
        report.steps.push(match (&t.scope_filter, scoped) {
            (None, _) => step(
                StepKind::Scope,
                StepState::Passed,
                "In scope: the target has no scope filter, every user is in scope.".into(),
            ),
            (Some(f), true) => step(
                StepKind::Scope,
                StepState::Passed,
                format!("In scope: the user matches the scope filter {f}."),
            ),
            (Some(f), false) => step(
                StepKind::Scope,
                StepState::Skipped,
                format!(
                    "Out of scope: the user does not match the scope filter {f}; the target's \
                     out-of-scope rule ({}) applies to an account already there.",
                    serde_json::to_value(t.out_of_scope)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            ),
        });

        // 2. Matching.
        let link = self
            .links
            .get(&t.id, ResourceKind::User, &id)
            .await
            .map_err(failed)?;
        let matching = match &t.kind {
            TargetKind::Scim(s) => s.matching_attribute.clone(),
            _ => "userName".to_string(),
        };
        let matched = match (&t.kind, &link) {
            (TargetKind::Webhook(_), _) => step(
                StepKind::Match,
                StepState::Passed,
                "A site receives the change as a signed webhook and matches the account itself."
                    .into(),
            ),
            (_, Some(l)) => step(
                StepKind::Match,
                StepState::Passed,
                format!(
                    "Linked: the hub delivered this user before; the account on the target is {}.",
                    l.target_id
                ),
            ),
            (_, None) if !scoped => step(
                StepKind::Match,
                StepState::Skipped,
                "Not on the target, and out of scope: nothing to match.".into(),
            ),
            (_, None) => match (self.connectors)(t) {
                Err(e) => step(
                    StepKind::Match,
                    StepState::Failed,
                    format!("The target's connection is not usable: {}", e.0),
                ),
                Ok(c) if c.create_detects_existing() => step(
                    StepKind::Match,
                    StepState::Passed,
                    format!(
                        "Not linked yet: the target refuses a second account with the same \
                         {matching}, so the account is created, or linked on that conflict."
                    ),
                ),
                // Paced as the delivery that follows is (a Retry-After holds it too).
                Ok(c) => match self
                    .deliverer
                    .paced(t, c.as_ref())
                    .find_user(&report.payload)
                    .await
                {
                    Ok(Some(found)) => step(
                        StepKind::Match,
                        StepState::Passed,
                        format!(
                            "Matched by {matching}: the existing account {found} is linked, \
                             not duplicated."
                        ),
                    ),
                    Ok(None) => step(
                        StepKind::Match,
                        StepState::Passed,
                        format!("No account on the target has this {matching}: one is created."),
                    ),
                    Err(e) => step(
                        StepKind::Match,
                        StepState::Failed,
                        format!("Looking for a matching account failed: {e}"),
                    ),
                },
            },
        };
        let stop = matched.state == StepState::Failed;
        report.steps.push(matched);
        if stop {
            return Ok(report);
        }

        // 3. Attributes.
        report.changes = changes(link.as_ref().map(|l| &l.delivered), &report.payload);
        let unchanged = link
            .as_ref()
            .is_some_and(|l| l.hash == content_hash(&report.payload));
        report.steps.push(if !scoped {
            step(
                StepKind::Attributes,
                StepState::Skipped,
                "Out of scope: no attributes are sent.".into(),
            )
        } else if unchanged {
            step(
                StepKind::Attributes,
                StepState::Skipped,
                "Unchanged: the target has every attribute as the hub has it.".into(),
            )
        } else {
            step(
                StepKind::Attributes,
                StepState::Passed,
                format!(
                    "{} attribute(s) {}.",
                    report.changes.len(),
                    if link.is_some() {
                        "differ from what the target has"
                    } else {
                        "to set on the new account"
                    }
                ),
            )
        });

        // 4. Send, and the answer.
        let mut event =
            ChangeEvent::new(ResourceKind::User, &id, ChangeOp::Update, Origin::OnDemand);
        event.resource = Some(user.resource.clone());
        event.version = user.version;
        event.only_targets = vec![t.id.clone()];
        let sent = self.deliverer.deliver(&event, false).await;
        let (entries, _) = self
            .audit
            .query(&AuditQuery {
                resource: Some(id.clone()),
                limit: 20,
                ..AuditQuery::default()
            })
            .await
            .map_err(failed)?;
        report.outcome = entries
            .into_iter()
            .find(|e| e.event_id == event.id && e.target == t.id);
        report.target_id = self
            .links
            .get(&t.id, ResourceKind::User, &id)
            .await
            .map_err(failed)?
            .map(|l| l.target_id);
        let answer = match (&sent, &report.outcome) {
            (Err(DeliveryError::Retry { detail, .. }), _) => {
                // Retried with backoff like any queued change.
                let message = event.to_message().map_err(failed)?;
                self.queue.send(vec![message]).await.map_err(failed)?;
                step(
                    StepKind::Send,
                    StepState::Failed,
                    format!("The target could not take it now ({detail}); queued, and retried."),
                )
            }
            (Err(e), _) => step(StepKind::Send, StepState::Failed, e.to_string()),
            (Ok(()), Some(o)) => {
                let what = o.op.as_str();
                let state = match o.status {
                    AuditStatus::Delivered | AuditStatus::Linked => StepState::Passed,
                    AuditStatus::Skipped => StepState::Skipped,
                    _ => StepState::Failed,
                };
                let answer = if o.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", o.detail)
                };
                step(
                    StepKind::Send,
                    state,
                    format!("{what}: {}{answer}", o.status.as_str()),
                )
            }
            (Ok(()), None) => step(
                StepKind::Send,
                StepState::Skipped,
                "Nothing sent: the change does not concern this target.".into(),
            ),
        };
        report.steps.push(answer);
        Ok(report)
    }
}

/// The user's `userName` (empty when it has none).
pub fn user_name(resource: &Value) -> String {
    resource
        .get("userName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The attributes (top level; an extension's attributes one level down) that differ
/// between what a target received and what it gets now.
pub fn changes(before: Option<&Value>, after: &Value) -> Vec<AttributeChange> {
    fn flat(v: Option<&Value>) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let empty = Map::new();
        for (k, x) in v.and_then(Value::as_object).unwrap_or(&empty) {
            match x.as_object() {
                Some(ext) if k.starts_with("urn:") => {
                    for (sk, sx) in ext {
                        out.insert(format!("{k}:{sk}"), sx.clone());
                    }
                }
                _ => {
                    out.insert(k.clone(), x.clone());
                }
            }
        }
        out.remove("schemas");
        out
    }
    let (b, a) = (flat(before), flat(Some(after)));
    let mut names: Vec<&String> = b.keys().chain(a.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| AttributeChange {
            attribute: k.clone(),
            before: b.get(k).cloned(),
            after: a.get(k).cloned(),
        })
        .collect()
}

/// Why a preview cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("invalid scope filter: {0}")]
    BadFilter(String),
}

/// What a target with these rules would receive for `user`, and whether the user is in
/// its scope — without calling anything (the mapping editor's preview).
pub fn preview(
    schemas: &SchemaRegistry,
    user: &Stored,
    mapping: &[AttributeMapping],
    group_mapping: &BTreeMap<String, String>,
    scope_filter: Option<&str>,
) -> Result<(bool, Value), PreviewError> {
    let scoped = match scope_filter {
        None => true,
        Some(f) => {
            let parsed = filter::parse(f).map_err(|e| PreviewError::BadFilter(e.detail))?;
            let view = schemas.view(ResourceKind::User);
            parsed
                .validate(&view)
                .map_err(|e| PreviewError::BadFilter(e.detail))?;
            parsed.matches(&view, &user.resource)
        }
    };
    let payload = map_resource(
        ResourceKind::User,
        user.id(),
        &user.resource,
        mapping,
        group_mapping,
    );
    Ok((scoped, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_name_what_differs() {
        let before = json!({"userName": "a", "title": "x", "urn:ext": {"dept": "1", "cc": "2"}});
        let after = json!({"userName": "a", "nickName": "n", "urn:ext": {"dept": "9", "cc": "2"}});
        let c = changes(Some(&before), &after);
        let names: Vec<&str> = c.iter().map(|c| c.attribute.as_str()).collect();
        assert_eq!(names, ["nickName", "title", "urn:ext:dept"]);
        assert_eq!(c[1].after, None);
        assert_eq!(c[2].before, Some(json!("1")));
        assert_eq!(changes(None, &json!({"userName": "a"})).len(), 1);
    }
}
