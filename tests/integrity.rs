//! Limits and integrity (issue #13): caps on request bodies, writes over several
//! transactions that a retry completes, stale events kept from targets, passwords kept
//! out of the audit log, and the SCIM surface's handling of hosts, media types and paths.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use provisync_core::directory::Directory;
use provisync_core::event::{ChangeEvent, ChangeOp, EventSink, Origin, sweep_outbox};
use provisync_core::queue::store_queue::{StoreQueue, StoreQueueSettings};
use provisync_core::queue::{OutMessage, Queue};
use provisync_core::store::embedded::EmbeddedStore;
use provisync_core::store::{Item, Key, Page, Query, Store, StoreError, Write};
use provisync_http::HttpConfig;
use provisync_scim::patch::MemberRef;
use provisync_scim::{ResourceKind, SchemaRegistry};
use provisync_tests::peers::{Fault, FaultyTarget, Route, ScimPeer};
use provisync_tests::{
    Backend, GROUP_SCHEMA, Hub, PATCH_OP, TOKEN, USER_SCHEMA, backend_store, on_every_backend, q,
};
use reqwest::Method;
use serde_json::{Value, json};

// ---- 4. caps on request bodies ------------------------------------------------------

on_every_backend!(caps_are_named_in_scim_errors, |hub: Hub| async move {
    // 10,001 members in one POST: refused before any member is looked up.
    let members: Vec<Value> = (0..10_001)
        .map(|i| json!({"value": format!("m{i}")}))
        .collect();
    let r = hub
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "big", "members": members}),
        )
        .await;
    r.assert_error(400, Some("invalidValue"));
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 10000 members per request"),
        "{}",
        r.text
    );
    // 1,001 e-mail addresses on a user: one more than a multi-valued attribute holds.
    let emails: Vec<Value> = (0..1_001)
        .map(|i| json!({"value": format!("a{i}@example.org")}))
        .collect();
    let r = hub
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "many", "emails": emails}),
        )
        .await;
    r.assert_error(400, Some("invalidValue"));
    assert!(r.text.contains("at most 1000 values"), "{}", r.text);
    // The same reached one PATCH at a time: the attribute cannot grow past the cap.
    let id = hub.user("grower").await;
    let half: Vec<Value> = emails[..600].to_vec();
    let rest: Vec<Value> = emails[600..].to_vec();
    let r = hub
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "add", "path": "emails", "value": half},
                {"op": "add", "path": "emails", "value": rest}]}),
        )
        .await;
    r.assert_error(400, Some("invalidValue"));
    assert!(r.text.contains("at most 1000 values"), "{}", r.text);
    // 1,001 operations in one PATCH.
    let ops: Vec<Value> = (0..1_001)
        .map(|i| json!({"op": "replace", "path": "title", "value": format!("t{i}")}))
        .collect();
    let r = hub
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas": [PATCH_OP], "Operations": ops}),
        )
        .await;
    r.assert_error(400, Some("invalidValue"));
    assert!(r.text.contains("at most 1000"), "{}", r.text);
    // Within the caps, duplicates are still folded (set semantics kept).
    let r = hub
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "add", "path": "emails", "value": [{"value": "x@example.org"}, {"value": "x@example.org"}]},
                {"op": "add", "path": "emails", "value": [{"value": "x@example.org"}]}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["emails"], json!([{"value": "x@example.org"}]));
});

// ---- 6. writes over several transactions ---------------------------------------------

/// The Store port with a fault: the `fail_at`-th transaction (1-based, counted from
/// `arm`) fails as the backend being unavailable; everything else passes through.
struct FailingStore {
    inner: Arc<dyn Store>,
    count: AtomicUsize,
    fail_at: AtomicUsize,
}

