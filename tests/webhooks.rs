//! Signed webhooks in and out, end to end over loopback HTTP: sources registered through
//! the admin API, payloads signed with the official test-vector secret by an independent
//! HMAC and by Python's `standardwebhooks`, refusals with their codes (and nothing
//! stored), a real listener verifying what the hub sends, a site that is gone, and two
//! bidirectional sites that must settle.

use std::time::{Duration, Instant};

use provisync_tests::site::{Site, post, sign, signed_headers};
use provisync_tests::{Backend, Hub, PATCH_OP, eventually, on_every_backend, q};
use reqwest::Method;
use serde_json::{Value, json};

/// The Standard Webhooks reference test secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another one (32 bytes) for the sites' own target secrets.
const SECRET_B: &str = "whsec_dGhpcyBpcyBhbm90aGVyIGtleSBvZiAyNCsgYnl0ZXM=";
const SECRET_C: &str = "whsec_c2l0ZSBiJ3Mgc2VjcmV0LCAzMiBieXRlcyBsb25nISE=";

fn hook(hub: &Hub, source: &str) -> String {
    format!("http://{}/webhooks/{source}", hub.addr)
}

async fn add_source(hub: &Hub, id: &str, body: Value) {
    let r = hub
        .admin(Method::PUT, &format!("/sources/{id}"), Some(&body))
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    assert!(!r.text.contains("whsec_"), "secret echoed: {}", r.text);
}

async fn add_site_target(hub: &Hub, id: &str, site: &Site, secret: &str, extra: Value) {
    let mut body = json!({"kind": "webhook", "url": site.url(), "secret": secret});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = hub
        .admin(Method::PUT, &format!("/targets/{id}"), Some(&body))
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    assert!(!r.text.contains(secret), "target secret echoed: {}", r.text);
}

fn envelope(kind: &str, data: Value) -> Value {
    json!({"type": kind, "occurred_at": chrono::Utc::now().to_rfc3339(), "data": data})
}

/// Posts an envelope signed now with `secret`, under a fresh delivery id.
async fn send(hub: &Hub, source: &str, secret: &str, env: &Value) -> (u16, Value) {
    let body = env.to_string().into_bytes();
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    post(
        &hub.client,
        &hook(hub, source),
        &signed_headers(secret, &id, &body),
        body,
    )
    .await
}

