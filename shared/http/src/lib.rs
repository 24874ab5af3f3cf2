//! The HTTP surfaces, as axum routers: SCIM 2.0 ([`scim`]), webhooks in ([`webhooks`]),
//! the operators' API ([`admin`]) and its console ([`console`]). Each Lambda function
//! serves its own surface ([`scim_app`], [`webhook_app`], [`admin_app`] with the console);
//! `provisync serve` serves them all in one server ([`app`]). One code path.

pub mod admin;
pub mod auth;
pub mod body;
pub mod console;
pub mod front;
pub mod scim;
pub mod scim_error;
pub mod scim_input;
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
    /// Public base URL (`https://host`) resources are located under
    /// (`PROVISYNC_PUBLIC_URL`).
    pub public_url: Option<String>,
    /// Where the platform says the request came in, when it does (the API Gateway
    /// domain of the request context on Lambda): trusted, unlike a client's headers.
    pub platform_origin: Option<PlatformOrigin>,
    /// `X-Forwarded-Host` / `-Proto` and `Host` give the public URL: only behind a proxy
    /// that sets them itself (`PROVISYNC_TRUST_FORWARDED_HEADERS=true`).
    pub trust_forwarded_headers: bool,
}

/// Reads the host name the platform vouches for from a request's extensions.
pub type PlatformOrigin = fn(&axum::http::Extensions) -> Option<String>;

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 1024 * 1024,
            max_bulk_operations: 1000,
            public_url: None,
            platform_origin: None,
            trust_forwarded_headers: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpConfigError(pub String);

impl HttpConfig {
    /// `PROVISYNC_MAX_BODY_BYTES`, `PROVISYNC_PUBLIC_URL` and
    /// `PROVISYNC_TRUST_FORWARDED_HEADERS`.
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
        config.trust_forwarded_headers = match std::env::var("PROVISYNC_TRUST_FORWARDED_HEADERS")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "false" | "0" | "no" => false,
            "true" | "1" | "yes" => true,
            _ => {
                return Err(HttpConfigError(
                    "PROVISYNC_TRUST_FORWARDED_HEADERS must be true or false".into(),
                ));
            }
        };
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

    /// With the host name the platform vouches for (see [`HttpConfig::platform_origin`]).
    pub fn with_platform_origin(mut self, origin: PlatformOrigin) -> AppState {
        let mut config = (*self.config).clone();
        config.platform_origin = Some(origin);
        self.config = Arc::new(config);
        self
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
    traced(
        scim::router(ScimState::from_ref(&state))
            .merge(front::scim_base_paths())
            .merge(healthz(state.hub.store.clone()))
            .fallback(front::not_found),
    )
}

/// `webhook-ingest`: `POST /webhooks/{source}` and `/healthz`.
pub fn webhook_app(state: AppState) -> Router {
    let store = state.hub.store.clone();
    traced(
        webhooks::router(state)
            .merge(healthz(store))
            .fallback(front::not_found),
    )
}

/// `admin-api`: `/admin/*`, the console (`/console/`), the front page and `/healthz`.
pub fn admin_app(state: AppState) -> Router {
    let store = state.hub.store.clone();
    traced(
        admin::router(state.clone())
            .merge(console::router(state))
            .merge(front::router())
            .merge(healthz(store))
            .fallback(front::not_found),
    )
}

/// `provisync serve`: every surface, the front page and `/healthz`, as a keep-alive
/// HTTP/1.1 server: a body a handler answered without reading is drained (or the answer
/// closes the connection), see [`body::drain_unread`].
pub fn app(state: AppState) -> Router {
    traced(
        scim::router(ScimState::from_ref(&state))
            .merge(front::scim_base_paths())
            .merge(admin::router(state.clone()))
            .merge(console::router(state.clone()))
            .merge(webhooks::router(state.clone()))
            .merge(front::router())
            .merge(healthz(state.hub.store.clone()))
            .fallback(front::not_found)
            .layer(axum::middleware::from_fn(body::drain_unread)),
    )
}
