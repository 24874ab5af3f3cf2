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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::directory::Directory;
use crate::http::auth::{Authenticator, Scope};
use crate::http::{AppState, HttpConfig};
use crate::scim::{ResourceKind, SchemaRegistry};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("aws: {0}")]
    Aws(#[from] crate::aws::AwsError),
    #[error("schema: {0}")]
    Schema(#[from] crate::scim::schema::SchemaError),
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

/// The state for a store, with settings from the environment.
pub fn state_for_store(
    store: Arc<dyn Store>,
    schemas: SchemaRegistry,
) -> Result<AppState, ConfigError> {
    let mut auth = Authenticator::new(Some(store.clone()));
    if let Ok(t) = std::env::var("PROVISYNC_SCIM_TOKEN")
        && !t.is_empty()
    {
        auth = auth.with_static_token(&t, Scope::Scim);
    }
    if let Ok(t) = std::env::var("PROVISYNC_ADMIN_TOKEN")
        && !t.is_empty()
    {
        auth = auth.with_static_token(&t, Scope::Admin);
    }
    let mut config = HttpConfig::default();
    if let Ok(v) = std::env::var("PROVISYNC_MAX_BODY_BYTES") {
        config.max_body_bytes = v.parse().map_err(|_| {
            ConfigError::Invalid("PROVISYNC_MAX_BODY_BYTES must be a number".into())
        })?;
    }
    config.public_url = std::env::var("PROVISYNC_PUBLIC_URL")
        .ok()
        .filter(|s| !s.is_empty());
    Ok(AppState {
        directory: Directory::new(store, schemas),
        auth: Arc::new(auth),
        config: Arc::new(config),
        admin: None,
    })
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

/// Connects the hub: the directory's change events go through the outbox to `queue`
/// (passwords sealed with `secrets`), the admin surface (targets, audit, dead letters,
/// on-demand sync) is added to `state`, and the delivery engine that consumes the queue is
/// returned. The one wiring `serve`, the Lambda functions and the tests share.
pub fn with_admin(
    state: AppState,
    queue: Arc<dyn crate::queue::Queue>,
    secrets: crate::crypto::SecretBox,
) -> AppState {
    wire_hub(state, queue, secrets, crate::sync::connectors_for).0
}

/// [`with_admin`], with the connector factory chosen and the delivery engine returned.
pub fn wire_hub(
    mut state: AppState,
    queue: Arc<dyn crate::queue::Queue>,
    secrets: crate::crypto::SecretBox,
    connectors: crate::sync::ConnectorFactory,
) -> (AppState, Arc<crate::sync::deliver::Deliverer>) {
    use crate::sync::event::{ChangeEvent, ChangeOp, EventSink, Origin};
    let secrets = Arc::new(secrets);
    let store = state.directory.store().clone();
    let sealer = secrets.clone();
    state.directory = state.directory.clone().with_events(EventSink {
        queue: queue.clone(),
        seal: Some(Arc::new(move |p: &str| Some(sealer.seal(p)))),
    });
    let mut admin =
        crate::http::admin::AdminState::new(store.clone(), queue.clone(), secrets.clone());
    admin.connectors = connectors;
    // On-demand sync: a change event for one target, carrying the user as it is now.
    let make: crate::sync::ondemand::MakeSyncMessage =
        Arc::new(|target: &str, user: &crate::directory::Stored| {
            let mut e = ChangeEvent::new(
                crate::scim::ResourceKind::User,
                user.id(),
                ChangeOp::Update,
                Origin::OnDemand,
            );
            e.resource = Some(user.resource.clone());
            e.version = user.version;
            e.only_targets = vec![target.to_string()];
            e.to_message().ok()
        });
    admin.on_demand = Some(Arc::new(crate::sync::ondemand::DirectoryOnDemand::new(
        state.directory.clone(),
        queue.clone(),
        make,
    )));
    admin.reconciler = Some(crate::sync::reconcile::Reconciler::new(
        state.directory.clone(),
        admin.targets.clone(),
        admin.audit.clone(),
        queue,
        connectors,
    ));
    admin.puller = Some(
        crate::sync::pull::Puller::new(
            store.clone(),
            crate::sync::source::Sources::new(store.clone(), secrets.clone()),
            Arc::new(crate::sync::pull::InboundSink::new(Arc::new(
                crate::sync::inbound::Inbound::new(state.directory.clone(), admin.audit.clone()),
            ))),
        )
        .with_audit(admin.audit.clone()),
    );
    let deliverer = Arc::new(crate::sync::deliver::Deliverer::new(
        admin.targets.clone(),
        crate::sync::link::Links::new(store),
        admin.audit.clone(),
        state.directory.schemas().clone(),
        Some(secrets),
        connectors,
    ));
    state.admin = Some(admin);
    (state, deliverer)
}
