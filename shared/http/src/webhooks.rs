//! `POST /webhooks/{source_id}`: signed webhooks from source sites (the `webhook-ingest`
//! function; `provisync serve` mounts it too).
//!
//! Order of checks, cheapest and safest first — nothing is parsed before it is verified:
//!
//! 1. the body is read under [`MAX_WEBHOOK_BODY_BYTES`] (413 above);
//! 2. the source is looked up (`SOURCE#{id}`): 404 when there is none;
//! 3. the signature: Standard Webhooks (`webhook-id`, `webhook-timestamp` within ±5
//!    minutes, `webhook-signature`; the signed `webhook-id` is the replay id) or GitHub's
//!    `X-Hub-Signature-256` (which signs the body only: the replay id is the body's
//!    SHA-256, never the unsigned `X-GitHub-Delivery`), against any of the source's
//!    secrets: 401;
//! 4. the source's direction (`pull` sources do not send webhooks): 403;
//! 5. only then the body is parsed as an envelope (400) and applied under the source's
//!    policy ([`provisync_core::sync::inbound`]): 403 for what the policy forbids, 409 for
//!    a unique name taken (by another resource, or by one the source may not claim), 400
//!    for an `occurred_at` outside the source's window, 202 once the change (or its
//!    no-op, stale, replay or unlink outcome) is durably recorded.
//!
//! Errors are JSON `{"error": ...}`; a failure of the hub's storage is a 503, never a
//! 500. Refusals of a known source are audit entries (one per source and reason per
//! minute, with a count of the others); bodies and secrets are never logged.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::AppState;
use provisync_core::source::{Scheme, SourceConfig, check_source_id};
use provisync_core::sync::inbound::{Envelope, EnvelopeType, Inbound, InboundError};
use provisync_core::webhook_sig::{
    VerifyError, decode_standard_secret, github_replay_id, verify_github, verify_standard,
};

/// Base path of the webhook surface.
pub const BASE_PATH: &str = "/webhooks";
/// Largest webhook body accepted (1 MiB).
pub const MAX_WEBHOOK_BODY_BYTES: usize = 1024 * 1024;

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

impl From<InboundError> for WebhookError {
    fn from(e: InboundError) -> Self {
        let status = match e {
            InboundError::Forbidden(_) => StatusCode::FORBIDDEN,
            InboundError::Malformed(_) => StatusCode::BAD_REQUEST,
            InboundError::Conflict(_) => StatusCode::CONFLICT,
            InboundError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        WebhookError::new(status, e.to_string())
    }
}

/// The webhook router, paths under `/webhooks`.
pub fn router(state: AppState) -> Router {
    let webhooks = Router::new()
        .route("/{source_id}", post(receive))
        .fallback(|| async { WebhookError::new(StatusCode::NOT_FOUND, "no such webhook endpoint") })
        .method_not_allowed_fallback(|| async {
            WebhookError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "webhooks are sent with POST",
            )
        });
    Router::new().nest(BASE_PATH, webhooks).with_state(state)
}

fn unknown_source() -> WebhookError {
    WebhookError::new(StatusCode::NOT_FOUND, "unknown source")
}

fn unavailable() -> WebhookError {
    WebhookError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the hub's storage is unavailable, retry later",
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    headers
        .get(name)
        .ok_or(VerifyError::MissingHeader(name))?
        .to_str()
        .map_err(|_| VerifyError::InvalidHeader(name))
}

