//! Console sessions: an admin token exchanged once for a session cookie.
//!
//! - The cookie (`provisync_session`) is `HttpOnly` (no script reads it), `SameSite=Strict`
//!   (no other site's page sends it), `Secure` when the hub is reached over https, and
//!   `Path=/` (the console's pages call `/admin/*` with it).
//! - Its value is 256 random bits; the store keeps only its SHA-256 (`SESSION#{hex}`),
//!   with the SHA-256 of the token it was opened with, the token's name, a CSRF token and
//!   two deadlines: idle ([`idle_minutes`], default 30, renewed while in use) and absolute
//!   ([`MAX_LIFETIME`]). Past either, or once its token is revoked, the session is gone.
//! - Every change made with a session (any method but GET/HEAD) must carry the session's
//!   CSRF token in `X-CSRF-Token`, and must not come from another site (`Sec-Fetch-Site`,
//!   `Origin`). The page holds the CSRF token in memory only, never the admin token.
//!
//! [`require_admin`] is the admin API's auth layer: a bearer token (the CLI, scripts) or a
//! session (the console); either way the handler gets the [`Principal`].

use std::sync::{Arc, OnceLock};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{Authenticator, Principal, Scope, bearer, challenge, hash_token};
use provisync_core::store::{Condition, Item, Key, Store, StoreError, Write, keyspace};

/// The session cookie's name.
pub const COOKIE: &str = "provisync_session";
/// The header that carries the CSRF token on every change.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends this long after sign-in, in use or not.
pub const MAX_LIFETIME: i64 = 8 * 3600;
/// Idle minutes before a session ends (`PROVISYNC_CONSOLE_IDLE_MINUTES`, 1 to 480).
pub const IDLE_ENV: &str = "PROVISYNC_CONSOLE_IDLE_MINUTES";
const DEFAULT_IDLE_MINUTES: i64 = 30;
/// The idle deadline is written again only when less than this much of it is left
/// (one write per few minutes of use, not one per request).
const RENEW_WHEN_LEFT: i64 = 25 * 60;

/// Idle minutes, from the environment once per process.
pub fn idle_minutes() -> i64 {
    static IDLE: OnceLock<i64> = OnceLock::new();
    *IDLE.get_or_init(|| {
        std::env::var(IDLE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|m| (1..=480).contains(m))
            .unwrap_or(DEFAULT_IDLE_MINUTES)
    })
}

#[derive(Clone, Serialize, Deserialize)]
struct SessionRecord {
    /// SHA-256 of the admin token the session was opened with (hex).
    token: String,
    csrf: String,
    created: i64,
    idle_until: i64,
    expires: i64,
}

/// A live session.
#[derive(Clone, Debug)]
pub struct Session {
    pub principal: Principal,
    pub csrf: String,
    /// Unix seconds when it ends unless used before (the idle deadline, capped by the
    /// absolute one).
    pub ends_at: i64,
}

fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

fn session_key(cookie: &str) -> Key {
    Key::new(
        format!(
            "{}{}",
            keyspace::SESSION,
            hex::encode(Sha256::digest(cookie.as_bytes()))
        ),
        "SESSION",
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Sessions on the store (cheap: a handle).
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn Store>,
    idle: i64,
}

impl Sessions {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Sessions {
            store,
            idle: idle_minutes() * 60,
        }
    }

    /// Opens a session for an admin token: the cookie value and the session, or `None`
    /// when the token is not a valid admin token.
    pub async fn open(
        &self,
        auth: &Authenticator,
        token: &str,
    ) -> Result<Option<(String, Session)>, StoreError> {
        let Some(principal) = auth.authenticate(token, Scope::Admin).await else {
            return Ok(None);
        };
        let cookie = random_token();
        let t = now();
        let record = SessionRecord {
            token: hex::encode(hash_token(token)),
            csrf: random_token(),
            created: t,
            idle_until: t + self.idle,
            expires: t + MAX_LIFETIME,
        };
        let key = session_key(&cookie);
        let data = serde_json::to_vec(&record).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.store
            .transact(vec![Write::put_new(
                Item::new(key.pk, key.sk, data).with_expiry(record.expires),
            )])
            .await?;
        let session = Session {
            principal,
            csrf: record.csrf,
            ends_at: record.idle_until.min(record.expires),
        };
        Ok(Some((cookie, session)))
    }

    /// The live session of a cookie value (renewing its idle deadline when due).
    pub async fn get(&self, auth: &Authenticator, cookie: &str) -> Option<Session> {
        if cookie.is_empty() || cookie.len() > 128 {
            return None;
        }
        let key = session_key(cookie);
        let item = match self.store.get(&key).await {
            Ok(Some(item)) => item,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                return None;
            }
        };
        let mut record: SessionRecord = serde_json::from_slice(&item.data).ok()?;
        let t = now();
        if t >= record.idle_until || t >= record.expires {
            return None;
        }
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&record.token, &mut hash).ok()?;
        // A revoked token ends its sessions.
        let principal = auth.authenticate_hash(&hash, Scope::Admin).await?;
        if record.idle_until - t < RENEW_WHEN_LEFT {
            record.idle_until = (t + self.idle).min(record.expires);
            if let Ok(data) = serde_json::to_vec(&record) {
                // Only while it exists: a sign-out meanwhile stays a sign-out.
                let renewed = Write::Put {
                    item: Item::new(key.pk, key.sk, data).with_expiry(record.expires),
                    condition: Condition::Exists,
                };
                if let Err(e) = self.store.transact(vec![renewed]).await {
                    tracing::warn!(error = %e, "session not renewed");
                }
            }
        }
        Some(Session {
            principal,
            csrf: record.csrf,
            ends_at: record.idle_until.min(record.expires),
        })
    }

    /// Ends a session (sign-out). Ending one that is gone already is not an error.
    pub async fn close(&self, cookie: &str) -> Result<(), StoreError> {
        if cookie.is_empty() || cookie.len() > 128 {
            return Ok(());
        }
        self.store
            .transact(vec![Write::delete(session_key(cookie))])
            .await
    }
}

