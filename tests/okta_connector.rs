//! The Okta connector against `FakeOkta` (tests/common/okta.rs): the whole lifecycle
//! (STAGED / PROVISIONED / ACTIVE / DEPROVISIONED, delete in two steps), groups, the error
//! mapping (Okta's error bodies, 429 with `X-Rate-Limit-Reset`), the documented bodies, and
//! delivery end to end through the hub on every store.

use std::time::{Duration, Instant};

use provisync_connectors::okta::OktaConnector;
use provisync_core::connector::{Connector, ConnectorError};
use provisync_core::target::OktaTarget;
use provisync_scim::ResourceKind;
use provisync_tests::okta::{FakeOkta, OktaFault};
use provisync_tests::{Hub, PATCH_OP, USER_SCHEMA, counts_of, on_every_backend, settle};
use reqwest::Method;
use serde_json::{Value, json};

fn connector(o: &FakeOkta, token: &str) -> OktaConnector {
    OktaConnector::new(&OktaTarget {
        base_url: o.base.clone(),
        token: token.to_string(),
    })
    .expect("connector")
}

fn alice(login: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA], "userName": login, "externalId": "hub-1",
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "displayName": "Alice Liddell", "title": "Explorer", "active": true,
        "emails": [{"value": "alice@example.test", "primary": true}],
        "phoneNumbers": [{"value": "+1 555 0100", "type": "mobile"}]
    })
}

