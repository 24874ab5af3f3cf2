//! Stored API tokens: created with a scope and a name, listed without their secret,
//! revoked by id (or by the secret, for tokens made before tokens had ids).
//!
//! | record | pk | sk | gsi1 (pk / sk) | data |
//! |--------|----|----|----------------|------|
//! | token  | `TOKEN#{sha256 hex}` | `TOKEN` | `TOKENS` / `{id}` | scope, name, created, id, created_by |
//!
//! The secret is never stored: the key is its SHA-256, so a request's token is found
//! with one point read of its hash ([`super::Authenticator`]). The id (`tok_…`, random)
//! names a token in listings, audit entries and revocations; it says nothing about the
//! secret.

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Scope;
use provisync_core::store::{
    Condition, Index, Item, Key, Query, Store, StoreError, Write, keyspace,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct TokenRecord {
    pub(super) scope: Scope,
    pub(super) name: String,
    created: String,
    /// Empty for a token created before tokens had ids (not listed; revoked by secret).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    id: String,
    /// Who created it (`admin:<token name>`, `offline`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_by: Option<String>,
}

/// A stored token as it is shown: never its secret, never its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub scope: Scope,
    pub name: String,
    /// RFC 3339.
    pub created: String,
    pub created_by: Option<String>,
}

/// A token just created: what is stored, and the secret, shown this once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    pub info: TokenInfo,
    pub token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The name is empty, too long, or has control characters.
    #[error("{0}")]
    InvalidName(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Longest token name.
pub const MAX_TOKEN_NAME: usize = 100;

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub(super) fn token_key(hash: &[u8; 32]) -> Key {
    Key::new(format!("{}{}", keyspace::TOKEN, hex::encode(hash)), "TOKEN")
}

impl TokenRecord {
    fn info(&self) -> TokenInfo {
        TokenInfo {
            id: self.id.clone(),
            scope: self.scope,
            name: self.name.clone(),
            created: self.created.clone(),
            created_by: self.created_by.clone(),
        }
    }
}

fn check_name(name: &str) -> Result<(), TokenError> {
    if name.trim().is_empty() || name.len() > MAX_TOKEN_NAME || name.chars().any(char::is_control) {
        return Err(TokenError::InvalidName(format!(
            "a token name is 1 to {MAX_TOKEN_NAME} characters without control characters (e.g. the IdP it is for)"
        )));
    }
    Ok(())
}

/// Creates a new random token for `scope`, stores only its hash, and returns it with the
/// secret (to be shown to the operator once). `created_by`: who asked.
pub async fn issue_token(
    store: &dyn Store,
    scope: Scope,
    name: &str,
    created_by: Option<&str>,
) -> Result<NewToken, TokenError> {
    check_name(name)?;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = format!(
        "psy_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let mut id_raw = [0u8; 8];
    rand::rng().fill_bytes(&mut id_raw);
    let record = TokenRecord {
        scope,
        name: name.to_string(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        id: format!("tok_{}", hex::encode(id_raw)),
        created_by: created_by.map(str::to_string),
    };
    let key = token_key(&hash_token(&token));
    let data = serde_json::to_vec(&record).map_err(|e| StoreError::Invalid(e.to_string()))?;
    store
        .transact(vec![Write::put_new(
            Item::new(key.pk, key.sk, data).with_gsi1(keyspace::TOKENS, record.id.clone()),
        )])
        .await?;
    Ok(NewToken {
        info: record.info(),
        token,
    })
}

/// [`issue_token`] without a creator, returning the secret only.
pub async fn create_token(
    store: &dyn Store,
    scope: Scope,
    name: &str,
) -> Result<String, TokenError> {
    Ok(issue_token(store, scope, name, None).await?.token)
}

/// Every stored token with an id, oldest first.
pub async fn list_tokens(store: &dyn Store) -> Result<Vec<TokenInfo>, StoreError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .query(&Query::new(Index::Gsi1, keyspace::TOKENS).after(after))
            .await?;
        out.extend(
            page.items
                .iter()
                .filter_map(|i| serde_json::from_slice::<TokenRecord>(&i.data).ok())
                .map(|r| r.info()),
        );
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    out.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    Ok(out)
}

/// Deletes a stored token if it is still there: what it was, `None` if it was not.
async fn delete(store: &dyn Store, item: &Item) -> Result<Option<TokenInfo>, StoreError> {
    let Ok(record) = serde_json::from_slice::<TokenRecord>(&item.data) else {
        return Ok(None);
    };
    let write = Write::Delete {
        key: item.key(),
        condition: Condition::Exists,
    };
    match store.transact(vec![write]).await {
        Ok(()) => Ok(Some(record.info())),
        // Revoked by someone else meanwhile.
        Err(StoreError::ConditionFailed { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Revokes the token with this id: what it was, `None` when there is none.
pub async fn revoke_token_by_id(
    store: &dyn Store,
    id: &str,
) -> Result<Option<TokenInfo>, StoreError> {
    if !id.starts_with("tok_") || id.len() > 64 {
        return Ok(None);
    }
    let page = store
        .query(
            &Query::new(Index::Gsi1, keyspace::TOKENS)
                .prefix(id)
                .limit(2),
        )
        .await?;
    match page
        .items
        .iter()
        .find(|i| i.gsi1.as_ref().is_some_and(|(_, sk)| sk.as_str() == id))
    {
        Some(item) => delete(store, item).await,
        None => Ok(None),
    }
}

/// Revokes a token given in clear by the operator who holds it: what it was, `None`
/// when it is not a stored token.
pub async fn revoke_token(store: &dyn Store, token: &str) -> Result<Option<TokenInfo>, StoreError> {
    match store.get(&token_key(&hash_token(token))).await? {
        Some(item) => delete(store, &item).await,
        None => Ok(None),
    }
}