/// The session cookie's value in a request, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// Was the request made over https (the public URL says so, or the proxy in front —
/// API Gateway — does)?
pub fn is_https(public_url: Option<&str>, headers: &HeaderMap) -> bool {
    public_url.is_some_and(|u| u.starts_with("https://"))
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value that opens (`Some`) or clears (`None`) the session cookie.
pub fn set_cookie(value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(v) => {
            format!(
                "{COOKIE}={v}; Path=/; HttpOnly; SameSite=Strict; Max-Age={MAX_LIFETIME}{secure}"
            )
        }
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Does the request come from a page of another site? (`Sec-Fetch-Site` where the
/// browser sends it, else an `Origin` whose host is not the request's.)
pub fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
}

/// Does this request's `X-CSRF-Token` match the session's (constant time)?
pub fn csrf_ok(headers: &HeaderMap, session: &Session) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(session.csrf.as_bytes())))
}

/// State of the admin API's auth layer.
#[derive(Clone)]
pub struct AdminGuard<E> {
    pub auth: Arc<Authenticator>,
    pub store: Arc<dyn Store>,
    /// 401 in the surface's format.
    pub unauthorized: fn() -> E,
    /// 403 in the surface's format, with the reason.
    pub forbidden: fn(&'static str) -> E,
}

/// Middleware: a valid admin bearer token, or a live console session (with its CSRF token
/// on every change, from the hub's own pages); the request then carries its
/// [`Principal`]. 401 otherwise (403 for a session request that fails the CSRF checks).
pub async fn require_admin<E: IntoResponse>(
    State(g): State<AdminGuard<E>>,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = if let Some(token) = bearer(&req) {
        g.auth.authenticate(token, Scope::Admin).await
    } else if let Some(cookie) = session_cookie(req.headers()) {
        let Some(session) = Sessions::new(g.store.clone()).get(&g.auth, cookie).await else {
            return unauthorized(&g);
        };
        let safe = matches!(*req.method(), Method::GET | Method::HEAD);
        if !safe && cross_site(req.headers()) {
            return (g.forbidden)("cross-site requests are refused").into_response();
        }
        if !safe && !csrf_ok(req.headers(), &session) {
            return (g.forbidden)("missing or invalid X-CSRF-Token: reload the console")
                .into_response();
        }
        Some(session.principal)
    } else {
        None
    };
    let Some(principal) = principal else {
        return unauthorized(&g);
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

fn unauthorized<E: IntoResponse>(g: &AdminGuard<E>) -> Response {
    challenge((g.unauthorized)().into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use provisync_core::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn sessions_open_end_and_follow_their_token() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let auth = Authenticator::new(Some(store.clone())).with_static_token("adm", Scope::Admin);
        let sessions = Sessions::new(store.clone());
        assert!(sessions.open(&auth, "wrong").await.unwrap().is_none());
        let (cookie, s) = sessions.open(&auth, "adm").await.unwrap().unwrap();
        assert_eq!(s.principal.to_string(), "admin:static");
        let again = sessions.get(&auth, &cookie).await.unwrap();
        assert_eq!(again.csrf, s.csrf);
        // Only hashes are stored: neither the cookie nor the token.
        let item = store.get(&session_key(&cookie)).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&item.data);
        assert!(!text.contains(&cookie) && !text.contains("\"adm\""));
        assert!(sessions.get(&auth, "not-a-session").await.is_none());
        sessions.close(&cookie).await.unwrap();
        assert!(sessions.get(&auth, &cookie).await.is_none());
        // A stored token revoked: its session ends.
        let t = crate::auth::create_token(store.as_ref(), Scope::Admin, "ops")
            .await
            .unwrap();
        let (cookie, s) = sessions.open(&auth, &t).await.unwrap().unwrap();
        assert_eq!(s.principal.to_string(), "admin:ops");
        assert!(sessions.get(&auth, &cookie).await.is_some());
        crate::auth::revoke_token(store.as_ref(), &t).await.unwrap();
        assert!(sessions.get(&auth, &cookie).await.is_none());
        // A SCIM token opens nothing.
        let scim = Authenticator::new(None).with_static_token("s", Scope::Scim);
        assert!(sessions.open(&scim, "s").await.unwrap().is_none());
    }

    #[test]
    fn cookies_and_origins() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; provisync_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        let c = set_cookie(Some("v"), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie(Some("v"), false).contains("Secure"));
        h.insert(header::HOST, "127.0.0.1:8787".parse().unwrap());
        h.insert(header::ORIGIN, "http://127.0.0.1:8787".parse().unwrap());
        assert!(!cross_site(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(cross_site(&h));
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(!cross_site(&h));
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(cross_site(&h));
        assert!(is_https(None, &{
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-proto", "https".parse().unwrap());
            h
        }));
        assert!(!is_https(Some("http://x"), &HeaderMap::new()));
    }
}
