//! Record layout of the directory in the single table (see `infra/README.md`).
//!
//! | record            | pk                           | sk            | gsi1 (pk / sk)                 | gsi2 (pk / sk)                      |
//! |-------------------|------------------------------|---------------|--------------------------------|-------------------------------------|
//! | user              | `USER#{id}`                  | `USER`        | `RT#User#{s}` / `{id}`         | `LM#User#{s}` / `{lastModified}#{id}` |
//! | group             | `GROUP#{id}`                 | `GROUP`       | `RT#Group#{s}` / `{id}`        | `LM#Group#{s}` / `{lastModified}#{id}` |
//! | membership        | `GROUP#{gid}`                | `MEMBER#{id}` | `MEMBEROF#{id}` / `{gid}`      |                                     |
//! | uniqueness key    | `UNIQ#{type}#{attr}#{value}` | `UNIQ`        |                                |                                     |
//! | count shard       | `COUNT#{type}#{nn}`          | `COUNT`       |                                |                                     |
//! | layout marker     | `META#LAYOUT`                | `LAYOUT`      |                                |                                     |
//! | remembered page   | `PAGEAT#{query hash}`        | `{startIndex, 12 digits}` |                    |                                     |
//!
//! Ids are UUIDv7, so the type index (`RT#`) lists resources in creation order. It is
//! split into [`INDEX_SHARDS`] partitions (`{s}` = [`shard_of`] the id) so that bulk
//! provisioning writes to eight index partitions, not one; a listing queries the shards
//! and merges them in id order. The last-modified index (`LM#`, same shards) orders
//! resources by `meta.lastModified` (UTC, microseconds, fixed width: [`instant_key`]) for
//! `meta.lastModified gt|ge` filters. Stores written before these indexes had one `RT#User`
//! / `RT#Group` partition and no `LM#` entries: `provisync migrate` moves them (the
//! directory reads both layouts until the marker says the move is done).
//!
//! The number of resources of a type is the sum of [`COUNT_SHARDS`] counters, each
//! changed atomically (`Write::Add`) in the transaction that creates or deletes a
//! resource, on a shard picked at random so that no counter item is a write hot spot.
//!
//! A membership is its own item in the group's partition: adding or removing one member is
//! one put or delete, whatever the size of the group, and `MEMBEROF#` answers "which
//! groups is this member in" without reading any group. Uniqueness keys are strongly
//! consistent point reads: the `userName eq`/`externalId eq`/`displayName eq` lookups
//! identity providers make right after a create always see it (a GSI would be eventually
//! consistent).

use crate::store::Key;
use crate::store::keyspace;
use chrono::{DateTime, Utc};
use provisync_scim::ResourceKind;
use serde_json::Value;

/// Partitions of the type index and of the last-modified index.
pub const INDEX_SHARDS: usize = 8;
/// Counter items of one resource type's count.
pub const COUNT_SHARDS: usize = 16;

pub fn resource_pk(kind: ResourceKind, id: &str) -> String {
    match kind {
        ResourceKind::User => format!("{}{id}", keyspace::USER),
        ResourceKind::Group => format!("{}{id}", keyspace::GROUP),
    }
}

pub fn resource_sk(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => "USER",
        ResourceKind::Group => "GROUP",
    }
}

pub fn resource_key(kind: ResourceKind, id: &str) -> Key {
    Key::new(resource_pk(kind, id), resource_sk(kind))
}

/// The index shard of a resource: FNV-1a of its id (stable across versions and
/// processes, unlike the standard library's hasher).
pub fn shard_of(id: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % INDEX_SHARDS as u64) as usize
}

/// One partition of the type index (`gsi1`): `RT#{type}#{shard}`.
pub fn type_index_pk(kind: ResourceKind, shard: usize) -> String {
    format!("{}{}#{shard}", keyspace::RESOURCE_TYPE, kind.as_str())
}

/// The single type index partition of the layout before shards (`RT#{type}`): read until
/// the store is migrated.
pub fn legacy_type_index_pk(kind: ResourceKind) -> String {
    format!("{}{}", keyspace::RESOURCE_TYPE, kind.as_str())
}