impl FailingStore {
    fn new(inner: Arc<dyn Store>) -> Arc<FailingStore> {
        Arc::new(FailingStore {
            inner,
            count: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(0),
        })
    }
    fn arm(&self, k: usize) {
        self.count.store(0, Ordering::SeqCst);
        self.fail_at.store(k, Ordering::SeqCst);
    }
    fn transactions(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Store for FailingStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        self.inner.get_many(keys).await
    }
    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        self.inner.query(query).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(format!(
                "injected failure at transaction {n}"
            )));
        }
        self.inner.transact(writes).await
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

/// A directory on a failing store, with change events into a queue of its own (as SQS
/// is in AWS: not the directory's table). The outbox stays in the store under test.
fn directory_on(failing: &Arc<FailingStore>, _inner: &Arc<dyn Store>) -> (Directory, StoreQueue) {
    let queue_store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let queue = StoreQueue::new(queue_store.clone(), "events", StoreQueueSettings::default());
    let sink = EventSink {
        queue: Arc::new(StoreQueue::new(
            queue_store,
            "events",
            StoreQueueSettings::default(),
        )),
        seal: None,
    };
    let dir = Directory::new(failing.clone(), SchemaRegistry::builtin()).with_events(sink);
    (dir, queue)
}

/// Every change event produced so far (the outbox swept first: a failed publish leaves
/// events there).
async fn all_events(store: &Arc<dyn Store>, queue: &StoreQueue) -> Vec<ChangeEvent> {
    sweep_outbox(store.as_ref(), queue, Duration::ZERO)
        .await
        .expect("sweep");
    let mut out = Vec::new();
    loop {
        let got = queue.receive(10, Duration::ZERO).await.expect("receive");
        if got.is_empty() {
            return out;
        }
        for d in got {
            out.push(ChangeEvent::from_body(&d.body).expect("event"));
            queue.ack(&d.receipt).await.expect("ack");
        }
    }
}

fn ids_of(members: &[MemberRef]) -> std::collections::BTreeSet<String> {
    members.iter().map(|m| m.value.clone()).collect()
}

async fn users(dir: &Directory, prefix: &str, n: usize) -> Vec<String> {
    let bodies: Vec<Value> = (0..n)
        .map(|i| json!({"schemas": [USER_SCHEMA], "userName": format!("{prefix}{i}")}))
        .collect();
    dir.create_batch(ResourceKind::User, &bodies, Origin::Import, true)
        .await
        .into_iter()
        .map(|r| r.expect("user").id().to_string())
        .collect()
}

fn group_body(name: &str, members: &[String]) -> Value {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": members})
}

/// A PUT that swaps 60 of a group's 120 members for 60 others (more changes than one
/// transaction holds), failed at each of its transactions in turn, then retried: the
/// retry completes it, and every membership change is announced.
async fn replace_members_fails_at_each_step(backend: Backend) {
    let Some(inner) = backend_store(backend).await else {
        return;
    };
    let failing = FailingStore::new(inner.clone());
    let (dir, queue) = directory_on(&failing, &inner);
    let people = users(&dir, "p", 180).await;
    let before: Vec<String> = people[..120].to_vec();
    let after: Vec<String> = people[60..].to_vec();
    for k in 1.. {
        let g = dir
            .create(ResourceKind::Group, &group_body(&format!("g{k}"), &before))
            .await
            .expect("group")
            .stored;
        let gid = g.id().to_string();
        all_events(&inner, &queue).await;
        failing.arm(k);
        let body = group_body(&format!("g{k}"), &after);
        let first = dir.replace(ResourceKind::Group, &gid, &body, None).await;
        let used = failing.transactions();
        failing.arm(0);
        if first.is_err() {
            dir.replace(ResourceKind::Group, &gid, &body, None)
                .await
                .unwrap_or_else(|e| panic!("retry after a failure at transaction {k}: {e}"));
        }
        let members = ids_of(&dir.members_of(&gid).await.expect("members"));
        assert_eq!(members, after.iter().cloned().collect(), "failure at {k}");
        // What the targets were told adds up to the change.
        let mut told: std::collections::BTreeSet<String> = before.iter().cloned().collect();
        for e in all_events(&inner, &queue).await {
            if e.resource_id == gid {
                for m in &e.members_removed {
                    told.remove(m);
                }
                told.extend(e.members_added.iter().cloned());
            }
        }
        assert_eq!(told, members, "events after a failure at {k}");
        if k > used {
            // Every transaction of the change has failed once.
            assert!(k > 2, "the change took more than one transaction");
            return;
        }
    }
}

