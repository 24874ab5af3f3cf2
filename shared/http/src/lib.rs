//! The HTTP surfaces, as axum routers: SCIM 2.0 ([`scim`]), webhooks in ([`webhooks`]),
//! the operators' API ([`admin`]). Each Lambda function serves its own surface
//! ([`scim_app`], [`webhook_app`], [`admin_app`]); `provisync serve` serves them all in one
//! server ([`app`]). One code path.

pub mod admin;
pub mod auth;
pub mod body;
pub mod scim;
pub mod scim_error;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use auth::{Authenticator, Scope};
use provisync_core::directory::Directory;
use provisync_core::hub::Hub;
use provisync_core::store::Store;

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

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpConfigError(pub String);

impl HttpConfig {
    /// `PROVISYNC_MAX_BODY_BYTES` and `PROVISYNC_PUBLIC_URL`.
    pub fn from_env() -> Result<HttpConfig, HttpConfigError> {
        let mut config = HttpConfig::default();
        if let Ok(v) = std::env::var("PROVISYNC_MAX_BODY_BYTES") {
            config.max_body_bytes = v
                .parse()
                .map_err(|_| HttpConfigError("PROVISYNC_MAX_BODY_BYTES must be a number".into()))?;
        }
        config.public_url = std::env::var("PROVISYNC_PUBLIC_URL")
            .ok()
            .filter(|s| !s.is_empty());
        Ok(config)
    }
}

impl Authenticator {
    /// Tokens in the store, plus the static `PROVISYNC_SCIM_TOKEN` and
    /// `PROVISYNC_ADMIN_TOKEN` when set (local use).
    pub fn from_env(store: Arc<dyn Store>) -> Authenticator {
        let mut auth = Authenticator::new(Some(store));
        if let Ok(t) = std::env::var("PROVISYNC_SCIM_TOKEN")
            && !t.is_empty()
        {
            auth = auth.with_static_token(&t, Scope::Scim);
        }
        if let Ok(t) = std::env::var("PROVISYNC_ADMIN_TOKEN")
            && !t.is_empty()
        {
            auth = auth.with_static_token(&t, Scope::Admin);
        }
        auth
    }
}

/// What the HTTP surfaces share: the hub, the authenticator and the limits. Built once
/// per process (outside the Lambda handler); each surface takes its part through
/// [`FromRef`].
#[derive(Clone)]
pub struct AppState {
    pub hub: Hub,
    pub auth: Arc<Authenticator>,
    pub config: Arc<HttpConfig>,
}

impl AppState {
    pub fn new(hub: Hub, auth: Authenticator, config: HttpConfig) -> AppState {
        AppState {
            hub,
            auth: Arc::new(auth),
            config: Arc::new(config),
        }
    }

    /// The hub's state with the authenticator and limits from the environment.
    pub fn from_env(hub: Hub) -> Result<AppState, HttpConfigError> {
        let auth = Authenticator::from_env(hub.store.clone());
        Ok(AppState::new(hub, auth, HttpConfig::from_env()?))
    }
}

/// What the SCIM surface needs: the directory, nothing of the sync engine.
#[derive(Clone)]
pub struct ScimState {
    pub directory: Directory,
    pub auth: Arc<Authenticator>,
    pub config: Arc<HttpConfig>,
}

impl FromRef<AppState> for ScimState {
    fn from_ref(s: &AppState) -> ScimState {
        ScimState {
            directory: s.hub.directory.clone(),
            auth: s.auth.clone(),
            config: s.config.clone(),
        }
    }
}

/// `GET /healthz`: the process answers and which store it runs on.
fn healthz(store: Arc<dyn Store>) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .with_state(store)
}

async fn health(State(store): State<Arc<dyn Store>>) -> impl IntoResponse {
    axum::Json(json!({"status": "ok", "store": store.backend()}))
}

/// When a request must be answered by: the invocation's deadline, which the Lambda entry
/// points put in each request's extensions ([`answer_by`]); absent in `provisync serve`.
/// Handlers that run long (a scheduled cycle, a reconcile) fit their budget inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerBy(pub tokio::time::Instant);

/// `router` with an [`AnswerBy`] in each request's extensions, from what `deadline_of`
/// finds there (the Lambda functions read the invocation context `lambda_http` puts in).
pub fn answer_by(
    router: Router,
    deadline_of: fn(&http::Extensions) -> Option<tokio::time::Instant>,
) -> Router {
    router.layer(tower::util::MapRequestLayer::new(
        move |mut req: axum::extract::Request| {
            if let Some(at) = deadline_of(req.extensions()) {
                req.extensions_mut().insert(AnswerBy(at));
            }
            req
        },
    ))
}

/// Every request in a span of its own (method, path; never headers, so never a token),
/// with one line when it is answered.
fn traced(router: Router) -> Router {
    use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
    router.layer(
        TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
            .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
    )
}

/// `scim-api`: `/scim/v2/*` and `/healthz`.
pub fn scim_app(state: AppState) -> Router {
    traced(scim::router(ScimState::from_ref(&state)).merge(healthz(state.hub.store.clone())))
}

/// `webhook-ingest`: `POST /webhooks/{source}` and `/healthz`.
pub fn webhook_app(state: AppState) -> Router {
    let store = state.hub.store.clone();
    traced(webhooks::router(state).merge(healthz(store)))
}

/// `admin-api`: `/admin/*` and `/healthz`.
pub fn admin_app(state: AppState) -> Router {
    let store = state.hub.store.clone();
    traced(admin::router(state).merge(healthz(store)))
}

/// `provisync serve`: every surface and `/healthz`.
pub fn app(state: AppState) -> Router {
    traced(
        scim::router(ScimState::from_ref(&state))
            .merge(admin::router(state.clone()))
            .merge(webhooks::router(state.clone()))
            .merge(healthz(state.hub.store.clone())),
    )
}
