//! Plans: what a reconcile, an on-demand sync or a changed target definition would send
//! to a target, computed and sent nowhere (`"plan": true`).
//!
//! A plan names each change (`create`, `update`, `deactivate`, `delete`) with the
//! account's hub id and `userName` (a group's `displayName`), and counts them. It is
//! what the delivery engine would do with the change events the work would queue, by the
//! same rules: the target's operations, scoping filter and out-of-scope policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::deliver::in_scope;
use super::link::Links;
use super::mapping::{content_hash, map_resource};
use crate::directory::Stored;
use crate::event::{ChangeEvent, ChangeOp};
use crate::store::StoreError;
use crate::target::{Operation, OutOfScope, TargetConfig};
use provisync_scim::{ResourceKind, SchemaRegistry};

/// One change a plan names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedChange {
    /// `create`, `update`, `deactivate` or `delete`.
    pub change: String,
    /// `User` or `Group`.
    pub resource_type: String,
    /// The hub id (the target's id for an account the hub does not know).
    pub id: String,
    /// `userName` (a group's `displayName`).
    #[serde(rename = "userName")]
    pub user_name: String,
    /// More about it (members added and removed; `orphan`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl PlannedChange {
    pub fn new(change: &str, kind: &str, id: &str, name: &str) -> Self {
        PlannedChange {
            change: change.to_string(),
            resource_type: kind.to_string(),
            id: id.to_string(),
            user_name: name.to_string(),
            detail: String::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// A plan: its changes, and how many of each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub counts: BTreeMap<String, u64>,
    pub changes: Vec<PlannedChange>,
}

impl Plan {
    pub fn from_changes(changes: Vec<PlannedChange>) -> Self {
        let mut counts: BTreeMap<String, u64> = ["create", "update", "deactivate", "delete"]
            .into_iter()
            .map(|k| (k.to_string(), 0))
            .collect();
        for c in &changes {
            *counts.entry(c.change.clone()).or_default() += 1;
        }
        Plan { counts, changes }
    }
}

/// `userName`, else `displayName`, of a resource.
pub fn name_of(v: &Value) -> String {
    ["userName", "displayName"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_string()
}

/// What the delivery engine would do on `t` with `event`, a change the work found to be
/// needed there (`None`: nothing, e.g. a user leaving the scope of a target whose policy
/// is `leave`, or an operation the target does not take).
pub fn planned_for_event(
    schemas: &SchemaRegistry,
    t: &TargetConfig,
    event: &ChangeEvent,
) -> Option<PlannedChange> {
    let kind = event.resource_type.as_str();
    let name = event.resource.as_ref().map(name_of).unwrap_or_default();
    let allowed = |op: Operation| t.operations.contains(&op);
    let planned = |change: &str| Some(PlannedChange::new(change, kind, &event.resource_id, &name));
    if event.resource_type == ResourceKind::Group {
        let members = |p: PlannedChange| {
            if event.members_added.is_empty() && event.members_removed.is_empty() {
                p
            } else {
                p.detail(format!(
                    "members +{} -{}",
                    event.members_added.len(),
                    event.members_removed.len()
                ))
            }
        };
        return match event.op {
            ChangeOp::Create if allowed(Operation::Create) => planned("create").map(members),
            ChangeOp::Update => planned("update").map(members),
            ChangeOp::Delete if allowed(Operation::Delete) => planned("delete"),
            _ => None,
        };
    }
    let leaving = |deleted: bool| {
        let policy = if deleted && allowed(Operation::Delete) {
            OutOfScope::Delete
        } else {
            t.out_of_scope
        };
        match policy {
            OutOfScope::Leave => None,
            OutOfScope::Delete if allowed(Operation::Delete) => planned("delete"),
            _ if allowed(Operation::Deactivate) => planned("deactivate"),
            _ => None,
        }
    };
    match (&event.op, &event.resource) {
        (ChangeOp::Delete, _) | (_, None) => leaving(true),
        (_, Some(r)) if !in_scope(schemas, t, ResourceKind::User, r) => leaving(false),
        (ChangeOp::Create, Some(_)) if allowed(Operation::Create) => planned("create"),
        (ChangeOp::Create, Some(_)) => None,
        (ChangeOp::Update, Some(r)) if r.get("active") == Some(&Value::Bool(false)) => {
            allowed(Operation::Deactivate)
                .then(|| planned("deactivate"))
                .flatten()
        }
        (ChangeOp::Update, Some(_)) if allowed(Operation::Update) => planned("update"),
        _ => None,
    }
}

/// What delivering these hub users to `t` would do now, by the links the target has (the
/// engine's rules: scope, operations, out-of-scope policy, and the mapped content against
/// what was delivered last). Unchanged users are left out. A definition change is planned
/// by passing the new definition: its scope and mapping against the links the old one
/// left.
pub async fn plan_users(
    links: &Links,
    schemas: &SchemaRegistry,
    t: &TargetConfig,
    users: &[Stored],
) -> Result<Vec<PlannedChange>, StoreError> {
    let allowed = |op: Operation| t.operations.contains(&op);
    let mut out = Vec::new();
    for chunk in users.chunks(100) {
        let ids: Vec<String> = chunk.iter().map(|s| s.id().to_string()).collect();
        let linked = links.get_many(&t.id, ResourceKind::User, &ids).await?;
        for s in chunk {
            let link = linked.get(s.id());
            let name = name_of(&s.resource);
            let planned = |change: &str| PlannedChange::new(change, "User", s.id(), &name);
            if !in_scope(schemas, t, ResourceKind::User, &s.resource) {
                let Some(link) = link else { continue };
                let change = match t.out_of_scope {
                    OutOfScope::Leave => None,
                    OutOfScope::Delete if allowed(Operation::Delete) => Some("delete"),
                    _ if allowed(Operation::Deactivate) && !link.disabled => Some("deactivate"),
                    _ => None,
                };
                out.extend(change.map(planned));
                continue;
            }
            let mut payload = map_resource(
                ResourceKind::User,
                s.id(),
                &s.resource,
                &t.mapping,
                &t.group_mapping,
            );
            if link.is_some_and(|l| l.disabled)
                && let Some(obj) = payload.as_object_mut()
            {
                obj.entry("active").or_insert(Value::Bool(true));
            }
            let change = match link {
                None => allowed(Operation::Create).then_some("create"),
                Some(l) if l.hash == content_hash(&payload) => None,
                Some(l) => {
                    let inactive = payload.get("active") == Some(&Value::Bool(false));
                    let was_inactive =
                        l.disabled || l.delivered.get("active") == Some(&Value::Bool(false));
                    if inactive && !was_inactive {
                        allowed(Operation::Deactivate).then_some("deactivate")
                    } else {
                        allowed(Operation::Update).then_some("update")
                    }
                }
            };
            out.extend(change.map(planned));
        }
    }
    Ok(out)
}
