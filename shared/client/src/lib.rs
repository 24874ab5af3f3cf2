//! [`HubClient`]: the one HTTP client of a running hub, for the CLI's operator commands
//! (the admin API, answers as [`provisync_wire`] types) and for import / export against
//! a hub (its SCIM API).
//!
//! Every request carries the bearer token and runs under a connect timeout and a request
//! timeout ([`CONNECT_TIMEOUT`], [`REQUEST_TIMEOUT`]).

use std::time::Duration;

use provisync_wire::{
    AuditFilter, AuditPage, CycleReport, DeadLetters, ErrorBody, HeldDiscarded, HeldIds, HeldList,
    HeldReleased, PlanReport, ReconcileReport, Redriven, RunStatus, SourceList, SourceSummary,
    SyncPlanned, SyncQueued, SyncReconciled, SyncRequest, TargetList, TargetPace, TargetSummary,
    TargetTest, TokenCreated, TokenList, TokenRequest, TokenRevoke, UndoReport, UndoRequest,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use provisync_wire as wire;
pub use reqwest::Method;

/// Time to open a connection to the hub.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time one request may take in all (an on-demand reconcile runs up to 20 s, a `/Bulk`
/// of many users longer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The SCIM API's root under the hub's URL.
const SCIM_ROOT: &str = "/scim/v2";
/// The admin API's root under the hub's URL.
const ADMIN_ROOT: &str = "/admin";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP client could not be set up (TLS).
    #[error("cannot set up the HTTP client: {0}")]
    Setup(#[source] reqwest::Error),
    /// The admin API could not be reached (`base`: the admin root).
    #[error("cannot reach the hub at {base}")]
    Unreachable {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    /// A SCIM request could not be sent (the transport's own message).
    #[error(transparent)]
    Transport(reqwest::Error),
    /// The hub answered with an error: its status and its message (`{"error": …}`, else
    /// the start of the body).
    #[error("{status} {message}")]
    Status { status: u16, message: String },
    /// A success whose body is not the answer this client knows.
    #[error("unexpected answer from the hub: {0}")]
    Decode(#[source] serde_json::Error),
}

/// A client of one hub (its URL, `http://127.0.0.1:8787`) with one bearer token: the
/// admin token for the admin calls, a SCIM token for the SCIM calls.
#[derive(Clone)]
pub struct HubClient {
    http: reqwest::Client,
    admin_root: String,
    scim_root: String,
    token: String,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("admin_root", &self.admin_root)
            .field("scim_root", &self.scim_root)
            .finish_non_exhaustive()
    }
}

impl HubClient {
    /// A client of the hub at `url` (its admin API at `{url}/admin`, its SCIM API at
    /// `{url}/scim/v2`).
    pub fn new(url: &str, token: &str) -> Result<HubClient, ClientError> {
        let url = url.trim_end_matches('/');
        Self::build(
            format!("{url}{ADMIN_ROOT}"),
            format!("{url}{SCIM_ROOT}"),
            token,
        )
    }

    /// A client of a SCIM API at `scim_root` (`http://127.0.0.1:8787/scim/v2`) alone.
    pub fn for_scim_root(scim_root: &str, token: &str) -> Result<HubClient, ClientError> {
        let scim_root = scim_root.trim_end_matches('/');
        let url = scim_root.strip_suffix(SCIM_ROOT).unwrap_or(scim_root);
        Self::build(format!("{url}{ADMIN_ROOT}"), scim_root.to_string(), token)
    }

    fn build(admin_root: String, scim_root: String, token: &str) -> Result<HubClient, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(ClientError::Setup)?;
        Ok(HubClient {
            http,
            admin_root,
            scim_root,
            token: token.to_string(),
        })
    }

    /// The SCIM API's root this client sends to.
    pub fn scim_root(&self) -> &str {
        &self.scim_root
    }

    // ---- the admin API -------------------------------------------------------------

    /// Sends an admin request; a non-2xx answer is [`ClientError::Status`] with the
    /// hub's message. The body of a success as JSON (`null` when empty, a string when
    /// not JSON).
    pub async fn admin_json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.admin_send(method, path, query, body.map(|b| (b, "application/json")))
            .await
    }

    /// [`HubClient::admin_json`] with a body of another media type (a merge patch).
    async fn admin_send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<(&Value, &str)>,
    ) -> Result<Value, ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.admin_root))
            .bearer_auth(&self.token)
            .query(query);
        if let Some((b, media_type)) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, media_type)
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                base: self.admin_root.clone(),
                source,
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        if !status.is_success() {
            let message = serde_json::from_value::<ErrorBody>(json)
                .map(|e| e.error)
                .unwrap_or_else(|_| text.chars().take(500).collect());
            return Err(ClientError::Status {
                status: status.as_u16(),
                message,
            });
        }
        Ok(json)
    }

    async fn admin<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, ClientError> {
        let v = self.admin_json(method, path, query, body).await?;
        serde_json::from_value(v).map_err(ClientError::Decode)
    }

    /// `GET /admin/targets`.
    pub async fn targets(&self) -> Result<TargetList<TargetSummary>, ClientError> {
        self.admin(Method::GET, "/targets", &[], None).await
    }

    /// `GET /admin/targets/{id}`: the definition, redacted, as the hub holds it.
    pub async fn target(&self, id: &str) -> Result<Value, ClientError> {
        self.admin_json(Method::GET, &format!("/targets/{}", seg(id)), &[], None)
            .await
    }

    /// `PUT /admin/targets/{id}`: the definition saved (redacted).
    pub async fn put_target(&self, id: &str, definition: &Value) -> Result<Value, ClientError> {
        self.admin_json(
            Method::PUT,
            &format!("/targets/{}", seg(id)),
            &[],
            Some(definition),
        )
        .await
    }

    /// `PATCH /admin/targets/{id}`: a JSON merge patch (RFC 7396) on the definition;
    /// the definition saved (redacted).
    pub async fn patch_target(&self, id: &str, patch: &Value) -> Result<Value, ClientError> {
        self.admin_send(
            Method::PATCH,
            &format!("/targets/{}", seg(id)),
            &[],
            Some((patch, provisync_wire::MERGE_PATCH_JSON)),
        )
        .await
    }

    /// `DELETE /admin/targets/{id}`.
    pub async fn delete_target(&self, id: &str) -> Result<(), ClientError> {
        self.admin_json(Method::DELETE, &format!("/targets/{}", seg(id)), &[], None)
            .await
            .map(drop)
    }

    /// `GET /admin/targets/{id}/pace`.
    pub async fn target_pace(&self, id: &str) -> Result<TargetPace, ClientError> {
        self.admin(
            Method::GET,
            &format!("/targets/{}/pace", seg(id)),
            &[],
            None,
        )
        .await
    }

    /// `POST /admin/targets/{id}/test`.
    pub async fn test_target(&self, id: &str) -> Result<TargetTest, ClientError> {
        self.admin(
            Method::POST,
            &format!("/targets/{}/test", seg(id)),
            &[],
            None,
        )
        .await
    }

    /// `GET /admin/sources`.
    pub async fn sources(&self) -> Result<SourceList<SourceSummary>, ClientError> {
        self.admin(Method::GET, "/sources", &[], None).await
    }

    /// `GET /admin/sources/{id}`: the definition, redacted.
    pub async fn source(&self, id: &str) -> Result<Value, ClientError> {
        self.admin_json(Method::GET, &format!("/sources/{}", seg(id)), &[], None)
            .await
    }

    /// `PUT /admin/sources/{id}`: the definition saved (redacted).
    pub async fn put_source(&self, id: &str, definition: &Value) -> Result<Value, ClientError> {
        self.admin_json(
            Method::PUT,
            &format!("/sources/{}", seg(id)),
            &[],
            Some(definition),
        )
        .await
    }

    /// `PATCH /admin/sources/{id}`: a JSON merge patch (RFC 7396) on the definition;
    /// the definition saved (redacted).
    pub async fn patch_source(&self, id: &str, patch: &Value) -> Result<Value, ClientError> {
        self.admin_send(
            Method::PATCH,
            &format!("/sources/{}", seg(id)),
            &[],
            Some((patch, provisync_wire::MERGE_PATCH_JSON)),
        )
        .await
    }

    /// `DELETE /admin/sources/{id}`.
    pub async fn delete_source(&self, id: &str) -> Result<(), ClientError> {
        self.admin_json(Method::DELETE, &format!("/sources/{}", seg(id)), &[], None)
            .await
            .map(drop)
    }

    /// `GET /admin/audit`.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<AuditPage, ClientError> {
        self.admin(Method::GET, "/audit", &filter.query(), None)
            .await
    }

    /// `POST /admin/sync` queuing users (`request.reconcile` false).
    pub async fn sync(&self, request: &SyncRequest) -> Result<SyncQueued, ClientError> {
        let body = serde_json::to_value(request).map_err(ClientError::Decode)?;
        self.admin(Method::POST, "/sync", &[], Some(&body)).await
    }

    /// `GET /admin/runs/{run}`: where a sync or reconcile and its changes stand.
    pub async fn run(&self, id: &str) -> Result<RunStatus, ClientError> {
        self.admin(Method::GET, &format!("/runs/{}", seg(id)), &[], None)
            .await
    }

    /// `POST /admin/sync` with `"plan": true`: what the sync (or reconcile) would send,
    /// sent nowhere.
    pub async fn plan_sync(&self, request: &SyncRequest) -> Result<PlanReport, ClientError> {
        let mut request = request.clone();
        request.plan = true;
        request.wait = None;
        let body = serde_json::to_value(&request).map_err(ClientError::Decode)?;
        let answer: SyncPlanned = self.admin(Method::POST, "/sync", &[], Some(&body)).await?;
        Ok(answer.plan)
    }

    /// `POST /admin/sync` with `reconcile`: the target reconciled now.
    pub async fn reconcile(&self, target: &str) -> Result<ReconcileReport, ClientError> {
        let request = SyncRequest {
            target: target.to_string(),
            reconcile: true,
            ..SyncRequest::default()
        };
        let body = serde_json::to_value(&request).map_err(ClientError::Decode)?;
        let answer: SyncReconciled = self.admin(Method::POST, "/sync", &[], Some(&body)).await?;
        Ok(answer.reconcile)
    }

    /// `POST /admin/schedule/run?budget=`: one scheduled cycle now.
    pub async fn run_schedule(&self, budget_secs: u64) -> Result<CycleReport, ClientError> {
        let q = [("budget", budget_secs.to_string())];
        self.admin(Method::POST, "/schedule/run", &q, None).await
    }

    /// `GET /admin/deadletters?limit=`.
    pub async fn dead_letters(&self, limit: Option<usize>) -> Result<DeadLetters, ClientError> {
        self.admin(Method::GET, "/deadletters", &limit_query(limit), None)
            .await
    }

    /// `POST /admin/deadletters/redrive?limit=`.
    pub async fn redrive(&self, limit: Option<usize>) -> Result<Redriven, ClientError> {
        self.admin(
            Method::POST,
            "/deadletters/redrive",
            &limit_query(limit),
            None,
        )
        .await
    }

    /// `GET /admin/targets/{id}/held`: deprovisions the target's guard held.
    pub async fn held(&self, target: &str) -> Result<HeldList, ClientError> {
        self.admin(
            Method::GET,
            &format!("/targets/{}/held", seg(target)),
            &[],
            None,
        )
        .await
    }

    /// `POST /admin/targets/{id}/held/release`: sends them (`ids`: those; `None`: all).
    pub async fn release_held(
        &self,
        target: &str,
        ids: Option<Vec<String>>,
    ) -> Result<HeldReleased, ClientError> {
        let body = serde_json::to_value(HeldIds { ids }).map_err(ClientError::Decode)?;
        self.admin(
            Method::POST,
            &format!("/targets/{}/held/release", seg(target)),
            &[],
            Some(&body),
        )
        .await
    }

    /// `POST /admin/targets/{id}/held/discard`: drops them (`ids`: those; `None`: all).
    pub async fn discard_held(
        &self,
        target: &str,
        ids: Option<Vec<String>>,
    ) -> Result<HeldDiscarded, ClientError> {
        let body = serde_json::to_value(HeldIds { ids }).map_err(ClientError::Decode)?;
        self.admin(
            Method::POST,
            &format!("/targets/{}/held/discard", seg(target)),
            &[],
            Some(&body),
        )
        .await
    }

    /// `POST /admin/targets/{id}/undo`: the inverse of the deprovisions journaled since
    /// `since`, planned or applied.
    pub async fn undo(
        &self,
        target: &str,
        since: &str,
        apply: bool,
    ) -> Result<UndoReport, ClientError> {
        let body = serde_json::to_value(UndoRequest {
            since: since.to_string(),
            apply,
        })
        .map_err(ClientError::Decode)?;
        self.admin(
            Method::POST,
            &format!("/targets/{}/undo", seg(target)),
            &[],
            Some(&body),
        )
        .await
    }

    /// `POST /admin/tokens`: a new token (its secret is in the answer, this once).
    pub async fn create_token(&self, scope: &str, name: &str) -> Result<TokenCreated, ClientError> {
        let body = serde_json::to_value(TokenRequest {
            scope: scope.to_string(),
            name: name.to_string(),
        })
        .map_err(ClientError::Decode)?;
        self.admin(Method::POST, "/tokens", &[], Some(&body)).await
    }

    /// `GET /admin/tokens`: the stored tokens, without their secrets.
    pub async fn tokens(&self) -> Result<TokenList, ClientError> {
        self.admin(Method::GET, "/tokens", &[], None).await
    }

    /// `DELETE /admin/tokens/{id}`.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.admin_json(Method::DELETE, &format!("/tokens/{}", seg(id)), &[], None)
            .await
            .map(drop)
    }

    /// `POST /admin/tokens/revoke`: a token revoked by its secret.
    pub async fn revoke_token_secret(&self, token: &str) -> Result<(), ClientError> {
        let body = serde_json::to_value(TokenRevoke {
            token: token.to_string(),
        })
        .map_err(ClientError::Decode)?;
        self.admin_json(Method::POST, "/tokens/revoke", &[], Some(&body))
            .await
            .map(drop)
    }

    // ---- the SCIM API --------------------------------------------------------------

    /// Sends a SCIM request (`path` under the SCIM root, query included): the status and
    /// the body as JSON (`null` when it is not JSON). Statuses are the caller's to judge.
    pub async fn scim(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.scim_root, path))
            .bearer_auth(&self.token)
            .header("Accept", "application/scim+json");
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(ClientError::Transport)?;
        let status = resp.status().as_u16();
        let v = resp.json().await.unwrap_or(Value::Null);
        Ok((status, v))
    }
}

fn limit_query(limit: Option<usize>) -> Vec<(&'static str, String)> {
    limit
        .map(|l| vec![("limit", l.to_string())])
        .unwrap_or_default()
}

/// A path segment: ids are validated by the hub; anything that would change the path is
/// percent-encoded.
pub fn seg(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("crm-1_a"), "crm-1_a");
        assert_eq!(seg("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn roots() {
        let c = HubClient::new("http://127.0.0.1:8787/", "t").unwrap();
        assert_eq!(c.admin_root, "http://127.0.0.1:8787/admin");
        assert_eq!(c.scim_root(), "http://127.0.0.1:8787/scim/v2");
        let c = HubClient::for_scim_root("http://h/scim/v2/", "t").unwrap();
        assert_eq!(c.admin_root, "http://h/admin");
        assert_eq!(c.scim_root(), "http://h/scim/v2");
    }
}
