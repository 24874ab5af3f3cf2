//! Lambda entry point for the SCIM API (API Gateway HTTP API -> `/scim/v2/*`).
//! Only wiring: the state is built once per cold start, the router is the library's.

use lambda_http::{Error, run};

#[tokio::main]
async fn main() -> Result<(), Error> {
    provisync::lambda::init_tracing();
    let state = provisync::lambda::http_state_from_env().await?;
    run(provisync::http::app(state)).await
}
