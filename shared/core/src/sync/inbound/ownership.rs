//! What a source may touch: the source link (source id + the site's id -> hub id) records
//! how the source came to hold the hub resource, and that decides what it may do.
//!
//! | how linked | found by | the source's upsert | the source's delete |
//! |---|---|---|---|
//! | [`Ownership::Created`] | it created it | updates within `allowed_fields` | deletes it |
//! | [`Ownership::Adopted`] | `userName` / `displayName`, with `adopt_existing` | updates within `allowed_fields` | unlinks it (kept) |
//! | [`Ownership::Delivered`] | the hub sends it to the source's twin webhook target | updates within `allowed_fields` | unlinks it (kept) |
//!
//! A source's item with no live link is created; if its `userName` (group:
//! `displayName`) is taken by a hub resource the source may not claim, the upsert is
//! refused ([`InboundError::Conflict`]): never a silent takeover. A delete with no live
//! link changes nothing (it never looks resources up by name).

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Inbound, InboundError, directory_error, unavailable};
use crate::directory::keys::UniqueAttr;
use crate::directory::{DirectoryError, Stored};
use crate::source::{Direction, SourceConfig};
use crate::store::{Key, keyspace};
use crate::sync::mapping::in_scope;
use crate::target::{TargetConfig, TargetKind};
use provisync_scim::ResourceKind;

/// How a source came to be linked to a hub user or group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// The source created it: its delete deletes it.
    Created,
    /// It existed and the source adopted it by name (`adopt_existing`): its delete only
    /// unlinks it.
    Adopted,
    /// The hub delivers it to the webhook target with the source's id (a bidirectional
    /// site re-emitting what it received): its delete only unlinks it.
    Delivered,
}

impl Ownership {
    /// May the source's delete remove the hub resource (rather than only unlink it)?
    pub fn may_delete(self) -> bool {
        match self {
            Ownership::Created => true,
            Ownership::Adopted | Ownership::Delivered => false,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Ownership::Created => "created",
            Ownership::Adopted => "adopted",
            Ownership::Delivered => "delivered",
        }
    }
}

/// What in the source's data found an existing hub resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchedBy {
    #[serde(rename = "userName")]
    UserName,
    #[serde(rename = "displayName")]
    DisplayName,
    /// The hub `id` a bidirectional site received from the hub.
    #[serde(rename = "id")]
    HubId,
}

impl MatchedBy {
    fn as_str(self) -> &'static str {
        match self {
            MatchedBy::UserName => "userName",
            MatchedBy::DisplayName => "displayName",
            MatchedBy::HubId => "the hub id",
        }
    }
}

/// Links written before ownership was recorded: the safe reading, a delete unlinks.
fn legacy_ownership() -> Ownership {
    Ownership::Adopted
}

/// The source link of a site's user or group, with the last `occurred_at` applied from
/// that source (kept after a delete or an unlink as a tombstone: `hub_id` null).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct SourceLink {
    pub hub_id: Option<String>,
    pub occurred_at: String,
    #[serde(default = "legacy_ownership")]
    pub ownership: Ownership,
    /// When the hub linked them (RFC 3339, the hub's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_at: Option<String>,
    /// What found the existing resource (adopted or delivered ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<MatchedBy>,
}

impl SourceLink {
    /// The live hub id (none for a tombstone).
    pub fn live(&self) -> Option<&str> {
        self.hub_id.as_deref()
    }
}

pub(super) fn source_link_key(source: &str, kind: ResourceKind, site_id: &str) -> Key {
    Key::new(
        format!("{}{source}#{}#{site_id}", keyspace::SRCLINK, kind.as_str()),
        "SRCLINK",
    )
}

