//! Reading request bodies under a limit: the one place the three surfaces do it, each
//! answering [`TooLarge`] in its own error format.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header;

/// The body is larger than the surface accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge {
    pub limit: usize,
}

/// The body of `req`, at most `limit` bytes. A `Content-Length` above the limit is refused
/// before anything is read; a body without one (chunked) is read only up to the limit.
pub async fn read_limited(req: Request, limit: usize) -> Result<Bytes, TooLarge> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(TooLarge { limit });
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| TooLarge { limit })
}
