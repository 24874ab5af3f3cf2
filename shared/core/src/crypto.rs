//! Secrets at rest: target credentials in the store, passwords inside change events.
//!
//! One operator key (`PROVISYNC_SECRET_KEY`, base64 of 32 bytes) seals values with
//! XChaCha20-Poly1305 (authenticated: a changed byte or another key fails to open). A
//! sealed value is text, `v1.` followed by base64url (no padding) of the 24-byte random
//! nonce and the ciphertext with its tag. The version prefix leaves room for key rotation
//! (`v2.` with a key id) without touching stored data.
//!
//! Locally, `provisync serve` generates a key once into the data folder when the variable
//! is unset ([`SecretBox::generate`], [`SecretBox::encode_key`]). In AWS the key comes from
//! the function's environment (or a secret manager that fills it).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// The environment variable holding the key.
pub const SECRET_KEY_ENV: &str = "PROVISYNC_SECRET_KEY";
const PREFIX: &str = "v1.";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
/// Tag length of Poly1305.
const TAG_LEN: usize = 16;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The key is missing or not base64 of 32 bytes (the message never contains it).
    #[error("secret key: {0}")]
    BadKey(String),
    /// Not a sealed value of a known version.
    #[error("not a sealed value")]
    Malformed,
    /// Sealed with another key, or altered.
    #[error("sealed value cannot be opened (wrong key or tampered)")]
    Rejected,
}

/// Seals and opens secrets with the operator key (share it in an `Arc`).
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    /// Kept to derive the keys of other uses ([`SecretBox::derive`]); never shown.
    key: [u8; KEY_LEN],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(key: ***)")
    }
}

impl SecretBox {
    /// From raw key bytes.
    pub fn from_key(key: &[u8; KEY_LEN]) -> Self {
        SecretBox {
            cipher: XChaCha20Poly1305::new(key.into()),
            key: *key,
        }
    }

    /// A box with a key of its own for one `purpose`, derived from this one
    /// (HMAC-SHA256 of the purpose under this key): what it seals, this box cannot open,
    /// and the other way round. Every process with the same operator key derives the same.
    pub fn derive(&self, purpose: &str) -> SecretBox {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(b"provisync/derive/v1/");
        mac.update(purpose.as_bytes());
        let derived: [u8; KEY_LEN] = mac.finalize().into_bytes().into();
        SecretBox::from_key(&derived)
    }

    /// From the base64 form (standard or URL-safe alphabet, padding optional).
    pub fn from_encoded(encoded: &str) -> Result<Self, CryptoError> {
        let key = decode_key(encoded)?;
        Ok(Self::from_key(&key))
    }

    /// From `PROVISYNC_SECRET_KEY`. `Ok(None)` when unset or empty.
    pub fn from_env() -> Result<Option<Self>, CryptoError> {
        match std::env::var(SECRET_KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => Self::from_encoded(v.trim()).map(Some),
            _ => Ok(None),
        }
    }

    /// A new random key, returned with its base64 form (to store it, shown to nobody).
    pub fn generate() -> (Self, String) {
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        let encoded = Self::encode_key(&key);
        (Self::from_key(&key), encoded)
    }

    /// The base64 (standard alphabet, padded) form of a key, as `PROVISYNC_SECRET_KEY` holds it.
    pub fn encode_key(key: &[u8; KEY_LEN]) -> String {
        STANDARD.encode(key)
    }

    /// Encrypts `plain` under a fresh random nonce: `v1.<base64url(nonce|ciphertext|tag)>`.
    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with XChaCha20-Poly1305 only fails for plaintexts beyond ~256 GiB.
        let ct = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plain.as_bytes())
            .unwrap_or_default();
        let mut raw = Vec::with_capacity(NONCE_LEN + ct.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ct);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// Decrypts and authenticates a value made by [`SecretBox::seal`].
    pub fn open(&self, sealed: &str) -> Result<String, CryptoError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(CryptoError::Malformed)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| CryptoError::Rejected)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Rejected)
    }

    /// Whether a string looks like a sealed value (not whether it opens).
    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX)
    }
}

