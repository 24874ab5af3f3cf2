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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto::SecretBox;
use crate::definitions::{Definition, DefinitionError, Definitions};
use crate::store::{Key, Store};
use provisync_scim::schema::AttrPath;
use provisync_scim::{ResourceKind, SchemaRegistry};

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

/// Atlassian Crowd (Data Center / Server), through its application REST API
/// (`{base_url}/rest/usermanagement/1/`), authenticated as a Crowd *application*.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CrowdTarget {
    /// Crowd's root, with its context path: `https://crowd.example.com/crowd`.
    pub base_url: String,
    /// The application name configured in Crowd (Applications → Add application).
    pub application: String,
    /// The application's password.
    pub password: String,
}

impl std::fmt::Debug for CrowdTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrowdTarget")
            .field("base_url", &self.base_url)
            .field("application", &self.application)
            .field("password", &REDACTED)
            .finish()
    }
}

/// Microsoft Entra ID through Microsoft Graph v1.0, as an app registration with
/// application permissions (OAuth 2.0 client credentials).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct EntraTarget {
    /// The directory (tenant) id, a GUID, or a verified domain (`contoso.onmicrosoft.com`).
    pub tenant_id: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    pub client_secret: String,
    /// Graph's root (default `https://graph.microsoft.com`; national clouds differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_url: Option<String>,
    /// The identity platform's root (default `https://login.microsoftonline.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
}

impl std::fmt::Debug for EntraTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraTarget")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &REDACTED)
            .field("graph_url", &self.graph_url)
            .field("login_url", &self.login_url)
            .finish()
    }
}

/// Salesforce through its REST API, as a connected app with the client credentials flow.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SalesforceTarget {
    /// The org's My Domain URL: `https://acme.my.salesforce.com`.
    pub instance_url: String,
    /// Where tokens are requested (`{login_url}/services/oauth2/token`); default: the
    /// instance URL (the client credentials flow needs the My Domain URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
    /// The connected app's consumer key.
    pub client_id: String,
    /// The connected app's consumer secret.
    pub client_secret: String,
    #[serde(default = "default_salesforce_api_version")]
    pub api_version: String,
    /// User fields set on every created user unless the mapping sets them (`ProfileId`,
    /// `TimeZoneSidKey`, `LocaleSidKey`, `EmailEncodingKey`, `LanguageLocaleKey`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defaults: BTreeMap<String, Value>,
}

fn default_salesforce_api_version() -> String {
    "v60.0".into()
}

impl std::fmt::Debug for SalesforceTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceTarget")
            .field("instance_url", &self.instance_url)
            .field("login_url", &self.login_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &REDACTED)
            .field("api_version", &self.api_version)
            .field("defaults", &self.defaults)
            .finish()
    }
}

/// An AWS Cognito user pool, through the AWS SDK with the default credential chain (the
/// Lambda's role, or the environment): no secret is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CognitoTarget {
    /// `us-east-1_AbCdEfGhI`.
    pub user_pool_id: String,
    /// The pool's region; default: the prefix of `user_pool_id` (which it must match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Another endpoint than AWS's (an emulator, a VPC endpoint); default: the SDK's
    /// (which honours `AWS_ENDPOINT_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Mark delivered e-mail addresses verified (`email_verified=true`): only when the
    /// hub's source of users has verified them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub email_verified: bool,
}

impl CognitoTarget {
    /// The region: the configured one, else the pool id's prefix.
    pub fn region(&self) -> &str {
        match &self.region {
            Some(r) => r,
            None => self.user_pool_id.split('_').next().unwrap_or_default(),
        }
    }
}

/// Okta, through its Management API with an API token (`Authorization: SSWS …`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct OktaTarget {
    /// The org URL: `https://dev-123456.okta.com`.
    pub base_url: String,
    /// An API token (Security → API → Tokens).
    pub token: String,
}

impl std::fmt::Debug for OktaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaTarget")
            .field("base_url", &self.base_url)
            .field("token", &REDACTED)
            .finish()
    }
}

/// A site that receives the hub's changes as signed webhooks (the envelope sites send the
/// hub). A bidirectional site is registered twice under the same id: as a source (what
/// it sends) and as this target (what it receives); a change that came from source `X`
/// is never sent to target `X`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookTarget {
    /// Where envelopes are POSTed (`https://site.example/provisync/webhook`).
    pub url: String,
    /// The Standard Webhooks secret (`whsec_` + base64) the site verifies with.
    pub secret: String,
    /// Entity types sent to this site; empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entity_types: Vec<String>,
    /// Configuration names sent must start with one of these; empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_prefixes: Vec<String>,
    /// Send users and groups (off by default).
    #[serde(default)]
    pub user_sync: bool,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("secret", &REDACTED)
            .field("entity_types", &self.entity_types)
            .field("config_prefixes", &self.config_prefixes)
            .field("user_sync", &self.user_sync)
            .finish()
    }
}

