//! The peer of the cold-start measurement (`make cold-start`): a `lambda_http` function
//! that does nothing but answer, built with the same dependencies, features and profile
//! as `scim-api`.

use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::from("ok")))
    }))
    .await
}