/// DELETE of a user in 60 groups, failed at each transaction in turn, then retried:
/// the user is gone from every group, and every group's targets heard of it.
///
/// Each step runs on a store of its own, its user and groups written without change
/// events: moto (5.2.5) deep-copies the whole table for every item of a
/// TransactWriteItems and keeps every copy (each model instance it creates is tracked
/// for good), so on one table that grew step after step (60 groups, their memberships,
/// their events and queue items each time) it grew past 20 GB.
async fn delete_member_fails_at_each_step(backend: Backend) {
    for k in 1.. {
        let Some(inner) = backend_store(backend).await else {
            return;
        };
        let failing = FailingStore::new(inner.clone());
        let (dir, queue) = directory_on(&failing, &inner);
        let quiet = Directory::new(inner.clone(), SchemaRegistry::builtin());
        let user = users(&quiet, "d-", 1).await.remove(0);
        let names: Vec<Value> = (0..60)
            .map(|i| json!({"schemas": [GROUP_SCHEMA], "displayName": format!("dg-{i}")}))
            .collect();
        let mut groups = Vec::new();
        for g in quiet
            .create_batch(ResourceKind::Group, &names, Origin::Import, true)
            .await
        {
            let gid = g.expect("group").id().to_string();
            quiet.patch(
                ResourceKind::Group,
                &gid,
                &json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}]}),
                None,
            )
            .await
            .expect("member");
            groups.push(gid);
        }
        assert_eq!(dir.groups_of_ids(&user).await.expect("groups").len(), 60);
        failing.arm(k);
        let first = dir.delete(ResourceKind::User, &user, None).await;
        let used = failing.transactions();
        failing.arm(0);
        if first.is_err() {
            // Still there: the retry finds it and finishes.
            dir.load(ResourceKind::User, &user)
                .await
                .expect("the user is deleted last");
            dir.delete(ResourceKind::User, &user, None)
                .await
                .unwrap_or_else(|e| panic!("retry after a failure at transaction {k}: {e}"));
        }
        assert!(dir.groups_of_ids(&user).await.expect("groups").is_empty());
        let events = all_events(&inner, &queue).await;
        for g in &groups {
            assert!(
                events
                    .iter()
                    .any(|e| &e.resource_id == g && e.members_removed.contains(&user)),
                "group {g} not told of its member's removal (failure at {k})"
            );
        }
        assert!(
            events
                .iter()
                .any(|e| e.resource_id == user && e.op == ChangeOp::Delete)
        );
        if k > used {
            assert!(k > 2, "the delete took more than one transaction");
            return;
        }
    }
}

