//! Lambda entry point for the admin API (API Gateway HTTP API -> `/admin/*`).
//! Only wiring: the state is built once per cold start, the router is the library's.
//! Needs `PROVISYNC_SECRET_KEY` (targets' credentials are sealed with it).

use lambda_http::{Error, run};

#[tokio::main]
async fn main() -> Result<(), Error> {
    provisync_aws::lambda::init_tracing();
    // Tests a target's connection and reconciles on demand: every connector is linked.
    let (_, hub) =
        provisync_aws::lambda::hub_from_env(provisync_connectors::connectors_for).await?;
    run(provisync_http::admin_app(
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
            provisync_http::admin_app(provisync_tests::apigw::state()),
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
            "apigw-v2-request-no-authorizer.json",
            "ANY /admin/{proxy+}",
            method,
            path,
            edit,
        )
    }

    #[tokio::test]
    async fn admin_without_a_token_is_401() {
        for (method, path) in [("GET", "/admin/targets"), ("GET", "/admin/deadletters")] {
            let resp = invoke(event(method, path)).await;
            assert_eq!(resp["statusCode"], 401, "{resp}");
            assert!(
                resp["headers"]["content-type"]
                    .as_str()
                    .unwrap()
                    .starts_with("application/json")
            );
            assert_eq!(
                body(&resp),
                serde_json::json!({"error": "missing or invalid admin bearer token"})
            );
        }
    }

    #[tokio::test]
    async fn wrong_token_is_401() {
        let e = event_with("GET", "/admin/targets", |v| {
            v["headers"]["authorization"] = "Bearer not-a-token".into();
        });
        let resp = invoke(e).await;
        assert_eq!(resp["statusCode"], 401, "{resp}");
    }
}
