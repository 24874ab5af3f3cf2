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
//! A listing's first page may depend on something the connector reads first (a SCIM
//! target's `/ServiceProviderConfig`): read inside the page's call, it made two requests
//! in one slot, one more a second than `max_rate` allows. It is read before the first
//! page as a call of its own ([`Connector::prepare_listing`]), once per connector.
//!
//! Each call runs in [`quota::scoped`]: the quota its last answer advertised (read by the
//! HTTP client) goes to the pace with the call's outcome, without a change to the
//! [`Connector`] port. The same scope paces a call's requests after its first (a read
//! before a PUT, the next 100 members, a second try with a fresh token): each waits for
//! the call's [`Permit::gate`](super::pace::Permit::gate), its turn at the target's rate
//! and after any `Retry-After`. Before, such a call sent them in its one slot, and a
//! `max_rate: 4` target got 5 requests within half a second. The call's latency is its
//! last request's, and each earlier answered request counts toward the rate the target
//! was seen to accept.

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

    /// Before the first page of a listing of `kind`, the connector's preparation, in a
    /// slot of its own, when it has one left. Its failure fails no listing (the connector
    /// goes without what it would have read); the pace has learned from it already (a
    /// 429's `Retry-After` holds the page that follows).
    async fn prepare(&self, kind: ResourceKind, cursor: Option<&str>) {
        if cursor.is_some() || self.inner.listing_prepared(kind) {
            return;
        }
        if let Err(e) = self.prepare_listing(kind).await {
            tracing::debug!(target = self.target, kind = kind.as_str(), error = %e, "listing preparation failed: the listing goes without it");
        }
    }

    async fn paced<T, F>(&self, call: F, page: bool) -> Result<T, ConnectorError>
    where
        F: std::future::Future<Output = Result<T, ConnectorError>>,
    {
        let permit = self.pacer.acquire(self.target, self.limits).await;
        // The HTTP client notes each answer's quota headers in this call's task-local
        // slot (`connector::quota`), and holds each request after the first until the
        // pace allows it: the pace reads what they left, the port stays as it is.
        let (result, left) = quota::scoped(Some(permit.gate()), call).await;
        // The last request's latency: a call of several requests (a read, then a
        // write) is not one slow answer.
        let last = match left.starts.as_slice() {
            [_, .., last] => *last,
            _ => permit.started(),
        };
        let latency = last.elapsed();
        let outcome = match CallOutcome::of_call(result.as_ref().err(), latency) {
            CallOutcome::Answered(_) if page => CallOutcome::Paged,
            other => other,
        };
        permit.with_requests(left).done(outcome);
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
        self.prepare(ResourceKind::User, cursor).await;
        self.page(self.inner.list_users(cursor)).await
    }

    async fn list_groups(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        self.prepare(ResourceKind::Group, cursor).await;
        self.page(self.inner.list_groups(cursor)).await
    }

    fn listing_prepared(&self, kind: ResourceKind) -> bool {
        self.inner.listing_prepared(kind)
    }

    async fn prepare_listing(&self, kind: ResourceKind) -> Result<(), ConnectorError> {
        self.call(self.inner.prepare_listing(kind)).await
    }

    fn kept(&self, kind: ResourceKind, mapped: &Value) -> Value {
        self.inner.kept(kind, mapped)
    }

    fn members_per_call(&self) -> usize {
        self.inner.members_per_call()
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::connector::refused;

    /// A target whose listing needs a preparation (`prepares`: `Some(its answer)`) or not
    /// (`None`); records each call with when it came.
    struct Lister {
        prepares: Option<Result<(), ConnectorError>>,
        prepared: Mutex<bool>,
        calls: Mutex<Vec<(String, Instant)>>,
    }

    impl Lister {
        fn new(prepares: Option<Result<(), ConnectorError>>) -> Self {
            Lister {
                prepared: Mutex::new(prepares.is_none()),
                prepares,
                calls: Mutex::default(),
            }
        }
        fn note(&self, call: &str) {
            let now = Instant::now();
            self.calls.lock().unwrap().push((call.into(), now));
        }
        fn calls(&self) -> Vec<(String, Instant)> {
            self.calls.lock().unwrap().clone()
        }
    }

    fn unused<T>() -> Result<T, ConnectorError> {
        Err(refused("not listed"))
    }

    #[async_trait]
    impl Connector for Lister {
        async fn test(&self) -> Result<String, ConnectorError> {
            unused()
        }
        async fn find_user(&self, _: &Value) -> Result<Option<TargetId>, ConnectorError> {
            unused()
        }
        async fn list_users(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
            self.note(&format!("users {cursor:?}"));
            Ok(ListPage::default())
        }
        async fn list_groups(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
            self.note(&format!("groups {cursor:?}"));
            Ok(ListPage::default())
        }
        fn listing_prepared(&self, _: ResourceKind) -> bool {
            *self.prepared.lock().unwrap()
        }
        async fn prepare_listing(&self, _: ResourceKind) -> Result<(), ConnectorError> {
            self.note("prepare");
            *self.prepared.lock().unwrap() = true;
            self.prepares.clone().unwrap_or(Ok(()))
        }
        async fn create_user(
            &self,
            _: &Value,
            _: Option<&str>,
        ) -> Result<TargetId, ConnectorError> {
            unused()
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
            unused()
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

    /// One call a second: each call's slot shows as a second more.
    const LIMITS: PaceLimits = PaceLimits {
        max_in_flight: None,
        max_rate: Some(1.0),
    };

    fn pacer() -> Pacer {
        Pacer::new(Arc::new(crate::store::embedded::EmbeddedStore::in_memory()))
    }

    /// Lists users from the start, then from a cursor, then groups from the start: the
    /// calls the connector saw, each with the seconds since the first.
    async fn listings(inner: &Lister, pacer: &Pacer) -> Vec<(String, u64)> {
        let paced = Paced {
            inner,
            pacer,
            target: "t",
            limits: LIMITS,
        };
        paced.list_users(None).await.unwrap();
        paced.list_users(Some("2")).await.unwrap();
        paced.list_groups(None).await.unwrap();
        let calls = inner.calls();
        calls
            .iter()
            .map(|(c, at)| (c.clone(), (*at - calls[0].1).as_secs_f64().round() as u64))
            .collect()
    }

    fn at(calls: &[(&str, u64)]) -> Vec<(String, u64)> {
        calls.iter().map(|(c, s)| (c.to_string(), *s)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_is_prepared_once_in_a_slot_of_its_own() {
        let pacer = pacer();
        let lister = Lister::new(Some(Ok(())));
        assert_eq!(
            listings(&lister, &pacer).await,
            at(&[
                ("prepare", 0),
                ("users None", 1),
                ("users Some(\"2\")", 2),
                ("groups None", 3)
            ])
        );
        // Nothing to prepare: no slot taken for it.
        let lister = Lister::new(None);
        let pacer = self::pacer();
        assert_eq!(
            listings(&lister, &pacer).await,
            at(&[
                ("users None", 0),
                ("users Some(\"2\")", 1),
                ("groups None", 2)
            ])
        );
    }

    /// A failed preparation fails no listing, and teaches the pace as any call does: a
    /// 429's `Retry-After` holds the first page.
    #[tokio::test(start_paused = true)]
    async fn a_refused_preparation_teaches_the_pace_and_the_listing_goes_on() {
        let pacer = pacer();
        let lister = Lister::new(Some(Err(ConnectorError::Retryable {
            status: Some(429),
            retry_after: Some(Duration::from_secs(5)),
            detail: "slow down".into(),
        })));
        assert_eq!(
            listings(&lister, &pacer).await,
            at(&[
                ("prepare", 0),
                ("users None", 5),
                ("users Some(\"2\")", 6),
                ("groups None", 7)
            ])
        );
        assert_eq!(pacer.report("t", LIMITS).slow_downs, 1);
    }
}
