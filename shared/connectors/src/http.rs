//! The outbound HTTP client every connector uses, and the one behind the core's
//! [`HttpPort`] (the pull of sources, a source's connection test): `reqwest` clients
//! (rustls) that keep the core's policy ([`provisync_core::connector::http`]): bounded
//! timeouts, no redirects to another origin, only the addresses the URL policy allows
//! (checked on every request and on every address a name resolves to, see [`resolve`]),
//! bounded response bodies, and transport failures mapped to [`ConnectorError`].
//!
//! The policy, the credentials and the mapping of responses are the core's, re-exported
//! here so a connector imports its HTTP needs from one place.

pub mod resolve;

use std::fmt;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header;
use reqwest::{Method, RequestBuilder, Url};

use provisync_core::connector::ConnectorError;
pub use provisync_core::connector::http::*;
use provisync_core::net::UrlError;
use resolve::GuardedResolver;

/// The shared outbound client. Cheap to clone (the connection pools are shared).
///
/// Two `reqwest` clients: one for https, one for plain http whose resolver accepts only
/// the loopback and private addresses the policy allows (plain http never goes to a
/// public address). [`HttpClient::request`] picks by the URL's scheme; a same-origin
/// redirect keeps it.
#[derive(Clone)]
pub struct HttpClient {
    tls: reqwest::Client,
    plain: reqwest::Client,
    policy: HttpPolicy,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client with its own pool and this policy.
    pub fn new(policy: HttpPolicy) -> Result<HttpClient, SetupError> {
        Self::build(policy, None)
    }

    /// A client that resolves names with `inner` before the policy filters the answers
    /// (tests: a name that resolves to loopback).
    pub fn with_resolver(
        policy: HttpPolicy,
        inner: Arc<dyn reqwest::dns::Resolve>,
    ) -> Result<HttpClient, SetupError> {
        Self::build(policy, Some(inner))
    }

    fn build(
        policy: HttpPolicy,
        inner: Option<Arc<dyn reqwest::dns::Resolve>>,
    ) -> Result<HttpClient, SetupError> {
        let client = |plain: bool| {
            let max = policy.max_redirects;
            let urls = policy.url_policy();
            let redirect = reqwest::redirect::Policy::custom(move |attempt| {
                // Follow only within the origin the request was sent to: a redirect must
                // not carry the request (and its credentials) to another host, nor
                // downgrade it; and never to an address the policy refuses.
                let same_origin = attempt
                    .previous()
                    .first()
                    .is_some_and(|first| first.origin() == attempt.url().origin());
                let allowed = urls.get().check_request_url(attempt.url()).is_ok();
                if same_origin && allowed && attempt.previous().len() <= max {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            });
            reqwest::Client::builder()
                .connect_timeout(policy.connect_timeout)
                .timeout(policy.request_timeout)
                .redirect(redirect)
                .dns_resolver(Arc::new(GuardedResolver {
                    policy: urls,
                    plain,
                    inner: inner.clone(),
                }))
                .user_agent(concat!("provisync/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| SetupError::Client(e.without_url().to_string()))
        };
        Ok(HttpClient {
            tls: client(false)?,
            plain: client(true)?,
            policy,
        })
    }

    /// The process-wide client with the default policy, built on first use.
    pub fn shared() -> Result<HttpClient, SetupError> {
        static SHARED: OnceLock<Result<HttpClient, SetupError>> = OnceLock::new();
        SHARED
            .get_or_init(|| HttpClient::new(HttpPolicy::default()))
            .clone()
    }

    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let client = if url.scheme() == "http" {
            &self.plain
        } else {
            &self.tls
        };
        client.request(method, url)
    }

    /// Sends a request and reads the response (bounded). Transport failures and timeouts
    /// are [`ConnectorError::Retryable`]; an address the URL policy refuses is
    /// [`ConnectorError::Refused`] (nothing is sent); any status is returned as is.
    pub async fn send(&self, req: RequestBuilder) -> Result<HttpResponse, ConnectorError> {
        let (client, req) = req.build_split();
        let req = req.map_err(transport_error)?;
        // Names are checked by the resolver; IP literals never reach it.
        self.policy
            .url_policy()
            .get()
            .check_request_url(req.url())
            .map_err(|e| refused_address(&e))?;
        // In a paced call, a request after the call's first waits for its turn at the
        // target's pace (a no-op outside one, and for the first).
        provisync_core::connector::quota::before_request().await;
        let mut resp = client.execute(req).await.map_err(transport_error)?;
        let status = resp.status();
        let headers = std::mem::take(resp.headers_mut());
        // The quota it advertises, for the pace of the call this answers (a no-op outside
        // a paced call).
        provisync_core::connector::quota::note(&headers);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ConnectorError::Refused {
                    status: Some(status.as_u16()),
                    reason: format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body: Bytes::from(body),
        })
    }
}

#[async_trait]
impl HttpPort for HttpClient {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, ConnectorError> {
        let HttpRequest {
            method,
            url,
            headers,
            body,
        } = req;
        let mut builder = self.request(method, url).headers(headers);
        if let Some(body) = body {
            builder = builder.body(body);
        }
        HttpClient::send(self, builder).await
    }
}

/// The core's [`HttpFactory`] for processes that call out: the process-wide client
/// ([`HttpClient::shared`]).
pub fn http_port() -> Result<Arc<dyn HttpPort>, SetupError> {
    HttpClient::shared().map(|c| Arc::new(c) as Arc<dyn HttpPort>)
}

/// The credentials' `Authorization` header on a `reqwest` request.
pub trait ApplyCredentials {
    fn apply(&self, req: RequestBuilder) -> RequestBuilder;
}

impl ApplyCredentials for Credentials {
    fn apply(&self, req: RequestBuilder) -> RequestBuilder {
        req.header(header::AUTHORIZATION, self.header_value().clone())
    }
}

/// A transport failure (connect, TLS, timeout, reset): always retryable. The detail names
/// the kind of failure, never the URL (it may carry a filter with personal data).
pub fn transport_error(e: reqwest::Error) -> ConnectorError {
    // The resolver refused every address of the name: a policy decision, not an outage.
    let mut src: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = src {
        if let Some(refused) = s.downcast_ref::<UrlError>() {
            return refused_address(refused);
        }
        src = s.source();
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "connection lost while reading the response"
    } else if e.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    let mut root = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(s) = src {
        root = s.to_string();
        src = s.source();
    }
    let detail = if root.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", truncate(&root, 200))
    };
    ConnectorError::Retryable {
        status: None,
        retry_after: None,
        detail,
    }
}
