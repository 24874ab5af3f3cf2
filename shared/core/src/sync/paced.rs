//! A connector whose every call to the target takes a slot of the target's pace
//! ([`super::pace`]): the window counts calls the target is serving, not the hub's own
//! work around them.
//!
//! A delivery reads links before its call and writes a link and a receipt after it, each
//! a store transaction with a flush. Held over the whole delivery, a slot spent that store
//! work idle on the target's side: with 4 slots, a single-threaded server had about two
//! calls to serve (74-81% of its direct create rate in the bench; 91% once the operator
//! allowed 10). Held over each call, the target always has its window's calls, the pace's
//! latency is the target's own, and `max_rate` counts what the target's limiter counts: a
//! user joining three groups is four calls, not one.
//!
//! Each call runs in [`quota::scoped`]: the quota its last answer advertised (read by the
//! HTTP client) goes to the pace with the call's outcome, without a change to the
//! [`Connector`] port.

use async_trait::async_trait;
use provisync_scim::ResourceKind;
use serde_json::Value;

use super::pace::{CallOutcome, PaceLimits, Pacer};
use crate::connector::{Connector, ConnectorError, ListPage, TargetId, quota};

/// `inner`, paced: each call waits for a slot of `target`'s pace and tells it how the call
/// ended.
pub struct Paced<'a> {
    pub inner: &'a dyn Connector,
    pub pacer: &'a Pacer,
    pub target: &'a str,
    pub limits: PaceLimits,
}

impl Paced<'_> {
    async fn call<T, F>(&self, call: F) -> Result<T, ConnectorError>
    where
        F: std::future::Future<Output = Result<T, ConnectorError>>,
    {
        self.paced(call, false).await
    }

    /// A page of a listing (a reconcile's read): it takes a slot and counts toward the
    /// rate like any call, but its latency (a page of 100 resources) is not compared with
    /// the target's best (a single write), which would read as a queue and shrink the
    /// window deliveries share.
    async fn page(
        &self,
        call: impl std::future::Future<Output = Result<ListPage, ConnectorError>>,
    ) -> Result<ListPage, ConnectorError> {
        self.paced(call, true).await
    }

    async fn paced<T, F>(&self, call: F, page: bool) -> Result<T, ConnectorError>
    where
        F: std::future::Future<Output = Result<T, ConnectorError>>,
    {
        let permit = self.pacer.acquire(self.target, self.limits).await;
        // The HTTP client notes each answer's quota headers in this call's task-local
        // slot (`connector::quota`): the pace reads the last, the port stays as it is.
        let (result, quota) = quota::scoped(call).await;
        let latency = permit.started().elapsed();
        let outcome = match CallOutcome::of_call(result.as_ref().err(), latency) {
            CallOutcome::Answered(_) if page => CallOutcome::Paged,
            other => other,
        };
        permit.with_quota(quota).done(outcome);
        result
    }
}

#[async_trait]
impl Connector for Paced<'_> {
    async fn test(&self) -> Result<String, ConnectorError> {
        self.call(self.inner.test()).await
    }

    fn create_detects_existing(&self) -> bool {
        self.inner.create_detects_existing()
    }

    async fn find_user(&self, user: &Value) -> Result<Option<TargetId>, ConnectorError> {
        self.call(self.inner.find_user(user)).await
    }

    async fn list_users(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        self.page(self.inner.list_users(cursor)).await
    }

    async fn list_groups(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        self.page(self.inner.list_groups(cursor)).await
    }

    fn kept(&self, kind: ResourceKind, mapped: &Value) -> Value {
        self.inner.kept(kind, mapped)
    }

    async fn relay(&self, event_id: &str, envelope: &Value) -> Result<(), ConnectorError> {
        self.call(self.inner.relay(event_id, envelope)).await
    }

    async fn create_user(
        &self,
        user: &Value,
        password: Option<&str>,
    ) -> Result<TargetId, ConnectorError> {
        self.call(self.inner.create_user(user, password)).await
    }

    async fn update_user(
        &self,
        id: &str,
        user: &Value,
        previous: Option<&Value>,
        password: Option<&str>,
    ) -> Result<Option<TargetId>, ConnectorError> {
        self.call(self.inner.update_user(id, user, previous, password))
            .await
    }

    async fn disable_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.call(self.inner.disable_user(id)).await
    }

    async fn delete_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.call(self.inner.delete_user(id)).await
    }

    async fn find_group(&self, group: &Value) -> Result<Option<TargetId>, ConnectorError> {
        self.call(self.inner.find_group(group)).await
    }

    async fn create_group(&self, group: &Value) -> Result<TargetId, ConnectorError> {
        self.call(self.inner.create_group(group)).await
    }

    async fn update_group(
        &self,
        id: &str,
        group: &Value,
        previous: Option<&Value>,
    ) -> Result<(), ConnectorError> {
        self.call(self.inner.update_group(id, group, previous))
            .await
    }

    async fn delete_group(&self, id: &str) -> Result<(), ConnectorError> {
        self.call(self.inner.delete_group(id)).await
    }

    async fn add_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError> {
        self.call(self.inner.add_members(group_id, member_ids))
            .await
    }

    async fn remove_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError> {
        self.call(self.inner.remove_members(group_id, member_ids))
            .await
    }
}
