//! The Salesforce connector against `FakeSalesforce` (tests/common/salesforce.rs): the
//! session cache and its refresh, the whole lifecycle (delete = deactivate), public
//! groups, error mapping, and delivery end to end through the hub.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use provisync_connectors::salesforce::SalesforceConnector;
use provisync_core::connector::{Connector, ConnectorError};
use provisync_core::target::SalesforceTarget;
use provisync_tests::salesforce::{FakeSalesforce, PROFILE_ID, RUN_AS_USER_ID, SalesforceFault};
use provisync_tests::{Backend, ENTERPRISE, Hub, PATCH_OP, USER_SCHEMA, counts_of, settle};
use reqwest::Method;
use serde_json::{Value, json};

fn defaults() -> BTreeMap<String, Value> {
    [
        ("ProfileId", PROFILE_ID),
        ("TimeZoneSidKey", "America/Los_Angeles"),
        ("LocaleSidKey", "en_US"),
        ("EmailEncodingKey", "UTF-8"),
        ("LanguageLocaleKey", "en_US"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), json!(v)))
    .collect()
}

fn target(sf: &FakeSalesforce, secret: &str) -> SalesforceTarget {
    SalesforceTarget {
        instance_url: sf.base.clone(),
        login_url: None,
        client_id: sf.client_id.clone(),
        client_secret: secret.to_string(),
        api_version: "v60.0".into(),
        defaults: defaults(),
    }
}

fn connector(sf: &FakeSalesforce) -> SalesforceConnector {
    SalesforceConnector::new(&target(sf, &sf.client_secret)).expect("connector")
}

