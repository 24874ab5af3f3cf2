//! The HTTP surfaces, as axum routers. The Lambda functions each run one of them through
//! `lambda_http`; `provisync serve` nests them all in one server. One code path.

pub mod admin;
pub mod auth;
pub mod scim;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::directory::Directory;
use auth::Authenticator;

/// Limits and settings of the HTTP layer.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Largest request body accepted, in bytes (also the Bulk `maxPayloadSize`).
    pub max_body_bytes: usize,
    /// Most operations in one Bulk request.
    pub max_bulk_operations: usize,
    /// Public base URL (`https://host`), when the Host header cannot be trusted to give it.
    pub public_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 1024 * 1024,
            max_bulk_operations: 1000,
            public_url: None,
        }
    }
}

/// What every handler shares. Built once per process (outside the Lambda handler).
#[derive(Clone)]
pub struct AppState {
    pub directory: Directory,
    pub auth: Arc<Authenticator>,
    pub config: Arc<HttpConfig>,
    /// Targets, audit, queue and secrets for the `/admin` surface; `None` in processes
    /// that do not serve it (its routes then answer 503).
    pub admin: Option<admin::AdminState>,
}

/// Every surface this process serves, plus `GET /healthz`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(scim::router(state.clone()))
        .merge(admin::router(state.clone()))
        .merge(webhooks::router(state.clone()))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(json!({"status": "ok", "store": state.directory.store().backend()}))
}