/// The link after a delete or an unlink at `occurred_at`: no hub id, the rest kept (a
/// change of the same item no newer than this is stale).
pub(super) fn tombstone(held: Option<&SourceLink>, occurred_at: &str) -> SourceLink {
    SourceLink {
        hub_id: None,
        occurred_at: occurred_at.to_string(),
        ownership: held.map_or(Ownership::Created, |l| l.ownership),
        linked_at: held.and_then(|l| l.linked_at.clone()),
        matched_by: held.and_then(|l| l.matched_by),
    }
}

/// How the hub resource an upsert will write came to be this source's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Claim {
    pub ownership: Ownership,
    /// `None`: through the existing link, or created.
    pub matched_by: Option<MatchedBy>,
    /// A new link (created, adopted or delivered now) rather than the one stored.
    pub new_link: bool,
}

impl Claim {
    /// The audit wording of a new link to an existing resource (`None` otherwise).
    pub fn describe(&self, source: &SourceConfig, kind: ResourceKind) -> Option<String> {
        let by = self.matched_by?;
        let noun = match kind {
            ResourceKind::User => "user",
            ResourceKind::Group => "group",
        };
        Some(match self.ownership {
            Ownership::Adopted => format!(
                "adopted the existing {noun} found by {} (adopt_existing)",
                by.as_str()
            ),
            Ownership::Delivered => format!(
                "linked: the hub delivers this {noun} to target {}, found by {}",
                source.id,
                by.as_str()
            ),
            Ownership::Created => format!("linked ({})", Ownership::Created.as_str()),
        })
    }

    /// The link to store for this claim, at `occurred_at`.
    pub fn link(
        &self,
        held: Option<&SourceLink>,
        hub_id: Option<&str>,
        occurred_at: &str,
    ) -> SourceLink {
        let (linked_at, matched_by) = match (self.new_link, held) {
            (false, Some(l)) => (l.linked_at.clone(), l.matched_by),
            _ => (Some(Utc::now().to_rfc3339()), self.matched_by),
        };
        SourceLink {
            hub_id: hub_id.map(str::to_string),
            occurred_at: occurred_at.to_string(),
            ownership: self.ownership,
            linked_at,
            matched_by,
        }
    }
}

/// Where the source's link leads.
pub(super) enum Linked {
    /// No link, or a tombstone.
    Nothing,
    /// A live link to a resource the hub has.
    Present(Stored, Ownership),
    /// A live link to a resource the hub no longer has (deleted since).
    Gone(String),
}

/// The hub sends users and groups to this target: an enabled webhook target with
/// `user_sync` (the rule of the delivery engine's `envelope_for`).
fn sends_users_to(t: &TargetConfig) -> bool {
    t.enabled && matches!(&t.kind, TargetKind::Webhook(w) if w.user_sync)
}

impl Inbound {
    /// The source's link of a site's item, with its version.
    pub(super) async fn read_link(
        &self,
        source: &SourceConfig,
        kind: ResourceKind,
        site_id: &str,
    ) -> Result<Option<(SourceLink, u64)>, InboundError> {
        Ok(self
            .store()
            .get(&source_link_key(&source.id, kind, site_id))
            .await
            .map_err(unavailable)?
            .and_then(|item| {
                serde_json::from_slice::<SourceLink>(&item.data)
                    .ok()
                    .map(|l| (l, item.version))
            }))
    }

    /// The hub resource a live link leads to.
    pub(super) async fn follow(
        &self,
        kind: ResourceKind,
        link: Option<&SourceLink>,
    ) -> Result<Linked, InboundError> {
        let Some(l) = link else {
            return Ok(Linked::Nothing);
        };
        let Some(hub_id) = l.live() else {
            return Ok(Linked::Nothing);
        };
        match self.directory.load(kind, hub_id).await {
            Ok(s) => Ok(Linked::Present(s, l.ownership)),
            Err(DirectoryError::NotFound { .. }) => Ok(Linked::Gone(hub_id.to_string())),
            Err(e) => Err(directory_error(e)),
        }
    }

