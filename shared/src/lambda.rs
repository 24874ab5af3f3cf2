//! What every Lambda entry point shares: building the state from the environment once,
//! before the runtime starts handling events.

use crate::config::{self, Backend, ConfigError};
use crate::http::AppState;

/// State for an HTTP function: the store chosen by `PROVISYNC_BACKEND`, tokens and
/// schemas from the environment.
pub async fn state_from_env() -> Result<AppState, ConfigError> {
    let store = match Backend::from_env()? {
        Backend::Embedded => config::embedded_store()?,
        Backend::Aws => {
            return Err(ConfigError::Invalid(
                "the aws backend is not wired in yet".into(),
            ));
        }
    };
    let schemas = config::load_schemas(config::schema_dir().as_deref())?;
    config::state_for_store(store, schemas)
}
