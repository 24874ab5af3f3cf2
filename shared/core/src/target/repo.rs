//! [`Targets`]: target definitions on the store.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::crypto::SecretBox;
use crate::definitions::{Definition, DefinitionError, Definitions, EditError};
use crate::store::{Key, Store};

// ---- repository ---------------------------------------------------------------------

/// Why a target definition could not be stored or read.
pub type TargetError = DefinitionError;

/// How long [`Targets::list_enabled`] serves from its cache.
pub const TARGET_CACHE_TTL: Duration = Duration::from_secs(5);
const TARGETS_INDEX: &str = crate::store::keyspace::TARGETS;

pub fn target_key(id: &str) -> Key {
    <TargetConfig as Definition>::key(id)
}

impl Definition for TargetConfig {
    const NOUN: &'static str = "target";
    const RECORD: &'static str = "TARGET";
    const PREFIX: &'static str = crate::store::keyspace::TARGET;
    const INDEX: &'static str = TARGETS_INDEX;

    fn id(&self) -> &str {
        &self.id
    }

    fn valid_id(id: &str) -> bool {
        check_target_id(id).is_ok()
    }

    fn map_secrets<E>(
        &mut self,
        f: &mut dyn FnMut(&str, &str) -> Result<String, E>,
    ) -> Result<(), E> {
        self.try_map_secrets(f)
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        match &self.kind {
            TargetKind::Scim(_) => &["auth"],
            TargetKind::Crowd(_) => &["password"],
            TargetKind::Entra(_) | TargetKind::Salesforce(_) => &["client_secret"],
            TargetKind::Okta(_) => &["token"],
            TargetKind::Webhook(_) => &["secret"],
            TargetKind::Cognito(_) => &[],
        }
    }

    fn same_kind(&self, body: &serde_json::Value) -> bool {
        body.get("kind").and_then(serde_json::Value::as_str) == Some(self.kind_name())
    }

    fn secret_origins(&self, _field: &str) -> Vec<String> {
        use crate::definitions::origin_of;
        match &self.kind {
            TargetKind::Scim(t) => vec![origin_of(&t.base_url)],
            TargetKind::Crowd(t) => vec![origin_of(&t.base_url)],
            TargetKind::Okta(t) => vec![origin_of(&t.base_url)],
            TargetKind::Webhook(t) => vec![origin_of(&t.url)],
            TargetKind::Entra(t) => vec![
                origin_of(t.login_url.as_deref().unwrap_or(ENTRA_LOGIN_URL)),
                origin_of(t.graph_url.as_deref().unwrap_or(ENTRA_GRAPH_URL)),
            ],
            TargetKind::Salesforce(t) => vec![
                origin_of(t.login_url.as_deref().unwrap_or(&t.instance_url)),
                origin_of(&t.instance_url),
            ],
            TargetKind::Cognito(_) => Vec::new(),
        }
    }
}

type Cached = Option<(Instant, Arc<Vec<TargetConfig>>)>;

/// Target definitions on the store, secrets sealed, with a short cache of the enabled
/// ones for the delivery engine. Clones share the cache.
#[derive(Clone)]
pub struct Targets {
    pub(super) defs: Definitions<TargetConfig>,
    pub(super) cache: Arc<Mutex<Cached>>,
    pub(super) ttl: Duration,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets").finish_non_exhaustive()
    }
}

impl Targets {
    pub fn new(store: Arc<dyn Store>, secrets: Arc<SecretBox>) -> Self {
        Targets {
            defs: Definitions::new(store, secrets),
            cache: Arc::new(Mutex::new(None)),
            ttl: TARGET_CACHE_TTL,
        }
    }

    /// A different cache lifetime (`Duration::ZERO`: no cache).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Stores a definition (validate it first). Returns `true` when it is new.
    pub async fn put(&self, target: &TargetConfig) -> Result<bool, TargetError> {
        let created = self.defs.put(target).await;
        self.invalidate();
        created
    }

    /// Stores what `edit` makes of the stored definition (see [`Definitions::edit`]):
    /// replacements that keep stored secrets, partial updates.
    pub async fn edit<E>(
        &self,
        id: &str,
        edit: impl Fn(Option<&TargetConfig>) -> Result<TargetConfig, E>,
    ) -> Result<(TargetConfig, bool), EditError<E>> {
        let result = self.defs.edit(id, edit).await;
        self.invalidate();
        result
    }

    /// Disables a target as it is stored now (a target that answered 410 Gone); nothing
    /// when it was removed meanwhile.
    pub async fn disable(&self, id: &str) -> Result<(), TargetError> {
        enum Gone {
            Absent,
        }
        match self
            .edit(id, |stored| match stored {
                Some(t) => Ok(TargetConfig {
                    enabled: false,
                    ..t.clone()
                }),
                None => Err(Gone::Absent),
            })
            .await
        {
            Ok(_) | Err(EditError::Refused(Gone::Absent)) => Ok(()),
            Err(EditError::Store(e)) => Err(e),
        }
    }

    /// One definition, secrets opened.
    pub async fn get(&self, id: &str) -> Result<Option<TargetConfig>, TargetError> {
        self.defs.get(id).await
    }

    /// Every definition, by id, secrets opened.
    pub async fn list(&self) -> Result<Vec<TargetConfig>, TargetError> {
        self.defs.list().await
    }

    /// Removes a definition. Returns `false` when there was none.
    pub async fn delete(&self, id: &str) -> Result<bool, TargetError> {
        let deleted = self.defs.delete(id).await;
        self.invalidate();
        deleted
    }

    /// The enabled targets, from a cache at most [`TARGET_CACHE_TTL`] old (the delivery
    /// engine asks for every event; changes made in this process show at once, changes
    /// made by another process within the TTL).
    pub async fn list_enabled(&self) -> Result<Arc<Vec<TargetConfig>>, TargetError> {
        if let Ok(guard) = self.cache.lock()
            && let Some((at, list)) = guard.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(list.clone());
        }
        let list: Arc<Vec<TargetConfig>> = Arc::new(
            self.list()
                .await?
                .into_iter()
                .filter(|t| t.enabled)
                .collect(),
        );
        if let Ok(mut guard) = self.cache.lock() {
            *guard = Some((Instant::now(), list.clone()));
        }
        Ok(list)
    }

    /// Drops the cache (after a write).
    pub fn invalidate(&self) {
        if let Ok(mut guard) = self.cache.lock() {
            *guard = None;
        }
    }
}
