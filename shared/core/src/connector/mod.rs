//! The `Connector` port: create / update / disable / delete users and groups on one
//! target system, and group memberships. One adapter per target kind (`scim`, `crowd`,
//! ...), all driven by the same delivery engine
//! (`crate::sync::deliver`) with the same mapping, scoping, retries and audit.
//!
//! Payloads are SCIM-shaped JSON after the target's attribute mapping: each adapter
//! translates them to its system's API.

pub mod http;
pub mod quota;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

/// Builds connectors from target definitions (secrets already opened). A function
/// pointer so each entry point chooses which adapters it links (`provisync-connectors`
/// has them all) and tests substitute their own. The error is shown to operators: it
/// never quotes a secret.
pub type ConnectorFactory =
    fn(&crate::target::TargetConfig) -> Result<Arc<dyn Connector>, SetupError>;

/// Why no connector could be built for a target definition (a URL or secret the
/// connector cannot use, a kind this build does not link). The sentence is shown to
/// operators and never quotes a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

impl SetupError {
    /// From any error a connector's constructor returns.
    pub fn from_display(e: impl std::fmt::Display) -> SetupError {
        SetupError(e.to_string())
    }
}

/// The factory of a process that delivers nothing (the SCIM and webhook functions): every
/// target is refused.
pub fn no_connectors(
    target: &crate::target::TargetConfig,
) -> Result<Arc<dyn Connector>, SetupError> {
    Err(SetupError(format!(
        "target {}: this function does not deliver to targets",
        target.id
    )))
}

/// Why a call to a target failed. The engine decides from the variant alone whether to
/// retry (and when), to record a refusal, or to treat it as done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectorError {
    /// Try again later: 429, 5xx, timeouts, connection failures. `retry_after` from the
    /// `Retry-After` header or a vendor rate-limit header, when the target gave one.
    #[error("target unavailable ({detail})")]
    Retryable {
        status: Option<u16>,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// The target refused the request for a reason retrying will not change (4xx): the
    /// vendor's own reason, for the audit log. Never contains secrets.
    #[error("target refused: {reason}")]
    Refused { status: Option<u16>, reason: String },
    /// The object is not on the target (404 on update/delete).
    #[error("not found on the target")]
    NotFound,
    /// The object already exists (409 on create): the engine matches and links it.
    #[error("already exists on the target: {0}")]
    Conflict(String),
    /// The target is gone for good (410) or the configuration cannot work.
    #[error("target disabled: {0}")]
    Gone(String),
}

impl ConnectorError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnectorError::Retryable { .. })
    }
}

/// A reference to an object on the target: its id there.
pub type TargetId = String;

/// One page of what a target holds (reconcile reads the target through these).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListPage {
    /// The objects, SCIM-shaped (`id` is the target id).
    pub resources: Vec<Value>,
    /// Where the next page starts (opaque to the caller); `None`: this was the last.
    pub next: Option<String>,
}

/// A refusal the connector decides itself (no HTTP status): a payload the target cannot
/// take, a configuration that cannot work.
pub fn refused(reason: impl Into<String>) -> ConnectorError {
    ConnectorError::Refused {
        status: None,
        reason: reason.into(),
    }
}

/// The refusal of a connector that cannot list its target.
pub fn listing_unsupported() -> ConnectorError {
    refused("this kind of target cannot be listed: reconcile is not supported")
}

/// The target refused where a listing was (a cursor that expired between two runs): the
/// reconcile run starts over.
pub fn listing_position_lost() -> ConnectorError {
    refused(
        "the target no longer accepts the listing's position (an expired cursor): the run starts over",
    )
}

/// The trimmed, non-empty text at `path` (object keys, matched case-insensitively as SCIM
/// attribute names are) of a mapped payload.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in path {
        cur = cur.as_object().and_then(|o| {
            o.get(*k).or_else(|| {
                o.iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v)
            })
        })?;
    }
    cur.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// The `value` of the element of a multi-valued attribute whose `type` is `kind`; without
/// `kind`, of the primary element, else the first. Trimmed, non-empty.
pub fn typed_value<'a>(user: &'a Value, attr: &str, kind: Option<&str>) -> Option<&'a str> {
    let items = user.get(attr)?.as_array()?;
    let item = match kind {
        Some(k) => items
            .iter()
            .find(|i| i.get("type").and_then(Value::as_str) == Some(k)),
        None => items
            .iter()
            .find(|i| i.get("primary") == Some(&Value::Bool(true)))
            .or_else(|| items.first()),
    }?;
    item.get("value")?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The fields of `new` that differ from `old` (the payload last delivered), for a
/// partial update: fields gone since `old` are cleared (`null`) unless listed in
/// `never_cleared` (the target refuses null for them); fields in `always` are sent even
/// when unchanged (the status flag: a deactivation since `old` was delivered is not in
/// `old`). Without `old`, everything.
pub fn changed_fields(
    new: &serde_json::Map<String, Value>,
    old: Option<&serde_json::Map<String, Value>>,
    always: &[&str],
    never_cleared: &[&str],
) -> serde_json::Map<String, Value> {
    let Some(old) = old else {
        return new.clone();
    };
    let mut out = serde_json::Map::new();
    for (k, v) in new {
        if old.get(k) != Some(v) || always.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) && !never_cleared.contains(&k.as_str()) {
            out.insert(k.clone(), Value::Null);
        }
    }
    out
}

