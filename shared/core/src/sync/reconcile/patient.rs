//! A run's calls to the target, paced, and tried again when the target asks to slow down.
//!
//! A delivery refused with a 429 or a 503 goes back to the queue and is retried after the
//! target's `Retry-After`. A reconcile has no queue for its own calls (the pages it
//! reads, the deprovisions by target id it sends): without a retry, one 429 from a
//! rate-limited target failed the run, to be continued a cycle later. So a call the
//! target refused with 429 or 503 (not done there) is tried again, at most
//! [`ATTEMPTS`] times in all, while the run's deadline allows: after the `Retry-After`,
//! which the pace holds every call to the target until (the call is paced:
//! [`crate::sync::paced`]), or after [`BACKOFF`] per attempt when the target gave none.
//! Only reads and idempotent deprovisions are retried; a call that was not done gives
//! the same result when it is done later.

use std::time::Duration;

use async_trait::async_trait;
use provisync_scim::ResourceKind;
use serde_json::Value;
use tokio::time::Instant;

use crate::connector::{Connector, ConnectorError, ListPage, TargetId};

/// Tries of one call in all (the first and its retries).
pub(super) const ATTEMPTS: u32 = 3;
/// The wait before a retry, per attempt, when the target gave no `Retry-After`.
pub(super) const BACKOFF: Duration = Duration::from_secs(1);

/// `inner` (paced), its reads and deprovisions retried on a 429 or 503 until `deadline`.
pub(super) struct Patient<'a> {
    pub inner: &'a dyn Connector,
    /// No retry whose wait would end after this (the run's deadline).
    pub deadline: Instant,
}

/// How long to wait before trying `error`'s call again (`None`: do not).
fn retry_wait(error: &ConnectorError) -> Option<Option<Duration>> {
    match error {
        ConnectorError::Retryable {
            status: Some(429 | 503),
            retry_after,
            ..
        } => Some(*retry_after),
        _ => None,
    }
}

impl Patient<'_> {
    async fn again<T, F, Fut>(&self, call: F) -> Result<T, ConnectorError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ConnectorError>>,
    {
        let mut attempt = 1;
        loop {
            let result = call().await;
            let Err(e) = &result else {
                return result;
            };
            let Some(retry_after) = retry_wait(e) else {
                return result;
            };
            if attempt >= ATTEMPTS {
                return result;
            }
            let wait = retry_after.unwrap_or(BACKOFF * attempt);
            if Instant::now() + wait > self.deadline {
                return result;
            }
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %e, "reconcile call retried");
            if retry_after.is_none() {
                tokio::time::sleep(wait).await;
            }
            // With a `Retry-After`, the pace holds the next call until it has passed.
            attempt += 1;
        }
    }
}

