//! The Cognito connector against moto's `cognito-idp` (the moto server `scripts/test-env.sh`
//! starts, `PROVISYNC_TEST_MOTO`): a fresh user pool per test; the whole lifecycle, groups,
//! error mapping, and delivery end to end through the hub on every store, checked with the
//! SDK's own `AdminGetUser` / `ListUsersInGroup`.

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::types::{
    PasswordPolicyType, UserPoolPolicyType, UserStatusType,
};
use provisync_connectors::cognito::CognitoConnector;
use provisync_core::connector::{Connector, ConnectorError};
use provisync_core::sync::pace::CallOutcome;
use provisync_core::target::CognitoTarget;
use provisync_scim::ResourceKind;
use provisync_tests::proxy::RecordingProxy;
use provisync_tests::{Hub, PATCH_OP, USER_SCHEMA, counts_of, on_every_backend, settle};
use reqwest::Method;
use serde_json::{Value, json};

/// moto's URL, or `None` (skipped) when no emulator runs (a failure under
/// `PROVISYNC_REQUIRE_PEERS`).
fn moto() -> Option<String> {
    // moto listens on loopback.
    provisync_tests::allow_loopback_peers();
    match std::env::var("PROVISYNC_TEST_MOTO") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var_os("PROVISYNC_REQUIRE_PEERS").is_none(),
                "PROVISYNC_TEST_MOTO is not set but PROVISYNC_REQUIRE_PEERS is: run through scripts/test-env.sh"
            );
            eprintln!("skipped: PROVISYNC_TEST_MOTO not set (run `make test`)");
            None
        }
    }
}

/// An SDK client on moto, and a fresh pool (8+ characters, upper, lower, digit, symbol).
async fn pool(endpoint: &str) -> (Client, String) {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .load()
        .await;
    let client = Client::new(&conf);
    let policy = PasswordPolicyType::builder()
        .minimum_length(8)
        .require_uppercase(true)
        .require_lowercase(true)
        .require_numbers(true)
        .require_symbols(true)
        .build();
    let out = client
        .create_user_pool()
        .pool_name(format!("provisync-{}", uuid::Uuid::new_v4().simple()))
        .policies(
            UserPoolPolicyType::builder()
                .password_policy(policy)
                .build(),
        )
        .send()
        .await
        .expect("create pool on moto");
    let id = out
        .user_pool()
        .and_then(|p| p.id())
        .expect("pool id")
        .to_string();
    (client, id)
}

fn connector(endpoint: &str, pool: &str, email_verified: bool) -> CognitoConnector {
    CognitoConnector::new(&CognitoTarget {
        user_pool_id: pool.to_string(),
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.to_string()),
        email_verified,
    })
    .expect("connector")
}

fn alice(name: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA], "userName": name,
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "displayName": "Alice Liddell", "nickName": "Al", "active": true,
        "emails": [{"value": format!("{name}@example.test"), "primary": true}],
        "phoneNumbers": [{"value": "+1 555 0100"}]
    })
}