#[async_trait]
pub trait Connector: Send + Sync {
    /// Checks credentials and reachability ("Save and Test Credentials").
    async fn test(&self) -> Result<String, ConnectorError>;

    /// Does the target itself refuse a second account with the same matching attribute
    /// (409 on create)? Then the engine creates first and matches only on a conflict: one
    /// request per new account instead of a lookup and a create. Default: look up first.
    fn create_detects_existing(&self) -> bool {
        false
    }

    /// Finds an existing user by the target's matching attribute (default `userName`),
    /// so existing accounts are linked, not duplicated.
    async fn find_user(&self, user: &Value) -> Result<Option<TargetId>, ConnectorError>;

    /// One page of the users on the target, from `cursor` (`None`: the first page).
    /// Default: the target cannot be listed (reconcile reports it and moves on).
    async fn list_users(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let _ = cursor;
        Err(listing_unsupported())
    }

    /// One page of the groups on the target, as [`Connector::list_users`]. Each group
    /// carries `members` (`[{"value": <member's id on the target>}]`).
    async fn list_groups(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let _ = cursor;
        Err(listing_unsupported())
    }

    /// Whether a listing of `kind` can start without [`Connector::prepare_listing`]
    /// (what it reads is known, or there is nothing to read). Default: yes.
    fn listing_prepared(&self, kind: provisync_scim::ResourceKind) -> bool {
        let _ = kind;
        true
    }

    /// Reads what the first page of a listing of `kind` depends on (a SCIM target's
    /// `/ServiceProviderConfig`: whether it pages by cursor), as one request of its own,
    /// so that the pace (`crate::sync::paced`) gives it a slot rather than letting it ride
    /// in the first page's: a `max_rate` counts it, and a 429 on it teaches the pace. Done
    /// at most once per connector; the listing does it itself when nobody did. An error is
    /// the request's, for the pace: the listing goes on without what it would have read
    /// (the connector falls back, never reads it again). Default: nothing to read.
    async fn prepare_listing(
        &self,
        kind: provisync_scim::ResourceKind,
    ) -> Result<(), ConnectorError> {
        let _ = kind;
        Ok(())
    }

    /// The part of a mapped user or group (the payload the engine would send) that this
    /// target keeps, in the SCIM shape its listing returns: reconcile compares only this
    /// with the listed account, so attributes the target has no place for are never seen
    /// as drift. Default: all of it (a SCIM target keeps what it is sent).
    fn kept(&self, kind: provisync_scim::ResourceKind, mapped: &Value) -> Value {
        let _ = kind;
        mapped.clone()
    }
    /// Relays a change event to a site as its envelope ([`crate::sync::envelope`]),
    /// `event_id` naming the delivery across retries. Only webhook targets take them.
    async fn relay(&self, event_id: &str, envelope: &Value) -> Result<(), ConnectorError> {
        let _ = (event_id, envelope);
        Err(refused("this kind of target takes no relayed events"))
    }

    async fn create_user(
        &self,
        user: &Value,
        password: Option<&str>,
    ) -> Result<TargetId, ConnectorError>;
    /// `previous`: what was last delivered (lets adapters send a minimal PATCH).
    ///
    /// Returns the user's new id on the target when the update changed it (targets whose
    /// id is the user name, such as Crowd, rename the account): the engine then re-links
    /// the hub user to that id. `None`: the id is unchanged.
    async fn update_user(
        &self,
        id: &str,
        user: &Value,
        previous: Option<&Value>,
        password: Option<&str>,
    ) -> Result<Option<TargetId>, ConnectorError>;
    async fn disable_user(&self, id: &str) -> Result<(), ConnectorError>;
    async fn delete_user(&self, id: &str) -> Result<(), ConnectorError>;

    /// Finds a group by its (mapped) display name.
    async fn find_group(&self, group: &Value) -> Result<Option<TargetId>, ConnectorError>;
    /// Creates a group without members (members follow through `add_members`).
    async fn create_group(&self, group: &Value) -> Result<TargetId, ConnectorError>;
    async fn update_group(
        &self,
        id: &str,
        group: &Value,
        previous: Option<&Value>,
    ) -> Result<(), ConnectorError>;
    async fn delete_group(&self, id: &str) -> Result<(), ConnectorError>;
    /// How many members one [`Connector::add_members`] or [`Connector::remove_members`]
    /// call sends in one request (most targets take one member per request). The engine
    /// calls with at most this many, so that it can stop between requests when a
    /// delivery's time for members is spent (`sync/deliver_members.rs`). Default: 1.
    fn members_per_call(&self) -> usize {
        1
    }
    /// Member ids are the members' ids on the target (translated through the links).
    async fn add_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError>;
    async fn remove_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError>;
}
