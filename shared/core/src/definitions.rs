//! Operator definitions kept on the store with their secrets sealed: targets and sources.
//!
//! Both are one record each (`{PREFIX}#{id}` / `{PREFIX}`), indexed under one `gsi1`
//! partition for listing, written with optimistic concurrency (a version per record, so a
//! partial update never loses a concurrent one) and read back with every secret opened by
//! the operator key ([`SecretBox`]). [`Definitions`] is that repository once; a kind of
//! definition says only how it is named and where its secrets are ([`Definition`]).
//!
//! Secrets are write-only: every outward form shows them as [`REDACTED`], and that
//! placeholder, sent back in a definition, means "keep the stored secret"
//! ([`keep_stored_secrets`]); so does leaving a secret field out of an existing definition
//! ([`fill_absent_secrets`]). The placeholder itself is never stored.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::crypto::{CryptoError, SecretBox};
use crate::store::{Condition, Index, Item, Key, Query, Store, StoreError, Write};
use crate::validation::{ValidationError, invalid};

/// What replaces a secret in every outward form of a definition; sent back, it stands for
/// the stored secret.
pub const REDACTED: &str = "***";

/// How many times [`Definitions::edit`] reads again after losing a race.
const EDIT_ATTEMPTS: usize = 5;

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
    /// Applies `f` to every secret, in place (sealing, opening, redaction, keeping), with
    /// the dotted name of its field in the JSON form (`auth.bearer`, `secrets[1]`).
    fn map_secrets<E>(
        &mut self,
        f: &mut dyn FnMut(&str, &str) -> Result<String, E>,
    ) -> Result<(), E>;
    /// The JSON fields (dotted paths) that hold this definition's secrets as a whole
    /// (`auth`, `token`, `secrets`, `pull.auth`): a new version of it that leaves one out
    /// keeps the stored one ([`fill_absent_secrets`]).
    fn secret_fields(&self) -> &'static [&'static str];
    /// Whether `body` (the JSON of a new version) is of the same shape as this one, so
    /// that its secrets can carry over (a target of another kind cannot).
    fn same_kind(&self, _body: &Value) -> bool {
        true
    }
    /// The origins (`scheme://host:port`) the secret in `field` is sent to: a stored
    /// secret is kept only while they stay the same, so a changed URL cannot carry it
    /// elsewhere.
    fn secret_origins(&self, field: &str) -> Vec<String>;

    fn key(id: &str) -> Key {
        Key::new(format!("{}{id}", Self::PREFIX), Self::RECORD)
    }

    /// Every secret with its field (tests check they are nowhere they should not be).
    fn secret_values(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut copy = self.clone();
        let _ = copy.map_secrets(&mut |field, v| {
            out.push((field.to_string(), v.to_string()));
            Ok::<_, std::convert::Infallible>(v.to_string())
        });
        out
    }

    /// A copy with every secret replaced by [`REDACTED`]: the only form shown or logged.
    fn redacted_copy(&self) -> Self {
        let mut copy = self.clone();
        let _ = copy.map_secrets(&mut |_, _| Ok::<_, std::convert::Infallible>(REDACTED.into()));
        copy
    }
}

/// The origin of a URL as compared by [`Definition::secret_origins`] (the text itself
/// when it is not a URL).
pub fn origin_of(raw: &str) -> String {
    match url::Url::parse(raw.trim()) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => raw.trim().to_string(),
    }
}

