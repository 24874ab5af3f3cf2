//! The outbound HTTP policy and port: bounded timeouts, no redirects to another origin,
//! only the addresses the URL policy allows ([`crate::net`]: checked on every request and
//! on every address a name resolves to), bounded response bodies, credentials that never
//! reach a log, and one mapping of responses to [`ConnectorError`].
//!
//! The core makes no call itself: what needs the network (the pull of sources, a source's
//! connection test) sends an [`HttpRequest`] through an [`HttpPort`], built by the
//! process's [`HttpFactory`] (the composition root, [`crate::hub::HubParts::http`]). The
//! client that keeps this policy (reqwest, rustls) is `provisync_connectors::http`, so
//! the functions that call nothing out (`scim-api`, `webhook-ingest`) do not link it.
//!
//! The mapping follows RFC 7644 §3.12 (SCIM error responses: `status`, `scimType`,
//! `detail`) and RFC 9110 (§15 status codes, §10.2.3 `Retry-After`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use super::ConnectorError;
pub use crate::net::check_target_url;
use crate::net::{UrlError, UrlPolicy, process_policy};
use crate::target::HttpAuth;

/// Default time to establish a connection (TCP + TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time for a whole request, response body included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Same-origin redirects followed at most (other origins: never).
pub const DEFAULT_MAX_REDIRECTS: usize = 3;
/// Largest response body read from a target; more is a failure, not a memory spike.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Longest target-supplied reason kept in an error (and so in the audit log).
pub const MAX_REASON_CHARS: usize = 300;
/// Longest `Retry-After` honoured; a target asking for more gets retried after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Longest accepted target URL.
pub use crate::net::MAX_URL_LEN;

/// Timeouts, redirect limit and URL policy of an outbound client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpPolicy {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_redirects: usize,
    /// Which addresses may be called; `None`: the process policy at each call
    /// ([`crate::net::process_policy`], from `PROVISYNC_ALLOW_PRIVATE_TARGETS`).
    pub urls: Option<UrlPolicy>,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            urls: None,
        }
    }
}

impl HttpPolicy {
    /// Where the client takes its URL policy from.
    pub fn url_policy(&self) -> PolicySource {
        match self.urls {
            Some(p) => PolicySource::Fixed(p),
            None => PolicySource::Process,
        }
    }
}

/// Where a client's URL policy comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// The process policy at the time of each call ([`crate::net::process_policy`]).
    Process,
    Fixed(UrlPolicy),
}

impl PolicySource {
    pub fn get(self) -> UrlPolicy {
        match self {
            PolicySource::Process => process_policy(),
            PolicySource::Fixed(p) => p,
        }
    }
}

/// Why a connector could not be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("invalid target URL: {0}")]
    Url(String),
    #[error("invalid credentials: {0}")]
    Credentials(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("HTTP client: {0}")]
    Client(String),
}

impl From<SetupError> for ConnectorError {
    fn from(e: SetupError) -> Self {
        ConnectorError::Gone(e.to_string())
    }
}

/// `base` with `segments` appended as path segments and `query` as pairs, both
/// percent-encoded (ids and names come from remote systems). `None` when `base` cannot
/// take a path (`mailto:`, `data:`): the caller names the setting.
pub fn join_url(base: &Url, segments: &[&str], query: &[(&str, &str)]) -> Option<Url> {
    let mut url = base.clone();
    {
        let mut path = url.path_segments_mut().ok()?;
        path.pop_if_empty();
        path.extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Some(url)
}

/// The `Authorization` header of a target, ready to send. Its `Debug` never shows the
/// secret, and the secret parts are kept only to scrub them from anything a target
/// echoes back.
#[derive(Clone)]
pub struct Credentials {
    header: HeaderValue,
    secrets: Vec<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(***)")
    }
}

