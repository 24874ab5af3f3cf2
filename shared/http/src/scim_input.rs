//! What the SCIM surface reads from a request before a handler runs: the JSON body (size
//! limit, media type, parsed off the reactor when large), the resource id in the path,
//! and the base URL resources are located under. Each refusal is a SCIM error.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde_json::Value;

use super::ScimState;
use provisync_scim::{ScimError, ScimType};

/// The SCIM base path.
pub const BASE_PATH: &str = "/scim/v2";

/// Bodies larger than this are parsed on the CPU pool ([`provisync_core::cpu`]).
const PARSE_OFF_REACTOR_BYTES: usize = 64 * 1024;

/// A JSON request body, read under the configured size limit. A media type other than
/// `application/scim+json` or `application/json` (parameters allowed) is 415, malformed
/// JSON 400 `invalidSyntax`, an oversized body 413 — in SCIM format, never axum's plain
/// text. A body without a `Content-Type` is read as JSON.
pub struct ScimBody(pub Value);

impl FromRequest<ScimState> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: Request, state: &ScimState) -> Result<Self, Self::Rejection> {
        check_media_type(req.headers())?;
        let bytes = crate::body::read_limited(req, state.config.max_body_bytes)
            .await
            .map_err(|e| ScimError::payload_too_large(e.limit))?;
        if bytes.len() > PARSE_OFF_REACTOR_BYTES {
            return provisync_core::cpu::run(move || parse_json_body(&bytes))
                .await
                .map_err(|e| ScimError::internal(e.to_string()))?
                .map(ScimBody);
        }
        parse_json_body(&bytes).map(ScimBody)
    }
}

/// RFC 7644 §3.1: SCIM bodies are `application/scim+json`; `application/json` is what
/// many clients send.
fn check_media_type(headers: &HeaderMap) -> Result<(), ScimError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/scim+json" | "application/json") => Ok(()),
        other => {
            let shown: String = other
                .unwrap_or("(not text)")
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(80)
                .collect();
            Err(ScimError::new(
                415,
                None,
                format!(
                    "unsupported media type {shown}: send application/scim+json (or application/json)"
                ),
            ))
        }
    }
}

fn parse_json_body(bytes: &Bytes) -> Result<Value, ScimError> {
    if bytes.is_empty() {
        return Err(ScimError::invalid_syntax("the request body is empty"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("the request body is not valid JSON: {e}")))
}

/// The resource id of the path. One that does not decode (invalid UTF-8 in its percent
/// escapes) is a SCIM 400, not axum's plain-text one.
pub struct ScimId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ScimId {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| ScimId(id))
            .map_err(|_| {
                ScimError::bad_request(
                    ScimType::InvalidValue,
                    "the path is not valid: its percent-escapes do not decode to UTF-8",
                )
            })
    }
}

/// The base URL resources are located under (`https://host/scim/v2`), from trusted
/// configuration only: `PROVISYNC_PUBLIC_URL`; else the domain the platform vouches for
/// (API Gateway's request context on Lambda); else, only when the operator says a proxy
/// sets them (`PROVISYNC_TRUST_FORWARDED_HEADERS`), `X-Forwarded-Host` /
/// `X-Forwarded-Proto` / `Host`; else `http://localhost`. Never a header a client may
/// forge: it would put the client's host into `meta.location` (host header injection).
pub struct BaseUrl(pub String);

impl FromRequestParts<ScimState> for BaseUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ScimState,
    ) -> Result<Self, Self::Rejection> {
        let config = &state.config;
        if let Some(u) = &config.public_url {
            return Ok(BaseUrl(format!("{}{BASE_PATH}", u.trim_end_matches('/'))));
        }
        if let Some(domain) = config
            .platform_origin
            .and_then(|origin| origin(&parts.extensions))
            .filter(|d| is_host(d))
        {
            return Ok(BaseUrl(format!("https://{domain}{BASE_PATH}")));
        }
        if config.trust_forwarded_headers {
            let headers = &parts.headers;
            let host = headers
                .get("x-forwarded-host")
                .or_else(|| headers.get(header::HOST))
                .and_then(|h| h.to_str().ok())
                .filter(|h| is_host(h));
            if let Some(host) = host {
                let proto = headers
                    .get("x-forwarded-proto")
                    .and_then(|h| h.to_str().ok())
                    .filter(|p| *p == "https" || *p == "http")
                    .unwrap_or("http");
                return Ok(BaseUrl(format!("{proto}://{host}{BASE_PATH}")));
            }
        }
        Ok(BaseUrl(format!("http://localhost{BASE_PATH}")))
    }
}

fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
}
