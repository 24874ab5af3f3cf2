//! Blast-radius safety (#18): the deprovision guard holds deactivations, deletions and
//! membership removals beyond a target's allowance, whatever caused them, until an
//! operator releases or discards them — against `scim2-server`, on both stores.

use std::time::Duration;

use provisync_tests::peers::ScimPeer;
use provisync_tests::proxy::RecordingProxy;
use provisync_tests::{Backend, Hub, PATCH_OP, USER_SCHEMA, backend_store, eventually};
use reqwest::Method;
use serde_json::{Value, json};

async fn add_target(hub: &Hub, id: &str, peer: &ScimPeer, extra: Value) {
    add_target_at(hub, id, &peer.base, peer, extra).await;
}

/// A target reaching `peer` at `base` (through a proxy).
async fn add_target_at(hub: &Hub, id: &str, base: &str, peer: &ScimPeer, extra: Value) {
    let mut body = json!({"kind": "scim", "base_url": base, "auth": {"bearer": peer.token}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = hub
        .admin(Method::PUT, &format!("/targets/{id}"), Some(&body))
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
}

/// Every user on the peer.
async fn peer_users(peer: &ScimPeer) -> Vec<Value> {
    let (status, body) = peer.get("/Users?count=500").await;
    assert_eq!(status, 200, "{body}");
    body["Resources"].as_array().cloned().unwrap_or_default()
}

async fn audit(hub: &Hub, query: &str) -> Vec<Value> {
    let r = hub
        .admin(Method::GET, &format!("/audit?{query}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["entries"].as_array().cloned().unwrap_or_default()
}

/// Creates `n` users `{prefix}{i:02}` (with `title` from `title(i)`) and waits until the
/// peer has them all. Returns their hub ids.
async fn deliver_users(
    hub: &Hub,
    peer: &ScimPeer,
    prefix: &str,
    n: usize,
    title: impl Fn(usize) -> &'static str,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let r = hub
            .post(
                "/Users",
                &json!({"schemas": [USER_SCHEMA], "userName": format!("{prefix}{i:02}"), "title": title(i), "active": true}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.id());
    }
    eventually(
        "every user on scim2-server",
        Duration::from_secs(60),
        || async { peer_users(peer).await.len() == n },
    )
    .await;
    ids
}

/// 20 users delivered, 15 deleted in the hub: the target's guard (`max: 5`) lets 5
/// deletions through, holds the other 10 (listed with their userNames, audited `held`,
/// shown in the target's health); releasing them applies them all.
async fn mass_delete_is_held_then_released(backend: Backend) {
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
        json!({"deprovision_guard": {"max": 5, "window_minutes": 60}}),
    )
    .await;
    let ids = deliver_users(&hub, &peer, "leaver", 20, |_| "staff").await;

    for id in &ids[..15] {
        assert_eq!(hub.delete(&format!("/Users/{id}")).await.status, 204);
    }
    eventually(
        "15 deletions delivered or held",
        Duration::from_secs(60),
        || async {
            hub.held("peer").await.len() == 10
                && audit(&hub, "target=peer&op=delete&status=delivered")
                    .await
                    .len()
                    == 5
        },
    )
    .await;
    // Nothing else arrives: at most `max` deletions reached the target.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        peer_users(&peer).await.len(),
        15,
        "5 deleted downstream, no more"
    );
    let list = hub.held("peer").await;
    assert_eq!(list.len(), 10);
    for h in &list {
        assert_eq!(h["change"], "delete", "{h}");
        assert_eq!(h["resource_type"], "User");
        let name = h["account"]["userName"].as_str().unwrap();
        assert!(name.starts_with("leaver"), "{h}");
        assert!(ids[..15].contains(&h["account"]["id"].as_str().unwrap().to_string()));
        assert!(
            h["cause"].as_str().unwrap().contains("deleted in the hub"),
            "{h}"
        );
        assert!(!h["at"].as_str().unwrap().is_empty());
        // Still on the target.
        assert!(
            peer_users(&peer)
                .await
                .iter()
                .any(|u| u["userName"] == name),
            "{name} is held, so still downstream"
        );
    }
    assert_eq!(
        audit(&hub, "target=peer&status=held").await.len(),
        10,
        "each held change audited `held`"
    );
    // The target's health says it waits for approval.
    let r = hub.admin(Method::GET, "/overview", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["targets"][0]["health"]["held"], 10, "{}", r.text);

    // A release that has run out of its time tries nothing more: what it did not try
    // stays held, counted as left (the admin API gives a request 20 s).
    let none = hub
        .deliverer
        .release_held("peer", None, "test", tokio::time::Instant::now())
        .await
        .unwrap();
    assert_eq!((none.released.len(), none.left), (0, 10), "{none:?}");
    let two: Vec<String> = list[..2]
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect();
    let none = hub
        .deliverer
        .release_held("peer", Some(&two), "test", tokio::time::Instant::now())
        .await
        .unwrap();
    assert_eq!((none.released.len(), none.left), (0, 2), "{none:?}");
    assert_eq!(hub.held("peer").await.len(), 10, "all still held");

    // Released: all applied.
    let r = hub
        .admin(Method::POST, "/targets/peer/held/release", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["left"], 0, "{}", r.text);
    assert_eq!(
        r.body["released"].as_array().unwrap().len(),
        10,
        "{}",
        r.text
    );
    assert!(hub.held("peer").await.is_empty());
    let left: Vec<String> = peer_users(&peer)
        .await
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 5, "{left:?}");
    assert!(left.iter().all(|n| n.as_str() >= "leaver15"), "{left:?}");
    assert_eq!(
        audit(&hub, "target=peer&op=release_held").await.len(),
        10,
        "each release audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_delete_is_held_then_released_embedded() {
    mass_delete_is_held_then_released(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_delete_is_held_then_released_dynamodb() {
    mass_delete_is_held_then_released(Backend::DynamoDb).await;
}

/// Every message waiting in the hub's queue (none running a consumer: delivered by hand).
async fn queued(hub: &Hub) -> Vec<provisync_core::queue::Delivery> {
    let mut out = Vec::new();
    loop {
        let got = hub
            .queue
            .receive(10, Duration::from_millis(50))
            .await
            .expect("receive");
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

/// The queue hands a message out again while its first delivery still runs (a delivery
/// that outlives the visibility timeout): the two deliveries of one change the guard
/// holds leave one held change, not two (an operator would see it twice, and release it
/// twice).
async fn a_change_delivered_twice_at_once_is_held_once(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    // No consumer: this test delivers each message itself.
    let hub = Hub::start_on(store).await;
    add_target(
        &hub,
        "peer",
        &peer,
        json!({"deprovision_guard": {"max": 1}}),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let r = hub
            .post(
                "/Users",
                &json!({"schemas": [USER_SCHEMA], "userName": format!("twice{i}"), "active": true}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.id());
    }
    for d in queued(&hub).await {
        hub.deliverer
            .deliver_body(&d.body, false)
            .await
            .expect("created");
        hub.queue.ack(&d.receipt).await.expect("ack");
    }
    assert_eq!(peer_users(&peer).await.len(), 2);

    for id in &ids {
        assert_eq!(hub.delete(&format!("/Users/{id}")).await.status, 204);
    }
    let deletions = queued(&hub).await;
    assert_eq!(deletions.len(), 2);
    // The first deletion spends the guard's window (max 1) ...
    hub.deliverer
        .deliver_body(&deletions[0].body, false)
        .await
        .expect("deleted");
    // ... and the second, delivered twice at once, is held: once.
    let body = &deletions[1].body;
    let (a, b) = tokio::join!(
        hub.deliverer.deliver_body(body, false),
        hub.deliverer.deliver_body(body, false)
    );
    a.expect("held");
    b.expect("held");
    let list = hub.held("peer").await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["change"], "delete", "{list:?}");
    assert_eq!(peer_users(&peer).await.len(), 1, "one deleted, one held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_delivered_twice_at_once_is_held_once_embedded() {
    a_change_delivered_twice_at_once_is_held_once(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_delivered_twice_at_once_is_held_once_dynamodb() {
    a_change_delivered_twice_at_once_is_held_once(Backend::DynamoDb).await;
}

/// A scope change that drops 80% of the target's users: the reconcile that applies it
/// deactivates `max` of them and holds the rest. A discarded one is audited and stays
/// active; the next reconcile finds its cause still there and sends it again — through
/// the guard, which holds it again (never silently).
async fn scope_change_dropping_most_is_held(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let hub = Hub::start_on(store).await;
    let _delivery = hub.run_delivery();
    let guard = json!({"deprovision_guard": {"max": 5}});
    add_target(&hub, "peer", &peer, guard.clone()).await;
    // Every fifth user keeps the title the new scope wants.
    deliver_users(&hub, &peer, "member", 20, |i| {
        if i % 5 == 0 { "keep" } else { "other" }
    })
    .await;

    let mut scoped = guard.clone();
    scoped["scope_filter"] = json!("title eq \"keep\"");
    add_target(&hub, "peer", &peer, scoped).await;
    let counts = hub.reconcile("peer").await;
    assert_eq!(counts["deactivated"], 5, "{counts}");
    let inactive = |users: &[Value]| users.iter().filter(|u| u["active"] == false).count();
    assert_eq!(inactive(&peer_users(&peer).await), 5);
    let list = hub.held("peer").await;
    assert_eq!(list.len(), 11, "{list:?}");
    for h in &list {
        assert_eq!(h["change"], "deactivate", "{h}");
        let cause = h["cause"].as_str().unwrap();
        assert!(cause.contains("left the target's scope"), "{cause}");
        assert!(cause.contains("reconcile"), "{cause}");
    }

    // Discard one: audited, still active downstream.
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
    assert_eq!(r.body["discarded"], json!([one]));
    let discarded = audit(&hub, "target=peer&op=discard_held").await;
    assert_eq!(discarded.len(), 1);
    assert!(
        discarded[0]["detail"].as_str().unwrap().contains(&name),
        "{discarded:?}"
    );
    // Release the rest.
    let r = hub
        .admin(Method::POST, "/targets/peer/held/release", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["released"].as_array().unwrap().len(),
        10,
        "{}",
        r.text
    );
    let users = peer_users(&peer).await;
    assert_eq!(inactive(&users), 15);
    assert!(
        users
            .iter()
            .any(|u| u["userName"] == name.as_str() && u["active"] == true),
        "the discarded deactivation was not sent"
    );
    // The cause is still there: the next reconcile sends it again, and the guard (its
    // window spent) holds it again, visibly.
    hub.reconcile("peer").await;
    let again = hub.held("peer").await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["account"]["userName"], name.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_change_dropping_most_is_held_embedded() {
    scope_change_dropping_most_is_held(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_change_dropping_most_is_held_dynamodb() {
    scope_change_dropping_most_is_held(Backend::DynamoDb).await;
}

/// The peer's copy of a user.
async fn on_peer(peer: &ScimPeer, user_name: &str) -> Value {
    peer_users(peer)
        .await
        .into_iter()
        .find(|u| u["userName"] == user_name)
        .unwrap_or_else(|| panic!("{user_name} not on the peer"))
}

fn planned<'a>(plan: &'a Value, change: &str) -> Vec<&'a str> {
    let mut names: Vec<&str> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["change"] == change)
        .map(|c| c["userName"].as_str().unwrap())
        .collect();
    names.sort();
    names
}

/// Plans send nothing and write nothing. A reconcile plan against a drifted target (an
/// account changed there, one deleted there, one out of the new scope) names the three
/// changes by userName, and the target receives no write (a recording proxy in front of
/// `scim2-server` counts them); the reconcile that follows does exactly what the plan
/// said. A definition change with `?plan=true` reports what it would do and is not
/// saved; an on-demand sync plan of one user names its change.
async fn plans_write_nothing(backend: Backend) {
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
    add_target_at(&hub, "peer", &base, &peer, json!({})).await;
    let ids = deliver_users(&hub, &peer, "user", 5, |_| "staff").await;

    // Drift: user00 changed on the target, user01 deleted there; user02 leaves the scope.
    let changed = on_peer(&peer, "user00").await;
    let r = peer
        .req(Method::PATCH, &format!("/Users/{}", changed["id"].as_str().unwrap()))
        .body(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "drifted"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let gone = on_peer(&peer, "user01").await;
    let r = peer
        .req(
            Method::DELETE,
            &format!("/Users/{}", gone["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    add_target_at(
        &hub,
        "peer",
        &base,
        &peer,
        json!({"scope_filter": "userName ne \"user02\""}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.clear();

    let r = hub
        .admin(
            Method::POST,
            "/sync",
            Some(&json!({"target": "peer", "reconcile": true, "plan": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let plan = &r.body["plan"];
    assert_eq!(plan["state"], "complete", "{plan}");
    assert_eq!(plan["checked"], 4, "{plan}");
    assert_eq!(
        (
            &plan["counts"]["create"],
            &plan["counts"]["update"],
            &plan["counts"]["deactivate"],
            &plan["counts"]["delete"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(0)),
        "{plan}"
    );
    assert_eq!(planned(plan, "create"), ["user01"]);
    assert_eq!(planned(plan, "update"), ["user00"]);
    assert_eq!(planned(plan, "deactivate"), ["user02"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        proxy.writes().is_empty(),
        "a plan wrote to the target: {:?}",
        proxy.writes()
    );
    assert!(
        audit(&hub, "target=peer&op=reconcile").await.is_empty(),
        "a plan leaves no reconcile behind"
    );
    assert_eq!(on_peer(&peer, "user00").await["title"], "drifted");

    // A definition change, planned: nothing saved.
    let r = hub
        .admin(
            Method::PUT,
            "/targets/peer?plan=true",
            Some(
                &json!({"kind": "scim", "base_url": base, "auth": {"bearer": peer.token},
                "scope_filter": "userName eq \"user04\"",
                "mapping": [{"target": "nickName", "value": "n"}]}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let plan = &r.body["plan"];
    // user04 stays, with the new mapping; the other four (all still linked and active
    // as far as the hub knows) leave the scope.
    assert_eq!(planned(plan, "update"), ["user04"], "{plan}");
    assert_eq!(
        planned(plan, "deactivate"),
        ["user00", "user01", "user02", "user03"],
        "{plan}"
    );
    let r = hub.admin(Method::GET, "/targets/peer", None).await;
    assert_eq!(
        r.body["scope_filter"], "userName ne \"user02\"",
        "not saved"
    );
    assert!(
        r.body
            .get("mapping")
            .is_none_or(|m| m.as_array().is_none_or(Vec::is_empty))
    );

    // An on-demand sync plan of one user (out of scope now, still linked).
    let r = hub
        .admin(
            Method::POST,
            "/sync",
            Some(&json!({"target": "peer", "user": ids[2], "plan": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        planned(&r.body["plan"], "deactivate"),
        ["user02"],
        "{}",
        r.text
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());

    // The reconcile does what the plan said.
    let counts = hub.reconcile("peer").await;
    assert_eq!(
        (
            &counts["created"],
            &counts["updated"],
            &counts["deactivated"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{counts}"
    );
    assert!(!proxy.writes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_write_nothing_embedded() {
    plans_write_nothing(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_write_nothing_dynamodb() {
    plans_write_nothing(Backend::DynamoDb).await;
}

/// The team group on the peer: its member ids.
async fn peer_group_members(peer: &ScimPeer, name: &str) -> Vec<String> {
    let (status, body) = peer.get("/Groups?count=100").await;
    assert_eq!(status, 200, "{body}");
    body["Resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|g| g["displayName"] == name)
        .map(|g| {
            g["members"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A way back: every deactivation and membership removal sent to a target is journaled
/// first; `undo` since a time plans the inverse changes (nothing changes on the target),
/// then applies them: the accounts are active again and back in their group.
async fn undo_restores_accounts_and_memberships(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let hub = Hub::start_on(store).await;
    let _delivery = hub.run_delivery();
    add_target(&hub, "peer", &peer, json!({})).await;
    let ids = deliver_users(&hub, &peer, "crew", 4, |_| "staff").await;
    let members: Vec<&str> = ids.iter().map(String::as_str).collect();
    let team = hub.group("team", &members).await;
    eventually("the team on the peer", Duration::from_secs(60), || async {
        peer_group_members(&peer, "team").await.len() == 4
    })
    .await;

    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for id in &ids[..2] {
        let r = hub
            .patch(
                &format!("/Users/{id}"),
                &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = hub
        .patch(
            &format!("/Groups/{team}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[2])}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let inactive = |users: Vec<Value>| users.iter().filter(|u| u["active"] == false).count();
    eventually(
        "the deprovisions on the peer",
        Duration::from_secs(60),
        || async {
            inactive(peer_users(&peer).await) == 2
                && peer_group_members(&peer, "team").await.len() == 3
        },
    )
    .await;

    // The plan: three inverse changes, nothing done.
    let r = hub
        .admin(
            Method::POST,
            "/targets/peer/undo",
            Some(&json!({"since": since})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["applied"], false);
    let mut steps: Vec<(String, String)> = r.body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["change"].as_str().unwrap().to_string(),
                s["userName"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    steps.sort();
    assert_eq!(
        steps,
        [
            ("add_members".to_string(), "team".to_string()),
            ("reactivate".to_string(), "crew00".to_string()),
            ("reactivate".to_string(), "crew01".to_string()),
        ],
        "{}",
        r.text
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        inactive(peer_users(&peer).await),
        2,
        "a plan changes nothing"
    );
    // Bad input: a clear 400.
    let r = hub
        .admin(
            Method::POST,
            "/targets/peer/undo",
            Some(&json!({"since": "yesterday"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);

    // Out of time before its first step: nothing applied, all three left, journaled.
    let none = hub
        .deliverer
        .undo("peer", &since, true, "test", tokio::time::Instant::now())
        .await
        .unwrap();
    assert_eq!(
        (none.done, none.left, none.steps.len()),
        (0, 3, 3),
        "{none:?}"
    );
    assert_eq!(inactive(peer_users(&peer).await), 2, "nothing applied");

    // Applied.
    let r = hub
        .admin(
            Method::POST,
            "/targets/peer/undo",
            Some(&json!({"since": since, "apply": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["applied"], true);
    assert!(r.body.get("failed").is_none(), "{}", r.text);
    assert_eq!(
        (&r.body["done"], &r.body["left"]),
        (&json!(3), &json!(0)),
        "{}",
        r.text
    );
    assert_eq!(inactive(peer_users(&peer).await), 0, "reactivated");
    assert_eq!(
        peer_group_members(&peer, "team").await.len(),
        4,
        "back in the team"
    );
    // Undone steps leave the journal: a second undo has nothing to do.
    let r = hub
        .admin(
            Method::POST,
            "/targets/peer/undo",
            Some(&json!({"since": since})),
        )
        .await;
    assert_eq!(r.body["steps"], json!([]), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_restores_accounts_and_memberships_embedded() {
    undo_restores_accounts_and_memberships(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_restores_accounts_and_memberships_dynamodb() {
    undo_restores_accounts_and_memberships(Backend::DynamoDb).await;
}
