//! Targets: the systems changes are delivered to, as operators define them with
//! `PUT /admin/targets/{id}`.
//!
//! STATUS: types are the contract; storage (secrets encrypted at rest), validation and
//! redaction are being written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Credentials for an outbound HTTP API. Never logged, never returned unredacted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpAuth {
    Bearer(String),
    Basic { username: String, password: String },
}

/// How a SCIM target wants updates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateStyle {
    /// PATCH with the attributes that changed (most servers; Entra, Okta accept it).
    #[default]
    Patch,
    /// Full PUT of the resource (servers without PATCH support).
    Put,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScimTarget {
    pub base_url: String,
    pub auth: HttpAuth,
    #[serde(default)]
    pub update_style: UpdateStyle,
    /// Attribute used to find an existing account before creating (default `userName`).
    #[serde(default = "default_matching")]
    pub matching_attribute: String,
}

fn default_matching() -> String {
    "userName".into()
}

/// The kind of system, with its connection settings. Matched exhaustively wherever the
/// kinds differ (connector construction, redaction, validation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TargetKind {
    Scim(ScimTarget),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Create,
    Update,
    Deactivate,
    Delete,
}

/// When a target receives changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// Every change, as it happens.
    #[default]
    Realtime,
    /// Only by the scheduled reconcile.
    Scheduled,
    /// Only on demand (`POST /admin/sync`).
    Manual,
}

/// What happens on the target to a user that leaves its scope (or is deleted in the hub).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutOfScope {
    #[default]
    Deactivate,
    Delete,
    Leave,
}

/// One attribute mapping rule, applied on top of the identity mapping:
/// `{"target": "title", "source": "urn:...:enterprise:2.0:User:department"}`,
/// `{"target": "userType", "value": "Employee"}` (constant),
/// `{"target": "nickName", "source": "displayName", "default": "n/a"}`,
/// `{"target": "phoneNumbers", "drop": true}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributeMapping {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop: bool,
}

fn default_operations() -> Vec<Operation> {
    vec![
        Operation::Create,
        Operation::Update,
        Operation::Deactivate,
        Operation::Delete,
    ]
}

fn yes() -> bool {
    true
}

/// A target as the operator defined it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetConfig {
    /// From the URL (`/admin/targets/{id}`).
    #[serde(default)]
    pub id: String,
    #[serde(flatten)]
    pub kind: TargetKind,
    #[serde(default = "default_operations")]
    pub operations: Vec<Operation>,
    /// A SCIM filter on hub users: only matching users go to this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_filter: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mapping: Vec<AttributeMapping>,
    /// Hub group displayName -> group name on the target (group-to-group mapping).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_mapping: BTreeMap<String, String>,
    #[serde(default)]
    pub mode: DeliveryMode,
    #[serde(default)]
    pub out_of_scope: OutOfScope,
    #[serde(default = "yes")]
    pub enabled: bool,
}
