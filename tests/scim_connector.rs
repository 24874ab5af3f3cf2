//! The SCIM client connector against real peers: the reference server `scim2-server`
//! (full lifecycle), and the scriptable `FaultyTarget` (error mapping, redirects, request
//! shapes).

use std::time::{Duration, Instant};

use provisync_connectors::http::{HttpClient, HttpPolicy, check_target_url};
use provisync_connectors::scim::ScimConnector;
use provisync_core::connector::{Connector, ConnectorError};
use provisync_core::target::{HttpAuth, ScimTarget, UpdateStyle};
use provisync_tests::peers::{Fault, FaultyTarget, Route, ScimPeer};
use provisync_tests::{ENTERPRISE, GROUP_SCHEMA, PATCH_OP, USER_SCHEMA};
use serde_json::{Value, json};

fn target(base: &str, token: &str, style: UpdateStyle) -> ScimTarget {
    ScimTarget {
        base_url: base.to_string(),
        auth: HttpAuth::Bearer(token.to_string()),
        update_style: style,
        matching_attribute: "userName".into(),
    }
}

fn connector(base: &str, token: &str, style: UpdateStyle) -> ScimConnector {
    // Every peer of these tests is on loopback.
    provisync_tests::allow_loopback_peers();
    ScimConnector::new(&target(base, token, style)).expect("connector")
}

/// A connector with short timeouts, for the fault tests.
fn fast_connector(base: &str, token: &str) -> ScimConnector {
    provisync_tests::allow_loopback_peers();
    let http = HttpClient::new(HttpPolicy {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_millis(500),
        max_redirects: 3,
        urls: None,
    })
    .expect("client");
    ScimConnector::with_client(&target(base, token, UpdateStyle::Patch), http).expect("connector")
}

fn user(name: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": name,
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "displayName": "Alice Liddell",
        "nickName": "al",
        "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}],
        "active": true,
        ENTERPRISE: {"department": "Wonderland"},
        // Never sent: server-assigned or read-only.
        "id": "hub-id", "meta": {"resourceType": "User"}, "groups": [{"value": "g"}]
    })
}

