//! One running peer per kind of target, each accepting only its own credential, and a
//! definition of each kind that authenticates against it: what the secrets tests
//! (`tests/secrets.rs`, `tests/cli_targets.rs`) edit and then prove still works.

use aws_config::{BehaviorVersion, Region};
use serde_json::{Value, json};

use super::crowd::FakeCrowd;
use super::graph::{FakeGraph, TENANT};
use super::okta::FakeOkta;
use super::peers::ScimPeer;
use super::salesforce::FakeSalesforce;
use super::site::Site;

/// The Standard Webhooks secret of the site (the reference secret of the spec).
pub const SITE_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A peer for every kind of target.
pub struct EveryKind {
    pub scim: ScimPeer,
    pub crowd: FakeCrowd,
    pub okta: FakeOkta,
    pub graph: FakeGraph,
    pub salesforce: FakeSalesforce,
    pub site: Site,
    /// moto's endpoint and a user pool on it (cognito stores no secret).
    pub cognito: Option<(String, String)>,
}

impl EveryKind {
    /// `None` when `scim2-server` is not available in this run (a failure under
    /// `PROVISYNC_REQUIRE_PEERS`, as for every peer).
    pub async fn start() -> Option<EveryKind> {
        let scim = ScimPeer::start().await?;
        let cognito = match std::env::var("PROVISYNC_TEST_MOTO") {
            Ok(endpoint) if !endpoint.is_empty() => {
                let pool = cognito_pool(&endpoint).await;
                Some((endpoint, pool))
            }
            _ => None,
        };
        Some(EveryKind {
            scim,
            crowd: FakeCrowd::start().await,
            okta: FakeOkta::start().await,
            graph: FakeGraph::start().await,
            salesforce: FakeSalesforce::start().await,
            site: Site::start(SITE_SECRET).await,
            cognito,
        })
    }

    /// `(id, definition)` of every kind (the id is the kind's name). All but the site are
    /// `manual`: only the site receives changes as they happen (its delivery proves its
    /// secret, which a connection test does not use).
    pub fn definitions(&self) -> Vec<(&'static str, Value)> {
        let mut defs = vec![
            (
                "scim",
                json!({"kind": "scim", "base_url": self.scim.base,
                       "auth": {"bearer": self.scim.token}, "mode": "manual"}),
            ),
            (
                "crowd",
                json!({"kind": "crowd", "base_url": self.crowd.base,
                       "application": self.crowd.application, "password": self.crowd.password,
                       "mode": "manual"}),
            ),
            (
                "okta",
                json!({"kind": "okta", "base_url": self.okta.base, "token": self.okta.token,
                       "mode": "manual"}),
            ),
            (
                "entra",
                json!({"kind": "entra", "tenant_id": TENANT, "client_id": self.graph.client_id,
                       "client_secret": self.graph.client_secret, "graph_url": self.graph.base,
                       "login_url": self.graph.base, "mode": "manual"}),
            ),
            (
                "salesforce",
                json!({"kind": "salesforce", "instance_url": self.salesforce.base,
                       "client_id": self.salesforce.client_id,
                       "client_secret": self.salesforce.client_secret, "mode": "manual"}),
            ),
            (
                "webhook",
                json!({"kind": "webhook", "url": self.site.url(), "secret": SITE_SECRET,
                       "user_sync": true}),
            ),
        ];
        if let Some((endpoint, pool)) = &self.cognito {
            defs.push((
                "cognito",
                json!({"kind": "cognito", "user_pool_id": pool, "region": "us-east-1",
                       "endpoint_url": endpoint, "mode": "manual"}),
            ));
        }
        defs
    }

    /// Every secret the definitions hold (never to be seen in an answer).
    pub fn secrets(&self) -> Vec<String> {
        vec![
            self.scim.token.clone(),
            self.crowd.password.clone(),
            self.okta.token.clone(),
            self.graph.client_secret.clone(),
            self.salesforce.client_secret.clone(),
            SITE_SECRET.to_string(),
        ]
    }
}

/// A fresh user pool on moto.
async fn cognito_pool(endpoint: &str) -> String {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .load()
        .await;
    let client = aws_sdk_cognitoidentityprovider::Client::new(&conf);
    let out = client
        .create_user_pool()
        .pool_name(format!("provisync-{}", uuid::Uuid::new_v4().simple()))
        .send()
        .await
        .expect("create pool on moto");
    out.user_pool()
        .and_then(|p| p.id())
        .expect("pool id")
        .to_string()
}
