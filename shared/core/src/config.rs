//! Building the shared state from the environment — once per process, outside any
//! request handler (Lambda cold start does this work once).
//!
//! | variable                 | meaning                                               |
//! |--------------------------|-------------------------------------------------------|
//! | `PROVISYNC_BACKEND`      | `embedded` (default) or `aws` (see [`crate::aws`])    |
//! | `PROVISYNC_DATA_DIR`     | embedded store folder (default `./.provisync`)        |
//! | `PROVISYNC_SCIM_TOKEN`   | static SCIM bearer token (local use)                  |
//! | `PROVISYNC_ADMIN_TOKEN`  | static admin bearer token (local use)                 |
//! | `PROVISYNC_SCHEMA_DIR`   | folder of custom extension schemas (`*.json`)         |
//! | `PROVISYNC_PUBLIC_URL`   | public base URL, when the Host header is not it       |
//! | `PROVISYNC_MAX_BODY_BYTES` | request body limit (default 1 MiB)                  |
//! | `PROVISYNC_SECRET_KEY`   | base64 of 32 bytes: seals target secrets, passwords in events |
//! | `PROVISYNC_AUDIT_RETENTION_DAYS` | audit entries kept this many days (default 90) |
//! | `PROVISYNC_MAX_RECEIVE_COUNT` | `queue-deliver`: the queue's dead-letter threshold (default 5) |
//! | `PROVISYNC_ALLOW_PRIVATE_TARGETS` | `loopback` or `private`: targets and sources on those addresses (see [`crate::net`]) |

use std::path::{Path, PathBuf};

use provisync_scim::{ResourceKind, SchemaRegistry};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("schema: {0}")]
    Schema(#[from] provisync_scim::schema::SchemaError),
    #[error("{0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Loads the built-in schemas plus every `*.json` extension schema in `dir`. A file
/// named `User.*.json` / `Group.*.json` extends that resource type (default User).
pub fn load_schemas(dir: Option<&Path>) -> Result<SchemaRegistry, ConfigError> {
    let mut reg = SchemaRegistry::builtin();
    let Some(dir) = dir else { return Ok(reg) };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let kind = if name.starts_with("Group.") {
            ResourceKind::Group
        } else {
            ResourceKind::User
        };
        let text = std::fs::read_to_string(&f)?;
        reg = reg.add_extension(kind, &text, false)?;
    }
    Ok(reg)
}

/// The URL policy from `PROVISYNC_ALLOW_PRIVATE_TARGETS` (`default` when unset), made
/// the process policy ([`crate::net::set_process_policy`]). An unknown value is an error,
/// so a typo never silently allows more, or less, than meant.
pub fn url_policy_from_env(
    default: crate::net::PrivateTargets,
) -> Result<crate::net::UrlPolicy, ConfigError> {
    use crate::net::{ALLOW_PRIVATE_ENV, PrivateTargets, UrlPolicy};
    let private = match std::env::var(ALLOW_PRIVATE_ENV) {
        Err(_) => default,
        Ok(v) => PrivateTargets::parse(&v).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "{ALLOW_PRIVATE_ENV} must be `loopback`, `private` (or 1/true) or `none` (or 0/false)"
            ))
        })?,
    };
    let policy = UrlPolicy::new(private);
    crate::net::set_process_policy(policy);
    Ok(policy)
}

pub fn schema_dir() -> Option<PathBuf> {
    std::env::var_os("PROVISYNC_SCHEMA_DIR").map(PathBuf::from)
}

/// The operator key from `PROVISYNC_SECRET_KEY`, else the one kept in `data_dir/secret-key`,
/// else a new one written there (owner-only). For local use (`provisync serve`); Lambda
/// functions require the variable ([`secret_box_from_env`]).
pub fn local_secret_box(data_dir: &Path) -> Result<crate::crypto::SecretBox, ConfigError> {
    use crate::crypto::SecretBox;
    if let Some(sb) = SecretBox::from_env()? {
        return Ok(sb);
    }
    let file = data_dir.join("secret-key");
    if let Ok(text) = std::fs::read_to_string(&file)
        && !text.trim().is_empty()
    {
        return Ok(SecretBox::from_encoded(text.trim())?);
    }
    let (sb, encoded) = SecretBox::generate();
    std::fs::create_dir_all(data_dir)?;
    write_private(&file, &encoded)?;
    tracing::info!(file = %file.display(), "generated a new secret key for targets' credentials");
    Ok(sb)
}

/// `PROVISYNC_SECRET_KEY`, required.
pub fn secret_box_from_env() -> Result<crate::crypto::SecretBox, ConfigError> {
    crate::crypto::SecretBox::from_env()?.ok_or_else(|| {
        ConfigError::Invalid(
            "PROVISYNC_SECRET_KEY is not set (base64 of 32 random bytes: `openssl rand -base64 32`)"
                .into(),
        )
    })
}

/// Writes a file readable by its owner only (created so from the start on Unix).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())
}