impl Credentials {
    pub fn from_auth(auth: &HttpAuth) -> Result<Credentials, SetupError> {
        use base64::Engine as _;
        let (value, secrets) = match auth {
            HttpAuth::Bearer(token) => {
                let token = token.trim();
                if token.is_empty() {
                    return Err(SetupError::Credentials("empty bearer token".into()));
                }
                (format!("Bearer {token}"), vec![token.to_string()])
            }
            HttpAuth::Basic { username, password } => {
                if username.contains(':') {
                    // RFC 7617 §2: the user-id cannot contain a colon.
                    return Err(SetupError::Credentials(
                        "a Basic user name cannot contain ':'".into(),
                    ));
                }
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                let mut secrets = vec![encoded.clone()];
                if !password.is_empty() {
                    secrets.push(password.clone());
                }
                (format!("Basic {encoded}"), secrets)
            }
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| {
            SetupError::Credentials("characters not allowed in an HTTP header".into())
        })?;
        header.set_sensitive(true);
        Ok(Credentials { header, secrets })
    }

    /// `Authorization: {scheme} {token}` for schemes other than Bearer and Basic (Okta's
    /// `SSWS`).
    pub fn token(scheme: &str, token: &str) -> Result<Credentials, SetupError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(SetupError::Credentials(format!("empty {scheme} token")));
        }
        let mut header = HeaderValue::from_str(&format!("{scheme} {token}")).map_err(|_| {
            SetupError::Credentials("characters not allowed in an HTTP header".into())
        })?;
        header.set_sensitive(true);
        Ok(Credentials {
            header,
            secrets: vec![token.to_string()],
        })
    }

    /// The `Authorization` header value (marked sensitive: never shown by `Debug`).
    pub fn header_value(&self) -> &HeaderValue {
        &self.header
    }

    /// `text` with every secret of these credentials replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = scrub_secret(&out, s);
        }
        out
    }
}

/// `text` with `secret` replaced by `***`, as it is and as JSON escapes it (a target that
/// echoes the request body quotes it). Secrets shorter than 4 characters are left: they
/// would blank out ordinary words, and are not echoed in a recognisable way anyway.
pub fn scrub_secret(text: &str, secret: &str) -> String {
    if secret.chars().count() < 4 {
        return text.to_string();
    }
    let mut out = text.replace(secret, "***");
    if let Ok(quoted) = serde_json::to_string(secret) {
        let escaped = &quoted[1..quoted.len() - 1];
        if escaped != secret {
            out = out.replace(escaped, "***");
        }
    }
    out
}

/// An outbound request, as an [`HttpPort`] sends it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

