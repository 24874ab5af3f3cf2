//! Operator definitions kept on the store with their secrets sealed: targets and sources.
//!
//! Both are one record each (`{PREFIX}#{id}` / `{PREFIX}`), indexed under one `gsi1`
//! partition for listing, written "new or replace" and read back with every secret opened
//! by the operator key ([`SecretBox`]). [`Definitions`] is that repository once; a kind of
//! definition says only how it is named and where its secrets are ([`Definition`]).

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crypto::{CryptoError, SecretBox};
use crate::store::{Condition, Index, Item, Key, Query, Store, StoreError, Write};

/// A kind of definition kept by [`Definitions`].
pub trait Definition: Serialize + DeserializeOwned + Clone + Send + Sync {
    /// What it is called in errors: `"target"`, `"source"`.
    const NOUN: &'static str;
    /// The sort key of its record (`TARGET`, `SOURCE`).
    const RECORD: &'static str;
    /// The partition key prefix of its record ([`crate::store::keyspace`]).
    const PREFIX: &'static str;
    /// The `gsi1` partition that lists them all.
    const INDEX: &'static str;

    fn id(&self) -> &str;
    /// Whether `id` could name one (a malformed id is simply absent).
    fn valid_id(id: &str) -> bool;
    /// Applies `f` to every secret, in place (sealing, opening, redaction).
    fn map_secrets<E>(&mut self, f: &mut dyn FnMut(&str) -> Result<String, E>) -> Result<(), E>;

    fn key(id: &str) -> Key {
        Key::new(format!("{}{id}", Self::PREFIX), Self::RECORD)
    }
}

/// Why a definition could not be stored or read. Names the definition, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored secret does not open with the current key (key changed or data altered).
    #[error("{noun} {id}: stored secret: {source}")]
    Crypto {
        noun: &'static str,
        id: String,
        source: CryptoError,
    },
    #[error("{noun} {id}: stored definition is unreadable: {detail}")]
    Corrupt {
        noun: &'static str,
        id: String,
        detail: String,
    },
}

/// The repository of one kind of definition.
pub struct Definitions<T> {
    store: Arc<dyn Store>,
    secrets: Arc<SecretBox>,
    kind: PhantomData<fn() -> T>,
}

impl<T> Clone for Definitions<T> {
    fn clone(&self) -> Self {
        Definitions {
            store: self.store.clone(),
            secrets: self.secrets.clone(),
            kind: PhantomData,
        }
    }
}

impl<T: Definition> std::fmt::Debug for Definitions<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Definitions")
            .field("kind", &T::NOUN)
            .finish_non_exhaustive()
    }
}

impl<T: Definition> Definitions<T> {
    pub fn new(store: Arc<dyn Store>, secrets: Arc<SecretBox>) -> Self {
        Definitions {
            store,
            secrets,
            kind: PhantomData,
        }
    }

    /// Stores a definition (validate it first). Returns `true` when it is new.
    pub async fn put(&self, def: &T) -> Result<bool, DefinitionError> {
        let mut sealed = def.clone();
        let seal = &mut |s: &str| Ok::<_, std::convert::Infallible>(self.secrets.seal(s));
        if let Err(never) = sealed.map_secrets(seal) {
            match never {}
        }
        let data = serde_json::to_vec(&sealed).map_err(|e| DefinitionError::Corrupt {
            noun: T::NOUN,
            id: def.id().to_string(),
            detail: e.to_string(),
        })?;
        let key = T::key(def.id());
        let item = Item::new(key.pk, key.sk, data).with_gsi1(T::INDEX, def.id());
        match self
            .store
            .transact(vec![Write::put_new(item.clone())])
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => {
                self.store
                    .transact(vec![Write::Put {
                        item,
                        condition: Condition::Exists,
                    }])
                    .await?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One definition, secrets opened.
    pub async fn get(&self, id: &str) -> Result<Option<T>, DefinitionError> {
        if !T::valid_id(id) {
            return Ok(None);
        }
        match self.store.get(&T::key(id)).await? {
            Some(item) => self.decode(&item).map(Some),
            None => Ok(None),
        }
    }

    /// Every definition, by id, secrets opened.
    pub async fn list(&self) -> Result<Vec<T>, DefinitionError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .query(&Query::new(Index::Gsi1, T::INDEX).after(after))
                .await?;
            for item in &page.items {
                out.push(self.decode(item)?);
            }
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        out.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(out)
    }

    /// Removes a definition. Returns `false` when there was none.
    pub async fn delete(&self, id: &str) -> Result<bool, DefinitionError> {
        if !T::valid_id(id) {
            return Ok(false);
        }
        match self
            .store
            .transact(vec![Write::Delete {
                key: T::key(id),
                condition: Condition::Exists,
            }])
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn decode(&self, item: &Item) -> Result<T, DefinitionError> {
        let id = item
            .pk
            .strip_prefix(T::RECORD)
            .and_then(|rest| rest.strip_prefix('#'))
            .unwrap_or(&item.pk)
            .to_string();
        let mut def: T =
            serde_json::from_slice(&item.data).map_err(|e| DefinitionError::Corrupt {
                noun: T::NOUN,
                id: id.clone(),
                detail: e.to_string(),
            })?;
        def.map_secrets(&mut |v| self.secrets.open(v))
            .map_err(|source| DefinitionError::Crypto {
                noun: T::NOUN,
                id,
                source,
            })?;
        Ok(def)
    }
}