/// The kind of system, with its connection settings. Matched exhaustively wherever the
/// kinds differ (connector construction, redaction, validation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TargetKind {
    Scim(ScimTarget),
    Crowd(CrowdTarget),
    Entra(EntraTarget),
    Salesforce(SalesforceTarget),
    Cognito(CognitoTarget),
    Okta(OktaTarget),
    Webhook(WebhookTarget),
}

/// Every kind's name with the fields of its own (beside the common ones): the admin API
/// refuses a definition with fields its kind does not have. Kept beside [`TargetKind`]:
/// a test checks that every kind is listed.
pub const KIND_FIELDS: &[(&str, &[&str])] = &[
    (
        "scim",
        &["base_url", "auth", "update_style", "matching_attribute"],
    ),
    ("crowd", &["base_url", "application", "password"]),
    (
        "entra",
        &[
            "tenant_id",
            "client_id",
            "client_secret",
            "graph_url",
            "login_url",
        ],
    ),
    (
        "salesforce",
        &[
            "instance_url",
            "login_url",
            "client_id",
            "client_secret",
            "api_version",
            "defaults",
        ],
    ),
    (
        "cognito",
        &["user_pool_id", "region", "endpoint_url", "email_verified"],
    ),
    ("okta", &["base_url", "token"]),
    (
        "webhook",
        &[
            "url",
            "secret",
            "entity_types",
            "config_prefixes",
            "user_sync",
        ],
    ),
];

/// Fields every target definition may have, whatever its kind (the admin API and the CLI
/// check definitions against these and [`KIND_FIELDS`]).
pub const COMMON_FIELDS: &[&str] = &[
    "id",
    "kind",
    "operations",
    "scope_filter",
    "mapping",
    "group_mapping",
    "mode",
    "out_of_scope",
    "orphans",
    "enabled",
];

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
    /// Accounts on the target the hub does not know, as found by a reconcile.
    #[serde(default)]
    pub orphans: OrphanPolicy,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// What replaces a secret in every outward form of a target.
pub const REDACTED: &str = "***";
/// Longest target id.
pub const MAX_TARGET_ID_LEN: usize = 64;
const MAX_SECRET_LEN: usize = 8 * 1024;
const MAX_MAPPINGS: usize = 200;

impl TargetConfig {
    /// Applies `f` to every secret of the definition, in place (exhaustive over kinds:
    /// a new kind with secrets cannot be forgotten by sealing or redaction).
    pub fn try_map_secrets<E>(
        &mut self,
        mut f: impl FnMut(&str) -> Result<String, E>,
    ) -> Result<(), E> {
        match &mut self.kind {
            TargetKind::Scim(scim) => match &mut scim.auth {
                HttpAuth::Bearer(token) => *token = f(token)?,
                HttpAuth::Basic { password, .. } => *password = f(password)?,
            },
            TargetKind::Crowd(crowd) => crowd.password = f(&crowd.password)?,
            TargetKind::Entra(entra) => entra.client_secret = f(&entra.client_secret)?,
            TargetKind::Salesforce(sf) => sf.client_secret = f(&sf.client_secret)?,
            // The SDK's credential chain: nothing stored.
            TargetKind::Cognito(_) => {}
            TargetKind::Okta(okta) => okta.token = f(&okta.token)?,
            TargetKind::Webhook(w) => w.secret = f(&w.secret)?,
        }
        Ok(())
    }

