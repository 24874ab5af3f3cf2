//! Record layout of the directory in the single table (see `infra/README.md`).
//!
//! | record            | pk                              | sk           | gsi1 (pk / sk)            |
//! |-------------------|---------------------------------|--------------|---------------------------|
//! | user              | `USER#{id}`                     | `USER`       | `RT#User` / `{id}`        |
//! | group             | `GROUP#{id}`                    | `GROUP`      | `RT#Group` / `{id}`       |
//! | membership        | `GROUP#{gid}`                   | `MEMBER#{id}`| `MEMBEROF#{id}` / `{gid}` |
//! | uniqueness key    | `UNIQ#{type}#{attr}#{value}`    | `UNIQ`       |                           |
//!
//! Ids are UUIDv7, so the `RT#` index lists resources in creation order. A membership is
//! its own item in the group's partition: adding or removing one member is one put or
//! delete, whatever the size of the group, and `MEMBEROF#` answers "which groups is this
//! member in" without reading any group. Uniqueness keys are strongly consistent point
//! reads: the `userName eq`/`externalId eq`/`displayName eq` lookups identity providers
//! make right after a create always see it (a GSI would be eventually consistent).

use crate::store::Key;
use crate::store::keyspace;
use provisync_scim::ResourceKind;

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

/// Partition of the type index (`gsi1`).
pub fn type_index_pk(kind: ResourceKind) -> String {
    format!("{}{}", keyspace::RESOURCE_TYPE, kind.as_str())
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
