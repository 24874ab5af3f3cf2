//! What answers outside the surfaces: the front page at `/` (where to go from here) and
//! the error body of any path no surface serves. Each surface answers its own unknown
//! paths in its own format (SCIM errors under `/scim/v2`, `{"error"}` under `/admin`);
//! everything else gets `{"error"}` here, never an empty 404.

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use provisync_wire as wire;
use serde_json::json;

/// Where each surface lives, as the front page names them.
const LINKS: &[(&str, &str, &str)] = &[
    ("health", "/healthz", "is the hub up, and on which store"),
    (
        "scim",
        "/scim/v2",
        "the SCIM 2.0 API for identity providers (start with /scim/v2/ServiceProviderConfig)",
    ),
    (
        "admin",
        "/admin",
        "the operators' API (e.g. GET /admin/targets, with an admin token)",
    ),
    (
        "console",
        "/console/",
        "the operator console in the browser",
    ),
    (
        "webhooks",
        "/webhooks/{source}",
        "signed webhooks from source sites (POST)",
    ),
];

/// The documentation, as it ships with the source.
const DOCS: &str = "README.md, docs/connectors.md and docs/ARCHITECTURE.md in the Provisync source";

/// `GET /`; any other method on `/` is a 405 in JSON.
pub fn router() -> Router {
    Router::new()
        .route("/", get(front_page))
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on /: use GET",
            )
        })
}

/// The front page: HTML for a browser, JSON for a client that asks for it.
async fn front_page(headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/json") && !accept.contains("text/html") {
        let mut body = serde_json::Map::new();
        body.insert("name".into(), json!("Provisync"));
        for (key, path, _) in LINKS {
            body.insert((*key).into(), json!(path));
        }
        body.insert("docs".into(), json!(DOCS));
        return axum::Json(body).into_response();
    }
    let items: String = LINKS
        .iter()
        .map(|(_, path, what)| {
            let shown = if path.contains('{') {
                format!("<code>{}</code>", escape(path))
            } else {
                format!("<a href=\"{0}\"><code>{0}</code></a>", escape(path))
            };
            format!("<li>{shown}: {}</li>\n", escape(what))
        })
        .collect();
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Provisync</title></head>\n<body>\n<h1>Provisync</h1>\n<p>An identity provisioning and sync hub.</p>\n<ul>\n{items}</ul>\n<p>Documentation: {}.</p>\n</body></html>\n",
        escape(DOCS)
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(wire::ErrorBody {
            error: message.to_string(),
            field: None,
        }),
    )
        .into_response()
}

/// The answer to a path no surface serves: 404 `{"error"}`, pointing at `/`.
pub async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint: GET / lists what this hub serves",
    )
}

/// `/scim/v2` and `/scim/v2/` themselves: a SCIM error too, not the default empty 404
/// (the SCIM router is nested there and serves only what is under them).
pub fn scim_base_paths<S: Clone + Send + Sync + 'static>() -> Router<S> {
    use crate::scim::BASE_PATH;
    use crate::scim_error::no_such_endpoint;
    use axum::routing::any;
    Router::new()
        .route(BASE_PATH, any(|| async { no_such_endpoint(BASE_PATH) }))
        .route(
            &format!("{BASE_PATH}/"),
            any(|| async { no_such_endpoint(BASE_PATH) }),
        )
}