impl HttpRequest {
    pub fn new(method: Method, url: Url) -> HttpRequest {
        HttpRequest {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// A `GET` of `url`.
    pub fn get(url: Url) -> HttpRequest {
        HttpRequest::new(Method::GET, url)
    }

    /// With this header (replacing one of the same name).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> HttpRequest {
        self.headers.insert(name, value);
        self
    }

    /// With the `Authorization` header of `creds`.
    pub fn authorized(self, creds: &Credentials) -> HttpRequest {
        self.header(header::AUTHORIZATION, creds.header_value().clone())
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> HttpRequest {
        self.body = Some(body.into());
        self
    }
}

/// The outbound HTTP port: sends a request under the client's [`HttpPolicy`] and reads
/// the response (bounded, [`MAX_RESPONSE_BYTES`]). Transport failures and timeouts are
/// [`ConnectorError::Retryable`]; an address the URL policy refuses is
/// [`ConnectorError::Refused`] (nothing is sent); any status is returned as is.
#[async_trait]
pub trait HttpPort: Send + Sync {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, ConnectorError>;
}

/// The process's outbound client, built on first use (`provisync_connectors::http::
/// http_port`, or [`no_http`]). A function pointer, as [`super::ConnectorFactory`] is:
/// each entry point chooses whether it links an HTTP client at all.
pub type HttpFactory = fn() -> Result<Arc<dyn HttpPort>, SetupError>;

/// The factory of a process that calls nothing out (the SCIM and webhook functions).
pub fn no_http() -> Result<Arc<dyn HttpPort>, SetupError> {
    Err(SetupError::Client(
        "this function makes no outbound calls".into(),
    ))
}

/// A request the URL policy refused: not retried (only the operator can change it).
pub fn refused_address(e: &UrlError) -> ConnectorError {
    ConnectorError::Refused {
        status: None,
        reason: format!("address not allowed: {e}"),
    }
}

/// A response read whole.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The body as JSON (`Null` when empty), or a refusal naming what was wrong.
    pub fn json(&self) -> Result<Value, ConnectorError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|_| ConnectorError::Refused {
            status: Some(self.status.as_u16()),
            reason: "the target answered with a body that is not JSON".into(),
        })
    }

    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Ok(self)` for 2xx, else the error the status means (see [`error_for`]).
    pub fn ok(self, creds: Option<&Credentials>) -> Result<HttpResponse, ConnectorError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(error_for(&self, creds))
        }
    }
}

/// What a non-2xx response means for the engine:
///
/// - 408, 425, 429, 500, 502, 503, 504 and other 5xx except 501/505: `Retryable`, with
///   `Retry-After` (delta-seconds or HTTP-date, RFC 9110 §10.2.3) when given;
/// - 404: `NotFound`; 409: `Conflict` (RFC 7644 §3.3 `uniqueness`); 410: `Gone`;
/// - 3xx (a redirect that was not followed: the client follows same-origin ones only):
///   `Refused`;
/// - other 4xx, 501, 505: `Refused`, with the target's own reason (the SCIM error's
///   `scimType` and `detail`, RFC 7644 §3.12), truncated and scrubbed of our secrets.
pub fn error_for(resp: &HttpResponse, creds: Option<&Credentials>) -> ConnectorError {
    let code = resp.status.as_u16();
    let reason = || {
        let r = reason_of(resp);
        let r = match creds {
            Some(c) => c.scrub(&r),
            None => r,
        };
        truncate(&r, MAX_REASON_CHARS)
    };
    match code {
        404 => ConnectorError::NotFound,
        409 => ConnectorError::Conflict(reason()),
        410 => ConnectorError::Gone(reason()),
        408 | 425 | 429 | 500 | 502..=504 | 506..=599 => ConnectorError::Retryable {
            status: Some(code),
            retry_after: retry_after_of(resp, chrono::Utc::now()),
            detail: reason(),
        },
        300..=399 => {
            let to = resp
                .header(header::LOCATION)
                .and_then(|l| Url::parse(l).ok())
                .and_then(|u| u.host_str().map(str::to_string));
            ConnectorError::Refused {
                status: Some(code),
                reason: match to {
                    Some(host) => format!("redirect to {host} not followed"),
                    None => "redirect not followed".into(),
                },
            }
        }
        _ => ConnectorError::Refused {
            status: Some(code),
            reason: reason(),
        },
    }
}

/// How long the target asks us to wait: `Retry-After` (RFC 9110 §10.2.3), else the
/// vendor rate-limit reset header `X-Rate-Limit-Reset` (Okta: the UTC epoch second at
/// which the limit window resets) or `X-RateLimit-Reset` (the same, as other vendors
/// spell it). Capped at [`MAX_RETRY_AFTER`].
pub fn retry_after_of(resp: &HttpResponse, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    if let Some(d) = resp
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| parse_retry_after(v, now))
    {
        return Some(d);
    }
    let reset = resp
        .header("x-rate-limit-reset")
        .or_else(|| resp.header("x-ratelimit-reset"))?;
    parse_rate_limit_reset(reset, now)
}

/// An epoch-seconds reset time (`X-Rate-Limit-Reset: 1609459200`) as a wait from `now`;
/// a time in the past is no wait. Capped at [`MAX_RETRY_AFTER`].
pub fn parse_rate_limit_reset(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let at = value.trim().parse::<i64>().ok()?;
    let wait = at.saturating_sub(now.timestamp());
    Some(Duration::from_secs(u64::try_from(wait).unwrap_or(0)).min(MAX_RETRY_AFTER))
}

/// The vendor's own error code and message in a JSON error body, when it has one of the
/// shapes the connectors meet:
///
/// - SCIM (RFC 7644 §3.12): `{"scimType", "detail"}`;
/// - Atlassian Crowd: `{"reason": "USER_NOT_FOUND", "message": "…"}`;
/// - Okta: `{"errorCode", "errorSummary", "errorCauses": [{"errorSummary"}]}`;
/// - Microsoft Graph: `{"error": {"code", "message"}}`;
/// - Salesforce: `[{"errorCode", "message", "fields"}]`;
/// - OAuth 2.0 (RFC 6749 §5.2): `{"error", "error_description"}`.
///
/// Returns `(code, message)`; either may be missing.
pub fn vendor_error(v: &Value) -> (Option<String>, Option<String>) {
    let s = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(first) = v.as_array().and_then(|a| a.first()) {
        return (s(first, "errorCode"), s(first, "message"));
    }
    if let Some(e) = v.get("error").filter(|e| e.is_object()) {
        return (s(e, "code"), s(e, "message"));
    }
    if v.get("errorCode").is_some() || v.get("errorSummary").is_some() {
        let mut msg = s(v, "errorSummary");
        let causes: Vec<String> = v
            .get("errorCauses")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|c| s(c, "errorSummary")).collect())
            .unwrap_or_default();
        if !causes.is_empty() {
            let joined = causes.join("; ");
            msg = Some(match msg {
                Some(m) => format!("{m} ({joined})"),
                None => joined,
            });
        }
        return (s(v, "errorCode"), msg);
    }
    if v.get("reason").is_some() {
        return (s(v, "reason"), s(v, "message"));
    }
    let code = s(v, "scimType").or_else(|| {
        // OAuth: `error` is the code when a description comes with it.
        s(v, "error_description").and(s(v, "error"))
    });
    let detail = s(v, "detail")
        .or_else(|| s(v, "message"))
        .or_else(|| s(v, "error_description"))
        .or_else(|| if code.is_none() { s(v, "error") } else { None });
    (code, detail)
}

/// The target's reason for an error: `code: message` of a vendor error body (see
/// [`vendor_error`]; for SCIM `scimType: detail`, RFC 7644 §3.12), the start of a text
/// body, or the status line.
fn reason_of(resp: &HttpResponse) -> String {
    let canonical = || {
        format!(
            "HTTP {} {}",
            resp.status.as_u16(),
            resp.status.canonical_reason().unwrap_or("")
        )
        .trim_end()
        .to_string()
    };
    if let Ok(v) = serde_json::from_slice::<Value>(&resp.body) {
        return match vendor_error(&v) {
            (Some(t), Some(d)) => format!("{t}: {d}"),
            (Some(t), None) => t,
            (None, Some(d)) => d,
            (None, None) => canonical(),
        };
    }
    let text = String::from_utf8_lossy(&resp.body);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    match line {
        // HTML error pages say nothing useful in their first line.
        Some(l) if !l.starts_with('<') => format!("{}: {l}", canonical()),
        _ => canonical(),
    }
}

/// At most `max` characters, control characters replaced, `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date, relative to `now`;
/// capped at [`MAX_RETRY_AFTER`]. `None` when unparseable.
pub fn parse_retry_after(
    value: &HeaderValue,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let s = value.to_str().ok()?.trim();
    let d = if let Ok(secs) = s.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is RFC 2822-compatible.
        let at = chrono::DateTime::parse_from_rfc2822(s).ok()?;
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            parse_retry_after(&h("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(&h("Mon, 01 Jan 2024 00:00:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(&h("Sun, 31 Dec 2023 00:00:30 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&h("999999"), now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after(&h("soon"), now), None);
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn mapping() {
        let scim = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","scimType":"invalidValue","detail":"bad email"}"#;
        assert_eq!(
            error_for(&resp(400, scim), None),
            ConnectorError::Refused {
                status: Some(400),
                reason: "invalidValue: bad email".into()
            }
        );
        assert_eq!(error_for(&resp(404, ""), None), ConnectorError::NotFound);
        assert!(matches!(
            error_for(&resp(409, scim), None),
            ConnectorError::Conflict(_)
        ));
        assert!(matches!(
            error_for(&resp(410, ""), None),
            ConnectorError::Gone(_)
        ));
        for s in [429, 500, 502, 503, 504] {
            assert!(error_for(&resp(s, ""), None).is_retryable(), "{s}");
        }
        assert!(!error_for(&resp(501, ""), None).is_retryable());
        assert_eq!(
            error_for(&resp(401, ""), None),
            ConnectorError::Refused {
                status: Some(401),
                reason: "HTTP 401 Unauthorized".into()
            }
        );
        let long = format!(r#"{{"detail":"{}"}}"#, "x".repeat(1000));
        let ConnectorError::Refused { reason, .. } = error_for(&resp(400, &long), None) else {
            panic!()
        };
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS + 1);
    }

    #[test]
    fn vendor_bodies_and_rate_limit_headers() {
        let reason = |status: u16, body: &str| match error_for(&resp(status, body), None) {
            ConnectorError::Refused { reason, .. }
            | ConnectorError::Retryable { detail: reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(
                400,
                r#"{"reason":"INVALID_USER","message":"User <a> already exists"}"#
            ),
            "INVALID_USER: User <a> already exists"
        );
        assert_eq!(
            reason(
                400,
                r#"{"errorCode":"E0000001","errorSummary":"Api validation failed: login","errorCauses":[{"errorSummary":"login: An object with this field already exists"}]}"#
            ),
            "E0000001: Api validation failed: login (login: An object with this field already exists)"
        );
        assert_eq!(
            reason(
                400,
                r#"{"error":{"code":"Request_BadRequest","message":"Invalid value"}}"#
            ),
            "Request_BadRequest: Invalid value"
        );
        assert_eq!(
            reason(
                400,
                r#"[{"message":"Alias: required","errorCode":"REQUIRED_FIELD_MISSING","fields":["Alias"]}]"#
            ),
            "REQUIRED_FIELD_MISSING: Alias: required"
        );
        assert_eq!(
            reason(
                401,
                r#"{"error":"invalid_client","error_description":"bad secret"}"#
            ),
            "invalid_client: bad secret"
        );
        assert_eq!(
            reason(401, r#"{"error":"invalid_client"}"#),
            "invalid_client"
        );
        let now = chrono::Utc::now();
        let mut r = resp(429, "");
        r.headers.insert(
            "x-rate-limit-reset",
            HeaderValue::from_str(&(now.timestamp() + 30).to_string()).unwrap(),
        );
        let d = retry_after_of(&r, now).unwrap();
        assert_eq!(d, Duration::from_secs(30));
        r.headers
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        assert_eq!(
            retry_after_of(&r, now),
            Some(Duration::from_secs(5)),
            "Retry-After first"
        );
        assert_eq!(parse_rate_limit_reset("1", now), Some(Duration::ZERO));
        assert_eq!(parse_rate_limit_reset("soon", now), None);
    }

    #[test]
    fn secrets_never_shown() {
        let c = Credentials::from_auth(&HttpAuth::Bearer("s3cr3t-token".into())).unwrap();
        assert_eq!(format!("{c:?}"), "Credentials(***)");
        let body = r#"{"detail":"token s3cr3t-token is not valid"}"#;
        let e = error_for(&resp(401, body), Some(&c));
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let b = Credentials::from_auth(&HttpAuth::Basic {
            username: "u".into(),
            password: "hunter22".into(),
        })
        .unwrap();
        assert_eq!(b.scrub("pw hunter22 dTpodW50ZXIyMg=="), "pw *** ***");
        assert!(
            Credentials::from_auth(&HttpAuth::Basic {
                username: "a:b".into(),
                password: "x".into()
            })
            .is_err()
        );
    }
}
