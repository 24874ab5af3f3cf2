//! A recording HTTP proxy in front of a peer: counts the requests a target really
//! receives (reconcile tests assert that a target in sync gets no write at all). AWS
//! JSON-protocol calls (all `POST /`) are told apart by their `X-Amz-Target` operation,
//! recorded too ([`RecordingProxy::operations`]).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Default)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    requests: Arc<Mutex<Vec<(String, String)>>>,
    /// `METHOD path?query` of every request.
    urls: Arc<Mutex<Vec<String>>>,
    operations: Arc<Mutex<Vec<String>>>,
    /// The next this many AWS JSON-protocol calls answer as AWS throttles them.
    throttled: Arc<Mutex<usize>>,
}

/// Forwards everything to `upstream` (scheme://host:port), recording method and path.
pub struct RecordingProxy {
    /// `http://127.0.0.1:PORT`: put the peer's path after it.
    pub origin: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    s.requests
        .lock()
        .unwrap()
        .push((method.to_string(), uri.path().to_string()));
    s.urls.lock().unwrap().push(format!("{method} {path}"));
    if let Some(op) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        s.operations.lock().unwrap().push(op.to_string());
        let mut throttled = s.throttled.lock().unwrap();
        if *throttled > 0 {
            *throttled -= 1;
            // As Cognito answers a call over its quota (AWS JSON 1.1: 400 and a code).
            return axum::http::Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amzn-errortype", "TooManyRequestsException")
                .body(axum::body::Body::from(
                    r#"{"__type":"TooManyRequestsException","message":"Rate exceeded"}"#,
                ))
                .unwrap();
        }
    }
    let m = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
    let mut req = s.client.request(m, format!("{}{}", s.upstream, path));
    for name in [
        "authorization",
        "content-type",
        "accept",
        "if-match",
        "x-amz-target",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
    ] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.as_bytes());
        }
    }
    match req.body(body.to_vec()).send().await {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
            let mut out = axum::http::Response::builder().status(status);
            for name in ["content-type", "etag", "location"] {
                if let Some(v) = r.headers().get(name) {
                    out = out.header(name, v.as_bytes());
                }
            }
            let bytes = r.bytes().await.unwrap_or_default();
            out.body(axum::body::Body::from(bytes)).unwrap()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

impl RecordingProxy {
    /// `upstream`: any URL of the peer; its scheme, host and port are kept.
    pub async fn start(upstream: &str) -> RecordingProxy {
        super::allow_loopback_peers();
        let u = reqwest::Url::parse(upstream).expect("upstream URL");
        let origin = u.origin().ascii_serialization();
        let shared = Shared {
            upstream: origin,
            client: reqwest::Client::new(),
            requests: Arc::default(),
            urls: Arc::default(),
            operations: Arc::default(),
            throttled: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        RecordingProxy {
            origin: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// The next `n` AWS JSON-protocol calls are not forwarded: each answers 400
    /// `TooManyRequestsException`, as Cognito does past its quota.
    pub fn throttle(&self, n: usize) {
        *self.shared.throttled.lock().unwrap() = n;
    }

    /// Every request so far: (method, path).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every request so far, with its query: `METHOD path?query`.
    pub fn urls(&self) -> Vec<String> {
        self.shared.urls.lock().unwrap().clone()
    }

    /// Requests that change something (anything but GET/HEAD).
    pub fn writes(&self) -> Vec<(String, String)> {
        self.requests()
            .into_iter()
            .filter(|(m, _)| m != "GET" && m != "HEAD")
            .collect()
    }

    /// The `X-Amz-Target` of every AWS call so far (`Service.Operation`).
    pub fn operations(&self) -> Vec<String> {
        self.shared.operations.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.shared.requests.lock().unwrap().clear();
        self.shared.urls.lock().unwrap().clear();
        self.shared.operations.lock().unwrap().clear();
    }
}
