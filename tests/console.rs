//! The operator console's server side over real HTTP, on every backend: sessions (cookie,
//! CSRF, sign-out, audit), the console's pages and headers, and the admin API endpoints
//! it reads (overview, operations over time, users, preview, scope count, activity with
//! userNames and CSV) and acts through (provision on demand against `scim2-server`,
//! redrive one dead letter, `***` keeping stored secrets, definition changes audited).
//! The browser itself is driven by `tests/browser` (Playwright on Chromium).

use std::time::Duration;

use provisync_core::queue::OutMessage;
use provisync_core::sync::audit::{Audit, AuditEntry, AuditOp, AuditStatus};
use provisync_tests::peers::ScimPeer;
use provisync_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

/// `POST /console/session` with `token`: the response and the session cookie (if any).
async fn sign_in(hub: &Hub, token: &str, extra: &[(&str, &str)]) -> (Resp, Option<String>) {
    let mut r = hub
        .client
        .post(format!("http://{}/console/session", hub.addr))
        .header("Content-Type", "application/json")
        .body(json!({"token": token}).to_string());
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    let resp = Resp::from(r.send().await.expect("sign-in")).await;
    let cookie = resp
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .map(str::to_string);
    (resp, cookie)
}

/// A request with the session cookie (and the CSRF token when given).
async fn with_session(
    hub: &Hub,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let mut r = hub
        .client
        .request(method, format!("http://{}{path}", hub.addr))
        .header("Cookie", cookie)
        .header("Content-Type", "application/json");
    if let Some(c) = csrf {
        r = r.header("X-CSRF-Token", c);
    }
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    Resp::from(r.send().await.expect("request")).await
}