fn status(o: &FakeOkta, login: &str) -> String {
    o.user(login)
        .and_then(|u| u["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_lifecycle() {
    let okta = FakeOkta::start().await;
    let c = connector(&okta, &okta.token);

    let about = c.test().await.expect("test");
    assert!(about.contains("admin@example.test"), "{about}");
    match connector(&okta, "00-not-the-token").test().await {
        Err(ConnectorError::Refused {
            status: Some(401),
            reason,
        }) => {
            assert!(
                reason.contains("E0000011: Invalid token provided"),
                "{reason}"
            );
            assert!(reason.contains("API token"), "{reason}");
            assert!(!reason.contains("00-not-the-token"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        okta.state().log.iter().all(|l| !l.contains(&okta.token)),
        "the token travels in a header only"
    );

    // Active with a password: ACTIVE; the password never comes back.
    let id = c
        .create_user(&alice("alice@example.test"), Some("Wonder1and"))
        .await
        .unwrap();
    assert!(id.starts_with("00u"), "{id}");
    let got = okta.user("alice@example.test").unwrap();
    assert_eq!(got["id"], id);
    assert_eq!(got["status"], "ACTIVE");
    assert_eq!(
        got["profile"],
        json!({"login": "alice@example.test", "email": "alice@example.test",
               "firstName": "Alice", "lastName": "Liddell", "displayName": "Alice Liddell",
               "title": "Explorer", "mobilePhone": "+1 555 0100"})
    );
    assert_eq!(okta.state().passwords[&id], "Wonder1and");
    assert!(
        okta.state()
            .log
            .iter()
            .any(|l| l == "POST /users?activate=true"),
        "{:?}",
        okta.state().log
    );
    // Active without one: PROVISIONED (the welcome flow); inactive: STAGED.
    c.create_user(&alice("bob@example.test"), None)
        .await
        .unwrap();
    assert_eq!(status(&okta, "bob@example.test"), "PROVISIONED");
    let mut carol = alice("carol@example.test");
    carol["active"] = json!(false);
    let carol_id = c.create_user(&carol, None).await.unwrap();
    assert_eq!(status(&okta, "carol@example.test"), "STAGED");

    // A taken login (any case): Conflict with Okta's summary and cause; found by login.
    match c.create_user(&alice("ALICE@example.test"), None).await {
        Err(ConnectorError::Conflict(r)) => assert!(
            r.contains(
                "Api validation failed: login (login: An object with this field already exists"
            ),
            "{r}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.find_user(&json!({"userName": "Alice@Example.test"}))
            .await
            .unwrap(),
        Some(id.clone())
    );
    // Okta resolves a short name too: not the same login, not a match.
    assert_eq!(
        c.find_user(&json!({"userName": "alice"})).await.unwrap(),
        None
    );
    assert_eq!(
        c.find_user(&json!({"userName": "nobody@example.test"}))
            .await
            .unwrap(),
        None
    );

    // Update: changed fields, a cleared one (null), a new password, a new login: the id
    // stays.
    let u = alice("alice@example.test");
    let mut changed = u.clone();
    changed["userName"] = json!("alice.liddell@example.test");
    changed["name"]["familyName"] = json!("Pleasance");
    changed.as_object_mut().unwrap().remove("title");
    assert_eq!(
        c.update_user(&id, &changed, Some(&u), Some("N3wPassword"))
            .await,
        Ok(None)
    );
    let got = okta.user("alice.liddell@example.test").unwrap();
    assert_eq!(got["id"], id);
    assert_eq!(got["profile"]["lastName"], "Pleasance");
    assert!(got["profile"].get("title").is_none(), "{got}");
    assert_eq!(okta.state().passwords[&id], "N3wPassword");

    // Inactive: deactivated (after the profile update); again: nothing to do.
    let mut off = changed.clone();
    off["active"] = json!(false);
    c.update_user(&id, &off, Some(&changed), None)
        .await
        .unwrap();
    assert_eq!(status(&okta, "alice.liddell@example.test"), "DEPROVISIONED");
    c.update_user(&id, &off, Some(&off), None).await.unwrap();
    c.disable_user(&id)
        .await
        .expect("deactivated already is fine");
    // Active again: activated (with its password: ACTIVE).
    c.update_user(&id, &changed, Some(&off), None)
        .await
        .unwrap();
    assert_eq!(status(&okta, "alice.liddell@example.test"), "ACTIVE");
    // A STAGED user that becomes active is activated (no password: PROVISIONED).
    let mut carol_on = carol.clone();
    carol_on["active"] = json!(true);
    c.update_user(&carol_id, &carol_on, Some(&carol), None)
        .await
        .unwrap();
    assert_eq!(status(&okta, "carol@example.test"), "PROVISIONED");

    // Unknown users: NotFound (the engine recreates / forgets the link).
    let ghost = "00u0000000000000ghost";
    assert_eq!(
        c.update_user(ghost, &alice("g@example.test"), None, None)
            .await,
        Err(ConnectorError::NotFound)
    );
    assert_eq!(c.disable_user(ghost).await, Err(ConnectorError::NotFound));

    // Delete as Okta does it: the first DELETE deactivates, the second deletes.
    let before = okta.state().log.len();
    c.delete_user(&id).await.unwrap();
    assert!(okta.user("alice.liddell@example.test").is_none());
    let deletes = okta.state().log[before..]
        .iter()
        .filter(|l| l.starts_with("DELETE /users/"))
        .count();
    assert_eq!(deletes, 2);
    c.delete_user(&id).await.expect("already gone is fine");
    // A deactivated user goes with the first DELETE; the second finds nothing.
    c.disable_user(&carol_id).await.unwrap();
    c.delete_user(&carol_id).await.unwrap();
    assert!(okta.user("carol@example.test").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_memberships() {
    let okta = FakeOkta::start().await;
    let c = connector(&okta, &okta.token);
    let mut ids = Vec::new();
    for n in ["u1", "u2", "u3"] {
        ids.push(
            c.create_user(&alice(&format!("{n}@example.test")), None)
                .await
                .unwrap(),
        );
    }
    let g = json!({"displayName": "Engineering", "members": [{"value": "x"}]});
    let gid = c.create_group(&g).await.unwrap();
    assert!(gid.starts_with("00g"), "{gid}");
    let stored = okta.state().groups[&gid].clone();
    assert_eq!(stored["type"], "OKTA_GROUP");
    assert_eq!(
        stored["profile"],
        json!({"name": "Engineering", "description": "Provisioned by provisync"})
    );
    assert!(matches!(
        c.create_group(&g).await,
        Err(ConnectorError::Conflict(_))
    ));
    // `q` is a prefix search: the exact name is kept, a prefix is not a match.
    let other = c
        .create_group(&json!({"displayName": "Engineering Leads"}))
        .await
        .unwrap();
    assert_eq!(c.find_group(&g).await.unwrap(), Some(gid.clone()));
    assert_eq!(
        c.find_group(&json!({"displayName": "engineering leads"}))
            .await
            .unwrap(),
        Some(other)
    );
    assert_eq!(
        c.find_group(&json!({"displayName": "Eng"})).await.unwrap(),
        None
    );

    c.add_members(&gid, &ids).await.unwrap();
    c.add_members(&gid, &ids[..1])
        .await
        .expect("a member again is fine");
    assert_eq!(okta.state().members.len(), 3);
    c.remove_members(&gid, &ids[..2]).await.unwrap();
    c.remove_members(&gid, &ids[..2])
        .await
        .expect("not a member any more is fine");
    assert_eq!(okta.groups_of("u3@example.test"), ["Engineering"]);
    assert!(okta.groups_of("u1@example.test").is_empty());
    match c.add_members(&gid, &["00u0000000000000ghost".into()]).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(
                reason.contains("ghost") && reason.contains("Resource not found"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }

    // Okta renames groups (the id stays); the description is kept.
    c.update_group(&gid, &json!({"displayName": "R&D"}), Some(&g))
        .await
        .unwrap();
    let renamed = okta.state().groups[&gid].clone();
    assert_eq!(renamed["profile"]["name"], "R&D");
    assert_eq!(
        renamed["profile"]["description"],
        "Provisioned by provisync"
    );
    assert_eq!(okta.groups_of("u3@example.test"), ["R&D"]);

    c.delete_group(&gid).await.unwrap();
    assert!(!okta.state().groups.contains_key(&gid));
    assert!(okta.state().members.is_empty());
    c.delete_group(&gid).await.expect("already gone is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_mapping() {
    let okta = FakeOkta::start().await;
    let c = connector(&okta, &okta.token);

    // Okta's validation: the reason quotes the summary and every cause.
    let mut bad = alice("not-an-address");
    bad.as_object_mut().unwrap().remove("emails");
    match c.create_user(&bad, Some("short")).await {
        Err(ConnectorError::Refused {
            status: Some(400),
            reason,
        }) => {
            assert!(
                reason.starts_with("E0000001: Api validation failed: email, login, password ("),
                "{reason}"
            );
            assert!(
                reason.contains("email: The field cannot be left blank"),
                "{reason}"
            );
            assert!(
                reason.contains("login: Username must be in the form of an email address"),
                "{reason}"
            );
            assert!(!reason.contains("short"), "never the password: {reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(okta.state().users.is_empty());

    // 429 without Retry-After: wait until X-Rate-Limit-Reset (epoch seconds).
    let reset = chrono::Utc::now().timestamp() + 30;
    okta.rate_limit(1, reset);
    match c.find_user(&json!({"userName": "a@example.test"})).await {
        Err(ConnectorError::Retryable {
            status: Some(429),
            retry_after: Some(wait),
            detail,
        }) => {
            assert!(
                wait <= Duration::from_secs(30) && wait >= Duration::from_secs(28),
                "{wait:?}"
            );
            assert_eq!(
                detail,
                "E0000047: API call exceeded rate limit due to too many requests."
            );
        }
        other => panic!("{other:?}"),
    }
    // The window passed: the same call goes through.
    assert_eq!(
        c.find_user(&json!({"userName": "a@example.test"})).await,
        Ok(None)
    );
    // Retry-After, when given, wins; 5xx is retryable.
    okta.fail(OktaFault {
        status: 429,
        headers: vec![
            ("Retry-After".into(), "5".into()),
            ("X-Rate-Limit-Reset".into(), reset.to_string()),
        ],
        body: Value::Null,
    });
    match c.test().await {
        Err(ConnectorError::Retryable { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(5)))
        }
        other => panic!("{other:?}"),
    }
    okta.fail(OktaFault {
        status: 500,
        headers: vec![],
        body: json!({"errorCode": "E0000009", "errorSummary": "Internal Server Error", "errorCauses": []}),
    });
    assert!(matches!(
        c.test().await,
        Err(ConnectorError::Retryable { status: Some(500), detail, .. }) if detail == "E0000009: Internal Server Error"
    ));

    // A token whose administrator may not write: refused, saying which role is missing.
    let id = c
        .create_user(&alice("eve@example.test"), None)
        .await
        .unwrap();
    okta.state().read_only = true;
    match c.disable_user(&id).await {
        Err(ConnectorError::Refused {
            status: Some(403),
            reason,
        }) => {
            assert!(reason.contains("E0000006"), "{reason}");
            assert!(reason.contains("Administrator role"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    okta.state().read_only = false;
    // A summary that echoes our token is scrubbed.
    okta.fail(OktaFault {
        status: 400,
        headers: vec![],
        body: json!({"errorCode": "E0000001", "errorSummary": format!("bad token {}", okta.token), "errorCauses": []}),
    });
    match c.disable_user(&id).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(!reason.contains(&okta.token), "{reason}");
            assert!(reason.contains("bad token ***"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Not the org URL: the test says so.
    let wrong = OktaConnector::new(&OktaTarget {
        base_url: format!("{}/admin", okta.base),
        token: okta.token.clone(),
    })
    .unwrap();
    match wrong.test().await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("org URL"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// The documented bodies: what the docs send is accepted, what Okta answers is understood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_bodies() {
    use provisync_core::connector::http::vendor_error;
    let fx = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    assert_eq!(
        vendor_error(&fx(include_str!("fixtures/okta-api/error_rate_limit.json"))),
        (
            Some("E0000047".into()),
            Some("API call exceeded rate limit due to too many requests.".into())
        )
    );
    assert_eq!(
        vendor_error(&fx(include_str!("fixtures/okta-api/error_login_exists.json"))).1,
        Some("Api validation failed: login (login: An object with this field already exists in the current organization)".into())
    );
    let okta = FakeOkta::start().await;
    let c = connector(&okta, &okta.token);
    let http = reqwest::Client::new();
    // The documented create (with password, activate=true), sent as is: the documented
    // answer's shape.
    let r = http
        .post(format!("{}/api/v1/users?activate=true", okta.base))
        .header("Authorization", format!("SSWS {}", okta.token))
        .json(&fx(include_str!(
            "fixtures/okta-api/create_user_with_password_request.json"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-rate-limit-reset"));
    let created: Value = r.json().await.unwrap();
    let doc = fx(include_str!(
        "fixtures/okta-api/create_user_with_password_response.json"
    ));
    for k in ["status", "profile", "credentials"] {
        assert_eq!(created[k], doc[k], "{k}");
    }
    let mut keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    let mut want: Vec<&String> = doc.as_object().unwrap().keys().collect();
    keys.sort();
    want.sort();
    assert_eq!(keys, want);
    // The same again: the documented conflict, which the connector reads as a Conflict.
    let again = http
        .post(format!("{}/api/v1/users?activate=true", okta.base))
        .header("Authorization", format!("SSWS {}", okta.token))
        .json(&fx(include_str!(
            "fixtures/okta-api/create_user_with_password_request.json"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    let body: Value = again.json().await.unwrap();
    let exists = fx(include_str!("fixtures/okta-api/error_login_exists.json"));
    for k in ["errorCode", "errorSummary", "errorCauses"] {
        assert_eq!(body[k], exists[k], "{k}");
    }
    let isaac = json!({"userName": "isaac.brock@example.com"});
    assert_eq!(
        c.find_user(&isaac).await.unwrap(),
        created["id"].as_str().map(str::to_string)
    );
    // Without credentials and activate=false: STAGED, as documented.
    let staged = fx(include_str!(
        "fixtures/okta-api/create_user_staged_response.json"
    ));
    let mut req = fx(include_str!(
        "fixtures/okta-api/create_user_with_password_request.json"
    ));
    req.as_object_mut().unwrap().remove("credentials");
    req["profile"]["login"] = json!("isaac2@example.com");
    let r: Value = http
        .post(format!("{}/api/v1/users?activate=false", okta.base))
        .header("Authorization", format!("SSWS {}", okta.token))
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], staged["status"]);
    assert_eq!(r["credentials"], staged["credentials"]);
    // The documented group body makes the documented group, which the connector finds.
    let g: Value = http
        .post(format!("{}/api/v1/groups", okta.base))
        .header("Authorization", format!("SSWS {}", okta.token))
        .json(&fx(include_str!(
            "fixtures/okta-api/create_group_request.json"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let doc_group = fx(include_str!("fixtures/okta-api/group.json"));
    for k in ["type", "objectClass", "profile"] {
        assert_eq!(g[k], doc_group[k], "{k}");
    }
    assert_eq!(
        c.find_group(&json!({"displayName": "West Coast Users"}))
            .await
            .unwrap(),
        g["id"].as_str().map(str::to_string)
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

// Through the hub: target defined with `PUT /admin/targets/{id}`, tested, a user
// provisioned with a password, grouped, renamed (same Okta id), deactivated, deleted; a
// user Okta refuses is audited with Okta's reason; no secret in the audit.
on_every_backend!(delivery_through_the_hub, |hub: Hub| async move {
    let okta = FakeOkta::start().await;
    let _delivery = hub.run_delivery();
    let def = json!({"kind": "okta", "base_url": okta.base, "token": okta.token,
                     "mapping": [{"target": "attributes.costCenter", "value": "CC-42"}]});
    let r = hub.admin(Method::PUT, "/targets/okta", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    assert!(!r.text.contains(&okta.token), "{}", r.text);
    let r = hub.admin(Method::GET, "/targets/okta", None).await;
    assert_eq!(r.body["token"], "***", "{}", r.text);
    let r = hub.admin(Method::POST, "/targets/okta/test", None).await;
    assert_eq!(r.body["ok"], true, "{}", r.text);

    let r = hub
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "grace@example.test",
            "name": {"givenName": "Grace", "familyName": "Hopper"},
            "emails": [{"value": "grace@example.test", "primary": true}],
            "active": true, "password": "Cobol1959x"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hub_id = r.id();
    eventually("grace on Okta", || async {
        okta.user("grace@example.test").is_some()
    })
    .await;
    let got = okta.user("grace@example.test").unwrap();
    let okta_id = got["id"].as_str().unwrap().to_string();
    assert_eq!(got["status"], "ACTIVE");
    assert_eq!(got["profile"]["firstName"], "Grace");
    assert_eq!(got["profile"]["costCenter"], "CC-42");
    assert_eq!(okta.state().passwords[&okta_id], "Cobol1959x");

    let r = hub
        .post(
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "navy", "members": [{"value": hub_id}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    eventually("membership on Okta", || async {
        okta.groups_of("grace@example.test") == ["navy"]
    })
    .await;

    // A new login: the same Okta user, renamed; the link keeps its id.
    let r = hub
        .patch(
            &format!("/Users/{hub_id}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "userName", "value": "grace.hopper@example.test"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("the new login on Okta", || async {
        okta.user("grace.hopper@example.test").is_some()
    })
    .await;
    assert_eq!(okta.state().users.len(), 1);
    assert_eq!(
        okta.user("grace.hopper@example.test").unwrap()["id"],
        okta_id
    );
    let link = hub
        .deliverer
        .links()
        .get("okta", ResourceKind::User, &hub_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link.target_id, okta_id);

    let r = hub
        .patch(
            &format!("/Users/{hub_id}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "active", "value": false}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("deactivated on Okta", || async {
        okta.user("grace.hopper@example.test")
            .is_some_and(|u| u["status"] == "DEPROVISIONED")
    })
    .await;

    // A user Okta refuses (its login is not an address): audited with Okta's reason.
    let r = hub
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "nomail",
            "name": {"givenName": "No", "familyName": "Mail"}, "active": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let refused_id = r.id();
    let query = format!("/audit?target=okta&resource={refused_id}&status=refused");
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
        detail.contains("E0000001: Api validation failed: email, login")
            && detail.contains("login: Username must be in the form of an email address"),
        "{detail}"
    );

    // Deleted in the hub: deleted on Okta (two DELETEs).
    let r = hub.delete(&format!("/Users/{hub_id}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    eventually("deleted on Okta", || async {
        okta.state().users.is_empty()
    })
    .await;
    // The audit entry follows the call: wait for it too.
    eventually("the delete in the audit log", || async {
        hub.admin(Method::GET, "/audit?target=okta&op=delete", None)
            .await
            .body["entries"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let audit = hub
        .admin(Method::GET, "/audit?target=okta&limit=100", None)
        .await;
    assert!(!audit.text.contains(&okta.token));
    assert!(!audit.text.contains("Cobol1959x"));
});

// Okta takes one member per request, so a delivery with no time for members
// (`Deliverer::set_member_work`) makes one member call and leaves the rest to follow-up
// events. All 6 members removed in one change: admitted by the deprovision guard once
// (`max: 8`; counted again by each follow-up, 6 + 5 would be over it and held) and
// journaled once, then one DELETE per member, each member once.
on_every_backend!(removals_go_on_in_follow_ups, |hub: Hub| async move {
    let okta = FakeOkta::start().await;
    let _delivery = hub.run_delivery();
    let def = json!({"kind": "okta", "base_url": okta.base, "token": okta.token,
                     "deprovision_guard": {"max": 8, "window_minutes": 60}});
    let r = hub.admin(Method::PUT, "/targets/okta", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    let mut members = Vec::new();
    for i in 0..6 {
        let login = format!("m{i}@example.test");
        let r = hub
            .post(
                "/Users",
                &json!({"schemas": [USER_SCHEMA], "userName": login,
                "name": {"givenName": "M", "familyName": format!("{i}")},
                "emails": [{"value": login, "primary": true}], "active": true}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        members.push(json!({"value": r.id()}));
    }
    eventually("6 users on Okta", || async {
        okta.state().users.len() == 6
    })
    .await;
    hub.deliverer.set_member_work(Duration::ZERO);
    let r = hub
        .post(
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "crew", "members": members}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let group = r.id();
    eventually("6 members on Okta", || async {
        okta.state().members.len() == 6
    })
    .await;
    let r = hub
        .patch(
            &format!("/Groups/{group}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "members", "value": []}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("no member left on Okta", || async {
        okta.state().members.is_empty()
    })
    .await;
    quiet(&okta).await;
    let removals = okta
        .state()
        .log
        .iter()
        .filter(|l| l.starts_with("DELETE /groups/"))
        .count();
    assert_eq!(removals, 6, "{:?}", okta.state().log);
    let held = hub.admin(Method::GET, "/targets/okta/held", None).await;
    assert_eq!(held.body["held"], json!([]), "{}", held.text);
    let audit = hub
        .admin(
            Method::GET,
            &format!("/audit?target=okta&resource={group}&op=remove_members&limit=100"),
            None,
        )
        .await;
    let details: Vec<&str> = audit.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(details.len(), 6, "{}", audit.text);
    for left in 1..=5 {
        let note = format!(
            "{left} memberships not reached in this delivery's time: sent in follow-up event "
        );
        assert!(details.iter().any(|d| d.starts_with(&note)), "{details:?}");
    }
    // Journaled once, with all 6: the way back re-adds each member once.
    let undo = hub
        .admin(
            Method::POST,
            "/targets/okta/undo",
            Some(&json!({"since": "2000-01-01T00:00:00Z", "apply": false})),
        )
        .await;
    assert_eq!(undo.status, 200, "{}", undo.text);
    let steps: Vec<&Value> = undo.body["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["resource_type"] == "Group")
        .collect();
    assert_eq!(steps.len(), 1, "{}", undo.text);
    assert_eq!(steps[0]["change"], "add_members", "{}", undo.text);
    assert_eq!(steps[0]["detail"], "6 member(s)", "{}", undo.text);
});

/// Okta's requests settle (deliveries done) and nothing else arrives for a moment.
async fn quiet(okta: &FakeOkta) {
    settle(|| okta.state().log.len()).await;
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

// Reconcile through the hub: what the hub delivered (a mapped custom attribute, phones,
// a deactivated user that only the DEPROVISIONED listing shows) is no drift: zero writes.
// An edit, a deletion and a stranger made behind the hub's back are repaired by one run
// (the stranger deleted, as the target's orphan policy says); the next run writes nothing.
on_every_backend!(reconcile_repairs_only_the_drift, |hub: Hub| async move {
    let okta = FakeOkta::start().await;
    let _delivery = hub.run_delivery();
    let def = json!({"kind": "okta", "base_url": okta.base, "token": okta.token,
                     "orphans": "delete",
                     "mapping": [{"target": "attributes.costCenter", "value": "CC-42"}]});
    let r = hub.admin(Method::PUT, "/targets/okta", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    let mut ids = Vec::new();
    for (n, g) in [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")] {
        let r = hub
            .post(
                "/Users",
                &json!({"schemas": [USER_SCHEMA], "userName": format!("{n}@example.test"),
                "name": {"givenName": g, "familyName": "Example"}, "title": "Explorer",
                "emails": [{"value": format!("{n}@example.test"), "type": "work", "primary": true}],
                "phoneNumbers": [{"value": "+1 555 0100", "type": "mobile"}],
                "active": true}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.id());
    }
    eventually("three users on Okta", || async {
        okta.state().users.len() == 3
    })
    .await;
    // Carol leaves: deactivated on Okta, where the plain listing no longer shows her.
    let r = hub
        .patch(&format!("/Users/{}", ids[2]), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("carol deactivated", || async {
        status(&okta, "carol@example.test") == "DEPROVISIONED"
    })
    .await;
    quiet(&okta).await;

    okta.state().log.clear();
    assert_eq!(reconcile(&hub, "okta").await, [3, 0, 0, 3, 0, 0, 0]);
    quiet(&okta).await;
    assert!(okta.writes().is_empty(), "{:?}", okta.writes());
    let reads = okta.state().log.clone();
    assert!(
        reads.iter().any(|l| l.starts_with("GET /users?limit=200"))
            && reads
                .iter()
                .any(|l| l.contains("filter=status+eq+%22DEPROVISIONED%22")),
        "{reads:?}"
    );

    // Behind the hub's back: alice edited, bob deleted, a stranger added.
    let alice_id = okta.user("alice@example.test").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    okta.state().users.get_mut(&alice_id).unwrap()["profile"]["firstName"] = json!("Mallory");
    let bob_id = okta.user("bob@example.test").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    okta.state().users.remove(&bob_id);
    let stranger = okta.insert_user(
        json!({"login": "stranger@example.test", "email": "stranger@example.test",
        "firstName": "Some", "lastName": "One"}),
    );
    okta.state().log.clear();
    assert_eq!(reconcile(&hub, "okta").await, [3, 1, 1, 1, 1, 0, 1]);
    eventually("alice repaired, bob back, the stranger gone", || async {
        okta.user("alice@example.test")
            .is_some_and(|u| u["profile"]["firstName"] == "Alice")
            && okta.user("bob@example.test").is_some()
            && okta.user("stranger@example.test").is_none()
    })
    .await;
    quiet(&okta).await;
    let mut writes = okta.writes();
    writes.sort();
    let mut want = vec![
        format!("DELETE /users/{stranger}?sendEmail=false"),
        format!("DELETE /users/{stranger}?sendEmail=false"),
        format!("POST /users/{alice_id}"),
        "POST /users?activate=true".to_string(),
    ];
    want.sort();
    assert_eq!(writes, want, "exactly the drift");
    let bob = okta.user("bob@example.test").unwrap();
    assert_eq!(bob["profile"]["costCenter"], "CC-42");
    assert_eq!(bob["profile"]["mobilePhone"], "+1 555 0100");

    // Repaired: the next run writes nothing.
    okta.state().log.clear();
    assert_eq!(reconcile(&hub, "okta").await, [3, 0, 0, 3, 0, 0, 0]);
    quiet(&okta).await;
    assert!(okta.writes().is_empty(), "{:?}", okta.writes());
});

/// Listing at the connector: users page by `Link` `rel="next"` (200 at a time), then the
/// deactivated ones; groups with their members, paged too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_follows_the_link_header() {
    use provisync_connectors::okta::PAGE_SIZE;
    let okta = FakeOkta::start().await;
    let c = connector(&okta, &okta.token);
    let total = PAGE_SIZE + 3;
    let mut made = Vec::new();
    for i in 0..total {
        made.push(
            okta.insert_user(json!({"login": format!("u{i}@example.test"),
            "email": format!("u{i}@example.test"), "firstName": "U", "lastName": format!("{i}")})),
        );
    }
    c.disable_user(&made[0]).await.unwrap();
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
    // Two pages of the plain listing, one of the deactivated users.
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), total);
    let first = seen
        .iter()
        .find(|u| u["id"] == made[0].as_str())
        .expect("the deactivated user is listed");
    assert_eq!(first["active"], false);
    assert_eq!(first["userName"], "u0@example.test");
    assert_eq!(
        seen.iter().filter(|u| u["active"] == true).count(),
        total - 1
    );
    let one = seen.iter().find(|u| u["id"] == made[1].as_str()).unwrap();
    assert_eq!(
        one,
        &json!({"id": made[1], "userName": "u1@example.test", "active": true,
                "name": {"givenName": "U", "familyName": "1"},
                "emails": [{"value": "u1@example.test", "primary": true}]})
    );

    let gid = c
        .create_group(&json!({"displayName": "Everyone here"}))
        .await
        .unwrap();
    c.add_members(&gid, &made).await.unwrap();
    let groups = c.list_groups(None).await.unwrap();
    assert_eq!(groups.next, None);
    assert_eq!(groups.resources.len(), 1);
    assert_eq!(groups.resources[0]["id"], gid.as_str());
    assert_eq!(groups.resources[0]["displayName"], "Everyone here");
    let members = groups.resources[0]["members"].as_array().unwrap();
    assert_eq!(members.len(), total);
    assert!(members.contains(&json!({"value": made[PAGE_SIZE]})));
    assert_eq!(
        c.kept(
            ResourceKind::Group,
            &json!({"displayName": "Everyone here", "externalId": "g"})
        ),
        json!({"displayName": "Everyone here"})
    );
    assert!(matches!(
        c.list_users(Some("page-2")).await,
        Err(ConnectorError::Refused { .. })
    ));
}

// Okta's quota headers pace delivery (#16): every answer of the stand-in carries
// `X-Rate-Limit-Limit: 600`, `-Remaining` and `-Reset` (epoch seconds, the minute's end),
// as Okta's do, so delivery spreads what is left of the minute over what is left of it:
// about 10 calls a second, from the first answers, without a single 429. The pace report
// shows the advertised rate.
on_every_backend!(okta_quota_headers_pace_delivery, |hub: Hub| async move {
    let okta = FakeOkta::start().await;
    let def = json!({"kind": "okta", "base_url": okta.base, "token": okta.token});
    let r = hub.admin(Method::PUT, "/targets/okta", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    let users = 25;
    for i in 0..users {
        let r = hub
            .post(
                "/Users",
                &json!({"schemas": [USER_SCHEMA], "userName": format!("q{i}@example.test"),
                "name": {"givenName": "Q", "familyName": format!("N{i}")},
                "emails": [{"value": format!("q{i}@example.test"), "primary": true}],
                "active": true}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let start = Instant::now();
    let _delivery = hub.run_delivery();
    eventually("every user on Okta", || async {
        (0..users).all(|i| okta.user(&format!("q{i}@example.test")).is_some())
    })
    .await;
    let took = start.elapsed();
    let pace = hub.admin(Method::GET, "/targets/okta/pace", None).await;
    let advertised = pace.body["advertised_rate"].as_f64().unwrap_or_default();
    // 600 a minute, a little under 60 s left: 10 to 11 calls a second.
    assert!((9.0..=12.0).contains(&advertised), "{}", pace.text);
    assert_eq!(pace.body["slow_downs"], 0, "{}", pace.text);
    // Unpaced, 25 creates to the stand-in take a few tens of milliseconds. Paced (the
    // first window's calls go before two answers agree on the rate), 2.0 s measured;
    // at least 1.5 s.
    assert!(
        took >= Duration::from_millis(1500),
        "25 creates in {took:?}: not paced"
    );
});