#[async_trait]
impl Connector for Patient<'_> {
    async fn test(&self) -> Result<String, ConnectorError> {
        self.again(|| self.inner.test()).await
    }

    fn create_detects_existing(&self) -> bool {
        self.inner.create_detects_existing()
    }

    async fn find_user(&self, user: &Value) -> Result<Option<TargetId>, ConnectorError> {
        self.again(|| self.inner.find_user(user)).await
    }

    async fn list_users(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        self.again(|| self.inner.list_users(cursor)).await
    }

    async fn list_groups(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        self.again(|| self.inner.list_groups(cursor)).await
    }

    fn listing_prepared(&self, kind: ResourceKind) -> bool {
        self.inner.listing_prepared(kind)
    }

    /// Once: a listing goes without its preparation when that fails.
    async fn prepare_listing(&self, kind: ResourceKind) -> Result<(), ConnectorError> {
        self.inner.prepare_listing(kind).await
    }

    fn kept(&self, kind: ResourceKind, mapped: &Value) -> Value {
        self.inner.kept(kind, mapped)
    }

    fn members_per_call(&self) -> usize {
        self.inner.members_per_call()
    }

    // Writes that are not idempotent (or not the reconcile's) go once.

    async fn relay(&self, event_id: &str, envelope: &Value) -> Result<(), ConnectorError> {
        self.inner.relay(event_id, envelope).await
    }

    async fn create_user(
        &self,
        user: &Value,
        password: Option<&str>,
    ) -> Result<TargetId, ConnectorError> {
        self.inner.create_user(user, password).await
    }

    async fn update_user(
        &self,
        id: &str,
        user: &Value,
        previous: Option<&Value>,
        password: Option<&str>,
    ) -> Result<Option<TargetId>, ConnectorError> {
        self.inner.update_user(id, user, previous, password).await
    }

    async fn disable_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.again(|| self.inner.disable_user(id)).await
    }

    async fn delete_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.again(|| self.inner.delete_user(id)).await
    }

    async fn find_group(&self, group: &Value) -> Result<Option<TargetId>, ConnectorError> {
        self.again(|| self.inner.find_group(group)).await
    }

    async fn create_group(&self, group: &Value) -> Result<TargetId, ConnectorError> {
        self.inner.create_group(group).await
    }

    async fn update_group(
        &self,
        id: &str,
        group: &Value,
        previous: Option<&Value>,
    ) -> Result<(), ConnectorError> {
        self.inner.update_group(id, group, previous).await
    }

    async fn delete_group(&self, id: &str) -> Result<(), ConnectorError> {
        self.again(|| self.inner.delete_group(id)).await
    }

    async fn add_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError> {
        self.inner.add_members(group_id, member_ids).await
    }

    async fn remove_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError> {
        self.again(|| self.inner.remove_members(group_id, member_ids))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers `list_users` and `delete_user` with its script, in order (then `Ok`), and
    /// records when each call came.
    #[derive(Default)]
    struct Scripted {
        answers: Mutex<Vec<ConnectorError>>,
        calls: Mutex<Vec<Instant>>,
    }

    impl Scripted {
        fn new(mut answers: Vec<ConnectorError>) -> Self {
            answers.reverse();
            Scripted {
                answers: Mutex::new(answers),
                calls: Mutex::default(),
            }
        }
        fn next(&self) -> Result<(), ConnectorError> {
            self.calls.lock().unwrap().push(Instant::now());
            self.answers.lock().unwrap().pop().map_or(Ok(()), Err)
        }
        fn calls(&self) -> Vec<Instant> {
            self.calls.lock().unwrap().clone()
        }
    }

    fn unused<T>() -> Result<T, ConnectorError> {
        Err(crate::connector::refused("not scripted"))
    }

    #[async_trait]
    impl Connector for Scripted {
        async fn test(&self) -> Result<String, ConnectorError> {
            unused()
        }
        async fn find_user(&self, _: &Value) -> Result<Option<TargetId>, ConnectorError> {
            unused()
        }
        async fn list_users(&self, _: Option<&str>) -> Result<ListPage, ConnectorError> {
            self.next().map(|()| ListPage::default())
        }
        async fn create_user(
            &self,
            _: &Value,
            _: Option<&str>,
        ) -> Result<TargetId, ConnectorError> {
            self.next().map(|()| "new".into())
        }
        async fn update_user(
            &self,
            _: &str,
            _: &Value,
            _: Option<&Value>,
            _: Option<&str>,
        ) -> Result<Option<TargetId>, ConnectorError> {
            unused()
        }
        async fn disable_user(&self, _: &str) -> Result<(), ConnectorError> {
            unused()
        }
        async fn delete_user(&self, _: &str) -> Result<(), ConnectorError> {
            self.next()
        }
        async fn find_group(&self, _: &Value) -> Result<Option<TargetId>, ConnectorError> {
            unused()
        }
        async fn create_group(&self, _: &Value) -> Result<TargetId, ConnectorError> {
            unused()
        }
        async fn update_group(
            &self,
            _: &str,
            _: &Value,
            _: Option<&Value>,
        ) -> Result<(), ConnectorError> {
            unused()
        }
        async fn delete_group(&self, _: &str) -> Result<(), ConnectorError> {
            unused()
        }
        async fn add_members(&self, _: &str, _: &[TargetId]) -> Result<(), ConnectorError> {
            unused()
        }
        async fn remove_members(&self, _: &str, _: &[TargetId]) -> Result<(), ConnectorError> {
            unused()
        }
    }

    fn slow_down(status: u16, retry_after: Option<u64>) -> ConnectorError {
        ConnectorError::Retryable {
            status: Some(status),
            retry_after: retry_after.map(Duration::from_secs),
            detail: "slow down".into(),
        }
    }

    fn in_secs(s: u64) -> Instant {
        Instant::now() + Duration::from_secs(s)
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_down_is_tried_again_within_the_attempts_and_the_deadline() {
        // A 503 without `Retry-After`, then a 429 with one: the third try is answered.
        let target = Scripted::new(vec![slow_down(503, None), slow_down(429, Some(2))]);
        let p = Patient {
            inner: &target,
            deadline: in_secs(60),
        };
        assert_eq!(p.list_users(None).await, Ok(ListPage::default()));
        let calls = target.calls();
        assert_eq!(calls.len(), 3);
        // The backoff was waited here; the `Retry-After` is the pace's to hold (unpaced
        // here, so the third call came at once).
        assert!(calls[1] - calls[0] >= BACKOFF, "{calls:?}");

        // At most ATTEMPTS tries in all: the last refusal is the answer.
        let target = Scripted::new(vec![slow_down(429, Some(1)); 3]);
        let p = Patient {
            inner: &target,
            deadline: in_secs(60),
        };
        assert_eq!(p.delete_user("1").await, Err(slow_down(429, Some(1))));
        assert_eq!(target.calls().len(), ATTEMPTS as usize);

        // A wait past the deadline is not started: the run stops and resumes next cycle.
        let target = Scripted::new(vec![slow_down(429, Some(30))]);
        let p = Patient {
            inner: &target,
            deadline: in_secs(10),
        };
        assert!(p.list_users(None).await.is_err());
        assert_eq!(target.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_and_creates_go_once() {
        // A timeout (no status) or a refusal is not a request to slow down.
        for e in [
            ConnectorError::Retryable {
                status: None,
                retry_after: None,
                detail: "timed out".into(),
            },
            crate::connector::refused("no"),
        ] {
            let target = Scripted::new(vec![e.clone()]);
            let p = Patient {
                inner: &target,
                deadline: in_secs(60),
            };
            assert_eq!(p.list_users(None).await, Err(e));
            assert_eq!(target.calls().len(), 1);
        }
        // A create is not idempotent: a 429 is its answer.
        let target = Scripted::new(vec![slow_down(429, Some(1))]);
        let p = Patient {
            inner: &target,
            deadline: in_secs(60),
        };
        assert!(p.create_user(&Value::Null, None).await.is_err());
        assert_eq!(target.calls().len(), 1);
    }
}