    /// The webhook target with this bidirectional source's id, when the hub delivers
    /// users and groups to it. (What it delivers there counts as linked to the source.)
    async fn twin(&self, source: &SourceConfig) -> Result<Option<TargetConfig>, InboundError> {
        if source.direction != Direction::Bidirectional {
            return Ok(None);
        }
        Ok(self
            .targets
            .get(&source.id)
            .await
            .map_err(unavailable)?
            .filter(sends_users_to))
    }

    /// Does the hub deliver `s` to the source's twin target (`twin`): sent there at all,
    /// and in that target's `scope_filter`? Only then is it the source's to edit: a site
    /// scoped to contractors must not claim, or keep editing, a user it is not sent.
    pub(super) fn delivered_to(
        &self,
        twin: Option<&TargetConfig>,
        kind: ResourceKind,
        s: &Stored,
    ) -> bool {
        twin.is_some_and(|t| in_scope(self.directory.schemas(), t, kind, &s.resource))
    }

    /// A link of [`Ownership::Delivered`] still holds: the hub still sends the resource
    /// to the source's twin target (it may have left that target's scope since).
    pub(super) async fn still_delivered(
        &self,
        source: &SourceConfig,
        kind: ResourceKind,
        s: &Stored,
    ) -> Result<bool, InboundError> {
        let twin = self.twin(source).await?;
        Ok(self.delivered_to(twin.as_ref(), kind, s))
    }

    /// An upsert with no live link: the hub resource its data names (a bidirectional
    /// site's re-emission by the hub `id` it received, else the unique name), and whether
    /// the source may claim it. `Ok(None)`: nothing by that name, create.
    pub(super) async fn claim_existing(
        &self,
        source: &SourceConfig,
        kind: ResourceKind,
        data: &Map<String, Value>,
    ) -> Result<Option<(Stored, Claim)>, InboundError> {
        let by_id = match data.get("id") {
            Some(Value::String(id)) => Some(id),
            _ => None,
        };
        // (the twin target is read only when the data names something)
        let mut twin = None;
        if let Some(hub_id) = by_id
            && twin.insert(self.twin(source).await?).is_some()
        {
            match self.directory.load(kind, hub_id).await {
                // Only what the hub sends the site: else it is found by name, as any
                // source's item is.
                Ok(s) if self.delivered_to(twin.as_ref().and_then(Option::as_ref), kind, &s) => {
                    return Ok(Some((
                        s,
                        Claim {
                            ownership: Ownership::Delivered,
                            matched_by: Some(MatchedBy::HubId),
                            new_link: true,
                        },
                    )));
                }
                Ok(_) | Err(DirectoryError::NotFound { .. }) => {}
                Err(e) => return Err(directory_error(e)),
            }
        }
        let (attr, name, by) = match kind {
            ResourceKind::User => (UniqueAttr::UserName, "userName", MatchedBy::UserName),
            ResourceKind::Group => (
                UniqueAttr::DisplayName,
                "displayName",
                MatchedBy::DisplayName,
            ),
        };
        let Some(value) = data.get(name).and_then(Value::as_str) else {
            return Ok(None);
        };
        let Some(found) = self
            .directory
            .find_unique(kind, attr, value)
            .await
            .map_err(directory_error)?
        else {
            return Ok(None);
        };
        let twin = match twin {
            Some(t) => t,
            None => self.twin(source).await?,
        };
        let ownership = if self.delivered_to(twin.as_ref(), kind, &found) {
            Ownership::Delivered
        } else if source.adopt_existing {
            Ownership::Adopted
        } else {
            return Err(InboundError::Conflict(format!(
                "a hub {} with this {name} exists that this source did not create and is not linked to; \
                 a source adopts existing ones only with adopt_existing",
                match kind {
                    ResourceKind::User => "user",
                    ResourceKind::Group => "group",
                }
            )));
        };
        Ok(Some((
            found,
            Claim {
                ownership,
                matched_by: Some(by),
                new_link: true,
            },
        )))
    }
}
