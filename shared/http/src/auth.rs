//! Bearer-token authentication for the SCIM and admin surfaces.
//!
//! Tokens are never kept in clear: static tokens from the environment are hashed at
//! start-up, tokens created through `POST /admin/tokens` (or `provisync token create`)
//! are stored as their SHA-256 (`TOKEN#{hex}` items, [`tokens`]). A presented token is hashed and compared in constant time to
//! every static hash; the store lookup is keyed by the hash, so its timing says nothing
//! about the secret.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use provisync_core::store::Store;

mod tokens;
pub use tokens::{
    MAX_TOKEN_NAME, NewToken, TokenError, TokenInfo, create_token, hash_token, issue_token,
    list_tokens, revoke_token, revoke_token_by_id,
};
use tokens::{TokenRecord, token_key};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The SCIM API (identity providers).
    Scim,
    /// The admin API (operators).
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scim" => Some(Scope::Scim),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Scim => "scim",
            Scope::Admin => "admin",
        })
    }
}

/// Who a request acts as: the scope its token grants and the token's name (`provisync
/// token create --name`, or `static` for a token set in the environment). Audit entries of
/// operator actions carry it; the token itself never appears.
///
/// An extractor: a handler behind [`require_token`] takes it as an argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub scope: Scope,
    pub name: String,
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.scope, self.name)
    }
}

/// A handler that asks for a [`Principal`] outside [`require_token`]: a wiring mistake,
/// answered like a missing token.
#[derive(Debug)]
pub struct NoPrincipal;

impl IntoResponse for NoPrincipal {
    fn into_response(self) -> Response {
        (
            http::StatusCode::UNAUTHORIZED,
            "missing or invalid bearer token",
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = NoPrincipal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(NoPrincipal)
    }
}

/// Verifies bearer tokens.
pub struct Authenticator {
    static_tokens: Vec<([u8; 32], Scope)>,
    store: Option<Arc<dyn Store>>,
}

/// The name of a token set in the environment or by `provisync serve`.
pub const STATIC_TOKEN_NAME: &str = "static";

impl Authenticator {
    pub fn new(store: Option<Arc<dyn Store>>) -> Self {
        Authenticator {
            static_tokens: Vec::new(),
            store,
        }
    }

    /// Accept `token` for `scope` (from `PROVISYNC_SCIM_TOKEN` / `PROVISYNC_ADMIN_TOKEN`).
    pub fn with_static_token(mut self, token: &str, scope: Scope) -> Self {
        self.static_tokens.push((hash_token(token), scope));
        self
    }

    pub async fn verify(&self, token: &str, scope: Scope) -> bool {
        self.authenticate(token, scope).await.is_some()
    }

    /// The principal `token` stands for, when it is valid for `scope`.
    pub async fn authenticate(&self, token: &str, scope: Scope) -> Option<Principal> {
        if token.is_empty() || token.len() > 4096 {
            return None;
        }
        self.authenticate_hash(&hash_token(token), scope).await
    }

    /// The principal of the token with this SHA-256, when it is (still) valid for
    /// `scope`: a console session keeps only the hash of the token it was opened with, and
    /// ends when that token is revoked.
    pub async fn authenticate_hash(&self, hash: &[u8; 32], scope: Scope) -> Option<Principal> {
        let hash = *hash;
        // Compare against every static token, without stopping at the first match.
        let mut ok = subtle::Choice::from(0u8);
        for (h, s) in &self.static_tokens {
            ok |= h.ct_eq(&hash) & subtle::Choice::from(u8::from(*s == scope));
        }
        if bool::from(ok) {
            return Some(Principal {
                scope,
                name: STATIC_TOKEN_NAME.to_string(),
            });
        }
        let store = self.store.as_ref()?;
        match store.get(&token_key(&hash)).await {
            Ok(Some(item)) => serde_json::from_slice::<TokenRecord>(&item.data)
                .ok()
                .filter(|r: &TokenRecord| r.scope == scope)
                .map(|r| Principal {
                    scope,
                    name: r.name,
                }),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "token lookup failed");
                None
            }
        }
    }
}

/// The `Bearer` credentials of a request, if any (scheme is case-insensitive, RFC 6750).
pub fn bearer(req: &Request) -> Option<&str> {
    let h = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A 401 with the `WWW-Authenticate` challenge (RFC 6750 §3).
pub fn challenge(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer realm=\"provisync\""),
    );
    resp
}

/// State for the auth middleware of one surface.
#[derive(Clone)]
pub struct RequireToken<E> {
    pub auth: Arc<Authenticator>,
    pub scope: Scope,
    pub unauthorized: fn() -> E,
}

/// Middleware: 401 (in the surface's own error format) without a valid token; with one,
/// the request carries its [`Principal`] to the handler.
pub async fn require_token<E: IntoResponse>(
    State(cfg): State<RequireToken<E>>,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = match bearer(&req) {
        Some(t) => cfg.auth.authenticate(t, cfg.scope).await,
        None => None,
    };
    let Some(principal) = principal else {
        return challenge((cfg.unauthorized)().into_response());
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use provisync_core::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn static_and_stored_tokens() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let auth = Authenticator::new(Some(store.clone())).with_static_token("s3cret", Scope::Scim);
        assert!(auth.verify("s3cret", Scope::Scim).await);
        assert!(!auth.verify("s3cret", Scope::Admin).await);
        assert!(!auth.verify("s3cre", Scope::Scim).await);
        assert!(!auth.verify("", Scope::Scim).await);
        let t = create_token(store.as_ref(), Scope::Admin, "ops")
            .await
            .unwrap();
        assert!(t.starts_with("psy_"));
        assert!(auth.verify(&t, Scope::Admin).await);
        assert!(!auth.verify(&t, Scope::Scim).await);
        // Audit entries name who acted: the token's name, never the token.
        assert_eq!(
            auth.authenticate(&t, Scope::Admin).await,
            Some(Principal {
                scope: Scope::Admin,
                name: "ops".into()
            })
        );
        assert_eq!(
            auth.authenticate("s3cret", Scope::Scim)
                .await
                .map(|p| p.to_string()),
            Some("scim:static".into())
        );
        // Only the hash is stored.
        let item = store
            .get(&token_key(&hash_token(&t)))
            .await
            .unwrap()
            .unwrap();
        assert!(!String::from_utf8_lossy(&item.data).contains(&t));
        assert_eq!(
            revoke_token(store.as_ref(), &t)
                .await
                .unwrap()
                .map(|i| i.name),
            Some("ops".into())
        );
        assert!(!auth.verify(&t, Scope::Admin).await);
        assert_eq!(revoke_token(store.as_ref(), &t).await.unwrap(), None);
    }
}
