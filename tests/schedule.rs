//! The scheduled cycle end to end, on both stores: reconcile against a real
//! `scim2-server` changed behind the hub's back (only the drift is repaired, a target in
//! sync receives no write), orphan policies, leases, resumable runs; pull from a real
//! SCIM server and from a Drupal JSON:API site (a local server answering the documented
//! shapes, `tests/fixtures/drupal/`).

use std::time::Duration;

use provisync_core::connector::{ConnectorError, ListPage};
use provisync_core::source::{SourceConfig, Sources};
use provisync_core::sync::pull::PullReport;
use provisync_core::sync::reconcile::{Lease, ReconcileReport, RunState};
use provisync_core::sync::schedule::{CycleReport, run_schedule};
use provisync_tests::peers::ScimPeer;
use provisync_tests::proxy::RecordingProxy;
use provisync_tests::{Backend, Hub, USER_SCHEMA, backend_store, eventually, q, settle};
use reqwest::Method;
use serde_json::{Value, json};

async fn add_target(hub: &Hub, id: &str, base: &str, token: &str, extra: Value) {
    let mut body = json!({"kind": "scim", "base_url": base, "auth": {"bearer": token},
        "mode": "scheduled"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = hub
        .admin(Method::PUT, &format!("/targets/{id}"), Some(&body))
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
}

async fn find_user(peer: &ScimPeer, user_name: &str) -> Option<Value> {
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

async fn cycle(hub: &Hub) -> CycleReport {
    // The Lambda's budget: the emulated DynamoDB is slow, and a cycle that runs out of
    // time continues in the next one (tested below), which these tests do not want.
    run_schedule(&hub.schedule, provisync_core::sync::schedule::CYCLE_BUDGET)
        .await
        .expect("cycle")
}

/// Cycles until the one source's pull is complete (a pull that runs out of its share of
/// the budget continues in the next cycle, by design: on a loaded machine the emulated
/// DynamoDB can take longer than that share), with the counts of all of them summed.
async fn pull_cycle(hub: &Hub) -> PullReport {
    let mut total: Option<PullReport> = None;
    for _ in 0..8 {
        let r = cycle(hub).await;
        assert_eq!(r.pulled.len(), 1, "{r:?}");
        let p = r.pulled[0].clone();
        assert!(p.error.is_none(), "{p:?}");
        let sum = match total.take() {
            None => p,
            Some(mut t) => {
                for (a, b) in [(&mut t.users, &p.users), (&mut t.groups, &p.groups)] {
                    a.fetched += b.fetched;
                    a.created += b.created;
                    a.updated += b.updated;
                    a.unchanged += b.unchanged;
                    a.stale += b.stale;
                    a.failed += b.failed;
                }
                t.complete = p.complete;
                t
            }
        };
        if sum.complete {
            return sum;
        }
        total = Some(sum);
    }
    panic!("the pull did not complete in 8 cycles: {total:?}");
}

fn only(report: &CycleReport) -> &ReconcileReport {
    assert_eq!(report.reconciled.len(), 1, "{report:?}");
    &report.reconciled[0]
}

fn person(name: &str, given: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": name,
        "name": {"givenName": given, "familyName": "Example"},
        "emails": [{"value": format!("{name}@example.org"), "type": "work", "primary": true}],
        "active": true})
}

/// The peer's requests settle (deliveries done) and nothing else arrives for a moment.
async fn quiet(proxy: &RecordingProxy) {
    settle(|| proxy.requests().len()).await;
}

async fn reconcile_repairs_only_the_drift(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let proxy = RecordingProxy::start(&peer.base).await;
    let hub = Hub::start_on(store).await;
    let _delivery = hub.run_delivery();
    let base = format!("{}/v2", proxy.origin);
    add_target(&hub, "peer", &base, &peer.token, json!({})).await;
    for (n, g) in [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")] {
        let r = hub.post("/Users", &person(n, g)).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // Scheduled mode: nothing goes out until the cycle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());

    // First cycle: the three are missing on the target.
    let r = cycle(&hub).await;
    let c = &only(&r).counts;
    assert_eq!(only(&r).state, RunState::Complete);
    assert_eq!((c.checked, c.created, c.updated, c.unchanged), (0, 3, 0, 0));
    eventually(
        "three users on scim2-server",
        Duration::from_secs(20),
        || async {
            find_user(&peer, "carol").await.is_some()
                && find_user(&peer, "bob").await.is_some()
                && find_user(&peer, "alice").await.is_some()
        },
    )
    .await;
    quiet(&proxy).await;
    assert_eq!(proxy.writes().len(), 3, "{:?}", proxy.writes());

    // In sync: a second cycle writes nothing.
    proxy.clear();
    let r = cycle(&hub).await;
    let c = &only(&r).counts;
    assert_eq!(
        (c.checked, c.created, c.updated, c.unchanged),
        (3, 0, 0, 3),
        "{r:?}"
    );
    quiet(&proxy).await;
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());

    // Behind the hub's back: delete bob, edit alice's name, add a stranger.
    let bob = find_user(&peer, "bob").await.unwrap();
    let resp = peer
        .req(
            Method::DELETE,
            &format!("/Users/{}", bob["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let alice = find_user(&peer, "alice").await.unwrap();
    let resp = peer
        .req(
            Method::PATCH,
            &format!("/Users/{}", alice["id"].as_str().unwrap()),
        )
        .body(
            json!({"schemas": [provisync_tests::PATCH_OP], "Operations": [
            {"op": "replace", "path": "name.givenName", "value": "Mallory-edited"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let (status, stranger) = peer
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "stranger", "active": true}),
        )
        .await;
    assert_eq!(status, 201, "{stranger}");

    // The next cycle repairs exactly those: one create, one update; the stranger is
    // reported (policy `report`, the default).
    proxy.clear();
    let r = cycle(&hub).await;
    let c = &only(&r).counts;
    assert_eq!(
        (
            c.checked,
            c.created,
            c.updated,
            c.unchanged,
            c.orphaned,
            c.deactivated,
            c.deleted
        ),
        (3, 1, 1, 1, 1, 0, 0),
        "{r:?}"
    );
    eventually(
        "bob back and alice repaired",
        Duration::from_secs(20),
        || async {
            let a = find_user(&peer, "alice").await;
            find_user(&peer, "bob").await.is_some()
                && a.is_some_and(|a| a["name"]["givenName"] == "Alice")
        },
    )
    .await;
    quiet(&proxy).await;
    let writes = proxy.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(
        writes
            .iter()
            .any(|(m, p)| m == "POST" && p.ends_with("/Users"))
    );
    assert!(
        writes
            .iter()
            .any(|(m, p)| m == "PATCH" && p.contains("/Users/"))
    );
    assert!(find_user(&peer, "stranger").await.unwrap()["active"] == true);

    // And then nothing again.
    proxy.clear();
    let r = cycle(&hub).await;
    let c = &only(&r).counts;
    assert_eq!(
        (c.created, c.updated, c.unchanged, c.orphaned),
        (0, 0, 3, 1),
        "{r:?}"
    );
    quiet(&proxy).await;
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());

    // The counts are in the audit log.
    let a = hub
        .admin(Method::GET, "/audit?target=peer&op=reconcile", None)
        .await;
    let entries = a.body["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 4, "{}", a.text);
    assert!(
        entries[0]["detail"]
            .as_str()
            .unwrap()
            .contains("checked=4 created=0 updated=0"),
        "{}",
        a.text
    );

    // Orphan policy `deactivate`, then `delete`.
    add_target(
        &hub,
        "peer",
        &base,
        &peer.token,
        json!({"orphans": "deactivate"}),
    )
    .await;
    let r = cycle(&hub).await;
    assert_eq!(only(&r).counts.deactivated, 1, "{r:?}");
    assert_eq!(find_user(&peer, "stranger").await.unwrap()["active"], false);
    add_target(
        &hub,
        "peer",
        &base,
        &peer.token,
        json!({"orphans": "delete"}),
    )
    .await;
    let r = cycle(&hub).await;
    assert_eq!(only(&r).counts.deleted, 1, "{r:?}");
    assert!(find_user(&peer, "stranger").await.is_none());
    // The hub's own users were never touched by the orphan policy.
    for n in ["alice", "bob", "carol"] {
        assert_eq!(find_user(&peer, n).await.unwrap()["active"], true, "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_repairs_only_the_drift_embedded() {
    reconcile_repairs_only_the_drift(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_repairs_only_the_drift_dynamodb() {
    reconcile_repairs_only_the_drift(Backend::DynamoDb).await;
}

/// A held lease makes another cycle skip the target; a large reconcile with no time
/// left continues page by page where it stopped.
async fn lease_and_resume(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let hub = Hub::start_on(store.clone()).await;
    add_target(&hub, "peer", &peer.base, &peer.token, json!({})).await;
    // 150 users, on both sides (the target got them some other way): two pages.
    for i in 0..150 {
        let u = json!({"schemas": [USER_SCHEMA], "userName": format!("user{i:03}")});
        assert_eq!(hub.post("/Users", &u).await.status, 201);
        let (s, b) = peer.post("/Users", &u).await;
        assert_eq!(s, 201, "{b}");
    }
    let reconciler = hub.schedule.reconciler.clone();
    let target = reconciler.targets().get("peer").await.unwrap().unwrap();

    // Another cycle holds the target.
    let lease = Lease::acquire(store.as_ref(), "peer", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("lease");
    let r = cycle(&hub).await;
    assert_eq!(only(&r).state, RunState::Busy);
    assert_eq!(only(&r).counts.checked, 0);
    // Two runs at once: exactly one does the work.
    lease.release(store.as_ref()).await.unwrap();

    // No time at all: each run reads one page, then stops and keeps its place. Nothing
    // delivers yet: what the runs queue stays queued (no outcome is claimed).
    let now = tokio::time::Instant::now;
    let first = reconciler.reconcile_target(&target, now()).await;
    assert_eq!(first.state, RunState::Suspended, "{first:?}");
    assert_eq!(
        (first.pages, first.counts.checked, first.resumed),
        (1, 100, false)
    );
    // Matched by userName, but the target lacks the externalId the hub sends: updates,
    // queued (not "updated": the target has not answered).
    assert_eq!((first.counts.queued, first.counts.updated), (100, 0));
    let second = reconciler.reconcile_target(&target, now()).await;
    assert_eq!(second.state, RunState::Pending, "{second:?}");
    assert_eq!((second.pages, second.resumed), (1, true));
    assert_eq!(second.run, first.run, "one run across the cycles");
    assert_eq!(second.counts.checked, 150);
    assert_eq!((second.counts.queued, second.counts.updated), (150, 0));
    assert_eq!(second.counts.created, 0, "seen ids kept across the runs");
    // Done: the next run starts over (waiting for no outcome: `settle_by` now). The
    // outcomes of these runs reaching the audit log later is tested with fewer changes
    // in `refusals_are_reported_not_counted`.
    let later = || now() + Duration::from_secs(200);
    let third = reconciler
        .reconcile_target_until(&target, later(), now())
        .await;
    assert!(!third.resumed);
    assert_eq!(third.pages, 2);
    assert_ne!(third.run, second.run);

    // Concurrent runs: one holds the lease, the other is told so.
    let (a, b) = tokio::join!(
        reconciler.reconcile_target_until(&target, later(), now()),
        reconciler.reconcile_target_until(&target, later(), now())
    );
    let states = [a.state, b.state];
    assert!(states.contains(&RunState::Busy), "{states:?}");
    assert!(states.contains(&RunState::Pending), "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_and_resume_embedded() {
    lease_and_resume(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_and_resume_dynamodb() {
    lease_and_resume(Backend::DynamoDb).await;
}

/// A target that refuses every change (`scim2-server` refuses attributes it does not
/// know): the reconcile and the on-demand sync report the refusals by name, count
/// nothing as created, end in a state that says so, and audit `failed`. Before, the run
/// said `created=3 failed=0`, `complete`, and its audit entry `delivered`. Once the target
/// takes the changes, the same calls report them created. A change whose target was
/// disabled before it was delivered is reported skipped, not left waiting.
async fn refusals_are_reported_not_counted(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let hub = Hub::start_on(store).await;
    let delivery = hub.run_delivery();
    let refused_rules = json!({"mode": "manual", "mapping": [
        {"target": "favoriteColor", "value": "blue"},
        {"applies_to": "groups", "target": "favoriteColor", "value": "blue"}]});
    add_target(&hub, "peer", &peer.base, &peer.token, refused_rules).await;
    let mut ids = Vec::new();
    for (n, g) in [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")] {
        ids.push(hub.post("/Users", &person(n, g)).await.id());
    }
    hub.group("Team", &[&ids[0]]).await;

    let r = hub
        .admin(
            Method::POST,
            "/sync",
            Some(&json!({"target": "peer", "reconcile": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let report = &r.body["reconcile"];
    assert_eq!(report["state"], "complete_with_failures", "{}", r.text);
    let c = &report["counts"];
    assert_eq!(
        provisync_tests::counts_of(c, ["created", "refused", "failed", "queued"]),
        [0, 3, 0, 0],
        "{}",
        r.text
    );
    assert_eq!(
        provisync_tests::counts_of(&c["groups"], ["created", "refused", "queued"]),
        [0, 1, 0],
        "{}",
        r.text
    );
    let mut named: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["status"], "refused", "{p}");
            assert!(
                p["detail"].as_str().unwrap().contains("favoriteColor"),
                "{p}"
            );
            p["name"].as_str().unwrap()
        })
        .collect();
    named.sort_unstable();
    assert_eq!(named, ["Team", "alice", "bob", "carol"], "{}", r.text);
    assert!(find_user(&peer, "alice").await.is_none());
    let a = hub
        .admin(Method::GET, "/audit?target=peer&op=reconcile", None)
        .await;
    let entry = &a.body["entries"][0];
    assert_eq!(entry["status"], "failed", "{}", a.text);
    assert!(
        entry["detail"].as_str().unwrap().contains("refused=3"),
        "{}",
        a.text
    );

    // On demand: the same.
    let r = hub
        .admin(
            Method::POST,
            "/sync",
            Some(&json!({"target": "peer", "filter": "userName eq \"alice\""})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["queued"], 1, "{}", r.text);
    let o = &r.body["outcome"];
    assert_eq!(o["state"], "complete_with_failures", "{}", r.text);
    assert_eq!(
        provisync_tests::counts_of(&o["users"], ["sent", "created", "refused", "queued"]),
        [1, 0, 1, 0],
        "{}",
        r.text
    );
    assert_eq!(o["problems"][0]["name"], "alice", "{}", r.text);
    let a = hub
        .admin(Method::GET, "/audit?target=peer&op=sync", None)
        .await;
    assert_eq!(a.body["entries"][0]["status"], "failed", "{}", a.text);

    // The target takes the changes now: created, counted as such.
    add_target(
        &hub,
        "peer",
        &peer.base,
        &peer.token,
        json!({"mode": "manual"}),
    )
    .await;
    let r = hub
        .admin(
            Method::POST,
            "/sync",
            Some(&json!({"target": "peer", "reconcile": true})),
        )
        .await;
    let report = &r.body["reconcile"];
    assert_eq!(report["state"], "complete", "{}", r.text);
    assert_eq!(
        provisync_tests::counts_of(&report["counts"], ["created", "refused", "queued"]),
        [3, 0, 0],
        "{}",
        r.text
    );
    assert_eq!(report["counts"]["groups"]["created"], 1, "{}", r.text);
    assert!(find_user(&peer, "carol").await.is_some());
    let a = hub
        .admin(Method::GET, "/audit?target=peer&op=reconcile", None)
        .await;
    assert_eq!(a.body["entries"][0]["status"], "delivered", "{}", a.text);

    // Queued, then the target disabled before delivery: skipped, not pending forever.
    drop(delivery);
    let r = hub
        .admin(
            Method::POST,
            "/sync",
            Some(&json!({"target": "peer", "user": ids[1], "wait": 0})),
        )
        .await;
    assert_eq!(r.body["outcome"]["state"], "pending", "{}", r.text);
    let run = r.body["outcome"]["run"].as_str().unwrap().to_string();
    add_target(
        &hub,
        "peer",
        &peer.base,
        &peer.token,
        json!({"mode": "manual", "enabled": false}),
    )
    .await;
    let _delivery = hub.run_delivery();
    eventually("the run settled", Duration::from_secs(30), || async {
        let r = hub.admin(Method::GET, &format!("/runs/{run}"), None).await;
        r.body["state"] == "complete" && r.body["users"]["skipped"] == 1
    })
    .await;
    // The answer said pending: the next cycle writes the outcome to the audit log, once.
    assert_eq!(cycle(&hub).await.runs_settled, 1);
    assert_eq!(cycle(&hub).await.runs_settled, 0);
    let a = hub
        .admin(Method::GET, "/audit?target=peer&op=sync", None)
        .await;
    let entry = &a.body["entries"][0];
    assert_eq!(entry["status"], "delivered", "{}", a.text);
    assert_eq!(entry["actor"], "admin:static", "{}", a.text);
    let detail = entry["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("outcome of run {run}: created=0 updated=0"))
            && detail.contains("skipped=1 refused=0 failed=0 queued=0"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_reported_not_counted_embedded() {
    refusals_are_reported_not_counted(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_reported_not_counted_dynamodb() {
    refusals_are_reported_not_counted(Backend::DynamoDb).await;
}

/// On-demand: `POST /admin/sync` with `reconcile: true`, and one user pushed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_reconcile_and_single_user() {
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let hub = Hub::start(Backend::Embedded).await.unwrap();
    let _delivery = hub.run_delivery();
    add_target(
        &hub,
        "crm",
        &peer.base,
        &peer.token,
        json!({"mode": "manual"}),
    )
    .await;
    let id = hub.post("/Users", &person("dora", "Dora")).await.id();
    hub.post("/Users", &person("eve", "Eve")).await.id();
    // One user, now.
    let r = hub
        .admin(
            Method::POST,
            "/sync",
            Some(&json!({"target": "crm", "user": id})),
        )
        .await;
    assert_eq!(r.body["queued"], 1, "{}", r.text);
    eventually("dora on the target", Duration::from_secs(20), || async {
        find_user(&peer, "dora").await.is_some()
    })
    .await;
    assert!(find_user(&peer, "eve").await.is_none());
    // A reconcile of the manual target, now: eve is missing.
    let r = hub
        .admin(
            Method::POST,
            "/sync",
            Some(&json!({"target": "crm", "reconcile": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["reconcile"]["state"], "complete", "{}", r.text);
    assert_eq!(r.body["reconcile"]["counts"]["created"], 1, "{}", r.text);
    assert_eq!(r.body["reconcile"]["counts"]["unchanged"], 1, "{}", r.text);
    eventually("eve on the target", Duration::from_secs(20), || async {
        find_user(&peer, "eve").await.is_some()
    })
    .await;
    // Bad combinations are refused.
    let r = hub
        .admin(
            Method::POST,
            "/sync",
            Some(&json!({"target": "crm", "reconcile": true, "user": id})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // The schedule endpoint runs a cycle (manual targets are not reconciled by it).
    let r = hub
        .admin(Method::POST, "/schedule/run?budget=10", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["reconciled"], json!([]), "{}", r.text);
    assert_eq!(r.body["dead_letters"], 0, "{}", r.text);
}

// ---------------------------------------------------------------------------------------
// Pull
// ---------------------------------------------------------------------------------------

async fn put_source(hub: &Hub, source: Value) -> SourceConfig {
    let cfg: SourceConfig = serde_json::from_value(source).expect("source");
    cfg.validate().expect("valid source");
    let secrets = provisync_core::crypto::SecretBox::from_encoded(&hub.secret_key).unwrap();
    Sources::new(hub.store.clone(), std::sync::Arc::new(secrets))
        .put(&cfg)
        .await
        .unwrap();
    cfg
}

async fn hub_user(hub: &Hub, user_name: &str) -> Option<Value> {
    let r = hub
        .get(&format!(
            "/Users?filter={}",
            q(&format!("userName eq \"{user_name}\""))
        ))
        .await;
    r.resources().first().cloned()
}

async fn pull_from_scim2_server(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let hub = Hub::start_on(store).await;
    for (n, g) in [("ann", "Ann"), ("ben", "Ben"), ("cat", "Cat")] {
        let (s, b) = peer.post("/Users", &person(n, g)).await;
        assert_eq!(s, 201, "{b}");
    }
    put_source(
        &hub,
        json!({"id": "idp", "direction": "pull", "user_sync": true,
            "pull": {"kind": "scim", "base_url": peer.base, "auth": {"bearer": peer.token}}}),
    )
    .await;
    let r = cycle(&hub).await;
    assert_eq!(r.pulled.len(), 1, "{r:?}");
    let p = &r.pulled[0];
    assert_eq!(
        (p.users.fetched, p.users.created, p.users.failed),
        (3, 3, 0),
        "{p:?}"
    );
    assert!(p.complete);
    let ann = hub_user(&hub, "ann").await.expect("ann pulled");
    assert_eq!(ann["name"]["givenName"], "Ann");
    assert_eq!(ann["emails"][0]["value"], "ann@example.org");
    // Matched through the source link (the source's id), never written as externalId.
    let ann_src = find_user(&peer, "ann").await.unwrap();
    assert_ne!(ann["externalId"], ann_src["id"]);

    // Nothing changed at the source: nothing is applied again.
    let p = &pull_cycle(&hub).await;
    assert_eq!((p.users.created, p.users.updated), (0, 0), "{p:?}");
    if p.incremental {
        assert_eq!(p.users.fetched, 0, "filtered on the cursor: {p:?}");
    } else {
        assert_eq!(p.users.unchanged, 3, "{p:?}");
    }

    // A change at the source arrives with the next cycle; a new user too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    peer_patch_user(
        &peer,
        ann_src["id"].as_str().unwrap(),
        json!([{"op": "replace", "path": "name.givenName", "value": "Annie"}]),
    )
    .await;
    let (s, _) = peer.post("/Users", &person("dan", "Dan")).await;
    assert_eq!(s, 201);
    let p = &pull_cycle(&hub).await;
    assert_eq!(
        (p.users.created, p.users.updated, p.users.failed),
        (1, 1, 0),
        "{p:?}"
    );
    assert_eq!(
        hub_user(&hub, "ann").await.unwrap()["name"]["givenName"],
        "Annie"
    );
    assert!(hub_user(&hub, "dan").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_scim2_server_embedded() {
    pull_from_scim2_server(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_scim2_server_dynamodb() {
    pull_from_scim2_server(Backend::DynamoDb).await;
}

/// A local Drupal JSON:API site: serves `tests/fixtures/drupal/users.json` (the documented
/// `user--user` collection shape) filtered, sorted and paged as Drupal does, with
/// `links.next`, and records the queries it got.
mod drupal {
    use std::sync::{Arc, Mutex};

    use axum::extract::{RawQuery, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use serde_json::{Value, json};

    #[derive(Clone)]
    pub struct Site {
        pub users: Arc<Mutex<Vec<Value>>>,
        pub queries: Arc<Mutex<Vec<String>>>,
        pub origin: Arc<Mutex<String>>,
    }

    pub fn fixture() -> Value {
        let path = format!("{}/fixtures/drupal/users.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn changed_secs(u: &Value) -> i64 {
        chrono::DateTime::parse_from_rfc3339(u["attributes"]["changed"].as_str().unwrap())
            .unwrap()
            .timestamp()
    }

    async fn list_users(
        State(site): State<Site>,
        headers: HeaderMap,
        RawQuery(raw): RawQuery,
    ) -> Response {
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some("Basic aHViOnNlY3JldC1wYXNzd29yZA==")
        {
            return (StatusCode::UNAUTHORIZED, "{}").into_response();
        }
        let raw = raw.unwrap_or_default();
        site.queries.lock().unwrap().push(raw.clone());
        let params: Vec<(String, String)> = serde_urlencoded::from_str(&raw).unwrap();
        let get = |k: &str| {
            params
                .iter()
                .find(|(pk, _)| pk == k)
                .map(|(_, v)| v.clone())
        };
        let limit: usize = get("page[limit]")
            .and_then(|v| v.parse().ok())
            .unwrap_or(50);
        let offset: usize = get("page[offset]")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut list: Vec<Value> = site.users.lock().unwrap().clone();
        if let Some(v) = get("filter[changed][condition][value]") {
            assert_eq!(
                get("filter[changed][condition][path]").as_deref(),
                Some("changed")
            );
            assert_eq!(
                get("filter[changed][condition][operator]").as_deref(),
                Some(">")
            );
            let since: i64 = v.parse().expect("changed filter is a timestamp");
            list.retain(|u| changed_secs(u) > since);
        }
        assert_eq!(get("sort").as_deref(), Some("changed"));
        list.sort_by_key(changed_secs);
        let page: Vec<Value> = list.iter().skip(offset).take(limit).cloned().collect();
        let origin = site.origin.lock().unwrap().clone();
        let mut links = json!({"self": {"href": format!("{origin}/jsonapi/user/user?{raw}")}});
        if offset + limit < list.len() {
            let mut next: Vec<(String, String)> = params
                .iter()
                .filter(|(k, _)| k != "page[offset]")
                .cloned()
                .collect();
            next.push(("page[offset]".into(), (offset + limit).to_string()));
            let qs = serde_urlencoded::to_string(&next).unwrap();
            links["next"] = json!({"href": format!("{origin}/jsonapi/user/user?{qs}")});
        }
        let doc = json!({"jsonapi": {"version": "1.0", "meta": {"links": {"self": {"href": "http://jsonapi.org/format/1.0/"}}}},
            "data": page, "links": links});
        (
            [("content-type", "application/vnd.api+json")],
            doc.to_string(),
        )
            .into_response()
    }

    pub async fn start(users: Vec<Value>) -> (Site, tokio::task::JoinHandle<()>) {
        let site = Site {
            users: Arc::new(Mutex::new(users)),
            queries: Arc::default(),
            origin: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/jsonapi/user/user", axum::routing::get(list_users))
            .with_state(site.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        *site.origin.lock().unwrap() = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (site, task)
    }
}

async fn pull_from_drupal_jsonapi(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let hub = Hub::start_on(store).await;
    let fixture = drupal::fixture();
    let documented: Vec<Value> = fixture["data"].as_array().unwrap().clone();
    // The documented users plus enough generated ones (same shape) for three pages.
    let mut users = documented.clone();
    for i in 0..110 {
        let mut u = documented[1].clone();
        u["id"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
        u["attributes"]["name"] = json!(format!("member{i:03}"));
        u["attributes"]["display_name"] = json!(format!("member{i:03}"));
        u["attributes"]["mail"] = json!(format!("member{i:03}@example.com"));
        u["attributes"]["drupal_internal__uid"] = json!(100 + i);
        u["attributes"]["changed"] = json!(
            chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0)
                .unwrap()
                .to_rfc3339()
        );
        users.push(u);
    }
    let (site, _task) = drupal::start(users).await;
    let origin = site.origin.lock().unwrap().clone();
    put_source(
        &hub,
        json!({"id": "drupal", "direction": "pull", "user_sync": true,
            "allowed_fields": ["userName", "displayName", "emails", "active", "roles"],
            "pull": {"kind": "jsonapi", "base_url": origin,
                "auth": {"basic": {"username": "hub", "password": "secret-password"}}}}),
    )
    .await;
    let p = &pull_cycle(&hub).await;
    // The anonymous user (uid 0, no name) is skipped.
    let named = documented
        .iter()
        .filter(|u| {
            u["attributes"]["name"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
        })
        .count() as u64;
    assert_eq!(
        (p.users.fetched, p.users.created, p.users.failed),
        (named + 110, named + 110, 0),
        "{p:?}"
    );
    assert!(p.complete);
    let queries = site.queries.lock().unwrap().clone();
    assert_eq!(
        queries.len(),
        3,
        "three pages of 50 via links.next: {queries:?}"
    );
    assert!(queries[0].contains("page%5Blimit%5D=50"), "{queries:?}");
    assert!(
        !queries[0].contains("filter"),
        "first pass reads everything"
    );
    assert!(queries[2].contains("page%5Boffset%5D=100"), "{queries:?}");

    // A documented user, mapped: name, mail, status, roles, UUID.
    let doc_user = documented
        .iter()
        .find(|u| {
            u["attributes"]["name"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
        })
        .unwrap();
    let name = doc_user["attributes"]["name"].as_str().unwrap();
    let u = hub_user(&hub, name).await.expect("pulled");
    assert_eq!(u["emails"][0]["value"], doc_user["attributes"]["mail"]);
    assert_eq!(u["active"], doc_user["attributes"]["status"]);

    // Next cycle: filtered on the cursor (Unix seconds of the newest `changed`, the
    // blocked user of the fixture): nothing.
    site.queries.lock().unwrap().clear();
    let r = cycle(&hub).await;
    assert_eq!(r.pulled[0].users.fetched, 0, "{:?}", r.pulled[0]);
    let queries = site.queries.lock().unwrap().clone();
    assert!(
        queries[0].contains("filter%5Bchanged%5D%5Bcondition%5D%5Bvalue%5D=1700001000"),
        "{queries:?}"
    );
    // A change on the site arrives.
    {
        let mut users = site.users.lock().unwrap();
        let u = users
            .iter_mut()
            .find(|u| u["attributes"]["name"] == "member005")
            .unwrap();
        u["attributes"]["mail"] = json!("new-address@example.com");
        u["attributes"]["changed"] = json!("2030-01-01T00:00:00+00:00");
    }
    let r = cycle(&hub).await;
    assert_eq!(
        (
            r.pulled[0].users.fetched,
            r.pulled[0].users.created,
            r.pulled[0].users.updated
        ),
        (1, 0, 1),
        "{:?}",
        r.pulled[0]
    );
    assert_eq!(
        hub_user(&hub, "member005").await.unwrap()["emails"][0]["value"],
        "new-address@example.com"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_drupal_jsonapi_embedded() {
    pull_from_drupal_jsonapi(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_drupal_jsonapi_dynamodb() {
    pull_from_drupal_jsonapi(Backend::DynamoDb).await;
}

// ---------------------------------------------------------------------------------------
// Reconcile: groups and memberships
// ---------------------------------------------------------------------------------------

async fn find_group(peer: &ScimPeer, name: &str) -> Option<Value> {
    let (status, body) = peer
        .get(&format!(
            "/Groups?filter={}",
            q(&format!("displayName eq \"{name}\""))
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["Resources"]
        .as_array()
        .and_then(|a| a.first().cloned())
}

/// The member ids of a group on the peer, sorted.
fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

async fn peer_write(peer: &ScimPeer, method: Method, path: &str, body: Option<Value>) {
    let mut req = peer.req(method, path);
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    assert!(
        resp.status().is_success(),
        "{path}: {}",
        resp.text().await.unwrap()
    );
}

fn patch_op(ops: Value) -> Value {
    json!({"schemas": [provisync_tests::PATCH_OP], "Operations": ops})
}

/// Hub users and groups delivered to `scim2-server`; then, behind the hub's back, a
/// member removed, a group renamed, a group deleted, a stranger group added, a user in a
/// group deleted. One cycle repairs exactly those — the deleted user comes back with its
/// membership — and the next cycle writes nothing.
async fn reconcile_repairs_groups_and_memberships(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let proxy = RecordingProxy::start(&peer.base).await;
    let hub = Hub::start_on(store).await;
    let _delivery = hub.run_delivery();
    let base = format!("{}/v2", proxy.origin);
    add_target(&hub, "peer", &base, &peer.token, json!({})).await;
    let mut hub_ids = std::collections::HashMap::new();
    for (n, g) in [
        ("alice", "Alice"),
        ("bob", "Bob"),
        ("carol", "Carol"),
        ("dave", "Dave"),
    ] {
        let r = hub.post("/Users", &person(n, g)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        hub_ids.insert(n, r.id());
    }
    // The users first (their creates and the groups' creates would otherwise race, which
    // the next cycle would repair but this test wants exact counts).
    let r = cycle(&hub).await;
    assert_eq!(only(&r).counts.created, 4, "{r:?}");
    eventually(
        "four users on the peer",
        Duration::from_secs(20),
        || async {
            find_user(&peer, "dave").await.is_some() && find_user(&peer, "alice").await.is_some()
        },
    )
    .await;
    quiet(&proxy).await;
    for (g, members) in [
        ("Staff", vec!["alice", "bob"]),
        ("Admins", vec!["alice"]),
        ("Ops", vec!["carol"]),
        ("Sales", vec!["dave"]),
    ] {
        let ids: Vec<&str> = members.iter().map(|m| hub_ids[m].as_str()).collect();
        hub.group(g, &ids).await;
    }
    let r = cycle(&hub).await;
    let c = &only(&r).counts;
    assert_eq!(
        (c.groups.checked, c.groups.created, c.groups.members_added),
        (0, 4, 5),
        "{r:?}"
    );
    let peer_id = |n: &'static str| {
        let peer = &peer;
        async move { id_of(&find_user(peer, n).await.expect(n)) }
    };
    let (alice, bob, carol) = (
        peer_id("alice").await,
        peer_id("bob").await,
        peer_id("carol").await,
    );
    let dave_old = peer_id("dave").await;
    let want: Vec<(&str, Vec<String>)> = vec![
        ("Staff", sorted(&[&alice, &bob])),
        ("Admins", sorted(&[&alice])),
        ("Ops", sorted(&[&carol])),
        ("Sales", sorted(&[&dave_old])),
    ];
    eventually(
        "four groups with their members",
        Duration::from_secs(20),
        || async {
            for (g, m) in &want {
                match find_group(&peer, g).await {
                    Some(found) if &member_ids(&found) == m => {}
                    _ => return false,
                }
            }
            true
        },
    )
    .await;
    quiet(&proxy).await;

    // In sync: nothing to write.
    proxy.clear();
    let r = cycle(&hub).await;
    let c = &only(&r).counts;
    assert_eq!(
        (c.unchanged, c.groups.unchanged, c.groups.updated),
        (4, 4, 0),
        "{r:?}"
    );
    quiet(&proxy).await;
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());

    // Behind the hub's back.
    let staff = id_of(&find_group(&peer, "Staff").await.unwrap());
    let admins = id_of(&find_group(&peer, "Admins").await.unwrap());
    let ops_old = id_of(&find_group(&peer, "Ops").await.unwrap());
    let sales = id_of(&find_group(&peer, "Sales").await.unwrap());
    // bob leaves Staff;
    peer_write(
        &peer,
        Method::PATCH,
        &format!("/Groups/{staff}"),
        Some(patch_op(
            json!([{"op": "remove", "path": format!("members[value eq \"{bob}\"]")}]),
        )),
    )
    .await;
    // Admins is renamed;
    peer_write(
        &peer,
        Method::PATCH,
        &format!("/Groups/{admins}"),
        Some(patch_op(
            json!([{"op": "replace", "path": "displayName", "value": "Admins (edited)"}]),
        )),
    )
    .await;
    // Ops is deleted;
    peer_write(&peer, Method::DELETE, &format!("/Groups/{ops_old}"), None).await;
    // a stranger group appears (with one of the hub's accounts in it);
    let (s, stranger) = peer
        .post(
            "/Groups",
            &json!({"schemas": [provisync_tests::GROUP_SCHEMA], "displayName": "Strangers",
                "members": [{"value": alice}]}),
        )
        .await;
    assert_eq!(s, 201, "{stranger}");
    // dave, the one member of Sales, is deleted (scim2-server leaves his id in Sales).
    peer_write(&peer, Method::DELETE, &format!("/Users/{dave_old}"), None).await;
    assert_eq!(
        member_ids(&find_group(&peer, "Sales").await.unwrap()),
        vec![dave_old.clone()],
        "scim2-server keeps a deleted member's id (the hub removes it)"
    );

    proxy.clear();
    let r = cycle(&hub).await;
    let c = &only(&r).counts;
    assert_eq!(
        (c.checked, c.created, c.updated, c.unchanged),
        (3, 1, 0, 3),
        "{r:?}"
    );
    let g = &c.groups;
    assert_eq!(
        (
            g.checked,
            g.created,
            g.updated,
            g.unchanged,
            g.orphaned,
            g.deleted
        ),
        (4, 1, 3, 0, 1, 0),
        "{r:?}"
    );
    // bob back in Staff, carol in the new Ops; dave's old id out of Sales.
    assert_eq!((g.members_added, g.members_removed), (2, 1), "{r:?}");
    let dave_new = || async {
        find_user(&peer, "dave")
            .await
            .map(|d| id_of(&d))
            .filter(|id| id != &dave_old)
    };
    eventually("the drift repaired", Duration::from_secs(20), || async {
        let Some(dave) = dave_new().await else {
            return false;
        };
        let staff_ok = find_group(&peer, "Staff")
            .await
            .is_some_and(|g| member_ids(&g) == sorted(&[&alice, &bob]));
        let admins_ok = find_group(&peer, "Admins")
            .await
            .is_some_and(|g| id_of(&g) == admins && member_ids(&g) == sorted(&[&alice]));
        let ops_ok = find_group(&peer, "Ops")
            .await
            .is_some_and(|g| id_of(&g) != ops_old && member_ids(&g) == sorted(&[&carol]));
        // The re-created dave is back in Sales, and only he.
        let sales_ok = find_group(&peer, "Sales")
            .await
            .is_some_and(|g| member_ids(&g) == vec![dave.clone()]);
        staff_ok && admins_ok && ops_ok && sales_ok
    })
    .await;
    quiet(&proxy).await;
    let ops_new = id_of(&find_group(&peer, "Ops").await.unwrap());
    let mut writes = proxy.writes();
    writes.sort();
    let mut want = vec![
        ("PATCH".to_string(), format!("/v2/Groups/{admins}")),
        ("PATCH".to_string(), format!("/v2/Groups/{staff}")),
        ("PATCH".to_string(), format!("/v2/Groups/{ops_new}")),
        // dave's old id removed by reconcile, the new dave joined by the engine.
        ("PATCH".to_string(), format!("/v2/Groups/{sales}")),
        ("PATCH".to_string(), format!("/v2/Groups/{sales}")),
        ("POST".to_string(), "/v2/Groups".to_string()),
        ("POST".to_string(), "/v2/Users".to_string()),
    ];
    want.sort();
    assert_eq!(writes, want);
    // The stranger group was reported, not touched.
    let s = find_group(&peer, "Strangers").await.expect("stranger kept");
    assert_eq!(member_ids(&s), vec![alice.clone()]);

    // And then nothing again.
    proxy.clear();
    let r = cycle(&hub).await;
    let c = &only(&r).counts;
    assert_eq!((c.created, c.updated, c.unchanged), (0, 0, 4), "{r:?}");
    assert_eq!(
        (
            c.groups.created,
            c.groups.updated,
            c.groups.unchanged,
            c.groups.orphaned
        ),
        (0, 0, 4, 1),
        "{r:?}"
    );
    quiet(&proxy).await;
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
    // The audit detail carries the group counts.
    let a = hub
        .admin(Method::GET, "/audit?target=peer&op=reconcile", None)
        .await;
    let entries = a.body["entries"].as_array().cloned().unwrap_or_default();
    let detail = entries[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("groups: checked=5 created=0 updated=0 deleted=0 orphaned=1 unchanged=4"),
        "{}",
        a.text
    );

    // Orphan policy `delete` removes the stranger group; `deactivate` could not apply.
    add_target(
        &hub,
        "peer",
        &base,
        &peer.token,
        json!({"orphans": "deactivate"}),
    )
    .await;
    let r = cycle(&hub).await;
    assert_eq!(
        (
            only(&r).counts.groups.orphaned,
            only(&r).counts.groups.deleted
        ),
        (1, 0),
        "{r:?}"
    );
    add_target(
        &hub,
        "peer",
        &base,
        &peer.token,
        json!({"orphans": "delete"}),
    )
    .await;
    let r = cycle(&hub).await;
    assert_eq!(only(&r).counts.groups.deleted, 1, "{r:?}");
    assert!(find_group(&peer, "Strangers").await.is_none());
    for g in ["Staff", "Admins", "Ops", "Sales"] {
        assert!(find_group(&peer, g).await.is_some(), "{g}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_repairs_groups_and_memberships_embedded() {
    reconcile_repairs_groups_and_memberships(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_repairs_groups_and_memberships_dynamodb() {
    reconcile_repairs_groups_and_memberships(Backend::DynamoDb).await;
}

/// A SCIM target that cannot list its groups (as some kinds of target cannot).
struct GroupsUnlisted(provisync_connectors::scim::ScimConnector);

#[async_trait::async_trait]
impl provisync_core::connector::Connector for GroupsUnlisted {
    async fn test(&self) -> Result<String, ConnectorError> {
        self.0.test().await
    }
    fn create_detects_existing(&self) -> bool {
        self.0.create_detects_existing()
    }
    fn members_per_call(&self) -> usize {
        self.0.members_per_call()
    }
    async fn find_user(&self, user: &Value) -> Result<Option<String>, ConnectorError> {
        self.0.find_user(user).await
    }
    async fn list_users(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        self.0.list_users(cursor).await
    }
    async fn create_user(&self, u: &Value, p: Option<&str>) -> Result<String, ConnectorError> {
        self.0.create_user(u, p).await
    }
    async fn update_user(
        &self,
        id: &str,
        u: &Value,
        prev: Option<&Value>,
        p: Option<&str>,
    ) -> Result<Option<String>, ConnectorError> {
        self.0.update_user(id, u, prev, p).await
    }
    async fn disable_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.0.disable_user(id).await
    }
    async fn delete_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.0.delete_user(id).await
    }
    async fn find_group(&self, g: &Value) -> Result<Option<String>, ConnectorError> {
        self.0.find_group(g).await
    }
    async fn create_group(&self, g: &Value) -> Result<String, ConnectorError> {
        self.0.create_group(g).await
    }
    async fn update_group(
        &self,
        id: &str,
        g: &Value,
        prev: Option<&Value>,
    ) -> Result<(), ConnectorError> {
        self.0.update_group(id, g, prev).await
    }
    async fn delete_group(&self, id: &str) -> Result<(), ConnectorError> {
        self.0.delete_group(id).await
    }
    async fn add_members(&self, g: &str, m: &[String]) -> Result<(), ConnectorError> {
        self.0.add_members(g, m).await
    }
    async fn remove_members(&self, g: &str, m: &[String]) -> Result<(), ConnectorError> {
        self.0.remove_members(g, m).await
    }
}

fn groups_unlisted(
    t: &provisync_core::target::TargetConfig,
) -> Result<
    std::sync::Arc<dyn provisync_core::connector::Connector>,
    provisync_core::connector::SetupError,
> {
    match &t.kind {
        provisync_core::target::TargetKind::Scim(s) => {
            let c = provisync_connectors::scim::ScimConnector::new(s)
                .map_err(provisync_core::connector::SetupError::from_display)?;
            Ok(std::sync::Arc::new(GroupsUnlisted(c)))
        }
        _ => provisync_connectors::connectors_for(t),
    }
}

/// A target that cannot list its groups reconciles its users and says groups are not
/// supported; one that cannot list anything (a webhook site) is skipped, not failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_that_cannot_list_are_reported_not_failed() {
    let Some(store) = backend_store(Backend::Embedded).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let hub = Hub::start_full(store, groups_unlisted, |_| {}).await;
    // The run waits for what the target answered: deliver as `serve` does.
    let _delivery = hub.run_delivery();
    add_target(&hub, "peer", &peer.base, &peer.token, json!({})).await;
    let r = hub
        .admin(
            Method::PUT,
            "/targets/site",
            Some(&json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook",
                "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "mode": "scheduled"})),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    hub.user("fay").await;
    let r = cycle(&hub).await;
    assert_eq!(r.reconciled.len(), 2, "{r:?}");
    let of = |id: &str| r.reconciled.iter().find(|x| x.target == id).unwrap();
    let peer_run = of("peer");
    assert_eq!(peer_run.state, RunState::Complete, "{peer_run:?}");
    assert_eq!(peer_run.counts.created, 1, "{peer_run:?}");
    assert!(peer_run.counts.groups.unsupported, "{peer_run:?}");
    let site_run = of("site");
    assert_eq!(site_run.state, RunState::Unsupported, "{site_run:?}");
    assert!(site_run.error.is_none(), "{site_run:?}");
    // The report says so in its JSON, and the audit log in words.
    let v = serde_json::to_value(peer_run).unwrap();
    assert_eq!(v["counts"]["groups"]["unsupported"], true, "{v}");
    let a = hub
        .admin(Method::GET, "/audit?target=site&op=reconcile", None)
        .await;
    let e = &a.body["entries"][0];
    assert_eq!(e["status"], "skipped", "{}", a.text);
    assert!(
        e["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be listed"),
        "{}",
        a.text
    );
    let a = hub
        .admin(Method::GET, "/audit?target=peer&op=reconcile", None)
        .await;
    let detail = a.body["entries"][0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("groups: not supported"), "{}", a.text);
}

// ---------------------------------------------------------------------------------------
// Pull: groups
// ---------------------------------------------------------------------------------------

async fn peer_create(peer: &ScimPeer, path: &str, body: &Value) -> String {
    let (s, b) = peer.post(path, body).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().expect("id").to_string()
}

async fn peer_patch_group(peer: &ScimPeer, id: &str, ops: Value) {
    peer_patch(peer, &format!("/Groups/{id}"), ops).await;
}

async fn peer_patch_user(peer: &ScimPeer, id: &str, ops: Value) {
    peer_patch(peer, &format!("/Users/{id}"), ops).await;
}

async fn peer_patch(peer: &ScimPeer, path: &str, ops: Value) {
    let resp = peer
        .req(Method::PATCH, path)
        .body(json!({"schemas": [provisync_tests::PATCH_OP], "Operations": ops}).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}

/// The userNames of a hub group's members, sorted; `None` when the hub has no group of
/// that name.
async fn hub_group_members(hub: &Hub, name: &str) -> Option<Vec<String>> {
    let r = hub
        .get(&format!(
            "/Groups?filter={}",
            q(&format!("displayName eq \"{name}\""))
        ))
        .await;
    let group = r.resources().first().cloned()?;
    let mut names = Vec::new();
    for m in group["members"].as_array().cloned().unwrap_or_default() {
        let u = hub
            .get(&format!("/Users/{}", m["value"].as_str().unwrap()))
            .await;
        assert_eq!(u.status, 200, "{}", u.text);
        names.push(u.body["userName"].as_str().unwrap().to_string());
    }
    names.sort();
    Some(names)
}

fn changed(c: &provisync_core::sync::pull::PullCounts) -> (u64, u64) {
    (c.created, c.updated)
}

async fn pull_groups_from_scim2_server(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let hub = Hub::start_on(store).await;
    let mut ids = std::collections::HashMap::new();
    for (n, g) in [("ann", "Ann"), ("ben", "Ben"), ("cat", "Cat")] {
        ids.insert(n, peer_create(&peer, "/Users", &person(n, g)).await);
    }
    let group = |ids: &std::collections::HashMap<&str, String>, name: &str, members: &[&str]| {
        json!({"schemas": [provisync_tests::GROUP_SCHEMA], "displayName": name,
            "members": members.iter().map(|m| json!({"value": ids[m]})).collect::<Vec<_>>()})
    };
    let ops = peer_create(&peer, "/Groups", &group(&ids, "Ops", &["ann", "ben"])).await;
    peer_create(&peer, "/Groups", &group(&ids, "Dev", &["cat"])).await;
    // Membership is taken because the source may set `members`.
    put_source(
        &hub,
        json!({"id": "idp", "direction": "pull", "user_sync": true,
            "allowed_fields": ["userName", "name", "displayName", "emails", "members"],
            "pull": {"kind": "scim", "base_url": peer.base, "auth": {"bearer": peer.token}}}),
    )
    .await;

    // First cycle: users, then groups whose members resolve to the users just pulled.
    let p = &pull_cycle(&hub).await;
    assert!(p.complete && p.error.is_none(), "{p:?}");
    assert_eq!(
        (p.users.fetched, p.users.created, p.users.updated),
        (3, 3, 0)
    );
    assert_eq!(
        (
            p.groups.fetched,
            p.groups.created,
            p.groups.updated,
            p.groups.failed
        ),
        (2, 2, 0, 0),
        "{p:?}"
    );
    assert_eq!(
        hub_group_members(&hub, "Ops").await,
        Some(vec!["ann".into(), "ben".into()])
    );
    assert_eq!(
        hub_group_members(&hub, "Dev").await,
        Some(vec!["cat".into()])
    );
    // The counts are in the audit log.
    let a = hub
        .admin(Method::GET, "/audit?target=idp&op=pull", None)
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let detail = a.body["entries"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("users: fetched=3 created=3 updated=0")
            && detail.contains("groups: fetched=2 created=2 updated=0"),
        "{}",
        a.text
    );

    // The source renames a group and changes its members: the next cycle applies exactly
    // that.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    peer_patch_group(
        &peer,
        &ops,
        json!([{"op": "replace", "path": "displayName", "value": "Operations"},
               {"op": "replace", "path": "members",
                "value": [{"value": ids["ann"]}, {"value": ids["cat"]}]}]),
    )
    .await;
    let p = &pull_cycle(&hub).await;
    assert!(p.complete, "{p:?}");
    assert_eq!(changed(&p.users), (0, 0), "{p:?}");
    assert_eq!((changed(&p.groups), p.groups.failed), ((0, 1), 0), "{p:?}");
    if p.incremental {
        assert_eq!((p.users.fetched, p.groups.fetched), (0, 1), "{p:?}");
    } else {
        assert_eq!(p.groups.unchanged, 1, "{p:?}");
    }
    assert_eq!(hub_group_members(&hub, "Ops").await, None);
    assert_eq!(
        hub_group_members(&hub, "Operations").await,
        Some(vec!["ann".into(), "cat".into()])
    );
    assert_eq!(
        hub_group_members(&hub, "Dev").await,
        Some(vec!["cat".into()])
    );

    // Nothing changed at the source: a third cycle applies nothing.
    let p = &pull_cycle(&hub).await;
    assert!(p.complete, "{p:?}");
    assert_eq!(
        (changed(&p.users), changed(&p.groups)),
        ((0, 0), (0, 0)),
        "{p:?}"
    );
    if p.incremental {
        assert_eq!((p.users.fetched, p.groups.fetched), (0, 0), "{p:?}");
    }

    // A cycle out of time between the users and the groups: the next one continues with
    // the groups. A user created at the source after the users were read and put in a
    // group is read because the group names it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ids.insert(
        "dan",
        peer_create(&peer, "/Users", &person("dan", "Dan")).await,
    );
    let qa = peer_create(&peer, "/Groups", &group(&ids, "Qa", &["dan"])).await;
    let r = run_schedule(&hub.schedule, Duration::ZERO)
        .await
        .expect("cycle");
    let p = &r.pulled[0];
    assert!(!p.complete, "{p:?}");
    assert_eq!(changed(&p.users), (1, 0), "{p:?}");
    assert_eq!(p.groups.fetched, 0, "{p:?}");
    assert_eq!(hub_group_members(&hub, "Qa").await, None);
    let eve = peer_create(&peer, "/Users", &person("eve", "Eve")).await;
    peer_patch_group(
        &peer,
        &qa,
        json!([{"op": "add", "path": "members", "value": [{"value": eve}]}]),
    )
    .await;
    let r = run_schedule(&hub.schedule, Duration::ZERO)
        .await
        .expect("cycle");
    let p = &r.pulled[0];
    assert!(p.complete, "{p:?}");
    assert_eq!(changed(&p.groups), (1, 0), "{p:?}");
    assert_eq!((p.users.fetched, changed(&p.users)), (1, (1, 0)), "{p:?}");
    assert_eq!(
        hub_group_members(&hub, "Qa").await,
        Some(vec!["dan".into(), "eve".into()])
    );
    // And the next full cycle finds nothing left to do.
    let p = &pull_cycle(&hub).await;
    assert_eq!(
        (changed(&p.users), changed(&p.groups)),
        ((0, 0), (0, 0)),
        "{p:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_groups_from_scim2_server_embedded() {
    pull_groups_from_scim2_server(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_groups_from_scim2_server_dynamodb() {
    pull_groups_from_scim2_server(Backend::DynamoDb).await;
}

/// Pulls go through the inbound path: a pulled user whose userName belongs to a hub user
/// the source did not create is refused (counted as failed), unless the source adopts.
async fn pull_does_not_take_over_hub_users(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let hub = Hub::start_on(store).await;
    // The identity provider's user, in the hub first.
    let r = hub.post("/Users", &person("ann", "Ann-from-the-IdP")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let ann = r.id();
    let ann_src = peer_create(&peer, "/Users", &person("ann", "Ann-at-the-source")).await;
    peer_create(&peer, "/Users", &person("ben", "Ben")).await;
    let mut source = json!({"id": "idp2", "direction": "pull", "user_sync": true,
        "pull": {"kind": "scim", "base_url": peer.base, "auth": {"bearer": peer.token}}});
    put_source(&hub, source.clone()).await;
    let p = &pull_cycle(&hub).await;
    assert_eq!(
        (
            p.users.fetched,
            p.users.created,
            p.users.updated,
            p.users.failed
        ),
        (2, 1, 0, 1),
        "{p:?}"
    );
    let held = hub.get(&format!("/Users/{ann}")).await;
    assert_eq!(held.body["name"]["givenName"], "Ann-from-the-IdP");
    let refused = hub
        .admin(Method::GET, "/audit?target=idp2&status=refused", None)
        .await;
    assert!(refused.text.contains("adopt_existing"), "{}", refused.text);

    // With adopt_existing the next change of ann at the source adopts the hub user.
    source["adopt_existing"] = json!(true);
    put_source(&hub, source).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    peer_patch_user(
        &peer,
        &ann_src,
        json!([{"op": "replace", "path": "name.familyName", "value": "Adopted"}]),
    )
    .await;
    let p = &pull_cycle(&hub).await;
    assert_eq!((p.users.updated, p.users.failed), (1, 0), "{p:?}");
    let held = hub.get(&format!("/Users/{ann}")).await;
    assert_eq!(held.body["name"]["familyName"], "Adopted", "{}", held.text);
    let linked = hub
        .admin(Method::GET, "/audit?target=idp2&status=linked", None)
        .await;
    assert!(linked.text.contains("adopted"), "{}", linked.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_does_not_take_over_hub_users_embedded() {
    pull_does_not_take_over_hub_users(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_does_not_take_over_hub_users_dynamodb() {
    pull_does_not_take_over_hub_users(Backend::DynamoDb).await;
}

/// Seeds `n` users named `{prefix}{i:04}` into a hub's store (the import path).
async fn seed_peer(peer: &Hub, prefix: &str, n: usize) {
    let dir = provisync_core::directory::Directory::new(
        peer.store.clone(),
        provisync_scim::SchemaRegistry::builtin(),
    );
    let bodies: Vec<Value> = (0..n)
        .map(|i| person(&format!("{prefix}{i:04}"), "Seeded"))
        .collect();
    for r in dir
        .create_batch(
            provisync_scim::ResourceKind::User,
            &bodies,
            provisync_core::event::Origin::Import,
            false,
        )
        .await
    {
        r.expect("seed");
    }
}

/// The `GET /Users` listings a proxy saw, and how they paged.
fn listings(proxy: &RecordingProxy) -> (usize, usize) {
    let urls: Vec<String> = proxy
        .urls()
        .into_iter()
        .filter(|u| u.starts_with("GET ") && u.contains("/Users?"))
        .collect();
    let by_cursor = urls.iter().filter(|u| u.contains("cursor=")).count();
    let by_index = urls.iter().filter(|u| u.contains("startIndex=")).count();
    (by_cursor, by_index)
}

/// The hub pulls from a peer that pages by cursor (another Provisync hub: the routers
/// `provisync serve` runs, over loopback HTTP) with cursors, and from `scim2-server`,
/// which announces none, by `startIndex`.
async fn pull_pages_by_cursor_where_offered(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let hub = Hub::start_on(store).await;
    let peer = Hub::start(Backend::Embedded).await.expect("peer");
    seed_peer(&peer, "far", 250).await;
    let proxy = RecordingProxy::start(&peer.base).await;
    put_source(
        &hub,
        json!({"id": "hub2", "direction": "pull", "user_sync": true,
            "pull": {"kind": "scim", "base_url": format!("{}/scim/v2", proxy.origin),
                     "auth": {"bearer": provisync_tests::TOKEN}}}),
    )
    .await;
    let p = pull_cycle(&hub).await;
    assert_eq!((p.users.fetched, p.users.created), (250, 250), "{p:?}");
    assert!(p.incremental);
    let (by_cursor, by_index) = listings(&proxy);
    assert_eq!((by_cursor, by_index), (3, 0), "{:?}", proxy.urls());
    assert!(
        proxy.urls().iter().any(|u| u.contains("cursor=v1.")),
        "continued with nextCursor: {:?}",
        proxy.urls()
    );

    // Incremental: `meta.lastModified gt` by cursor, answered from the peer's index.
    proxy.clear();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = peer.post("/Users", &person("far-new", "New")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let p = pull_cycle(&hub).await;
    assert_eq!((p.users.fetched, p.users.created), (1, 1), "{p:?}");
    assert!(
        proxy
            .urls()
            .iter()
            .any(|u| u.contains("cursor=") && u.contains("meta.lastModified")),
        "{:?}",
        proxy.urls()
    );
    assert_eq!(listings(&proxy).1, 0, "{:?}", proxy.urls());

    // scim2-server announces no cursors: pages by startIndex.
    let Some(scim2) = ScimPeer::start().await else {
        return;
    };
    for n in ["ann", "ben", "cat"] {
        let (s, b) = scim2.post("/Users", &person(n, "Peer")).await;
        assert_eq!(s, 201, "{b}");
    }
    let proxy2 = RecordingProxy::start(&scim2.base).await;
    let hub2 = Hub::start(Backend::Embedded).await.expect("hub");
    put_source(
        &hub2,
        json!({"id": "idp", "direction": "pull", "user_sync": true,
            "pull": {"kind": "scim", "base_url": format!("{}/v2", proxy2.origin),
                     "auth": {"bearer": scim2.token}}}),
    )
    .await;
    let p = pull_cycle(&hub2).await;
    assert_eq!(p.users.created, 3, "{p:?}");
    let (by_cursor, by_index) = listings(&proxy2);
    assert_eq!(by_cursor, 0, "{:?}", proxy2.urls());
    assert!(by_index >= 1, "{:?}", proxy2.urls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_pages_by_cursor_where_offered_embedded() {
    pull_pages_by_cursor_where_offered(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_pages_by_cursor_where_offered_dynamodb() {
    pull_pages_by_cursor_where_offered(Backend::DynamoDb).await;
}

/// Reconcile lists a target that pages by cursor (another Provisync hub) with cursors,
/// and `scim2-server` by `startIndex`.
async fn reconcile_lists_by_cursor_where_offered(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let hub = Hub::start_on(store).await;
    let _delivery = hub.run_delivery();
    let peer = Hub::start(Backend::Embedded).await.expect("peer");
    // 230 accounts on the target the hub does not know: three listing pages of 100.
    seed_peer(&peer, "stranger", 230).await;
    let proxy = RecordingProxy::start(&peer.base).await;
    add_target(
        &hub,
        "hub2",
        &format!("{}/scim/v2", proxy.origin),
        provisync_tests::TOKEN,
        json!({}),
    )
    .await;
    let r = hub.post("/Users", &person("local", "Local")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let c = hub.reconcile("hub2").await;
    assert_eq!(c["checked"], 230, "{c}");
    let (by_cursor, by_index) = listings(&proxy);
    assert_eq!((by_cursor, by_index), (3, 0), "{:?}", proxy.urls());

    let Some(scim2) = ScimPeer::start().await else {
        return;
    };
    let proxy2 = RecordingProxy::start(&scim2.base).await;
    for n in ["ann", "ben"] {
        let (s, b) = scim2.post("/Users", &person(n, "Peer")).await;
        assert_eq!(s, 201, "{b}");
    }
    add_target(
        &hub,
        "scim2",
        &format!("{}/v2", proxy2.origin),
        &scim2.token,
        json!({}),
    )
    .await;
    let c = hub.reconcile("scim2").await;
    assert_eq!(c["checked"], 2, "{c}");
    let (by_cursor, by_index) = listings(&proxy2);
    assert_eq!(by_cursor, 0, "{:?}", proxy2.urls());
    assert!(by_index >= 1, "{:?}", proxy2.urls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_lists_by_cursor_where_offered_embedded() {
    reconcile_lists_by_cursor_where_offered(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_lists_by_cursor_where_offered_dynamodb() {
    reconcile_lists_by_cursor_where_offered(Backend::DynamoDb).await;
}
