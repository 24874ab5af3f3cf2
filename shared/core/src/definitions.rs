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
            .edit(def.id(), |_| Ok::<_, std::convert::Infallible>(def.clone()))
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
                self.store
                    .get(&T::key(id))
                    .await
                    .map_err(DefinitionError::from)?
            } else {
                None
            };
            let (stored, condition, version) = match &current {
                // A stored definition that no longer opens (the operator key changed) can
                // still be replaced, as if there were none: its secrets must be given.
                Some(item) => (
                    self.decode(item)
                        .inspect_err(
                            |e| tracing::warn!(error = %e, "replacing an unreadable definition"),
                        )
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

// Inline, not a `tests.rs`: these tests use targets and sources, which use this module.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::source::SourceConfig;
    use crate::store::embedded::EmbeddedStore;
    use crate::target::{TargetConfig, Targets};

    fn target(v: Value) -> TargetConfig {
        serde_json::from_value(v).unwrap()
    }

    /// RFC 7396 Appendix A: every example, as the RFC gives it.
    #[test]
    fn merge_patch_rfc_7396_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (original, patch, result) in cases {
            let mut doc = original.clone();
            merge_patch(&mut doc, &patch);
            assert_eq!(doc, result, "{original} + {patch}");
        }
    }

    #[test]
    fn the_placeholder_keeps_the_stored_secret_of_the_same_field() {
        let stored = target(
            json!({"id": "t", "kind": "scim", "base_url": "https://a.example/v2",
            "auth": {"basic": {"username": "svc", "password": "pw-1"}}}),
        );
        let mut new = target(
            json!({"id": "t", "kind": "scim", "base_url": "https://a.example/v3",
            "auth": {"basic": {"username": "svc2", "password": "***"}}}),
        );
        keep_stored_secrets(&mut new, Some(&stored)).unwrap();
        assert_eq!(new.secrets(), ["pw-1"]);
        // A bearer where a password was stored: nothing to keep for that field.
        let mut other = target(
            json!({"id": "t", "kind": "scim", "base_url": "https://a.example/v2",
            "auth": {"bearer": "***"}}),
        );
        let e = keep_stored_secrets(&mut other, Some(&stored)).unwrap_err();
        assert_eq!(e.field, "auth.bearer");
        assert!(e.reason.contains("the stored target has none here"), "{e}");
        // Nothing stored: the placeholder is refused.
        let mut fresh = stored.redacted();
        let e = keep_stored_secrets(&mut fresh, None).unwrap_err();
        assert_eq!(e.field, "auth.basic.password");
        assert!(e.reason.contains("a new target has none"), "{e}");
        // A real secret is taken as is, whatever was stored.
        let mut given = stored.clone();
        keep_stored_secrets(&mut given, None).unwrap();
        assert_eq!(given, stored);
    }

    #[test]
    fn kept_secrets_stay_with_their_origin() {
        let stored = target(
            json!({"id": "e", "kind": "entra", "tenant_id": "contoso.example",
            "client_id": "c", "client_secret": "s-1"}),
        );
        let mut moved = stored.redacted();
        if let crate::target::TargetKind::Entra(e) = &mut moved.kind {
            e.login_url = Some("https://login.evil.example".into());
        }
        let e = keep_stored_secrets(&mut moved, Some(&stored)).unwrap_err();
        assert_eq!(e.field, "client_secret");
        assert!(e.reason.contains("https://login.evil.example"), "{e}");
        // The default written out is the same origin.
        let mut same = stored.redacted();
        if let crate::target::TargetKind::Entra(e) = &mut same.kind {
            e.login_url = Some("https://login.microsoftonline.com/".into());
        }
        keep_stored_secrets(&mut same, Some(&stored)).unwrap();
        // A source's webhook secrets go nowhere: a new pull URL keeps them, not the pull auth.
        let src: SourceConfig = serde_json::from_value(json!({"id": "s",
            "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "direction": "bidirectional",
            "pull": {"kind": "scim", "base_url": "https://idp.example", "auth": {"bearer": "b"}}}))
        .unwrap();
        let mut next = src.redacted();
        if let Some(p) = &mut next.pull {
            p.base_url = "https://other.example".into();
            p.auth = crate::target::HttpAuth::Bearer("b2".into());
        }
        keep_stored_secrets(&mut next, Some(&src)).unwrap();
        assert_eq!(next.secrets, src.secrets);
    }

    #[test]
    fn absent_secret_fields_are_filled_from_the_stored_definition() {
        let stored = target(
            json!({"id": "o", "kind": "okta", "base_url": "https://x.example",
            "token": "tok"}),
        );
        let mut body = json!({"kind": "okta", "base_url": "https://x.example"});
        fill_absent_secrets(&mut body, &stored);
        assert_eq!(body["token"], REDACTED);
        // Another kind: nothing carried over.
        let mut scim = json!({"kind": "scim", "base_url": "https://x.example"});
        fill_absent_secrets(&mut scim, &stored);
        assert!(scim.get("token").is_none() && scim.get("auth").is_none());
        // A source: `secrets`, and `pull.auth` only when `pull` is there.
        let src: SourceConfig = serde_json::from_value(json!({"id": "s",
            "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            "pull": {"kind": "scim", "base_url": "https://idp.example", "auth": {"bearer": "b"}}}))
        .unwrap();
        let mut with_pull = json!({"pull": {"kind": "scim", "base_url": "https://idp.example"}});
        fill_absent_secrets(&mut with_pull, &src);
        assert_eq!(with_pull["secrets"], json!(["***"]));
        assert_eq!(with_pull["pull"]["auth"], json!({"bearer": "***"}));
        let mut no_pull = json!({"user_sync": true});
        fill_absent_secrets(&mut no_pull, &src);
        assert!(no_pull.get("pull").is_none());
    }

    #[tokio::test]
    async fn the_placeholder_is_never_stored_and_edits_do_not_lose_each_other() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let targets = Targets::new(store.clone(), Arc::new(SecretBox::generate().0));
        let t = target(
            json!({"id": "o", "kind": "okta", "base_url": "https://x.example",
            "token": "tok"}),
        );
        assert!(targets.put(&t).await.unwrap());
        let e = targets.put(&t.redacted()).await.unwrap_err();
        assert!(
            matches!(e, DefinitionError::Placeholder { ref field, .. } if field == "token"),
            "{e}"
        );
        assert_eq!(targets.get("o").await.unwrap().unwrap().secrets(), ["tok"]);

        // Twenty concurrent partial edits, each adding one mapping rule: none is lost.
        let mut tasks = Vec::new();
        for i in 0..20 {
            let targets = targets.clone();
            tasks.push(tokio::spawn(async move {
                targets
                    .edit("o", |stored| {
                        let mut t = stored.cloned().ok_or("gone")?;
                        t.group_mapping.insert(format!("g{i}"), format!("t{i}"));
                        Ok::<_, &str>(t)
                    })
                    .await
                    .map(|_| ())
            }));
        }
        let mut contended = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => {}
                Err(EditError::Store(DefinitionError::Contended { .. })) => contended += 1,
                Err(e) => panic!("{e}"),
            }
        }
        let stored = targets.get("o").await.unwrap().unwrap();
        assert_eq!(stored.group_mapping.len() + contended, 20);
        assert_eq!(stored.secrets(), ["tok"]);
    }
}