/// `(attributes, enabled, status)` of a user, as Cognito reports it.
async fn get(
    client: &Client,
    pool: &str,
    name: &str,
) -> Option<(
    std::collections::BTreeMap<String, String>,
    bool,
    Option<UserStatusType>,
)> {
    let out = client
        .admin_get_user()
        .user_pool_id(pool)
        .username(name)
        .send()
        .await
        .ok()?;
    let attrs = out
        .user_attributes()
        .iter()
        .map(|a| {
            (
                a.name().to_string(),
                a.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    Some((attrs, out.enabled(), out.user_status().cloned()))
}

async fn members(client: &Client, pool: &str, group: &str) -> Vec<String> {
    client
        .list_users_in_group()
        .user_pool_id(pool)
        .group_name(group)
        .send()
        .await
        .map(|o| {
            o.users()
                .iter()
                .filter_map(|u| u.username().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_lifecycle() {
    let Some(endpoint) = moto() else { return };
    let (client, pool_id) = pool(&endpoint).await;
    let c = connector(&endpoint, &pool_id, true);

    let about = c.test().await.expect("test");
    assert!(about.contains(&pool_id), "{about}");

    // Create with a password: confirmed (permanent), attributes from SCIM, the id is
    // the sub.
    let u = alice("alice");
    let sub = c.create_user(&u, Some("Wonder!and1")).await.unwrap();
    let (attrs, enabled, status) = get(&client, &pool_id, "alice").await.unwrap();
    assert_eq!(attrs["sub"], sub);
    assert_eq!(attrs["email"], "alice@example.test");
    assert_eq!(attrs["email_verified"], "true");
    assert_eq!(attrs["given_name"], "Alice");
    assert_eq!(attrs["family_name"], "Liddell");
    assert_eq!(attrs["name"], "Alice Liddell");
    assert_eq!(attrs["nickname"], "Al");
    assert_eq!(attrs["phone_number"], "+15550100");
    assert!(enabled);
    assert_eq!(status, Some(UserStatusType::Confirmed));
    // Without a password: Cognito's own temporary one (nothing sent to the user).
    let bob_sub = c.create_user(&alice("bob"), None).await.unwrap();
    let (_, _, status) = get(&client, &pool_id, "bob").await.unwrap();
    assert_eq!(status, Some(UserStatusType::ForceChangePassword));
    // Inactive on creation: disabled.
    let mut carol = alice("carol");
    carol["active"] = json!(false);
    c.create_user(&carol, None).await.unwrap();
    assert!(!get(&client, &pool_id, "carol").await.unwrap().1);

    // The same name again: Conflict; found by its name.
    match c.create_user(&alice("alice"), None).await {
        Err(ConnectorError::Conflict(r)) => {
            assert!(r.starts_with("UsernameExistsException"), "{r}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.find_user(&json!({"userName": "alice"})).await.unwrap(),
        Some(sub.clone())
    );
    assert_eq!(
        c.find_user(&json!({"userName": "nobody"})).await.unwrap(),
        None
    );

    // Update: changed attributes, a cleared one deleted, a new password, disabled.
    let mut changed = u.clone();
    changed["name"]["familyName"] = json!("Pleasance");
    changed["displayName"] = json!("Alice P.");
    changed.as_object_mut().unwrap().remove("nickName");
    changed["active"] = json!(false);
    assert_eq!(
        c.update_user(&sub, &changed, Some(&u), Some("N3w!pass-word"))
            .await,
        Ok(None)
    );
    let (attrs, enabled, _) = get(&client, &pool_id, "alice").await.unwrap();
    assert_eq!(attrs["family_name"], "Pleasance");
    assert_eq!(attrs["name"], "Alice P.");
    assert!(!attrs.contains_key("nickname"), "{attrs:?}");
    assert!(!enabled);
    // Active again: enabled.
    changed["active"] = json!(true);
    c.update_user(&sub, &changed, Some(&changed), None)
        .await
        .unwrap();
    assert!(get(&client, &pool_id, "alice").await.unwrap().1);

    // A new userName: refused, saying why; the account is untouched.
    let mut renamed = changed.clone();
    renamed["userName"] = json!("alice.p");
    match c.update_user(&sub, &renamed, Some(&changed), None).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("cannot change"), "{reason}");
            assert!(
                reason.contains("\"alice\"") && reason.contains("\"alice.p\""),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(get(&client, &pool_id, "alice.p").await.is_none());
    // A password the pool refuses: Cognito's reason.
    match c.update_user(&sub, &changed, None, Some("weak")).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.starts_with("InvalidPasswordException"), "{reason}");
            assert!(!reason.contains("weak"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // Deactivate.
    c.disable_user(&bob_sub).await.unwrap();
    assert!(!get(&client, &pool_id, "bob").await.unwrap().1);

    // Unknown subs: NotFound (the engine recreates / forgets the link).
    let ghost = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        c.update_user(ghost, &alice("ghost"), None, None).await,
        Err(ConnectorError::NotFound)
    );
    assert_eq!(c.disable_user(ghost).await, Err(ConnectorError::NotFound));

    // Delete, twice.
    c.delete_user(&sub).await.unwrap();
    assert!(get(&client, &pool_id, "alice").await.is_none());
    c.delete_user(&sub).await.expect("already gone is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_errors() {
    let Some(endpoint) = moto() else { return };
    let (client, pool_id) = pool(&endpoint).await;
    let c = connector(&endpoint, &pool_id, false);
    let mut subs = Vec::new();
    for n in ["u1", "u2", "u3"] {
        subs.push(c.create_user(&alice(n), None).await.unwrap());
    }
    let (attrs, _, _) = get(&client, &pool_id, "u1").await.unwrap();
    assert!(
        !attrs.contains_key("email_verified"),
        "not claimed: {attrs:?}"
    );

    let g = json!({"displayName": "engineering"});
    let gid = c.create_group(&g).await.unwrap();
    assert_eq!(gid, "engineering");
    assert!(matches!(
        c.create_group(&g).await,
        Err(ConnectorError::Conflict(r)) if r.starts_with("GroupExistsException")
    ));
    assert_eq!(c.find_group(&g).await.unwrap(), Some(gid.clone()));
    assert_eq!(
        c.find_group(&json!({"displayName": "sales"}))
            .await
            .unwrap(),
        None
    );
    c.add_members(&gid, &subs).await.unwrap();
    c.add_members(&gid, &subs[..1])
        .await
        .expect("a member again is fine");
    let mut m = members(&client, &pool_id, &gid).await;
    m.sort();
    assert_eq!(m, ["u1", "u2", "u3"]);
    c.remove_members(&gid, &subs[..2]).await.unwrap();
    c.remove_members(&gid, &subs[..2])
        .await
        .expect("not a member any more is fine");
    assert_eq!(members(&client, &pool_id, &gid).await, ["u3"]);
    match c
        .add_members(&gid, &["00000000-0000-4000-8000-000000000000".into()])
        .await
    {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("not a user"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match c.add_members("nope", &subs[..1]).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("\"nope\""), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // No rename in Cognito: refused, saying what to do.
    match c
        .update_group(&gid, &json!({"displayName": "r-and-d"}), Some(&g))
        .await
    {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("group_mapping"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    c.update_group(&gid, &g, Some(&g)).await.unwrap();
    c.delete_group(&gid).await.unwrap();
    assert_eq!(c.find_group(&g).await.unwrap(), None);
    c.delete_group(&gid).await.expect("already gone is fine");

    // A pool that does not exist: the test says so; deliveries disable the target.
    let gone = connector(&endpoint, "us-east-1_doesNotExist", false);
    match gone.test().await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("us-east-1_doesNotExist"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        gone.create_user(&alice("x"), None).await,
        Err(ConnectorError::Gone(_))
    ));
    // Nothing listening: retryable.
    let down = connector("http://127.0.0.1:9", &pool_id, false);
    assert!(
        down.find_user(&json!({"userName": "u1"}))
            .await
            .unwrap_err()
            .is_retryable()
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

// Through the hub (SCIM POST into the hub -> delivery -> Cognito): a user with a password,
// a group, deactivated, a refused rename, deleted; checked on moto with the SDK.
on_every_backend!(delivery_through_the_hub, |hub: Hub| async move {
    let Some(endpoint) = moto() else { return };
    let (client, pool_id) = pool(&endpoint).await;
    let _delivery = hub.run_delivery();
    let def = json!({"kind": "cognito", "user_pool_id": pool_id, "region": "us-east-1",
                     "endpoint_url": endpoint, "email_verified": true,
                     "mapping": [{"target": "attributes.locale", "value": "en-GB"}]});
    let r = hub.admin(Method::PUT, "/targets/cognito", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    let r = hub.admin(Method::POST, "/targets/cognito/test", None).await;
    assert_eq!(r.body["ok"], true, "{}", r.text);

    let r = hub
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "grace",
            "name": {"givenName": "Grace", "familyName": "Hopper"},
            "emails": [{"value": "grace@example.test", "primary": true}],
            "active": true, "password": "Cobol-1959!"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hub_id = r.id();
    eventually("grace in the pool, confirmed", || async {
        get(&client, &pool_id, "grace")
            .await
            .is_some_and(|(_, _, s)| s == Some(UserStatusType::Confirmed))
    })
    .await;
    let (attrs, enabled, _) = get(&client, &pool_id, "grace").await.unwrap();
    assert!(enabled);
    assert_eq!(attrs["email"], "grace@example.test");
    assert_eq!(attrs["email_verified"], "true");
    assert_eq!(attrs["given_name"], "Grace");
    assert_eq!(attrs["locale"], "en-GB");
    let sub = attrs["sub"].clone();
    eventually("the link names the sub", || async {
        hub.deliverer
            .links()
            .get("cognito", ResourceKind::User, &hub_id)
            .await
            .unwrap()
            .is_some_and(|l| l.target_id == sub)
    })
    .await;

    let r = hub
        .post(
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "navy", "members": [{"value": hub_id}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    eventually("membership in the pool", || async {
        members(&client, &pool_id, "navy").await == ["grace"]
    })
    .await;

    let r = hub
        .patch(
            &format!("/Users/{hub_id}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "active", "value": false}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("disabled in the pool", || async {
        get(&client, &pool_id, "grace")
            .await
            .is_some_and(|(_, enabled, _)| !enabled)
    })
    .await;

    // A rename: refused with the reason in the audit log; the account stays.
    let r = hub
        .patch(
            &format!("/Users/{hub_id}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "userName", "value": "grace.hopper"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let query = format!("/audit?target=cognito&resource={hub_id}&status=refused");
    let start = Instant::now();
    let detail = loop {
        let r = hub.admin(Method::GET, &query, None).await;
        if let Some(e) = r.body["entries"].as_array().and_then(|a| a.first()) {
            break e["detail"].as_str().unwrap_or_default().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no refusal audited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        detail.contains("Cognito user names cannot change"),
        "{detail}"
    );
    assert!(get(&client, &pool_id, "grace").await.is_some());

    // Deleted in the hub: deleted in the pool.
    let r = hub.delete(&format!("/Users/{hub_id}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    eventually("deleted in the pool", || async {
        get(&client, &pool_id, "grace").await.is_none()
    })
    .await;
    eventually("the delete in the audit log", || async {
        hub.admin(Method::GET, "/audit?target=cognito&op=delete", None)
            .await
            .body["entries"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let audit = hub
        .admin(Method::GET, "/audit?target=cognito&limit=100", None)
        .await;
    assert!(!audit.text.contains("Cobol-1959!"));
});

/// The Cognito operations among `ops` that change something (not `List*`, `Get*`,
/// `AdminGet*`, `Describe*`), without the service prefix.
fn cognito_writes(ops: &[String]) -> Vec<String> {
    let mut out: Vec<String> = ops
        .iter()
        .map(|o| o.rsplit('.').next().unwrap_or(o).to_string())
        .filter(|o| {
            !["List", "Get", "AdminGet", "Describe"]
                .iter()
                .any(|p| o.starts_with(p))
        })
        .collect();
    out.sort();
    out
}

/// The proxy's calls settle (deliveries done) and nothing else arrives for a moment.
async fn quiet(proxy: &RecordingProxy) {
    settle(|| proxy.operations().len()).await;
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

// A call Cognito throttles (400 `TooManyRequestsException`) is one request: the SDK
// does not retry it behind the hub's pace (before, it retried at once, unpaced, and the
// call succeeded with the pace none the wiser). The connector says 429 to the pace,
// which slows down; the queue retries the delivery after it.
on_every_backend!(a_throttled_call_slows_the_pace, |hub: Hub| async move {
    let Some(endpoint) = moto() else { return };
    let (client, pool_id) = pool(&endpoint).await;
    let proxy = RecordingProxy::start(&endpoint).await;
    let c = connector(&proxy.origin, &pool_id, false);
    proxy.throttle(1);
    let err = c.create_user(&alice("t1"), None).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConnectorError::Retryable {
                status: Some(429),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(proxy.operations().len(), 1, "{:?}", proxy.operations());
    assert_eq!(
        CallOutcome::of_call(Some(&err), Duration::ZERO),
        CallOutcome::SlowDown(None)
    );
    c.create_user(&alice("t1"), None).await.unwrap();

    // Through the hub: the throttled create slows the target's pace, and is delivered
    // on its retry.
    let def = json!({"kind": "cognito", "user_pool_id": pool_id, "region": "us-east-1",
                     "endpoint_url": proxy.origin});
    let r = hub.admin(Method::PUT, "/targets/cognito", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    proxy.throttle(1);
    let _delivery = hub.run_delivery();
    let r = hub.post("/Users", &alice("t2")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    eventually("t2 in the pool after its retry", || async {
        get(&client, &pool_id, "t2").await.is_some()
    })
    .await;
    let pace = hub.admin(Method::GET, "/targets/cognito/pace", None).await;
    assert_eq!(pace.status, 200, "{}", pace.text);
    assert!(
        pace.body["slow_downs"].as_u64().is_some_and(|n| n >= 1),
        "{}",
        pace.text
    );
});

// Reconcile through the hub, every call to Cognito recorded by a proxy in front of moto:
// what the hub delivered (names, address, phone, a mapped standard attribute, verified
// e-mail) is no drift: zero writes. An edit, a deletion and a stranger made behind the
// hub's back are repaired by one run (the stranger disabled, as the target's orphan policy
// says); the next run writes nothing.
on_every_backend!(reconcile_repairs_only_the_drift, |hub: Hub| async move {
    let Some(endpoint) = moto() else { return };
    let (client, pool_id) = pool(&endpoint).await;
    let proxy = RecordingProxy::start(&endpoint).await;
    let _delivery = hub.run_delivery();
    let def = json!({"kind": "cognito", "user_pool_id": pool_id, "region": "us-east-1",
                     "endpoint_url": proxy.origin, "email_verified": true,
                     "orphans": "deactivate",
                     "mapping": [{"target": "attributes.locale", "value": "en-GB"}]});
    let r = hub.admin(Method::PUT, "/targets/cognito", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    for n in ["alice", "bob", "carol"] {
        let r = hub.post("/Users", &alice(n)).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    eventually("three users in the pool", || async {
        get(&client, &pool_id, "alice").await.is_some()
            && get(&client, &pool_id, "bob").await.is_some()
            && get(&client, &pool_id, "carol").await.is_some()
    })
    .await;
    quiet(&proxy).await;

    proxy.clear();
    assert_eq!(reconcile(&hub, "cognito").await, [3, 0, 0, 3, 0, 0, 0]);
    quiet(&proxy).await;
    let ops = proxy.operations();
    assert!(cognito_writes(&ops).is_empty(), "{ops:?}");
    assert!(
        ops.iter().any(|o| o.ends_with(".ListUsers")),
        "listed through the proxy: {ops:?}"
    );

    // Behind the hub's back: alice edited, bob deleted, a stranger added.
    client
        .admin_update_user_attributes()
        .user_pool_id(&pool_id)
        .username("alice")
        .user_attributes(
            aws_sdk_cognitoidentityprovider::types::AttributeType::builder()
                .name("given_name")
                .value("Mallory")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("edit alice");
    client
        .admin_delete_user()
        .user_pool_id(&pool_id)
        .username("bob")
        .send()
        .await
        .expect("delete bob");
    client
        .admin_create_user()
        .user_pool_id(&pool_id)
        .username("stranger")
        .message_action(aws_sdk_cognitoidentityprovider::types::MessageActionType::Suppress)
        .send()
        .await
        .expect("add a stranger");
    proxy.clear();
    assert_eq!(reconcile(&hub, "cognito").await, [3, 1, 1, 1, 1, 1, 0]);
    eventually(
        "alice repaired, bob back, the stranger disabled",
        || async {
            get(&client, &pool_id, "alice")
                .await
                .is_some_and(|(a, _, _)| a.get("given_name").map(String::as_str) == Some("Alice"))
                && get(&client, &pool_id, "bob").await.is_some()
                && get(&client, &pool_id, "stranger")
                    .await
                    .is_some_and(|(_, enabled, _)| !enabled)
        },
    )
    .await;
    quiet(&proxy).await;
    assert_eq!(
        cognito_writes(&proxy.operations()),
        [
            "AdminCreateUser",
            "AdminDisableUser",
            "AdminUpdateUserAttributes"
        ],
        "exactly the drift"
    );
    let (bob, _, _) = get(&client, &pool_id, "bob").await.unwrap();
    assert_eq!(bob["locale"], "en-GB");
    assert_eq!(bob["phone_number"], "+15550100");

    // Repaired: the next run writes nothing (the stranger is disabled already).
    proxy.clear();
    assert_eq!(reconcile(&hub, "cognito").await, [4, 0, 0, 3, 1, 0, 0]);
    quiet(&proxy).await;
    let ops = proxy.operations();
    assert!(cognito_writes(&ops).is_empty(), "{ops:?}");
});

/// Listing at the connector on moto: `ListUsers` pages of 60 by `PaginationToken`, users
/// as SCIM with the `sub` as id; groups with their members' `sub`s, paged too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_users_and_groups() {
    use provisync_connectors::cognito::PAGE_SIZE;
    let Some(endpoint) = moto() else { return };
    let (_client, pool_id) = pool(&endpoint).await;
    let c = connector(&endpoint, &pool_id, false);
    let total = PAGE_SIZE as usize + 2;
    let mut subs = Vec::new();
    for i in 0..total {
        subs.push(
            c.create_user(&alice(&format!("u{i:03}")), None)
                .await
                .unwrap(),
        );
    }
    c.disable_user(&subs[0]).await.unwrap();
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
    let first = seen.iter().find(|u| u["id"] == subs[0].as_str()).unwrap();
    assert_eq!(first["userName"], "u000");
    assert_eq!(first["active"], false);
    assert_eq!(
        first["emails"],
        json!([{"value": "u000@example.test", "primary": true}])
    );
    assert_eq!(first["nickName"], "Al");
    // What the hub would send is what the listing shows.
    let mut listed = seen
        .iter()
        .find(|u| u["id"] == subs[1].as_str())
        .unwrap()
        .clone();
    listed.as_object_mut().unwrap().remove("id");
    assert!(
        !provisync_core::sync::reconcile::differs(
            &c.kept(ResourceKind::User, &alice("u001")),
            &listed,
            None
        ),
        "{listed}"
    );

    let gid = c
        .create_group(&json!({"displayName": "crew"}))
        .await
        .unwrap();
    c.create_group(&json!({"displayName": "empty"}))
        .await
        .unwrap();
    c.add_members(&gid, &subs).await.unwrap();
    let groups = c.list_groups(None).await.unwrap();
    assert_eq!(groups.next, None);
    let crew = groups
        .resources
        .iter()
        .find(|g| g["id"] == "crew")
        .expect("crew listed");
    assert_eq!(crew["displayName"], "crew");
    let members = crew["members"].as_array().unwrap();
    assert_eq!(members.len(), total, "both pages of members");
    assert!(members.contains(&json!({"value": subs[PAGE_SIZE as usize]})));
    let empty = groups
        .resources
        .iter()
        .find(|g| g["id"] == "empty")
        .unwrap();
    assert_eq!(empty["members"], json!([]));
}