/// Replaces every [`REDACTED`] secret of `def` by the secret of the same field in
/// `stored` (the definition it replaces). Refused, naming the field: the placeholder where
/// nothing is stored (a new definition, a field the stored one does not have), and any
/// kept secret when the addresses it would be sent to changed.
pub fn keep_stored_secrets<T: Definition>(
    def: &mut T,
    stored: Option<&T>,
) -> Result<(), ValidationError> {
    let kept = stored.map(Definition::secret_values).unwrap_or_default();
    let mut used = Vec::new();
    def.map_secrets(&mut |field, v| {
        if v != REDACTED {
            return Ok(v.to_string());
        }
        match kept.iter().find(|(f, _)| f == field) {
            Some((_, secret)) => {
                used.push(field.to_string());
                Ok(secret.clone())
            }
            None => Err(invalid(
                field,
                match stored {
                    None => format!(
                        "{field}: \"{REDACTED}\" stands for a stored secret, and a new {} has none: give the secret",
                        T::NOUN
                    ),
                    Some(_) => format!(
                        "{field}: \"{REDACTED}\" stands for a stored secret, and the stored {} has none here: give the secret",
                        T::NOUN
                    ),
                },
            )),
        }
    })?;
    let Some(stored) = stored else { return Ok(()) };
    for field in used {
        let mut before = stored.secret_origins(&field);
        let mut after = def.secret_origins(&field);
        before.sort();
        after.sort();
        if before != after {
            return Err(invalid(
                field.as_str(),
                format!(
                    "{field}: a stored secret is kept only while the addresses it is sent to stay the same; this change sends it to {}: give the secret again",
                    after.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Adds to `body` (the JSON object of a new version of `stored`) every secret field of
/// `stored` it leaves out, as [`REDACTED`] (which [`keep_stored_secrets`] then turns into
/// the stored secret). A field whose parent object is absent is not added: leaving out
/// `pull` removes the pull settings, secrets included.
pub fn fill_absent_secrets<T: Definition>(body: &mut Value, stored: &T) {
    if !stored.same_kind(body) {
        return;
    }
    let Ok(shown) = serde_json::to_value(stored.redacted_copy()) else {
        return;
    };
    for field in stored.secret_fields() {
        let path: Vec<&str> = field.split('.').collect();
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let Some(value) = path.iter().try_fold(&shown, |v, k| v.get(*k)) else {
            continue;
        };
        let parent = parents
            .iter()
            .try_fold(&mut *body, |v, k| v.get_mut(*k))
            .and_then(Value::as_object_mut);
        if let Some(parent) = parent
            && !parent.contains_key(*last)
        {
            parent.insert((*last).to_string(), value.clone());
        }
    }
}

/// JSON merge patch (RFC 7396 §2): `patch` applied to `target`. An object merges member
/// by member (`null` removes a member); anything else replaces the target whole.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in members {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
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
    /// The placeholder reached the repository as a secret: refused, never stored.
    #[error("{noun} {id}: {field} is the placeholder \"{REDACTED}\", not a secret")]
    Placeholder {
        noun: &'static str,
        id: String,
        field: String,
    },
    /// Other writes kept winning the race for this definition.
    #[error("{noun} {id} is being changed by someone else: retry")]
    Contended { noun: &'static str, id: String },
}

/// Why [`Definitions::edit`] did not store a new version.
#[derive(Debug, thiserror::Error)]
pub enum EditError<E> {
    /// The edit itself refused (what the caller's closure returned).
    #[error(transparent)]
    Refused(E),
    #[error(transparent)]
    Store(#[from] DefinitionError),
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

    /// Stores a definition (validate it first), replacing whatever is stored. Returns
    /// `true` when it is new.
    pub async fn put(&self, def: &T) -> Result<bool, DefinitionError> {
        let def = def.clone();
        match self
            .edit(&def.id().to_string(), |_| {
                Ok::<_, std::convert::Infallible>(def.clone())
            })
            .await
        {
            Ok((_, created)) => Ok(created),
            Err(EditError::Store(e)) => Err(e),
            Err(EditError::Refused(never)) => match never {},
        }
    }

    /// Stores what `edit` makes of the stored definition `id` (`None`: there is none),
    /// with optimistic concurrency: when another write lands between the read and the
    /// write, the stored one is read again and `edit` runs again. Returns the definition
    /// stored and whether it is new.
    pub async fn edit<E>(
        &self,
        id: &str,
        edit: impl Fn(Option<&T>) -> Result<T, E>,
    ) -> Result<(T, bool), EditError<E>> {
        for _ in 0..EDIT_ATTEMPTS {
            let current = if T::valid_id(id) {
                self.store.get(&T::key(id)).await.map_err(DefinitionError::from)?
            } else {
                None
            };
            let (stored, condition, version) = match &current {
                // A stored definition that no longer opens (the operator key changed) can
                // still be replaced, as if there were none: its secrets must be given.
                Some(item) => (
                    self.decode(item)
                        .inspect_err(|e| tracing::warn!(error = %e, "replacing an unreadable definition"))
                        .ok(),
                    Condition::VersionIs(item.version),
                    item.version + 1,
                ),
                None => (None, Condition::NotExists, 0),
            };
            let def = edit(stored.as_ref()).map_err(EditError::Refused)?;
            let item = self.seal(&def)?.with_version(version);
            match self
                .store
                .transact(vec![Write::Put { item, condition }])
                .await
            {
                Ok(()) => return Ok((def, current.is_none())),
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(DefinitionError::Store(e).into()),
            }
        }
        Err(DefinitionError::Contended {
            noun: T::NOUN,
            id: id.to_string(),
        }
        .into())
    }

    /// The record of a definition, secrets sealed; the placeholder is refused.
    fn seal(&self, def: &T) -> Result<Item, DefinitionError> {
        let mut sealed = def.clone();
        sealed.map_secrets(&mut |field, s| {
            if s == REDACTED {
                Err(DefinitionError::Placeholder {
                    noun: T::NOUN,
                    id: def.id().to_string(),
                    field: field.to_string(),
                })
            } else {
                Ok(self.secrets.seal(s))
            }
        })?;
        let data = serde_json::to_vec(&sealed).map_err(|e| DefinitionError::Corrupt {
            noun: T::NOUN,
            id: def.id().to_string(),
            detail: e.to_string(),
        })?;
        let key = T::key(def.id());
        Ok(Item::new(key.pk, key.sk, data).with_gsi1(T::INDEX, def.id()))
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
        def.map_secrets(&mut |_, v| self.secrets.open(v))
            .map_err(|source| DefinitionError::Crypto {
                noun: T::NOUN,
                id,
                source,
            })?;
        Ok(def)
    }
}

#[cfg(test)]
mod tests;
