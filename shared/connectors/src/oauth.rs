//! OAuth 2.0 client credentials (RFC 6749 §4.4) for the connectors that need it
//! (Microsoft Graph, Salesforce): one token per connector, cached until shortly before
//! it expires, fetched again once when the API answers 401 (RFC 6750 §3.1
//! `invalid_token`: revoked, or expired earlier than announced). The client secret and
//! the tokens never reach a log, an error or a `Debug` output.
//!
//! The client authenticates in the form body (`client_id`, `client_secret`, RFC 6749
//! §2.3.1), which both Microsoft's identity platform and Salesforce accept.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{self, HeaderValue};
use reqwest::{Method, RequestBuilder, Url};
use serde_json::Value;

use crate::http::{HttpClient, HttpResponse, MAX_REASON_CHARS, error_for, truncate, vendor_error};
use provisync_core::connector::{ConnectorError, refused};

/// How long a token without `expires_in` is used (Salesforce does not say: its sessions
/// last at least 15 minutes; an earlier end shows as a 401 and a new token is fetched).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// A token is renewed this long before it expires (at most a tenth of its lifetime).
pub const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(60);
/// Longest token accepted from a token endpoint.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// An access token, ready to send as `Authorization: Bearer …`. `Debug` shows `***`.
#[derive(Clone)]
pub struct AccessToken {
    header: HeaderValue,
    value: String,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

impl AccessToken {
    fn new(value: &str) -> Result<AccessToken, ConnectorError> {
        let mut header = HeaderValue::from_str(&format!("Bearer {value}")).map_err(|_| {
            refused("the token endpoint answered a token that is not a header value")
        })?;
        header.set_sensitive(true);
        Ok(AccessToken {
            header,
            value: value.to_string(),
        })
    }

    pub fn apply(&self, req: RequestBuilder) -> RequestBuilder {
        req.header(header::AUTHORIZATION, self.header.clone())
    }
}

struct Cached {
    token: AccessToken,
    renew_at: Instant,
}

/// What the token endpoint is asked for.
#[derive(Clone)]
pub struct ClientCredentialsConfig {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: String,
    /// `scope` (Microsoft: `https://graph.microsoft.com/.default`); Salesforce takes none.
    pub scope: Option<String>,
    /// Names the system in refusals ("Microsoft Entra", "Salesforce").
    pub system: &'static str,
}

/// A client-credentials token source with its cache.
pub struct ClientCredentials {
    config: ClientCredentialsConfig,
    http: HttpClient,
    cache: Mutex<Option<Cached>>,
    /// One fetch at a time: concurrent deliveries wait for the same new token.
    fetching: tokio::sync::Mutex<()>,
    /// Every token ever issued to this source, to scrub them from echoed errors (bounded:
    /// the last few).
    issued: Mutex<Vec<String>>,
    /// The `id` of the last token answer, when there was one (Salesforce: the identity
    /// URL of the run-as user). Not a secret.
    identity: Mutex<Option<String>>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.config.token_url.as_str())
            .field("client_id", &self.config.client_id)
            .field("client_secret", &"***")
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    pub fn new(config: ClientCredentialsConfig, http: HttpClient) -> ClientCredentials {
        ClientCredentials {
            config,
            http,
            cache: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            issued: Mutex::new(Vec::new()),
            identity: Mutex::new(None),
        }
    }

    fn cached(&self) -> Option<AccessToken> {
        let guard = self.cache.lock().ok()?;
        let c = guard.as_ref()?;
        (Instant::now() < c.renew_at).then(|| c.token.clone())
    }

    /// A valid token: the cached one, else a new one from the token endpoint.
    pub async fn token(&self) -> Result<AccessToken, ConnectorError> {
        if let Some(t) = self.cached() {
            return Ok(t);
        }
        let _one = self.fetching.lock().await;
        if let Some(t) = self.cached() {
            return Ok(t);
        }
        let (token, lifetime) = self.fetch().await?;
        let renew_before = RENEW_BEFORE_EXPIRY.min(lifetime / 10);
        if let Ok(mut guard) = self.cache.lock() {
            *guard = Some(Cached {
                token: token.clone(),
                renew_at: Instant::now() + lifetime.saturating_sub(renew_before),
            });
        }
        Ok(token)
    }

    /// The `id` the token endpoint answered with the last token (Salesforce: the
    /// identity URL `…/id/{org id}/{user id}` of the connected app's run-as user).
    pub fn identity(&self) -> Option<String> {
        self.identity.lock().ok()?.clone()
    }

    /// Forgets `used` (the API refused it); a token fetched meanwhile is kept.
    pub fn invalidate(&self, used: &AccessToken) {
        if let Ok(mut guard) = self.cache.lock()
            && guard.as_ref().is_some_and(|c| c.token.value == used.value)
        {
            *guard = None;
        }
    }