/// Verifies the signature under the source's scheme; returns the replay id (what the
/// signature covers: the `webhook-id`, or for the GitHub scheme the body's hash).
fn verify(source: &SourceConfig, headers: &HeaderMap, body: &[u8]) -> Result<String, VerifyError> {
    match source.scheme {
        Scheme::Standard => {
            let id = header_str(headers, "webhook-id")?;
            let ts = header_str(headers, "webhook-timestamp")?;
            let sigs = header_str(headers, "webhook-signature")?;
            // Secrets were checked when the source was saved; one that no longer decodes
            // simply verifies nothing.
            let keys: Vec<Vec<u8>> = source
                .secrets
                .iter()
                .filter_map(|s| decode_standard_secret(s).ok())
                .collect();
            verify_standard(
                &keys,
                id,
                ts,
                sigs,
                body,
                provisync_core::store::now_epoch(),
            )?;
            Ok(id.to_string())
        }
        Scheme::Github => {
            let sig = header_str(headers, "x-hub-signature-256")?;
            let secrets: Vec<&[u8]> = source.secrets.iter().map(|s| s.as_bytes()).collect();
            verify_github(&secrets, sig, body)?;
            Ok(github_replay_id(body))
        }
    }
}

async fn receive(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
    req: Request,
) -> Result<Response, WebhookError> {
    let headers = req.headers().clone();
    let body = read_body(req).await?;
    if check_source_id(&source_id).is_err() {
        // Not a name a source can have: unknown, without asking the store.
        return Err(unknown_source());
    }
    let adm = &state.hub;
    let source = match adm.sources.get(&source_id).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            tracing::info!(source = %source_id, bytes = body.len(), "webhook from an unknown source");
            return Err(unknown_source());
        }
        Err(e) => {
            tracing::error!(error = %e, source = %source_id, "webhook: source lookup failed");
            return Err(unavailable());
        }
    };
    let inbound = &adm.inbound;
    let delivery_id = match verify(&source, &headers, &body) {
        Ok(id) => id,
        Err(e) => {
            tracing::info!(source = %source_id, reason = %e, "webhook signature refused");
            inbound
                .record_refusal(&source_id, None, &format!("signature: {e}"))
                .await;
            return Err(WebhookError::new(
                StatusCode::UNAUTHORIZED,
                format!("signature verification failed: {e}"),
            ));
        }
    };
    if let Err(e) = Inbound::check_webhook_allowed(&source) {
        inbound
            .record_refusal(&source_id, None, &e.to_string())
            .await;
        return Err(e.into());
    }
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            // A well-formed envelope of a type the hub does not know is named as such
            // (the type is the sender's own short string, cut to 64 characters).
            let reason = match unknown_type(&body) {
                Some(t) => format!(
                    "unknown envelope type {t:?} (known: {})",
                    EnvelopeType::ALL.map(EnvelopeType::as_str).join(", ")
                ),
                // The parser's message without the input it may quote.
                None => format!(
                    "the body is not an envelope {{\"type\",\"occurred_at\",\"data\"}} ({:?} error at line {}, column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            };
            inbound.record_refusal(&source_id, None, &reason).await;
            return Err(WebhookError::new(StatusCode::BAD_REQUEST, reason));
        }
    };
    let applied = inbound
        .apply(&source, &envelope, Some(&delivery_id))
        .await?;
    tracing::info!(source = %source_id, kind = envelope.kind.as_str(), outcome = applied.as_str(), "webhook accepted");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": applied.as_str()})),
    )
        .into_response())
}

/// The `type` of a JSON object body when it is a string that names no envelope type.
fn unknown_type(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: String,
    }
    let typed: Typed = serde_json::from_slice(body).ok()?;
    if EnvelopeType::from_name(&typed.kind).is_some() {
        return None;
    }
    Some(typed.kind.chars().take(64).collect())
}

