//! Entity and configuration records: what sites replicate besides users and groups
//! (Drupal nodes, taxonomy terms, ... and configuration objects), kept in the hub so a new
//! site can be seeded with a full export (`GET /admin/entities`, `GET /admin/config`).
//!
//! | record  | pk                                        | sk       | gsi1 (pk / sk)                        |
//! |---------|-------------------------------------------|----------|---------------------------------------|
//! | entity  | `ENTITY#{type}#{uuid}` (`#{langcode}`)    | `ENTITY` | `ENTITIES` / `{type}#{uuid}#{langcode}` |
//! | config  | `CONFIG#{name}`                           | `CONFIG` | `CONFIGS` / `{name}`                  |
//!
//! A record keeps the `occurred_at` of the last change applied to it (last writer wins)
//! and, once deleted, stays as a tombstone (`deleted: true`) so an older upsert arriving
//! late cannot bring it back. Writes go through the directory's change-event path
//! ([`crate::directory::Directory::transact_change`]), in the same transaction as the
//! outbox item of their [`crate::event::ChangeEvent`].

use crate::store::keyspace;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Cursor, Index, Item, Key, Query, Store, StoreError};
use crate::validation::{ValidationError, invalid};

const ENTITIES_INDEX: &str = keyspace::ENTITIES;
const CONFIGS_INDEX: &str = keyspace::CONFIGS;
/// Longest entity type, uuid, langcode and configuration name accepted.
const MAX_TYPE_LEN: usize = 64;
const MAX_UUID_LEN: usize = 128;
const MAX_LANGCODE_LEN: usize = 16;
const MAX_CONFIG_NAME_LEN: usize = 250;

/// An entity as sites send it: `{"entity_type","uuid","langcode"?,"fields":{…},"changed"?}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntityData {
    pub entity_type: String,
    pub uuid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub langcode: Option<String>,
    #[serde(default)]
    pub fields: Value,
    /// The site's own change time, carried as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<Value>,
}

/// A configuration object: `{"name","value"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigData {
    pub name: String,
    #[serde(default)]
    pub value: Value,
}

fn plain(s: &str, max: usize, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

impl EntityData {
    /// Checks the identifying parts (they become a store key).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !plain(&self.entity_type, MAX_TYPE_LEN, b"_") {
            return Err(invalid(
                "entity_type",
                format!("entity_type must be 1 to {MAX_TYPE_LEN} letters, digits or '_'"),
            ));
        }
        if !plain(&self.uuid, MAX_UUID_LEN, b"-_.") {
            return Err(invalid(
                "uuid",
                format!("uuid must be 1 to {MAX_UUID_LEN} letters, digits, '-', '_' or '.'"),
            ));
        }
        if let Some(l) = &self.langcode
            && !plain(l, MAX_LANGCODE_LEN, b"-_")
        {
            return Err(invalid(
                "langcode",
                format!("langcode must be 1 to {MAX_LANGCODE_LEN} letters, digits, '-' or '_'"),
            ));
        }
        if !(self.fields.is_object() || self.fields.is_null()) {
            return Err(invalid("fields", "fields must be an object"));
        }
        Ok(())
    }

    /// The record key: `ENTITY#{type}#{uuid}` plus `#{langcode}` for a translation.
    pub fn key(&self) -> Key {
        let mut pk = format!("{}{}#{}", keyspace::ENTITY, self.entity_type, self.uuid);
        if let Some(l) = &self.langcode {
            pk.push('#');
            pk.push_str(l);
        }
        Key::new(pk, "ENTITY")
    }

    fn index_sk(&self) -> String {
        format!(
            "{}#{}#{}",
            self.entity_type,
            self.uuid,
            self.langcode.as_deref().unwrap_or("")
        )
    }
}

impl ConfigData {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !plain(&self.name, MAX_CONFIG_NAME_LEN, b"._-:") {
            return Err(invalid(
                "name",
                format!(
                    "name must be 1 to {MAX_CONFIG_NAME_LEN} letters, digits, '.', '_', '-' or ':'"
                ),
            ));
        }
        Ok(())
    }

    pub fn key(&self) -> Key {
        Key::new(format!("{}{}", keyspace::CONFIG, self.name), "CONFIG")
    }
}

