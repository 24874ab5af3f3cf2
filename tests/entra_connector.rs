//! The Entra (Microsoft Graph) connector against `FakeGraph` (tests/common/graph.rs): the
//! token cache and its refresh, the whole lifecycle, error mapping, and delivery end to
//! end through the hub.

use std::time::{Duration, Instant};

use provisync_connectors::entra::EntraConnector;
use provisync_core::connector::{Connector, ConnectorError};
use provisync_core::target::EntraTarget;
use provisync_tests::graph::{DOMAIN, FakeGraph, GraphFault, TENANT};
use provisync_tests::{Backend, ENTERPRISE, Hub, PATCH_OP, USER_SCHEMA, counts_of, settle};
use reqwest::Method;
use serde_json::{Value, json};

fn target(g: &FakeGraph, secret: &str) -> EntraTarget {
    EntraTarget {
        tenant_id: TENANT.into(),
        client_id: g.client_id.clone(),
        client_secret: secret.to_string(),
        graph_url: Some(g.base.clone()),
        login_url: Some(g.base.clone()),
    }
}

fn connector(g: &FakeGraph) -> EntraConnector {
    EntraConnector::new(&target(g, &g.client_secret)).expect("connector")
}

fn alice(upn: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA], "userName": upn, "externalId": "hub-1",
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "displayName": "Alice Liddell", "active": true, "title": "Explorer",
        ENTERPRISE: {"department": "Wonderland"},
        "emails": [{"value": "alice@example.test", "primary": true}]
    })
}