/// The body, at most [`MAX_WEBHOOK_BODY_BYTES`] (413 above, decided from `Content-Length`
/// when it is given, without reading).
async fn read_body(req: Request) -> Result<bytes::Bytes, WebhookError> {
    crate::body::read_limited(req, MAX_WEBHOOK_BODY_BYTES)
        .await
        .map_err(|e| {
            WebhookError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {} bytes", e.limit),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use provisync_core::store::Store;
    use provisync_core::store::embedded::EmbeddedStore;
    use std::sync::Arc;
    use tower::ServiceExt;

    fn app() -> Router {
        use provisync_core::hub::{Hub, HubParts};
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let queue = Arc::new(provisync_core::queue::store_queue::StoreQueue::new(
            store.clone(),
            "q",
            Default::default(),
        ));
        let hub = Hub::new(HubParts {
            store,
            queue,
            schemas: provisync_scim::SchemaRegistry::builtin(),
            secrets: provisync_core::crypto::SecretBox::generate().0,
            connectors: provisync_core::connector::no_connectors,
            http: provisync_core::connector::http::no_http,
        });
        crate::webhook_app(crate::AppState::new(
            hub,
            crate::auth::Authenticator::new(None),
            crate::HttpConfig::default(),
        ))
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

    /// Arbitrary deliveries through the real router, each on a fresh hub with two sources
    /// (Standard Webhooks and GitHub): never a 5xx or a panic, a wrong or missing
    /// signature is always 401, a right one never is, an unknown source is 404.
    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        use provisync_core::source::SourceConfig;
        use provisync_core::webhook_sig::{sign_github, sign_standard};

        const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        const GH_SECRET: &str = "It's a Secret to Everybody";

        #[derive(Clone, Debug)]
        enum Signing {
            Right,
            /// Signed, then one byte of the body changed.
            TamperedBody,
            WrongSecret,
            Garbage(String),
            Missing,
            /// Right, but outside the ±5 minute window.
            Stale,
        }

        fn arb_json() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                prop_oneof![
                    any::<String>(),
                    Just("ada@example.org".to_string()),
                    Just("\u{202e}\u{0}\u{1F600}".to_string()),
                    "[a-z]{1,8}",
                ]
                .prop_map(serde_json::Value::String),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                    prop::collection::vec(
                        (
                            prop_oneof![
                                Just("externalId".to_string()),
                                Just("userName".to_string()),
                                Just("displayName".to_string()),
                                Just("members".to_string()),
                                Just("emails".to_string()),
                                Just("entity_type".to_string()),
                                Just("uuid".to_string()),
                                Just("name".to_string()),
                                Just("value".to_string()),
                                Just("active".to_string()),
                                Just("roles".to_string()),
                                any::<String>(),
                            ],
                            inner
                        ),
                        0..5
                    )
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
                ]
            })
        }

        fn arb_body() -> impl Strategy<Value = Vec<u8>> {
            let envelope = (
                prop_oneof![
                    Just("user.upsert"),
                    Just("user.delete"),
                    Just("group.upsert"),
                    Just("group.delete"),
                    Just("entity.upsert"),
                    Just("entity.delete"),
                    Just("config.set"),
                    Just("config.delete"),
                    Just("user.merge"),
                    Just(""),
                ],
                prop_oneof![
                    Just("2025-01-16T12:00:00Z".to_string()),
                    Just("yesterday".to_string()),
                    Just("9999-12-31T23:59:59Z".to_string()),
                    any::<String>(),
                ],
                arb_json(),
            )
                .prop_map(|(t, at, data)| {
                    json!({"type": t, "occurred_at": at, "data": data})
                        .to_string()
                        .into_bytes()
                });
            prop_oneof![
                4 => envelope,
                1 => prop::collection::vec(any::<u8>(), 0..600),
                1 => (1usize..5000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
                1 => arb_json().prop_map(|v| v.to_string().into_bytes()),
            ]
        }

        fn arb_signing() -> impl Strategy<Value = Signing> {
            prop_oneof![
                4 => Just(Signing::Right),
                1 => Just(Signing::TamperedBody),
                1 => Just(Signing::WrongSecret),
                1 => any::<String>().prop_map(Signing::Garbage),
                1 => Just(Signing::Missing),
                1 => Just(Signing::Stale),
            ]
        }

        async fn hub_with_sources() -> Router {
            use provisync_core::hub::{Hub, HubParts};
            let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
            let queue = Arc::new(provisync_core::queue::store_queue::StoreQueue::new(
                store.clone(),
                "q",
                Default::default(),
            ));
            let hub = Hub::new(HubParts {
                store,
                queue,
                schemas: provisync_scim::SchemaRegistry::builtin(),
                secrets: provisync_core::crypto::SecretBox::generate().0,
                connectors: provisync_core::connector::no_connectors,
                http: provisync_core::connector::http::no_http,
            });
            for source in [
                json!({"id": "site", "secrets": [SECRET], "user_sync": true,
                       "entity_types": ["node"], "config_prefixes": ["shared."],
                       "allowed_fields": ["userName", "displayName", "emails", "members", "name"]}),
                json!({"id": "gh", "scheme": "github", "secrets": [GH_SECRET], "user_sync": true}),
            ] {
                let s: SourceConfig = serde_json::from_value(source).unwrap();
                hub.sources.put(&s).await.unwrap();
            }
            crate::webhook_app(crate::AppState::new(
                hub,
                crate::auth::Authenticator::new(None),
                crate::HttpConfig::default(),
            ))
        }

        fn request(source: &str, body: &[u8], signing: &Signing) -> axum::http::Request<Body> {
            let now = provisync_core::store::now_epoch();
            let key = provisync_core::webhook_sig::decode_standard_secret(SECRET).unwrap();
            let ts = if matches!(signing, Signing::Stale) {
                now - 3600
            } else {
                now
            };
            let mut signed_body = body.to_vec();
            if matches!(signing, Signing::TamperedBody) {
                signed_body.push(b' ');
            }
            let (standard, github) = match signing {
                Signing::WrongSecret => (
                    sign_standard(b"another key of at least 24 bytes", "msg_1", ts, body),
                    sign_github(b"another secret", body),
                ),
                Signing::Garbage(g) => (g.clone(), g.clone()),
                _ => (
                    sign_standard(&key, "msg_1", ts, &signed_body),
                    sign_github(GH_SECRET.as_bytes(), &signed_body),
                ),
            };
            let mut b = axum::http::Request::builder()
                .method("POST")
                .uri(format!("/webhooks/{source}"))
                .header("content-type", "application/json");
            if !matches!(signing, Signing::Missing) {
                for (k, v) in [
                    ("webhook-id", "msg_1".to_string()),
                    ("webhook-timestamp", ts.to_string()),
                    ("webhook-signature", standard),
                    ("x-github-delivery", "d-1".to_string()),
                    ("x-hub-signature-256", github),
                ] {
                    if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
                        b = b.header(k, v);
                    }
                }
            }
            b.body(Body::from(body.to_vec())).unwrap()
        }

        #[test]
        fn arbitrary_deliveries_get_a_clear_answer() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut runner = TestRunner::new(Config {
                cases: 256,
                failure_persistence: None,
                ..Config::default()
            });
            let strategy = (
                prop_oneof![3 => Just("site"), 2 => Just("gh"), 1 => Just("nosuch")],
                arb_body(),
                arb_signing(),
            );
            runner
                .run(&strategy, |(source, body, signing)| {
                    let (status, answer) = rt.block_on(async {
                        let resp = hub_with_sources()
                            .await
                            .oneshot(request(source, &body, &signing))
                            .await
                            .unwrap();
                        let status = resp.status().as_u16();
                        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                            .await
                            .unwrap();
                        (status, serde_json::from_slice::<serde_json::Value>(&bytes))
                    });
                    prop_assert!(status < 500, "{} for {:?}", status, signing);
                    let answer =
                        answer.map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
                    prop_assert!(
                        answer.get("status").is_some() || answer["error"].is_string(),
                        "{}",
                        answer
                    );
                    // GitHub signatures carry no timestamp: a stale one is still right.
                    let right = matches!(signing, Signing::Right)
                        || (source == "gh" && matches!(signing, Signing::Stale));
                    match source {
                        "nosuch" => prop_assert_eq!(status, 404),
                        _ if right => prop_assert!(status != 401, "{}: {}", status, answer),
                        _ => prop_assert_eq!(status, 401, "{:?}: {}", signing, answer),
                    }
                    Ok(())
                })
                .unwrap();
        }
    }
}