/// One partition of the last-modified index (`gsi2`): `LM#{type}#{shard}`.
pub fn modified_index_pk(kind: ResourceKind, shard: usize) -> String {
    format!("{}{}#{shard}", keyspace::MODIFIED, kind.as_str())
}

/// An instant as the last-modified index orders it: UTC, microseconds, fixed width, so
/// that the order of the strings is the order of the instants.
pub fn instant_key(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Parses an RFC 3339 instant (or one without a zone, taken as UTC, as the filter does).
pub fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

/// The resource's sort key in the last-modified index: `{instant}#{id}`; a resource
/// without a readable `meta.lastModified` sorts first (`#{id}`), before every instant.
pub fn modified_index_sk(resource: &Value, id: &str) -> String {
    let at = resource
        .pointer("/meta/lastModified")
        .and_then(Value::as_str)
        .and_then(parse_instant)
        .map(instant_key)
        .unwrap_or_default();
    format!("{at}#{id}")
}

/// One counter item of a type's count.
pub fn count_key(kind: ResourceKind, shard: usize) -> Key {
    Key::new(
        format!("{}{}#{shard:02}", keyspace::COUNT, kind.as_str()),
        "COUNT",
    )
}

/// The layout marker: which key layout the directory's items are in.
pub fn layout_key() -> Key {
    Key::new(format!("{}LAYOUT", keyspace::META), "LAYOUT")
}

/// Where the page at `start_index` of one query starts, remembered for index paging.
pub fn page_at_key(query_hash: &str, start_index: usize) -> Key {
    Key::new(
        format!("{}{query_hash}", keyspace::PAGE_AT),
        page_at_sk(start_index),
    )
}

pub fn page_at_sk(start_index: usize) -> String {
    format!("{start_index:012}")
}

pub const MEMBER_SK_PREFIX: &str = keyspace::MEMBER_SK;

pub fn member_key(group_id: &str, member_id: &str) -> Key {
    Key::new(
        resource_pk(ResourceKind::Group, group_id),
        format!("{MEMBER_SK_PREFIX}{member_id}"),
    )
}

pub fn member_of_pk(member_id: &str) -> String {
    format!("{}{member_id}", keyspace::MEMBER_OF)
}

/// The attributes with a uniqueness key, per resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniqueAttr {
    UserName,
    DisplayName,
    ExternalId,
}

impl UniqueAttr {
    pub fn for_kind(kind: ResourceKind) -> &'static [UniqueAttr] {
        match kind {
            ResourceKind::User => &[UniqueAttr::UserName, UniqueAttr::ExternalId],
            ResourceKind::Group => &[UniqueAttr::DisplayName, UniqueAttr::ExternalId],
        }
    }

    pub fn attr_name(self) -> &'static str {
        match self {
            UniqueAttr::UserName => "userName",
            UniqueAttr::DisplayName => "displayName",
            UniqueAttr::ExternalId => "externalId",
        }
    }

    /// `userName` and group `displayName` are case-insensitive (RFC 7643 §4.1.1 for
    /// userName; displayName we treat the same so "Sales" and "sales" cannot coexist);
    /// `externalId` is case-exact (RFC 7643 §3.1).
    pub fn normalise(self, value: &str) -> String {
        match self {
            UniqueAttr::UserName | UniqueAttr::DisplayName => value.to_lowercase(),
            UniqueAttr::ExternalId => value.to_string(),
        }
    }

    pub fn key(self, kind: ResourceKind, value: &str) -> Key {
        Key::new(
            format!(
                "{}{}#{}#{}",
                keyspace::UNIQ,
                kind.as_str(),
                self.attr_name(),
                self.normalise(value)
            ),
            "UNIQ",
        )
    }

    /// The current value of this attribute in a stored resource.
    pub fn value_in(self, resource: &serde_json::Value) -> Option<&str> {
        resource.get(self.attr_name()).and_then(|v| v.as_str())
    }
}
