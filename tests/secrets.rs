//! Secrets are write-only (issues 13.10 and 20.3), over the admin API on both stores: a
//! `GET` shows `"***"`, and that document sent back with `PUT` (or without its secret
//! field, or edited with a JSON merge patch `PATCH`) keeps the stored secret. Each kind is
//! proven against its own peer, which accepts only the right credential: the connection
//! test (and, for the webhook site, a signed delivery) still authenticates afterwards.

use std::time::Duration;

use provisync_tests::kinds::{EveryKind, SITE_SECRET};
use provisync_tests::peers::ScimPeer;
use provisync_tests::site::signed_headers;
use provisync_tests::{ADMIN_TOKEN, Hub, Resp, USER_SCHEMA, on_every_backend};
use reqwest::Method;
use serde_json::{Value, json};

const MERGE_PATCH: &str = "application/merge-patch+json";

async fn merge_patch(hub: &Hub, path: &str, patch: &Value) -> Resp {
    let r = hub
        .client
        .patch(hub.admin_url(path))
        .bearer_auth(ADMIN_TOKEN)
        .header("Content-Type", MERGE_PATCH)
        .body(patch.to_string())
        .send()
        .await
        .expect("request");
    Resp::from(r).await
}

/// `POST /admin/targets/{id}/test` answers `ok`.
async fn authenticates(hub: &Hub, id: &str, when: &str) {
    let r = hub
        .admin(Method::POST, &format!("/targets/{id}/test"), None)
        .await;
    assert_eq!(r.status, 200, "{id} {when}: {}", r.text);
    assert_eq!(r.body["ok"], true, "{id} {when}: {}", r.text);
}

fn no_secret_in(r: &Resp, peers: &EveryKind) {
    for s in peers.secrets() {
        assert!(!r.text.contains(&s), "a secret in an answer: {}", r.text);
    }
}

/// The JSON field of a kind's secret, as `GET` shows it.
fn secret_shown(kind: &str, doc: &Value) -> Value {
    match kind {
        "scim" => doc["auth"]["bearer"].clone(),
        "crowd" => doc["password"].clone(),
        "okta" => doc["token"].clone(),
        "entra" | "salesforce" => doc["client_secret"].clone(),
        "webhook" => doc["secret"].clone(),
        _ => Value::Null,
    }
}

