//! `/admin/tokens`: API tokens for identity providers (`scim`) and operators (`admin`),
//! managed through the running hub (so `provisync token create` works while it runs, on
//! either store). Created and revoked tokens are audited with who did it; the secret is
//! answered once, at creation, and never stored, listed or audited.
//!
//! | method & path | what |
//! |---------------|------|
//! | `POST /admin/tokens` `{"scope","name"}` | 201 `{"id","scope","name","created","created_by","token"}` |
//! | `GET /admin/tokens` | `{"tokens": [{"id","scope","name","created","created_by"}]}` |
//! | `DELETE /admin/tokens/{id}` | 204, or 404 |
//! | `POST /admin/tokens/revoke` `{"token"}` | 204, or 404: by the secret (tokens made before ids) |

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use super::{AdminError, AdminResult, json_body};
use crate::AppState;
use crate::auth::{self, Principal, Scope, TokenError, TokenInfo};
use provisync_core::sync::audit::{AuditEntry, AuditOp, AuditStatus};
use provisync_wire as wire;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/revoke", post(revoke_by_secret))
        .route("/tokens/{id}", delete(revoke))
}

pub(crate) fn wire_info(t: &TokenInfo) -> wire::TokenInfo {
    wire::TokenInfo {
        id: t.id.clone(),
        scope: t.scope.to_string(),
        name: t.name.clone(),
        created: t.created.clone(),
        created_by: t.created_by.clone(),
    }
}

fn storage(e: impl std::fmt::Display) -> AdminError {
    AdminError::internal("tokens", e)
}

/// The audit entry of a token created or revoked: the token's id and name, who did it.
async fn audit(state: &AppState, op: AuditOp, t: &TokenInfo, principal: &Principal) {
    let verb = if op == AuditOp::CreateToken {
        "created"
    } else {
        "revoked"
    };
    let entry = AuditEntry::new("", op, AuditStatus::Delivered)
        .resource("Token", &t.id)
        .detail(format!("{} token {:?} {verb}", t.scope, t.name))
        .actor(principal.to_string());
    if let Err(e) = state.hub.audit.record(entry).await {
        tracing::warn!(error = %e, "audit entry for a token not written");
    }
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> AdminResult<Response> {
    let body = json_body(&state, req).await?;
    let r: wire::TokenRequest = serde_json::from_value(body).map_err(|e| {
        AdminError::bad_request(format!(
            "invalid token request: {e} (expected {{\"scope\": \"scim\" | \"admin\", \"name\": \"…\"}})"
        ))
    })?;
    let scope = Scope::parse(&r.scope)
        .ok_or_else(|| AdminError::bad_request("scope must be \"scim\" or \"admin\""))?;
    let created = auth::issue_token(
        state.hub.store.as_ref(),
        scope,
        &r.name,
        Some(&principal.to_string()),
    )
    .await
    .map_err(|e| match e {
        TokenError::InvalidName(m) => AdminError::bad_request(m),
        TokenError::Store(e) => storage(e),
    })?;
    audit(&state, AuditOp::CreateToken, &created.info, &principal).await;
    tracing::info!(token_id = %created.info.id, scope = %scope, "token created");
    Ok((
        StatusCode::CREATED,
        axum::Json(wire::TokenCreated {
            info: wire_info(&created.info),
            token: created.token,
        }),
    )
        .into_response())
}

async fn list(State(state): State<AppState>) -> AdminResult<Response> {
    let tokens = auth::list_tokens(state.hub.store.as_ref())
        .await
        .map_err(storage)?;
    Ok(axum::Json(wire::TokenList {
        tokens: tokens.iter().map(wire_info).collect(),
    })
    .into_response())
}

async fn revoked(
    state: &AppState,
    principal: &Principal,
    t: Option<TokenInfo>,
    what: &str,
) -> AdminResult<Response> {
    let Some(t) = t else {
        return Err(AdminError::not_found(format!(
            "no stored token {what} (tokens set in the environment cannot be revoked here)"
        )));
    };
    audit(state, AuditOp::RevokeToken, &t, principal).await;
    tracing::info!(token_id = %t.id, "token revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AdminResult<Response> {
    let t = auth::revoke_token_by_id(state.hub.store.as_ref(), &id)
        .await
        .map_err(storage)?;
    let shown = format!("{:?}", id.chars().take(64).collect::<String>());
    revoked(&state, &principal, t, &shown).await
}

async fn revoke_by_secret(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> AdminResult<Response> {
    let body = json_body(&state, req).await?;
    // The message never quotes the body: it holds a secret.
    let r: wire::TokenRevoke = serde_json::from_value(body)
        .map_err(|_| AdminError::bad_request("expected {\"token\": \"<the token>\"}"))?;
    let t = auth::revoke_token(state.hub.store.as_ref(), r.token.trim())
        .await
        .map_err(storage)?;
    revoked(&state, &principal, t, "with that secret").await
}