async fn users_named(hub: &Hub, user_name: &str) -> Vec<Value> {
    let r = hub
        .get(&format!(
            "/Users?filter={}",
            q(&format!("userName eq \"{user_name}\""))
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.resources()
}

async fn audit(hub: &Hub, query: &str) -> Vec<Value> {
    let r = hub
        .admin(Method::GET, &format!("/audit?{query}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["entries"].as_array().cloned().unwrap_or_default()
}

fn alice(site_id: &str) -> Value {
    json!({"externalId": site_id, "userName": "alice@example.com",
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "emails": [{"value": "alice@example.com", "primary": true}]})
}

on_every_backend!(signed_user_reaches_scim_and_audit, |hub: Hub| async move {
    add_source(
        &hub,
        "drupal-main",
        json!({"secret": SECRET, "user_sync": true}),
    )
    .await;
    // The admin API shows the source, redacted.
    let r = hub.admin(Method::GET, "/sources/drupal-main", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["secrets"], json!(["***"]));
    assert_eq!(r.body["direction"], "push");

    let (status, body) = send(
        &hub,
        "drupal-main",
        SECRET,
        &envelope("user.upsert", alice("7")),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "applied");
    let users = users_named(&hub, "alice@example.com").await;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["name"]["givenName"], "Alice");
    let entries = audit(&hub, "target=drupal-main").await;
    assert!(
        entries.iter().any(|e| e["status"] == "delivered"
            && e["resource_id"] == users[0]["id"]
            && e["detail"].as_str().unwrap_or("").contains("user.upsert")),
        "{entries:?}"
    );
    // Delete through the link (the site's id).
    let (status, _) = send(
        &hub,
        "drupal-main",
        SECRET,
        &envelope("user.delete", json!({"externalId": "7"})),
    )
    .await;
    assert_eq!(status, 202);
    assert!(users_named(&hub, "alice@example.com").await.is_empty());
});

on_every_backend!(
    refusals_have_their_codes_and_store_nothing,
    |hub: Hub| async move {
        add_source(
            &hub,
            "site-a",
            json!({"secrets": [SECRET_B, SECRET], "user_sync": true,
            "entity_types": ["node"], "config_prefixes": ["shared."]}),
        )
        .await;
        add_source(&hub, "no-users", json!({"secret": SECRET})).await;
        add_source(
        &hub,
        "pull-only",
        json!({"direction": "pull", "secret": SECRET,
            "pull": {"kind": "scim", "base_url": "http://127.0.0.1:9/scim/v2", "auth": {"bearer": "t0ken-value"}}}),
    )
    .await;
        let env = envelope("user.upsert", alice("1"));
        let body = env.to_string().into_bytes();
        let url = hook(&hub, "site-a");
        let now = chrono::Utc::now().timestamp();

        // Tampered body: 401.
        let mut tampered = body.clone();
        let pos = tampered.len() - 3;
        tampered[pos] ^= 1;
        let h = signed_headers(SECRET, "msg_t1", &body);
        assert_eq!(post(&hub.client, &url, &h, tampered).await.0, 401);
        // Missing signature: 401.
        assert_eq!(post(&hub.client, &url, &h[..2], body.clone()).await.0, 401);
        // Signed with a secret the source does not have: 401.
        let h = signed_headers(SECRET_C, "msg_t2", &body);
        assert_eq!(post(&hub.client, &url, &h, body.clone()).await.0, 401);
        // Out of the window (10 minutes old): 401, even correctly signed.
        let old = now - 600;
        let h = vec![
            ("webhook-id", "msg_t3".to_string()),
            ("webhook-timestamp", old.to_string()),
            ("webhook-signature", sign(SECRET, "msg_t3", old, &body)),
        ];
        let (status, err) = post(&hub.client, &url, &h, body.clone()).await;
        assert_eq!(status, 401, "{err}");
        assert!(err["error"].as_str().unwrap().contains("window"), "{err}");
        // Unknown source: 404. Too large: 413.
        let h = signed_headers(SECRET, "msg_t4", &body);
        assert_eq!(
            post(&hub.client, &hook(&hub, "nobody"), &h, body.clone())
                .await
                .0,
            404
        );
        let big = vec![b' '; 1024 * 1024 + 1];
        let h = signed_headers(SECRET, "msg_t5", &big);
        assert_eq!(post(&hub.client, &url, &h, big).await.0, 413);
        assert!(users_named(&hub, "alice@example.com").await.is_empty());

        // Privilege escalation: roles, active, password without allowed_fields: 403.
        for (field, value) in [
            ("roles", json!([{"value": "administrator"}])),
            ("active", json!(true)),
            ("password", json!("s3cret-pass")),
            ("groups", json!([{"value": "admins"}])),
        ] {
            let mut data = alice("1");
            data[field] = value;
            let (status, err) = send(&hub, "site-a", SECRET, &envelope("user.upsert", data)).await;
            assert_eq!(status, 403, "{field}: {err}");
            assert!(err["error"].as_str().unwrap().contains(field), "{err}");
            assert!(!err.to_string().contains("s3cret-pass"));
        }
        assert!(users_named(&hub, "alice@example.com").await.is_empty());
        // Entity type not allowed, configuration outside the prefixes: 403, nothing kept.
        let (status, _) = send(
            &hub,
            "site-a",
            SECRET,
            &envelope(
                "entity.upsert",
                json!({"entity_type": "user_role", "uuid": "r1", "fields": {"label": "admin"}}),
            ),
        )
        .await;
        assert_eq!(status, 403);
        let (status, _) = send(
            &hub,
            "site-a",
            SECRET,
            &envelope(
                "config.set",
                json!({"name": "system.site", "value": {"name": "Hacked"}}),
            ),
        )
        .await;
        assert_eq!(status, 403);
        let r = hub.admin(Method::GET, "/config", None).await;
        assert_eq!(r.body["config"], json!([]), "{}", r.text);
        let r = hub.admin(Method::GET, "/entities", None).await;
        assert_eq!(r.body["entities"], json!([]), "{}", r.text);
        // user_sync off; a pull-only source: 403.
        assert_eq!(
            send(&hub, "no-users", SECRET, &env).await.0,
            403,
            "user_sync off"
        );
        assert_eq!(send(&hub, "pull-only", SECRET, &env).await.0, 403);
        assert!(users_named(&hub, "alice@example.com").await.is_empty());
        // Malformed envelopes: 400 (after verification).
        for bad in [
            json!({"type": "user.frobnicate", "occurred_at": "2025-01-01T00:00:00Z", "data": {}}),
            json!({"type": "user.upsert", "occurred_at": "yesterday", "data": alice("1")}),
            json!({"type": "user.upsert", "occurred_at": "2025-01-01T00:00:00Z", "data": {"userName": "x"}}),
            json!([1, 2]),
        ] {
            assert_eq!(send(&hub, "site-a", SECRET, &bad).await.0, 400, "{bad}");
        }

        // Accepted, then replayed: 202 both times, applied once.
        let h = signed_headers(SECRET, "msg_once", &body);
        let (status, first) = post(&hub.client, &url, &h, body.clone()).await;
        assert_eq!((status, first["status"].as_str()), (202, Some("applied")));
        let (status, again) = post(&hub.client, &url, &h, body.clone()).await;
        assert_eq!((status, again["status"].as_str()), (202, Some("replay")));
        assert_eq!(users_named(&hub, "alice@example.com").await.len(), 1);
        // Stale: an older change to the same user is recorded, not applied.
        let mut older = alice("1");
        older["name"]["givenName"] = json!("Old");
        // (an hour old: inside the window of accepted `occurred_at`, older than the one applied)
        let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let stale = json!({"type": "user.upsert", "occurred_at": an_hour_ago, "data": older});
        let (status, r) = send(&hub, "site-a", SECRET, &stale).await;
        assert_eq!((status, r["status"].as_str()), (202, Some("stale")));
        assert_eq!(
            users_named(&hub, "alice@example.com").await[0]["name"]["givenName"],
            "Alice"
        );

        // Every refusal is in the audit log with its reason, without secrets.
        let refused = audit(&hub, "status=refused&limit=100").await;
        let text = serde_json::to_string(&refused).unwrap();
        for reason in [
            "signature",
            "window",
            "allowed_fields",
            "entity_types",
            "config_prefixes",
            "user_sync",
            "pull-only",
            "envelope",
        ] {
            assert!(
                text.contains(reason),
                "no refusal mentioning {reason}: {text}"
            );
        }
        assert!(!text.contains("whsec_") && !text.contains("s3cret-pass"));
    }
);

on_every_backend!(github_scheme_and_seeding_export, |hub: Hub| async move {
    // GitHub's documentation secret; the signature computed by the independent HMAC.
    let secret = "It's a Secret to Everybody";
    add_source(
        &hub,
        "gh-style",
        json!({"scheme": "github", "secret": secret, "entity_types": ["node"],
            "config_prefixes": ["shared."]}),
    )
    .await;
    let env = envelope(
        "entity.upsert",
        json!({"entity_type": "node", "uuid": "11111111-2222", "langcode": "en",
            "fields": {"title": "Hello"}}),
    );
    let body = env.to_string().into_bytes();
    let sig = format!(
        "sha256={}",
        provisync_tests::site::hmac_sha256(secret.as_bytes(), &body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let h = vec![
        ("x-hub-signature-256", sig.clone()),
        ("x-github-delivery", "72d3162e-cc78-11e3".to_string()),
    ];
    let (status, r) = post(&hub.client, &hook(&hub, "gh-style"), &h, body.clone()).await;
    assert_eq!(status, 202, "{r}");
    let bad = vec![
        ("x-hub-signature-256", sig.replace('a', "b")),
        ("x-github-delivery", "72d3162e-cc78-11e4".to_string()),
    ];
    assert_eq!(
        post(&hub.client, &hook(&hub, "gh-style"), &bad, body)
            .await
            .0,
        401
    );
    // A new site is seeded from the export.
    let r = hub
        .admin(Method::GET, "/entities?entity_type=node", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let list = r.body["entities"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["fields"]["title"], "Hello");
    assert_eq!(list[0]["source"], "gh-style");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_standardwebhooks_signs_what_the_hub_accepts() {
    let Some(venv) = std::env::var_os("PROVISYNC_TEST_VENV").filter(|v| !v.is_empty()) else {
        assert!(
            std::env::var_os("PROVISYNC_REQUIRE_PEERS").is_none(),
            "PROVISYNC_TEST_VENV is not set but PROVISYNC_REQUIRE_PEERS is"
        );
        eprintln!("skipped: PROVISYNC_TEST_VENV not set (run `make test`)");
        return;
    };
    let hub = Hub::start(Backend::Embedded).await.expect("hub");
    add_source(
        &hub,
        "py-site",
        json!({"secret": SECRET, "user_sync": true}),
    )
    .await;
    let env = envelope("user.upsert", alice("py-1"));
    let body = env.to_string();
    let id = "msg_python_1";
    let ts = chrono::Utc::now().timestamp();
    // The reference library signs; we only carry its answer.
    let script = r#"
import sys, datetime
from standardwebhooks.webhooks import Webhook
secret, msg_id, ts, body = sys.argv[1:5]
wh = Webhook(secret)
print(wh.sign(msg_id, datetime.datetime.fromtimestamp(int(ts), tz=datetime.timezone.utc), body))
"#;
    let python = std::path::Path::new(&venv).join("bin/python");
    let out = std::process::Command::new(python)
        .args(["-c", script, SECRET, id, &ts.to_string(), &body])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signature = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(signature.starts_with("v1,"), "{signature}");
    let h = vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", signature),
    ];
    let (status, r) = post(
        &hub.client,
        &hook(&hub, "py-site"),
        &h,
        body.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 202, "{r}");
    let users = users_named(&hub, "alice@example.com").await;
    assert_eq!(users.len(), 1);
    let entries = audit(&hub, "target=py-site").await;
    assert!(entries.iter().any(|e| e["status"] == "delivered"));
    // The same bytes altered by one character no longer verify.
    let (status, _) = post(
        &hub.client,
        &hook(&hub, "py-site"),
        &h,
        body.replace("Alice", "Alicf").into_bytes(),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_envelopes_are_signed_with_stable_ids() {
    let hub = Hub::start(Backend::Embedded).await.expect("hub");
    let site = Site::start(SECRET_B).await;
    // The first attempt fails: the retry must carry the same webhook-id.
    site.answer_first(&[503]);
    add_site_target(&hub, "site-b", &site, SECRET_B, json!({"user_sync": true})).await;
    let _delivery = hub.run_delivery();
    let id = hub.user("bob@example.com").await;
    eventually(
        "two attempts at the site",
        Duration::from_secs(20),
        || async { site.received().len() >= 2 },
    )
    .await;
    let got = site.received();
    assert_eq!(site.bad_signatures(), 0);
    assert_eq!(got[0].id, got[1].id, "webhook-id changed across retries");
    assert_eq!(got[1].envelope["type"], "user.upsert");
    assert_eq!(got[1].envelope["data"]["id"], id.as_str());
    assert_eq!(got[1].envelope["data"]["userName"], "bob@example.com");
    assert!(got[1].envelope["occurred_at"].as_str().is_some());
    // The webhook id is the change event's id (a UUIDv7).
    assert_eq!(
        uuid::Uuid::parse_str(&got[0].id).unwrap().get_version_num(),
        7
    );
    eventually(
        "delivered in the audit log",
        Duration::from_secs(10),
        || async {
            audit(&hub, "target=site-b&status=delivered")
                .await
                .iter()
                .any(|e| e["resource_id"] == id.as_str())
        },
    )
    .await;
    // Groups go too; configuration does not (no prefixes for this site).
    hub.group("staff", &[&id]).await;
    eventually(
        "group.upsert at the site",
        Duration::from_secs(10),
        || async { site.got("group.upsert") },
    )
    .await;
    let group = site
        .received()
        .into_iter()
        .find(|r| r.envelope["type"] == "group.upsert")
        .unwrap();
    assert_eq!(group.envelope["data"]["displayName"], "staff");
    assert_eq!(
        group.envelope["data"]["members_added"],
        json!([{"value": id}])
    );
    assert_eq!(site.bad_signatures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_site_disables_its_target() {
    let hub = Hub::start(Backend::Embedded).await.expect("hub");
    let site = Site::start(SECRET_B).await;
    site.answer_with(410);
    add_site_target(
        &hub,
        "old-site",
        &site,
        SECRET_B,
        json!({"user_sync": true}),
    )
    .await;
    let _delivery = hub.run_delivery();
    hub.user("carol@example.com").await;
    eventually("target disabled", Duration::from_secs(15), || async {
        let r = hub.admin(Method::GET, "/targets/old-site", None).await;
        r.body["enabled"] == false
    })
    .await;
    let seen = site.received().len();
    assert_eq!(seen, 1);
    hub.user("dave@example.com").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        site.received().len(),
        seen,
        "a disabled target still receives"
    );
    let refused = audit(&hub, "target=old-site&status=refused").await;
    assert!(
        refused
            .iter()
            .any(|e| e["detail"].as_str().unwrap_or("").contains("disabled")),
        "{refused:?}"
    );
}

async fn two_sites(hub: Hub) {
    // Each site is a source (what it sends, signed with its secret) and a target with the
    // same id (what it receives, signed with the target's secret).
    let a = Site::start(SECRET_B).await;
    let b = Site::start(SECRET_C).await;
    for (id, site, target_secret) in [("site-a", &a, SECRET_B), ("site-b", &b, SECRET_C)] {
        add_source(
            &hub,
            id,
            json!({"secret": SECRET, "direction": "bidirectional", "user_sync": true,
                "config_prefixes": ["shared.", "a-only."]}),
        )
        .await;
        add_site_target(
            &hub,
            id,
            site,
            target_secret,
            json!({"user_sync": true, "config_prefixes": ["shared."]}),
        )
        .await;
        site.echo_to(&hook(&hub, id), SECRET, &["shared."]);
    }
    let _delivery = hub.run_delivery();

    // A change at site A: its module sends it to the hub.
    let (status, r) = a
        .send(
            &hook(&hub, "site-a"),
            SECRET,
            &envelope("user.upsert", alice("7")),
        )
        .await;
    assert_eq!(status, 202, "{r}");
    eventually("user at site B", Duration::from_secs(15), || async {
        b.user_id("alice@example.com").is_some()
    })
    .await;
    // B's echo comes back to the hub and is absorbed as a no-op.
    eventually("B's echo absorbed", Duration::from_secs(15), || async {
        audit(&hub, "target=site-b")
            .await
            .iter()
            .any(|e| e["detail"].as_str().unwrap_or("").contains("unchanged"))
    })
    .await;

    // Configuration: an allowed prefix replicates; one only the hub accepts from A is
    // not sent to B (B's target filters); one outside A's prefixes is refused at the hub.
    let set = |name: &str, v: Value| envelope("config.set", json!({"name": name, "value": v}));
    let (status, _) = a
        .send(
            &hook(&hub, "site-a"),
            SECRET,
            &set("shared.colors", json!({"primary": "teal"})),
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = a
        .send(
            &hook(&hub, "site-a"),
            SECRET,
            &set("a-only.theme", json!("dark")),
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = a
        .send(
            &hook(&hub, "site-a"),
            SECRET,
            &set("system.site", json!({"name": "X"})),
        )
        .await;
    assert_eq!(status, 403);
    eventually("config at site B", Duration::from_secs(15), || async {
        b.config("shared.colors").is_some()
    })
    .await;

    // Quiet period: nothing more flows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (a_got, b_got) = (a.received(), b.received());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(a.received().len(), a_got.len(), "site A kept receiving");
    assert_eq!(b.received().len(), b_got.len(), "site B kept receiving");

    // Exactly once at B, never back to A.
    let kinds = |got: &[provisync_tests::site::Received], kind: &str| {
        got.iter().filter(|r| r.envelope["type"] == kind).count()
    };
    assert_eq!(kinds(&b_got, "user.upsert"), 1, "{b_got:?}");
    assert_eq!(kinds(&b_got, "config.set"), 1, "{b_got:?}");
    assert!(
        b_got
            .iter()
            .all(|r| r.envelope["data"]["name"] != "a-only.theme"),
        "{b_got:?}"
    );
    assert_eq!(
        a_got.len(),
        0,
        "a change went back to its origin: {a_got:?}"
    );
    assert_eq!(a.bad_signatures() + b.bad_signatures(), 0);
    assert_eq!(b.config("shared.colors"), Some(json!({"primary": "teal"})));
    assert!(b.config("system.site").is_none() && b.refused_config().is_empty());
    // The hub holds one Alice and the replicated configuration.
    assert_eq!(users_named(&hub, "alice@example.com").await.len(), 1);
    let r = hub.admin(Method::GET, "/config?prefix=shared.", None).await;
    assert_eq!(r.body["config"][0]["value"], json!({"primary": "teal"}));

    // A change made at B now flows to A (and only to A), once.
    let mut changed = alice(&b.user_id("alice@example.com").unwrap().to_string());
    changed["name"]["givenName"] = json!("Alicia");
    let (status, _) = b
        .send(
            &hook(&hub, "site-b"),
            SECRET,
            &envelope("user.upsert", changed),
        )
        .await;
    assert_eq!(status, 202);
    eventually("the change at A", Duration::from_secs(15), || async {
        a.received()
            .iter()
            .any(|r| r.envelope["data"]["name"]["givenName"] == "Alicia")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = (a.received().len(), b.received().len());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!((a.received().len(), b.received().len()), settled);
    assert_eq!(settled, (1, b_got.len()), "ping-pong: {settled:?}");
    assert_eq!(
        users_named(&hub, "alice@example.com").await[0]["name"]["givenName"],
        "Alicia"
    );
    // B's echo linked the user the hub delivered to it (B did not create it)...
    let linked = audit(&hub, "target=site-b&status=linked").await;
    assert!(
        linked.iter().any(|e| e["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("the hub delivers this user to target site-b")),
        "{linked:?}"
    );
    // ... so B deleting its copy only unlinks it: the hub (and site A) keep Alice.
    let b_id = b.user_id("alice@example.com").unwrap().to_string();
    let (status, r) = b
        .send(
            &hook(&hub, "site-b"),
            SECRET,
            &envelope("user.delete", json!({"externalId": b_id})),
        )
        .await;
    assert_eq!(
        (status, r["status"].as_str()),
        (202, Some("unlinked")),
        "{r}"
    );
    assert_eq!(users_named(&hub, "alice@example.com").await.len(), 1);
    // Re-emitted under a new site id with the hub `id` it received: linked again by id.
    let hub_id = users_named(&hub, "alice@example.com").await[0]["id"].clone();
    let mut again = alice("b-new");
    again["id"] = hub_id;
    again["name"]["givenName"] = json!("Alicia");
    let (status, r) = b
        .send(
            &hook(&hub, "site-b"),
            SECRET,
            &envelope("user.upsert", again),
        )
        .await;
    assert_eq!(status, 202, "{r}");
    let linked = audit(&hub, "target=site-b&status=linked").await;
    assert!(
        linked.iter().any(|e| e["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("found by the hub id")),
        "{linked:?}"
    );
    // What A created, A may delete.
    let (status, r) = a
        .send(
            &hook(&hub, "site-a"),
            SECRET,
            &envelope("user.delete", json!({"externalId": "7"})),
        )
        .await;
    assert_eq!(
        (status, r["status"].as_str()),
        (202, Some("applied")),
        "{r}"
    );
    assert!(users_named(&hub, "alice@example.com").await.is_empty());
}

on_every_backend!(two_bidirectional_sites_settle, two_sites);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_admin_api_validates_and_redacts() {
    let hub = Hub::start(Backend::Embedded).await.expect("hub");
    let put = |id: &str, body: Value| {
        let hub = &hub;
        let path = format!("/sources/{id}");
        async move { hub.admin(Method::PUT, &path, Some(&body)).await }
    };
    let r = put("site-a", json!({"secret": SECRET, "user_sync": true})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["secrets"], json!(["***"]));
    let r = put("site-a", json!({"secrets": [SECRET, SECRET_B]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["secrets"], json!(["***", "***"]));
    // Bad input: 400 with a clear message that never quotes the secret.
    for (body, says) in [
        (json!({"secret": SECRET, "secrets": [SECRET]}), "not both"),
        (
            json!({"secret": "whsec_not*base64*at*all!"}),
            "Standard Webhooks",
        ),
        (
            json!({"secret": SECRET, "direction": "sideways"}),
            "direction",
        ),
        (json!({"secret": SECRET, "colour": "red"}), "colour"),
        (json!({}), "secret"),
        (json!({"secret": 42}), "string"),
    ] {
        let r = put("site-b", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let msg = r.body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{body}: {msg}");
        assert!(
            !msg.contains("not*base64") && !msg.contains(SECRET),
            "{msg}"
        );
    }
    assert_eq!(put("bad id!", json!({"secret": SECRET})).await.status, 400);
    let r = hub.admin(Method::GET, "/sources", None).await;
    assert_eq!(r.status, 200);
    let list = r.body["sources"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert!(!r.text.contains("whsec_"), "{}", r.text);
    assert_eq!(
        hub.admin(Method::DELETE, "/sources/site-a", None)
            .await
            .status,
        204
    );
    assert_eq!(
        hub.admin(Method::DELETE, "/sources/site-a", None)
            .await
            .status,
        404
    );
    assert_eq!(
        hub.admin(Method::GET, "/sources/site-a", None).await.status,
        404
    );
    // Webhook targets validate their URL and secret too.
    let r = hub
        .admin(
            Method::PUT,
            "/targets/site-x",
            Some(&json!({"kind": "webhook", "url": "http://example.org/hook", "secret": SECRET})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = hub
        .admin(
            Method::PUT,
            "/targets/site-x",
            Some(&json!({"kind": "webhook", "url": "https://example.org/hook", "secret": "plain"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(!r.text.contains("plain"), "{}", r.text);
}

// ---- what a source may touch (issue 13) ----------------------------------------------

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// A user an identity provider created through SCIM: its hub id.
async fn idp_user(hub: &Hub, user_name: &str, given: &str) -> String {
    let r = hub
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": user_name,
                "name": {"givenName": given},
                "emails": [{"value": user_name, "primary": true}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.id()
}

/// Sends `data` as a `kind` envelope from `source` (signed with [`SECRET`], now): the
/// status and the answer's `status` word, or its `error`.
async fn answer(hub: &Hub, source: &str, kind: &str, data: Value) -> (u16, String) {
    answer_to(hub, source, &envelope(kind, data)).await
}

async fn answer_to(hub: &Hub, source: &str, env: &Value) -> (u16, String) {
    let (status, body) = send(hub, source, SECRET, env).await;
    let word = body["status"].as_str().or(body["error"].as_str());
    (status, word.unwrap_or_default().to_string())
}

/// Is there an audit entry of `query` whose detail says `says`?
async fn audited(hub: &Hub, query: &str, says: &str) -> bool {
    audit(hub, query)
        .await
        .iter()
        .any(|e| e["detail"].as_str().unwrap_or_default().contains(says))
}

fn ok(word: &str) -> (u16, String) {
    (202, word.to_string())
}

on_every_backend!(
    a_source_cannot_take_over_or_delete_an_idp_user,
    |hub: Hub| async move {
        add_source(&hub, "evil", json!({"secret": SECRET, "user_sync": true})).await;
        let victim = idp_user(&hub, "victim@example.com", "Victor").await;
        // The attack of the issue: the attacker's own id, the victim's userName, the
        // attacker's e-mail.
        let attack = json!({"externalId": "evil-1", "userName": "victim@example.com",
            "emails": [{"value": "attacker@evil.example", "primary": true}]});
        let (status, msg) = answer(&hub, "evil", "user.upsert", attack.clone()).await;
        assert_eq!(status, 409, "{msg}");
        assert!(msg.contains("adopt_existing"), "{msg}");
        // Naming the hub id does not help a push source.
        let mut by_id = attack.clone();
        by_id["id"] = json!(victim);
        assert_eq!(answer(&hub, "evil", "user.upsert", by_id).await.0, 409);
        // Deletes for the attacker's id (with the victim's name, too) delete nothing.
        for data in [
            json!({"externalId": "evil-1"}),
            json!({"externalId": "evil-1", "userName": "victim@example.com"}),
        ] {
            assert_eq!(
                answer(&hub, "evil", "user.delete", data).await,
                ok("unchanged")
            );
        }
        let r = hub.get(&format!("/Users/{victim}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["emails"][0]["value"], "victim@example.com");
        assert_eq!(r.body["name"]["givenName"], "Victor");
        // The refusal is in the audit log, with its reason and the site's id.
        assert!(audited(&hub, "target=evil&status=refused", "adopt_existing").await);
        assert!(audited(&hub, "target=evil&status=refused", "externalId evil-1").await);
    }
);

on_every_backend!(
    adopt_existing_adopts_and_a_delete_only_unlinks,
    |hub: Hub| async move {
        add_source(&hub, "plain", json!({"secret": SECRET, "user_sync": true})).await;
        let r = hub.admin(Method::GET, "/sources/plain", None).await;
        assert_eq!(r.body["adopt_existing"], false, "{}", r.text);
        add_source(
            &hub,
            "adopter",
            json!({"secret": SECRET, "user_sync": true, "adopt_existing": true}),
        )
        .await;
        let r = hub.admin(Method::GET, "/sources/adopter", None).await;
        assert_eq!(r.body["adopt_existing"], true, "{}", r.text);
        let id = idp_user(&hub, "shared@example.com", "Old").await;
        let data = json!({"externalId": "a-1", "userName": "shared@example.com",
            "name": {"givenName": "New"}});
        assert_eq!(
            answer(&hub, "adopter", "user.upsert", data.clone()).await,
            ok("applied")
        );
        let r = hub.get(&format!("/Users/{id}")).await;
        assert_eq!(r.body["name"]["givenName"], "New");
        // Audited as an adoption: who (the source) and what (the user, how it was found).
        let entries = audit(&hub, "target=adopter&status=linked").await;
        assert!(
            entries.iter().any(|e| e["resource_id"] == id.as_str()
                && e["actor"] == "source:adopter"
                && e["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("adopted the existing user found by userName")),
            "{entries:?}"
        );
        // Adopted, the user is still updated only within allowed_fields.
        let mut escalate = data.clone();
        escalate["active"] = json!(false);
        assert_eq!(
            answer(&hub, "adopter", "user.upsert", escalate).await.0,
            403
        );
        // Another source, without adopt_existing, still may not touch it.
        assert_eq!(
            answer(&hub, "plain", "user.upsert", data.clone()).await.0,
            409
        );
        // A delete of an adopted user unlinks it, never deletes it.
        let delete = json!({"externalId": "a-1"});
        assert_eq!(
            answer(&hub, "adopter", "user.delete", delete).await,
            ok("unlinked")
        );
        assert_eq!(hub.get(&format!("/Users/{id}")).await.status, 200);
        assert!(audited(&hub, "target=adopter&status=unlinked", "not deleted").await);
        // What a source created, it may delete.
        let own = json!({"externalId": "a-2", "userName": "own@example.com"});
        assert_eq!(
            answer(&hub, "adopter", "user.upsert", own).await,
            ok("applied")
        );
        assert_eq!(users_named(&hub, "own@example.com").await.len(), 1);
        let delete = json!({"externalId": "a-2"});
        assert_eq!(
            answer(&hub, "adopter", "user.delete", delete).await,
            ok("applied")
        );
        assert!(users_named(&hub, "own@example.com").await.is_empty());
    }
);

async fn group_named(hub: &Hub, name: &str) -> Option<Value> {
    let r = hub
        .get(&format!(
            "/Groups?filter={}",
            q(&format!("displayName eq \"{name}\""))
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.resources().first().cloned()
}

fn member_ids(group: &Value) -> Vec<String> {
    let members = group["members"].as_array().cloned().unwrap_or_default();
    members
        .iter()
        .filter_map(|m| m["value"].as_str().map(str::to_string))
        .collect()
}

on_every_backend!(groups_follow_the_same_rules, |hub: Hub| async move {
    let fields = json!(["userName", "displayName", "members"]);
    add_source(
        &hub,
        "site-g",
        json!({"secret": SECRET, "user_sync": true, "allowed_fields": fields}),
    )
    .await;
    let ann = idp_user(&hub, "ann@example.com", "Ann").await;
    let admins = hub.group("admins", &[&ann]).await;
    // A group the source did not create: neither emptied nor deleted.
    let empty = json!({"externalId": "g-1", "displayName": "admins", "members": []});
    let (status, msg) = answer(&hub, "site-g", "group.upsert", empty).await;
    assert_eq!(status, 409, "{msg}");
    let delete = json!({"externalId": "g-1", "displayName": "admins"});
    assert_eq!(
        answer(&hub, "site-g", "group.delete", delete).await,
        ok("unchanged")
    );
    let held = group_named(&hub, "admins").await.expect("admins kept");
    assert_eq!(held["id"], admins.as_str());
    assert_eq!(member_ids(&held), vec![ann.clone()]);
    // Its own group lists the users linked to it; an IdP user it has no link to is left
    // out (a member reference is the source's own id, translated through its links).
    let bob = json!({"externalId": "u-1", "userName": "bob@example.com"});
    assert_eq!(
        answer(&hub, "site-g", "user.upsert", bob).await,
        ok("applied")
    );
    let editors = json!({"externalId": "g-2", "displayName": "site-editors",
        "members": [{"value": "u-1"}, {"value": "ann-at-g"}]});
    assert_eq!(
        answer(&hub, "site-g", "group.upsert", editors).await,
        ok("applied")
    );
    let editors = group_named(&hub, "site-editors").await.expect("created");
    let bob_id = users_named(&hub, "bob@example.com").await[0]["id"].clone();
    assert_eq!(
        member_ids(&editors),
        vec![bob_id.as_str().unwrap().to_string()]
    );
    // With adopt_existing: an IdP user it adopted may go in a group of its own (that
    // grants nothing on the user), and an adopted group is unlinked by a delete, not
    // deleted.
    add_source(
        &hub,
        "site-h",
        json!({"secret": SECRET, "user_sync": true, "allowed_fields": fields,
            "adopt_existing": true}),
    )
    .await;
    let ann_at_h = json!({"externalId": "h-ann", "userName": "ann@example.com"});
    assert_eq!(
        answer(&hub, "site-h", "user.upsert", ann_at_h).await,
        ok("unchanged")
    );
    let staff = json!({"externalId": "h-staff", "displayName": "h-staff",
        "members": [{"value": "h-ann"}]});
    assert_eq!(
        answer(&hub, "site-h", "group.upsert", staff).await,
        ok("applied")
    );
    let staff = group_named(&hub, "h-staff").await.expect("created");
    assert_eq!(member_ids(&staff), vec![ann.clone()]);
    let adopt = json!({"externalId": "h-admins", "displayName": "admins",
        "members": [{"value": "h-ann"}]});
    assert_eq!(
        answer(&hub, "site-h", "group.upsert", adopt).await,
        ok("unchanged")
    );
    assert!(
        audited(
            &hub,
            "target=site-h&status=linked",
            "adopted the existing group"
        )
        .await
    );
    let delete = json!({"externalId": "h-admins"});
    assert_eq!(
        answer(&hub, "site-h", "group.delete", delete).await,
        ok("unlinked")
    );
    assert!(group_named(&hub, "admins").await.is_some());
    let delete = json!({"externalId": "h-staff"});
    assert_eq!(
        answer(&hub, "site-h", "group.delete", delete).await,
        ok("applied")
    );
    assert!(group_named(&hub, "h-staff").await.is_none());
});

/// POSTs `body` signed GitHub-style under `delivery`: the status and the answer's
/// `status` word, or its `error`.
async fn send_github(
    hub: &Hub,
    source: &str,
    secret: &str,
    body: &[u8],
    delivery: &str,
) -> (u16, String) {
    let sig = format!(
        "sha256={}",
        provisync_tests::site::hmac_sha256(secret.as_bytes(), body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let h = vec![
        ("x-hub-signature-256", sig),
        ("x-github-delivery", delivery.to_string()),
    ];
    let (status, r) = post(&hub.client, &hook(hub, source), &h, body.to_vec()).await;
    let word = r["status"].as_str().or(r["error"].as_str());
    (status, word.unwrap_or_default().to_string())
}

on_every_backend!(
    github_replay_with_a_new_delivery_id_is_refused,
    |hub: Hub| async move {
        let secret = "It's a Secret to Everybody";
        add_source(
            &hub,
            "gh",
            json!({"scheme": "github", "secret": secret, "user_sync": true}),
        )
        .await;
        let bytes = |kind: &str, data: Value| envelope(kind, data).to_string().into_bytes();
        let upsert = bytes("user.upsert", alice("g-7"));
        assert_eq!(
            send_github(&hub, "gh", secret, &upsert, "d-1").await,
            ok("applied")
        );
        // The operator (or the IdP) deletes the user in the hub.
        let id = users_named(&hub, "alice@example.com").await[0]["id"].clone();
        let gone = hub
            .delete(&format!("/Users/{}", id.as_str().unwrap()))
            .await;
        assert_eq!(gone.status, 204);
        // The same signed body under a new (unsigned) delivery id: a replay, not applied.
        assert_eq!(
            send_github(&hub, "gh", secret, &upsert, "d-2").await,
            ok("replay")
        );
        assert!(
            users_named(&hub, "alice@example.com").await.is_empty(),
            "re-created by a replay"
        );
        // Deleted by the source itself, then replayed: the same.
        let fresh = bytes("user.upsert", alice("g-9"));
        assert_eq!(
            send_github(&hub, "gh", secret, &fresh, "d-3").await,
            ok("applied")
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        let delete = bytes("user.delete", json!({"externalId": "g-9"}));
        assert_eq!(
            send_github(&hub, "gh", secret, &delete, "d-4").await,
            ok("applied")
        );
        for (body, delivery) in [(&fresh, "d-5"), (&delete, "d-6")] {
            assert_eq!(
                send_github(&hub, "gh", secret, body, delivery).await,
                ok("replay")
            );
        }
        assert!(users_named(&hub, "alice@example.com").await.is_empty());
        // Envelopes outside the window are refused, even correctly signed.
        for at in [
            chrono::Utc::now() - chrono::Duration::days(4),
            chrono::Utc::now() + chrono::Duration::hours(1),
        ] {
            let env = json!({"type": "user.upsert", "occurred_at": at.to_rfc3339(),
                "data": alice("g-8")});
            let (status, msg) =
                send_github(&hub, "gh", secret, env.to_string().as_bytes(), "d-7").await;
            assert_eq!(status, 400, "{msg}");
            assert!(msg.contains("occurred_at"), "{msg}");
        }
        assert!(users_named(&hub, "alice@example.com").await.is_empty());
    }
);

on_every_backend!(
    an_equal_time_change_does_not_resurrect_a_delete,
    |hub: Hub| async move {
        add_source(&hub, "site-t", json!({"secret": SECRET, "user_sync": true})).await;
        let at = chrono::Utc::now().to_rfc3339();
        let at_env =
            |kind: &str, data: Value| json!({"type": kind, "occurred_at": at, "data": data});
        let upsert = at_env("user.upsert", alice("t-1"));
        assert_eq!(answer_to(&hub, "site-t", &upsert).await, ok("applied"));
        let delete = at_env("user.delete", json!({"externalId": "t-1"}));
        assert_eq!(answer_to(&hub, "site-t", &delete).await, ok("applied"));
        // Another delivery stamped with the same instant: not newer than the delete.
        let mut again = alice("t-1");
        again["name"]["givenName"] = json!("Again");
        let again = at_env("user.upsert", again);
        assert_eq!(answer_to(&hub, "site-t", &again).await, ok("stale"));
        assert!(users_named(&hub, "alice@example.com").await.is_empty());
    }
);

on_every_backend!(
    an_inbound_uniqueness_conflict_is_409,
    |hub: Hub| async move {
        add_source(&hub, "site-u", json!({"secret": SECRET, "user_sync": true})).await;
        for (ext, name) in [("b-1", "bob@example.com"), ("c-1", "carol@example.com")] {
            let user = json!({"externalId": ext, "userName": name});
            assert_eq!(
                answer(&hub, "site-u", "user.upsert", user).await,
                ok("applied")
            );
        }
        // Carol renamed to Bob's userName at the site.
        let rename = json!({"externalId": "c-1", "userName": "bob@example.com"});
        let (status, msg) = answer(&hub, "site-u", "user.upsert", rename).await;
        assert_eq!(status, 409, "{msg}");
        assert!(msg.contains("already exists"), "{msg}");
        assert_eq!(users_named(&hub, "carol@example.com").await.len(), 1);
        assert!(audited(&hub, "target=site-u&status=refused", "already exists").await);
        // A race of the same site's creates of one user is not a conflict: the losers are
        // told to retry (503), never refused for good.
        let dave = json!({"externalId": "d-1", "userName": "dave@example.com"});
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..8 {
            let (client, url) = (hub.client.clone(), hook(&hub, "site-u"));
            let body = envelope("user.upsert", dave.clone())
                .to_string()
                .into_bytes();
            let headers = signed_headers(SECRET, &format!("msg_race_{i}"), &body);
            racers.spawn(async move { post(&client, &url, &headers, body).await });
        }
        while let Some(r) = racers.join_next().await {
            let (status, body) = r.expect("racer");
            assert!(status == 202 || status == 503, "{status} {body}");
        }
        assert_eq!(users_named(&hub, "dave@example.com").await.len(), 1);
    }
);

/// N requests with bad signatures cost a bounded number of store writes: one audit entry
/// per source and reason per window, not one per request.
async fn a_flood_of_bad_signatures(backend: Backend) {
    let Some(store) = provisync_tests::backend_store(backend).await else {
        return;
    };
    let counting = provisync_tests::counting::CountingStore::new(store);
    let hub = Hub::start_on(std::sync::Arc::new(counting.clone())).await;
    add_source(&hub, "site-f", json!({"secret": SECRET, "user_sync": true})).await;
    let body = envelope("user.upsert", alice("f-1"))
        .to_string()
        .into_bytes();
    let url = hook(&hub, "site-f");
    // Four ways to be wrong, each its own reason.
    let bad = |i: usize| -> Vec<(&'static str, String)> {
        let id = format!("msg_flood_{i}");
        match i % 4 {
            0 => signed_headers(SECRET_C, &id, &body),
            1 => signed_headers(SECRET, &id, &body)[..2].to_vec(),
            2 => vec![
                ("webhook-id", id.clone()),
                ("webhook-timestamp", "not a number".into()),
                ("webhook-signature", "v1,AAAA".into()),
            ],
            _ => {
                let old = chrono::Utc::now().timestamp() - 3600;
                vec![
                    ("webhook-id", id.clone()),
                    ("webhook-timestamp", old.to_string()),
                    ("webhook-signature", sign(SECRET, &id, old, &body)),
                ]
            }
        }
    };
    // One refusal: what one audit entry costs.
    counting.reset();
    assert_eq!(post(&hub.client, &url, &bad(0), body.clone()).await.0, 401);
    let one = counting.written();
    assert!(one >= 1, "the first refusal is audited");
    // At most one entry per reason per minute (a loaded machine may take more than one).
    let windows = |since: Instant| since.elapsed().as_secs() / 60 + 1;
    counting.reset();
    let started = Instant::now();
    let n = 200;
    for i in 0..n {
        assert_eq!(post(&hub.client, &url, &bad(i), body.clone()).await.0, 401);
    }
    let many = counting.written();
    let bound = 4 * windows(started) * one;
    assert!(
        many <= bound,
        "{n} bad requests wrote {many} items (one audit entry is {one}, at most {bound})"
    );
    let refused = audit(&hub, "target=site-f&status=refused&limit=500").await;
    assert!(refused.len() as u64 <= 1 + bound, "{refused:?}");
    assert!(users_named(&hub, "alice@example.com").await.is_empty());
    // A captured good delivery replayed again and again: one entry too.
    let h = signed_headers(SECRET, "msg_captured", &body);
    let (status, r) = post(&hub.client, &url, &h, body.clone()).await;
    assert_eq!(
        (status, r["status"].as_str()),
        (202, Some("applied")),
        "{r}"
    );
    counting.reset();
    let started = Instant::now();
    for _ in 0..n {
        let (status, r) = post(&hub.client, &url, &h, body.clone()).await;
        assert_eq!((status, r["status"].as_str()), (202, Some("replay")), "{r}");
    }
    let replays = counting.written();
    let bound = windows(started) * one;
    assert!(
        replays <= bound,
        "{n} replays wrote {replays} items (one audit entry is {one}, at most {bound})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_signatures_costs_bounded_writes_embedded() {
    a_flood_of_bad_signatures(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_signatures_costs_bounded_writes_dynamodb() {
    a_flood_of_bad_signatures(Backend::DynamoDb).await;
}

// #20 item 6: an envelope of a type the hub does not know is refused naming that type (and
// the known ones), not as "not an envelope"; the refusal is audited with the same reason.
on_every_backend!(an_unknown_type_is_named, |hub: Hub| async move {
    add_source(&hub, "typo", json!({"secret": SECRET, "user_sync": true})).await;
    let (status, msg) = answer(&hub, "typo", "user.upsret", alice("1")).await;
    assert_eq!(status, 400, "{msg}");
    assert!(
        msg.contains("unknown envelope type \"user.upsret\""),
        "{msg}"
    );
    assert!(
        msg.contains("user.upsert") && !msg.contains("not an envelope"),
        "{msg}"
    );
    assert!(audited(&hub, "target=typo&status=refused", "user.upsret").await);
    // A body that is no envelope at all is still answered as such.
    let (status, msg) = answer_to(&hub, "typo", &json!({"type": "user.upsert"})).await;
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("not an envelope"), "{msg}");
    assert!(users_named(&hub, "alice@example.com").await.is_empty());
});

// #17: the source form's Test connection. A pull source is reached with its auth (the
// real `scim2-server`; a wrong token is a failure naming the status, never the token); a
// webhook source is push-only and says when its last signed delivery was accepted (a
// badly signed one does not count); every test is audited; an unknown source is a 404.
on_every_backend!(sources_test_their_connection, |hub: Hub| async move {
    let Some(peer) = provisync_tests::peers::ScimPeer::start().await else {
        return;
    };
    let test = |id: &'static str| {
        let hub = &hub;
        async move {
            hub.admin(Method::POST, &format!("/sources/{id}/test"), None)
                .await
        }
    };
    add_source(
        &hub,
        "idp",
        json!({"direction": "pull", "user_sync": true,
            "pull": {"kind": "scim", "base_url": peer.base, "auth": {"bearer": peer.token}}}),
    )
    .await;
    let r = test("idp").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["ok"], true, "{}", r.text);
    assert_eq!(r.body["push_only"], false, "{}", r.text);
    assert!(
        r.body["detail"].as_str().unwrap().contains("reached"),
        "{}",
        r.text
    );
    add_source(
        &hub,
        "idp-bad",
        json!({"direction": "pull", "user_sync": true,
            "pull": {"kind": "scim", "base_url": peer.base, "auth": {"bearer": "wrong-token-abcdef"}}}),
    )
    .await;
    let r = test("idp-bad").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["ok"], false, "{}", r.text);
    assert!(r.text.contains("401"), "{}", r.text);
    assert!(!r.text.contains("wrong-token-abcdef"), "{}", r.text);

    add_source(&hub, "site", json!({"secret": SECRET, "user_sync": true})).await;
    let r = test("site").await;
    assert_eq!(r.body["ok"], true, "{}", r.text);
    assert_eq!(r.body["push_only"], true, "{}", r.text);
    assert!(r.body.get("last_delivery").is_none(), "{}", r.text);
    assert!(
        r.text.contains("no signed delivery accepted yet"),
        "{}",
        r.text
    );
    // A badly signed delivery is not one.
    let (status, _) = send(&hub, "site", SECRET_B, &envelope("user.upsert", alice("1"))).await;
    assert_eq!(status, 401);
    assert!(test("site").await.body.get("last_delivery").is_none());
    assert_eq!(
        answer(&hub, "site", "user.upsert", alice("1")).await,
        ok("applied")
    );
    let r = test("site").await;
    let at = r.body["last_delivery"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!at.is_empty() && r.text.contains(&at), "{}", r.text);
    assert!(!r.text.contains(SECRET), "{}", r.text);

    let tests = audit(&hub, "target=idp-bad&op=test").await;
    assert_eq!(tests.len(), 1, "{tests:?}");
    assert_eq!(tests[0]["status"], "failed");
    let r = test("nope").await;
    assert_eq!(r.status, 404, "{}", r.text);
});

/// Did `site` receive a user named `user_name`?
fn received_user(site: &Site, user_name: &str) -> bool {
    site.received()
        .iter()
        .any(|r| r.envelope["data"]["userName"] == user_name)
}

/// Target `contractors`: the site, sent users whose title is "Contractor" only.
async fn contractors_site(hub: &Hub, site: &Site) {
    add_site_target(
        hub,
        "contractors",
        site,
        SECRET_B,
        json!({"user_sync": true, "scope_filter": "title eq \"Contractor\""}),
    )
    .await;
}

// A site takes only what the hub sends it: a bidirectional site scoped to contractors
// (its target's `scope_filter`) is not sent the CEO, cannot claim the CEO by naming the
// CEO's hub id, and may edit a contractor it was sent only while the hub still sends it.
on_every_backend!(
    a_scoped_site_takes_only_what_it_is_sent,
    |hub: Hub| async move {
        // A bidirectional site whose target is scoped to contractors.
        let site = Site::start(SECRET_B).await;
        add_source(
            &hub,
            "contractors",
            json!({"secret": SECRET, "direction": "bidirectional", "user_sync": true}),
        )
        .await;
        contractors_site(&hub, &site).await;
        let _delivery = hub.run_delivery();
        let person = |name: &str, title: &str| {
            json!({"schemas": [USER_SCHEMA], "userName": name, "title": title,
                "name": {"givenName": "Given"},
                "emails": [{"value": name, "primary": true}]})
        };
        let r = hub.post("/Users", &person("ceo@example.com", "CEO")).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let ceo = r.id();
        let r = hub
            .post("/Users", &person("con@example.com", "Contractor"))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let contractor = r.id();
        // The site gets the contractor and not the CEO.
        eventually(
            "the contractor at the site",
            Duration::from_secs(15),
            || async { received_user(&site, "con@example.com") },
        )
        .await;
        eventually("the CEO skipped", Duration::from_secs(15), || async {
            audit(&hub, "target=contractors&status=skipped")
                .await
                .iter()
                .any(|e| {
                    e["resource_id"] == ceo.as_str()
                        && e["detail"]
                            .as_str()
                            .unwrap_or_default()
                            .contains("not in this site's scope_filter")
                })
        })
        .await;
        assert!(!received_user(&site, "ceo@example.com"));

        // The attack: the site names the CEO's hub id (and name) as if it had received
        // the CEO, with the attacker's e-mail. The hub never sent the CEO there.
        let attack = json!({"externalId": "x-1", "id": ceo, "userName": "ceo@example.com",
            "emails": [{"value": "attacker@evil.example", "primary": true}]});
        let (status, msg) = answer(&hub, "contractors", "user.upsert", attack).await;
        assert_eq!(status, 409, "{msg}");
        let r = hub.get(&format!("/Users/{ceo}")).await;
        assert_eq!(
            r.body["emails"][0]["value"], "ceo@example.com",
            "{}",
            r.text
        );

        // What it was sent, it may edit (within its allowed fields)...
        let edit = |given: &str| {
            json!({"externalId": "c-1", "id": contractor, "userName": "con@example.com",
                "title": "Contractor", "name": {"givenName": given},
                "emails": [{"value": "con@example.com", "primary": true}]})
        };
        let (status, msg) = answer(&hub, "contractors", "user.upsert", edit("Con")).await;
        assert_eq!(status, 202, "{msg}");
        let r = hub.get(&format!("/Users/{contractor}")).await;
        assert_eq!(r.body["name"]["givenName"], "Con", "{}", r.text);
        // ...until it leaves the site's scope: then its edits are refused.
        hub.replace(&format!("/Users/{contractor}"), "title", json!("Employee"))
            .await;
        let (status, msg) = answer(&hub, "contractors", "user.upsert", edit("Hijack")).await;
        assert_eq!(status, 403, "{msg}");
        assert!(msg.contains("no longer sends"), "{msg}");
        let r = hub.get(&format!("/Users/{contractor}")).await;
        assert_eq!(r.body["name"]["givenName"], "Con", "{}", r.text);
        assert_eq!(r.body["title"], "Employee", "{}", r.text);
        assert!(audited(&hub, "target=contractors&status=refused", "no longer sends").await);

        // Out of the scope, the contractor is taken off the site: a `user.delete` naming
        // only the hub id.
        let deletes_of = |id: &str| {
            site.received()
                .into_iter()
                .filter(|r| r.envelope["type"] == "user.delete" && r.envelope["data"]["id"] == id)
                .map(|r| r.envelope["data"].clone())
                .collect::<Vec<Value>>()
        };
        eventually(
            "the contractor taken off the site",
            Duration::from_secs(15),
            || async { !deletes_of(&contractor).is_empty() },
        )
        .await;
        assert_eq!(deletes_of(&contractor), vec![json!({"id": contractor})]);
        // The CEO was never sent: its next change sends one delete by id (the site might
        // have it from before sites had links), and the ones after nothing.
        for title in ["Chief Executive", "Chair"] {
            hub.replace(&format!("/Users/{ceo}"), "title", json!(title))
                .await;
        }
        eventually(
            "the CEO's two updates delivered",
            Duration::from_secs(15),
            || async {
                audit(&hub, "target=contractors")
                    .await
                    .iter()
                    .filter(|e| e["resource_id"] == ceo.as_str())
                    .count()
                    == 3
            },
        )
        .await;
        assert_eq!(deletes_of(&ceo), vec![json!({"id": ceo})]);
        assert!(
            !site
                .received()
                .iter()
                .any(|r| r.envelope["data"]["userName"] == "ceo@example.com"),
            "no data of the CEO reached the site"
        );
    }
);

/// Users with these userNames created in the hub, once the site has them all: their hub
/// ids.
async fn users_at_site(hub: &Hub, site: &Site, names: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for name in names {
        ids.push(hub.user(name).await);
    }
    eventually("the users at the site", Duration::from_secs(15), || async {
        names.iter().all(|n| received_user(site, n))
    })
    .await;
    ids
}

// A site's deletions go through its target's deprovision guard, as any target's do: with
// `max: 1`, three users deleted in the hub send the site one `user.delete` and hold two,
// listed under their userNames; released, they are sent.
on_every_backend!(a_site_s_deletions_are_guarded, |hub: Hub| async move {
    let site = Site::start(SECRET_B).await;
    add_site_target(
        &hub,
        "site",
        &site,
        SECRET_B,
        json!({"user_sync": true, "deprovision_guard": {"max": 1, "window_minutes": 60}}),
    )
    .await;
    let _delivery = hub.run_delivery();
    let ids = users_at_site(
        &hub,
        &site,
        &[
            "leaver0@example.com",
            "leaver1@example.com",
            "leaver2@example.com",
        ],
    )
    .await;
    for id in &ids {
        assert_eq!(hub.delete(&format!("/Users/{id}")).await.status, 204);
    }
    let deletes = || {
        site.received()
            .into_iter()
            .filter(|r| r.envelope["type"] == "user.delete")
            .count()
    };
    let held = || hub.held("site");
    eventually("one deleted, two held", Duration::from_secs(15), || async {
        deletes() == 1 && held().await.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(deletes(), 1, "no more than the guard allows");
    let mut names: Vec<String> = held()
        .await
        .iter()
        .map(|h| {
            assert_eq!(h["change"], "delete", "{h}");
            assert!(
                h["cause"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("deleted in the hub"),
                "{h}"
            );
            h["account"]["userName"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 2);
    assert!(names.iter().all(|n| n.starts_with("leaver")), "{names:?}");
    let r = hub
        .admin(Method::POST, "/targets/site/held/release", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["released"].as_array().map(Vec::len),
        Some(2),
        "{}",
        r.text
    );
    eventually("the two released", Duration::from_secs(15), || async {
        deletes() == 3
    })
    .await;
    assert!(held().await.is_empty());

    // Deactivations too (a site has no deactivate: the user goes inactive in its
    // `user.upsert`), at another site with a fresh window of one: two active users
    // deactivated in the hub, one sent, one held.
    let r = hub.admin(Method::DELETE, "/targets/site", None).await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    let site = Site::start(SECRET_C).await;
    add_site_target(
        &hub,
        "site-b",
        &site,
        SECRET_C,
        json!({"user_sync": true, "deprovision_guard": {"max": 1, "window_minutes": 60}}),
    )
    .await;
    let held = || hub.held("site-b");
    let active = users_at_site(&hub, &site, &["stayer0@example.com", "stayer1@example.com"]).await;
    let inactive_sent = |name: &str| {
        site.received()
            .iter()
            .filter(|r| {
                r.envelope["data"]["userName"] == name && r.envelope["data"]["active"] == false
            })
            .count()
    };
    for id in &active {
        hub.replace(&format!("/Users/{id}"), "active", json!(false))
            .await;
    }
    eventually(
        "one deactivated, one held",
        Duration::from_secs(15),
        || async {
            inactive_sent("stayer0@example.com") + inactive_sent("stayer1@example.com") == 1
                && held().await.len() == 1
        },
    )
    .await;
    let h = held().await;
    assert_eq!(h[0]["change"], "deactivate", "{h:?}");
    let r = hub
        .admin(Method::POST, "/targets/site-b/held/release", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually(
        "both inactive at the site",
        Duration::from_secs(15),
        || async {
            inactive_sent("stayer0@example.com") == 1 && inactive_sent("stayer1@example.com") == 1
        },
    )
    .await;
    // A change of a user the site has inactive already is no deactivation: sent, not
    // held, though the window is spent.
    hub.replace(&format!("/Users/{}", active[0]), "title", json!("Alumnus"))
        .await;
    eventually(
        "the inactive user's change sent",
        Duration::from_secs(15),
        || async {
            site.received()
                .iter()
                .any(|r| r.envelope["data"]["title"] == "Alumnus")
        },
    )
    .await;
    assert!(held().await.is_empty());
    // A group's members removed, then the group deleted, with the window spent: both
    // held (under the group's name); released, the site gets the deletion (the removal,
    // superseded by it, is not sent).
    let group = hub.group("crew", &[&active[0], &active[1]]).await;
    let of_group = |kind: &str| {
        site.received()
            .iter()
            .filter(|r| r.envelope["type"] == kind && r.envelope["data"]["displayName"] == "crew")
            .count()
    };
    eventually("the group at the site", Duration::from_secs(15), || async {
        of_group("group.upsert") == 1
    })
    .await;
    let r = hub
        .patch(
            &format!("/Groups/{group}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "members",
                "value": [{"value": active[0]}, {"value": active[1]}]}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(hub.delete(&format!("/Groups/{group}")).await.status, 204);
    eventually(
        "both group changes held",
        Duration::from_secs(15),
        || async { held().await.len() == 2 },
    )
    .await;
    let mut changes: Vec<(String, String, u64)> = held()
        .await
        .iter()
        .map(|h| {
            (
                h["change"].as_str().unwrap().to_string(),
                h["account"]["userName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                h["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    changes.sort();
    assert_eq!(
        changes,
        [
            ("delete".to_string(), "crew".to_string(), 1),
            ("remove_members".to_string(), "crew".to_string(), 2)
        ]
    );
    assert_eq!(of_group("group.upsert"), 1, "the removal not sent");
    let r = hub
        .admin(Method::POST, "/targets/site-b/held/release", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually(
        "the group deleted at the site",
        Duration::from_secs(15),
        || async { site.got("group.delete") },
    )
    .await;
    assert!(held().await.is_empty());
});

// A site scoped to contractors learns nothing of who else is in a group: the members a
// group event names are those the site is sent.
on_every_backend!(a_scoped_site_sees_only_its_members, |hub: Hub| async move {
    let site = Site::start(SECRET_B).await;
    contractors_site(&hub, &site).await;
    let _delivery = hub.run_delivery();
    let mut ids = Vec::new();
    for (name, title) in [
        ("con@example.com", "Contractor"),
        ("emp@example.com", "Employee"),
    ] {
        let r = hub
            .post(
                "/Users",
                &json!({"schemas": [USER_SCHEMA], "userName": name, "title": title}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.id());
    }
    let (con, emp) = (ids[0].clone(), ids[1].clone());
    // Named at once with their group: the contractor need not be at the site yet.
    let group = hub.group("Project X", &[&con, &emp]).await;
    let named = |kind: &str| -> Vec<Value> {
        site.received()
            .iter()
            .filter(|r| r.envelope["type"] == "group.upsert")
            .filter_map(|r| r.envelope["data"][kind].as_array().cloned())
            .flatten()
            .collect()
    };
    eventually("the group at the site", Duration::from_secs(15), || async {
        !named("members_added").is_empty()
    })
    .await;
    assert_eq!(named("members_added"), vec![json!({"value": con})]);
    // Both removed: the site hears of its contractor only.
    let r = hub
        .patch(
            &format!("/Groups/{group}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "members",
                "value": [{"value": con}, {"value": emp}]}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually(
        "the removal at the site",
        Duration::from_secs(15),
        || async { !named("members_removed").is_empty() },
    )
    .await;
    assert_eq!(named("members_removed"), vec![json!({"value": con})]);
    assert!(
        !site
            .received()
            .iter()
            .any(|r| r.envelope.to_string().contains(&emp)),
        "the employee's id never reached the site"
    );
});
