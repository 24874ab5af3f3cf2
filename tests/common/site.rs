//! A fake site for the webhook tests: signs what it sends to the hub and verifies what the
//! hub sends it, with its own HMAC-SHA256 (built here on `sha2` alone, not on the hub's
//! `hmac` code path), and — when asked — behaves like a Drupal site with a sync module:
//! stores users and configuration under its own ids and re-emits every change it applies
//! (the echo a bidirectional site produces).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// HMAC-SHA256 (RFC 2104) written out: an independent check of the hub's signatures.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// The key of a `whsec_` secret.
pub fn key_of(secret: &str) -> Vec<u8> {
    STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("whsec_ secret")
}

/// `v1,<base64>` over `{id}.{ts}.{body}`.
pub fn sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let mut msg = format!("{id}.{ts}.").into_bytes();
    msg.extend_from_slice(body);
    format!("v1,{}", STANDARD.encode(hmac_sha256(&key_of(secret), &msg)))
}

/// Standard Webhooks headers for a body, signed now.
pub fn signed_headers(secret: &str, id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = chrono::Utc::now().timestamp();
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", sign(secret, id, ts, body)),
    ]
}

/// POSTs a body to `url` with the given headers; returns (status, body).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.expect("post");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One webhook the site received (signature verified).
#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub envelope: Value,
}

struct Inner {
    /// Verifies what the hub sends.
    secret: String,
    /// Answer to give (200 by default; 410 to play a site that is gone).
    answer: StatusCode,
    /// Answers to give first, in order, before `answer` (e.g. a 500 to force a retry).
    first_answers: Vec<StatusCode>,
    received: Vec<Received>,
    /// Deliveries refused for a bad signature.
    bad_signatures: usize,
    /// Echo mode: where the site sends its own changes (the hub's `/webhooks/{id}`) and
    /// with which secret.
    echo: Option<(String, String)>,
    /// The site's users by userName -> its own id.
    users: HashMap<String, u64>,
    /// Configuration prefixes the site accepts.
    config_prefixes: Vec<String>,
    config: HashMap<String, Value>,
    refused_config: Vec<String>,
}

/// A running fake site.
#[derive(Clone)]
pub struct Site {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    client: reqwest::Client,
}

impl Site {
    /// A site receiving on `/hook`, verifying with `secret`.
    pub async fn start(secret: &str) -> Site {
        super::allow_loopback_peers();
        let inner = Arc::new(Mutex::new(Inner {
            secret: secret.to_string(),
            answer: StatusCode::OK,
            first_answers: vec![],
            received: vec![],
            bad_signatures: 0,
            echo: None,
            users: HashMap::new(),
            config_prefixes: vec![],
            config: HashMap::new(),
            refused_config: vec![],
        }));
        let site_state = Site {
            addr: "127.0.0.1:0".parse().expect("addr"),
            inner: inner.clone(),
            client: reqwest::Client::new(),
        };
        let app = Router::new()
            .route("/hook", routing::post(receive))
            .with_state(site_state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Site {
            addr,
            inner,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn answer_with(&self, status: u16) {
        self.lock().answer = StatusCode::from_u16(status).expect("status");
    }

    pub fn answer_first(&self, statuses: &[u16]) {
        self.lock().first_answers = statuses
            .iter()
            .map(|s| StatusCode::from_u16(*s).expect("status"))
            .collect();
    }

    /// Behave like a bidirectional site: apply what arrives and re-emit it to `hook_url`
    /// signed with `secret`; accept configuration under `config_prefixes` only.
    pub fn echo_to(&self, hook_url: &str, secret: &str, config_prefixes: &[&str]) {
        let mut g = self.lock();
        g.echo = Some((hook_url.to_string(), secret.to_string()));
        g.config_prefixes = config_prefixes.iter().map(|s| s.to_string()).collect();
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Whether an envelope of this `type` (`group.upsert`, `user.delete`, …) arrived.
    pub fn got(&self, kind: &str) -> bool {
        self.lock()
            .received
            .iter()
            .any(|r| r.envelope["type"] == kind)
    }

    pub fn bad_signatures(&self) -> usize {
        self.lock().bad_signatures
    }

    pub fn config(&self, name: &str) -> Option<Value> {
        self.lock().config.get(name).cloned()
    }

    pub fn refused_config(&self) -> Vec<String> {
        self.lock().refused_config.clone()
    }

    pub fn user_id(&self, user_name: &str) -> Option<u64> {
        self.lock().users.get(user_name).copied()
    }

    /// Sends one of the site's own changes to the hub (as its sync module would).
    pub async fn send(&self, hook_url: &str, secret: &str, envelope: &Value) -> (u16, Value) {
        let body = envelope.to_string().into_bytes();
        let id = format!("site-{}", uuid::Uuid::new_v4().simple());
        post(
            &self.client,
            hook_url,
            &signed_headers(secret, &id, &body),
            body,
        )
        .await
    }
}

/// Verifies a delivery the way a site's module would: timestamp window, then any `v1`
/// signature.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let (id, ts, sigs) = (
        h("webhook-id")?,
        h("webhook-timestamp")?,
        h("webhook-signature")?,
    );
    let ts: i64 = ts.parse().ok()?;
    if (chrono::Utc::now().timestamp() - ts).abs() > 300 {
        return None;
    }
    let want = sign(secret, id, ts, body);
    sigs.split(' ').any(|s| s == want).then(|| id.to_string())
}

async fn receive(State(site): State<Site>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let (secret, answer) = {
        let mut g = site.lock();
        let answer = if g.first_answers.is_empty() {
            g.answer
        } else {
            g.first_answers.remove(0)
        };
        (g.secret.clone(), answer)
    };
    let Some(id) = verify(&secret, &headers, &body) else {
        site.lock().bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    };
    let Ok(envelope) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if !answer.is_success() {
        site.lock().received.push(Received { id, envelope });
        return answer;
    }
    let echo = {
        let mut g = site.lock();
        g.received.push(Received {
            id,
            envelope: envelope.clone(),
        });
        match g.echo.clone() {
            None => None,
            Some(target) => apply_and_echo(&mut g, &envelope).map(|e| (target, e)),
        }
    };
    if let Some(((url, secret), echo)) = echo {
        // After answering, as a real site's queue would.
        let site = site.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let _ = site.send(&url, &secret, &echo).await;
        });
    }
    StatusCode::OK
}

/// Applies a change locally and returns the site's re-emission of it (its own id as
/// `externalId`, only the attributes the site keeps).
fn apply_and_echo(g: &mut Inner, envelope: &Value) -> Option<Value> {
    let now = chrono::Utc::now().to_rfc3339();
    let data = &envelope["data"];
    match envelope["type"].as_str()? {
        "user.upsert" => {
            let user_name = data["userName"].as_str()?.to_string();
            let next = g.users.len() as u64 + 100;
            let local = *g.users.entry(user_name.clone()).or_insert(next);
            let mut echo = json!({"externalId": local.to_string(), "userName": user_name});
            for k in ["name", "emails", "displayName"] {
                if let Some(v) = data.get(k) {
                    echo[k] = v.clone();
                }
            }
            Some(json!({"type": "user.upsert", "occurred_at": now, "data": echo}))
        }
        "config.set" => {
            let name = data["name"].as_str()?.to_string();
            if !g
                .config_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
            {
                g.refused_config.push(name);
                return None;
            }
            g.config.insert(name.clone(), data["value"].clone());
            Some(json!({"type": "config.set", "occurred_at": now,
                "data": {"name": name, "value": data["value"]}}))
        }
        _ => None,
    }
}