    /// Sends `build()` with a token; on 401 fetches a new token and sends once more.
    /// Any status is returned as is (the caller maps errors, then [`Self::scrub_error`]).
    pub async fn send(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<HttpResponse, ConnectorError> {
        let token = self.token().await?;
        let resp = self.http.send(token.apply(build())).await?;
        if resp.status.as_u16() != 401 {
            return Ok(resp);
        }
        self.invalidate(&token);
        let fresh = self.token().await?;
        self.http.send(fresh.apply(build())).await
    }

    async fn fetch(&self) -> Result<(AccessToken, Duration), ConnectorError> {
        let c = &self.config;
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            form.append_pair("client_id", &c.client_id);
            form.append_pair("client_secret", &c.client_secret);
            if let Some(scope) = &c.scope {
                form.append_pair("scope", scope);
            }
            form.finish()
        };
        let req = self
            .http
            .request(Method::POST, c.token_url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(form);
        // The identity provider's endpoint, not the target's: not paced as the target,
        // and its headers are not the target's quota.
        let resp = provisync_core::connector::quota::outside(self.http.send(req)).await?;
        tracing::debug!(
            path = c.token_url.path(),
            status = resp.status.as_u16(),
            "oauth token endpoint"
        );
        if !resp.is_success() {
            return Err(self.scrub_error(self.token_error(&resp)));
        }
        let body = resp.json()?;
        if let Some(id) = body.get("id").and_then(Value::as_str)
            && let Ok(mut identity) = self.identity.lock()
        {
            *identity = Some(id.to_string());
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN)
            .ok_or_else(|| refused("the token endpoint answered without an access_token"))?;
        // RFC 6749 §7.1: only bearer tokens are understood here.
        if let Some(kind) = body.get("token_type").and_then(Value::as_str)
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(refused(format!(
                "the token endpoint issued a {kind:?} token; only Bearer tokens are supported"
            )));
        }
        // `expires_in`: seconds, a number (RFC 6749 §5.1), a string on some endpoints.
        let lifetime = match body.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let token = AccessToken::new(token)?;
        if let Ok(mut issued) = self.issued.lock() {
            if issued.len() >= 8 {
                issued.remove(0);
            }
            issued.push(token.value.clone());
        }
        Ok((token, lifetime))
    }

    /// A token endpoint's refusal: OAuth's `error`/`error_description` (RFC 6749 §5.2).
    fn token_error(&self, resp: &HttpResponse) -> ConnectorError {
        let system = self.config.system;
        match error_for(resp, None) {
            e @ ConnectorError::Retryable { .. } => e,
            _ => {
                let (code, detail) = serde_json::from_slice::<Value>(&resp.body)
                    .map(|v| vendor_error(&v))
                    .unwrap_or((None, None));
                let what = match (code, detail) {
                    (Some(c), Some(d)) => format!("{c}: {d}"),
                    (Some(x), None) | (None, Some(x)) => x,
                    (None, None) => format!("HTTP {}", resp.status.as_u16()),
                };
                ConnectorError::Refused {
                    status: Some(resp.status.as_u16()),
                    reason: truncate(
                        &format!(
                            "{system} refused the client credentials of client {:?}: {what}",
                            self.config.client_id
                        ),
                        MAX_REASON_CHARS,
                    ),
                }
            }
        }
    }

    /// `text` without the client secret or any token this source was issued.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        let mut secrets = vec![self.config.client_secret.clone()];
        if let Ok(issued) = self.issued.lock() {
            secrets.extend(issued.iter().cloned());
        }
        for s in secrets {
            if s.len() >= 4 && out.contains(&s) {
                out = out.replace(&s, "***");
            }
        }
        out
    }

    /// The same error with every text scrubbed (see [`Self::scrub`]).
    pub fn scrub_error(&self, e: ConnectorError) -> ConnectorError {
        match e {
            ConnectorError::Retryable {
                status,
                retry_after,
                detail,
            } => ConnectorError::Retryable {
                status,
                retry_after,
                detail: self.scrub(&detail),
            },
            ConnectorError::Refused { status, reason } => ConnectorError::Refused {
                status,
                reason: self.scrub(&reason),
            },
            ConnectorError::Conflict(r) => ConnectorError::Conflict(self.scrub(&r)),
            ConnectorError::Gone(r) => ConnectorError::Gone(self.scrub(&r)),
            ConnectorError::NotFound => ConnectorError::NotFound,
        }
    }
}

/// A password for an account created without one, where the system requires one (Entra;
/// Crowd's internal directories):
/// nobody knows it; the user signs in through SSO or has it reset.
pub fn unguessable_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!#%+-=?@";
    let mut rng = rand::rng();
    let mut p: String = (0..60)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    // Every character class, whatever was drawn (Entra requires 3 of 4, at most 256 chars).
    p.push_str("Aa1!");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_secret_in_debug_or_scrubbed_text() {
        let c = ClientCredentials::new(
            ClientCredentialsConfig {
                token_url: Url::parse("https://login.example/t/oauth2/v2.0/token").unwrap(),
                client_id: "app".into(),
                client_secret: "s3cret-value".into(),
                scope: None,
                system: "Test",
            },
            HttpClient::shared().unwrap(),
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let t = AccessToken::new("tok-abc").unwrap();
        assert_eq!(format!("{t:?}"), "AccessToken(***)");
        c.issued.lock().unwrap().push("tok-abc".into());
        assert_eq!(c.scrub("a s3cret-value b tok-abc"), "a *** b ***");
        let e = c.scrub_error(ConnectorError::Refused {
            status: Some(400),
            reason: "echo s3cret-value".into(),
        });
        assert_eq!(e.to_string(), "target refused: echo ***");
        let p = unguessable_password();
        assert!(p.len() == 64 && p != unguessable_password());
    }
}
