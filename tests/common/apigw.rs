//! Driving the Lambda HTTP functions the way API Gateway does: a real HTTP API (payload
//! 2.0) sample event from `tests/fixtures/aws/`, converted by `lambda_http` exactly as
//! `lambda_http::run` does, into the hub's router with the functions' own wiring.

use std::sync::Arc;

use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use lambda_http::{Adapter, Context, LambdaEvent};
use provisync::queue::store_queue::{StoreQueue, StoreQueueSettings};
use provisync::store::Store;
use provisync::store::embedded::EmbeddedStore;
use serde_json::Value;

/// The real router with the functions' wiring (`config::wire_hub`), on an in-memory store.
pub fn app() -> axum::Router {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    app_on(store, provisync::crypto::SecretBox::generate().0)
}

/// [`app`] on a given store and operator key (to prepare records the function reads).
pub fn app_on(store: Arc<dyn Store>, secrets: provisync::crypto::SecretBox) -> axum::Router {
    let queue = Arc::new(StoreQueue::new(
        store.clone(),
        "t",
        StoreQueueSettings::default(),
    ));
    let state =
        provisync::config::state_for_store(store, provisync::scim::SchemaRegistry::builtin())
            .expect("state");
    let (state, _) =
        provisync::config::wire_hub(state, queue, secrets, provisync::sync::connectors_for);
    provisync::http::app(state)
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