fn upn(local: &str) -> String {
    format!("{local}@{DOMAIN}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_cached_and_refreshed() {
    let g = FakeGraph::start().await;
    g.state().token_lifetime = Duration::from_secs(3);
    let c = connector(&g);
    let about = c.test().await.expect("test");
    assert!(about.contains(TENANT), "{about}");
    for _ in 0..3 {
        c.find_user(&alice(&upn("nobody"))).await.unwrap();
    }
    assert_eq!(g.state().token_requests, 1, "one token for four calls");
    // Renewed shortly before it expires, without a failed call first.
    tokio::time::sleep(Duration::from_millis(2800)).await;
    c.find_user(&alice(&upn("nobody"))).await.unwrap();
    assert_eq!(g.state().token_requests, 2);
    let log_len = g.state().log.len();
    // Revoked behind our back: the 401 fetches a new token, once, and the call succeeds.
    g.revoke_tokens();
    assert_eq!(c.find_user(&alice(&upn("nobody"))).await, Ok(None));
    assert_eq!(g.state().token_requests, 3);
    assert_eq!(
        g.state().log[log_len..]
            .iter()
            .filter(|l| *l != "TOKEN")
            .count(),
        2,
        "the refused call and its one retry"
    );
    // A token that keeps failing is not fetched in a loop.
    g.fail(GraphFault::error(
        401,
        "InvalidAuthenticationToken",
        "Access token has expired or is not yet valid.",
    ));
    g.fail(GraphFault::error(
        401,
        "InvalidAuthenticationToken",
        "Access token has expired or is not yet valid.",
    ));
    match c.find_user(&alice(&upn("nobody"))).await {
        Err(ConnectorError::Refused {
            status: Some(401),
            reason,
        }) => {
            assert!(reason.contains("InvalidAuthenticationToken"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(g.state().token_requests, 4);
    // No token ever sent anywhere but the Authorization header, and only issued ones.
    assert!(
        g.state()
            .bearer_seen
            .iter()
            .all(|b| b.starts_with("Bearer eyJ"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_clearly() {
    let g = FakeGraph::start().await;
    let wrong = EntraConnector::new(&target(&g, "not-the-secret")).unwrap();
    match wrong.test().await {
        Err(ConnectorError::Refused {
            status: Some(401),
            reason,
        }) => {
            assert!(reason.contains("AADSTS7000215"), "{reason}");
            assert!(reason.contains(&g.client_id), "names the client: {reason}");
            assert!(!reason.contains("not-the-secret"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let mut t = target(&g, &g.client_secret);
    t.tenant_id = "fabrikam.onmicrosoft.com".into();
    match EntraConnector::new(&t).unwrap().test().await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("AADSTS90002"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Without the application permissions: 403 with Graph's reason and what to grant.
    g.state().read_only = true;
    let c = connector(&g);
    match c.create_user(&alice(&upn("alice")), None).await {
        Err(ConnectorError::Refused {
            status: Some(403),
            reason,
        }) => {
            assert!(
                reason.starts_with("Authorization_RequestDenied: Insufficient privileges"),
                "{reason}"
            );
            assert!(reason.contains("User.ReadWrite.All"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_lifecycle() {
    let g = FakeGraph::start().await;
    let c = connector(&g);
    assert!(c.create_detects_existing());

    // Create with the hub's password: kept, no change forced.
    let id = c
        .create_user(&alice(&upn("alice")), Some("Wonder!land1"))
        .await
        .unwrap();
    let got = g.user_by_upn(&upn("alice")).unwrap();
    assert_eq!(got["id"], id.as_str());
    for (k, v) in [
        ("displayName", json!("Alice Liddell")),
        ("mailNickname", json!("alice")),
        ("accountEnabled", json!(true)),
        ("givenName", json!("Alice")),
        ("surname", json!("Liddell")),
        ("jobTitle", json!("Explorer")),
        ("department", json!("Wonderland")),
        ("mail", json!("alice@example.test")),
        (
            "passwordProfile",
            json!({"password": "Wonder!land1", "forceChangePasswordNextSignIn": false}),
        ),
    ] {
        assert_eq!(got[k], v, "{k}");
    }
    // Without one: Graph requires a password, an unguessable one is generated.
    let bob = c.create_user(&alice(&upn("bob")), None).await.unwrap();
    let p = g.state().users[&bob]["passwordProfile"].clone();
    assert!(p["password"].as_str().unwrap().len() >= 60);
    assert_eq!(p["forceChangePasswordNextSignIn"], true);

    // Same UPN (any case): Conflict, so the engine links instead; found by UPN.
    match c.create_user(&alice(&upn("ALICE")), None).await {
        Err(ConnectorError::Conflict(r)) => assert!(r.contains("userPrincipalName"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.find_user(&json!({"userName": upn("Alice")}))
            .await
            .unwrap(),
        Some(id.clone())
    );
    // A quote in the UPN is doubled in the filter, not an injection.
    let obrien = c.create_user(&alice(&upn("o'brien")), None).await.unwrap();
    assert_eq!(
        c.find_user(&json!({"userName": upn("o'brien")}))
            .await
            .unwrap(),
        Some(obrien)
    );
    assert_eq!(
        c.find_user(&json!({"userName": upn("nobody")}))
            .await
            .unwrap(),
        None
    );

    // A password Graph refuses: its reason.
    match c.create_user(&alice(&upn("carol")), Some("short")).await {
        Err(ConnectorError::Refused {
            status: Some(400),
            reason,
        }) => {
            assert!(
                reason.starts_with("Request_BadRequest: The specified password does not comply"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A UPN outside the tenant's verified domains.
    match c.create_user(&alice("dave@elsewhere.example"), None).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("verified domain"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // Update: only what changed is sent; a removed attribute is cleared.
    let before = alice(&upn("alice"));
    let mut after = before.clone();
    after["title"] = Value::Null;
    after["name"]["familyName"] = json!("Pleasance");
    let log_len = g.state().log.len();
    assert_eq!(
        c.update_user(&id, &after, Some(&before), Some("N3w!pass"))
            .await,
        Ok(None)
    );
    let got = g.user_by_upn(&upn("alice")).unwrap();
    assert_eq!(got["surname"], "Pleasance");
    assert!(got.get("jobTitle").is_none());
    assert_eq!(got["passwordProfile"]["password"], "N3w!pass");
    assert_eq!(
        g.state().log[log_len..],
        [format!("PATCH /v1.0/users/{id}")]
    );
    // Deactivated since the last delivered payload (which the engine keeps): an update
    // with `active: true` still enables the account.
    c.disable_user(&id).await.unwrap();
    c.update_user(&id, &after, Some(&after), None)
        .await
        .unwrap();
    assert_eq!(
        g.user_by_upn(&upn("alice")).unwrap()["accountEnabled"],
        true
    );

    // Deactivate.
    c.disable_user(&id).await.unwrap();
    assert_eq!(
        g.user_by_upn(&upn("alice")).unwrap()["accountEnabled"],
        false
    );
    // Unknown users: NotFound (the engine recreates / forgets the link).
    let ghost = "00000000-0000-0000-0000-000000000000";
    assert_eq!(
        c.update_user(ghost, &after, None, None).await,
        Err(ConnectorError::NotFound)
    );
    assert_eq!(c.disable_user(ghost).await, Err(ConnectorError::NotFound));
    // Delete, twice.
    c.delete_user(&id).await.unwrap();
    assert!(g.user_by_upn(&upn("alice")).is_none());
    c.delete_user(&id).await.expect("already gone is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_memberships() {
    let g = FakeGraph::start().await;
    let c = connector(&g);
    let mut users = Vec::new();
    for n in ["u1", "u2", "u3"] {
        users.push(c.create_user(&alice(&upn(n)), None).await.unwrap());
    }
    let grp = json!({"displayName": "Engineering & Ops", "members": [{"value": "x"}]});
    assert_eq!(c.find_group(&grp).await.unwrap(), None);
    let gid = c.create_group(&grp).await.unwrap();
    let stored = g.group_by_name("Engineering & Ops").unwrap();
    assert_eq!(stored["id"], gid.as_str());
    assert_eq!(stored["mailEnabled"], false);
    assert_eq!(stored["securityEnabled"], true);
    assert_eq!(stored["mailNickname"], "EngineeringOps");
    assert_eq!(c.find_group(&grp).await.unwrap(), Some(gid.clone()));

    c.add_members(&gid, &users).await.unwrap();
    // Again: "One or more added object references already exist" is success.
    c.add_members(&gid, &users[..1]).await.unwrap();
    assert_eq!(g.state().members.len(), 3);
    assert_eq!(g.groups_of(&upn("u1")), ["Engineering & Ops"]);
    c.remove_members(&gid, &users[..2]).await.unwrap();
    c.remove_members(&gid, &users[..2])
        .await
        .expect("not a member any more is fine");
    assert!(g.groups_of(&upn("u1")).is_empty());
    assert_eq!(g.groups_of(&upn("u3")), ["Engineering & Ops"]);
    // A member Entra does not know.
    match c
        .add_members(&gid, &["11111111-1111-1111-1111-111111111111".into()])
        .await
    {
        Err(ConnectorError::Refused {
            status: Some(404),
            reason,
        }) => {
            assert!(reason.contains("does not exist"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // Rename: PATCH displayName; unchanged: no call.
    c.update_group(&gid, &json!({"displayName": "R&D"}), Some(&grp))
        .await
        .unwrap();
    assert!(g.group_by_name("R&D").is_some());
    let n = g.state().log.len();
    c.update_group(
        &gid,
        &json!({"displayName": "R&D"}),
        Some(&json!({"displayName": "R&D"})),
    )
    .await
    .unwrap();
    assert_eq!(g.state().log.len(), n);

    c.delete_group(&gid).await.unwrap();
    assert!(g.state().groups.is_empty());
    assert!(g.state().members.is_empty());
    c.delete_group(&gid).await.expect("already gone is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_mapping() {
    let g = FakeGraph::start().await;
    let c = connector(&g);
    let id = c.create_user(&alice(&upn("eve")), None).await.unwrap();

    // 429 with Retry-After: retryable after that long, then the same call succeeds.
    g.fail(GraphFault::throttled(7));
    match c.disable_user(&id).await {
        Err(ConnectorError::Retryable {
            status: Some(429),
            retry_after,
            detail,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert_eq!(detail, "TooManyRequests: Please retry again later.");
        }
        other => panic!("{other:?}"),
    }
    g.fail(GraphFault {
        status: 503,
        headers: vec![("Retry-After".into(), "3".into())],
        body: Value::Null,
    });
    assert!(matches!(
        c.disable_user(&id).await,
        Err(ConnectorError::Retryable { status: Some(503), retry_after: Some(d), .. }) if d == Duration::from_secs(3)
    ));
    c.disable_user(&id).await.unwrap();
    // 404 Request_ResourceNotFound on delete: done.
    g.fail(GraphFault::error(
        404,
        "Request_ResourceNotFound",
        "Resource 'x' does not exist",
    ));
    c.delete_user(&id).await.expect("not found is done");
    // A message that echoes our secret is scrubbed.
    g.fail(GraphFault::error(
        400,
        "Request_BadRequest",
        &format!("bad request from {}", g.client_secret),
    ));
    match c.disable_user(&id).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(!reason.contains(&g.client_secret), "{reason}");
            assert_eq!(reason, "Request_BadRequest: bad request from ***");
        }
        other => panic!("{other:?}"),
    }
    // Off loopback, http is refused at construction.
    let mut t = target(&g, "x");
    t.graph_url = Some("http://graph.example.com".into());
    assert!(EntraConnector::new(&t).is_err());
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

/// Through the hub: target defined with `PUT /admin/targets/{id}`, tested, a user
/// provisioned with her password, updated, grouped, deactivated, deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_through_the_hub() {
    let g = FakeGraph::start().await;
    let Some(hub) = Hub::start(Backend::Embedded).await else {
        return;
    };
    let _delivery = hub.run_delivery();
    let def = json!({"kind": "entra", "tenant_id": TENANT, "client_id": g.client_id,
                     "client_secret": g.client_secret, "graph_url": g.base, "login_url": g.base,
                     "mapping": [{"target": "usageLocation", "value": "FR"}]});
    // A misspelt field or a bad tenant: 400 saying which, never echoing the secret.
    let mut typo = def.clone();
    typo["clientSecret"] = typo["client_secret"].clone();
    let r = hub.admin(Method::PUT, "/targets/entra", Some(&typo)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("clientSecret") && !r.text.contains(&g.client_secret),
        "{}",
        r.text
    );
    let mut bad_tenant = def.clone();
    bad_tenant["tenant_id"] = json!("contoso/evil");
    let r = hub
        .admin(Method::PUT, "/targets/entra", Some(&bad_tenant))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("tenant_id"), "{}", r.text);
    let r = hub.admin(Method::PUT, "/targets/entra", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    assert!(!r.text.contains(&g.client_secret), "{}", r.text);
    let r = hub.admin(Method::GET, "/targets/entra", None).await;
    assert_eq!(r.body["client_secret"], "***", "{}", r.text);
    let r = hub.admin(Method::POST, "/targets/entra/test", None).await;
    assert_eq!(r.body["ok"], true, "{}", r.text);

    let grace = upn("grace");
    let r = hub
        .post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": grace, "name": {"givenName": "Grace", "familyName": "Hopper"}, "title": "Rear Admiral", "emails": [{"value": "grace@example.test", "primary": true}], "active": true, "password": "Cobol-1959!"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hub_id = r.id();
    eventually("grace on Entra", || async {
        g.user_by_upn(&grace).is_some()
    })
    .await;
    let u = g.user_by_upn(&grace).unwrap();
    assert_eq!(u["displayName"], "Grace Hopper");
    assert_eq!(u["jobTitle"], "Rear Admiral");
    assert_eq!(u["usageLocation"], "FR");
    assert_eq!(u["passwordProfile"]["password"], "Cobol-1959!");

    let r = hub
        .post("/Groups", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "navy", "members": [{"value": hub_id}]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    eventually("membership on Entra", || async {
        g.groups_of(&grace) == ["navy"]
    })
    .await;

    let r = hub
        .patch(&format!("/Users/{hub_id}"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "Commodore"}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("title on Entra", || async {
        g.user_by_upn(&grace)
            .is_some_and(|u| u["jobTitle"] == "Commodore")
    })
    .await;

    let r = hub
        .patch(&format!("/Users/{hub_id}"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("disabled on Entra", || async {
        g.user_by_upn(&grace)
            .is_some_and(|u| u["accountEnabled"] == false)
    })
    .await;

    let r = hub.delete(&format!("/Users/{hub_id}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    eventually("deleted on Entra", || async {
        g.user_by_upn(&grace).is_none()
    })
    .await;

    // The audit entry is written once the call returned: wait for it too.
    eventually("the delete in the audit log", || async {
        hub.admin(Method::GET, "/audit?target=entra", None)
            .await
            .text
            .contains("\"delete\"")
    })
    .await;
    let audit = hub.admin(Method::GET, "/audit?target=entra", None).await;
    assert_eq!(audit.status, 200, "{}", audit.text);
    assert!(
        audit.text.contains("deactivate") && audit.text.contains("delete"),
        "{}",
        audit.text
    );
    assert!(!audit.text.contains(&g.client_secret));
    assert!(!audit.text.contains("Cobol-1959!"));
    let tokens: Vec<String> = g.state().tokens.keys().cloned().collect();
    assert!(!tokens.is_empty());
    for t in tokens {
        assert!(!audit.text.contains(&t), "a token in the audit log");
    }
}

/// A refusal through the hub lands in the audit log with Graph's code and message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_is_audited_with_graphs_reason() {
    let g = FakeGraph::start().await;
    let Some(hub) = Hub::start(Backend::Embedded).await else {
        return;
    };
    let _delivery = hub.run_delivery();
    let def = json!({"kind": "entra", "tenant_id": TENANT, "client_id": g.client_id,
                     "client_secret": g.client_secret, "graph_url": g.base, "login_url": g.base});
    let r = hub.admin(Method::PUT, "/targets/entra", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    // Outside the tenant's verified domains: Graph refuses, for good.
    let r = hub
        .post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "mallory@elsewhere.example", "active": true}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    eventually("the refusal in the audit log", || async {
        hub.admin(Method::GET, "/audit?target=entra", None)
            .await
            .text
            .contains("verified domain")
    })
    .await;
    let text = hub
        .admin(Method::GET, "/audit?target=entra", None)
        .await
        .text;
    assert!(
        text.contains(
            "Request_BadRequest: The domain portion of the userPrincipalName property is invalid"
        ),
        "{text}"
    );
    assert!(!text.contains(&g.client_secret));
}

/// The documented bodies: what Graph sends is understood, what the docs send is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_bodies() {
    use provisync_core::connector::http::vendor_error;
    let fx = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    for (body, code, msg) in [
        (
            include_str!("fixtures/graph/error_member_exists.json"),
            "Request_BadRequest",
            "One or more added object references already exist",
        ),
        (
            include_str!("fixtures/graph/error_duplicate_upn.json"),
            "Request_BadRequest",
            "Another object with the same value for property userPrincipalName",
        ),
        (
            include_str!("fixtures/graph/error_not_found.json"),
            "Request_ResourceNotFound",
            "Resource '",
        ),
        (
            include_str!("fixtures/graph/error_forbidden.json"),
            "Authorization_RequestDenied",
            "Insufficient privileges",
        ),
        (
            include_str!("fixtures/graph/error_throttled.json"),
            "TooManyRequests",
            "Please retry",
        ),
        (
            include_str!("fixtures/graph/error_invalid_token.json"),
            "InvalidAuthenticationToken",
            "Lifetime validation failed",
        ),
    ] {
        let (c, m) = vendor_error(&fx(body));
        assert_eq!(c.as_deref(), Some(code));
        assert!(m.unwrap().starts_with(msg), "{code}");
    }
    let (c, m) = vendor_error(&fx(include_str!("fixtures/graph/token_error.json")));
    assert_eq!(c.as_deref(), Some("invalid_scope"));
    assert!(m.unwrap().starts_with("AADSTS70011"));
    let tok = fx(include_str!("fixtures/graph/token_response.json"));
    assert_eq!(tok["token_type"], "Bearer");
    assert!(tok["expires_in"].as_u64().unwrap() > 0);
    let listed = fx(include_str!(
        "fixtures/graph/list_users_filter_response.json"
    ));
    assert!(listed["value"][0]["id"].is_string());

    // The documented create-user and create-group bodies, sent as they are (with the
    // fake's verified domain), are accepted; the connector then finds and groups them.
    let g = FakeGraph::start().await;
    let c = connector(&g);
    c.test().await.unwrap();
    let token = g.state().tokens.keys().next().cloned().unwrap();
    let http = reqwest::Client::new();
    let mut user = fx(include_str!("fixtures/graph/create_user_request.json"));
    user["userPrincipalName"] = json!(upn("AdeleV"));
    let r = http
        .post(format!("{}/v1.0/users", g.base))
        .bearer_auth(&token)
        .json(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let documented = fx(include_str!("fixtures/graph/create_user_response.json"));
    for k in documented.as_object().unwrap().keys() {
        assert!(created.get(k).is_some(), "{k} in the answer");
    }
    let uid = c
        .find_user(&json!({"userName": upn("adelev")}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created["id"], uid.as_str());
    let r = http
        .post(format!("{}/v1.0/groups", g.base))
        .bearer_auth(&token)
        .json(&fx(include_str!(
            "fixtures/graph/create_group_request.json"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let gid = c
        .find_group(&json!({"displayName": "Operations group"}))
        .await
        .unwrap()
        .unwrap();
    let mut add = fx(include_str!("fixtures/graph/add_member_request.json"));
    add["@odata.id"] = json!(add["@odata.id"].as_str().unwrap().replace("{id}", &uid));
    let r = http
        .post(format!("{}/v1.0/groups/{gid}/members/$ref", g.base))
        .bearer_auth(&token)
        .json(&add)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(g.groups_of(&upn("AdeleV")), ["Operations group"]);
    // The documented body without passwordProfile: refused as Graph does.
    let mut no_pw = user.clone();
    no_pw.as_object_mut().unwrap().remove("passwordProfile");
    no_pw["userPrincipalName"] = json!(upn("other"));
    let r = http
        .post(format!("{}/v1.0/users", g.base))
        .bearer_auth(&token)
        .json(&no_pw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Request_BadRequest");
    let mut no_nick = user.clone();
    no_nick.as_object_mut().unwrap().remove("mailNickname");
    no_nick["userPrincipalName"] = json!(upn("other"));
    let r = http
        .post(format!("{}/v1.0/users", g.base))
        .bearer_auth(&token)
        .json(&no_nick)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// Listing: every page through `@odata.nextLink` (the fake pages by two), members of the
/// tenant only, in the SCIM shape `kept` gives a delivered user; groups with their
/// members' object ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_and_matches_kept() {
    let g = FakeGraph::start().await;
    g.state().max_page = Some(2);
    let c = connector(&g);
    let mut ids = Vec::new();
    for n in ["ada", "bob", "cy"] {
        ids.push(c.create_user(&alice(&upn(n)), None).await.unwrap());
    }
    // A guest invited from another tenant: not an account the hub could own.
    g.state().users.insert(
        "guest-1".into(),
        json!({"id": "guest-1", "userPrincipalName": "eve_fabrikam.test#EXT#@contoso.onmicrosoft.com",
               "displayName": "Eve", "accountEnabled": true, "userType": "Guest", "mailNickname": "eve"}),
    );
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = c.list_users(cursor.as_deref()).await.expect("page");
        pages += 1;
        listed.extend(page.resources);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 2, "three members, two per page");
    let mut listed_ids: Vec<&str> = listed.iter().map(|u| u["id"].as_str().unwrap()).collect();
    listed_ids.sort_unstable();
    ids.sort_unstable();
    assert_eq!(listed_ids, ids);
    assert!(
        g.state()
            .log
            .iter()
            .any(|l| l.contains("%24skiptoken=") || l.contains("$skiptoken=")),
        "the next link was followed: {:?}",
        g.state().log
    );
    let ada = listed
        .iter()
        .find(|u| u["userName"] == upn("ada"))
        .expect("ada listed");
    // What was delivered is what is listed: no drift.
    let kept = c.kept(provisync_scim::ResourceKind::User, &alice(&upn("ada")));
    assert_eq!(
        kept,
        json!({"userName": upn("ada"), "displayName": "Alice Liddell",
               "name": {"givenName": "Alice", "familyName": "Liddell"}, "active": true,
               "title": "Explorer", ENTERPRISE: {"department": "Wonderland"},
               "emails": [{"value": "alice@example.test", "primary": true}]})
    );
    assert!(
        !provisync_core::sync::reconcile::differs(&kept, ada, None),
        "{kept} vs {ada}"
    );
    // An edit behind the hub's back is.
    let mut edited = ada.clone();
    edited["name"]["givenName"] = json!("Ada");
    assert!(provisync_core::sync::reconcile::differs(
        &kept, &edited, None
    ));

    // A next link elsewhere is not followed (the token would go with it).
    match c
        .list_users(Some("https://evil.example/v1.0/users?$skiptoken=x"))
        .await
    {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("nextLink"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // Groups, with their members (users and nested groups) on every page.
    let navy = c
        .create_group(&json!({"displayName": "navy"}))
        .await
        .unwrap();
    let army = c
        .create_group(&json!({"displayName": "army"}))
        .await
        .unwrap();
    let air = c
        .create_group(&json!({"displayName": "air"}))
        .await
        .unwrap();
    c.add_members(&navy, &ids).await.unwrap();
    c.add_members(&navy, std::slice::from_ref(&army))
        .await
        .unwrap();
    let mut groups = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = c.list_groups(cursor.as_deref()).await.expect("groups page");
        groups.extend(page.resources);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(groups.len(), 3);
    let listed_navy = groups.iter().find(|g| g["id"] == navy.as_str()).unwrap();
    assert_eq!(listed_navy["displayName"], "navy");
    let mut members: Vec<String> = listed_navy["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_string())
        .collect();
    members.sort_unstable();
    let mut want = ids.clone();
    want.push(army.clone());
    want.sort_unstable();
    assert_eq!(members, want, "four members over two pages");
    let listed_air = groups.iter().find(|g| g["id"] == air.as_str()).unwrap();
    assert_eq!(listed_air["members"], json!([]));
    let kept = c.kept(
        provisync_scim::ResourceKind::Group,
        &json!({"displayName": "navy", "externalId": "hub-g"}),
    );
    assert_eq!(kept, json!({"displayName": "navy"}));
}

/// `(checked, created, updated, deleted, orphaned, unchanged)` of a report's counts.
fn counts(c: &Value) -> [u64; 6] {
    counts_of(
        c,
        [
            "checked",
            "created",
            "updated",
            "deleted",
            "orphaned",
            "unchanged",
        ],
    )
}

/// Graph's writes settle: none for a moment.
async fn quiet(g: &FakeGraph) {
    settle(|| g.state().writes.len()).await;
}

/// Reconcile through the hub (`POST /admin/sync`, `reconcile: true`), on both stores:
/// what the hub just delivered is no drift (zero writes); drift behind the hub's back (a
/// name edited, an account deleted, a stranger added) is repaired with exactly those
/// writes (orphans: `delete`); a second reconcile writes nothing.
async fn reconcile_repairs_only_the_drift(backend: Backend) {
    let g = FakeGraph::start().await;
    let Some(hub) = Hub::start(backend).await else {
        return;
    };
    let _delivery = hub.run_delivery();
    // Three users: two pages.
    g.state().max_page = Some(2);
    let def = json!({"kind": "entra", "tenant_id": TENANT, "client_id": g.client_id,
                     "client_secret": g.client_secret, "graph_url": g.base, "login_url": g.base,
                     "orphans": "delete",
                     "mapping": [{"target": "usageLocation", "value": "FR"}]});
    let r = hub.admin(Method::PUT, "/targets/entra", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    for (n, given, family) in [
        ("ada", "Ada", "Lovelace"),
        ("grace", "Grace", "Hopper"),
        ("linus", "Linus", "Torvalds"),
    ] {
        let r = hub
            .post(
                "/Users",
                &json!({"schemas": [USER_SCHEMA], "userName": upn(n),
                "name": {"givenName": given, "familyName": family}, "title": "Engineer",
                ENTERPRISE: {"department": "R&D"},
                "emails": [{"value": format!("{n}@example.test"), "type": "work", "primary": true}],
                "active": true}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    eventually("three users on Entra", || async {
        ["ada", "grace", "linus"]
            .iter()
            .all(|n| g.user_by_upn(&upn(n)).is_some())
    })
    .await;
    quiet(&g).await;

    // Just delivered: in sync, nothing written.
    let mark = g.state().writes.len();
    let c = hub.reconcile("entra").await;
    assert_eq!(counts(&c), [3, 0, 0, 0, 0, 3], "{c}");
    assert!(
        g.state().log.iter().any(|l| l.contains("skiptoken")),
        "the listing followed @odata.nextLink"
    );
    quiet(&g).await;
    assert_eq!(
        g.state().writes[mark..],
        [],
        "a target in sync gets no write"
    );

    // Drift behind the hub's back.
    let grace = g.user_by_upn(&upn("grace")).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let linus = g.user_by_upn(&upn("linus")).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ada = g.user_by_upn(&upn("ada")).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    {
        let mut st = g.state();
        st.users.get_mut(&grace).unwrap()["givenName"] = json!("Amazing");
        // The hub sends no displayName: Entra's is derived from the names, and kept.
        st.users.get_mut(&ada).unwrap()["displayName"] = json!("The Countess");
        st.users.remove(&linus);
        st.users.insert("stranger-1".into(), json!({"id": "stranger-1",
            "userPrincipalName": upn("mallory"), "displayName": "Mallory", "mailNickname": "mallory",
            "accountEnabled": true, "userType": "Member"}));
        // A guest: never listed, never touched.
        st.users.insert("guest-1".into(), json!({"id": "guest-1",
            "userPrincipalName": "eve_fabrikam.test#EXT#@contoso.onmicrosoft.com",
            "displayName": "Eve", "mailNickname": "eve", "accountEnabled": true, "userType": "Guest"}));
    }
    let mark = g.state().writes.len();
    let c = hub.reconcile("entra").await;
    // Listed: ada, grace, the stranger; linus missing.
    assert_eq!(counts(&c), [3, 1, 2, 1, 1, 0], "{c}");
    eventually("the drift repaired", || async {
        g.user_by_upn(&upn("grace"))
            .is_some_and(|u| u["givenName"] == "Grace")
            && g.user_by_upn(&upn("ada"))
                .is_some_and(|u| u["displayName"] == "Ada Lovelace")
            && g.user_by_upn(&upn("linus")).is_some()
    })
    .await;
    quiet(&g).await;
    let writes = g.state().writes[mark..].to_vec();
    let mut paths: Vec<String> = writes.iter().map(|(p, _)| p.clone()).collect();
    paths.sort_unstable();
    let mut want = vec![
        "DELETE /v1.0/users/stranger-1".to_string(),
        format!("PATCH /v1.0/users/{grace}"),
        format!("PATCH /v1.0/users/{ada}"),
        "POST /v1.0/users".to_string(),
    ];
    want.sort_unstable();
    assert_eq!(paths, want, "{writes:?}");
    let patch = |id: &str| {
        writes
            .iter()
            .find(|(p, _)| p.starts_with("PATCH") && p.ends_with(id))
            .map(|(_, b)| b.clone())
            .unwrap()
    };
    assert_eq!(
        patch(&grace),
        json!({"givenName": "Grace", "accountEnabled": true}),
        "exactly the difference"
    );
    assert_eq!(
        patch(&ada),
        json!({"displayName": "Ada Lovelace", "accountEnabled": true})
    );
    let linus = g.user_by_upn(&upn("linus")).unwrap();
    assert_eq!(linus["surname"], "Torvalds");
    assert_eq!(linus["usageLocation"], "FR");
    assert!(g.state().users.contains_key("guest-1"));

    // Repaired: a second reconcile writes nothing.
    let mark = g.state().writes.len();
    let c = hub.reconcile("entra").await;
    assert_eq!(counts(&c), [3, 0, 0, 0, 0, 3], "{c}");
    quiet(&g).await;
    assert_eq!(g.state().writes[mark..], [], "in sync again");
    let audit = hub
        .admin(Method::GET, "/audit?target=entra&op=reconcile", None)
        .await;
    assert!(audit.text.contains("checked=3"), "{}", audit.text);
    assert!(!audit.text.contains(&g.client_secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_repairs_only_the_drift_embedded() {
    reconcile_repairs_only_the_drift(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_repairs_only_the_drift_dynamodb() {
    reconcile_repairs_only_the_drift(Backend::DynamoDb).await;
}
