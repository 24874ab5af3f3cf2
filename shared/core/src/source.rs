//! Sources: sites and systems that send changes to the hub (signed webhooks, `push`), are
//! read by the schedule (`pull`), or both (`bidirectional`).
//!
//! A source is defined with `PUT /admin/sources/{id}`; its webhook secrets are sealed at
//! rest with the operator key (like target secrets) and shown only as `***`. The record
//! lives at `SOURCE#{id}` / `SOURCE`, indexed under `gsi1 = SOURCES` for listing.

use crate::validation::{ValidationError, invalid};
use serde::{Deserialize, Serialize};

use crate::definitions::{Definition, DefinitionError, Definitions};
use crate::store::Key;
use crate::target::HttpAuth;

/// Longest source id (it appears in the webhook URL, keys and audit entries).
pub const MAX_SOURCE_ID_LEN: usize = 64;
/// At most this many secrets verify at once (key rotation needs two).
pub const MAX_SECRETS: usize = 8;
const MAX_LIST_ITEMS: usize = 200;
const SOURCES_INDEX: &str = crate::store::keyspace::SOURCES;

/// How inbound webhooks are signed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    #[default]
    Standard,
    /// GitHub style: `X-Hub-Signature-256: sha256=<hex>`, `X-GitHub-Delivery` as the id.
    Github,
}

/// Which way changes flow between the source and the hub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The source sends webhooks; the hub never reads it.
    #[default]
    Push,
    /// The schedule reads the source (`pull` must be set); webhooks are refused.
    Pull,
    /// Both: the source sends webhooks and may be read; as a site it also receives.
    Bidirectional,
}

/// What kind of API a pull source offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullKind {
    /// A SCIM 2.0 server: `/Users`, `/Groups`.
    Scim,
    /// A Drupal JSON:API site: `/jsonapi/user/user`.
    Jsonapi,
}

/// Where and how the schedule reads a `pull` / `bidirectional` source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PullConfig {
    pub kind: PullKind,
    pub base_url: String,
    pub auth: HttpAuth,
}

/// Every field of a source definition (`secret`: the admin API's one-secret form of
/// `secrets`). A unit test checks it against [`SourceConfig`].
pub const SOURCE_FIELDS: &[&str] = &[
    "id",
    "secret",
    "secrets",
    "scheme",
    "direction",
    "entity_types",
    "config_prefixes",
    "user_sync",
    "allowed_fields",
    "pull",
    "enabled",
    "adopt_existing",
    "max_event_age_secs",
];

/// A source as the operator defined it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// From the URL (`/admin/sources/{id}`).
    #[serde(default)]
    pub id: String,
    /// Webhook signing secrets; any one verifies (rotation: add the new one, then remove
    /// the old). Standard scheme: `whsec_` + base64 key. The admin API also accepts a
    /// single `"secret"` and turns it into this list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub scheme: Scheme,
    #[serde(default)]
    pub direction: Direction,
    /// Entity types accepted from this source (`node`, `taxonomy_term`, ...); empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entity_types: Vec<String>,
    /// Configuration names accepted must start with one of these; empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_prefixes: Vec<String>,
    /// Accept users and groups from this source (off by default).
    #[serde(default)]
    pub user_sync: bool,
    /// User/group attributes the source may set. `None`: the default set, which never
    /// includes roles, `active` or `password` (no privilege escalation by webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_fields: Option<Vec<String>>,
    /// How the schedule reads this source (`pull` / `bidirectional`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullConfig>,
    /// May this source adopt a hub user or group it did not create, found by `userName`
    /// / `displayName` (off by default: such a collision is refused)? An adopted resource
    /// is updated within `allowed_fields` and never deleted by this source: its delete
    /// only unlinks it. See [`crate::sync::inbound`].
    #[serde(default)]
    pub adopt_existing: bool,
    /// How old a webhook's `occurred_at` may be, in seconds (default
    /// [`DEFAULT_MAX_EVENT_AGE_SECS`], between [`MIN_MAX_EVENT_AGE_SECS`] and
    /// [`MAX_MAX_EVENT_AGE_SECS`]); older envelopes are refused, and so are those more
    /// than five minutes ahead of the hub's clock. Pulled changes are not limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_age_secs: Option<u64>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// How old a webhook's `occurred_at` may be by default: three days, longer than the
