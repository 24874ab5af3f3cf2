//! Driving the Lambda HTTP functions the way API Gateway does: a real HTTP API (payload
//! 2.0) sample event from `tests/fixtures/aws/`, converted by `lambda_http` exactly as
//! `lambda_http::run` does, into the hub's router with the functions' own wiring.

use std::sync::Arc;

use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use lambda_http::{Adapter, Context, LambdaEvent};
use provisync_core::queue::store_queue::{StoreQueue, StoreQueueSettings};
use provisync_core::store::Store;
use provisync_core::store::embedded::EmbeddedStore;
use serde_json::Value;

/// Every surface with the functions' wiring (the hub, tokens and limits from the
/// environment), on an in-memory store.
pub fn app() -> axum::Router {
    provisync_http::app(state())
}

/// The functions' state ([`provisync_core::hub::Hub`] and [`provisync_http::AppState`]
/// from the environment), on an in-memory store.
pub fn state() -> provisync_http::AppState {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    state_on(store, provisync_core::crypto::SecretBox::generate().0)
}

/// [`state`] on a given store and operator key (to prepare records the function reads).
pub fn state_on(
    store: Arc<dyn Store>,
    secrets: provisync_core::crypto::SecretBox,
) -> provisync_http::AppState {
    let queue = Arc::new(StoreQueue::new(
        store.clone(),
        "t",
        StoreQueueSettings::default(),
    ));
    super::allow_loopback_peers();
    let hub = provisync_core::hub::Hub::new(provisync_core::hub::HubParts {
        store,
        queue,
        schemas: provisync_scim::SchemaRegistry::builtin(),
        secrets,
        connectors: provisync_connectors::connectors_for,
        http: provisync_connectors::http::http_port,
    });
    provisync_http::AppState::from_env(hub).expect("state")
}

/// The sample event `fixture` (a file in `tests/fixtures/aws/`) for route `route_key`, with
/// another method and path, edited further by `edit`.
pub fn event(
    fixture: &str,
    route_key: &str,
    method: &str,
    path: &str,
    edit: impl FnOnce(&mut Value),
) -> LambdaEvent<LambdaRequest> {
    let file = format!("{}/fixtures/aws/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut v: Value = serde_json::from_str(&text).expect("fixture JSON");
    v["routeKey"] = route_key.into();
    v["rawPath"] = path.into();
    v["requestContext"]["http"]["method"] = method.into();
    v["requestContext"]["http"]["path"] = path.into();
    edit(&mut v);
    LambdaEvent::new(
        serde_json::from_value(v).expect("API Gateway event"),
        Context::default(),
    )
}

/// What the function answers API Gateway (the `lambda_http::run` conversions).
pub async fn invoke(event: LambdaEvent<LambdaRequest>) -> Value {
    invoke_app(app(), event).await
}

/// [`invoke`] on a given router.
pub async fn invoke_app(app: axum::Router, event: LambdaEvent<LambdaRequest>) -> Value {
    let resp = Adapter::from(app).oneshot(event).await.expect("invoke");
    serde_json::to_value(resp).expect("response JSON")
}

/// The JSON body of a function response.
pub fn body(resp: &Value) -> Value {
    assert_eq!(resp["isBase64Encoded"], false, "{resp}");
    serde_json::from_str(resp["body"].as_str().expect("body")).expect("JSON body")
}
