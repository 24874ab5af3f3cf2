//! The operator console at `/console/`: a page, a script and a style sheet served by the
//! hub itself (compiled into the binary: nothing is loaded from elsewhere, no build step),
//! and the session endpoints that turn an admin token into a session cookie. Everything
//! the console shows or changes goes through the admin API (`/admin/*`), with the
//! session in place of the bearer token ([`session::require_admin`]).
//!
//! | method & path              | what                                                      |
//! |----------------------------|-----------------------------------------------------------|
//! | `GET /console/`, `/console` | the console (sign-in first when there is no session)     |
//! | `GET /console/assets/{f}`  | `app.js`, `app.css`, `icon.svg`                           |
//! | `POST /console/session`    | `{"token"}` -> 200 `{"name","csrf","ends_at"}` + cookie; 401 for a wrong token |
//! | `GET /console/session`     | the session (`{"name","csrf","ends_at"}`), or 204: none   |
//! | `DELETE /console/session`  | sign-out (CSRF token required): 204, cookie cleared       |
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles, images and
//! requests from the hub only; no inline script or style; no framing).

pub mod session;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::AppState;
use provisync_core::sync::audit::{AuditEntry, AuditOp, AuditStatus};
use provisync_wire as wire;
use session::{Sessions, cross_site, csrf_ok, is_https, session_cookie, set_cookie};

pub const BASE_PATH: &str = "/console";

/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
base-uri 'none'";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// The console's router (`/console`, `/console/...`).
pub fn router(state: AppState) -> Router {
    Router::new()
        // Both: API Gateway routes `/console` and `/console/{proxy+}`; the page names its
        // assets by absolute paths, so it works at either.
        .route(BASE_PATH, get(index))
        .route("/console/", get(index))
        .route("/console/assets/{name}", get(asset))
        .route(
            "/console/session",
            get(current).post(sign_in).delete(sign_out),
        )
        .layer(map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "icon.svg" => (ICON_SVG, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidated on each load (small files; a new hub version shows at once).
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A refusal of the session endpoints: `{"error": message}`.
fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(wire::ErrorBody {
            error: message.to_string(),
            field: None,
        }),
    )
        .into_response()
}

fn session_info(s: &session::Session) -> wire::ConsoleSession {
    wire::ConsoleSession {
        name: s.principal.to_string(),
        csrf: s.csrf.clone(),
        ends_at: s.ends_at,
    }
}

async fn current(State(state): State<AppState>, req: Request) -> Response {
    let sessions = Sessions::new(state.hub.store.clone());
    let session = match session_cookie(req.headers()) {
        Some(c) => sessions.get(&state.auth, c).await,
        None => None,
    };
    match session {
        Some(s) => axum::Json(session_info(&s)).into_response(),
        // Not an error for the page: it shows the sign-in form.
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// Longest sign-in body (a token is at most 4 KB).
const MAX_SIGN_IN_BYTES: usize = 8 * 1024;

async fn sign_in(State(state): State<AppState>, req: Request) -> Response {
    // A page of another site must not sign the browser in (login CSRF).
    if cross_site(req.headers()) {
        return refuse(StatusCode::FORBIDDEN, "cross-site sign-in is refused");
    }
    let secure = secure(&state, &req);
    let Ok(bytes) = crate::body::read_limited(req, MAX_SIGN_IN_BYTES).await else {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large",
        );
    };
    let Ok(body) = serde_json::from_slice::<SignIn>(&bytes) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "expected {\"token\": \"<admin token>\"}",
        );
    };
    let sessions = Sessions::new(state.hub.store.clone());
    let opened = match sessions.open(&state.auth, body.token.trim()).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "session not stored");
            return storage_unavailable();
        }
    };
    let Some((cookie, s)) = opened else {
        tracing::warn!("console sign-in refused: not an admin token");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "This is not a valid admin token. Check it and try again.",
        );
    };
    record(
        &state,
        AuditOp::SignIn,
        &s.principal.to_string(),
        "signed in to the console",
    )
    .await;
    tracing::info!(principal = %s.principal, "console sign-in");
    with_cookie(
        axum::Json(session_info(&s)).into_response(),
        Some(&cookie),
        secure,
    )
}

async fn sign_out(State(state): State<AppState>, req: Request) -> Response {
    let secure = secure(&state, &req);
    let sessions = Sessions::new(state.hub.store.clone());
    let Some(cookie) = session_cookie(req.headers()) else {
        return refuse(StatusCode::UNAUTHORIZED, "not signed in");
    };
    let Some(s) = sessions.get(&state.auth, cookie).await else {
        return refuse(StatusCode::UNAUTHORIZED, "not signed in");
    };
    if cross_site(req.headers()) || !csrf_ok(req.headers(), &s) {
        return refuse(StatusCode::FORBIDDEN, "missing or invalid X-CSRF-Token");
    }
    if let Err(e) = sessions.close(cookie).await {
        tracing::error!(error = %e, "session not ended");
        return storage_unavailable();
    }
    record(
        &state,
        AuditOp::SignOut,
        &s.principal.to_string(),
        "signed out of the console",
    )
    .await;
    with_cookie(StatusCode::NO_CONTENT.into_response(), None, secure)
}

/// `resp` opening (`Some`) or clearing (`None`) the session cookie.
fn with_cookie(mut resp: Response, value: Option<&str>, secure: bool) -> Response {
    if let Ok(v) = HeaderValue::from_str(&set_cookie(value, secure)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Is the cookie to be `Secure` (the hub is reached over https)?
fn secure(state: &AppState, req: &Request) -> bool {
    is_https(state.config.public_url.as_deref(), req.headers())
        || req.uri().scheme_str() == Some("https")
}

fn storage_unavailable() -> Response {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "the hub's storage is unavailable, retry later",
    )
}

async fn record(state: &AppState, op: AuditOp, actor: &str, detail: &str) {
    let entry = AuditEntry::new("", op, AuditStatus::Delivered)
        .detail(detail)
        .actor(actor);
    if let Err(e) = state.hub.audit.record(entry).await {
        tracing::warn!(error = %e, "audit entry for a console session not written");
    }
}
