//! The kinds of target: one config per vendor, and the fields each kind has.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::definitions::REDACTED;

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

/// Graph's root when an Entra target names none.
pub const ENTRA_GRAPH_URL: &str = "https://graph.microsoft.com";
/// The identity platform's root when an Entra target names none.
pub const ENTRA_LOGIN_URL: &str = "https://login.microsoftonline.com";

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
    "deprovision_guard",
    "delete_mode",
    "enabled",
    "max_rate",
    "max_in_flight",
];
