//! [`ImportSink`] into the local store.

use crate::import::{ImportSink, SinkError, Written};
use async_trait::async_trait;
use provisync_core::directory::keys::UniqueAttr;
use provisync_core::directory::{Directory, DirectoryError};
use provisync_core::event::Origin;
use provisync_scim::ResourceKind;
use serde_json::Value;

/// [`ImportSink`] straight into the store: batched creates with change events
/// (`Origin::Import`), so targets receive the users (at once, or when the hub runs:
/// [`DirectorySink::leaving_events_in_outbox`]).
#[derive(Clone)]
pub struct DirectorySink {
    directory: Directory,
    publish: bool,
}

impl DirectorySink {
    pub fn new(directory: Directory) -> Self {
        DirectorySink {
            directory,
            publish: true,
        }
    }

    /// Does not hand the change events to the queue after the commit: for a store no
    /// server is running on. With the store's own queue (as `import --data-dir` opens
    /// it) they are already in it, committed with the users; otherwise they wait in the
    /// outbox. `serve` delivers or sends them when it starts.
    pub fn leaving_events_in_outbox(mut self) -> Self {
        self.publish = false;
        self
    }
}

#[async_trait]
impl ImportSink for DirectorySink {
    async fn create_many(&self, users: &[Value]) -> Vec<Written> {
        self.directory
            .create_batch(ResourceKind::User, users, Origin::Import, self.publish)
            .await
            .into_iter()
            .map(|r| match r {
                Ok(_) => Written::Created,
                // Taken (in the hub or earlier in the file), or lost a race to a concurrent
                // write of the same user.
                Err(DirectoryError::Uniqueness { .. } | DirectoryError::Conflict) => {
                    Written::Exists
                }
                Err(e) => Written::Refused(e.to_string()),
            })
            .collect()
    }

    async fn find(&self, user: &Value) -> Result<Option<(String, Value)>, SinkError> {
        let kind = ResourceKind::User;
        for attr in [UniqueAttr::ExternalId, UniqueAttr::UserName] {
            if let Some(v) = user.get(attr.attr_name()).and_then(Value::as_str)
                && let Some(s) = self
                    .directory
                    .find_unique(kind, attr, v)
                    .await
                    .map_err(|e| SinkError::Refused(e.to_string()))?
            {
                return Ok(Some((s.id().to_string(), s.resource)));
            }
        }
        Ok(None)
    }

    async fn replace(&self, id: &str, user: &Value) -> Result<(), SinkError> {
        self.directory
            .replace(ResourceKind::User, id, user, None)
            .await
            .map(|_| ())
            .map_err(|e| SinkError::Refused(e.to_string()))
    }
}