/// A stored record: the data, when it last changed and from where, tombstone or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record<T> {
    #[serde(flatten)]
    pub data: T,
    /// RFC 3339: the `occurred_at` of the last change applied (last writer wins).
    pub occurred_at: String,
    /// The source that sent the last change.
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

pub type EntityRecord = Record<EntityData>;
pub type ConfigRecord = Record<ConfigData>;

impl EntityRecord {
    /// The store item of this record at `version`.
    pub fn to_item(&self, version: u64) -> Result<Item, StoreError> {
        let key = self.data.key();
        let data = serde_json::to_vec(self).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(Item::new(key.pk, key.sk, data)
            .with_gsi1(ENTITIES_INDEX, self.data.index_sk())
            .with_version(version))
    }
}

impl ConfigRecord {
    pub fn to_item(&self, version: u64) -> Result<Item, StoreError> {
        let key = self.data.key();
        let data = serde_json::to_vec(self).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(Item::new(key.pk, key.sk, data)
            .with_gsi1(CONFIGS_INDEX, self.data.name.clone())
            .with_version(version))
    }
}

/// One page of an export.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExportPage<T> {
    pub records: Vec<T>,
    /// Opaque; pass it back for the next page.
    pub next: Option<String>,
}

/// Entity and configuration records on a store.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").finish_non_exhaustive()
    }
}

impl Records {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Records { store }
    }

    /// A record with its version (tombstones included).
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &Key,
    ) -> Result<Option<(Record<T>, u64)>, StoreError> {
        let Some(item) = self.store.get(key).await? else {
            return Ok(None);
        };
        let r = serde_json::from_slice(&item.data)
            .map_err(|e| StoreError::Unavailable(format!("record {} unreadable: {e}", item.pk)))?;
        Ok(Some((r, item.version)))
    }

    /// Live entities (no tombstones), optionally of one type, a page at a time.
    pub async fn export_entities(
        &self,
        entity_type: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ExportPage<EntityRecord>, StoreError> {
        let prefix = entity_type.map(|t| format!("{t}#"));
        self.export(ENTITIES_INDEX, prefix, cursor, limit).await
    }

    /// Live configuration objects, optionally under a name prefix, a page at a time.
    pub async fn export_config(
        &self,
        prefix: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ExportPage<ConfigRecord>, StoreError> {
        self.export(CONFIGS_INDEX, prefix.map(str::to_string), cursor, limit)
            .await
    }

    async fn export<T: serde::de::DeserializeOwned>(
        &self,
        index: &str,
        prefix: Option<String>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ExportPage<Record<T>>, StoreError> {
        let mut q = Query::new(Index::Gsi1, index)
            .limit(limit.clamp(1, 1000))
            .after(cursor.and_then(Cursor::decode));
        if let Some(p) = prefix {
            q = q.prefix(p);
        }
        let page = self.store.query(&q).await?;
        let records = page
            .items
            .iter()
            .filter_map(|i| serde_json::from_slice::<Record<T>>(&i.data).ok())
            .filter(|r| !r.deleted)
            .collect();
        Ok(ExportPage {
            records,
            next: page.next.map(|c| c.encode()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_and_validation() {
        let e: EntityData = serde_json::from_value(json!({"entity_type": "node", "uuid": "a-1",
            "langcode": "fr", "fields": {"title": "x"}}))
        .unwrap();
        assert!(e.validate().is_ok());
        assert_eq!(e.key(), Key::new("ENTITY#node#a-1#fr", "ENTITY"));
        let bad: EntityData =
            serde_json::from_value(json!({"entity_type": "node#x", "uuid": "a"})).unwrap();
        assert_eq!(bad.validate().unwrap_err().field, "entity_type");
        let c = ConfigData {
            name: "system.site".into(),
            value: json!({"name": "Example"}),
        };
        assert!(c.validate().is_ok());
        assert_eq!(c.key(), Key::new("CONFIG#system.site", "CONFIG"));
        assert!(
            ConfigData {
                name: "a b".into(),
                value: Value::Null
            }
            .validate()
            .is_err()
        );
    }
}
