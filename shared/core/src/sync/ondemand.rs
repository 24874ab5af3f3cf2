//! On-demand sync (`POST /admin/sync`): queue one change per matching user for one target,
//! as a run ([`super::runs`]): each change carries the run's id, the delivery engine
//! records its outcome, and [`sync_as_run`] waits for them within the request's time so
//! the answer (and the audit entry) says what the target answered, not what was queued.
//!
//! The admin API only knows the [`OnDemand`] trait. The delivery engine implements it (it
//! owns the change-event format). [`DirectoryOnDemand`] is a ready implementation for the
//! common case: it scans the directory's users, keeps those matching the request's filter
//! (or the one user asked for), turns each into a queue message with a function the
//! engine supplies, and sends them. The target's own `scope_filter` is not applied here:
//! the engine applies it at delivery like for any other event (so an out-of-scope user
//! gets the target's `out_of_scope` treatment, which is what a forced sync should do).

use std::sync::Arc;

use async_trait::async_trait;

use super::audit::{Audit, AuditEntry, AuditOp, AuditStatus};
use super::runs::{RunKind, RunRecord, Runs, Settlement, Tally, append_problems};
use crate::directory::{Directory, DirectoryError, Stored};
use crate::queue::{OutMessage, Queue};
use provisync_scim::ResourceKind;
use provisync_scim::filter::Filter;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OnDemandError {
    /// The user asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The directory or the queue failed.
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait OnDemand: Send + Sync {
    /// Queues a sync to `target` of the users matching `filter` (all users when `None`),
    /// or of the one user `user`, each change in run `run`. Returns how many changes were
    /// queued. `target` exists and is enabled (the caller checked).
    async fn enqueue_sync(
        &self,
        target: &str,
        filter: Option<Filter>,
        user: Option<String>,
        run: &str,
    ) -> Result<usize, OnDemandError>;
}

/// Builds the queue message for one user sync to one target (`target`, `run`, the user;
/// the engine's event format); `None` skips the user.
pub type MakeSyncMessage = Arc<dyn Fn(&str, &str, &Stored) -> Option<OutMessage> + Send + Sync>;

/// What an on-demand sync asked for, for its audit entry.
#[derive(Clone, Debug, Default)]
pub struct SyncRequest {
    pub target: String,
    /// The filter's text, when there is one.
    pub filter_text: Option<String>,
    pub filter: Option<Filter>,
    pub user: Option<String>,
    /// Who asked (`admin:<token name>`).
    pub actor: Option<String>,
}

/// An on-demand sync as a run: the changes queued, their outcomes waited for until
/// `settle_by`, the run kept open for the schedule when some are still unknown, and the
/// audit entry saying how it ended (delivered: the target took every change; failed:
/// some were refused or failed, named; queued: not all known yet).
pub async fn sync_as_run(
    on_demand: &dyn OnDemand,
    runs: &Runs,
    audit: &Audit,
    request: SyncRequest,
    settle_by: tokio::time::Instant,
) -> Result<(RunRecord, Tally), OnDemandError> {
    let mut run = RunRecord::new(&RunRecord::new_id(), RunKind::Sync, &request.target);
    run.actor = request.actor.clone();
    let queued = on_demand
        .enqueue_sync(
            &request.target,
            request.filter,
            request.user.clone(),
            &run.id,
        )
        .await?;
    run.sent.users = queued as u64;
    run.finished = true;
    let tally = match runs.wait(&run, settle_by).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, run = %run.id, "sync outcomes not read: reported queued");
            Tally::default()
        }
    };
    let settlement = tally.settlement(run.sent);
    if let Err(e) = runs.save(&run, settlement == Settlement::Pending).await {
        tracing::warn!(error = %e, run = %run.id, "run record not written");
    }
    let asked = match (&request.filter_text, &request.user) {
        (Some(f), _) => format!("filter: {f}"),
        (None, Some(u)) => format!("user {u}"),
        (None, None) => "all users".into(),
    };
    let (status, mut detail) = match settlement {
        Settlement::Confirmed => (
            AuditStatus::Delivered,
            format!("{queued} queued, {asked}; {}", tally.summary(run.sent)),
        ),
        Settlement::WithFailures => (
            AuditStatus::Failed,
            format!("{queued} queued, {asked}; {}", tally.summary(run.sent)),
        ),
        Settlement::Pending => (
            AuditStatus::Queued,
            format!(
                "{queued} queued, {asked}; outcome recorded when known (run {}): {}",
                run.id,
                tally.summary(run.sent)
            ),
        ),
    };
    append_problems(&mut detail, &tally.problems);
    let mut entry = AuditEntry::new(&request.target, AuditOp::Sync, status).detail(detail);
    if let Some(a) = &request.actor {
        entry = entry.actor(a.clone());
    }
    if let Some(u) = &request.user {
        entry = entry.resource("User", u);
    }
    if let Err(e) = audit.record(entry).await {
        tracing::warn!(error = %e, "audit entry for an on-demand sync not written");
    }
    Ok((run, tally))
}

