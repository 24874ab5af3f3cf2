//! `POST /webhooks/{source_id}`: signed webhooks from source sites (the `webhook-ingest`
//! function; `provisync serve` mounts it too).
//!
//! Today this is the entry point only: the body is read under [`MAX_WEBHOOK_BODY_BYTES`]
//! (413 above), the source is looked up in the store (`SOURCE#{id}` / `SOURCE`), and an
//! unknown source is answered 404. Registering sources, verifying signatures (Standard
//! Webhooks, `X-Hub-Signature-256`), the timestamp window, replay protection and turning
//! the payload into a directory write come with the signed-webhook issue. Errors are JSON
//! `{"error": ...}`; a failure of the hub's storage is a 503, never a 500. Bodies are never
//! logged.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::AppState;
use crate::store::Key;

/// Base path of the webhook surface.
pub const BASE_PATH: &str = "/webhooks";
/// Largest webhook body accepted (1 MiB).
pub const MAX_WEBHOOK_BODY_BYTES: usize = 1024 * 1024;
/// Longest source id.
pub const MAX_SOURCE_ID_LEN: usize = 64;

/// The store key of a source's record.
pub fn source_key(id: &str) -> Key {
    Key::new(format!("SOURCE#{id}"), "SOURCE")
}

/// An error answer: `{"error": message}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookError {
    pub status: StatusCode,
    pub message: String,
}

impl WebhookError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        WebhookError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(json!({"error": self.message}))).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is not read: the connection cannot be reused.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// The webhook router, paths already under `/webhooks`.
pub fn router(_state: AppState) -> Router<AppState> {
    let webhooks = Router::new()
        .route("/{source_id}", post(receive))
        .fallback(|| async { WebhookError::new(StatusCode::NOT_FOUND, "no such webhook endpoint") })
        .method_not_allowed_fallback(|| async {
            WebhookError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "webhooks are sent with POST",
            )
        });
    Router::new().nest(BASE_PATH, webhooks)
}

fn unknown_source() -> WebhookError {
    WebhookError::new(StatusCode::NOT_FOUND, "unknown source")
}

/// A source id as the path gives it: 1 to 64 letters, digits, `-`, `_`, `.`.
fn valid_source_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SOURCE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

async fn receive(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
    req: Request,
) -> Result<Response, WebhookError> {
    let body = read_body(req).await?;
    if !valid_source_id(&source_id) {
        // Not a name a source can have: unknown, without asking the store.
        return Err(unknown_source());
    }
    let record = state
        .directory
        .store()
        .get(&source_key(&source_id))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, source = %source_id, "webhook: source lookup failed");
            WebhookError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub's storage is unavailable, retry later",
            )
        })?;
    if record.is_none() {
        tracing::info!(source = %source_id, bytes = body.len(), "webhook from an unknown source");
        return Err(unknown_source());
    }
    // Sources cannot be registered yet; a record found here was not written by this
    // version. Refuse rather than accept an unverified change.
    tracing::warn!(source = %source_id, "webhook: source record found, but verification is not available in this version");
    Err(WebhookError::new(
        StatusCode::NOT_IMPLEMENTED,
        "webhook verification is not available in this version",
    ))
}

/// The body, at most [`MAX_WEBHOOK_BODY_BYTES`] (413 above, decided from `Content-Length`
/// when it is given, without reading).
async fn read_body(req: Request) -> Result<bytes::Bytes, WebhookError> {
    let limit = MAX_WEBHOOK_BODY_BYTES;
    let too_large = || {
        WebhookError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::embedded::EmbeddedStore;
    use axum::body::Body;
    use std::sync::Arc;
    use tower::ServiceExt;

    fn app() -> Router {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let state =
            crate::config::state_for_store(store, crate::scim::SchemaRegistry::builtin()).unwrap();
        crate::http::app(state)
    }

    async fn call(method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let resp = app().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn unknown_source_is_404() {
        let (status, body) = call("POST", "/webhooks/drupal-main", b"{}".to_vec()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({"error": "unknown source"}));
        // A name no source can have: same answer.
        let (status, body) = call("POST", "/webhooks/a%20b", b"{}".to_vec()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({"error": "unknown source"}));
    }

    #[tokio::test]
    async fn oversized_body_is_413() {
        let big = vec![b'x'; MAX_WEBHOOK_BODY_BYTES + 1];
        let (status, body) = call("POST", "/webhooks/drupal-main", big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body["error"].as_str().unwrap().contains("larger than"));
        // Exactly the limit is read (and the source is then unknown).
        let ok = vec![b'x'; MAX_WEBHOOK_BODY_BYTES];
        assert_eq!(
            call("POST", "/webhooks/drupal-main", ok).await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn other_methods_and_paths_are_json_errors() {
        let (status, body) = call("GET", "/webhooks/drupal-main", vec![]).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(body["error"].is_string());
        let (status, body) = call("POST", "/webhooks/a/b", vec![]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].is_string());
    }
}
