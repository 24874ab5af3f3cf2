//! Lambda entry point for signed webhooks from source sites (API Gateway HTTP API ->
//! `POST /webhooks/{source_id}`). Only wiring: the state is built once per cold start
//! (with change events, as for SCIM writes), the router is the library's
//! (`provisync_http::webhooks`). The operator key comes from Secrets Manager
//! (`PROVISYNC_SECRET_KEY_ARN`).

use lambda_http::{Error, run};

#[tokio::main]
async fn main() -> Result<(), Error> {
    provisync_aws::lambda::init_tracing();
    // Delivers nothing and calls nothing out: no connector and no HTTP client is linked.
    let (_, hub) = provisync_aws::lambda::hub_from_env(
        provisync_core::connector::no_connectors,
        provisync_core::connector::http::no_http,
    )
    .await?;
    run(provisync_http::webhook_app(
        provisync_http::AppState::from_env(hub)?,
    ))
    .await
}

#[cfg(test)]
mod tests {
    use lambda_http::LambdaEvent;
    use lambda_http::request::LambdaRequest;
    use provisync_tests::apigw::body;

    /// The event through this function's own router, as `lambda_http::run` hands it over.
    async fn invoke(event: LambdaEvent<LambdaRequest>) -> Value {
        provisync_tests::apigw::invoke_app(
            provisync_http::webhook_app(provisync_tests::apigw::state()),
            event,
        )
        .await
    }
    use serde_json::Value;

    fn event(method: &str, path: &str) -> LambdaEvent<LambdaRequest> {
        event_with(method, path, |_| {})
    }

    fn event_with(
        method: &str,
        path: &str,
        edit: impl FnOnce(&mut Value),
    ) -> LambdaEvent<LambdaRequest> {
        provisync_tests::apigw::event(
            "apigw-v2-webhook-post.json",
            "POST /webhooks/{source}",
            method,
            path,
            edit,
        )
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

    #[tokio::test]
    async fn signed_base64_body_is_verified_and_applied() {
        // API Gateway may base64-encode the body: the signature is over the decoded bytes.
        use base64::Engine;
        use provisync_core::store::Store;
        use provisync_tests::site::signed_headers;
        use std::sync::Arc;
        const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let store: Arc<dyn Store> =
            Arc::new(provisync_core::store::embedded::EmbeddedStore::in_memory());
        let (secrets, encoded) = provisync_core::crypto::SecretBox::generate();
        let sources = provisync_core::source::Sources::new(store.clone(), Arc::new(secrets));
        let source = serde_json::from_value(serde_json::json!(
            {"id": "drupal-main", "secrets": [SECRET], "user_sync": true}
        ))
        .unwrap();
        sources.put(&source).await.unwrap();
        let app = || {
            provisync_http::webhook_app(provisync_tests::apigw::state_on(
                store.clone(),
                provisync_core::crypto::SecretBox::from_encoded(&encoded).unwrap(),
            ))
        };
        let envelope = serde_json::json!({"type": "user.upsert", "occurred_at": chrono::Utc::now().to_rfc3339(),
            "data": {"externalId": "42", "userName": "ada@example.org"}})
        .to_string();
        let signed = |id: &str, sig_ok: bool| {
            let headers = signed_headers(SECRET, id, envelope.as_bytes());
            let body = base64::engine::general_purpose::STANDARD.encode(&envelope);
            event_with("POST", "/webhooks/drupal-main", move |v| {
                v["body"] = body.into();
                v["isBase64Encoded"] = true.into();
                for (k, mut val) in headers {
                    if !sig_ok && k == "webhook-signature" {
                        val = val.replacen("v1,", "v1,AAAA", 1);
                    }
                    v["headers"][k] = val.into();
                }
            })
        };
        let resp = provisync_tests::apigw::invoke_app(app(), signed("msg_1", true)).await;
        assert_eq!(resp["statusCode"], 202, "{resp}");
        assert_eq!(body(&resp)["status"], "applied");
        let resp = provisync_tests::apigw::invoke_app(app(), signed("msg_2", false)).await;
        assert_eq!(resp["statusCode"], 401, "{resp}");
        let resp = provisync_tests::apigw::invoke_app(app(), signed("msg_1", true)).await;
        assert_eq!(body(&resp)["status"], "replay", "{resp}");
    }
}
