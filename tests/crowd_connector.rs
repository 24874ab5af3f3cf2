//! The Crowd connector against `FakeCrowd` (tests/common/crowd.rs): the whole lifecycle,
//! error mapping, and delivery end to end through the hub (a rename keeps the link).

use std::time::{Duration, Instant};

use provisync_connectors::crowd::CrowdConnector;
use provisync_core::connector::{Connector, ConnectorError};
use provisync_core::target::CrowdTarget;
use provisync_scim::ResourceKind;
use provisync_tests::crowd::{CrowdFault, FakeCrowd};
use provisync_tests::{Backend, Hub, PATCH_OP, USER_SCHEMA, counts_of, settle};
use reqwest::Method;
use serde_json::{Value, json};

fn connector(c: &FakeCrowd, password: &str) -> CrowdConnector {
    CrowdConnector::new(&CrowdTarget {
        base_url: c.base.clone(),
        application: c.application.clone(),
        password: password.to_string(),
    })
    .expect("connector")
}

fn alice(name: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA], "userName": name, "externalId": "hub-1",
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "displayName": "Alice Liddell", "active": true,
        "emails": [{"value": "alice@example.test", "primary": true}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_lifecycle() {
    let crowd = FakeCrowd::start().await;
    let c = connector(&crowd, &crowd.password);

    let about = c.test().await.expect("test");
    assert!(about.contains("accepted"), "{about}");
    let wrong = connector(&crowd, "not-the-password");
    match wrong.test().await {
        Err(ConnectorError::Refused {
            status: Some(401),
            reason,
        }) => {
            assert!(reason.contains("provisync"), "{reason}");
            assert!(!reason.contains("not-the-password"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // Create with a password: the documented user entity.
    let u = alice("alice");
    assert_eq!(
        c.create_user(&u, Some("Wonder!land1")).await.unwrap(),
        "alice"
    );
    let got = crowd.user("alice").unwrap();
    assert_eq!(
        got,
        json!({"name": "alice", "first-name": "Alice", "last-name": "Liddell",
               "display-name": "Alice Liddell", "email": "alice@example.test", "active": true})
    );
    assert_eq!(crowd.state().passwords["alice"], "Wonder!land1");
    // Without one: Crowd requires a credential, an unguessable one is set.
    c.create_user(&alice("bob"), None).await.unwrap();
    assert!(crowd.state().passwords["bob"].len() >= 40);

    // Existing name (any case): Conflict, so the engine links instead.
    match c.create_user(&alice("ALICE"), None).await {
        Err(ConnectorError::Conflict(r)) => assert!(r.contains("ALICE"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.find_user(&json!({"userName": "Alice"})).await.unwrap(),
        Some("alice".into())
    );
    assert_eq!(
        c.find_user(&json!({"userName": "nobody"})).await.unwrap(),
        None
    );
    assert!(matches!(
        c.find_user(&json!({"displayName": "x"})).await,
        Err(ConnectorError::Refused { .. })
    ));

    // Update in place: no new id.
    let mut changed = u.clone();
    changed["name"]["familyName"] = json!("Pleasance");
    changed["displayName"] = json!("Alice P.");
    assert_eq!(
        c.update_user("alice", &changed, Some(&u), None).await,
        Ok(None)
    );
    assert_eq!(crowd.user("alice").unwrap()["last-name"], "Pleasance");
    assert_eq!(crowd.user("alice").unwrap()["display-name"], "Alice P.");

    // Rename (new userName) with a new password and a custom attribute: the new id is
    // returned; memberships follow the account.
    let gid = c
        .create_group(&json!({"displayName": "wonderland"}))
        .await
        .unwrap();
    c.add_members(&gid, &["alice".into()]).await.unwrap();
    let mut renamed = changed.clone();
    renamed["userName"] = json!("alice.p");
    renamed["attributes"] = json!({"costCenter": "42"});
    assert_eq!(
        c.update_user("alice", &renamed, Some(&changed), Some("N3w!pass"))
            .await,
        Ok(Some("alice.p".into()))
    );
    assert!(crowd.user("alice").is_none());
    assert_eq!(crowd.user("alice.p").unwrap()["display-name"], "Alice P.");
    assert_eq!(crowd.state().passwords["alice.p"], "N3w!pass");
    assert_eq!(
        crowd.state().attributes["alice.p"]["costCenter"],
        vec!["42".to_string()]
    );
    assert_eq!(crowd.groups_of("alice.p"), vec!["wonderland".to_string()]);
    // Retried after a lost answer: the old name is gone, the new one there: done.
    assert_eq!(
        c.update_user("alice", &renamed, None, None).await,
        Ok(Some("alice.p".into()))
    );
    // Renaming onto a taken name: refused with Crowd's reason.
    let mut clash = renamed.clone();
    clash["userName"] = json!("bob");
    match c.update_user("alice.p", &clash, None, None).await {
        Err(ConnectorError::Refused {
            status: Some(400),
            reason,
        }) => assert!(reason.starts_with("INVALID_USER: "), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A password Crowd refuses.
    match c.update_user("alice.p", &renamed, None, Some("")).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.starts_with("INVALID_CREDENTIAL"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // Deactivate: only `active` changes.
    c.disable_user("alice.p").await.unwrap();
    let got = crowd.user("alice.p").unwrap();
    assert_eq!(got["active"], false);
    assert_eq!(got["email"], "alice@example.test");
    assert_eq!(got["last-name"], "Pleasance");

    // Unknown users: NotFound (the engine recreates / forgets the link).
    assert_eq!(
        c.update_user("ghost", &alice("ghost"), None, None).await,
        Err(ConnectorError::NotFound)
    );
    assert_eq!(c.disable_user("ghost").await, Err(ConnectorError::NotFound));

    // Delete, twice.
    c.delete_user("alice.p").await.unwrap();
    assert!(crowd.user("alice.p").is_none());
    assert!(crowd.groups_of("alice.p").is_empty());
    c.delete_user("alice.p")
        .await
        .expect("already gone is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_memberships() {
    let crowd = FakeCrowd::start().await;
    let c = connector(&crowd, &crowd.password);
    for n in ["u1", "u2", "u3"] {
        c.create_user(&alice(n), None).await.unwrap();
    }
    let g = json!({"displayName": "Engineering", "members": [{"value": "x"}]});
    let gid = c.create_group(&g).await.unwrap();
    assert_eq!(gid, "Engineering");
    assert_eq!(
        crowd.state().groups["engineering"],
        json!({"name": "Engineering", "type": "GROUP", "description": null, "active": true})
    );
    assert!(matches!(
        c.create_group(&g).await,
        Err(ConnectorError::Conflict(_))
    ));
    assert_eq!(
        c.find_group(&json!({"displayName": "engineering"}))
            .await
            .unwrap(),
        Some("Engineering".into())
    );
    assert_eq!(
        c.find_group(&json!({"displayName": "Sales"}))
            .await
            .unwrap(),
        None
    );

    let all: Vec<String> = vec!["u1".into(), "u2".into(), "u3".into()];
    c.add_members(&gid, &all).await.unwrap();
    // Again: MEMBERSHIP_ALREADY_EXISTS (409) is success.
    c.add_members(&gid, &all[..1]).await.unwrap();
    assert_eq!(crowd.state().memberships.len(), 3);
    assert!(
        crowd
            .state()
            .log
            .iter()
            .filter(|l| l.starts_with("POST /user/group/direct?username=u1"))
            .count()
            == 2
    );
    c.remove_members(&gid, &all[..2]).await.unwrap();
    c.remove_members(&gid, &all[..2])
        .await
        .expect("not a member any more is fine");
    assert_eq!(crowd.groups_of("u3"), vec!["engineering".to_string()]);
    assert!(crowd.groups_of("u1").is_empty());

    // A member Crowd does not know, a group Crowd does not know.
    match c.add_members(&gid, &["ghost".into()]).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("ghost"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match c.add_members("Nope", &["u1".into()]).await {
        Err(ConnectorError::Refused {
            status: Some(400),
            reason,
        }) => assert!(reason.starts_with("GROUP_NOT_FOUND: "), "{reason}"),
        other => panic!("{other:?}"),
    }

    // No rename through the REST API: refused, saying what to do.
    match c
        .update_group(&gid, &json!({"displayName": "R&D"}), Some(&g))
        .await
    {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("group_mapping"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    c.update_group(&gid, &g, Some(&g)).await.unwrap();

    c.delete_group(&gid).await.unwrap();
    assert!(crowd.state().groups.is_empty());
    assert!(crowd.state().memberships.is_empty());
    c.delete_group(&gid).await.expect("already gone is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_mapping() {
    let crowd = FakeCrowd::start().await;
    let c = connector(&crowd, &crowd.password);
    c.create_user(&alice("eve"), None).await.unwrap();

    // Application without write permission: refused with Crowd's reason and message.
    crowd.state().read_only = true;
    match c.disable_user("eve").await {
        Err(ConnectorError::Refused {
            status: Some(403),
            reason,
        }) => assert!(
            reason.starts_with("APPLICATION_PERMISSION_DENIED: Application 'provisync'"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    crowd.state().read_only = false;

    // 503 with Retry-After, 500: retryable; then the same call succeeds.
    crowd.fail(CrowdFault {
        status: 503,
        headers: vec![("Retry-After".into(), "7".into())],
        body: Value::Null,
    });
    assert_eq!(
        c.delete_user("eve").await,
        Err(ConnectorError::Retryable {
            status: Some(503),
            retry_after: Some(Duration::from_secs(7)),
            detail: "HTTP 503 Service Unavailable".into()
        })
    );
    crowd.fail(CrowdFault::error(500, "OPERATION_FAILED", "directory down"));
    match c.delete_user("eve").await {
        Err(ConnectorError::Retryable { detail, .. }) => {
            assert_eq!(detail, "OPERATION_FAILED: directory down")
        }
        other => panic!("{other:?}"),
    }
    // A message that echoes our password is scrubbed.
    crowd.fail(CrowdFault::error(
        400,
        "INVALID_USER",
        &format!("bad request from {}", crowd.password),
    ));
    match c.update_user("eve", &alice("eve"), None, None).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(!reason.contains(&crowd.password), "{reason}");
            assert!(
                reason.starts_with("INVALID_USER: bad request from ***"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    c.delete_user("eve").await.unwrap();
    assert!(crowd.user("eve").is_none());

    // A base URL without the context path: the test says so.
    let mut t = CrowdTarget {
        base_url: format!("http://{}", crowd.addr),
        application: crowd.application.clone(),
        password: crowd.password.clone(),
    };
    match CrowdConnector::new(&t).unwrap().test().await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("context path"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    t.base_url = "http://crowd.example.com/crowd".into();
    assert!(
        CrowdConnector::new(&t).is_err(),
        "https required off loopback"
    );
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Through the hub: target defined with `PUT /admin/targets/{id}`, tested, users
/// provisioned, renamed (the link follows the new name), grouped, deactivated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_through_the_hub() {
    let crowd = FakeCrowd::start().await;
    let Some(hub) = Hub::start(Backend::Embedded).await else {
        return;
    };
    let _delivery = hub.run_delivery();
    let def = json!({"kind": "crowd", "base_url": crowd.base, "application": crowd.application,
                     "password": crowd.password,
                     "mapping": [{"target": "attributes.department", "value": "Wonderland"}]});
    let r = hub.admin(Method::PUT, "/targets/crowd", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    assert!(!r.text.contains(&crowd.password), "{}", r.text);
    let r = hub.admin(Method::GET, "/targets/crowd", None).await;
    assert_eq!(r.body["password"], "***", "{}", r.text);
    let r = hub.admin(Method::POST, "/targets/crowd/test", None).await;
    assert_eq!(r.body["ok"], true, "{}", r.text);

    let r = hub
        .post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "grace", "name": {"givenName": "Grace", "familyName": "Hopper"}, "emails": [{"value": "grace@example.test", "primary": true}], "active": true, "password": "Cobol-1959!"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hub_id = r.id();
    // The user, then its attributes (a second call): wait for both.
    eventually("grace and her attributes on Crowd", || async {
        crowd.user("grace").is_some() && crowd.state().attributes.contains_key("grace")
    })
    .await;
    assert_eq!(crowd.state().passwords["grace"], "Cobol-1959!");
    assert_eq!(
        crowd.state().attributes["grace"]["department"],
        vec!["Wonderland".to_string()]
    );

    let r = hub
        .post("/Groups", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "navy", "members": [{"value": hub_id}]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    eventually("membership on Crowd", || async {
        crowd.groups_of("grace") == ["navy"]
    })
    .await;

    // Rename: one account, renamed; the link now names it.
    let r = hub
        .patch(&format!("/Users/{hub_id}"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "userName", "value": "grace.hopper"}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("the rename on Crowd", || async {
        crowd.user("grace.hopper").is_some()
    })
    .await;
    assert!(crowd.user("grace").is_none());
    assert_eq!(crowd.state().users.len(), 1);
    assert_eq!(crowd.groups_of("grace.hopper"), ["navy"]);
    // The link is written once the call returned: wait for it too.
    eventually("the link names the new user name", || async {
        hub.deliverer
            .links()
            .get("crowd", ResourceKind::User, &hub_id)
            .await
            .unwrap()
            .is_some_and(|l| l.target_id == "grace.hopper")
    })
    .await;

    // A later change goes to the renamed account.
    let r = hub
        .patch(&format!("/Users/{hub_id}"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("deactivated on Crowd", || async {
        crowd
            .user("grace.hopper")
            .is_some_and(|u| u["active"] == false)
    })
    .await;

    // Deleted in the hub: deleted on Crowd (delete is among the default operations).
    let r = hub.delete(&format!("/Users/{hub_id}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    eventually("deleted on Crowd", || async {
        crowd.state().users.is_empty()
    })
    .await;
    let audit = hub.admin(Method::GET, "/audit?target=crowd", None).await;
    assert!(!audit.text.contains(&crowd.password));
    assert!(!audit.text.contains("Cobol-1959!"));
}

/// The documented bodies: what Crowd sends is understood, what the docs send is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_bodies() {
    use provisync_core::connector::http::vendor_error;
    let fx = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    assert_eq!(
        vendor_error(&fx(include_str!(
            "fixtures/crowd/error_user_not_found.json"
        ))),
        (
            Some("USER_NOT_FOUND".into()),
            Some("User <my_username> does not exist".into())
        )
    );
    assert_eq!(
        vendor_error(&fx(include_str!(
            "fixtures/crowd/error_membership_exists.json"
        )))
        .0,
        Some("MEMBERSHIP_ALREADY_EXISTS".into())
    );
    // The documented create body, sent as is, makes a user the connector then finds,
    // renames (documented rename body's target name) and groups.
    let crowd = FakeCrowd::start().await;
    let c = connector(&crowd, &crowd.password);
    let r = reqwest::Client::new()
        .post(format!("{}/rest/usermanagement/1/user", crowd.base))
        .basic_auth(&crowd.application, Some(&crowd.password))
        .json(&fx(include_str!("fixtures/crowd/create_user.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut u = json!({"userName": "my_username", "name": {"givenName": "My", "familyName": "Username"},
                       "displayName": "My Username", "emails": [{"value": "user@example.test"}]});
    assert_eq!(c.find_user(&u).await.unwrap(), Some("my_username".into()));
    let new_name = fx(include_str!("fixtures/crowd/rename_user.json"))["new-name"].clone();
    u["userName"] = new_name.clone();
    assert_eq!(
        c.update_user("my_username", &u, None, None).await.unwrap(),
        new_name.as_str().map(str::to_string)
    );
    let g = fx(include_str!("fixtures/crowd/group.json"));
    let gid = c
        .create_group(&json!({"displayName": g["name"]}))
        .await
        .unwrap();
    c.add_members(&gid, &["new_username".into()]).await.unwrap();
    assert_eq!(crowd.groups_of("new_username"), ["groupname"]);
    let attrs = fx(include_str!("fixtures/crowd/user_attributes.json"));
    u["attributes"] = json!({attrs["attributes"][0]["name"].as_str().unwrap(): "0"});
    c.update_user("new_username", &u, None, None).await.unwrap();
    assert_eq!(
        crowd.state().attributes["new_username"]["invalidPasswordAttempts"],
        vec!["0".to_string()]
    );
}

/// Crowd's requests settle (deliveries done) and nothing else arrives for a moment.
async fn quiet(crowd: &FakeCrowd) {
    settle(|| crowd.state().log.len()).await;
}

/// The run's counts as `[checked, created, updated, unchanged, orphaned, deactivated, deleted]`.
async fn reconcile(hub: &Hub, target: &str) -> [u64; 7] {
    counts_of(
        &hub.reconcile(target).await,
        [
            "checked",
            "created",
            "updated",
            "unchanged",
            "orphaned",
            "deactivated",
            "deleted",
        ],
    )
}

/// Reconcile through the hub: what the hub delivered is no drift (zero writes); an edit,
/// a deletion and a stranger made behind the hub's back are repaired by one run (the
/// stranger deactivated, as the target's orphan policy says), and the next run writes
/// nothing. Listing is paged (`start-index`), which the Crowd log shows.
async fn reconcile_repairs_only_the_drift(backend: Backend) {
    let crowd = FakeCrowd::start().await;
    let Some(hub) = Hub::start(backend).await else {
        return;
    };
    let _delivery = hub.run_delivery();
    let def = json!({"kind": "crowd", "base_url": crowd.base, "application": crowd.application,
                     "password": crowd.password, "orphans": "deactivate"});
    let r = hub.admin(Method::PUT, "/targets/crowd", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    for (n, g) in [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")] {
        let r = hub
            .post(
                "/Users",
                &json!({"schemas": [USER_SCHEMA], "userName": n, "externalId": format!("ext-{n}"),
                "name": {"givenName": g, "familyName": "Example"}, "title": "Not kept by Crowd",
                "emails": [{"value": format!("{n}@example.test"), "type": "work", "primary": true}],
                "active": true}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    eventually("three users on Crowd", || async {
        crowd.state().users.len() == 3
    })
    .await;
    quiet(&crowd).await;

    // Just delivered: in sync, nothing written.
    crowd.state().log.clear();
    assert_eq!(reconcile(&hub, "crowd").await, [3, 0, 0, 3, 0, 0, 0]);
    quiet(&crowd).await;
    assert!(crowd.writes().is_empty(), "{:?}", crowd.writes());
    assert!(
        crowd
            .state()
            .log
            .iter()
            .any(|l| l.starts_with("GET /search?entity-type=user&expand=user&start-index=0")),
        "{:?}",
        crowd.state().log
    );

    // Behind the hub's back: alice renamed, bob deleted, a stranger added.
    crowd
        .state()
        .users
        .get_mut("alice")
        .expect("alice")
        .as_object_mut()
        .expect("entity")
        .insert("first-name".into(), json!("Mallory"));
    crowd.state().users.remove("bob");
    crowd.insert_user("stranger", "Some", "One", "stranger@example.test");
    crowd.state().log.clear();
    assert_eq!(reconcile(&hub, "crowd").await, [3, 1, 1, 1, 1, 1, 0]);
    eventually("alice repaired and bob back", || async {
        crowd
            .user("alice")
            .is_some_and(|u| u["first-name"] == "Alice")
            && crowd.user("bob").is_some()
    })
    .await;
    quiet(&crowd).await;
    let mut writes = crowd.writes();
    writes.sort();
    assert_eq!(
        writes,
        [
            "POST /user",
            "PUT /user?username=alice",
            "PUT /user?username=stranger"
        ],
        "exactly the drift"
    );
    assert_eq!(crowd.user("stranger").unwrap()["active"], false);
    assert_eq!(crowd.user("bob").unwrap()["email"], "bob@example.test");

    // Repaired: the next run writes nothing (the stranger is inactive already).
    crowd.state().log.clear();
    assert_eq!(reconcile(&hub, "crowd").await, [4, 0, 0, 3, 1, 0, 0]);
    quiet(&crowd).await;
    assert!(crowd.writes().is_empty(), "{:?}", crowd.writes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_repairs_only_the_drift_embedded() {
    reconcile_repairs_only_the_drift(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_repairs_only_the_drift_dynamodb() {
    reconcile_repairs_only_the_drift(Backend::DynamoDb).await;
}

/// Listing at the connector: pages of `PAGE_SIZE` (a full page is followed by another),
/// users as SCIM, groups with their direct members (paged too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_users_and_groups() {
    use provisync_connectors::crowd::PAGE_SIZE;
    let crowd = FakeCrowd::start().await;
    let c = connector(&crowd, &crowd.password);
    let total = PAGE_SIZE + 5;
    for i in 0..total {
        crowd.insert_user(&format!("u{i:04}"), "U", &format!("{i}"), "");
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = c.list_users(cursor.as_deref()).await.unwrap();
        pages += 1;
        seen.extend(page.resources);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), total);
    assert_eq!(
        seen[0],
        json!({"id": "u0000", "userName": "u0000", "name": {"givenName": "U", "familyName": "0"},
               "displayName": "U 0", "active": true})
    );
    let gid = c
        .create_group(&json!({"displayName": "Everyone"}))
        .await
        .unwrap();
    c.create_group(&json!({"displayName": "Nobody"}))
        .await
        .unwrap();
    let all: Vec<String> = (0..total).map(|i| format!("u{i:04}")).collect();
    c.add_members(&gid, &all).await.unwrap();
    let groups = c.list_groups(None).await.unwrap();
    assert_eq!(groups.next, None);
    assert_eq!(groups.resources.len(), 2);
    let everyone = &groups.resources[0];
    assert_eq!(everyone["id"], "Everyone");
    assert_eq!(everyone["displayName"], "Everyone");
    let members = everyone["members"].as_array().unwrap();
    assert_eq!(members.len(), total, "both pages of members");
    assert_eq!(
        members[PAGE_SIZE],
        json!({"value": format!("u{PAGE_SIZE:04}")})
    );
    assert_eq!(groups.resources[1]["members"], json!([]));
    // What the hub would send for Everyone is what the listing shows (members aside).
    assert_eq!(
        c.kept(
            ResourceKind::Group,
            &json!({"displayName": "Everyone", "externalId": "g1"})
        ),
        json!({"displayName": "Everyone"})
    );
    // A position that is not Crowd's: refused, not guessed.
    assert!(matches!(
        c.list_users(Some("next-please")).await,
        Err(ConnectorError::Refused { .. })
    ));
}
