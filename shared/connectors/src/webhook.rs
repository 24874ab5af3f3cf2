//! Webhook targets (sites): every change the hub makes is POSTed to the site as the same
//! envelope sites send the hub (`{"type","occurred_at","data"}`, see
//! [`provisync_core::sync::inbound`]), signed the Standard Webhooks way with the target's own
//! secret. The delivery engine sends each change event with `webhook-id` = the event id,
//! stable across retries, so a site can drop duplicates.
//!
//! Answers: 2xx delivered; 410 the site is gone (the engine disables the target); 408,
//! 429, 5xx, timeouts retried (with `Retry-After`); any other status is a refusal.

use async_trait::async_trait;
use reqwest::Method;
use reqwest::Url;
use serde_json::{Value, json};

use crate::http::{HttpClient, error_for};
use provisync_core::connector::{Connector, ConnectorError, SetupError, TargetId};
use provisync_core::target::WebhookTarget;
use provisync_core::webhook_sig::{decode_standard_secret, sign_standard};

/// Sends signed envelopes to one site.
pub struct WebhookSender {
    http: HttpClient,
    url: Url,
    key: Vec<u8>,
    target: WebhookTarget,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

pub use provisync_core::sync::envelope::envelope_for;

impl WebhookSender {
    pub fn new(target: &WebhookTarget) -> Result<Self, SetupError> {
        let url = crate::http::check_target_url(&target.url)
            .map_err(|e| SetupError(format!("url: {e}")))?;
        let key = decode_standard_secret(&target.secret)
            .map_err(|e| SetupError(format!("secret is not a Standard Webhooks secret: {e}")))?;
        let http = HttpClient::shared().map_err(SetupError::from_display)?;
        Ok(WebhookSender {
            http,
            url,
            key,
            target: target.clone(),
        })
    }

    pub fn target(&self) -> &WebhookTarget {
        &self.target
    }

    /// POSTs one envelope, signed, with `webhook-id` = `delivery_id`.
    pub async fn send(&self, delivery_id: &str, envelope: &Value) -> Result<(), ConnectorError> {
        let body = serde_json::to_vec(envelope).map_err(|e| ConnectorError::Refused {
            status: None,
            reason: format!("envelope encoding: {e}"),
        })?;
        let ts = chrono::Utc::now().timestamp();
        let signature = sign_standard(&self.key, delivery_id, ts, &body);
        let req = self
            .http
            .request(Method::POST, self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", delivery_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body);
        let resp = self.http.send(req).await?;
        if resp.is_success() {
            return Ok(());
        }
        match error_for(&resp, None) {
            // A site without this endpoint: a configuration error, not a missing object.
            ConnectorError::NotFound => Err(ConnectorError::Refused {
                status: Some(404),
                reason: "the site has no webhook endpoint at this URL (404)".into(),
            }),
            ConnectorError::Conflict(r) => Err(ConnectorError::Refused {
                status: Some(409),
                reason: r,
            }),
            e => Err(e),
        }
    }

    /// An operation outside the delivery engine (reconcile, tests): the envelope of a
    /// user or group state, with a fresh delivery id.
    async fn send_state(&self, kind: &str, data: Value) -> Result<(), ConnectorError> {
        let envelope = json!({
            "type": kind,
            "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        });
        self.send(&uuid::Uuid::now_v7().to_string(), &envelope)
            .await
    }
}

/// Sites are addressed by the hub's ids: the id on the "target" is the hub id carried in
/// the data (`id`).
fn hub_id(v: &Value) -> TargetId {
    v.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[async_trait]
impl Connector for WebhookSender {
    async fn relay(&self, event_id: &str, envelope: &Value) -> Result<(), ConnectorError> {
        self.send(event_id, envelope).await
    }

    /// Reachability: the site answers at all (any status below 500 to a GET).
    async fn test(&self) -> Result<String, ConnectorError> {
        let resp = self
            .http
            .send(self.http.request(Method::GET, self.url.clone()))
            .await?;
        if resp.status.is_server_error() {
            return Err(error_for(&resp, None));
        }
        Ok(format!(
            "the site answers at {} (HTTP {})",
            self.url.host_str().unwrap_or_default(),
            resp.status.as_u16()
        ))
    }

    async fn find_user(&self, _user: &Value) -> Result<Option<TargetId>, ConnectorError> {
        // A site keeps its own ids; upserts match by `id` / `userName` on its side.
        Ok(None)
    }

    async fn create_user(
        &self,
        user: &Value,
        _password: Option<&str>,
    ) -> Result<TargetId, ConnectorError> {
        self.send_state("user.upsert", user.clone()).await?;
        Ok(hub_id(user))
    }

    async fn update_user(
        &self,
        _id: &str,
        user: &Value,
        _previous: Option<&Value>,
        _password: Option<&str>,
    ) -> Result<Option<TargetId>, ConnectorError> {
        self.send_state("user.upsert", user.clone()).await?;
        Ok(None)
    }

    async fn disable_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.send_state("user.upsert", json!({"id": id, "active": false}))
            .await
    }

    async fn delete_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.send_state("user.delete", json!({"id": id})).await
    }

    async fn find_group(&self, _group: &Value) -> Result<Option<TargetId>, ConnectorError> {
        Ok(None)
    }

    async fn create_group(&self, group: &Value) -> Result<TargetId, ConnectorError> {
        self.send_state("group.upsert", group.clone()).await?;
        Ok(hub_id(group))
    }

    async fn update_group(
        &self,
        _id: &str,
        group: &Value,
        _previous: Option<&Value>,
    ) -> Result<(), ConnectorError> {
        self.send_state("group.upsert", group.clone()).await
    }

    async fn delete_group(&self, id: &str) -> Result<(), ConnectorError> {
        self.send_state("group.delete", json!({"id": id})).await
    }

    async fn add_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError> {
        let members: Vec<Value> = member_ids.iter().map(|m| json!({"value": m})).collect();
        self.send_state(
            "group.upsert",
            json!({"id": group_id, "members_added": members}),
        )
        .await
    }

    async fn remove_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError> {
        let members: Vec<Value> = member_ids.iter().map(|m| json!({"value": m})).collect();
        self.send_state(
            "group.upsert",
            json!({"id": group_id, "members_removed": members}),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn target(v: Value) -> WebhookTarget {
        let mut base = json!({"url": "https://site.example/hook", "secret": SECRET});
        for (k, x) in v.as_object().unwrap() {
            base[k] = x.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn secrets_never_show() {
        let t = target(json!({}));
        let sender = WebhookSender::new(&t).unwrap();
        let shown = format!("{t:?} {sender:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(WebhookSender::new(&target(json!({"secret": "plain-text-secret"}))).is_err());
        assert!(WebhookSender::new(&target(json!({"url": "http://example.org/hook"}))).is_err());
    }
}
