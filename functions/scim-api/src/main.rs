//! Lambda entry point for the SCIM API (API Gateway HTTP API -> `/scim/v2/*`, `/healthz`).
//! Only wiring: the state is built once per cold start (with change events: every SCIM
//! write sends its event to the delivery queue), the router is the library's.
//! Needs `PROVISYNC_SECRET_KEY` (passwords in change events are sealed with it).

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

    /// The AWS sample HTTP API (payload 2.0) event, with another method and path.
    fn event(method: &str, path: &str) -> LambdaEvent<LambdaRequest> {
        event_with(method, path, |_| {})
    }

    fn event_with(
        method: &str,
        path: &str,
        edit: impl FnOnce(&mut Value),
    ) -> LambdaEvent<LambdaRequest> {
        let file = format!(
            "{}/../../tests/fixtures/aws/apigw-v2-request-no-authorizer.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        v["routeKey"] = "ANY /scim/v2/{proxy+}".into();
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
    async fn service_provider_config_through_api_gateway() {
        let resp = invoke(event("GET", "/scim/v2/ServiceProviderConfig")).await;
        assert_eq!(resp["statusCode"], 200, "{resp}");
        assert!(
            resp["headers"]["content-type"]
                .as_str()
                .unwrap()
                .starts_with("application/scim+json")
        );
        let b = body(&resp);
        assert_eq!(
            b["schemas"][0],
            "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
        );
    }

    #[tokio::test]
    async fn users_without_a_token_is_401() {
        let resp = invoke(event("GET", "/scim/v2/Users")).await;
        assert_eq!(resp["statusCode"], 401, "{resp}");
        let b = body(&resp);
        assert_eq!(
            b["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        assert_eq!(b["status"], "401");
    }
}
