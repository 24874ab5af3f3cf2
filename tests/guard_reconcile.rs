//! Blast-radius safety (#18), the rest: a reconcile's own deprovisions (orphans deleted or
//! deactivated by target id) pass the deprovision guard and the journal like every other
//! deprovision; and `delete_mode: {"deactivate_then_delete_after_days": N}` deactivates
//! at once and deletes when due unless the user was restored — against `scim2-server`,
//! on both stores.

use std::time::Duration;

use provisync_tests::peers::ScimPeer;
use provisync_tests::{Backend, Hub, USER_SCHEMA, backend_store, eventually};
use reqwest::Method;
use serde_json::{Value, json};

async fn add_target(hub: &Hub, id: &str, peer: &ScimPeer, extra: Value) {
    let mut body = json!({"kind": "scim", "base_url": peer.base, "auth": {"bearer": peer.token}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = hub
        .admin(Method::PUT, &format!("/targets/{id}"), Some(&body))
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
}

async fn peer_users(peer: &ScimPeer) -> Vec<Value> {
    let (status, body) = peer.get("/Users?count=500").await;
    assert_eq!(status, 200, "{body}");
    body["Resources"].as_array().cloned().unwrap_or_default()
}

async fn peer_names(peer: &ScimPeer) -> Vec<String> {
    let mut names: Vec<String> = peer_users(peer)
        .await
        .iter()
        .filter_map(|u| u["userName"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

async fn audit(hub: &Hub, query: &str) -> Vec<Value> {
    let r = hub
        .admin(Method::GET, &format!("/audit?{query}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["entries"].as_array().cloned().unwrap_or_default()
}

async fn create_user(hub: &Hub, name: &str) -> String {
    let r = hub
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": name, "active": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.id()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A drifted target: 7 accounts the hub does not know, orphan policy `delete`, guard
/// `max: 3`. The reconcile deletes 3 and holds 4 (reported `held`, not `deleted`;
/// listed, audited `held`); the next reconcile does not hold them twice; a discarded
/// one is held again by the reconcile after (its cause, an account unknown to the hub,
/// is still there); released, all are deleted; every deletion was journaled, so undo
/// recreates all 7.
async fn reconcile_orphans_pass_the_guard(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let hub = Hub::start_on(store).await;
    let _delivery = hub.run_delivery();
    add_target(
        &hub,
        "peer",
        &peer,
        json!({"orphans": "delete", "deprovision_guard": {"max": 3}}),
    )
    .await;
    for n in ["known0", "known1"] {
        create_user(&hub, n).await;
    }
    eventually(
        "the hub's users on the peer",
        Duration::from_secs(60),
        || async { peer_users(&peer).await.len() == 2 },
    )
    .await;
    for i in 0..7 {
        let (status, body) = peer
            .post(
                "/Users",
                &json!({"schemas": [USER_SCHEMA], "userName": format!("stray{i}"), "active": true}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let since = now();

    let counts = hub.reconcile("peer").await;
    assert_eq!(counts["orphaned"], 7, "{counts}");
    assert_eq!(counts["deleted"], 3, "at most max: {counts}");
    assert_eq!(
        counts["held"], 4,
        "the rest held, not counted deleted: {counts}"
    );
    assert_eq!(peer_users(&peer).await.len(), 2 + 4);
    let list = hub.held("peer").await;
    assert_eq!(list.len(), 4, "{list:?}");
    for h in &list {
        assert_eq!(h["change"], "delete", "{h}");
        assert_eq!(h["resource_type"], "User", "{h}");
        let name = h["account"]["userName"].as_str().unwrap();
        assert!(name.starts_with("stray"), "{h}");
        assert!(
            h["cause"].as_str().unwrap().contains("unknown to the hub"),
            "{h}"
        );
    }
    assert_eq!(audit(&hub, "target=peer&status=held").await.len(), 4);

    // The next reconcile finds them again: still held, not held twice, nothing sent.
    let counts = hub.reconcile("peer").await;
    assert_eq!(
        (counts["deleted"].clone(), counts["held"].clone()),
        (json!(0), json!(4)),
        "{counts}"
    );
    assert_eq!(hub.held("peer").await.len(), 4);
    assert_eq!(peer_users(&peer).await.len(), 6);

    // Discarded: audited, not sent; the next reconcile finds the cause still there and
    // holds it again (the guard's window is spent), visibly.
    let one = list[0]["id"].as_str().unwrap().to_string();
    let name = list[0]["account"]["userName"].as_str().unwrap().to_string();
    let r = hub
        .admin(
            Method::POST,
            "/targets/peer/held/discard",
            Some(&json!({"ids": [one]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(hub.held("peer").await.len(), 3);
    assert!(peer_names(&peer).await.contains(&name));
    let counts = hub.reconcile("peer").await;
    assert_eq!(counts["held"], 4, "{counts}");
    let again = hub.held("peer").await;
    assert_eq!(again.len(), 4, "{again:?}");
    assert!(
        again
            .iter()
            .any(|h| h["account"]["userName"] == name.as_str())
    );

    // Released: all deleted.
    let r = hub
        .admin(Method::POST, "/targets/peer/held/release", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["released"].as_array().unwrap().len(),
        4,
        "{}",
        r.text
    );
    assert!(hub.held("peer").await.is_empty());
    assert_eq!(peer_names(&peer).await, ["known0", "known1"]);

    // Journaled before each was sent: undo recreates the 7.
    let r = hub
        .admin(
            Method::POST,
            "/targets/peer/undo",
            Some(&json!({"since": since})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let steps = r.body["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 7, "{}", r.text);
    assert!(
        steps.iter().all(|s| s["change"] == "recreate"),
        "{}",
        r.text
    );
    let r = hub
        .admin(
            Method::POST,
            "/targets/peer/undo",
            Some(&json!({"since": since, "apply": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body.get("failed").is_none(), "{}", r.text);
    let names = peer_names(&peer).await;
    assert_eq!(names.len(), 9, "{names:?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("stray")).count(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_orphans_pass_the_guard_embedded() {
    reconcile_orphans_pass_the_guard(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_orphans_pass_the_guard_dynamodb() {
    reconcile_orphans_pass_the_guard(Backend::DynamoDb).await;
}

/// `delete_mode: {"deactivate_then_delete_after_days": 7}`: users deleted in the hub are
/// deactivated on the target at once and listed as deferred deletions; one is restored
/// (re-created in the hub: linked to its account again). Another hub on the same store
/// (the next Lambda invocation) runs the due deletions with a clock moved on: after 6
/// days nothing is due; after 8 the deleted one is deleted (journaled: undo would
/// recreate it) and the restored one is kept.
async fn deletion_deferred_until_due(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let hub = Hub::start_on(store.clone()).await;
    let delivery = hub.run_delivery();
    let r = hub
        .admin(
            Method::PUT,
            "/targets/bad",
            Some(
                &json!({"kind": "scim", "base_url": peer.base, "auth": {"bearer": peer.token},
                "delete_mode": {"deactivate_then_delete_after_days": 0}}),
            ),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    add_target(
        &hub,
        "peer",
        &peer,
        json!({"delete_mode": {"deactivate_then_delete_after_days": 7}}),
    )
    .await;
    let r = hub.admin(Method::GET, "/targets/peer", None).await;
    assert_eq!(
        r.body["delete_mode"],
        json!({"deactivate_then_delete_after_days": 7}),
        "{}",
        r.text
    );
    let mut ids = Vec::new();
    for n in ["temp0", "temp1", "temp2"] {
        ids.push(create_user(&hub, n).await);
    }
    eventually("the users on the peer", Duration::from_secs(60), || async {
        peer_users(&peer).await.len() == 3
    })
    .await;
    let since = now();
    let start = chrono::Utc::now().timestamp();
    for id in &ids[..2] {
        assert_eq!(hub.delete(&format!("/Users/{id}")).await.status, 204);
    }
    let inactive = |users: Vec<Value>| {
        let mut n: Vec<String> = users
            .iter()
            .filter(|u| u["active"] == false)
            .map(|u| u["userName"].as_str().unwrap_or_default().to_string())
            .collect();
        n.sort();
        n
    };
    eventually(
        "deactivated, not deleted",
        Duration::from_secs(60),
        || async { inactive(peer_users(&peer).await) == ["temp0", "temp1"] },
    )
    .await;
    assert_eq!(peer_users(&peer).await.len(), 3, "nothing deleted yet");
    let r = hub.admin(Method::GET, "/targets/peer/deferred", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut listed: Vec<Value> = r.body["deferred"].as_array().unwrap().clone();
    listed.sort_by_key(|d| d["userName"].as_str().unwrap_or_default().to_string());
    assert_eq!(listed.len(), 2, "{}", r.text);
    assert_eq!(listed[0]["userName"], "temp0");
    assert_eq!(listed[0]["cause"], "deleted in the hub");
    let after = chrono::DateTime::parse_from_rfc3339(listed[0]["delete_after"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!((after - start - 7 * 86_400).abs() < 120, "{}", r.text);

    // Restored: re-created in the hub, linked to its account again, active there.
    create_user(&hub, "temp1").await;
    eventually("temp1 active again", Duration::from_secs(60), || async {
        inactive(peer_users(&peer).await) == ["temp0"]
    })
    .await;
    drop(delivery);

    // The scheduled cycle now: nothing due.
    let report =
        provisync_core::sync::schedule::run_schedule(&hub.schedule, Duration::from_secs(20))
            .await
            .expect("cycle");
    assert_eq!(report.deferred_deletes.len(), 1, "{report:?}");
    assert_eq!(report.deferred_deletes[0].waiting, 2, "{report:?}");

    // Another invocation (a hub built afresh on the same store, with the same operator
    // key), the clock moved on: 6 days, nothing due; 8 days, due.
    let next = provisync_core::hub::Hub::new(provisync_core::hub::HubParts {
        store,
        queue: hub.queue.clone(),
        schemas: provisync_scim::SchemaRegistry::builtin(),
        secrets: provisync_core::crypto::SecretBox::from_encoded(&hub.secret_key).unwrap(),
        connectors: provisync_connectors::connectors_for,
        http: provisync_connectors::http::http_port,
    })
    .schedule();
    let due = next
        .reconciler
        .delete_due(start + 6 * 86_400)
        .await
        .expect("due deletions");
    assert_eq!((due[0].waiting, due[0].deleted), (2, 0), "{due:?}");
    assert_eq!(peer_users(&peer).await.len(), 3);
    let due = next
        .reconciler
        .delete_due(start + 8 * 86_400)
        .await
        .expect("due deletions");
    assert_eq!(
        (due[0].deleted, due[0].restored, due[0].held, due[0].waiting),
        (1, 1, 0, 0),
        "{due:?}"
    );
    assert_eq!(peer_names(&peer).await, ["temp1", "temp2"]);
    let r = hub.admin(Method::GET, "/targets/peer/deferred", None).await;
    assert_eq!(r.body["deferred"], json!([]), "{}", r.text);
    assert_eq!(
        audit(&hub, "target=peer&op=delete&status=delivered")
            .await
            .len(),
        1
    );
    // Journaled: undo would bring temp0 back.
    let r = hub
        .admin(
            Method::POST,
            "/targets/peer/undo",
            Some(&json!({"since": since})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["change"] == "recreate" && s["userName"] == "temp0"),
        "{}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_deferred_until_due_embedded() {
    deletion_deferred_until_due(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_deferred_until_due_dynamodb() {
    deletion_deferred_until_due(Backend::DynamoDb).await;
}

/// Reconciles a target holding `n` accounts the hub does not know, with `orphans:
/// delete` and a guard that lets one deprovision through: the store items the hub reads
/// per orphan, first when they are held, then when a second reconcile finds each held
/// already.
///
/// Then the console's overview: the items it reads, and the held count it shows.
async fn items_read_per_orphan(n: usize) -> ((f64, f64), (u64, Value)) {
    let store = provisync_tests::counting::CountingStore::new(std::sync::Arc::new(
        provisync_core::store::embedded::EmbeddedStore::in_memory(),
    ));
    let hub = Hub::start_on(std::sync::Arc::new(store.clone())).await;
    let target = provisync_tests::peers::FaultyTarget::start().await;
    for i in 0..n {
        let r = reqwest::Client::new()
            .post(format!("{}/Users", target.base))
            .bearer_auth(&target.token)
            .json(&json!({"schemas": [USER_SCHEMA], "userName": format!("orphan{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let body = json!({"kind": "scim", "base_url": target.base, "auth": {"bearer": target.token},
        "orphans": "delete", "deprovision_guard": {"max": 1, "window_minutes": 60}});
    let r = hub.admin(Method::PUT, "/targets/t", Some(&body)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    let mut per_orphan = Vec::new();
    for _ in 0..2 {
        store.reset();
        let r = hub
            .admin(
                Method::POST,
                "/sync",
                Some(&json!({"target": "t", "reconcile": true})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        per_orphan.push(store.read_items() as f64 / n as f64);
    }
    assert_eq!(hub.held("t").await.len(), n - 1, "all but one held");
    store.reset();
    let r = hub.admin(Method::GET, "/overview", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let health = r.body["targets"][0]["health"].clone();
    (
        (per_orphan[0], per_orphan[1]),
        (
            store.read_items(),
            json!([health["held"], health["held_more"]]),
        ),
    )
}

/// Checking whether an orphan's deletion is held already is one read, not a listing of
/// every held change of the target (and the overview counts them without one): at 400 orphans a reconcile read as much per orphan
/// as at 40 (before, it read all held so far for each: 20x more per orphan at 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_orphans_cost_the_same_at_any_count() {
    let (small, small_overview) = items_read_per_orphan(40).await;
    let (large, large_overview) = items_read_per_orphan(400).await;
    println!("items read per orphan, 40 orphans: {small:?}; 400 orphans: {large:?}");
    println!(
        "the overview, items read and held shown: 39 held {small_overview:?}; 399 held {large_overview:?}"
    );
    // The overview counts held changes up to 100 ("100+"): it read all 399 before.
    assert_eq!(small_overview.1, json!([39, false]));
    assert_eq!(large_overview.1, json!([100, true]));
    // What else it reads is bounded too: the newest 200 audit entries (the target's
    // health), the definitions, the dead letters (none here).
    let bound = provisync_core::sync::insight::HEALTH_WINDOW as u64 + 101 + 20;
    assert!(
        large_overview.0 <= bound,
        "the overview read {} items with 399 held (bound {bound}; {} with 39 held)",
        large_overview.0,
        small_overview.0
    );
    assert!(
        large.0 <= small.0 * 1.5 && large.1 <= small.1 * 1.5,
        "reads per orphan grew with the number held: 40 orphans {small:?}, 400 orphans {large:?}"
    );
}

/// Target `t` on a fake SCIM server, deleting 7 days after deactivating (no guard), and
/// accounts there with these userNames (their ids on it).
async fn deferring_target(
    hub: &Hub,
    names: &[&str],
) -> (provisync_tests::peers::FaultyTarget, Vec<String>) {
    let target = provisync_tests::peers::FaultyTarget::start().await;
    let body = json!({"kind": "scim", "base_url": target.base, "auth": {"bearer": target.token},
        "deprovision_guard": null, "delete_mode": {"deactivate_then_delete_after_days": 7}});
    let r = hub.admin(Method::PUT, "/targets/t", Some(&body)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    let mut accounts = Vec::new();
    for name in names {
        let r = reqwest::Client::new()
            .post(format!("{}/Users", target.base))
            .bearer_auth(&target.token)
            .json(&json!({"schemas": [USER_SCHEMA], "userName": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let account: Value = r.json().await.unwrap();
        accounts.push(account["id"].as_str().unwrap().to_string());
    }
    (target, accounts)
}

/// A pending deletion as a release before the due-time index wrote it: no index key, not
/// counted.
fn legacy_pending(
    p: &provisync_core::sync::deferred::PendingDelete,
) -> provisync_core::store::Write {
    use provisync_core::store::{Item, Write};
    Write::put(Item::new(
        "DEFER#t",
        p.hub_id.clone(),
        serde_json::to_vec(p).unwrap(),
    ))
}

/// The scheduled cycle reads the pending deletions that are due, not those waiting: with
/// 10,000 waiting (and 100 written before the due-time index, one of them due), a cycle
/// deletes the 152 due ones, and the next reads a few items. Before, it read all 10,100 every
/// cycle (and, before that, a listing capped at 10,000 never reached a due one past them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_reads_the_due_deletions_not_the_waiting_ones() {
    use provisync_core::store::{Store, Write};
    use provisync_core::sync::deferred::{Deferred, PendingDelete};
    let store = provisync_tests::counting::CountingStore::new(std::sync::Arc::new(
        provisync_core::store::embedded::EmbeddedStore::in_memory(),
    ));
    let hub = Hub::start_on(std::sync::Arc::new(store.clone())).await;
    let (target, accounts) = deferring_target(&hub, &["leaver", "old-leaver"]).await;
    let now = chrono::Utc::now().timestamp();
    let deferred = Deferred::new(std::sync::Arc::new(store.clone()));
    for i in 0..10_000 {
        let p = PendingDelete::new("t", &format!("a{i:05}"), &format!("acct{i}"), 7, now);
        deferred.put(&p).await.unwrap();
    }
    // Written again (a second deprovision of the same user): still one.
    let p = PendingDelete::new("t", "a00000", "acct0", 7, now);
    deferred.put(&p).await.unwrap();
    let mut due = PendingDelete::new("t", "z-due", &accounts[0], 1, now - 2 * 86_400);
    due.name = "leaver".into();
    deferred.put(&due).await.unwrap();
    // More due than one page of the index holds (their accounts are gone already).
    for i in 0..150 {
        let p = PendingDelete::new(
            "t",
            &format!("y{i:03}"),
            &format!("gone{i}"),
            1,
            now - 86_400,
        );
        deferred.put(&p).await.unwrap();
    }
    // As a release before the due-time index wrote them: no index key, not counted.
    let mut old: Vec<Write> = (0..99)
        .map(|i| legacy_pending(&PendingDelete::new("t", &format!("b{i:02}"), "x", 7, now)))
        .collect();
    let mut old_due = PendingDelete::new("t", "b-due", &accounts[1], 1, now - 2 * 86_400);
    old_due.name = "old-leaver".into();
    old.push(legacy_pending(&old_due));
    store.transact(old).await.unwrap();

    let counts = hub.schedule.reconciler.delete_due(now).await.unwrap();
    assert_eq!(
        (counts[0].deleted, counts[0].failed, counts[0].waiting),
        (152, 0, 10_099),
        "{counts:?}"
    );
    assert!(
        target.user(&accounts[0]).is_none(),
        "the due account deleted"
    );
    assert!(target.user(&accounts[1]).is_none(), "the old due one too");

    store.reset();
    let counts = hub.schedule.reconciler.delete_due(now).await.unwrap();
    let read = store.read_items();
    assert_eq!(
        (counts[0].deleted, counts[0].waiting),
        (0, 10_099),
        "{counts:?}"
    );
    println!("items read by a cycle with 10,099 deletions waiting: {read}");
    assert!(read <= 16, "a cycle read {read} items for 10,099 waiting");
}

/// The due-time index on both stores: pending deletions written before it (no index key,
/// not counted) are indexed and counted by the first cycle; a due one of each kind is
/// deleted, the waiting ones counted, and a second cycle finds the same.
async fn deferred_deletions_by_due_time(backend: Backend) {
    use provisync_core::sync::deferred::{Deferred, PendingDelete};
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let hub = Hub::start_on(store.clone()).await;
    let (target, accounts) = deferring_target(&hub, &["new-leaver", "old-leaver"]).await;
    let now = chrono::Utc::now().timestamp();
    let deferred = Deferred::new(store.clone());
    for i in 0..4 {
        let p = PendingDelete::new("t", &format!("n{i}"), &format!("acct{i}"), 7, now);
        deferred.put(&p).await.unwrap();
    }
    deferred
        .put(&PendingDelete::new(
            "t",
            "n-due",
            &accounts[0],
            1,
            now - 2 * 86_400,
        ))
        .await
        .unwrap();
    store
        .transact(vec![
            legacy_pending(&PendingDelete::new("t", "o0", "x0", 7, now)),
            legacy_pending(&PendingDelete::new("t", "o1", "x1", 7, now)),
            legacy_pending(&PendingDelete::new(
                "t",
                "o-due",
                &accounts[1],
                1,
                now - 2 * 86_400,
            )),
        ])
        .await
        .unwrap();
    for (deleted, waiting) in [(2, 6), (0, 6)] {
        let counts = hub.schedule.reconciler.delete_due(now).await.unwrap();
        assert_eq!(
            (counts[0].deleted, counts[0].failed, counts[0].waiting),
            (deleted, 0, waiting),
            "{counts:?}"
        );
    }
    assert!(target.user(&accounts[0]).is_none() && target.user(&accounts[1]).is_none());
    let (listed, more) = deferred.list("t").await.unwrap();
    assert_eq!((listed.len(), more), (6, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_deletions_by_due_time_embedded() {
    deferred_deletions_by_due_time(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_deletions_by_due_time_dynamodb() {
    deferred_deletions_by_due_time(Backend::DynamoDb).await;
}
