//! Reading request bodies under a limit: the one place the three surfaces do it, each
//! answering [`TooLarge`] in its own error format; and what `provisync serve` does with a
//! body a handler answered without reading ([`drain_unread`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;

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

/// Most of a request body a handler left unread that is read and thrown away before the
/// answer goes out, so that the client's keep-alive connection stays usable (1 MiB, the
/// default body limit: no more than a request that is served reads).
pub const DRAIN_MAX_BYTES: u64 = 1024 * 1024;
/// Longest wait for that rest of the body; past it, or past [`DRAIN_MAX_BYTES`], the
/// answer says `Connection: close`.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

/// Middleware of `provisync serve` (a real HTTP/1.1 server; the Lambda functions get
/// whole bodies from API Gateway and have no connection to keep): an answer given without
/// reading the whole request body (a 404, 405, 401 or 413 decided before the body) would
/// leave the rest of the body on the connection, and the server would close it after the
/// answer while a keep-alive client may already be sending its next request there. So
/// the rest is read and discarded first, at most [`DRAIN_MAX_BYTES`] within
/// [`DRAIN_MAX_TIME`] and never kept in memory; a larger or slower rest, or one the client
/// holds back for `Expect: 100-continue`, gets `Connection: close` on the answer instead
/// (the client then knows not to reuse the connection).
pub async fn drain_unread(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let expects_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let slot = Arc::new(Mutex::new(Some(body)));
    let response = next
        .run(Request::from_parts(parts, Body::new(Lent(slot.clone()))))
        .await;
    // Whatever the handler left (it has answered: the body is not its any more).
    let Some(rest) = lock(&slot).take() else {
        return response;
    };
    if rest.is_end_stream() {
        return response;
    }
    if !expects_continue
        && rest.size_hint().lower() <= DRAIN_MAX_BYTES
        && tokio::time::timeout(DRAIN_MAX_TIME, discard(rest, DRAIN_MAX_BYTES))
            .await
            .unwrap_or(false)
    {
        return response;
    }
    close(response)
}

/// `response` with `Connection: close` (hyper closes the connection after it).
fn close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads `body` to its end, keeping nothing. `false`: more than `max` bytes, or it failed.
async fn discard(mut body: Body, max: u64) -> bool {
    let mut seen: u64 = 0;
    loop {
        match body.frame().await {
            None => return true,
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    seen = seen.saturating_add(data.len() as u64);
                    if seen > max {
                        return false;
                    }
                }
            }
            Some(Err(_)) => return false,
        }
    }
}

fn lock(slot: &Mutex<Option<Body>>) -> std::sync::MutexGuard<'_, Option<Body>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The request body as the handler sees it: the real one, lent, so that the middleware
/// takes back what the handler did not read.
struct Lent(Arc<Mutex<Option<Body>>>);

impl http_body::Body for Lent {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match lock(&self.0).as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.0).as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.0)
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A server with `drain_unread`: `/unread` answers 404 without reading the body,
    /// `/read` reads it (under 1 KiB), `/` answers `ok`.
    async fn server() -> std::net::SocketAddr {
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .route(
                "/unread",
                post(|| async { StatusCode::NOT_FOUND.into_response() }),
            )
            .route(
                "/read",
                post(|req: Request| async move {
                    match read_limited(req, 1024).await {
                        Ok(b) => b.len().to_string().into_response(),
                        Err(_) => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
                    }
                }),
            )
            .layer(axum::middleware::from_fn(drain_unread));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// One response off the connection: status line and headers (lower case), body.
    async fn response(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        conn.read_exact(&mut body).await.ok()?;
        Some((head, body))
    }

    fn post_head(path: &str, len: usize, extra: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n{extra}\r\n"
        )
    }

    const GET_ROOT: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    #[tokio::test]
    async fn an_unread_body_is_drained_and_the_connection_serves_the_next_request() {
        let addr = server().await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        // The head alone first: the handler answers before any of the body is there.
        let body = vec![b'x'; 200_000];
        conn.write_all(post_head("/unread", body.len(), "").as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.write_all(&body).await.unwrap();
        conn.write_all(GET_ROOT).await.unwrap();
        let (head, _) = response(&mut conn).await.expect("first answer");
        assert!(head.starts_with("http/1.1 404"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        let (head, body) = response(&mut conn)
            .await
            .expect("second answer, same connection");
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, b"ok");
    }

    #[tokio::test]
    async fn a_partly_read_chunked_body_is_drained_too() {
        let addr = server().await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        // 3 chunks of 1000 bytes to a handler that reads at most 1024: 413, then the
        // rest is drained.
        let mut req = "POST /read HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            .as_bytes()
            .to_vec();
        for _ in 0..3 {
            req.extend_from_slice(b"3e8\r\n");
            req.extend_from_slice(&[b'y'; 1000]);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        req.extend_from_slice(GET_ROOT);
        conn.write_all(&req).await.unwrap();
        let (head, _) = response(&mut conn).await.expect("first answer");
        assert!(head.starts_with("http/1.1 413"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        let (head, _) = response(&mut conn)
            .await
            .expect("second answer, same connection");
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }

    #[tokio::test]
    async fn a_body_past_the_drain_limit_or_held_back_closes_the_connection() {
        let addr = server().await;
        // Declared larger than what is drained: answered at once, with Connection: close.
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let len = usize::try_from(DRAIN_MAX_BYTES).unwrap() + 1;
        conn.write_all(post_head("/unread", len, "").as_bytes())
            .await
            .unwrap();
        let (head, _) = response(&mut conn).await.expect("answer");
        assert!(head.starts_with("http/1.1 404"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        // Expect: 100-continue, body never sent: answered at once, with Connection: close.
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(post_head("/unread", 10, "expect: 100-continue\r\n").as_bytes())
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let (head, _) = response(&mut conn).await.expect("answer");
        assert!(head.starts_with("http/1.1 404"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(
            started.elapsed() < DRAIN_MAX_TIME,
            "{:?}",
            started.elapsed()
        );
        // A body that does not come: Connection: close after DRAIN_MAX_TIME, not a hang.
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(post_head("/unread", 10, "").as_bytes())
            .await
            .unwrap();
        let (head, _) = response(&mut conn).await.expect("answer");
        assert!(head.starts_with("http/1.1 404"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
    }
}
