//! Lambda entry point for the SCIM API (API Gateway HTTP API -> `/scim/v2/*`).
//! Only wiring: the state is built once per cold start, the router is the library's.

use lambda_http::{Error, run, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let state = provisync::lambda::state_from_env().await?;
    run(provisync::http::app(state)).await
}
