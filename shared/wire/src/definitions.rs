//! Targets and sources (`/admin/targets`, `/admin/sources`), and the exports of entities
//! and configuration (`/admin/entities`, `/admin/config`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The media type of `PATCH /admin/targets/{id}` and `PATCH /admin/sources/{id}`: a JSON
/// merge patch (RFC 7396 §4) on the definition as `GET` shows it.
pub const MERGE_PATCH_JSON: &str = "application/merge-patch+json";

/// What a `GET` shows instead of a secret; sent back in a `PUT` or `PATCH`, it keeps the
/// stored secret.
pub const REDACTED: &str = "***";

fn yes() -> bool {
    true
}

/// `GET /admin/targets`: `{"targets": [...]}`, each a redacted definition (`T`: the
/// whole JSON object on the hub's side, a [`TargetSummary`] for a listing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetList<T = Value> {
    pub targets: Vec<T>,
}

/// The fields every kind of target has, as a listing shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSummary {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub mode: Option<String>,
    /// Kinds without a base URL (entra, salesforce, cognito, webhook) have none.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub scope_filter: Option<String>,
}

/// `POST /admin/targets/{id}/test`: how the connection test went (also audited).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetTest {
    pub target: String,
    pub ok: bool,
    pub detail: String,
    pub latency_ms: u64,
}

/// `POST /admin/sources/{id}/test`: a pull source reached with its auth, or, for a
/// source that only sends webhooks (`push_only`), when its last signed delivery was
/// accepted (also audited).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceTest {
    pub source: String,
    pub ok: bool,
    /// The hub never calls this source: it only receives its webhooks.
    pub push_only: bool,
    pub detail: String,
    /// When the newest signed webhook from it was accepted (RFC 3339), if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<String>,
    pub latency_ms: u64,
}

/// `GET /admin/targets/{id}/pace`: how fast delivery to a target goes, and how long what
/// waits for it will take.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetPace {
    pub target: String,
    /// Calls allowed in flight now (found by additive increase, multiplicative decrease).
    pub window: f64,
    /// Calls in flight now.
    pub in_flight: u32,
    /// Calls answered per second over the last 10 seconds.
    pub rate: f64,
    /// Deliveries to this target waiting for a slot (the backlog).
    pub backlog: u32,
    /// `backlog / rate`, seconds; absent when nothing is moving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_seconds: Option<f64>,
    /// 429/503/timeouts the target answered since the hub process started.
    pub slow_downs: u64,
    /// Calls per second the hub paces this target at, learned from its 429/503s (probed
    /// upward while none come); absent until the target refuses a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_rate: Option<f64>,
    /// Calls per second the target's quota headers advertise (IETF `RateLimit`, Okta's
    /// `X-Rate-Limit-*`): the hub paces at it from the first answers (or at the learned
    /// rate when lower); absent when the target advertises none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_rate: Option<f64>,
    /// Calls held by the target's `Retry-After` until this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// `process`: measured by the process that answers (`provisync serve`, where the
    /// deliverer runs); `stored`: the window and hold every delivering process shares
    /// (an admin function that delivers nothing itself).
    pub seen_by: String,
}

/// `GET /admin/sources`: `{"sources": [...]}`, each a redacted definition (secrets `"***"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceList<T = Value> {
    pub sources: Vec<T>,
}

/// The fields of a source a listing shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSummary {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub user_sync: bool,
    /// May the source adopt hub users and groups it did not create?
    #[serde(default)]
    pub adopt_existing: bool,
    #[serde(default)]
    pub entity_types: Vec<String>,
    #[serde(default)]
    pub config_prefixes: Vec<String>,
}

/// `GET /admin/entities`: a page of the full export of entities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntitiesPage<T = Value> {
    pub entities: Vec<T>,
    pub next_cursor: Option<String>,
}

/// `GET /admin/config`: a page of the full export of configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigPage<T = Value> {
    pub config: Vec<T>,
    pub next_cursor: Option<String>,
}