/// retry schedules of common webhook senders (Stripe retries for up to three days,
/// Svix-based senders for about 28 hours), so a sender's own retries are not refused.
pub const DEFAULT_MAX_EVENT_AGE_SECS: u64 = 3 * 24 * 3600;
/// The shortest window an operator may set: five minutes.
pub const MIN_MAX_EVENT_AGE_SECS: u64 = 5 * 60;
/// The longest window an operator may set: seven days (replay markers live as long).
pub const MAX_MAX_EVENT_AGE_SECS: u64 = 7 * 24 * 3600;

fn yes() -> bool {
    true
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = self.redacted();
        f.debug_struct("SourceConfig")
            .field("id", &redacted.id)
            .field("secrets", &redacted.secrets)
            .field("scheme", &redacted.scheme)
            .field("direction", &redacted.direction)
            .field("entity_types", &redacted.entity_types)
            .field("config_prefixes", &redacted.config_prefixes)
            .field("user_sync", &redacted.user_sync)
            .field("allowed_fields", &redacted.allowed_fields)
            .field("pull", &redacted.pull)
            .field("adopt_existing", &redacted.adopt_existing)
            .field("max_event_age_secs", &redacted.max_event_age_secs)
            .field("enabled", &redacted.enabled)
            .finish()
    }
}

impl SourceConfig {
    /// Applies `f` to every secret, in place (sealing, opening, redaction, keeping), with
    /// the name of its field (`secrets[0]`, `pull.auth.bearer`).
    pub fn try_map_secrets<E>(
        &mut self,
        f: &mut dyn FnMut(&str, &str) -> Result<String, E>,
    ) -> Result<(), E> {
        for (i, s) in self.secrets.iter_mut().enumerate() {
            *s = f(&format!("secrets[{i}]"), s)?;
        }
        if let Some(pull) = &mut self.pull {
            pull.auth.map_secret("pull.auth", f)?;
        }
        Ok(())
    }

    /// A copy with every secret replaced by `"***"`: the only form shown or logged.
    pub fn redacted(&self) -> SourceConfig {
        self.redacted_copy()
    }

    /// Does this source send webhooks to the hub?
    pub fn accepts_webhooks(&self) -> bool {
        matches!(self.direction, Direction::Push | Direction::Bidirectional)
    }

    /// How old a webhook's `occurred_at` may be (the source's `max_event_age_secs`, else
    /// the default).
    pub fn max_event_age_secs(&self) -> u64 {
        self.max_event_age_secs
            .unwrap_or(DEFAULT_MAX_EVENT_AGE_SECS)
    }

    /// Is this source read by the schedule?
    pub fn is_pulled(&self) -> bool {
        self.pull.is_some() && matches!(self.direction, Direction::Pull | Direction::Bidirectional)
    }

    /// Checks a definition; the error is shown to the operator and never quotes a secret.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_source_id(&self.id)?;
        if self.accepts_webhooks() && self.secrets.is_empty() {
            return Err(invalid(
                "secret",
                "a push or bidirectional source needs `secret` (or `secrets`)",
            ));
        }
        if self.secrets.len() > MAX_SECRETS {
            return Err(invalid("secrets", format!("at most {MAX_SECRETS} secrets")));
        }
        for (i, s) in self.secrets.iter().enumerate() {
            // GitHub secrets are free text (its documentation's example has spaces);
            // Standard Webhooks secrets are `whsec_` + base64.
            let space_ok = self.scheme == Scheme::Github;
            if s.len() < 16
                || s.len() > 1024
                || s.chars().any(|c| c.is_control() || (c == ' ' && !space_ok))
            {
                return Err(invalid(
                    "secrets",
                    format!(
                        "secrets[{i}] must be 16 to 1024 characters without control characters (or spaces, for the standard scheme)"
                    ),
                ));
            }
            if self.scheme == Scheme::Standard {
                crate::webhook_sig::decode_standard_secret(s).map_err(|e| {
                    invalid(
                        "secrets",
                        format!(
                            "secrets[{i}] is not a Standard Webhooks secret (whsec_ + base64): {e}"
                        ),
                    )
                })?;
            }
        }
        if self.direction == Direction::Pull && self.pull.is_none() {
            return Err(invalid(
                "pull",
                "a pull source needs `pull` (kind, base_url, auth)",
            ));
        }
        if let Some(pull) = &self.pull {
            crate::target::check_target_url(&pull.base_url).map_err(|e| e.within("pull"))?;
            crate::target::check_auth(&pull.auth).map_err(|e| e.within("pull"))?;
        }
        let lists = [
            ("entity_types", &self.entity_types),
            ("config_prefixes", &self.config_prefixes),
        ];
        for (name, list) in lists {
            check_names(name, list)?;
        }
        if let Some(fields) = &self.allowed_fields {
            check_names("allowed_fields", fields)?;
        }
        if let Some(age) = self.max_event_age_secs
            && !(MIN_MAX_EVENT_AGE_SECS..=MAX_MAX_EVENT_AGE_SECS).contains(&age)
        {
            return Err(invalid(
                "max_event_age_secs",
                format!(
                    "max_event_age_secs must be {MIN_MAX_EVENT_AGE_SECS} to {MAX_MAX_EVENT_AGE_SECS} seconds (5 minutes to 7 days)"
                ),
            ));
        }
        Ok(())
    }
}

