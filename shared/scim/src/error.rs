//! SCIM errors (RFC 7644 §3.12): one type for the whole SCIM surface, rendered as
//! `urn:ietf:params:scim:api:messages:2.0:Error` with the right status and `scimType`.

use serde_json::json;

use super::schema::ERROR_SCHEMA;

/// `scimType` values of RFC 7644 §3.12, Table 9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
    /// RFC 9865 §2.1: a cursor that is not one the service issued (or for another query).
    InvalidCursor,
    /// RFC 9865 §2.1: a cursor older than the service provider's `cursorTimeout`.
    ExpiredCursor,
    /// RFC 9865 §2.1: a `count` other than the one of the query a cursor belongs to.
    InvalidCount,
}

impl ScimType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
            ScimType::InvalidCursor => "invalidCursor",
            ScimType::ExpiredCursor => "expiredCursor",
            ScimType::InvalidCount => "invalidCount",
        }
    }
}

/// An error answered to a SCIM client. `detail` is shown to the client: it must never
/// carry secrets, passwords or tokens.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {detail}")]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<ScimType>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<ScimType>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidFilter, detail)
    }
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidSyntax, detail)
    }
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidValue, detail)
    }
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidPath, detail)
    }
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::NoTarget, detail)
    }
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::Mutability, detail)
    }
    pub fn too_many(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::TooMany, detail)
    }
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some(ScimType::Uniqueness), detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, None, detail)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            401,
            None,
            "Authorization failure: a valid bearer token is required",
        )
    }
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(412, None, detail)
    }
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            413,
            None,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }
    pub fn not_implemented(detail: impl Into<String>) -> Self {
        Self::new(501, None, detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(503, None, detail)
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(500, None, detail)
    }

    /// The error body (RFC 7644 §3.12). `status` is a string there.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            v["scimType"] = json!(t.as_str());
        }
        v
    }
}

/// The media type of SCIM bodies (RFC 7644 §3.1).
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// SCIM errors as axum answers, for the HTTP edge (`provisync-http` turns this on): the
/// protocol crate itself stays free of HTTP types.
#[cfg(feature = "axum")]
mod axum_impl {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use serde_json::Value;

    use super::{SCIM_CONTENT_TYPE, ScimError};

    impl IntoResponse for ScimError {
        fn into_response(self) -> Response {
            let status =
                StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = scim_response(status, &self.to_json());
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                // The rest of the oversized body was never read: the connection cannot carry
                // another request.
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    }

    /// `body` with `status` and `Content-Type: application/scim+json`.
    pub fn scim_response(status: StatusCode, body: &Value) -> Response {
        let mut resp = (status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_CONTENT_TYPE),
        );
        resp
    }
}

#[cfg(feature = "axum")]
pub use axum_impl::scim_response;
