//! The admin API over real HTTP, on every backend: targets (redacted, sealed at rest),
//! validation errors with reasons, auth, the audit log, on-demand sync, dead letters.

use std::sync::Arc;
use std::time::Duration;

use provisync_core::directory::Stored;
use provisync_core::queue::OutMessage;
use provisync_core::store::Key;
use provisync_core::sync::audit::{Audit, AuditEntry, AuditOp, AuditStatus};
use provisync_core::sync::ondemand::DirectoryOnDemand;
use provisync_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

const BEARER: &str = "bearer-S3CRET-value-0123456789";
const PASSWORD: &str = "basic-pa55word-S3CRET";

fn scim_target(bearer: &str) -> Value {
    json!({
        "kind": "scim",
        "base_url": "https://scim.example.com/scim/v2",
        "auth": {"bearer": bearer},
        "scope_filter": "active eq true",
        "mapping": [{"target": "userType", "value": "Employee"}],
        "mode": "realtime"
    })
}

fn assert_no_secret(r: &Resp) {
    assert!(!r.text.contains(BEARER), "secret in response: {}", r.text);
    assert!(!r.text.contains(PASSWORD), "secret in response: {}", r.text);
}

fn assert_admin_error(r: &Resp, status: u16, contains: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    let msg = r.body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {}", r.text));
    assert!(
        msg.to_lowercase().contains(&contains.to_lowercase()),
        "{msg:?} should mention {contains:?}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
}

on_every_backend!(targets_crud_and_redaction, |hub: Hub| async move {
    let r = hub
        .admin(Method::PUT, "/targets/crm", Some(&scim_target(BEARER)))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_no_secret(&r);
    assert_eq!(r.body["id"], "crm");
    assert_eq!(r.body["auth"]["bearer"], "***");
    assert_eq!(r.body["enabled"], true);
    assert_eq!(r.body["scope_filter"], "active eq true");
    // Replacing answers 200.
    let r = hub
        .admin(Method::PUT, "/targets/crm", Some(&scim_target(BEARER)))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = hub
        .admin(
            Method::PUT,
            "/targets/wiki",
            Some(&json!({
                "id": "wiki", "kind": "scim", "base_url": "http://127.0.0.1:9/scim",
                "auth": {"basic": {"username": "svc", "password": PASSWORD}},
                "enabled": false
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_no_secret(&r);
    assert_eq!(r.body["auth"]["basic"]["password"], "***");
    assert_eq!(r.body["auth"]["basic"]["username"], "svc");

    let r = hub.admin(Method::GET, "/targets", None).await;
    assert_eq!(r.status, 200);
    assert_no_secret(&r);
    let ids: Vec<&str> = r.body["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["crm", "wiki"]);
    let r = hub.admin(Method::GET, "/targets/crm", None).await;
    assert_eq!(r.status, 200);
    assert_no_secret(&r);
    assert_eq!(r.body["auth"]["bearer"], "***");

    // At rest: sealed, never in clear.
    for id in ["crm", "wiki"] {
        let item = hub
            .store
            .get(&Key::new(format!("TARGET#{id}"), "TARGET"))
            .await
            .unwrap()
            .expect("stored target");
        let raw = String::from_utf8_lossy(&item.data);
        assert!(!raw.contains(BEARER) && !raw.contains(PASSWORD), "{raw}");
        assert!(raw.contains("v1."), "{raw}");
    }

    // A connection test is answered and audited (the SCIM connector is not wired yet,
    // so it fails with its reason).
    let r = hub.admin(Method::POST, "/targets/wiki/test", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_no_secret(&r);
    assert_eq!(r.body["target"], "wiki");
    assert!(r.body["ok"].is_boolean());
    let r = hub
        .admin(Method::GET, "/audit?target=wiki&op=test", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_no_secret(&r);
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["entries"][0]["op"], "test");
    // It says who asked: the operator's token (here the static one `serve` sets).
    assert_eq!(r.body["entries"][0]["actor"], "admin:static");
    // A token issued with a name (`provisync token create --name ops`) is named.
    let ops = provisync_http::auth::create_token(
        hub.store.as_ref(),
        provisync_http::auth::Scope::Admin,
        "ops",
    )
    .await
    .unwrap();
    let r = hub
        .client
        .post(hub.admin_url("/targets/wiki/test"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = hub
        .admin(Method::GET, "/audit?target=wiki&op=test", None)
        .await;
    let actors: Vec<&str> = r.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert_eq!(actors, ["admin:ops", "admin:static"], "{}", r.text);

    let r = hub.admin(Method::DELETE, "/targets/crm", None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = hub.admin(Method::DELETE, "/targets/crm", None).await;
    assert_admin_error(&r, 404, "no target");
    let r = hub.admin(Method::GET, "/targets/crm", None).await;
    assert_admin_error(&r, 404, "no target");
    let r = hub.admin(Method::POST, "/targets/crm/test", None).await;
    assert_admin_error(&r, 404, "no target");
    let r = hub.admin(Method::GET, "/targets", None).await;
    assert_eq!(r.body["targets"].as_array().unwrap().len(), 1);
});

on_every_backend!(
    bad_definitions_are_400_with_reasons,
    |hub: Hub| async move {
        let put = |id: &'static str, body: Value| {
            let hub = &hub;
            async move {
                hub.admin(Method::PUT, &format!("/targets/{id}"), Some(&body))
                    .await
            }
        };
        let mut t = scim_target(BEARER);
        t["base_url"] = json!("http://scim.example.com/v2");
        assert_admin_error(&put("a", t).await, 400, "https");
        let mut t = scim_target(BEARER);
        t["base_url"] = json!("http://10.1.2.3/v2");
        let r = put("a", t).await;
        assert_admin_error(&r, 400, "private-network");
        // The answer names the field (what a form highlights); parse errors name none.
        assert_eq!(r.body["field"], "base_url", "{}", r.text);
        // Metadata services: never, whatever the opt-in (this harness allows loopback).
        for url in [
            "https://169.254.169.254/latest",
            "https://[fd00:ec2::254]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://2852039166/",
            "http://0.0.0.0:8787/",
        ] {
            let mut t = scim_target(BEARER);
            t["base_url"] = json!(url);
            let r = put("a", t).await;
            assert_admin_error(&r, 400, "never allowed");
        }
        let mut t = scim_target(BEARER);
        t["kind"] = json!("ldap");
        let r = put("a", t).await;
        assert_admin_error(&r, 400, "unknown target kind");
        assert!(r.body.get("field").is_none(), "{}", r.text);
        let mut t = scim_target(BEARER);
        t["scope_filter"] = json!("active eq");
        assert_admin_error(&put("a", t).await, 400, "scope_filter");
        let mut t = scim_target(BEARER);
        t["scope_filter"] = json!("noSuchAttribute eq 1");
        assert_admin_error(&put("a", t).await, 400, "scope_filter");
        let mut t = scim_target(BEARER);
        t["enabled"] = json!("yes");
        assert_admin_error(&put("a", t).await, 400, "invalid target definition");
        let mut t = scim_target(BEARER);
        t["mode"] = json!("sometimes");
        assert_admin_error(&put("a", t).await, 400, "invalid target definition");
        let mut t = scim_target(BEARER);
        t["operations"] = json!([]);
        assert_admin_error(&put("a", t).await, 400, "operations");
        let mut t = scim_target(BEARER);
        t["scopeFilter"] = json!("active eq true");
        assert_admin_error(&put("a", t).await, 400, "scopeFilter");
        let mut t = scim_target(BEARER);
        t["mapping"] = json!([{"target": "title", "source": "nope"}]);
        assert_admin_error(&put("a", t).await, 400, "mapping[0]");
        let mut t = scim_target(BEARER);
        t["auth"] = json!({"bearer": 9876543210u64});
        let r = put("a", t).await;
        assert_admin_error(&r, 400, "invalid");
        assert!(!r.text.contains("9876543210"), "{}", r.text);
        let mut t = scim_target(BEARER);
        t["auth"] = json!(BEARER);
        let r = put("a", t).await;
        assert_admin_error(&r, 400, "invalid");
        assert_no_secret(&r);
        let mut t = scim_target(BEARER);
        t["base_url"] = json!("https://u:pw@example.com/");
        assert_admin_error(&put("a", t).await, 400, "credentials");
        assert_admin_error(&put("bad.id", scim_target(BEARER)).await, 400, "target id");
        let long = "x".repeat(65);
        let r = hub
            .admin(
                Method::PUT,
                &format!("/targets/{long}"),
                Some(&scim_target(BEARER)),
            )
            .await;
        assert_admin_error(&r, 400, "target id");
        // Not JSON, empty, not an object, too large.
        let raw = |body: &'static str| {
            let hub = &hub;
            async move {
                Resp::from(
                    hub.admin_req(Method::PUT, "/targets/a")
                        .body(body)
                        .send()
                        .await
                        .unwrap(),
                )
                .await
            }
        };
        assert_admin_error(&raw("{nope").await, 400, "not valid JSON");
        assert_admin_error(&raw("").await, 400, "empty");
        assert_admin_error(&raw("[1]").await, 400, "JSON object");
        let big = json!({"kind": "scim", "pad": "x".repeat(300 * 1024)});
        assert_admin_error(&put("a", big).await, 413, "larger");
        // Nothing was stored.
        let r = hub.admin(Method::GET, "/targets", None).await;
        assert_eq!(r.body["targets"], json!([]));
        // Unknown endpoints and methods answer JSON too.
        assert_admin_error(&hub.admin(Method::GET, "/nope", None).await, 404, "no such");
        assert_admin_error(
            &hub.admin(Method::POST, "/targets/a", None).await,
            405,
            "not allowed",
        );
        // PATCH takes a JSON merge patch only (RFC 7396), and says so.
        let r = hub.admin(Method::PATCH, "/targets/a", None).await;
        assert_admin_error(&r, 415, "merge-patch");
        assert_eq!(
            r.header("accept-patch"),
            Some("application/merge-patch+json")
        );
    }
);

on_every_backend!(admin_auth, |hub: Hub| async move {
    let url = hub.admin_url("/targets");
    let r = Resp::from(hub.client.get(&url).send().await.unwrap()).await;
    assert_admin_error(&r, 401, "token");
    assert!(r.header("www-authenticate").is_some());
    let r = Resp::from(
        hub.client
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_admin_error(&r, 401, "token");
    let r = Resp::from(
        hub.client
            .get(&url)
            .bearer_auth("nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_admin_error(&r, 401, "token");
    let r = Resp::from(
        hub.client
            .put(hub.admin_url("/targets/x"))
            .json(&scim_target(BEARER))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_admin_error(&r, 401, "token");
    // And the admin token is not a SCIM token.
    let r = Resp::from(
        hub.client
            .get(hub.url("/Users"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 401);
});

on_every_backend!(audit_queries, |hub: Hub| async move {
    let audit = Audit::new(hub.store.clone());
    let base = chrono::Utc::now() - chrono::Duration::hours(30);
    for i in 0..12i64 {
        let mut e = AuditEntry::new(
            if i % 2 == 0 { "crm" } else { "wiki" },
            if i % 3 == 0 {
                AuditOp::Create
            } else {
                AuditOp::Update
            },
            if i == 7 {
                AuditStatus::Dead
            } else {
                AuditStatus::Delivered
            },
        )
        .resource("User", &format!("u{}", i % 4))
        .event(&format!("e{i}"))
        .latency_ms(10 + i as u64)
        .detail("HTTP 201");
        e.at = (base + chrono::Duration::hours(i * 2))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        audit.record(e).await.unwrap();
    }
    let events = |r: &Resp| -> Vec<String> {
        r.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect()
    };
    let r = hub.admin(Method::GET, "/audit", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(events(&r).len(), 12);
    assert_eq!(events(&r)[0], "e11");
    assert_eq!(r.body["next_cursor"], Value::Null);
    let e = &r.body["entries"][0];
    for k in [
        "at",
        "event_id",
        "resource_type",
        "resource_id",
        "target",
        "op",
        "status",
        "detail",
        "latency_ms",
    ] {
        assert!(e.get(k).is_some(), "{k} missing in {e}");
    }
    let r = hub.admin(Method::GET, "/audit?target=crm", None).await;
    assert_eq!(events(&r), ["e10", "e8", "e6", "e4", "e2", "e0"]);
    let r = hub.admin(Method::GET, "/audit?status=dead", None).await;
    assert_eq!(events(&r), ["e7"]);
    let r = hub
        .admin(Method::GET, "/audit?resource=u1&op=update", None)
        .await;
    assert_eq!(events(&r), ["e5", "e1"]);
    let since = (base + chrono::Duration::hours(18)).to_rfc3339();
    let r = hub
        .admin(Method::GET, &format!("/audit?since={}", q(&since)), None)
        .await;
    assert_eq!(events(&r), ["e11", "e10", "e9"]);
    // Pages.
    let mut seen = Vec::new();
    let mut path = "/audit?limit=5&target=wiki".to_string();
    loop {
        let r = hub.admin(Method::GET, &path, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen.extend(events(&r));
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/audit?limit=5&target=wiki&cursor={}", q(c)),
            None => break,
        }
    }
    assert_eq!(seen, ["e11", "e9", "e7", "e5", "e3", "e1"]);
    // Bad parameters.
    for (p, why) in [
        ("/audit?op=frobnicate", "op"),
        ("/audit?status=great", "status"),
        ("/audit?since=yesterday", "since"),
        ("/audit?limit=-1", "limit"),
        ("/audit?limit=abc", "limit"),
        ("/audit?cursor=%%%", "cursor"),
        ("/audit?cursor=bm9wZQ", "cursor"),
        ("/audit?tagret=crm", "tagret"),
    ] {
        assert_admin_error(&hub.admin(Method::GET, p, None).await, 400, why);
    }
    let r = hub.admin(Method::GET, "/audit?limit=5000", None).await;
    assert_eq!(r.status, 200, "limit is capped, not refused");
});

on_every_backend!(dead_letters, |hub: Hub| async move {
    let r = hub.admin(Method::GET, "/deadletters", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"count": 0, "dead_letters": []}));
    let r = hub.admin(Method::POST, "/deadletters/redrive", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"redriven": 0}));
    // One message that keeps failing ends up there.
    hub.queue
        .send(vec![OutMessage::new(
            "u1",
            "e1",
            json!({"id": "e1", "password": "v1.sealed"}).to_string(),
        )])
        .await
        .unwrap();
    for _ in 0..50 {
        if hub.queue.dead_letter_count().await.unwrap() > 0 {
            break;
        }
        for d in hub.queue.receive(1, Duration::ZERO).await.unwrap() {
            hub.queue
                .retry_later(&d.receipt, Duration::ZERO)
                .await
                .unwrap();
        }
    }
    let r = hub.admin(Method::GET, "/deadletters?limit=10", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["count"], 1);
    assert_eq!(r.body["dead_letters"][0]["dedup_id"], "e1");
    assert_eq!(r.body["dead_letters"][0]["body"]["password"], "***");
    assert_admin_error(
        &hub.admin(Method::GET, "/deadletters?limit=0", None).await,
        400,
        "limit",
    );
    let r = hub.admin(Method::POST, "/deadletters/redrive", None).await;
    assert_eq!(r.body, json!({"redriven": 1}));
    let r = hub.admin(Method::GET, "/deadletters", None).await;
    assert_eq!(r.body["count"], 0);
    let r = hub.admin(Method::GET, "/audit?op=redrive", None).await;
    assert_eq!(r.body["entries"][0]["status"], "queued");
});

on_every_backend!(sync_is_answered_by_the_hubs_engine, |hub: Hub| async move {
    hub.admin(Method::PUT, "/targets/crm", Some(&scim_target(BEARER)))
        .await;
    // The hub's own on-demand engine answers (every hub has one: the composition root
    // builds it).
    let r = hub
        .admin(Method::POST, "/sync", Some(&json!({"target": "crm"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
});

async fn on_demand_sync(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let hub = Hub::start_with(store, |state| {
        state.hub.on_demand = Arc::new(DirectoryOnDemand::new(
            state.hub.directory.clone(),
            state.hub.queue.clone(),
            Arc::new(|target: &str, run: &str, u: &Stored| {
                Some(OutMessage::new(
                    u.id(),
                    format!("sync-{target}-{}", u.id()),
                    json!({"sync": target, "user": u.id(), "run": run}).to_string(),
                ))
            }),
        ));
    })
    .await;
    let a = hub.user("alice").await;
    hub.user("bob").await;
    hub.admin(Method::PUT, "/targets/crm", Some(&scim_target(BEARER)))
        .await;
    let mut off = scim_target(BEARER);
    off["enabled"] = json!(false);
    hub.admin(Method::PUT, "/targets/off", Some(&off)).await;

    // Nothing delivers these messages: no outcome comes, and the answer says so
    // (`wait: 0`: answer at once).
    let sync = |mut body: Value| {
        let hub = &hub;
        body["wait"] = json!(0);
        async move { hub.admin(Method::POST, "/sync", Some(&body)).await }
    };
    let r = sync(json!({"target": "crm", "filter": "userName eq \"alice\""})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["queued"], 1, "{}", r.text);
    assert_eq!(r.body["outcome"]["state"], "pending", "{}", r.text);
    assert_eq!(r.body["outcome"]["users"]["queued"], 1, "{}", r.text);
    let r = sync(json!({"target": "crm"})).await;
    assert_eq!(r.body["queued"], 2, "{}", r.text);
    let r = sync(json!({"target": "crm", "user": a})).await;
    assert_eq!(r.body["queued"], 1, "{}", r.text);
    // The run can be asked for later.
    let run = r.body["outcome"]["run"].as_str().unwrap();
    let later = hub.admin(Method::GET, &format!("/runs/{run}"), None).await;
    assert_eq!(later.status, 200, "{}", later.text);
    assert_eq!(later.body["state"], "pending", "{}", later.text);
    assert_eq!(later.body["kind"], "sync", "{}", later.text);
    assert_admin_error(
        &hub.admin(Method::GET, "/runs/nope", None).await,
        404,
        "no run",
    );
    let r = hub
        .admin(
            Method::POST,
            "/sync",
            Some(&json!({"target": "crm", "wait": 99})),
        )
        .await;
    assert_admin_error(&r, 400, "wait");
    assert_admin_error(
        &sync(json!({"target": "crm", "user": "nobody"})).await,
        404,
        "no user",
    );
    assert_admin_error(
        &sync(json!({"target": "crm", "filter": "userName eq"})).await,
        400,
        "invalidFilter",
    );
    assert_admin_error(
        &sync(json!({"target": "crm", "filter": "bogus eq 1"})).await,
        400,
        "invalidFilter",
    );
    assert_admin_error(&sync(json!({"target": "nope"})).await, 404, "no target");
    assert_admin_error(&sync(json!({"target": "off"})).await, 409, "disabled");
    assert_admin_error(
        &sync(json!({"targte": "crm"})).await,
        400,
        "invalid sync request",
    );
    assert_admin_error(
        &sync(json!({"target": "crm", "filter": "active eq true", "user": a})).await,
        400,
        "not both",
    );
    let received = hub.queue.receive(10, Duration::ZERO).await.unwrap();
    assert!(!received.is_empty());
    let r = hub
        .admin(Method::GET, "/audit?op=sync&target=crm", None)
        .await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_sync_embedded() {
    on_demand_sync(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_sync_dynamodb() {
    on_demand_sync(Backend::DynamoDb).await;
}

/// `/` leads somewhere (a small page naming the surfaces and the docs), and every path
/// nobody serves answers an error body in its surface's format: SCIM under `/scim/v2`,
/// JSON under `/admin` and elsewhere. These answered an empty 404 before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_page_and_unknown_paths_answer_in_their_surfaces_format() {
    let hub = Hub::start(Backend::Embedded).await.unwrap();
    let origin = format!("http://{}", hub.addr);
    let get = |path: &str, accept: &str| {
        let url = format!("{origin}{path}");
        let client = hub.client.clone();
        let accept = accept.to_string();
        async move {
            Resp::from(
                client
                    .get(url)
                    .header("Accept", accept)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let page = get("/", "text/html,*/*").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    for link in ["/healthz", "/scim/v2", "/admin", "/console/", "README.md"] {
        assert!(
            page.text.contains(link),
            "{link} missing from {}",
            page.text
        );
    }
    // A client that asks for JSON gets the same as JSON.
    let json = get("/", "application/json").await;
    assert_eq!(json.status, 200, "{}", json.text);
    assert_eq!(json.body["scim"], "/scim/v2", "{}", json.text);
    assert_eq!(json.body["console"], "/console/", "{}", json.text);

    for path in ["/admin", "/admin/", "/admin/nope", "/admin/targets/x/nope"] {
        let r = get(path, "*/*").await;
        assert_admin_error(&r, 404, "admin");
    }
    for path in ["/scim/v2", "/scim/v2/", "/scim/v2/Nope"] {
        let r = get(path, "*/*").await;
        r.assert_error(404, None);
        assert!(
            r.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("/scim/v2/")),
            "{}",
            r.text
        );
    }
    for path in ["/nope", "/favicon.ico"] {
        let r = get(path, "*/*").await;
        assert_admin_error(&r, 404, "no such endpoint");
    }
    assert_admin_error(
        &get("/webhooks", "*/*").await,
        404,
        "no such webhook endpoint",
    );
    let r = Resp::from(hub.client.post(format!("{origin}/")).send().await.unwrap()).await;
    assert_admin_error(&r, 405, "method");
}

// API tokens through the admin API, on both stores: created with a scope and a name
// (the secret answered once), listed without secrets, revoked by id or by secret,
// audited with who did it; a revoked token is refused.
on_every_backend!(tokens_over_http, |hub: Hub| async move {
    let origin = format!("http://{}", hub.addr);
    let status = |path: &str, token: &str| {
        let req = hub
            .client
            .get(format!("{origin}{path}"))
            .bearer_auth(token)
            .send();
        async move { req.await.expect("request").status().as_u16() }
    };
    let r = hub
        .admin(
            Method::POST,
            "/tokens",
            Some(&json!({"scope": "scim", "name": "okta"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let scim = r.body["token"].as_str().unwrap().to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(
        scim.starts_with("psy_") && id.starts_with("tok_"),
        "{}",
        r.text
    );
    assert_eq!(
        (&r.body["scope"], &r.body["name"], &r.body["created_by"]),
        (&json!("scim"), &json!("okta"), &json!("admin:static")),
        "{}",
        r.text
    );
    assert_eq!(status("/scim/v2/Users", &scim).await, 200);
    assert_eq!(
        status("/admin/targets", &scim).await,
        401,
        "scim scope only"
    );
    let r = hub
        .admin(
            Method::POST,
            "/tokens",
            Some(&json!({"scope": "admin", "name": "ops"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let admin = r.body["token"].as_str().unwrap().to_string();
    assert_eq!(status("/admin/tokens", &admin).await, 200);

    // Listed without the secrets (nor their hashes).
    let list = hub.admin(Method::GET, "/tokens", None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let names: Vec<&str> = list.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["okta", "ops"], "{}", list.text);
    for secret in [&scim, &admin] {
        assert!(!list.text.contains(secret.as_str()), "{}", list.text);
        let hash = hex_of(&provisync_http::auth::hash_token(secret));
        assert!(!list.text.contains(&hash), "{}", list.text);
    }

    // Revoked by id: refused from then on.
    let r = hub
        .admin(Method::DELETE, &format!("/tokens/{id}"), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(status("/scim/v2/Users", &scim).await, 401);
    let r = hub
        .admin(Method::DELETE, &format!("/tokens/{id}"), None)
        .await;
    assert_admin_error(&r, 404, "no stored token");
    // Revoked by its secret.
    let r = hub
        .admin(
            Method::POST,
            "/tokens/revoke",
            Some(&json!({"token": admin})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(status("/admin/tokens", &admin).await, 401);
    let r = hub
        .admin(
            Method::POST,
            "/tokens/revoke",
            Some(&json!({"token": ADMIN_TOKEN})),
        )
        .await;
    assert_admin_error(&r, 404, "environment");
    assert!(!r.text.contains(ADMIN_TOKEN), "{}", r.text);

    // Bad requests.
    for (body, says) in [
        (json!({"scope": "root", "name": "x"}), "scope"),
        (json!({"scope": "scim", "name": ""}), "name"),
        (json!({"scope": "scim", "name": "a\nb"}), "name"),
        (json!({"scope": "scim"}), "name"),
        (json!({"scope": "scim", "name": "x", "extra": 1}), "extra"),
    ] {
        let r = hub.admin(Method::POST, "/tokens", Some(&body)).await;
        assert_admin_error(&r, 400, says);
    }
    let r = hub
        .client
        .get(hub.admin_url("/tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Audited, with who did it; never the secret.
    let a = hub.admin(Method::GET, "/audit?op=create_token", None).await;
    let entries = a.body["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 2, "{}", a.text);
    assert!(
        entries.iter().all(|e| e["actor"] == "admin:static"),
        "{}",
        a.text
    );
    assert_eq!(entries[1]["resource_id"], id.as_str(), "{}", a.text);
    let a = hub.admin(Method::GET, "/audit?op=revoke_token", None).await;
    assert_eq!(
        a.body["entries"].as_array().map(Vec::len),
        Some(2),
        "{}",
        a.text
    );
    assert!(!a.text.contains(&scim) && !a.text.contains(&admin));
});

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
