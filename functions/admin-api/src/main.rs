//! Lambda entry point for the admin API (API Gateway HTTP API -> `/admin/*`).
//! Only wiring: the state is built once per cold start, the router is the library's.
//! Needs `PROVISYNC_SECRET_KEY` (targets' credentials are sealed with it).

use lambda_http::{Error, run};

#[tokio::main]
async fn main() -> Result<(), Error> {
    provisync::lambda::init_tracing();
    let state = provisync::lambda::admin_state_from_env().await?;
    run(provisync::http::app(state)).await
}
