//! Webhook signatures: Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256>`) and GitHub's `X-Hub-Signature-256`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Why a secret is not usable. Never quotes the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormatError {
    #[error("it must start with `whsec_`")]
    Prefix,
    #[error("the part after `whsec_` is not base64")]
    Base64,
    #[error("the key must be 24 to 64 bytes")]
    Length,
}

/// The HMAC key of a Standard Webhooks secret (`whsec_` + base64 of 24 to 64 bytes).
pub fn decode_standard_secret(secret: &str) -> Result<Vec<u8>, SecretFormatError> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or(SecretFormatError::Prefix)?;
    let key = STANDARD
        .decode(b64)
        .map_err(|_| SecretFormatError::Base64)?;
    if !(24..=64).contains(&key.len()) {
        return Err(SecretFormatError::Length);
    }
    Ok(key)
}