fn check_names(name: &str, list: &[String]) -> Result<(), ValidationError> {
    if list.len() > MAX_LIST_ITEMS {
        return Err(invalid(
            name,
            format!("{name}: at most {MAX_LIST_ITEMS} entries"),
        ));
    }
    for v in list {
        if v.is_empty() || v.len() > 256 || v.chars().any(|c| c.is_control() || c == ' ') {
            return Err(invalid(
                name,
                format!(
                    "{name}: entries are 1 to 256 characters, without spaces or control characters"
                ),
            ));
        }
    }
    Ok(())
}

/// Source ids: 1 to 64 of `A-Z a-z 0-9 - _ .`, starting with a letter or digit.
pub fn check_source_id(id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_SOURCE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "id",
            format!(
                "source id must be 1 to {MAX_SOURCE_ID_LEN} letters, digits, '-', '_' or '.', starting with a letter or digit"
            ),
        ))
    }
}

/// The store key of a source's record.
pub fn source_key(id: &str) -> Key {
    <SourceConfig as Definition>::key(id)
}

/// Why a source definition could not be stored or read.
pub type SourceError = DefinitionError;

/// Source definitions on the store, secrets sealed.
pub type Sources = Definitions<SourceConfig>;

impl Definition for SourceConfig {
    const NOUN: &'static str = "source";
    const RECORD: &'static str = "SOURCE";
    const PREFIX: &'static str = crate::store::keyspace::SOURCE;
    const INDEX: &'static str = SOURCES_INDEX;

    fn id(&self) -> &str {
        &self.id
    }

    fn valid_id(id: &str) -> bool {
        check_source_id(id).is_ok()
    }

    fn map_secrets<E>(
        &mut self,
        f: &mut dyn FnMut(&str, &str) -> Result<String, E>,
    ) -> Result<(), E> {
        self.try_map_secrets(f)
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        &["secrets", "pull.auth"]
    }