/// Decodes a base64 key of 32 bytes (standard or URL-safe alphabet, padding optional).
pub fn decode_key(encoded: &str) -> Result<[u8; KEY_LEN], CryptoError> {
    let s = encoded.trim();
    let bytes = STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
        .or_else(|_| {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(s.trim_end_matches('='))
        })
        .map_err(|_| CryptoError::BadKey(format!("{SECRET_KEY_ENV} is not base64")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        CryptoError::BadKey(format!(
            "{SECRET_KEY_ENV} must be 32 bytes, it is {}",
            b.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_random_nonces() {
        let (sb, _) = SecretBox::generate();
        let a = sb.seal("hunter2");
        let b = sb.seal("hunter2");
        assert!(a.starts_with("v1."));
        assert_ne!(a, b, "fresh nonce each time");
        assert!(!a.contains("hunter2"));
        assert_eq!(sb.open(&a).unwrap(), "hunter2");
        assert_eq!(sb.open(&b).unwrap(), "hunter2");
        assert_eq!(sb.open(&sb.seal("")).unwrap(), "");
        assert_eq!(sb.open(&sb.seal("é✓")).unwrap(), "é✓");
        assert!(SecretBox::is_sealed(&a));
    }

    #[test]
    fn tampering_is_detected() {
        let (sb, _) = SecretBox::generate();
        let sealed = sb.seal("top secret value");
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let t = format!("v1.{}", URL_SAFE_NO_PAD.encode(&raw));
            assert_eq!(sb.open(&t), Err(CryptoError::Rejected), "byte {i}");
            raw[i] ^= 1;
        }
        // Truncated, wrong prefix, not base64.
        assert_eq!(sb.open(&sealed[..20]), Err(CryptoError::Malformed));
        raw.pop();
        let short = format!("v1.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(sb.open(&short), Err(CryptoError::Rejected));
        assert_eq!(
            sb.open(&sealed.replacen("v1.", "v2.", 1)),
            Err(CryptoError::Malformed)
        );
        assert_eq!(sb.open("v1.!!!"), Err(CryptoError::Malformed));
        assert_eq!(sb.open("plain"), Err(CryptoError::Malformed));
    }

    #[test]
    fn wrong_key_is_rejected() {
        let (a, _) = SecretBox::generate();
        let (b, _) = SecretBox::generate();
        assert_eq!(b.open(&a.seal("x")), Err(CryptoError::Rejected));
    }

    #[test]
    fn key_encoding() {
        let (sb, encoded) = SecretBox::generate();
        let again = SecretBox::from_encoded(&encoded).unwrap();
        assert_eq!(again.open(&sb.seal("k")).unwrap(), "k");
        // URL-safe, unpadded form of the same key works too.
        let raw = decode_key(&encoded).unwrap();
        let url = URL_SAFE_NO_PAD.encode(raw);
        assert!(SecretBox::from_encoded(&url).is_ok());
        assert!(matches!(
            SecretBox::from_encoded("c2hvcnQ="),
            Err(CryptoError::BadKey(m)) if m.contains("32 bytes")
        ));
        assert!(matches!(
            SecretBox::from_encoded("not base64 at all!"),
            Err(CryptoError::BadKey(_))
        ));
    }

    #[test]
    fn derived_boxes_are_separate_and_stable() {
        let (sb, encoded) = SecretBox::generate();
        let a = sb.derive("cursors");
        let again = SecretBox::from_encoded(&encoded).unwrap().derive("cursors");
        let sealed = a.seal("position");
        assert_eq!(again.open(&sealed).unwrap(), "position");
        assert_eq!(sb.open(&sealed), Err(CryptoError::Rejected));
        assert_eq!(sb.derive("other").open(&sealed), Err(CryptoError::Rejected));
        assert_eq!(a.open(&sb.seal("x")), Err(CryptoError::Rejected));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = [7u8; 32];
        let sb = SecretBox::from_key(&key);
        let dbg = format!("{sb:?}");
        assert_eq!(dbg, "SecretBox(key: ***)");
        assert!(!dbg.contains(&SecretBox::encode_key(&key)));
        // Errors do not echo the key either.
        let e = SecretBox::from_encoded("AAAA").unwrap_err().to_string();
        assert!(!e.contains("AAAA"));
    }
}