    /// The secrets of the definition (for tests that check they are nowhere).
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut copy = self.clone();
        let _ = copy.try_map_secrets(|s| {
            out.push(s.to_string());
            Ok::<_, std::convert::Infallible>(s.to_string())
        });
        out
    }

    /// A copy with every secret replaced by `"***"`: the only form shown or logged.
    pub fn redacted(&self) -> TargetConfig {
        let mut copy = self.clone();
        let _ = copy.try_map_secrets(|_| Ok::<_, std::convert::Infallible>(REDACTED.into()));
        copy
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

    /// Checks a definition; the error says what is wrong (shown to the operator, so it
    /// never quotes a secret).
    pub fn validate(&self, registry: &SchemaRegistry) -> Result<(), String> {
        check_target_id(&self.id)?;
        match &self.kind {
            TargetKind::Scim(scim) => {
                check_target_url(&scim.base_url)?;
                check_auth(&scim.auth)?;
                if AttrPath::parse(&scim.matching_attribute).is_none() {
                    return Err(format!(
                        "matching_attribute {:?} is not an attribute path",
                        scim.matching_attribute
                    ));
                }
            }
            TargetKind::Crowd(crowd) => {
                check_target_url(&crowd.base_url)?;
                // The application name is the user-id of HTTP Basic (RFC 7617 §2).
                let app = &crowd.application;
                if app.trim().is_empty()
                    || app.contains(':')
                    || app.chars().any(char::is_control)
                    || app.len() > 255
                {
                    return Err(
                        "application must be a Crowd application name: 1 to 255 characters, without ':' or control characters"
                            .into(),
                    );
                }
                if crowd.password.is_empty() {
                    return Err("password (the Crowd application's password) is required".into());
                }
                if crowd.password.len() > MAX_SECRET_LEN
                    || crowd.password.chars().any(char::is_control)
                {
                    return Err("password must be at most 8 KiB, without control characters".into());
                }
            }
            TargetKind::Entra(entra) => {
                let t = &entra.tenant_id;
                if t.is_empty()
                    || t.len() > 255
                    || !t
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                {
                    return Err(
                        "tenant_id must be the directory (tenant) id or a verified domain of the tenant"
                            .into(),
                    );
                }
                check_oauth_client(&entra.client_id, &entra.client_secret)?;
                check_optional_url("graph_url", entra.graph_url.as_deref())?;
                check_optional_url("login_url", entra.login_url.as_deref())?;
            }
            TargetKind::Salesforce(sf) => {
                check_optional_url("instance_url", Some(&sf.instance_url))?;
                check_optional_url("login_url", sf.login_url.as_deref())?;
                check_oauth_client(&sf.client_id, &sf.client_secret)?;
                let v = sf.api_version.strip_prefix('v').unwrap_or("");
                let ok_version = v.split_once('.').is_some_and(|(major, minor)| {
                    !major.is_empty()
                        && !minor.is_empty()
                        && major.len() <= 4
                        && minor.len() <= 2
                        && major
                            .chars()
                            .chain(minor.chars())
                            .all(|c| c.is_ascii_digit())
                });
                if !ok_version {
                    return Err("api_version must look like \"v60.0\"".into());
                }
                for (field, value) in &sf.defaults {
                    let name_ok = field.len() <= 80
                        && field
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_alphabetic())
                        && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !name_ok {
                        return Err(format!(
                            "defaults: {field:?} is not a Salesforce field name"
                        ));
                    }
                    if value.is_object() || value.is_array() {
                        return Err(format!(
                            "defaults.{field} must be a string, number, boolean or null"
                        ));
                    }
                }
            }
            TargetKind::Webhook(w) => {
                check_target_url(&w.url).map_err(|e| e.replacen("base_url", "url", 1))?;
                crate::webhook_sig::decode_standard_secret(&w.secret).map_err(|e| {
                    format!("secret is not a Standard Webhooks secret (whsec_ + base64): {e}")
                })?;
                for (name, list) in [
                    ("entity_types", &w.entity_types),
                    ("config_prefixes", &w.config_prefixes),
                ] {
                    if list.len() > 200
                        || list.iter().any(|v| {
                            v.is_empty() || v.len() > 256 || v.chars().any(char::is_control)
                        })
                    {
                        return Err(format!(
                            "{name}: at most 200 entries of 1 to 256 characters"
                        ));
                    }
                }
            }
            TargetKind::Cognito(cognito) => check_cognito(cognito)?,
            TargetKind::Okta(okta) => {
                check_target_url(&okta.base_url)?;
                let t = &okta.token;
                if t.trim().is_empty() {
                    return Err("token (an Okta API token) is required".into());
                }
                if t.len() > MAX_SECRET_LEN
                    || t.chars().any(|c| c.is_control() || c.is_whitespace())
                {
                    return Err(
                        "token must be one Okta API token, without spaces or control characters"
                            .into(),
                    );
                }
            }
        }
        if self.operations.is_empty() {
            return Err("operations must name at least one operation".into());
        }
        let users = registry.view(ResourceKind::User);
        if let Some(f) = &self.scope_filter {
            let filter = provisync_scim::filter::parse(f)
                .map_err(|e| format!("scope_filter: {}", e.detail))?;
            filter
                .validate(&users)
                .map_err(|e| format!("scope_filter: {}", e.detail))?;
        }
        if self.mapping.len() > MAX_MAPPINGS {
            return Err(format!("at most {MAX_MAPPINGS} mapping rules"));
        }
        for (i, m) in self.mapping.iter().enumerate() {
            if AttrPath::parse(&m.target).is_none() {
                return Err(format!(
                    "mapping[{i}].target {:?} is not an attribute path",
                    m.target
                ));
            }
            if let Some(src) = &m.source {
                let path = AttrPath::parse(src).ok_or_else(|| {
                    format!("mapping[{i}].source {src:?} is not an attribute path")
                })?;
                if users.resolve(&path).is_none() {
                    return Err(format!(
                        "mapping[{i}].source {src:?} is not a User attribute of this hub"
                    ));
                }
            }
            let sources = usize::from(m.source.is_some()) + usize::from(m.value.is_some());
            if m.drop && (sources > 0 || m.default.is_some()) {
                return Err(format!(
                    "mapping[{i}]: `drop` cannot be combined with source, value or default"
                ));
            }
            if !m.drop && sources != 1 {
                return Err(format!(
                    "mapping[{i}] needs exactly one of `source`, `value` or `drop`"
                ));
            }
            if m.value.is_some() && m.default.is_some() {
                return Err(format!(
                    "mapping[{i}]: `default` only applies to a `source`"
                ));
            }
        }
        for (hub, target) in &self.group_mapping {
            if hub.trim().is_empty() || target.trim().is_empty() {
                return Err("group_mapping names must not be empty".into());
            }
        }
        Ok(())
    }
}

