//! Lambda entry point for the admin API (API Gateway HTTP API -> `/admin/*`).
//! Only wiring: the state is built once per cold start, the router is the library's.
//! The operator key comes from Secrets Manager (`PROVISYNC_SECRET_KEY_ARN`).

use lambda_http::{Error, run};

/// The invocation's deadline, from the context `lambda_http` puts in each request: a
/// scheduled cycle or reconcile asked for through the API fits inside it.
fn invocation_deadline(extensions: &lambda_http::http::Extensions) -> Option<tokio::time::Instant> {
    extensions
        .get::<lambda_http::Context>()
        .and_then(|c| provisync_aws::lambda::invocation_deadline(c.deadline))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    provisync_aws::lambda::init_tracing();
    // Tests a target's connection and reconciles on demand: every connector is linked.
    let (_, hub) = provisync_aws::lambda::hub_from_env(
        provisync_connectors::connectors_for,
        provisync_connectors::http::http_port,
    )
    .await?;
    run(provisync_http::answer_by(
        provisync_http::admin_app(provisync_http::AppState::from_env(hub)?),
        invocation_deadline,
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

    /// The console through API Gateway: the page with its policy, a sign-in whose cookie
    /// comes back `Secure` (API Gateway says https) in the v2 `cookies` field, and the
    /// admin API read with that cookie, as the browser sends it (`cookies` in the event).
    #[tokio::test]
    async fn the_console_through_api_gateway() {
        use provisync_core::store::Store;
        let store: std::sync::Arc<dyn Store> =
            std::sync::Arc::new(provisync_core::store::embedded::EmbeddedStore::in_memory());
        let state = provisync_tests::apigw::state_on(
            store.clone(),
            provisync_core::crypto::SecretBox::generate().0,
        );
        let token = provisync_http::auth::create_token(
            store.as_ref(),
            provisync_http::auth::Scope::Admin,
            "ops",
        )
        .await
        .unwrap();
        let app = || provisync_http::admin_app(state.clone());
        let console = |method: &str, path: &str, edit: &dyn Fn(&mut Value)| {
            provisync_tests::apigw::event(
                "apigw-v2-request-no-authorizer.json",
                "ANY /console/{proxy+}",
                method,
                path,
                |v| edit(v),
            )
        };
        let page =
            provisync_tests::apigw::invoke_app(app(), console("GET", "/console/", &|_| {})).await;
        assert_eq!(page["statusCode"], 200, "{page}");
        assert!(
            page["headers"]["content-security-policy"]
                .as_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let sign_in = serde_json::json!({"token": token}).to_string();
        let signed = provisync_tests::apigw::invoke_app(
            app(),
            console("POST", "/console/session", &|v| {
                v["body"] = sign_in.clone().into();
                v["headers"]["content-type"] = "application/json".into();
            }),
        )
        .await;
        assert_eq!(signed["statusCode"], 200, "{signed}");
        assert_eq!(body(&signed)["name"], "admin:ops");
        let set = signed["cookies"][0].as_str().expect("a cookie").to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        let read = invoke(event_with("GET", "/admin/targets", |v| {
            v["cookies"] = serde_json::json!([cookie]);
        }))
        .await;
        // Sessions live in the store (DynamoDB in AWS, shared by every instance of the
        // function): a hub on another store knows no such session.
        assert_eq!(read["statusCode"], 401, "{read}");
        let read = provisync_tests::apigw::invoke_app(
            provisync_http::admin_app(state.clone()),
            event_with("GET", "/admin/targets", |v| {
                v["cookies"] = serde_json::json!([cookie]);
            }),
        )
        .await;
        assert_eq!(read["statusCode"], 200, "{read}");
    }

    #[tokio::test]
    async fn wrong_token_is_401() {
        let e = event_with("GET", "/admin/targets", |v| {
            v["headers"]["authorization"] = "Bearer not-a-token".into();
        });
        let resp = invoke(e).await;
        assert_eq!(resp["statusCode"], 401, "{resp}");
    }

    /// A target that accepts connections and never answers.
    async fn hanging_scim_target(id: &str) -> provisync_core::target::TargetConfig {
        let peer = provisync_tests::peers::hanging_peer().await;
        serde_json::from_value(serde_json::json!({
            "id": id,
            "kind": "scim",
            "base_url": format!("{peer}/scim/v2"),
            "auth": {"bearer": "t0ken"},
            "mode": "scheduled",
        }))
        .unwrap()
    }

    /// `POST /admin/schedule/run?budget=240` in a function whose invocation ends in 14 s,
    /// with a scheduled target that hangs: the cycle is cut to the invocation, answers
    /// before its deadline, and leaves the target's reconcile lease released.
    #[tokio::test]
    async fn a_scheduled_cycle_asked_for_fits_the_invocation() {
        use provisync_core::store::Store;
        let store: std::sync::Arc<dyn Store> =
            std::sync::Arc::new(provisync_core::store::embedded::EmbeddedStore::in_memory());
        let token = provisync_http::auth::create_token(
            store.as_ref(),
            provisync_http::auth::Scope::Admin,
            "ops",
        )
        .await
        .unwrap();
        let state = provisync_tests::apigw::state_on(
            store.clone(),
            provisync_core::crypto::SecretBox::generate().0,
        );
        state
            .hub
            .targets
            .put(&hanging_scim_target("hangs").await)
            .await
            .unwrap();
        let app = provisync_http::answer_by(
            provisync_http::admin_app(state.clone()),
            super::invocation_deadline,
        );
        let mut e = event_with("POST", "/admin/schedule/run", |v| {
            v["rawQueryString"] = "budget=240".into();
            v["queryStringParameters"] = serde_json::json!({"budget": "240"});
            v["headers"]["authorization"] = format!("Bearer {token}").into();
        });
        let left = std::time::Duration::from_secs(14);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        e.context.deadline = (now + left).as_millis() as u64;
        let started = std::time::Instant::now();
        let resp = provisync_tests::apigw::invoke_app(app, e).await;
        let took = started.elapsed();
        assert!(took < left, "answered after the invocation's end: {took:?}");
        assert_eq!(resp["statusCode"], 200, "{resp}");
        let report = body(&resp);
        assert_eq!(report["reconciled"][0]["target"], "hangs", "{report}");
        assert_eq!(report["reconciled"][0]["state"], "failed", "{report}");
        // The lease is free: the next cycle may reconcile the target at once.
        let target = state.hub.targets.get("hangs").await.unwrap().unwrap();
        let lease = provisync_core::sync::reconcile::Lease::acquire(
            store.as_ref(),
            &target.id,
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert!(lease.is_some(), "the reconcile lease was left held");
    }
}