/// [`OnDemand`] over the directory and the queue.
pub struct DirectoryOnDemand {
    directory: Directory,
    queue: Arc<dyn Queue>,
    make_message: MakeSyncMessage,
}

/// Messages sent to the queue per call (the queue batches them further).
const SEND_CHUNK: usize = 100;

impl DirectoryOnDemand {
    pub fn new(directory: Directory, queue: Arc<dyn Queue>, make_message: MakeSyncMessage) -> Self {
        DirectoryOnDemand {
            directory,
            queue,
            make_message,
        }
    }
}

#[async_trait]
impl OnDemand for DirectoryOnDemand {
    async fn enqueue_sync(
        &self,
        target: &str,
        filter: Option<Filter>,
        user: Option<String>,
        run: &str,
    ) -> Result<usize, OnDemandError> {
        let mut messages = Vec::new();
        if let Some(id) = user {
            let stored =
                self.directory
                    .load(ResourceKind::User, &id)
                    .await
                    .map_err(|e| match e {
                        DirectoryError::NotFound { .. } => {
                            OnDemandError::NotFound(format!("no user {id:?}"))
                        }
                        e => OnDemandError::Failed(e.to_string()),
                    })?;
            messages.extend((self.make_message)(target, run, &stored));
        } else {
            let schemas = self.directory.schemas().clone();
            let view = schemas.view(ResourceKind::User);
            let make = self.make_message.clone();
            self.directory
                .scan(ResourceKind::User, |s| {
                    if filter
                        .as_ref()
                        .is_none_or(|f| f.matches(&view, &s.resource))
                    {
                        messages.extend(make(target, run, &s));
                    }
                })
                .await
                .map_err(|e| OnDemandError::Failed(e.to_string()))?;
        }
        let n = messages.len();
        let mut rest = messages;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(SEND_CHUNK));
            self.queue
                .send(rest)
                .await
                .map_err(|e| OnDemandError::Failed(format!("queue: {e}")))?;
            rest = tail;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::store_queue::{StoreQueue, StoreQueueSettings};
    use crate::store::Store;
    use crate::store::embedded::EmbeddedStore;
    use provisync_scim::SchemaRegistry;
    use serde_json::json;
    use std::time::Duration;

    #[tokio::test]
    async fn queues_one_message_per_matching_user() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let dir = Directory::new(store.clone(), SchemaRegistry::builtin());
        let mut ids = Vec::new();
        for (name, active) in [("a", true), ("b", false), ("c", true)] {
            let s = dir
                .create(
                    ResourceKind::User,
                    &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": active}),
                )
                .await
                .unwrap()
                .stored;
            ids.push(s.id().to_string());
        }
        let queue: Arc<dyn Queue> =
            Arc::new(StoreQueue::new(store, "od", StoreQueueSettings::default()));
        let od = DirectoryOnDemand::new(
            dir,
            queue.clone(),
            Arc::new(|target: &str, run: &str, u: &Stored| {
                Some(OutMessage::new(
                    u.id(),
                    format!("sync-{target}-{}", u.id()),
                    json!({"target": target, "id": u.id(), "run": run}).to_string(),
                ))
            }),
        );
        let f = provisync_scim::filter::parse("active eq true").unwrap();
        assert_eq!(
            od.enqueue_sync("crm", Some(f), None, "r1").await.unwrap(),
            2
        );
        let got = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            od.enqueue_sync("crm", None, Some(ids[1].clone()), "r1")
                .await
                .unwrap(),
            1
        );
        assert!(matches!(
            od.enqueue_sync("crm", None, Some("nope".into()), "r1")
                .await,
            Err(OnDemandError::NotFound(_))
        ));
        assert_eq!(od.enqueue_sync("crm", None, None, "r1").await.unwrap(), 3);
    }
}