/// Target ids: 1 to 64 of `A-Z a-z 0-9 - _`, starting with a letter or digit (they appear
/// in URLs, keys and audit entries).
pub fn check_target_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_TARGET_ID_LEN {
        return Err(format!(
            "target id must be 1 to {MAX_TARGET_ID_LEN} characters"
        ));
    }
    let ok_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let ok_start = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok_chars || !ok_start {
        return Err(
            "target id may contain only letters, digits, '-' and '_', and starts with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

/// A target base URL: `https://…`, or `http://…` on loopback only (127.0.0.0/8, ::1,
/// localhost). No credentials, query or fragment in the URL (credentials go in `auth`).
pub(crate) fn check_target_url(raw: &str) -> Result<(), String> {
    crate::net::check_target_url(raw)
        .map(|_| ())
        .map_err(|e| format!("base_url: {e}"))
}

/// A Cognito target: a pool id as AWS writes them (`{region}_{id}`, at most 55
/// characters), a region name, an optional loopback-or-https endpoint.
fn check_cognito(c: &CognitoTarget) -> Result<(), String> {
    let pool = &c.user_pool_id;
    let (prefix, rest) = pool.split_once('_').unwrap_or_default();
    if pool.len() > 55
        || !is_region(prefix)
        || rest.is_empty()
        || !rest.chars().all(|ch| ch.is_ascii_alphanumeric())
    {
        return Err(
            "user_pool_id must be a Cognito user pool id such as \"us-east-1_AbCdEfGhI\"".into(),
        );
    }
    if let Some(r) = &c.region {
        if !is_region(r) {
            return Err(format!("region {r:?} is not an AWS region name"));
        }
        if r != prefix {
            return Err(format!(
                "region {r:?} does not match the user pool's region {prefix:?}"
            ));
        }
    }
    if let Some(e) = &c.endpoint_url {
        check_target_url(e).map_err(|m| m.replacen("base_url", "endpoint_url", 1))?;
    }
    Ok(())
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`: letters in dashed parts,
/// ending in a number.
fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    r.len() <= 32
        && parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

pub(crate) fn check_auth(auth: &HttpAuth) -> Result<(), String> {
    let bad_chars = |s: &str| s.chars().any(|c| c.is_control());
    match auth {
        HttpAuth::Bearer(t) => {
            if t.trim().is_empty() {
                return Err("auth.bearer must not be empty".into());
            }
            if t.len() > MAX_SECRET_LEN || bad_chars(t) || t.contains(' ') {
                return Err(
                    "auth.bearer must be one token without spaces or control characters".into(),
                );
            }
        }
        HttpAuth::Basic { username, password } => {
            if username.is_empty() || username.contains(':') || bad_chars(username) {
                return Err(
                    "auth.basic.username must be non-empty, without ':' or control characters"
                        .into(),
                );
            }
            if username.len() > MAX_SECRET_LEN || password.len() > MAX_SECRET_LEN {
                return Err("auth.basic values are too long".into());
            }
            if bad_chars(password) {
                return Err("auth.basic.password must not contain control characters".into());
            }
        }
    }
    Ok(())
}

/// An OAuth client of a target: its id and secret (never quoted in the error).
fn check_oauth_client(client_id: &str, secret: &str) -> Result<(), String> {
    if client_id.trim().is_empty()
        || client_id.len() > 512
        || client_id.chars().any(char::is_control)
    {
        return Err("client_id must be 1 to 512 characters, without control characters".into());
    }
    if secret.is_empty() {
        return Err("client_secret is required".into());
    }
    if secret.len() > MAX_SECRET_LEN || secret.chars().any(char::is_control) {
        return Err("client_secret must be at most 8 KiB, without control characters".into());
    }
    Ok(())
}

/// An optional root URL of a target API, named by its field.
fn check_optional_url(field: &str, url: Option<&str>) -> Result<(), String> {
    match url {
        None => Ok(()),
        Some(u) => crate::net::check_target_url(u)
            .map(|_| ())
            .map_err(|e| format!("{field}: {e}")),
    }
}

// ---- repository ---------------------------------------------------------------------

/// Why a target definition could not be stored or read.
pub type TargetError = DefinitionError;

/// How long [`Targets::list_enabled`] serves from its cache.
pub const TARGET_CACHE_TTL: Duration = Duration::from_secs(5);
const TARGETS_INDEX: &str = "TARGETS";

pub fn target_key(id: &str) -> Key {
    <TargetConfig as Definition>::key(id)
}

impl Definition for TargetConfig {
    const NOUN: &'static str = "target";
    const RECORD: &'static str = "TARGET";
    const INDEX: &'static str = TARGETS_INDEX;

    fn id(&self) -> &str {
        &self.id
    }

    fn valid_id(id: &str) -> bool {
        check_target_id(id).is_ok()
    }

    fn map_secrets<E>(&mut self, f: &mut dyn FnMut(&str) -> Result<String, E>) -> Result<(), E> {
        self.try_map_secrets(f)
    }
}

type Cached = Option<(Instant, Arc<Vec<TargetConfig>>)>;

/// Target definitions on the store, secrets sealed, with a short cache of the enabled
/// ones for the delivery engine. Clones share the cache.
#[derive(Clone)]
pub struct Targets {
    defs: Definitions<TargetConfig>,
    cache: Arc<Mutex<Cached>>,
    ttl: Duration,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets").finish_non_exhaustive()
    }
}

impl Targets {
    pub fn new(store: Arc<dyn Store>, secrets: Arc<SecretBox>) -> Self {
        Targets {
            defs: Definitions::new(store, secrets),
            cache: Arc::new(Mutex::new(None)),
            ttl: TARGET_CACHE_TTL,
        }
    }

    /// A different cache lifetime (`Duration::ZERO`: no cache).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Stores a definition (validate it first). Returns `true` when it is new.
    pub async fn put(&self, target: &TargetConfig) -> Result<bool, TargetError> {
        let created = self.defs.put(target).await;
        self.invalidate();
        created
    }

    /// One definition, secrets opened.
    pub async fn get(&self, id: &str) -> Result<Option<TargetConfig>, TargetError> {
        self.defs.get(id).await
    }

    /// Every definition, by id, secrets opened.
    pub async fn list(&self) -> Result<Vec<TargetConfig>, TargetError> {
        self.defs.list().await
    }

    /// Removes a definition. Returns `false` when there was none.
    pub async fn delete(&self, id: &str) -> Result<bool, TargetError> {
        let deleted = self.defs.delete(id).await;
        self.invalidate();
        deleted
    }

    /// The enabled targets, from a cache at most [`TARGET_CACHE_TTL`] old (the delivery
    /// engine asks for every event; changes made in this process show at once, changes
    /// made by another process within the TTL).
    pub async fn list_enabled(&self) -> Result<Arc<Vec<TargetConfig>>, TargetError> {
        if let Ok(guard) = self.cache.lock()
            && let Some((at, list)) = guard.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(list.clone());
        }
        let list: Arc<Vec<TargetConfig>> = Arc::new(
            self.list()
                .await?
                .into_iter()
                .filter(|t| t.enabled)
                .collect(),
        );
        if let Ok(mut guard) = self.cache.lock() {
            *guard = Some((Instant::now(), list.clone()));
        }
        Ok(list)
    }

    /// Drops the cache (after a write).
    pub fn invalidate(&self) {
        if let Ok(mut guard) = self.cache.lock() {
            *guard = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use serde_json::json;

    fn scim(v: Value) -> TargetConfig {
        let mut t: TargetConfig = serde_json::from_value(v).unwrap();
        if t.id.is_empty() {
            t.id = "crm".into();
        }
        t
    }

    fn valid() -> TargetConfig {
        scim(json!({
            "kind": "scim", "base_url": "https://scim.example.com/v2",
            "auth": {"bearer": "tok-123"}
        }))
    }

    fn reg() -> SchemaRegistry {
        SchemaRegistry::builtin()
    }

    fn err(t: &TargetConfig) -> String {
        t.validate(&reg()).unwrap_err()
    }

    #[test]
    fn defaults_and_valid_definitions() {
        let t = valid();
        assert_eq!(t.validate(&reg()), Ok(()));
        assert!(t.enabled);
        assert_eq!(t.operations.len(), 4);
        let t = scim(json!({
            "kind": "scim", "base_url": "http://127.0.0.5:9000/scim",
            "auth": {"basic": {"username": "svc", "password": "p:w d"}},
            "scope_filter": "active eq true and emails[type eq \"work\" and value ew \"@example.com\"]",
            "mapping": [
                {"target": "title", "source": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"},
                {"target": "userType", "value": "Employee"},
                {"target": "nickName", "source": "displayName", "default": "n/a"},
                {"target": "phoneNumbers", "drop": true}
            ],
            "group_mapping": {"Engineering": "eng"},
            "mode": "scheduled", "out_of_scope": "delete", "enabled": false,
            "operations": ["create", "update"]
        }));
        assert_eq!(t.validate(&reg()), Ok(()));
        for url in [
            "http://localhost:8080/",
            "http://[::1]:1/x",
            "http://127.1.2.3/",
        ] {
            let mut t = valid();
            if let TargetKind::Scim(s) = &mut t.kind {
                s.base_url = url.into();
            }
            assert_eq!(t.validate(&reg()), Ok(()), "{url}");
        }
    }

    #[test]
    fn invalid_definitions_say_why() {
        let mut t = valid();
        t.id = "bad id".into();
        assert!(err(&t).contains("target id"));
        t.id = "-x".into();
        assert!(err(&t).contains("target id"));
        t.id = "x".repeat(65);
        assert!(err(&t).contains("1 to 64"));

        let url = |u: &str| {
            let mut t = valid();
            if let TargetKind::Scim(s) = &mut t.kind {
                s.base_url = u.into();
            }
            err(&t)
        };
        assert!(url("http://example.com/scim").contains("https"));
        assert!(url("http://10.0.0.1/scim").contains("https"));
        assert!(url("http://128.0.0.1/scim").contains("https"));
        assert!(url("http://localhost.evil.com/").contains("https"));
        assert!(url("ftp://example.com/").contains("scheme"));
        assert!(url("not a url").contains("not a URL"));
        assert!(url("https://user:pw@example.com/").contains("credentials"));
        assert!(url("https://example.com/?a=b").contains("query"));

        let mut t = valid();
        t.scope_filter = Some("userName eq".into());
        assert!(err(&t).starts_with("scope_filter: "));
        t.scope_filter = Some("nosuchattr eq \"x\"".into());
        assert!(err(&t).starts_with("scope_filter: "), "{}", err(&t));

        let mut t = valid();
        t.operations.clear();
        assert!(err(&t).contains("operations"));

        let mapping = |m: Value| {
            let mut t = valid();
            t.mapping = vec![serde_json::from_value(m).unwrap()];
            err(&t)
        };
        assert!(mapping(json!({"target": "a b", "value": 1})).contains("target"));
        assert!(mapping(json!({"target": "title", "source": "nope"})).contains("User attribute"));
        assert!(mapping(json!({"target": "title", "source": "a..b"})).contains("attribute path"));
        assert!(mapping(json!({"target": "title"})).contains("exactly one"));
        assert!(mapping(json!({"target": "title", "drop": true, "value": 1})).contains("drop"));
        assert!(
            mapping(json!({"target": "title", "source": "title", "value": 1}))
                .contains("exactly one")
        );

        let mut t = valid();
        if let TargetKind::Scim(s) = &mut t.kind {
            s.auth = HttpAuth::Bearer("two words".into());
        }
        assert!(err(&t).contains("bearer"));
        assert!(!err(&t).contains("two words"), "never quote a secret");
        if let TargetKind::Scim(s) = &mut t.kind {
            s.auth = HttpAuth::Basic {
                username: "a:b".into(),
                password: "x".into(),
            };
        }
        assert!(err(&t).contains("username"));
    }

    #[test]
    fn unknown_kind_and_bad_types_fail_to_parse() {
        assert!(
            serde_json::from_value::<TargetConfig>(json!({"kind": "ldap", "base_url": "x"}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<TargetConfig>(json!({
                "kind": "scim", "base_url": "https://x", "auth": {"bearer": "t"}, "enabled": "yes"
            }))
            .is_err()
        );
    }

    #[test]
    fn redaction_hides_every_secret() {
        let t = valid();
        assert_eq!(t.secrets(), ["tok-123"]);
        let r = t.redacted();
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("tok-123"));
        assert!(text.contains(REDACTED));
        let t = scim(json!({
            "kind": "scim", "base_url": "https://x.example",
            "auth": {"basic": {"username": "svc", "password": "pw-secret"}}
        }));
        let text = serde_json::to_string(&t.redacted()).unwrap();
        assert!(!text.contains("pw-secret"));
        assert!(text.contains("svc"), "usernames are not secret");
    }

    #[test]
    fn crowd_definitions() {
        let t = scim(json!({
            "kind": "crowd", "base_url": "https://crowd.example.com/crowd",
            "application": "provisync", "password": "app-secret-1"
        }));
        assert_eq!(t.validate(&reg()), Ok(()));
        assert_eq!(t.kind_name(), "crowd");
        for kind in [valid(), t.clone()] {
            let name = kind.kind_name();
            let (_, fields) = KIND_FIELDS.iter().find(|(k, _)| *k == name).unwrap();
            let v = serde_json::to_value(&kind).unwrap();
            for f in v.as_object().unwrap().keys() {
                let common = [
                    "id",
                    "kind",
                    "operations",
                    "mode",
                    "out_of_scope",
                    "orphans",
                    "enabled",
                ];
                assert!(
                    common.contains(&f.as_str()) || fields.contains(&f.as_str()),
                    "{name}: {f}"
                );
            }
        }
        assert_eq!(t.secrets(), ["app-secret-1"]);
        let shown = serde_json::to_string(&t.redacted()).unwrap();
        assert!(
            !shown.contains("app-secret-1") && shown.contains("provisync"),
            "{shown}"
        );
        assert!(!format!("{t:?}").contains("app-secret-1"), "Debug redacts");
        let bad = |patch: Value| {
            let mut v = serde_json::to_value(&t).unwrap();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            let t: TargetConfig = serde_json::from_value(v).unwrap();
            err(&t)
        };
        assert!(bad(json!({"base_url": "http://crowd.example.com"})).contains("https"));
        assert!(bad(json!({"application": ""})).contains("application"));
        assert!(bad(json!({"application": "a:b"})).contains("application"));
        let e = bad(json!({"password": ""}));
        assert!(e.contains("password"), "{e}");
        assert!(
            serde_json::from_value::<TargetConfig>(
                json!({"kind": "crowd", "base_url": "https://x.example", "application": "a"})
            )
            .is_err(),
            "password is required"
        );
    }

    #[test]
    fn entra_and_salesforce_definitions() {
        let entra = scim(json!({
            "kind": "entra", "tenant_id": "contoso.onmicrosoft.com",
            "client_id": "00000000-0000-0000-0000-000000000001", "client_secret": "entra-secret-1"
        }));
        let sf = scim(json!({
            "kind": "salesforce", "instance_url": "https://acme.my.salesforce.com",
            "client_id": "3MVG9", "client_secret": "sf-secret-1",
            "defaults": {"ProfileId": "00e000000000001", "TimeZoneSidKey": "America/Los_Angeles"}
        }));
        for (t, secret, name) in [
            (&entra, "entra-secret-1", "entra"),
            (&sf, "sf-secret-1", "salesforce"),
        ] {
            assert_eq!(t.validate(&reg()), Ok(()), "{name}");
            assert_eq!(t.kind_name(), name);
            assert_eq!(t.secrets(), [secret]);
            let shown = serde_json::to_string(&t.redacted()).unwrap();
            assert!(
                !shown.contains(secret) && shown.contains(REDACTED),
                "{shown}"
            );
            assert!(!format!("{t:?}").contains(secret), "Debug redacts");
            let (_, fields) = KIND_FIELDS.iter().find(|(k, _)| *k == name).unwrap();
            for f in serde_json::to_value(t).unwrap().as_object().unwrap().keys() {
                let common = COMMON_FIELDS;
                assert!(
                    common.contains(&f.as_str()) || fields.contains(&f.as_str()),
                    "{name}: {f}"
                );
            }
        }
        if let TargetKind::Salesforce(s) = &sf.kind {
            assert_eq!(s.api_version, "v60.0", "default API version");
        }
        let bad = |t: &TargetConfig, patch: Value| {
            let mut v = serde_json::to_value(t).unwrap();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            err(&serde_json::from_value(v).unwrap())
        };
        assert!(bad(&entra, json!({"tenant_id": "a/b"})).contains("tenant_id"));
        assert!(bad(&entra, json!({"client_secret": ""})).contains("client_secret"));
        assert!(bad(&entra, json!({"graph_url": "http://graph.example"})).starts_with("graph_url"));
        assert!(bad(&sf, json!({"instance_url": "http://x.example"})).starts_with("instance_url"));
        assert!(bad(&sf, json!({"api_version": "60"})).contains("api_version"));
        assert!(bad(&sf, json!({"defaults": {"bad key": "x"}})).contains("defaults"));
        assert!(bad(&sf, json!({"defaults": {"ProfileId": {"a": 1}}})).contains("defaults"));
        let e = bad(&sf, json!({"client_id": ""}));
        assert!(e.contains("client_id") && !e.contains("sf-secret-1"), "{e}");
    }

    #[test]
    fn cognito_and_okta_definitions() {
        let fields_listed = |t: &TargetConfig| {
            let name = t.kind_name();
            let (_, fields) = KIND_FIELDS.iter().find(|(k, _)| *k == name).unwrap();
            let v = serde_json::to_value(t).unwrap();
            let common = COMMON_FIELDS;
            for f in v.as_object().unwrap().keys() {
                assert!(
                    common.contains(&f.as_str()) || fields.contains(&f.as_str()),
                    "{name}: {f}"
                );
            }
        };
        let c = scim(json!({
            "kind": "cognito", "user_pool_id": "eu-west-3_AbC123", "region": "eu-west-3",
            "endpoint_url": "http://127.0.0.1:5000", "email_verified": true
        }));
        assert_eq!(c.validate(&reg()), Ok(()));
        assert_eq!(c.kind_name(), "cognito");
        assert!(c.secrets().is_empty());
        fields_listed(&c);
        let bare = scim(json!({"kind": "cognito", "user_pool_id": "us-gov-west-1_x9"}));
        assert_eq!(bare.validate(&reg()), Ok(()));
        let TargetKind::Cognito(k) = &bare.kind else {
            panic!()
        };
        assert_eq!(k.region(), "us-gov-west-1");
        assert!(!k.email_verified);
        for (patch, want) in [
            (json!({"user_pool_id": "nope"}), "user_pool_id"),
            (json!({"user_pool_id": "us-east-1_"}), "user_pool_id"),
            (json!({"user_pool_id": "us-east-1_a\"b"}), "user_pool_id"),
            (json!({"region": "us-east-1"}), "does not match"),
            (json!({"region": "Mars"}), "region"),
            (json!({"endpoint_url": "http://moto.example.com"}), "https"),
        ] {
            let mut v = serde_json::to_value(&c).unwrap();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            let t: TargetConfig = serde_json::from_value(v).unwrap();
            let e = err(&t);
            assert!(e.contains(want), "{patch}: {e}");
        }

        let o = scim(json!({
            "kind": "okta", "base_url": "https://dev-123.okta.com", "token": "00abcSSWS-token"
        }));
        assert_eq!(o.validate(&reg()), Ok(()));
        assert_eq!(o.kind_name(), "okta");
        fields_listed(&o);
        assert_eq!(o.secrets(), ["00abcSSWS-token"]);
        let shown = serde_json::to_string(&o.redacted()).unwrap();
        assert!(
            !shown.contains("00abcSSWS-token") && shown.contains("***"),
            "{shown}"
        );
        assert!(
            !format!("{o:?}").contains("00abcSSWS-token"),
            "Debug redacts"
        );
        for (patch, want) in [
            (json!({"token": ""}), "token"),
            (json!({"token": "a b"}), "token"),
            (json!({"base_url": "http://dev-123.okta.com"}), "https"),
        ] {
            let mut v = serde_json::to_value(&o).unwrap();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            let t: TargetConfig = serde_json::from_value(v).unwrap();
            let e = err(&t);
            assert!(e.contains(want), "{patch}: {e}");
        }
    }

    fn repo() -> (Arc<dyn Store>, Targets) {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let (sb, _) = SecretBox::generate();
        (store.clone(), Targets::new(store, Arc::new(sb)))
    }

    #[tokio::test]
    async fn stored_sealed_and_opened_on_read() {
        let (store, targets) = repo();
        let t = valid();
        assert!(targets.put(&t).await.unwrap());
        assert!(!targets.put(&t).await.unwrap(), "second put replaces");
        let item = store.get(&target_key("crm")).await.unwrap().unwrap();
        let raw = String::from_utf8_lossy(&item.data);
        assert!(!raw.contains("tok-123"), "{raw}");
        assert!(raw.contains("\"v1."));
        assert_eq!(targets.get("crm").await.unwrap(), Some(t.clone()));
        assert_eq!(targets.get("nope").await.unwrap(), None);
        assert_eq!(targets.get("../x").await.unwrap(), None);
        let mut b = valid();
        b.id = "aaa".into();
        b.enabled = false;
        targets.put(&b).await.unwrap();
        let ids: Vec<String> = targets
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["aaa", "crm"]);
        let enabled = targets.list_enabled().await.unwrap();
        assert_eq!(enabled.len(), 1);
        assert_eq!(enabled[0], t);
        assert!(targets.delete("crm").await.unwrap());
        assert!(!targets.delete("crm").await.unwrap());
        assert!(
            targets.list_enabled().await.unwrap().is_empty(),
            "cache invalidated"
        );
        // Another key cannot open what is stored.
        let (other, _) = SecretBox::generate();
        let foreign = Targets::new(store, Arc::new(other));
        assert!(matches!(
            foreign.get("aaa").await,
            Err(TargetError::Crypto { .. })
        ));
    }

    #[tokio::test]
    async fn list_enabled_is_cached_for_the_ttl() {
        let (_, targets) = repo();
        targets.put(&valid()).await.unwrap();
        assert_eq!(targets.list_enabled().await.unwrap().len(), 1);
        // A write by another process (another Targets on the same store) is not seen
        // until the TTL passes.
        let other = Targets {
            defs: targets.defs.clone(),
            cache: Arc::new(Mutex::new(None)),
            ttl: TARGET_CACHE_TTL,
        };
        other.delete("crm").await.unwrap();
        assert_eq!(targets.list_enabled().await.unwrap().len(), 1);
        let uncached = targets.clone().with_cache_ttl(Duration::ZERO);
        assert_eq!(uncached.list_enabled().await.unwrap().len(), 0);
    }
}