on_every_backend!(every_kind_keeps_its_secret, |hub: Hub| async move {
    let Some(peers) = EveryKind::start().await else {
        return;
    };
    for (id, def) in peers.definitions() {
        let r = hub
            .admin(Method::PUT, &format!("/targets/{id}"), Some(&def))
            .await;
        assert_eq!(r.status, 201, "{id}: {}", r.text);
        authenticates(&hub, id, "as created").await;

        // GET -> PUT of the very same document.
        let shown = hub
            .admin(Method::GET, &format!("/targets/{id}"), None)
            .await;
        no_secret_in(&shown, &peers);
        if id != "cognito" {
            assert_eq!(secret_shown(id, &shown.body), "***", "{id}: {}", shown.text);
        }
        let r = hub
            .admin(Method::PUT, &format!("/targets/{id}"), Some(&shown.body))
            .await;
        assert_eq!(r.status, 200, "{id}: {}", r.text);
        no_secret_in(&r, &peers);
        authenticates(&hub, id, "after GET then PUT").await;

        // The document without its secret field: the stored one is kept too.
        let mut without = shown.body.clone();
        if let Some(field) = provisync_core::target::TargetConfig::secret_field(id) {
            without.as_object_mut().unwrap().remove(field);
        }
        let r = hub
            .admin(Method::PUT, &format!("/targets/{id}"), Some(&without))
            .await;
        assert_eq!(r.status, 200, "{id}: {}", r.text);
        authenticates(&hub, id, "after a PUT without the secret").await;

        // A merge patch of one field: that field changes, the secret stays.
        let r = merge_patch(
            &hub,
            &format!("/targets/{id}"),
            &json!({"scope_filter": "active eq true"}),
        )
        .await;
        assert_eq!(r.status, 200, "{id}: {}", r.text);
        no_secret_in(&r, &peers);
        let after = hub
            .admin(Method::GET, &format!("/targets/{id}"), None)
            .await;
        assert_eq!(after.body["scope_filter"], "active eq true", "{id}");
        let mut expected = shown.body.clone();
        expected["scope_filter"] = json!("active eq true");
        assert_eq!(after.body, expected, "{id}: only the patched field changed");
        authenticates(&hub, id, "after PATCH").await;

        // The placeholder where nothing is stored: refused, naming the field.
        if id != "cognito" {
            let mut copy = shown.body.clone();
            copy.as_object_mut().unwrap().remove("id");
            let r = hub
                .admin(Method::PUT, &format!("/targets/{id}-new"), Some(&copy))
                .await;
            assert_eq!(r.status, 400, "{id}: {}", r.text);
            assert!(r.text.contains("a new target has none"), "{id}: {}", r.text);
            assert!(r.body["field"].as_str().is_some(), "{id}: {}", r.text);
            let r = hub
                .admin(Method::GET, &format!("/targets/{id}-new"), None)
                .await;
            assert_eq!(r.status, 404, "{id}: nothing stored: {}", r.text);
        }
    }

    // The site's secret signs what it receives: a delivery still verifies.
    let _delivery = hub.run_delivery();
    let r = hub
        .post(
            "/Users",
            // Active: every target is now scoped to `active eq true`, the site too.
            &json!({"schemas": [USER_SCHEMA], "userName": "kept@example.org", "active": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while peers.site.received().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = peers.site.received();
    assert_eq!(got.len(), 1, "the site received the user");
    assert_eq!(got[0].envelope["data"]["userName"], "kept@example.org");
    assert_eq!(
        peers.site.bad_signatures(),
        0,
        "signed with the kept secret"
    );
});

on_every_backend!(kept_secrets_never_follow_a_new_url, |hub: Hub| async move {
    let def =
        json!({"kind": "okta", "base_url": "https://dev-1.okta.com", "token": "okta-token-1"});
    let r = hub.admin(Method::PUT, "/targets/okta", Some(&def)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Another origin with the stored token: refused, whether by PUT or by PATCH.
    let moved = json!({"kind": "okta", "base_url": "https://evil.example", "token": "***"});
    let r = hub.admin(Method::PUT, "/targets/okta", Some(&moved)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["field"], "token", "{}", r.text);
    assert!(r.text.contains("give the secret again"), "{}", r.text);
    let r = merge_patch(
        &hub,
        "/targets/okta",
        &json!({"base_url": "https://evil.example"}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // A new path on the same origin keeps it; a new origin with a new token is fine.
    let r = merge_patch(
        &hub,
        "/targets/okta",
        &json!({"base_url": "https://dev-1.okta.com/"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = merge_patch(
        &hub,
        "/targets/okta",
        &json!({"base_url": "https://dev-2.okta.com", "token": "okta-token-2"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["base_url"], "https://dev-2.okta.com");
    assert_eq!(r.body["token"], "***");

    // PATCH speaks JSON merge patch only, on what exists, without changing the kind.
    let r = hub
        .admin(
            Method::PATCH,
            "/targets/okta",
            Some(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.text);
    assert_eq!(r.header("accept-patch"), Some(MERGE_PATCH));
    let r = merge_patch(&hub, "/targets/nobody", &json!({"enabled": false})).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = merge_patch(&hub, "/targets/okta", &json!({"kind": "scim"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = merge_patch(&hub, "/targets/okta", &json!({"mode": "sometimes"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    // `null` removes a member (RFC 7396): a required one cannot go.
    let r = merge_patch(&hub, "/targets/okta", &json!({"token": null})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = merge_patch(&hub, "/targets/okta", &json!({"enabled": false})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["enabled"], false);
});

async fn webhook(hub: &Hub, source: &str, secret: &str, user_name: &str) -> u16 {
    let body = json!({"type": "user.upsert", "occurred_at": chrono::Utc::now().to_rfc3339(),
        "data": {"externalId": user_name, "userName": user_name}})
    .to_string()
    .into_bytes();
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let mut req = hub
        .client
        .post(format!("http://{}/webhooks/{source}", hub.addr))
        .header("content-type", "application/json");
    for (k, v) in signed_headers(secret, &id, &body) {
        req = req.header(k, v);
    }
    req.body(body)
        .send()
        .await
        .expect("webhook")
        .status()
        .as_u16()
}

on_every_backend!(sources_keep_their_secrets, |hub: Hub| async move {
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let def = json!({"secret": SITE_SECRET, "direction": "bidirectional", "user_sync": true,
        "pull": {"kind": "scim", "base_url": peer.base, "auth": {"bearer": peer.token}}});
    let r = hub.admin(Method::PUT, "/sources/site", Some(&def)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        webhook(&hub, "site", SITE_SECRET, "a@example.org").await,
        202
    );

    // GET -> PUT of the same document (today's 400), then without the secret fields.
    let shown = hub.admin(Method::GET, "/sources/site", None).await;
    assert_eq!(shown.body["secrets"], json!(["***"]), "{}", shown.text);
    assert_eq!(
        shown.body["pull"]["auth"]["bearer"], "***",
        "{}",
        shown.text
    );
    let r = hub
        .admin(Method::PUT, "/sources/site", Some(&shown.body))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        webhook(&hub, "site", SITE_SECRET, "b@example.org").await,
        202
    );
    let mut without = shown.body.clone();
    without.as_object_mut().unwrap().remove("secrets");
    without["pull"].as_object_mut().unwrap().remove("auth");
    let r = hub
        .admin(Method::PUT, "/sources/site", Some(&without))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        webhook(&hub, "site", SITE_SECRET, "c@example.org").await,
        202
    );
    // The pull credentials still open the peer.
    let (s, b) = peer
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "pulled"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let r = hub
        .admin(Method::POST, "/schedule/run?budget=20", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let pulled = &r.body["pulled"][0];
    assert!(pulled.get("error").is_none(), "{}", r.text);
    assert_eq!(pulled["failed"], 0, "{}", r.text);
    assert!(pulled["fetched"].as_u64() >= Some(1), "{}", r.text);

    // A rotation by merge patch: the stored secret kept, a second one added.
    let second = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=";
    let r = merge_patch(&hub, "/sources/site", &json!({"secrets": ["***", second]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["secrets"], json!(["***", "***"]), "{}", r.text);
    assert_eq!(
        webhook(&hub, "site", SITE_SECRET, "d@example.org").await,
        202
    );
    assert_eq!(webhook(&hub, "site", second, "e@example.org").await, 202);
    // One field, secrets untouched; then the old secret dropped.
    let r = merge_patch(&hub, "/sources/site", &json!({"entity_types": ["node"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["entity_types"], json!(["node"]));
    assert_eq!(
        webhook(&hub, "site", SITE_SECRET, "f@example.org").await,
        202
    );
    let r = merge_patch(&hub, "/sources/site", &json!({"secrets": [second]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        webhook(&hub, "site", SITE_SECRET, "g@example.org").await,
        401
    );
    assert_eq!(webhook(&hub, "site", second, "h@example.org").await, 202);

    // The placeholder where there is nothing to keep.
    let r = merge_patch(&hub, "/sources/site", &json!({"secrets": ["***", "***"]})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["field"], "secrets[1]", "{}", r.text);
    let r = hub
        .admin(
            Method::PUT,
            "/sources/fresh",
            Some(&json!({"secret": "***"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("a new source has none"), "{}", r.text);
    // The pull credentials never follow a new pull URL.
    let r = merge_patch(
        &hub,
        "/sources/site",
        &json!({"pull": {"base_url": "https://idp.example/scim/v2"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["field"], "pull.auth.bearer", "{}", r.text);
});