/// POST of a group with 120 members, failed at each transaction in turn, then retried:
/// the retry creates it whole, and no failed attempt leaves a group behind.
async fn create_with_members_fails_at_each_step(backend: Backend) {
    let Some(inner) = backend_store(backend).await else {
        return;
    };
    let failing = FailingStore::new(inner.clone());
    let (dir, _queue) = directory_on(&failing, &inner);
    let people = users(&dir, "c", 120).await;
    for k in 1.. {
        let body = group_body(&format!("cg{k}"), &people);
        failing.arm(k);
        let first = dir.create(ResourceKind::Group, &body).await;
        let used = failing.transactions();
        failing.arm(0);
        let saved = match first {
            Ok(saved) => saved,
            Err(_) => dir
                .create(ResourceKind::Group, &body)
                .await
                .unwrap_or_else(|e| panic!("retry after a failure at transaction {k}: {e}")),
        };
        let members = ids_of(&dir.members_of(saved.stored.id()).await.expect("members"));
        assert_eq!(members, people.iter().cloned().collect(), "failure at {k}");
        // Each member is in exactly the groups that exist, nothing staged is left.
        let groups = dir.groups_of_ids(&people[0]).await.expect("groups");
        assert_eq!(groups.len(), k, "failure at {k}: {groups:?}");
        if k > used {
            assert!(k > 2, "the create took more than one transaction");
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_members_fails_at_each_step_embedded() {
    replace_members_fails_at_each_step(Backend::Embedded).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_members_fails_at_each_step_dynamodb() {
    replace_members_fails_at_each_step(Backend::DynamoDb).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_member_fails_at_each_step_embedded() {
    delete_member_fails_at_each_step(Backend::Embedded).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_member_fails_at_each_step_dynamodb() {
    delete_member_fails_at_each_step(Backend::DynamoDb).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_members_fails_at_each_step_embedded() {
    create_with_members_fails_at_each_step(Backend::Embedded).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_members_fails_at_each_step_dynamodb() {
    create_with_members_fails_at_each_step(Backend::DynamoDb).await;
}

// ---- 5. stale events -------------------------------------------------------------------

async fn add_target(hub: &Hub, id: &str, base: &str, token: &str) {
    let body = json!({"kind": "scim", "base_url": base, "auth": {"bearer": token}});
    let r = hub
        .admin(Method::PUT, &format!("/targets/{id}"), Some(&body))
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
}

/// Takes every message off the queue without delivering it (acked), in queue order.
async fn take_all(hub: &Hub) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let got = hub
            .queue
            .receive(10, Duration::ZERO)
            .await
            .expect("receive");
        if got.is_empty() {
            return out;
        }
        for d in got {
            out.push(d.body.clone());
            hub.queue.ack(&d.receipt).await.expect("ack");
        }
    }
}

async fn deliver(hub: &Hub, bodies: &[String]) {
    for b in bodies {
        hub.deliverer
            .deliver_body(b, false)
            .await
            .unwrap_or_else(|e| panic!("delivery: {e}"));
    }
}

fn version_of(body: &str) -> u64 {
    ChangeEvent::from_body(body).expect("event").version
}

async fn peer_user(peer: &ScimPeer, user_name: &str) -> Option<Value> {
    let (status, body) = peer
        .get(&format!(
            "/Users?filter={}",
            q(&format!("userName eq \"{user_name}\""))
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["Resources"]
        .as_array()
        .and_then(|a| a.first().cloned())
}

async fn statuses(hub: &Hub, resource: &str) -> Vec<String> {
    let r = hub
        .admin(
            Method::GET,
            &format!("/audit?resource={resource}&limit=100"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Two concurrent PATCHes whose events reach the engine newest first (each request
/// publishes after its own commit), then an old event redriven after the user was
/// deleted; and a group whose add and remove of a member arrive in reverse order.
async fn stale_events_never_reach_scim2_server(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let hub = Hub::start_on(store).await;
    add_target(&hub, "peer", &peer.base, &peer.token).await;
    let id = hub.user("ada@example.org").await;
    deliver(&hub, &take_all(&hub).await).await;
    assert!(peer_user(&peer, "ada@example.org").await.is_some());

    let patch = |title: &'static str| {
        let (hub, path) = (&hub, format!("/Users/{id}"));
        async move {
            hub.patch(
                &path,
                &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": title}]}),
            )
            .await
        }
    };
    let (a, b) = tokio::join!(patch("Analyst"), patch("Engineer"));
    assert_eq!((a.status, b.status), (200, 200), "{} {}", a.text, b.text);
    let mut events = take_all(&hub).await;
    events.sort_by_key(|b| std::cmp::Reverse(version_of(b)));
    assert_eq!(events.len(), 2);
    let newest = hub.get(&format!("/Users/{id}")).await.body["title"].clone();
    deliver(&hub, &events).await;
    let on_peer = peer_user(&peer, "ada@example.org").await.expect("on peer");
    assert_eq!(
        on_peer["title"], newest,
        "the older PATCH overwrote the newer one"
    );
    assert!(
        statuses(&hub, &id)
            .await
            .contains(&"skipped_stale".to_string())
    );

    // Redrive: the old event again, after the user was deleted there.
    let old = events[1].clone();
    assert_eq!(hub.delete(&format!("/Users/{id}")).await.status, 204);
    deliver(&hub, &take_all(&hub).await).await;
    assert!(peer_user(&peer, "ada@example.org").await.is_none());
    let mut redriven: Value = serde_json::from_str(&old).expect("event");
    redriven["id"] = json!(uuid::Uuid::now_v7().to_string());
    hub.queue
        .send(vec![OutMessage::new(
            id.clone(),
            "redrive-1",
            redriven.to_string(),
        )])
        .await
        .expect("send");
    let stale_before = statuses(&hub, &id)
        .await
        .iter()
        .filter(|s| *s == "skipped_stale")
        .count();
    deliver(&hub, &take_all(&hub).await).await;
    assert!(
        peer_user(&peer, "ada@example.org").await.is_none(),
        "a redriven old event brought a deleted user back"
    );
    let stale_after = statuses(&hub, &id)
        .await
        .iter()
        .filter(|s| *s == "skipped_stale")
        .count();
    assert_eq!(stale_after, stale_before + 1);

    // A member added then removed; the two events arrive in reverse order.
    let u = hub.user("bob@example.org").await;
    let g = hub.group("ops", &[]).await;
    deliver(&hub, &take_all(&hub).await).await;
    let member_op = |op: &'static str| {
        let path = if op == "add" {
            "members".to_string()
        } else {
            format!("members[value eq \"{u}\"]")
        };
        let mut o = json!({"op": op, "path": path});
        if op == "add" {
            o["value"] = json!([{"value": u}]);
        }
        let (hub, path) = (&hub, format!("/Groups/{g}"));
        async move {
            hub.patch(&path, &json!({"schemas": [PATCH_OP], "Operations": [o]}))
                .await
        }
    };
    assert_eq!(member_op("add").await.status, 200);
    assert_eq!(member_op("remove").await.status, 200);
    let mut events = take_all(&hub).await;
    events.reverse();
    deliver(&hub, &events).await;
    let (status, groups) = peer
        .get(&format!("/Groups?filter={}", q("displayName eq \"ops\"")))
        .await;
    assert_eq!(status, 200, "{groups}");
    let members = groups["Resources"][0]["members"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        members.is_empty(),
        "a late add undid the removal: {members:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_events_never_reach_scim2_server_embedded() {
    stale_events_never_reach_scim2_server(Backend::Embedded).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_events_never_reach_scim2_server_dynamodb() {
    stale_events_never_reach_scim2_server(Backend::DynamoDb).await;
}

// ---- 12. passwords out of the audit log -------------------------------------------------

async fn password_echoed_by_a_target_is_scrubbed(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let target = FaultyTarget::start().await;
    let hub = Hub::start_on(store).await;
    add_target(&hub, "echo", &target.base, &target.token).await;
    const PASSWORD: &str = "Tr0ub4dor&3-\"quoted\"";
    // The target quotes the request (the password JSON-escaped) and the raw value.
    let escaped = serde_json::to_string(PASSWORD).expect("json");
    target.fail(
        Route::new("POST", "/Users"),
        Fault::scim_error(
            400,
            Some("invalidValue"),
            &format!("password {PASSWORD} rejected; request was {{\"password\":{escaped}}}"),
        ),
        10,
    );
    let r = hub
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "pw@example.org", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let _delivery = hub.run_delivery();
    let id = r.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = hub
            .admin(
                Method::GET,
                &format!("/audit?resource={id}&limit=100"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.text.contains("refused") || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(r.text.contains("refused"), "{}", r.text);
    assert!(
        r.text.contains("rejected"),
        "the target's reason is kept: {}",
        r.text
    );
    assert!(
        !r.text.contains("Tr0ub4dor"),
        "password in the audit log: {}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_echoed_by_a_target_is_scrubbed_embedded() {
    password_echoed_by_a_target_is_scrubbed(Backend::Embedded).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_echoed_by_a_target_is_scrubbed_dynamodb() {
    password_echoed_by_a_target_is_scrubbed(Backend::DynamoDb).await;
}

// ---- 13. hosts, media types, paths ---------------------------------------------------

/// A hub with no public URL configured (and, when `trust`, forwarded headers trusted).
async fn unconfigured_hub(trust: bool) -> Hub {
    let store = backend_store(Backend::Embedded).await.expect("embedded");
    Hub::start_with(store, move |s| {
        s.config = Arc::new(HttpConfig {
            max_body_bytes: 256 * 1024,
            trust_forwarded_headers: trust,
            ..HttpConfig::default()
        })
    })
    .await
}

async fn create_with_headers(hub: &Hub, headers: &[(&str, &str)]) -> provisync_tests::Resp {
    let mut req = hub.client.post(hub.url("/Users")).bearer_auth(TOKEN).body(
        json!({"schemas": [USER_SCHEMA], "userName": uuid::Uuid::new_v4().to_string()}).to_string(),
    );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    provisync_tests::Resp::from(req.send().await.expect("request")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_host_is_not_reflected_unless_trusted() {
    let hub = unconfigured_hub(false).await;
    let forged = [
        ("Content-Type", "application/scim+json"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
    ];
    let r = create_with_headers(&hub, &forged).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(!r.text.contains("evil.example"), "{}", r.text);
    assert!(!r.header("location").unwrap_or_default().contains("evil"));
    // The Host header is a client's word too.
    let r = create_with_headers(
        &hub,
        &[
            ("Content-Type", "application/scim+json"),
            ("Host", "evil.example"),
        ],
    )
    .await;
    assert!(!r.text.contains("evil.example"), "{}", r.text);
    // Behind a proxy the operator vouches for, its headers give the public URL.
    let hub = unconfigured_hub(true).await;
    let r = create_with_headers(
        &hub,
        &[
            ("Content-Type", "application/scim+json"),
            ("X-Forwarded-Host", "idp-facing.example"),
            ("X-Forwarded-Proto", "https"),
        ],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let loc = r.body["meta"]["location"].as_str().unwrap_or_default();
    assert!(
        loc.starts_with("https://idp-facing.example/scim/v2/Users/"),
        "{loc}"
    );
}

on_every_backend!(media_types_and_undecodable_paths, |hub: Hub| async move {
    for ok in [
        "application/scim+json",
        "application/json",
        "application/json; charset=utf-8",
        "Application/SCIM+JSON;charset=UTF-8",
    ] {
        let r = create_with_headers(&hub, &[("Content-Type", ok)]).await;
        assert_eq!(r.status, 201, "{ok}: {}", r.text);
    }
    for bad in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        let r = create_with_headers(&hub, &[("Content-Type", bad)]).await;
        r.assert_error(415, None);
        assert!(r.text.contains("application/scim+json"), "{}", r.text);
    }
    // A PATCH in the wrong media type too.
    let id = hub.user("typed").await;
    let r = hub
        .client
        .patch(hub.url(&format!("/Users/{id}")))
        .bearer_auth(TOKEN)
        .header("Content-Type", "text/plain")
        .body(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "x"}]}).to_string())
        .send()
        .await
        .expect("request");
    provisync_tests::Resp::from(r).await.assert_error(415, None);
    // An id whose escapes are not UTF-8.
    for path in ["/Users/%FF%FE", "/Groups/%C3%28", "/Schemas/%FF"] {
        let r = hub.get(path).await;
        r.assert_error(400, Some("invalidValue"));
    }
});