fn webhook_target() -> Value {
    json!({"kind": "webhook", "url": "https://site.example/hook",
           "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "user_sync": true})
}

on_every_backend!(sessions_cookies_and_csrf, |hub: Hub| async move {
    // A wrong token: a clear message, no cookie, nothing readable.
    let (r, cookie) = sign_in(&hub, "not-a-token", &[]).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("not a valid admin token")
    );
    assert!(cookie.is_none());
    // A SCIM token is not an admin token.
    assert_eq!(sign_in(&hub, TOKEN, &[]).await.0.status, 401);
    let (r, cookie) = sign_in(&hub, ADMIN_TOKEN, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let set = r.header("set-cookie").unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "plain http on loopback: {set}");
    assert!(!r.text.contains(ADMIN_TOKEN));
    let cookie = cookie.unwrap();
    let csrf = r.body["csrf"].as_str().unwrap().to_string();
    assert_eq!(r.body["name"], "admin:static");
    // Behind https (API Gateway says so), the cookie is Secure.
    let (r, _) = sign_in(&hub, ADMIN_TOKEN, &[("X-Forwarded-Proto", "https")]).await;
    assert!(r.header("set-cookie").unwrap().contains("; Secure"));
    // Another site's page cannot sign the browser in.
    let (r, _) = sign_in(&hub, ADMIN_TOKEN, &[("Sec-Fetch-Site", "cross-site")]).await;
    assert_eq!(r.status, 403);

    // Reading with the session: no CSRF token needed.
    let r = with_session(&hub, Method::GET, "/admin/targets", &cookie, None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = with_session(&hub, Method::GET, "/console/session", &cookie, None, None).await;
    assert_eq!(r.body["csrf"], csrf.as_str());
    // Changing without it, with a wrong one, or from another site: 403.
    let t = webhook_target();
    let r = with_session(
        &hub,
        Method::PUT,
        "/admin/targets/site",
        &cookie,
        None,
        Some(&t),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = with_session(
        &hub,
        Method::PUT,
        "/admin/targets/site",
        &cookie,
        Some("nope"),
        Some(&t),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = hub
        .client
        .put(format!("http://{}/admin/targets/site", hub.addr))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .header("Sec-Fetch-Site", "cross-site")
        .body(t.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = with_session(
        &hub,
        Method::PUT,
        "/admin/targets/site",
        &cookie,
        Some(&csrf),
        Some(&t),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Audited with the signed-in principal: the sign-in and the change.
    let r = hub.admin(Method::GET, "/activity?op=configure", None).await;
    assert_eq!(r.body["entries"][0]["actor"], "admin:static");
    assert_eq!(r.body["entries"][0]["detail"], "target site created");
    let r = hub.admin(Method::GET, "/activity?op=sign_in", None).await;
    assert_eq!(r.body["entries"][0]["actor"], "admin:static");
    // A forged cookie reads nothing.
    let r = with_session(
        &hub,
        Method::GET,
        "/admin/targets",
        "provisync_session=forged",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 401);

    // Sign-out needs the CSRF token, ends the session, clears the cookie, is audited.
    let r = with_session(
        &hub,
        Method::DELETE,
        "/console/session",
        &cookie,
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let r = with_session(
        &hub,
        Method::DELETE,
        "/console/session",
        &cookie,
        Some(&csrf),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let r = with_session(&hub, Method::GET, "/admin/targets", &cookie, None, None).await;
    assert_eq!(r.status, 401);
    let r = with_session(&hub, Method::GET, "/console/session", &cookie, None, None).await;
    assert_eq!(r.status, 204);
    let r = hub.admin(Method::GET, "/activity?op=sign_out", None).await;
    assert_eq!(r.body["entries"][0]["actor"], "admin:static");
});

on_every_backend!(
    console_pages_are_served_with_a_strict_policy,
    |hub: Hub| async move {
        let get = |path: &str| hub.client.get(format!("http://{}{path}", hub.addr)).send();
        let r = get("/console/").await.unwrap();
        assert_eq!(r.status(), 200);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        for d in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(d), "{csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let html = r.text().await.unwrap();
        assert!(html.contains("/console/assets/app.js"));
        // No inline script, nothing from elsewhere.
        assert!(
            !html.contains("<script>") && !html.contains("http://") && !html.contains("https://")
        );
        let r = get("/console/assets/app.js").await.unwrap();
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
        let js = r.text().await.unwrap();
        assert!(!js.contains("innerHTML") && !js.contains("localStorage.setItem"));
        assert_eq!(get("/console/assets/nope.js").await.unwrap().status(), 404);
        // At `/console` too (API Gateway's route without the slash).
        let r = get("/console").await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("content-security-policy"));
    }
);

on_every_backend!(overview_and_operations_over_time, |hub: Hub| async move {
    let r = hub
        .admin(Method::PUT, "/targets/site", Some(&webhook_target()))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let audit = Audit::new(hub.store.clone());
    for (op, status, event) in [
        (AuditOp::Create, AuditStatus::Delivered, "e0"),
        (AuditOp::Update, AuditStatus::Retry, "e1"),
        (AuditOp::Update, AuditStatus::Refused, "e2"),
    ] {
        let e = AuditEntry::new("site", op, status)
            .event(event)
            .detail("why");
        audit.record(e).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = hub.admin(Method::GET, "/overview", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t = &r.body["targets"][0];
    assert_eq!(t["id"], "site");
    assert_eq!(t["kind"], "webhook");
    assert_eq!(t["mode"], "realtime");
    assert_eq!(t["health"]["consecutive_failures"], 2);
    assert_eq!(t["health"]["backlog"], 1);
    assert_eq!(t["health"]["last_error"]["detail"], "why");
    assert!(t["health"]["last_success"].is_string());
    assert_eq!(r.body["dead_letters"], 0);
    let r = hub
        .admin(Method::GET, "/stats/operations?window=24h", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let buckets = r.body["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 24);
    let now = &buckets[23];
    assert_eq!(
        (
            now["created"].as_u64(),
            now["refused"].as_u64(),
            now["updated"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
    let r = hub
        .admin(Method::GET, "/stats/operations?window=30d", None)
        .await;
    assert_eq!(r.body["buckets"].as_array().unwrap().len(), 30);
    assert_eq!(r.body["buckets"][29]["created"], 1);
    assert_eq!(
        hub.admin(Method::GET, "/stats/operations?window=7d", None)
            .await
            .status,
        400
    );
});

/// Three users through the SCIM API; returns alice's id.
async fn seed_users(hub: &Hub) -> String {
    let mut alice = String::new();
    for (name, title) in [
        ("alice", "Engineer"),
        ("bob", "Designer"),
        ("carol", "Engineer"),
    ] {
        let r = hub
            .post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": format!("{name}@example.com"),
                "displayName": name, "title": title, "emails": [{"value": format!("{name}@example.com")}],
                "password": "Secret-123!"}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        if name == "alice" {
            alice = r.body["id"].as_str().unwrap().to_string();
        }
    }
    alice
}

on_every_backend!(users_preview_and_scope_count, |hub: Hub| async move {
    let alice = seed_users(&hub).await;
    let r = hub.admin(Method::GET, "/users?q=ali", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["users"][0]["user_name"], "alice@example.com");
    assert_eq!(r.body["users"][0]["email"], "alice@example.com");
    // With `q`, not counted; every user was searched.
    assert!(r.body.get("total").is_none(), "{}", r.text);
    assert_eq!(r.body["complete"], true, "{}", r.text);
    let r = hub.admin(Method::GET, "/users", None).await;
    assert_eq!(r.body["total"], 3, "{}", r.text);
    assert_eq!(
        hub.admin(Method::GET, "/users?q=%22%20or", None)
            .await
            .status,
        200
    );
    let preview = json!({"user": "alice@example.com",
        "mapping": [{"target": "userType", "value": "Employee"}, {"target": "title", "drop": true}],
        "scope_filter": "title eq \"Engineer\""});
    let r = hub.admin(Method::POST, "/preview", Some(&preview)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["in_scope"], true);
    assert_eq!(r.body["user"]["id"], alice.as_str());
    assert_eq!(r.body["payload"]["userType"], "Employee");
    assert!(r.body["payload"].get("title").is_none());
    assert!(!r.text.contains("Secret-123!") && r.body["payload"].get("password").is_none());
    let r = hub
        .admin(
            Method::POST,
            "/preview",
            Some(&json!({"user": "bob@example.com", "scope_filter": "title eq \"Engineer\""})),
        )
        .await;
    assert_eq!(r.body["in_scope"], false);
    let r = hub
        .admin(Method::POST, "/preview", Some(&json!({"user": "nobody"})))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = hub
        .admin(
            Method::POST,
            "/preview",
            Some(&json!({"user": "bob@example.com", "scope_filter": "title eq"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = hub
        .admin(
            Method::POST,
            "/preview",
            Some(&json!({"user": "bob@example.com", "mapping": [{"nope": 1}]})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = hub
        .admin(
            Method::POST,
            "/preview/scope",
            Some(&json!({"scope_filter": "title eq \"Engineer\""})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"selected": 2, "total": 3}));
    let r = hub
        .admin(Method::POST, "/preview/scope", Some(&json!({})))
        .await;
    assert_eq!(r.body, json!({"selected": 3, "total": 3}));
    let r = hub
        .admin(
            Method::POST,
            "/preview/scope",
            Some(&json!({"scope_filter": "nosuch eq 1"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
});

on_every_backend!(provision_on_demand_with_steps, |hub: Hub| async move {
    let Some(peer) = ScimPeer::start().await else {
        return;
    };
    let alice = seed_users(&hub).await;
    let target = json!({"kind": "scim", "base_url": peer.base, "auth": {"bearer": peer.token},
        "scope_filter": "title eq \"Engineer\"", "mapping": [{"target": "userType", "value": "Employee"}]});
    assert_eq!(
        hub.admin(Method::PUT, "/targets/peer", Some(&target))
            .await
            .status,
        201
    );
    let r = hub
        .admin(
            Method::POST,
            "/provision",
            Some(&json!({"target": "peer", "user": "alice@example.com"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let steps: Vec<(&str, &str)> = r.body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("scope", "passed"),
            ("match", "passed"),
            ("attributes", "passed"),
            ("send", "passed")
        ],
        "{}",
        r.text
    );
    assert_eq!(r.body["outcome"]["op"], "create");
    assert_eq!(r.body["outcome"]["status"], "delivered");
    assert_eq!(r.body["payload"]["userType"], "Employee");
    assert!(
        r.body["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["attribute"] == "userType")
    );
    assert!(!r.text.contains("Secret-123!"));
    let target_id = r.body["target_id"].as_str().unwrap().to_string();
    let (status, on_peer) = peer.get(&format!("/Users/{target_id}")).await;
    assert_eq!(status, 200, "{}", peer.log());
    assert_eq!(on_peer["userName"], "alice@example.com");
    // Again: linked, unchanged, nothing sent.
    let r = hub
        .admin(
            Method::POST,
            "/provision",
            Some(&json!({"target": "peer", "user": alice})),
        )
        .await;
    assert!(
        r.body["steps"][1]["detail"]
            .as_str()
            .unwrap()
            .starts_with("Linked"),
        "{}",
        r.text
    );
    assert_eq!(r.body["steps"][2]["state"], "skipped");
    assert_eq!(r.body["steps"][3]["state"], "skipped");
    assert_eq!(r.body["changes"], json!([]));
    // Out of scope, not on the target: nothing to do.
    let r = hub
        .admin(
            Method::POST,
            "/provision",
            Some(&json!({"target": "peer", "user": "bob@example.com"})),
        )
        .await;
    assert_eq!(r.body["steps"][0]["state"], "skipped", "{}", r.text);
    assert_eq!(r.body["steps"][3]["state"], "skipped", "{}", r.text);
    // Audited with who asked; the user's entries carry its userName in Activity.
    let r = hub
        .admin(Method::GET, "/activity?account=alice%40example.com", None)
        .await;
    let entries = r.body["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["op"] == "sync" && e["actor"] == "admin:static"),
        "{}",
        r.text
    );
    assert!(
        entries
            .iter()
            .any(|e| e["op"] == "create" && e["target"] == "peer")
    );
    assert!(
        entries
            .iter()
            .all(|e| e["resource_name"] == "alice@example.com"),
        "{}",
        r.text
    );
    // Errors: unknown target, unknown user, bad body.
    assert_eq!(
        hub.admin(
            Method::POST,
            "/provision",
            Some(&json!({"target": "nope", "user": alice}))
        )
        .await
        .status,
        404
    );
    assert_eq!(
        hub.admin(
            Method::POST,
            "/provision",
            Some(&json!({"target": "peer", "user": "nobody"}))
        )
        .await
        .status,
        404
    );
    assert_eq!(
        hub.admin(Method::POST, "/provision", Some(&json!({"target": "peer"})))
            .await
            .status,
        400
    );
});

on_every_backend!(activity_filters_names_and_csv, |hub: Hub| async move {
    let alice = seed_users(&hub).await;
    let audit = Audit::new(hub.store.clone());
    let mut old =
        AuditEntry::new("crm", AuditOp::Update, AuditStatus::Delivered).resource("User", &alice);
    old.at = "2020-01-01T00:00:00.000Z".into();
    let _ = audit.record(old).await; // outside retention: may be dropped, never shown below
    audit
        .record(
            AuditEntry::new("crm", AuditOp::Create, AuditStatus::Refused)
                .resource("User", &alice)
                .detail("=cmd|' /C calc'!A0, \"quoted\""),
        )
        .await
        .unwrap();
    audit
        .record(
            AuditEntry::new("crm", AuditOp::Create, AuditStatus::Delivered)
                .resource("User", "gone-id"),
        )
        .await
        .unwrap();
    let r = hub
        .admin(
            Method::GET,
            "/activity?account=alice%40example.com&status=refused",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = &r.body["entries"].as_array().unwrap();
    assert_eq!(e.len(), 1, "{}", r.text);
    assert_eq!(e[0]["resource_name"], "alice@example.com");
    assert_eq!(e[0]["resource_id"], alice.as_str());
    // A deleted resource keeps only its id.
    let r = hub
        .admin(Method::GET, "/activity?account=gone-id", None)
        .await;
    assert!(
        r.body["entries"][0].get("resource_name").is_none(),
        "{}",
        r.text
    );
    // A time range that ends before everything: nothing.
    let r = hub
        .admin(
            Method::GET,
            "/activity?until=2021-01-01T00:00:00Z&target=crm",
            None,
        )
        .await;
    assert_eq!(r.body["entries"], json!([]), "{}", r.text);
    // CSV of the filtered view, safe to open in a spreadsheet.
    let r = hub
        .admin(Method::GET, "/activity?target=crm&format=csv", None)
        .await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    assert!(
        r.header("content-disposition")
            .unwrap()
            .contains("attachment")
    );
    let lines: Vec<&str> = r.text.lines().collect();
    assert!(lines[0].starts_with("time,target,operation,status,account"));
    assert!(r.text.contains("alice@example.com"));
    assert!(
        r.text.contains("\"'=cmd|' /C calc'!A0, \"\"quoted\"\"\""),
        "{}",
        r.text
    );
    for bad in [
        "/activity?format=xml",
        "/activity?until=yesterday",
        "/activity?op=nope",
        "/activity?nope=1",
    ] {
        assert_eq!(hub.admin(Method::GET, bad, None).await.status, 400, "{bad}");
    }
});

on_every_backend!(one_dead_letter_redriven, |hub: Hub| async move {
    for (group, id) in [("u1", "e1"), ("u2", "e2")] {
        hub.queue
            .send(vec![OutMessage::new(
                group,
                id,
                json!({"id": id, "password": "v1.sealed"}).to_string(),
            )])
            .await
            .unwrap();
    }
    for _ in 0..100 {
        if hub.queue.dead_letter_count().await.unwrap() >= 2 {
            break;
        }
        for d in hub.queue.receive(10, Duration::ZERO).await.unwrap() {
            hub.queue
                .retry_later(&d.receipt, Duration::ZERO)
                .await
                .unwrap();
        }
    }
    assert_eq!(hub.queue.dead_letter_count().await.unwrap(), 2);
    let r = hub
        .admin(
            Method::POST,
            "/deadletters/redrive-one",
            Some(&json!({"dedup_id": "e2"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"redriven": 1}));
    let r = hub.admin(Method::GET, "/deadletters", None).await;
    assert_eq!(r.body["count"], 1);
    assert_eq!(r.body["dead_letters"][0]["dedup_id"], "e1");
    let r = hub
        .admin(
            Method::POST,
            "/deadletters/redrive-one",
            Some(&json!({"dedup_id": "e2"})),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(
        hub.admin(Method::POST, "/deadletters/redrive-one", Some(&json!({})))
            .await
            .status,
        400
    );
    let r = hub.admin(Method::GET, "/activity?op=redrive", None).await;
    assert_eq!(r.body["entries"][0]["actor"], "admin:static");
    assert_eq!(r.body["entries"][0]["event_id"], "e2");
});

on_every_backend!(
    placeholder_secrets_keep_the_stored_ones,
    |hub: Hub| async move {
        let mut t = webhook_target();
        let r = hub.admin(Method::PUT, "/targets/site", Some(&t)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        // Sent back as read: the stored secret stays (what the console's edit form does).
        let read = hub.admin(Method::GET, "/targets/site", None).await.body;
        assert_eq!(read["secret"], "***");
        let r = hub.admin(Method::PUT, "/targets/site", Some(&read)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let targets = provisync_core::target::Targets::new(
            hub.store.clone(),
            std::sync::Arc::new(
                provisync_core::crypto::SecretBox::from_encoded(&hub.secret_key).unwrap(),
            ),
        );
        let stored = targets.get("site").await.unwrap().unwrap();
        assert_eq!(
            stored.secrets(),
            vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()]
        );
        // A new target cannot say "***".
        t["secret"] = json!("***");
        let r = hub.admin(Method::PUT, "/targets/other", Some(&t)).await;
        assert_eq!(r.status, 400, "{}", r.text);
        // Sources likewise.
        let s = json!({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "user_sync": true});
        assert_eq!(
            hub.admin(Method::PUT, "/sources/intranet", Some(&s))
                .await
                .status,
            201
        );
        let read = hub.admin(Method::GET, "/sources/intranet", None).await.body;
        let r = hub
            .admin(Method::PUT, "/sources/intranet", Some(&read))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            hub.admin(Method::PUT, "/sources/new", Some(&read))
                .await
                .status,
            400
        );
    }
);

/// The console's user picker asks on every keystroke: a prefix found early costs the
/// users read to find it, not a count of every match in the directory (before: every
/// user was read for `total`, 3,000 here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_picker_reads_what_it_shows() {
    let store = provisync_tests::counting::CountingStore::new(std::sync::Arc::new(
        provisync_core::store::embedded::EmbeddedStore::in_memory(),
    ));
    let hub = Hub::start_on(std::sync::Arc::new(store.clone())).await;
    // 3 users whose name starts with "split" before the first 1,000 a page examines, the
    // rest after: the search goes on to further pages for them.
    let names = (0..12)
        .map(|i| format!("match{i}@example.com"))
        .chain((0..3).map(|i| format!("split{i}@example.com")))
        .chain((0..3000).map(|i| format!("other{i}@example.com")))
        .chain((3..13).map(|i| format!("split{i}@example.com")));
    let names: Vec<String> = names.collect();
    for chunk in names.chunks(500) {
        let ops: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, n)| {
                json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                "data": {"schemas": [USER_SCHEMA], "userName": n}})
            })
            .collect();
        let r = hub
            .post(
                "/Bulk",
                &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // Eight users found for `q`.
    let eight = |q: &'static str| {
        let hub = &hub;
        async move {
            let r = hub
                .admin(Method::GET, &format!("/users?q={q}&limit=8"), None)
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(
                r.body["users"].as_array().map(Vec::len),
                Some(8),
                "{}",
                r.text
            );
        }
    };
    store.reset();
    eight("match").await;
    let read = store.read_items();
    println!("the picker read {read} store items for 8 users of 3,025");
    assert!(
        read < 300,
        "the picker read {read} items for 8 users of 3,025"
    );
    // Found on more than one page: 3 on the first, the rest further on.
    eight("split").await;
    // A prefix nobody has: every user searched (3,025 is within the search's bound).
    let r = hub.admin(Method::GET, "/users?q=nobody", None).await;
    assert_eq!(r.body["users"], json!([]), "{}", r.text);
    assert_eq!(r.body["complete"], true, "{}", r.text);
}
