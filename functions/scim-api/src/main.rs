//! Lambda entry point for the SCIM API (API Gateway HTTP API -> `/scim/v2/*`, `/healthz`).
//! Only wiring: the state is built once per cold start (with change events: every SCIM
//! write sends its event to the delivery queue), the router is the library's.
//! The operator key (passwords in change events are sealed with it) comes from Secrets
//! Manager (`PROVISYNC_SECRET_KEY_ARN`).

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
    run(provisync_http::scim_app(
        provisync_http::AppState::from_env(hub)?.with_platform_origin(api_gateway_domain),
    ))
    .await
}

/// The domain API Gateway received the request on (its request context): what
/// `meta.location` is built on, never a header the client sent.
fn api_gateway_domain(extensions: &lambda_http::http::Extensions) -> Option<String> {
    use lambda_http::request::RequestContext;
    match extensions.get::<RequestContext>()? {
        // The template's HTTP API (payload 2.0) is the only event source of this function.
        RequestContext::ApiGatewayV2(c) => c.domain_name.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use lambda_http::LambdaEvent;
    use lambda_http::request::LambdaRequest;
    use provisync_tests::apigw::body;

    /// The event through this function's own router, as `lambda_http::run` hands it over.
    async fn invoke(event: LambdaEvent<LambdaRequest>) -> Value {
        provisync_tests::apigw::invoke_app(
            provisync_http::scim_app(provisync_tests::apigw::state()),
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
            "ANY /scim/v2/{proxy+}",
            method,
            path,
            edit,
        )
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

    /// `meta.location` is built on the domain API Gateway received the request on, not on
    /// a forwarded host a client may send.
    #[tokio::test]
    async fn locations_use_the_api_gateway_domain() {
        let app = provisync_http::scim_app(
            provisync_tests::apigw::state().with_platform_origin(super::api_gateway_domain),
        );
        let event = event_with("GET", "/scim/v2/ServiceProviderConfig", |v| {
            v["headers"]["x-forwarded-host"] = "evil.example".into();
            v["headers"]["host"] = "evil.example".into();
        });
        let resp = provisync_tests::apigw::invoke_app(app, event).await;
        assert_eq!(resp["statusCode"], 200, "{resp}");
        assert_eq!(
            body(&resp)["meta"]["location"],
            "https://aaaaaaaaaa.execute-api.us-west-2.amazonaws.com/scim/v2/ServiceProviderConfig"
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
