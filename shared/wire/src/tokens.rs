//! API tokens (`/admin/tokens`): created with a scope and a name, listed without their
//! secret, revoked by id.

use serde::{Deserialize, Serialize};

/// `POST /admin/tokens`: `{"scope": "scim" | "admin", "name": "okta"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub scope: String,
    pub name: String,
}

/// A stored token as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// `tok_…`: names the token in listings, the audit log and `DELETE /admin/tokens/{id}`.
    pub id: String,
    /// `scim` or `admin`.
    pub scope: String,
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// Who created it (`admin:<token name>`, `offline`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// The answer to `POST /admin/tokens` (201): the token's record and, this once, its
/// secret (`token`): only its hash is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

/// `GET /admin/tokens`: `{"tokens": [...]}`, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// `POST /admin/tokens/revoke`: `{"token": "<the secret>"}`, for a token whose id is not
/// known (tokens created before tokens had ids are not listed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRevoke {
    pub token: String,
}
