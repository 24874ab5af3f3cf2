//! Targets: the systems changes are delivered to, as operators define them with
//! `PUT /admin/targets/{id}`.
//!
//! - [`TargetConfig::validate`] checks a definition before it is stored (the admin API
//!   answers 400 with the reason);
//! - [`TargetConfig::redacted`] is the only form that leaves the process (API answers,
//!   logs): every secret replaced by `"***"`;
//! - [`Targets`] keeps definitions in the store, every secret sealed with the operator key
//!   ([`SecretBox`]), and serves the enabled ones from a short in-process cache for the
//!   delivery engine.
//!
//! Layout: item `TARGET#{id}` / `TARGET`, in gsi1 `TARGETS` / `{id}`; `data` is the
//! definition as JSON with sealed secrets (`v1.…`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::definitions::Definition;

mod guard;
mod kinds;
mod repo;
mod validate;

pub use guard::*;
pub use kinds::*;
pub use repo::{TARGET_CACHE_TTL, TargetError, Targets, target_key};
pub use validate::check_target_id;
pub(crate) use validate::{check_auth, check_target_url};

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

/// What a reconcile does with an account on the target that no hub user accounts for
/// (not linked, not matched by the matching attribute).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrphanPolicy {
    /// Count it in the reconcile report and the audit log; touch nothing.
    #[default]
    Report,
    /// Deactivate it on the target (`active: false`).
    Deactivate,
    /// Delete it from the target.
    Delete,
}

/// What an attribute mapping rule applies to: users (the default) or groups. A rule saved
/// before rules said so is a user rule, which is what every rule meant then.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppliesTo {
    #[default]
    #[serde(alias = "user")]
    Users,
    #[serde(alias = "group")]
    Groups,
}

impl AppliesTo {
    /// `users` or `groups`, as in a definition.
    pub fn as_str(self) -> &'static str {
        match self {
            AppliesTo::Users => "users",
            AppliesTo::Groups => "groups",
        }
    }

    /// The resource kind the rule's `source` is read from and its `target` written to.
    pub fn kind(self) -> provisync_scim::ResourceKind {
        match self {
            AppliesTo::Users => provisync_scim::ResourceKind::User,
            AppliesTo::Groups => provisync_scim::ResourceKind::Group,
        }
    }
}

/// One attribute mapping rule, applied on top of the identity mapping:
/// `{"target": "title", "source": "urn:...:enterprise:2.0:User:department"}`,
/// `{"target": "userType", "value": "Employee"}` (constant),
/// `{"target": "nickName", "source": "displayName", "default": "n/a"}`,
/// `{"target": "phoneNumbers", "drop": true}`,
/// `{"applies_to": "groups", "target": "externalId", "source": "displayName"}`.
/// A rule applies to users unless it says `"applies_to": "groups"`; every answer that
/// shows a mapping names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributeMapping {
    #[serde(default)]
    pub applies_to: AppliesTo,
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
    /// Accounts on the target the hub does not know, as found by a reconcile.
    #[serde(default)]
    pub orphans: OrphanPolicy,
    /// Deprovisions beyond this within its window are held for approval; absent: the
    /// default guard; `null`: none.
    #[serde(default = "guard::default_guard")]
    pub deprovision_guard: Option<DeprovisionGuard>,
    /// How a user deleted in the hub (or leaving the scope under `out_of_scope:
    /// delete`) is deleted here: absent, at once; `{"deactivate_then_delete_after_days":
    /// N}`, deactivated at once and deleted N days later unless restored in between
    /// (`sync::deferred`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_mode: Option<DeleteMode>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// At most this many calls to the target per second (its documented rate limit),
    /// delivery's and reconcile's together; otherwise the hub finds the target's pace
    /// itself (`sync::pace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<f64>,
    /// At most this many calls to the target at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

/// `delete_mode`: `{"deactivate_then_delete_after_days": N}` (1 to 365).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteMode {
    pub deactivate_then_delete_after_days: u32,
}

/// Longest wait of a deferred deletion, days.
pub const MAX_DEFERRED_DELETE_DAYS: u32 = 365;

impl TargetConfig {
    /// Days a deletion waits as a deactivation (`None`: deleted at once).
    pub fn deferred_delete_days(&self) -> Option<u32> {
        self.delete_mode
            .map(|m| m.deactivate_then_delete_after_days)
    }
}

/// What replaces a secret in every outward form of a target.
pub use crate::definitions::REDACTED;
/// Longest target id.
pub const MAX_TARGET_ID_LEN: usize = 64;
const MAX_SECRET_LEN: usize = 8 * 1024;
const MAX_MAPPINGS: usize = 200;

impl HttpAuth {
    /// Applies `f` to the secret of these credentials, with its field under `at`
    /// (`auth.bearer`, `pull.auth.basic.password`).
    pub(crate) fn map_secret<E>(
        &mut self,
        at: &str,
        f: &mut dyn FnMut(&str, &str) -> Result<String, E>,
    ) -> Result<(), E> {
        match self {
            HttpAuth::Bearer(token) => *token = f(&format!("{at}.bearer"), token)?,
            HttpAuth::Basic { password, .. } => {
                *password = f(&format!("{at}.basic.password"), password)?
            }
        }
        Ok(())
    }
}

impl TargetConfig {
    /// Applies `f` to every secret of the definition, in place, with the name of its
    /// field (exhaustive over kinds: a new kind with secrets cannot be forgotten by
    /// sealing, redaction or keeping).
    pub fn try_map_secrets<E>(
        &mut self,
        f: &mut dyn FnMut(&str, &str) -> Result<String, E>,
    ) -> Result<(), E> {
        match &mut self.kind {
            TargetKind::Scim(scim) => scim.auth.map_secret("auth", f)?,
            TargetKind::Crowd(crowd) => crowd.password = f("password", &crowd.password)?,
            TargetKind::Entra(entra) => {
                entra.client_secret = f("client_secret", &entra.client_secret)?
            }
            TargetKind::Salesforce(sf) => sf.client_secret = f("client_secret", &sf.client_secret)?,
            // The SDK's credential chain: nothing stored.
            TargetKind::Cognito(_) => {}
            TargetKind::Okta(okta) => okta.token = f("token", &okta.token)?,
            TargetKind::Webhook(w) => w.secret = f("secret", &w.secret)?,
        }
        Ok(())
    }

    /// The JSON field holding the secret of targets of kind `kind` (`None`: the kind
    /// stores none, or is unknown). A test checks it against [`Definition::secret_fields`].
    pub fn secret_field(kind: &str) -> Option<&'static str> {
        match kind {
            "scim" => Some("auth"),
            "crowd" => Some("password"),
            "okta" => Some("token"),
            "entra" | "salesforce" => Some("client_secret"),
            "webhook" => Some("secret"),
            _ => None,
        }
    }

    /// The secrets of the definition (for tests that check they are nowhere).
    pub fn secrets(&self) -> Vec<String> {
        self.secret_values().into_iter().map(|(_, v)| v).collect()
    }

    /// A copy with every secret replaced by `"***"`: the only form shown or logged.
    pub fn redacted(&self) -> TargetConfig {
        self.redacted_copy()
    }

    /// The kind's name (`scim`, `crowd`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            TargetKind::Scim(_) => "scim",
            TargetKind::Crowd(_) => "crowd",
            TargetKind::Entra(_) => "entra",
            TargetKind::Salesforce(_) => "salesforce",
            TargetKind::Cognito(_) => "cognito",
            TargetKind::Okta(_) => "okta",
            TargetKind::Webhook(_) => "webhook",
        }
    }
}

#[cfg(test)]
mod tests;