fn alice(name: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA], "userName": name, "externalId": "hub-1",
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "displayName": "Alice Liddell", "active": true, "title": "Explorer",
        ENTERPRISE: {"department": "Wonderland"},
        "emails": [{"value": "alice@example.test", "primary": true}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_is_cached_and_refreshed() {
    let sf = FakeSalesforce::start().await;
    let c = connector(&sf);
    let about = c.test().await.expect("test");
    assert!(about.contains("14998 of 15000"), "{about}");
    for _ in 0..3 {
        c.find_user(&alice("nobody@acme.test")).await.unwrap();
    }
    // Salesforce gives no expires_in: the token is kept until a 401.
    assert_eq!(sf.state().token_requests, 1);
    sf.revoke_sessions();
    assert_eq!(c.find_user(&alice("nobody@acme.test")).await, Ok(None));
    assert_eq!(
        sf.state().token_requests,
        2,
        "INVALID_SESSION_ID: one new token"
    );
    // A session that times out (Salesforce's session timeout): the 401 gets a new one.
    sf.state().session_lifetime = Duration::from_secs(1);
    sf.revoke_sessions();
    c.find_user(&alice("nobody@acme.test")).await.unwrap();
    assert_eq!(sf.state().token_requests, 3);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(c.find_user(&alice("nobody@acme.test")).await, Ok(None));
    assert_eq!(sf.state().token_requests, 4);
    // A session that keeps failing: refused after one refresh, not a loop.
    let invalid = SalesforceFault::error(401, "INVALID_SESSION_ID", "Session expired or invalid");
    sf.fail(invalid.clone());
    sf.fail(invalid);
    match c.find_user(&alice("nobody@acme.test")).await {
        Err(ConnectorError::Refused {
            status: Some(401),
            reason,
        }) => {
            assert!(reason.contains("INVALID_SESSION_ID"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sf.state().token_requests, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_clearly() {
    let sf = FakeSalesforce::start().await;
    let wrong = SalesforceConnector::new(&target(&sf, "not-the-secret")).unwrap();
    match wrong.test().await {
        Err(ConnectorError::Refused {
            status: Some(400),
            reason,
        }) => {
            assert!(
                reason.contains("invalid_client: invalid client credentials"),
                "{reason}"
            );
            assert!(reason.contains(&sf.client_id), "{reason}");
            assert!(!reason.contains("not-the-secret"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    sf.state().no_run_as_user = true;
    match connector(&sf).test().await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(
                reason.contains("no client credentials user enabled"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // An API version the org does not have.
    sf.state().no_run_as_user = false;
    let mut t = target(&sf, &sf.client_secret);
    t.api_version = "v99.0".into();
    assert_eq!(
        SalesforceConnector::new(&t).unwrap().test().await,
        Err(ConnectorError::NotFound)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_lifecycle() {
    let sf = FakeSalesforce::start().await;
    let c = connector(&sf);
    assert!(c.create_detects_existing());

    let mut u = alice("alice@acme.test");
    u["FederationIdentifier"] = json!("alice-sso");
    let id = c.create_user(&u, Some("Wonderland1")).await.unwrap();
    assert!(id.starts_with("005"), "{id}");
    let got = sf.user("alice@acme.test").unwrap();
    for (k, v) in [
        ("Username", "alice@acme.test"),
        ("LastName", "Liddell"),
        ("FirstName", "Alice"),
        ("Email", "alice@example.test"),
        ("Alias", "aliddell"),
        ("CommunityNickname", "alice@acme.test"),
        ("Title", "Explorer"),
        ("Department", "Wonderland"),
        ("FederationIdentifier", "alice-sso"),
        ("ProfileId", PROFILE_ID),
        ("TimeZoneSidKey", "America/Los_Angeles"),
    ] {
        assert_eq!(got[k], v, "{k}");
    }
    assert_eq!(got["IsActive"], true);
    assert_eq!(sf.state().passwords[&id], "Wonderland1");

    // Existing Username (any case): Conflict; found by SOQL (quote escaped).
    match c.create_user(&alice("ALICE@acme.test"), None).await {
        Err(ConnectorError::Conflict(r)) => assert!(r.starts_with("DUPLICATE_USERNAME"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.find_user(&json!({"userName": "Alice@Acme.test"}))
            .await
            .unwrap(),
        Some(id.clone())
    );
    let ob = c
        .create_user(&alice("o'brien@acme.test"), None)
        .await
        .unwrap();
    assert_eq!(
        c.find_user(&json!({"userName": "o'brien@acme.test"}))
            .await
            .unwrap(),
        Some(ob)
    );
    assert!(
        sf.state().passwords.len() == 1,
        "no password made up for Salesforce"
    );

    // A required field nobody set: refused with Salesforce's reason and what to do.
    let mut t = target(&sf, &sf.client_secret);
    t.defaults.remove("ProfileId");
    let bare = SalesforceConnector::new(&t).unwrap();
    match bare.create_user(&alice("bob@acme.test"), None).await {
        Err(ConnectorError::Refused {
            status: Some(400),
            reason,
        }) => {
            assert!(reason.starts_with("REQUIRED_FIELD_MISSING: Required fields are missing: [ProfileId] (fields: ProfileId)"), "{reason}");
            assert!(reason.contains("defaults"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The mapping can set it too (a constant rule puts the field in the payload).
    let mut mapped = alice("bob@acme.test");
    mapped["ProfileId"] = json!(PROFILE_ID);
    bare.create_user(&mapped, None).await.unwrap();
    // A wrong profile id: FIELD_INTEGRITY_EXCEPTION, with the field.
    mapped["userName"] = json!("carol@acme.test");
    mapped["ProfileId"] = json!("001000000000000AAA");
    match bare.create_user(&mapped, None).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(
                reason.starts_with("FIELD_INTEGRITY_EXCEPTION: Profile ID")
                    && reason.ends_with("(fields: ProfileId)"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A user name that is not an address.
    match c.create_user(&alice("dave"), None).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.starts_with("INVALID_EMAIL_ADDRESS"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // Update: only what changed; then the password; a weak one is refused.
    let before = u.clone();
    let mut after = before.clone();
    after["title"] = Value::Null;
    after["name"]["familyName"] = json!("Pleasance");
    let n = sf.state().log.len();
    assert_eq!(
        c.update_user(&id, &after, Some(&before), Some("N3wpassword"))
            .await,
        Ok(None)
    );
    let got = sf.user("alice@acme.test").unwrap();
    assert_eq!(got["LastName"], "Pleasance");
    assert_eq!(got["Alias"], "apleasan");
    assert!(got.get("Title").is_none());
    assert_eq!(got["ProfileId"], PROFILE_ID, "defaults are not re-sent");
    assert_eq!(sf.state().passwords[&id], "N3wpassword");
    assert_eq!(
        sf.state().log[n..],
        [
            format!("PATCH /services/data/v60.0/sobjects/User/{id}"),
            format!("POST /services/data/v60.0/sobjects/User/{id}/password")
        ]
    );
    match c
        .update_user(&id, &after, Some(&after), Some("short"))
        .await
    {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.starts_with("INVALID_NEW_PASSWORD"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // Deactivate; delete is deactivation too (Salesforce users cannot be deleted).
    c.disable_user(&id).await.unwrap();
    assert_eq!(sf.user("alice@acme.test").unwrap()["IsActive"], false);
    let mut active = after.clone();
    active["active"] = json!(true);
    c.update_user(&id, &active, Some(&after), None)
        .await
        .unwrap();
    assert_eq!(sf.user("alice@acme.test").unwrap()["IsActive"], true);
    c.delete_user(&id).await.unwrap();
    assert_eq!(
        sf.user("alice@acme.test").unwrap()["IsActive"],
        false,
        "kept, inactive"
    );
    assert!(
        sf.state()
            .log
            .iter()
            .all(|l| !l.starts_with("DELETE /services/data/v60.0/sobjects/User"))
    );

    // Unknown users: NotFound.
    let ghost = "005000000000999AAA";
    assert_eq!(
        c.update_user(ghost, &after, None, None).await,
        Err(ConnectorError::NotFound)
    );
    assert_eq!(c.disable_user(ghost).await, Err(ConnectorError::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_memberships() {
    let sf = FakeSalesforce::start().await;
    let c = connector(&sf);
    let mut users = Vec::new();
    for n in ["u1@acme.test", "u2@acme.test", "u3@acme.test"] {
        users.push(c.create_user(&alice(n), None).await.unwrap());
    }
    let g = json!({"displayName": "R&D 'core'", "members": [{"value": "x"}]});
    assert_eq!(c.find_group(&g).await.unwrap(), None);
    let gid = c.create_group(&g).await.unwrap();
    assert!(gid.starts_with("00G"));
    let stored = sf.state().groups[&gid].clone();
    assert_eq!(stored["DeveloperName"], "R_D_core");
    assert_eq!(stored["Type"], "Regular");
    assert_eq!(c.find_group(&g).await.unwrap(), Some(gid.clone()));
    // The same developer name again: a conflict (the engine then finds it by name).
    assert!(matches!(
        c.create_group(&g).await,
        Err(ConnectorError::Conflict(_))
    ));

    c.add_members(&gid, &users).await.unwrap();
    c.add_members(&gid, &users[..1])
        .await
        .expect("DUPLICATE_VALUE is success");
    assert_eq!(sf.state().group_members.len(), 3);
    assert_eq!(sf.groups_of("u1@acme.test"), ["R&D 'core'"]);
    c.remove_members(&gid, &users[..2]).await.unwrap();
    c.remove_members(&gid, &users[..2])
        .await
        .expect("not a member any more is fine");
    assert!(sf.groups_of("u1@acme.test").is_empty());
    assert_eq!(sf.groups_of("u3@acme.test").len(), 1);
    match c.add_members(&gid, &["005000000000999AAA".into()]).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(
                reason.starts_with("INVALID_CROSS_REFERENCE_KEY"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }

    c.update_group(&gid, &json!({"displayName": "Research"}), Some(&g))
        .await
        .unwrap();
    assert_eq!(sf.state().groups[&gid]["Name"], "Research");
    c.delete_group(&gid).await.unwrap();
    assert!(sf.state().groups.is_empty());
    assert!(sf.state().group_members.is_empty());
    c.delete_group(&gid).await.expect("already gone is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_mapping() {
    let sf = FakeSalesforce::start().await;
    let c = connector(&sf);
    let id = c.create_user(&alice("eve@acme.test"), None).await.unwrap();

    // The org's API limit: retryable.
    sf.fail(SalesforceFault::limit_exceeded());
    match c.disable_user(&id).await {
        Err(ConnectorError::Retryable {
            status: Some(403),
            detail,
            ..
        }) => {
            assert_eq!(
                detail,
                "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."
            )
        }
        other => panic!("{other:?}"),
    }
    // 503 with Retry-After.
    sf.fail(SalesforceFault {
        status: 503,
        headers: vec![("Retry-After".into(), "9".into())],
        body: json!([{"errorCode": "SERVER_UNAVAILABLE", "message": "maintenance"}]),
    });
    match c.disable_user(&id).await {
        Err(ConnectorError::Retryable {
            status: Some(503),
            retry_after,
            detail,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(9)));
            assert_eq!(detail, "SERVER_UNAVAILABLE: maintenance");
        }
        other => panic!("{other:?}"),
    }
    c.disable_user(&id).await.unwrap();
    // A message that echoes our secret is scrubbed.
    sf.fail(SalesforceFault::error(
        400,
        "INVALID_FIELD",
        &format!("bad {}", sf.client_secret),
    ));
    match c.disable_user(&id).await {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert_eq!(reason, "INVALID_FIELD: bad ***")
        }
        other => panic!("{other:?}"),
    }
    // DELETE on a User is refused by Salesforce (the connector never sends it).
    let token = sf.state().tokens.keys().next().cloned().unwrap();
    let r = reqwest::Client::new()
        .delete(format!(
            "{}/services/data/v60.0/sobjects/User/{id}",
            sf.base
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(sf.state().users.contains_key(&id));
    // Off loopback, http is refused at construction.
    let mut t = target(&sf, "x");
    t.instance_url = "http://acme.my.salesforce.com".into();
    assert!(SalesforceConnector::new(&t).is_err());
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
/// provisioned (required fields from `defaults`, the SSO id from the mapping), updated,
/// grouped, deactivated, deleted (= deactivated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_through_the_hub() {
    let sf = FakeSalesforce::start().await;
    let Some(hub) = Hub::start(Backend::Embedded).await else {
        return;
    };
    let _delivery = hub.run_delivery();
    let def = json!({"kind": "salesforce", "instance_url": sf.base, "client_id": sf.client_id,
                     "client_secret": sf.client_secret, "api_version": "v60.0",
                     "defaults": defaults(),
                     "mapping": [{"target": "FederationIdentifier", "source": "userName"}]});
    let r = hub.admin(Method::PUT, "/targets/sfdc", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    assert!(!r.text.contains(&sf.client_secret), "{}", r.text);
    let r = hub.admin(Method::GET, "/targets/sfdc", None).await;
    assert_eq!(r.body["client_secret"], "***", "{}", r.text);
    assert_eq!(r.body["defaults"]["ProfileId"], PROFILE_ID);
    let r = hub.admin(Method::POST, "/targets/sfdc/test", None).await;
    assert_eq!(r.body["ok"], true, "{}", r.text);

    let grace = "grace@navy.test";
    let r = hub
        .post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": grace, "name": {"givenName": "Grace", "familyName": "Hopper"}, "title": "Rear Admiral", "emails": [{"value": "grace@example.test", "primary": true}], "active": true, "password": "Cobol1959x"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hub_id = r.id();
    eventually("grace on Salesforce, with her password", || async {
        sf.user(grace)
            .and_then(|u| u.get("Id").and_then(Value::as_str).map(str::to_string))
            .is_some_and(|id| sf.state().passwords.contains_key(&id))
    })
    .await;
    let u = sf.user(grace).unwrap();
    assert_eq!(u["Title"], "Rear Admiral");
    assert_eq!(u["FederationIdentifier"], grace);
    assert_eq!(u["Alias"], "ghopper");
    let sid = u["Id"].as_str().unwrap().to_string();
    assert_eq!(sf.state().passwords[&sid], "Cobol1959x");

    let r = hub
        .post("/Groups", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "navy", "members": [{"value": hub_id}]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    eventually("membership on Salesforce", || async {
        sf.groups_of(grace) == ["navy"]
    })
    .await;

    let r = hub
        .patch(&format!("/Users/{hub_id}"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "Commodore"}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("title on Salesforce", || async {
        sf.user(grace).is_some_and(|u| u["Title"] == "Commodore")
    })
    .await;

    let r = hub
        .patch(&format!("/Users/{hub_id}"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("deactivated on Salesforce", || async {
        sf.user(grace).is_some_and(|u| u["IsActive"] == false)
    })
    .await;
    let r = hub
        .patch(&format!("/Users/{hub_id}"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": true}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("reactivated on Salesforce", || async {
        sf.user(grace).is_some_and(|u| u["IsActive"] == true)
    })
    .await;

    // Deleted in the hub: deactivated on Salesforce, the record stays.
    let r = hub.delete(&format!("/Users/{hub_id}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    eventually("deleted (= deactivated) on Salesforce", || async {
        sf.user(grace).is_some_and(|u| u["IsActive"] == false)
    })
    .await;
    eventually("the delete in the audit log", || async {
        hub.admin(Method::GET, "/audit?target=sfdc", None)
            .await
            .text
            .contains("\"delete\"")
    })
    .await;
    let audit = hub.admin(Method::GET, "/audit?target=sfdc", None).await;
    assert!(!audit.text.contains(&sf.client_secret));
    assert!(!audit.text.contains("Cobol1959x"));
    let tokens: Vec<String> = sf.state().tokens.keys().cloned().collect();
    assert!(!tokens.is_empty());
    for t in tokens {
        assert!(!audit.text.contains(&t), "a token in the audit log");
    }
}

/// A target without the required defaults: the refusal is audited with Salesforce's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_required_fields_are_audited() {
    let sf = FakeSalesforce::start().await;
    let Some(hub) = Hub::start(Backend::Embedded).await else {
        return;
    };
    let _delivery = hub.run_delivery();
    let def = json!({"kind": "salesforce", "instance_url": sf.base, "client_id": sf.client_id,
                     "client_secret": sf.client_secret});
    let r = hub.admin(Method::PUT, "/targets/sfdc", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    let r = hub
        .post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "ada@acme.test", "name": {"familyName": "Lovelace"}, "emails": [{"value": "ada@acme.test"}]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    eventually("the refusal in the audit log", || async {
        hub.admin(Method::GET, "/audit?target=sfdc", None)
            .await
            .text
            .contains("REQUIRED_FIELD_MISSING")
    })
    .await;
    let text = hub
        .admin(Method::GET, "/audit?target=sfdc", None)
        .await
        .text;
    assert!(
        text.contains("Required fields are missing: [TimeZoneSidKey, LocaleSidKey, EmailEncodingKey, ProfileId, LanguageLocaleKey]"),
        "{text}"
    );
    assert!(!text.contains(&sf.client_secret));
    assert!(sf.state().users.is_empty());
}

/// The documented bodies: what Salesforce sends is understood, what the docs send is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_bodies() {
    use provisync_core::connector::http::vendor_error;
    let fx = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    for (body, code) in [
        (
            include_str!("fixtures/salesforce/error_required_field_missing.json"),
            "REQUIRED_FIELD_MISSING",
        ),
        (
            include_str!("fixtures/salesforce/error_duplicate_username.json"),
            "DUPLICATE_USERNAME",
        ),
        (
            include_str!("fixtures/salesforce/error_invalid_session.json"),
            "INVALID_SESSION_ID",
        ),
        (
            include_str!("fixtures/salesforce/error_request_limit.json"),
            "REQUEST_LIMIT_EXCEEDED",
        ),
        (
            include_str!("fixtures/salesforce/error_not_found.json"),
            "NOT_FOUND",
        ),
        (
            include_str!("fixtures/salesforce/error_field_integrity.json"),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            include_str!("fixtures/salesforce/error_delete_user.json"),
            "METHOD_NOT_ALLOWED",
        ),
    ] {
        let (c, m) = vendor_error(&fx(body));
        assert_eq!(c.as_deref(), Some(code));
        assert!(m.is_some_and(|m| !m.is_empty()), "{code}");
    }
    assert_eq!(
        vendor_error(&fx(include_str!("fixtures/salesforce/token_error.json"))),
        (
            Some("invalid_client".into()),
            Some("invalid client credentials".into())
        )
    );
    let tok = fx(include_str!("fixtures/salesforce/token_response.json"));
    assert_eq!(tok["token_type"], "Bearer");
    assert!(tok.get("expires_in").is_none(), "Salesforce does not say");
    let created = fx(include_str!("fixtures/salesforce/create_response.json"));
    assert_eq!(created["success"], true);
    let q = fx(include_str!("fixtures/salesforce/query_response.json"));
    assert_eq!(q["records"][0]["attributes"]["type"], "User");

    // The documented create body (with this org's profile) is accepted; the connector
    // finds the user, sets the documented password and deactivates it.
    let sf = FakeSalesforce::start().await;
    let c = connector(&sf);
    c.test().await.unwrap();
    let token = sf.state().tokens.keys().next().cloned().unwrap();
    let mut body = fx(include_str!("fixtures/salesforce/create_user_request.json"));
    body["ProfileId"] = json!(PROFILE_ID);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/services/data/v60.0/sobjects/User", sf.base))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let answer: Value = r.json().await.unwrap();
    for k in created.as_object().unwrap().keys() {
        assert!(answer.get(k).is_some(), "{k}");
    }
    let id = c
        .find_user(&json!({"userName": body["Username"]}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer["id"], id.as_str());
    let pw = fx(include_str!(
        "fixtures/salesforce/set_password_request.json"
    ));
    let user = json!({"userName": body["Username"], "name": {"familyName": "Doe", "givenName": "Jane"},
                      "emails": [{"value": body["Email"]}]});
    c.update_user(&id, &user, None, pw["NewPassword"].as_str())
        .await
        .unwrap();
    assert_eq!(sf.state().passwords[&id], "myNewPassword1234");
    // The documented body without its required fields: REQUIRED_FIELD_MISSING.
    let mut partial = body.clone();
    partial["Username"] = json!("other@acme.example.com");
    for k in ["ProfileId", "TimeZoneSidKey"] {
        partial.as_object_mut().unwrap().remove(k);
    }
    let r = http
        .post(format!("{}/services/data/v60.0/sobjects/User", sf.base))
        .bearer_auth(&token)
        .json(&partial)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    let documented = fx(include_str!(
        "fixtures/salesforce/error_required_field_missing.json"
    ));
    assert_eq!(e[0]["errorCode"], documented[0]["errorCode"]);
    let fields = |v: &Value| {
        let mut f: Vec<String> = v[0]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        f.sort();
        f
    };
    assert_eq!(fields(&e), fields(&documented));
}

/// A User record an admin made in the org (not through the hub).
fn org_user(id: &str, username: &str, user_type: &str) -> serde_json::Map<String, Value> {
    json!({"Id": id, "Username": username, "LastName": "Someone", "Email": username,
           "Alias": "someone", "TimeZoneSidKey": "GMT", "LocaleSidKey": "en_US",
           "EmailEncodingKey": "UTF-8", "ProfileId": PROFILE_ID, "LanguageLocaleKey": "en_US",
           "IsActive": true, "UserType": user_type})
    .as_object()
    .cloned()
    .unwrap_or_default()
}

/// Listing: every batch through `nextRecordsUrl` (the fake answers two records a batch),
/// standard users only, in the SCIM shape `kept` gives a delivered user; public groups
/// with their members' record ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_and_matches_kept() {
    let sf = FakeSalesforce::start().await;
    sf.state().batch_size = 2;
    let c = connector(&sf);
    let mut ids = Vec::new();
    for n in ["ada@acme.test", "bob@acme.test", "cy@acme.test"] {
        ids.push(c.create_user(&alice(n), None).await.unwrap());
    }
    // The org's own: the connected app's run-as user, the Automated Process user and a
    // Chatter Free user.
    {
        let mut st = sf.state();
        st.users.insert(
            RUN_AS_USER_ID.into(),
            org_user(RUN_AS_USER_ID, "integration@acme.test", "Standard"),
        );
        st.users.insert(
            "005AUTOPROC0001AAA".into(),
            org_user(
                "005AUTOPROC0001AAA",
                "autoproc@00d5g.test",
                "AutomatedProcess",
            ),
        );
        st.users.insert(
            "005CHATTER00001AAA".into(),
            org_user("005CHATTER00001AAA", "chatter@acme.test", "CsnOnly"),
        );
    }
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
    assert_eq!(pages, 2, "three standard users, two a batch");
    let mut listed_ids: Vec<String> = listed
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    listed_ids.sort_unstable();
    ids.sort_unstable();
    assert_eq!(listed_ids, ids);
    assert!(
        sf.state()
            .log
            .iter()
            .any(|l| l.starts_with("GET /services/data/v60.0/query/01g")),
        "the nextRecordsUrl was followed: {:?}",
        sf.state().log
    );
    let ada = listed
        .iter()
        .find(|u| u["userName"] == "ada@acme.test")
        .expect("ada listed");
    let kept = c.kept(provisync_scim::ResourceKind::User, &alice("ada@acme.test"));
    assert_eq!(
        kept,
        json!({"userName": "ada@acme.test", "name": {"givenName": "Alice", "familyName": "Liddell"},
               "active": true, "title": "Explorer", ENTERPRISE: {"department": "Wonderland"},
               "emails": [{"value": "alice@example.test", "primary": true}]})
    );
    assert!(
        !provisync_core::sync::reconcile::differs(&kept, ada, None),
        "{kept} vs {ada}"
    );
    let mut edited = ada.clone();
    edited["title"] = json!("Queen");
    assert!(provisync_core::sync::reconcile::differs(
        &kept, &edited, None
    ));
    // A locator expired (a reconcile resumed much later): the listing continues after
    // the last record read, neither failing nor starting over.
    let first = c.list_users(None).await.expect("first batch");
    sf.expire_query_locators();
    let rest = c
        .list_users(first.next.as_deref())
        .await
        .expect("after the expired locator");
    assert_eq!(rest.next, None);
    let mut again: Vec<String> = first
        .resources
        .iter()
        .chain(&rest.resources)
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    again.sort_unstable();
    assert_eq!(again, ids);
    // A locator elsewhere is not followed.
    match c
        .list_users(Some(
            "https://evil.example/services/data/v60.0/query/01gX-2",
        ))
        .await
    {
        Err(ConnectorError::Refused { reason, .. }) => {
            assert!(reason.contains("nextRecordsUrl"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // Public groups and their members (users and a nested group), three members a
    // group over two batches.
    let eng = c
        .create_group(&json!({"displayName": "eng"}))
        .await
        .unwrap();
    let ops = c
        .create_group(&json!({"displayName": "ops"}))
        .await
        .unwrap();
    let all = c
        .create_group(&json!({"displayName": "all"}))
        .await
        .unwrap();
    c.add_members(&eng, &ids).await.unwrap();
    c.add_members(&all, std::slice::from_ref(&eng))
        .await
        .unwrap();
    let mut groups = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = c.list_groups(cursor.as_deref()).await.expect("groups");
        groups.extend(page.resources);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(groups.len(), 3);
    let members = |id: &str| -> Vec<String> {
        let g = groups.iter().find(|g| g["id"] == id).expect("listed");
        let mut m: Vec<String> = g["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap().to_string())
            .collect();
        m.sort_unstable();
        m
    };
    assert_eq!(members(&eng), ids);
    assert_eq!(members(&all), std::slice::from_ref(&eng));
    assert!(members(&ops).is_empty());
    assert_eq!(
        groups.iter().find(|g| g["id"] == eng.as_str()).unwrap()["displayName"],
        "eng"
    );
    assert_eq!(
        c.kept(
            provisync_scim::ResourceKind::Group,
            &json!({"displayName": "eng", "externalId": "h"})
        ),
        json!({"displayName": "eng"})
    );
}

/// `(checked, created, updated, deactivated, orphaned, unchanged)` of a report's counts.
fn counts(c: &Value) -> [u64; 6] {
    counts_of(
        c,
        [
            "checked",
            "created",
            "updated",
            "deactivated",
            "orphaned",
            "unchanged",
        ],
    )
}

/// Salesforce's writes settle: none for a moment.
async fn quiet(sf: &FakeSalesforce) {
    settle(|| sf.state().writes.len()).await;
}

/// Reconcile through the hub (`POST /admin/sync`, `reconcile: true`) of a `manual`
/// target, on both stores: what the hub delivered is no drift (zero writes); drift behind
/// the hub's back (a first name edited, an account deactivated — Salesforce users cannot
/// be deleted —, a stranger added, a hub user never sent) is repaired with exactly those
/// writes (orphans: `deactivate`), the org's system users untouched; a second reconcile
/// writes nothing.
async fn reconcile_repairs_only_the_drift(backend: Backend) {
    let sf = FakeSalesforce::start().await;
    let Some(hub) = Hub::start(backend).await else {
        return;
    };
    let _delivery = hub.run_delivery();
    sf.state().batch_size = 2;
    let def = json!({"kind": "salesforce", "instance_url": sf.base, "client_id": sf.client_id,
                     "client_secret": sf.client_secret, "api_version": "v60.0",
                     "defaults": defaults(), "mode": "manual", "orphans": "deactivate",
                     "mapping": [{"target": "FederationIdentifier", "source": "userName"}]});
    let r = hub.admin(Method::PUT, "/targets/sfdc", Some(&def)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    let person = |n: &str, given: &str, family: &str| {
        json!({"schemas": [USER_SCHEMA], "userName": format!("{n}@acme.test"),
            "name": {"givenName": given, "familyName": family}, "title": "Engineer",
            ENTERPRISE: {"department": "R&D"},
            "emails": [{"value": format!("{n}@example.test"), "type": "work", "primary": true}],
            "active": true})
    };
    for (n, given, family) in [
        ("ada", "Ada", "Lovelace"),
        ("grace", "Grace", "Hopper"),
        ("linus", "Linus", "Torvalds"),
    ] {
        let r = hub.post("/Users", &person(n, given, family)).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // Manual: sent on request.
    let r = hub
        .admin(Method::POST, "/sync", Some(&json!({"target": "sfdc"})))
        .await;
    assert_eq!(r.body["queued"], 3, "{}", r.text);
    eventually("three users on Salesforce", || async {
        ["ada", "grace", "linus"]
            .iter()
            .all(|n| sf.user(&format!("{n}@acme.test")).is_some())
    })
    .await;
    quiet(&sf).await;

    // Just delivered: in sync, nothing written.
    let mark = sf.state().writes.len();
    let c = hub.reconcile("sfdc").await;
    assert_eq!(counts(&c), [3, 0, 0, 0, 0, 3], "{c}");
    quiet(&sf).await;
    assert_eq!(
        sf.state().writes[mark..],
        [],
        "a target in sync gets no write"
    );

    // Drift behind the hub's back, and a hub user never sent (manual target).
    let id_of = |n: &str| -> String {
        sf.user(&format!("{n}@acme.test")).unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (grace, linus) = (id_of("grace"), id_of("linus"));
    {
        let mut st = sf.state();
        st.users
            .get_mut(&grace)
            .unwrap()
            .insert("FirstName".into(), json!("Amazing"));
        st.users
            .get_mut(&linus)
            .unwrap()
            .insert("IsActive".into(), json!(false));
        st.users.insert(
            "005STRANGER001AAA".into(),
            org_user("005STRANGER001AAA", "mallory@acme.test", "Standard"),
        );
        st.users.insert(
            "005AUTOPROC0001AAA".into(),
            org_user(
                "005AUTOPROC0001AAA",
                "autoproc@00d5g.test",
                "AutomatedProcess",
            ),
        );
        st.users.insert(
            RUN_AS_USER_ID.into(),
            org_user(RUN_AS_USER_ID, "integration@acme.test", "Standard"),
        );
    }
    let r = hub
        .post("/Users", &person("margaret", "Margaret", "Hamilton"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sf.user("margaret@acme.test").is_none(), "manual: not sent");

    let mark = sf.state().writes.len();
    let c = hub.reconcile("sfdc").await;
    // Listed: ada, grace, linus, the stranger (deactivated here); margaret missing.
    assert_eq!(counts(&c), [4, 1, 2, 1, 1, 1], "{c}");
    eventually("the drift repaired", || async {
        sf.user("grace@acme.test")
            .is_some_and(|u| u["FirstName"] == "Grace")
            && sf
                .user("linus@acme.test")
                .is_some_and(|u| u["IsActive"] == true)
            && sf.user("margaret@acme.test").is_some()
    })
    .await;
    quiet(&sf).await;
    let writes = sf.state().writes[mark..].to_vec();
    let mut paths: Vec<String> = writes.iter().map(|(p, _)| p.clone()).collect();
    paths.sort_unstable();
    let mut want = vec![
        format!("PATCH /services/data/v60.0/sobjects/User/{grace}"),
        format!("PATCH /services/data/v60.0/sobjects/User/{linus}"),
        "PATCH /services/data/v60.0/sobjects/User/005STRANGER001AAA".to_string(),
        "POST /services/data/v60.0/sobjects/User".to_string(),
    ];
    want.sort_unstable();
    assert_eq!(paths, want, "{writes:?}");
    let body = |id: &str| {
        writes
            .iter()
            .find(|(p, _)| p.ends_with(id))
            .map(|(_, b)| b.clone())
            .unwrap()
    };
    let g = body(&grace);
    assert_eq!(g["FirstName"], "Grace", "{g}");
    for unchanged in [
        "Username",
        "LastName",
        "Email",
        "Title",
        "FederationIdentifier",
    ] {
        assert!(g.get(unchanged).is_none(), "{unchanged} was not drift: {g}");
    }
    assert_eq!(body(&linus), json!({"IsActive": true}));
    assert_eq!(body("005STRANGER001AAA"), json!({"IsActive": false}));
    assert_eq!(sf.state().users["005AUTOPROC0001AAA"]["IsActive"], true);
    assert_eq!(
        sf.state().users[RUN_AS_USER_ID]["IsActive"],
        true,
        "the run-as user"
    );
    assert_eq!(
        sf.user("margaret@acme.test").unwrap()["FederationIdentifier"],
        "margaret@acme.test"
    );

    // Repaired: a second reconcile writes nothing (the stranger stays listed, inactive).
    let mark = sf.state().writes.len();
    let c = hub.reconcile("sfdc").await;
    assert_eq!(counts(&c), [5, 0, 0, 0, 1, 4], "{c}");
    quiet(&sf).await;
    assert_eq!(sf.state().writes[mark..], [], "in sync again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_repairs_only_the_drift_embedded() {
    reconcile_repairs_only_the_drift(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_repairs_only_the_drift_dynamodb() {
    reconcile_repairs_only_the_drift(Backend::DynamoDb).await;
}