// ---------------------------------------------------------------------------------------
// Against scim2-server
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_lifecycle_patch_style() {
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let c = connector(&peer.base, &peer.token, UpdateStyle::Patch);

    let about = c.test().await.expect("test");
    assert!(about.contains("credentials accepted"), "{about}");
    assert!(about.contains("patch yes"), "{about}");
    let wrong = connector(&peer.base, "wrong-token", UpdateStyle::Patch);
    match wrong.test().await {
        Err(ConnectorError::Refused {
            status: Some(401),
            reason,
        }) => assert!(!reason.contains("wrong-token"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // Create, with a password.
    let alice = user("alice");
    let id = c
        .create_user(&alice, Some("S3cret!passw0rd"))
        .await
        .expect("create");
    let (status, got) = peer.get(&format!("/Users/{id}")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["userName"], "alice");
    assert_eq!(got["name"]["familyName"], "Liddell");
    assert_eq!(got[ENTERPRISE]["department"], "Wonderland");
    assert!(got.get("password").is_none());

    // A second create of the same userName: Conflict (the engine then matches and links).
    match c.create_user(&user("ALICE"), None).await {
        Err(ConnectorError::Conflict(reason)) => assert!(reason.contains("uniqueness"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // Matching: case-insensitive userName; an account created directly on the peer.
    assert_eq!(
        c.find_user(&json!({"userName": "ALICE"})).await.unwrap(),
        Some(id.clone())
    );
    let (status, carol) = peer
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "Carol.Existing"}),
        )
        .await;
    assert_eq!(status, 201, "{carol}");
    assert_eq!(
        c.find_user(&json!({"userName": "carol.existing"}))
            .await
            .unwrap()
            .as_deref(),
        carol["id"].as_str()
    );
    assert_eq!(
        c.find_user(&json!({"userName": "nobody"})).await.unwrap(),
        None
    );
    // Quotes and backslashes in the value are escaped, not a broken filter.
    let odd = r#"o"brien\x"#;
    let (status, odd_user) = peer
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": odd}),
        )
        .await;
    assert_eq!(status, 201, "{odd_user}");
    assert_eq!(
        c.find_user(&json!({"userName": odd}))
            .await
            .unwrap()
            .as_deref(),
        odd_user["id"].as_str()
    );
    // Nothing to match on: a refusal, not a request.
    assert!(matches!(
        c.find_user(&json!({"displayName": "x"})).await,
        Err(ConnectorError::Refused { .. })
    ));

    // Update by PATCH: what changed is replaced, what disappeared is removed.
    let mut changed = alice.clone();
    changed["displayName"] = json!("Alice L.");
    changed["name"]["familyName"] = json!("Pleasance");
    changed.as_object_mut().unwrap().remove("nickName");
    c.update_user(&id, &changed, Some(&alice), None)
        .await
        .expect("patch");
    let (_, got) = peer.get(&format!("/Users/{id}")).await;
    assert_eq!(got["displayName"], "Alice L.");
    assert_eq!(got["name"]["familyName"], "Pleasance");
    assert_eq!(got["name"]["givenName"], "Alice");
    assert!(got.get("nickName").is_none(), "{got}");
    // Without a previous payload: everything replaced; with a password.
    let mut again = changed.clone();
    again["title"] = json!("Queen");
    c.update_user(&id, &again, None, Some("N3w!passw0rd"))
        .await
        .expect("patch all");
    let (_, got) = peer.get(&format!("/Users/{id}")).await;
    assert_eq!(got["title"], "Queen");

    // Disable.
    c.disable_user(&id).await.expect("disable");
    let (_, got) = peer.get(&format!("/Users/{id}")).await;
    assert_eq!(got["active"], false, "{got}");
    assert_eq!(got["userName"], "alice");

    // Delete, twice.
    c.delete_user(&id).await.expect("delete");
    assert_eq!(peer.get(&format!("/Users/{id}")).await.0, 404);
    c.delete_user(&id).await.expect("delete again is fine");
    assert_eq!(
        c.update_user(&id, &changed, Some(&alice), None).await,
        Err(ConnectorError::NotFound)
    );
    assert_eq!(c.disable_user(&id).await, Err(ConnectorError::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_lifecycle_put_style() {
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let c = connector(&peer.base, &peer.token, UpdateStyle::Put);
    let bob = user("bob");
    let id = c.create_user(&bob, None).await.expect("create");

    let mut changed = bob.clone();
    changed["displayName"] = json!("Bob B.");
    changed.as_object_mut().unwrap().remove("nickName");
    c.update_user(&id, &changed, Some(&bob), Some("An0ther!pass"))
        .await
        .expect("put");
    let (_, got) = peer.get(&format!("/Users/{id}")).await;
    assert_eq!(got["displayName"], "Bob B.");
    assert!(got.get("nickName").is_none(), "{got}");
    assert_eq!(got["active"], true);

    // Disable by GET + PUT: everything else kept.
    c.disable_user(&id).await.expect("disable");
    let (_, got) = peer.get(&format!("/Users/{id}")).await;
    assert_eq!(got["active"], false, "{got}");
    assert_eq!(got["displayName"], "Bob B.");
    assert_eq!(got["emails"][0]["value"], "bob@example.com");

    c.delete_user(&id).await.expect("delete");
    assert_eq!(
        c.update_user(&id, &changed, None, None).await,
        Err(ConnectorError::NotFound)
    );
}

async fn member_values(peer: &ScimPeer, gid: &str) -> Vec<String> {
    let (status, g) = peer.get(&format!("/Groups/{gid}")).await;
    assert_eq!(status, 200, "{g}");
    let mut v: Vec<String> = g["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn groups_lifecycle(style: UpdateStyle) {
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let c = connector(&peer.base, &peer.token, style);
    let mut ids = Vec::new();
    for n in ["g-u1", "g-u2", "g-u3"] {
        ids.push(c.create_user(&user(n), None).await.expect("user"));
    }
    let eng = json!({"schemas": [GROUP_SCHEMA], "displayName": "Engineering",
                     "members": [{"value": "hub-member-id"}], "id": "hub-id"});
    let gid = c.create_group(&eng).await.expect("create group");
    assert!(member_values(&peer, &gid).await.is_empty());
    assert_eq!(
        c.find_group(&json!({"displayName": "engineering"}))
            .await
            .unwrap(),
        Some(gid.clone())
    );
    assert_eq!(
        c.find_group(&json!({"displayName": "Sales"}))
            .await
            .unwrap(),
        None
    );

    c.add_members(&gid, &ids).await.expect("add");
    let mut want = ids.clone();
    want.sort();
    assert_eq!(member_values(&peer, &gid).await, want);

    // Rename: members stay.
    let renamed = json!({"schemas": [GROUP_SCHEMA], "displayName": "R&D"});
    c.update_group(&gid, &renamed, Some(&eng))
        .await
        .expect("rename");
    let (_, g) = peer.get(&format!("/Groups/{gid}")).await;
    assert_eq!(g["displayName"], "R&D");
    assert_eq!(member_values(&peer, &gid).await, want);

    c.remove_members(&gid, &[ids[0].clone(), ids[2].clone()])
        .await
        .expect("remove");
    assert_eq!(member_values(&peer, &gid).await, vec![ids[1].clone()]);
    c.add_members(&gid, &[]).await.expect("nothing to add");

    c.delete_group(&gid).await.expect("delete");
    assert_eq!(peer.get(&format!("/Groups/{gid}")).await.0, 404);
    c.delete_group(&gid).await.expect("delete again is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_lifecycle_patch_style() {
    groups_lifecycle(UpdateStyle::Patch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_lifecycle_put_style() {
    groups_lifecycle(UpdateStyle::Put).await;
}

// ---------------------------------------------------------------------------------------
// Against FaultyTarget
// ---------------------------------------------------------------------------------------

fn status_of(e: &ConnectorError) -> Option<u16> {
    match e {
        ConnectorError::Retryable { status, .. } | ConnectorError::Refused { status, .. } => {
            *status
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_mapping() {
    let t = FaultyTarget::start().await;
    let c = fast_connector(&t.base, &t.token);
    let u = json!({"schemas": [USER_SCHEMA], "userName": "eve"});
    let create = Route::new("POST", "/Users");

    // 500 -> Retryable, then the same call succeeds: one user on the target.
    t.fail(create.clone(), Fault::Status(500, Value::Null), 1);
    let e = c.create_user(&u, None).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert_eq!(status_of(&e), Some(500));
    for s in [502, 503, 504] {
        t.fail(create.clone(), Fault::Status(s, Value::Null), 1);
        let e = c.create_user(&u, None).await.unwrap_err();
        assert!(e.is_retryable(), "{s}: {e:?}");
    }
    let id = c.create_user(&u, None).await.expect("create after 5xx");
    assert_eq!(t.count("POST", "/Users"), 5);
    assert_eq!(t.users().len(), 1);

    // 429 + Retry-After (seconds, and an HTTP-date).
    t.fail(Route::any(), Fault::RateLimited("1".into()), 1);
    assert_eq!(
        c.disable_user(&id).await,
        Err(ConnectorError::Retryable {
            status: Some(429),
            retry_after: Some(Duration::from_secs(1)),
            detail: "too many requests".into()
        })
    );
    let later = (chrono::Utc::now() + chrono::Duration::seconds(120))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    t.fail(Route::any(), Fault::RateLimited(later), 1);
    match c.disable_user(&id).await {
        Err(ConnectorError::Retryable {
            retry_after: Some(d),
            ..
        }) => assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        ),
        other => panic!("{other:?}"),
    }

    // A hang past the client timeout -> Retryable, within the timeout.
    t.fail(Route::any(), Fault::Hang(Duration::from_secs(5)), 1);
    let started = Instant::now();
    let e = c.disable_user(&id).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert_eq!(status_of(&e), None);
    assert!(e.to_string().contains("timed out"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A dropped connection -> Retryable.
    t.fail(Route::any(), Fault::Drop, 1);
    let e = c.disable_user(&id).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert_eq!(status_of(&e), None);
    assert!(e.to_string().contains("connection closed"), "{e}");

    // 400 with a SCIM error -> Refused with the target's reason; our token never echoed.
    t.fail(
        Route::any(),
        Fault::scim_error(
            400,
            Some("invalidValue"),
            &format!("bad value (your token {} is fine)", t.token),
        ),
        1,
    );
    match c.update_user(&id, &u, None, None).await {
        Err(ConnectorError::Refused {
            status: Some(400),
            reason,
        }) => {
            assert!(reason.starts_with("invalidValue: bad value"), "{reason}");
            assert!(!reason.contains(&t.token), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // 401, 403 -> Refused; 410 -> Gone; 404 -> NotFound.
    for s in [401, 403] {
        t.fail(Route::any(), Fault::scim_error(s, None, "no"), 1);
        let e = c.disable_user(&id).await.unwrap_err();
        assert!(
            matches!(e, ConnectorError::Refused { status: Some(x), .. } if x == s),
            "{e:?}"
        );
    }
    t.fail(
        Route::any(),
        Fault::scim_error(410, None, "tenant deleted"),
        1,
    );
    assert_eq!(
        c.disable_user(&id).await,
        Err(ConnectorError::Gone("tenant deleted".into()))
    );
    assert_eq!(
        c.disable_user("no-such-id").await,
        Err(ConnectorError::NotFound)
    );
    let wrong = fast_connector(&t.base, "not-the-token");
    assert!(matches!(
        wrong.disable_user(&id).await,
        Err(ConnectorError::Refused {
            status: Some(401),
            ..
        })
    ));

    // After all that: the user is still there, once, and now disabled.
    c.disable_user(&id).await.expect("disable");
    assert_eq!(t.users().len(), 1);
    assert_eq!(t.user(&id).unwrap()["active"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_retryable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = fast_connector(&format!("http://127.0.0.1:{port}/scim/v2"), "t");
    let e = c.test().await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_only_within_the_origin() {
    let t = FaultyTarget::start().await;
    let elsewhere = FaultyTarget::start_on("127.0.0.2").await;
    let c = fast_connector(&t.base, &t.token);
    let u = json!({"schemas": [USER_SCHEMA], "userName": "mallory"});

    // To another host: not followed, the credentials stay home.
    t.fail(
        Route::new("POST", "/Users"),
        Fault::Redirect(307, format!("{}/Users", elsewhere.base)),
        1,
    );
    match c.create_user(&u, None).await {
        Err(ConnectorError::Refused {
            status: Some(307),
            reason,
        }) => assert!(reason.contains("127.0.0.2"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(elsewhere.requests().is_empty());

    // Within the same origin: followed (307 keeps the method and body).
    t.fail(
        Route::new("POST", "/Users"),
        Fault::Redirect(307, format!("{}/Users?moved=1", t.base)),
        1,
    );
    let id = c.create_user(&u, None).await.expect("followed");
    assert_eq!(t.user(&id).unwrap()["userName"], "mallory");
    assert!(elsewhere.requests().is_empty());
}

/// The method and path of each request `t` received, in order.
fn requested(t: &FaultyTarget) -> Vec<String> {
    t.requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The target's configuration (`GET /ServiceProviderConfig`: does it page by cursor?) is
/// read once per connector, as a request of its own when the listing is prepared (the
/// pace gives it a slot), by the first page otherwise; a failed read is the preparation's
/// error (for the pace), and the listings page by index without reading it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_once_per_connector() {
    use provisync_scim::ResourceKind::{Group, User};
    let t = FaultyTarget::start().await;
    let c = fast_connector(&t.base, &t.token);
    assert!(!c.listing_prepared(User));
    c.prepare_listing(User).await.expect("read");
    assert!(c.listing_prepared(User) && c.listing_prepared(Group));
    c.list_users(None).await.expect("listed");
    c.prepare_listing(Group).await.expect("known");
    c.list_groups(None).await.expect("listed");
    assert_eq!(
        requested(&t),
        ["GET /ServiceProviderConfig", "GET /Users", "GET /Groups"]
    );

    // Not prepared: the first page reads it, once.
    t.clear_requests();
    let c = fast_connector(&t.base, &t.token);
    c.list_users(None).await.expect("listed");
    c.list_groups(None).await.expect("listed");
    assert_eq!(
        requested(&t),
        ["GET /ServiceProviderConfig", "GET /Users", "GET /Groups"]
    );

    // Refused: the 429 for the pace, then index paging and no second read.
    t.clear_requests();
    t.fail(
        Route::new("GET", "/ServiceProviderConfig"),
        Fault::RateLimited("1".into()),
        1,
    );
    let c = fast_connector(&t.base, &t.token);
    let e = c.prepare_listing(User).await.expect_err("refused");
    assert_eq!(status_of(&e), Some(429), "{e:?}");
    assert!(c.listing_prepared(User));
    c.prepare_listing(Group).await.expect("not read again");
    c.list_users(None).await.expect("listed");
    c.list_groups(None).await.expect("listed");
    assert_eq!(
        requested(&t),
        ["GET /ServiceProviderConfig", "GET /Users", "GET /Groups"]
    );
    let first_page = t.requests()[1].query.clone().unwrap_or_default();
    assert!(first_page.contains("startIndex=1"), "{first_page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_shapes() {
    let t = FaultyTarget::start().await;
    let c = fast_connector(&t.base, &t.token);
    let alice = user("alice");
    let id = c.create_user(&alice, Some("pw-1234567")).await.unwrap();

    // The create body: schemas kept, password included, id/meta/groups stripped.
    let reqs = t.requests();
    let post = &reqs[0];
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/Users")
    );
    assert_eq!(post.body["schemas"], json!([USER_SCHEMA, ENTERPRISE]));
    assert_eq!(post.body["password"], "pw-1234567");
    for k in ["id", "meta", "groups"] {
        assert!(post.body.get(k).is_none(), "{k} in {}", post.body);
    }

    // A minimal PATCH.
    t.clear_requests();
    let mut changed = alice.clone();
    changed["displayName"] = json!("A.");
    changed[ENTERPRISE]["department"] = json!("Looking Glass");
    c.update_user(&id, &changed, Some(&alice), None)
        .await
        .unwrap();
    let reqs = t.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "PATCH");
    assert_eq!(reqs[0].path, format!("/Users/{id}"));
    assert_eq!(
        reqs[0].body,
        json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "displayName", "value": "A."},
            {"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "Looking Glass"}
        ]})
    );
    // Nothing changed: no request at all.
    t.clear_requests();
    c.update_user(&id, &changed, Some(&changed), None)
        .await
        .unwrap();
    assert!(t.requests().is_empty());

    // The filter: JSON-escaped value.
    c.find_user(&json!({"userName": "a\"b"})).await.unwrap();
    let q = t.requests()[0].query.clone().unwrap();
    let filter: String = q
        .split('&')
        .find_map(|kv| kv.strip_prefix("filter="))
        .map(url_decode)
        .unwrap();
    assert_eq!(filter, r#"userName eq "a\"b""#);

    // Members in batches of 100; removal by value filter.
    let gid = c
        .create_group(&json!({"displayName": "big", "members": [{"value": "x"}]}))
        .await
        .unwrap();
    assert!(t.group(&gid).unwrap().get("members").is_none());
    let members: Vec<String> = (0..250).map(|i| format!("m{i}")).collect();
    t.clear_requests();
    c.add_members(&gid, &members).await.unwrap();
    let patches = t.requests();
    assert_eq!(patches.len(), 3);
    let sizes: Vec<usize> = patches
        .iter()
        .map(|r| r.body["Operations"][0]["value"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    assert_eq!(
        t.group(&gid).unwrap()["members"].as_array().unwrap().len(),
        250
    );
    t.clear_requests();
    c.remove_members(&gid, &members[..150]).await.unwrap();
    let patches = t.requests();
    assert_eq!(patches.len(), 2);
    assert_eq!(
        patches[0].body["Operations"][0],
        json!({"op": "remove", "path": "members[value eq \"m0\"]"})
    );
    assert_eq!(
        t.group(&gid).unwrap()["members"].as_array().unwrap().len(),
        100
    );
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn target_urls() {
    provisync_tests::allow_loopback_peers();
    assert!(check_target_url("https://scim.example.com/scim/v2").is_ok());
    assert!(check_target_url("http://127.0.0.1:8080/scim/v2").is_ok());
    assert!(check_target_url("http://localhost:8080/scim/v2").is_ok());
    assert!(check_target_url("http://[::1]:8080/scim/v2").is_ok());
    let e = check_target_url("http://scim.example.com/scim/v2").unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
    assert!(check_target_url("http://192.168.1.10/scim/v2").is_err());
    assert!(check_target_url("https://169.254.169.254/").is_err());
    // And the connector refuses to be built on one.
    assert!(
        ScimConnector::new(&target(
            "http://scim.example.com/v2",
            "t",
            UpdateStyle::Patch
        ))
        .is_err()
    );
}