    /// Webhook secrets only verify what the source sends; the pull credentials go to the
    /// pull URL.
    fn secret_origins(&self, field: &str) -> Vec<String> {
        match &self.pull {
            Some(p) if field.starts_with("pull.") => {
                vec![crate::definitions::origin_of(&p.base_url)]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretBox;
    use crate::store::Store;
    use crate::store::embedded::EmbeddedStore;
    use serde_json::json;
    use std::sync::Arc;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn source(v: serde_json::Value) -> SourceConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_are_the_safe_ones() {
        let s = source(json!({"id": "site-a", "secrets": [SECRET]}));
        assert_eq!(s.scheme, Scheme::Standard);
        assert_eq!(s.direction, Direction::Push);
        assert!(!s.user_sync);
        assert!(s.entity_types.is_empty() && s.config_prefixes.is_empty());
        assert!(s.allowed_fields.is_none());
        assert!(!s.adopt_existing, "adopting existing users is opt-in");
        assert_eq!(s.max_event_age_secs(), DEFAULT_MAX_EVENT_AGE_SECS);
        assert!(s.validate().is_ok());
        assert!(s.accepts_webhooks() && !s.is_pulled());
    }

    #[test]
    fn validation_names_the_problem_without_the_secret() {
        crate::net::allow_loopback_peers();
        let no_secret = source(json!({"id": "a"}));
        let err = no_secret.validate().unwrap_err();
        assert!(err.to_string().contains("secret"));
        assert_eq!(err.field, "secret");
        let bad = source(json!({"id": "a", "secrets": ["whsec_not*base64*at*all"]}));
        let err = bad.validate().unwrap_err();
        assert_eq!(err.field, "secrets");
        let err = err.to_string();
        assert!(err.contains("Standard Webhooks"), "{err}");
        assert!(!err.contains("not*base64"), "{err}");
        let github =
            source(json!({"id": "a", "scheme": "github", "secrets": ["a-github-secret-value"]}));
        assert!(github.validate().is_ok());
        let pull_without = source(json!({"id": "a", "direction": "pull"}));
        assert!(
            pull_without
                .validate()
                .unwrap_err()
                .to_string()
                .contains("pull")
        );
        let pull = source(json!({"id": "a", "direction": "pull",
            "pull": {"kind": "scim", "base_url": "http://127.0.0.1:9/scim/v2", "auth": {"bearer": "t0ken"}}}));
        let mut open = pull.clone();
        if let Some(p) = open.pull.as_mut() {
            p.base_url = "http://example.com/scim/v2".into();
        }
        let err = open.validate().unwrap_err();
        assert_eq!(err.field, "pull.base_url");
        assert!(err.to_string().starts_with("pull.base_url: "), "{err}");
        assert!(pull.validate().is_ok() && pull.is_pulled() && !pull.accepts_webhooks());
        assert!(
            source(json!({"id": "-a", "secrets": [SECRET]}))
                .validate()
                .is_err()
        );
        assert!(serde_json::from_value::<SourceConfig>(json!({"id": "a", "bogus": 1})).is_err());
        for (age, ok) in [(299, false), (300, true), (604_800, true), (604_801, false)] {
            let s = source(json!({"id": "a", "secrets": [SECRET], "max_event_age_secs": age}));
            assert_eq!(s.validate().is_ok(), ok, "{age}");
            if !ok {
                assert_eq!(s.validate().unwrap_err().field, "max_event_age_secs");
            }
        }
    }

    #[test]
    fn every_field_is_listed() {
        let s = source(
            json!({"id": "a", "secrets": [SECRET], "entity_types": ["node"],
            "config_prefixes": ["x."], "user_sync": true, "allowed_fields": ["userName"],
            "pull": {"kind": "scim", "base_url": "https://x.example", "auth": {"bearer": "t"}},
            "max_event_age_secs": 3600}),
        );
        let v = serde_json::to_value(&s).unwrap();
        for k in v.as_object().unwrap().keys() {
            assert!(SOURCE_FIELDS.contains(&k.as_str()), "{k}");
        }
        assert_eq!(v.as_object().unwrap().len() + 1, SOURCE_FIELDS.len());
    }

    #[test]
    fn secrets_never_show() {
        let s = source(json!({"id": "a", "secrets": [SECRET],
            "pull": {"kind": "jsonapi", "base_url": "https://site.example", "auth": {"basic": {"username": "u", "password": "pw-secret"}}}}));
        let shown = format!("{:?} {}", s, serde_json::to_string(&s.redacted()).unwrap());
        assert!(
            !shown.contains(SECRET) && !shown.contains("pw-secret"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn repository_seals_and_round_trips() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let sources = Sources::new(store.clone(), Arc::new(SecretBox::generate().0));
        let s = source(json!({"id": "site-a", "secrets": [SECRET], "user_sync": true}));
        assert!(sources.put(&s).await.unwrap());
        assert!(!sources.put(&s).await.unwrap());
        let raw = store.get(&source_key("site-a")).await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw.data).contains(SECRET));
        assert_eq!(sources.get("site-a").await.unwrap().unwrap(), s);
        assert_eq!(sources.list().await.unwrap(), vec![s]);
        assert!(sources.get("no such id").await.unwrap().is_none());
        assert!(sources.delete("site-a").await.unwrap());
        assert!(!sources.delete("site-a").await.unwrap());
        assert!(sources.list().await.unwrap().is_empty());
    }
}
