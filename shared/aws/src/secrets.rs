//! The operator key from AWS Secrets Manager, read once per execution environment.
//!
//! A function is given the secret's ARN (`PROVISYNC_SECRET_KEY_ARN`, not a secret), calls
//! `GetSecretValue` on it at cold start and keeps the key in its [`SecretBox`] for the
//! life of the execution environment. The key never passes through the function's
//! environment or configuration, so `lambda:GetFunctionConfiguration` reveals nothing;
//! reading it takes `secretsmanager:GetSecretValue` on that one ARN, which the template
//! grants to the functions that need it and to nobody else.
//!
//! The secret holds the key as text: base64 of 32 random bytes (`openssl rand -base64
//! 32`), surrounding white space ignored. Errors name the secret, never its value.

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
use provisync_core::crypto::SecretBox;

/// The environment variable holding the ARN of the operator key's secret.
pub const SECRET_KEY_ARN_ENV: &str = "PROVISYNC_SECRET_KEY_ARN";

/// Why the operator key could not be read. Never carries the secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{SECRET_KEY_ARN_ENV} is not set (the ARN of the Secrets Manager secret holding the operator key)"
    )]
    NotConfigured,
    #[error("GetSecretValue {arn}: {detail}")]
    Unavailable { arn: String, detail: String },
    #[error("secret {arn} has no SecretString (store the key as text: `openssl rand -base64 32`)")]
    NotText { arn: String },
    #[error(
        "secret {arn} does not hold a key: base64 of 32 bytes expected (`openssl rand -base64 32`)"
    )]
    NotAKey { arn: String },
}

/// `PROVISYNC_SECRET_KEY_ARN`, when set and not blank.
pub fn secret_key_arn_from_env() -> Option<String> {
    std::env::var(SECRET_KEY_ARN_ENV)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Reads the operator key from the secret `arn` (one `GetSecretValue` call).
pub async fn operator_key(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<SecretBox, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError::Unavailable {
            arn: arn.to_string(),
            detail: match e.code() {
                // The service's own words for the common cases are clear enough; the
                // error context adds the transport detail for the rest.
                Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
                None => DisplayErrorContext(&e).to_string(),
            },
        })?;
    let text = out.secret_string().ok_or_else(|| SecretError::NotText {
        arn: arn.to_string(),
    })?;
    SecretBox::from_encoded(text.trim()).map_err(|_| SecretError::NotAKey {
        arn: arn.to_string(),
    })
}
