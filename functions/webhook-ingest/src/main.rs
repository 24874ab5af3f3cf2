//! Lambda entry point for signed webhooks from source sites (API Gateway HTTP API ->
//! `POST /webhooks/{source_id}`). Only wiring: the state is built once per cold start
//! (with change events, as for SCIM writes), the router is the library's
//! (`provisync::http::webhooks`). Needs `PROVISYNC_SECRET_KEY`.

use lambda_http::{Error, run};

#[tokio::main]
async fn main() -> Result<(), Error> {
    provisync::lambda::init_tracing();
    let state = provisync::lambda::http_state_from_env().await?;
    run(provisync::http::app(state)).await
}

#[cfg(test)]
mod tests {
    use lambda_http::request::LambdaRequest;
    use lambda_http::tower::ServiceExt;
    use lambda_http::{Adapter, Context, LambdaEvent};
    use provisync::queue::store_queue::{StoreQueue, StoreQueueSettings};
    use provisync::store::Store;
    use provisync::store::embedded::EmbeddedStore;
    use serde_json::Value;
    use std::sync::Arc;

    /// The real router with the functions' wiring, on an in-memory store.
    fn app() -> axum::Router {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let queue = Arc::new(StoreQueue::new(
            store.clone(),
            "t",
            StoreQueueSettings::default(),
        ));
        let state =
            provisync::config::state_for_store(store, provisync::scim::SchemaRegistry::builtin())
                .unwrap();
        let (state, _) = provisync::config::wire_hub(
            state,
            queue,
            provisync::crypto::SecretBox::generate().0,
            provisync::sync::connectors_for,
        );
        provisync::http::app(state)
    }

    /// A webhook as API Gateway (HTTP API, payload 2.0) hands it over, with another path.
    fn event(method: &str, path: &str) -> LambdaEvent<LambdaRequest> {
        event_with(method, path, |_| {})
    }

    fn event_with(
        method: &str,
        path: &str,
        edit: impl FnOnce(&mut Value),
    ) -> LambdaEvent<LambdaRequest> {
        let file = format!(
            "{}/../../tests/fixtures/aws/apigw-v2-webhook-post.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        v["routeKey"] = "POST /webhooks/{source}".into();
        v["rawPath"] = path.into();
        v["requestContext"]["http"]["method"] = method.into();
        v["requestContext"]["http"]["path"] = path.into();
        edit(&mut v);
        LambdaEvent::new(serde_json::from_value(v).unwrap(), Context::default())
    }

    /// What the function answers API Gateway (the `lambda_http::run` conversions).
    async fn invoke(event: LambdaEvent<LambdaRequest>) -> Value {
        let resp = Adapter::from(app()).oneshot(event).await.unwrap();
        serde_json::to_value(resp).unwrap()
    }

    fn body(resp: &Value) -> Value {
        assert_eq!(resp["isBase64Encoded"], false, "{resp}");
        serde_json::from_str(resp["body"].as_str().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn unknown_source_is_404() {
        let resp = invoke(event("POST", "/webhooks/drupal-main")).await;
        assert_eq!(resp["statusCode"], 404, "{resp}");
        assert!(
            resp["headers"]["content-type"]
                .as_str()
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(body(&resp), serde_json::json!({"error": "unknown source"}));
    }

    #[tokio::test]
    async fn oversized_body_is_413() {
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024));
        for declared in [true, false] {
            let e = event_with("POST", "/webhooks/drupal-main", |v| {
                v["body"] = big.clone().into();
                if declared {
                    v["headers"]["content-length"] = big.len().to_string().into();
                } else {
                    v["headers"]
                        .as_object_mut()
                        .unwrap()
                        .remove("content-length");
                }
            });
            let resp = invoke(e).await;
            assert_eq!(resp["statusCode"], 413, "declared {declared}: {resp}");
            assert!(
                body(&resp)["error"]
                    .as_str()
                    .unwrap()
                    .contains("larger than 1048576 bytes")
            );
        }
    }

    #[tokio::test]
    async fn base64_body_is_read() {
        // API Gateway base64-encodes bodies it does not see as text.
        use base64::Engine;
        let e = event_with("POST", "/webhooks/drupal-main", |v| {
            let raw = v["body"].as_str().unwrap().to_string();
            v["body"] = base64::engine::general_purpose::STANDARD.encode(raw).into();
            v["isBase64Encoded"] = true.into();
        });
        let resp = invoke(e).await;
        assert_eq!(resp["statusCode"], 404, "{resp}");
    }
}
