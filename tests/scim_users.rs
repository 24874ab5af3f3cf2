//! Users over real HTTP: lifecycle, filters, paging, sorting, ETags, uniqueness.

use provisync_tests::{ENTERPRISE, Hub, PATCH_OP, USER_SCHEMA, on_every_backend, q};
use serde_json::{Value, json};

fn alice() -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": "Alice@Example.org",
        "externalId": "ext-alice",
        "name": {"givenName": "Alice", "familyName": "Liddell", "formatted": "Alice Liddell"},
        "displayName": "Alice L",
        "active": true,
        "password": "Wonderland-1865",
        "title": "Explorer",
        "emails": [
            {"value": "alice@example.org", "type": "work", "primary": true},
            {"value": "alice@home.example", "type": "home"}
        ],
        "phoneNumbers": [{"value": "+1 555 0100", "type": "mobile"}],
        ENTERPRISE: {"employeeNumber": "1865", "department": "Looking Glass", "manager": {"value": "m-1"}},
    })
}

on_every_backend!(user_lifecycle, |hub: Hub| async move {
    // Create.
    let r = hub.post("/Users", &alice()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
    let id = r.id();
    let loc = r.header("location").expect("Location header").to_string();
    assert_eq!(loc, format!("{}/Users/{id}", hub.base));
    assert_eq!(r.body["meta"]["location"], loc);
    assert_eq!(r.body["meta"]["resourceType"], "User");
    let etag = r.header("etag").expect("ETag").to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(r.body["meta"]["version"], etag);
    assert!(
        r.body.get("password").is_none(),
        "password must never be returned"
    );
    assert!(
        !r.text.contains("Wonderland"),
        "password leaked: {}",
        r.text
    );
    assert_eq!(r.body["name"]["givenName"], "Alice");
    assert_eq!(r.body[ENTERPRISE]["department"], "Looking Glass");

    // Read: the same representation the create answered (which is not read back).
    let created = r.body.clone();
    let r = hub.get(&format!("/Users/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, created);
    assert_eq!(r.body["userName"], "Alice@Example.org");
    assert_eq!(r.body["id"], id);
    assert!(r.body.get("password").is_none());

    // Replace (PUT): id and meta.created are kept, version moves.
    let mut body = alice();
    body["displayName"] = json!("Alice Liddell");
    body["id"] = json!("attempt-to-change-id");
    let r = hub.put(&format!("/Users/{id}"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["id"], id);
    assert_eq!(r.body["displayName"], "Alice Liddell");
    assert_ne!(r.header("etag").unwrap(), etag);

    // Deactivate: still readable.
    let r = hub
        .patch(&format!("/Users/{id}"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["active"], false);
    let r = hub.get(&format!("/Users/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["active"], false);

    // Delete.
    let r = hub.delete(&format!("/Users/{id}")).await;
    assert_eq!(r.status, 204);
    hub.get(&format!("/Users/{id}"))
        .await
        .assert_error(404, None);
    hub.delete(&format!("/Users/{id}"))
        .await
        .assert_error(404, None);
    // The userName is free again.
    assert_eq!(hub.post("/Users", &alice()).await.status, 201);
});

on_every_backend!(uniqueness, |hub: Hub| async move {
    assert_eq!(hub.post("/Users", &alice()).await.status, 201);
    let mut dup = alice();
    dup["userName"] = json!("ALICE@example.ORG");
    dup["externalId"] = json!("other");
    hub.post("/Users", &dup)
        .await
        .assert_error(409, Some("uniqueness"));
    let mut dup = alice();
    dup["userName"] = json!("someone-else");
    hub.post("/Users", &dup)
        .await
        .assert_error(409, Some("uniqueness"));
    // externalId is case-exact: a different case is a different id.
    dup["externalId"] = json!("EXT-ALICE");
    assert_eq!(hub.post("/Users", &dup).await.status, 201);

    // Renaming onto a taken name fails, and leaves both users intact.
    let bob = hub.user("bob").await;
    let r = hub
        .patch(&format!("/Users/{bob}"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "userName", "value": "alice@example.org"}]}))
        .await;
    r.assert_error(409, Some("uniqueness"));
    let r = hub
        .get(&format!("/Users?filter={}", q("userName eq \"bob\"")))
        .await;
    assert_eq!(r.total(), 1);
    // Renaming frees the old name.
    let r = hub
        .patch(&format!("/Users/{bob}"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "userName", "value": "robert"}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        hub.get(&format!("/Users?filter={}", q("userName eq \"bob\"")))
            .await
            .total(),
        0
    );
    assert_eq!(
        hub.get(&format!("/Users?filter={}", q("userName eq \"ROBERT\"")))
            .await
            .total(),
        1
    );
    hub.user("bob").await;
});

async fn seed(hub: &Hub) {
    let people = [
        (
            "alice",
            "Alice",
            "Liddell",
            "work",
            "alice@example.org",
            true,
            "2",
            "Sales",
        ),
        (
            "bob",
            "Bob",
            "Builder",
            "home",
            "bob@builder.example",
            false,
            "10",
            "Construction",
        ),
        (
            "carol",
            "Carol",
            "Danvers",
            "work",
            "carol@example.org",
            true,
            "3",
            "Sales",
        ),
        (
            "dave",
            "Dave",
            "Grohl",
            "work",
            "dave@music.example",
            true,
            "7",
            "Music",
        ),
    ];
    for (u, g, f, t, e, active, emp, dept) in people {
        let r = hub
            .post(
                "/Users",
                &json!({
                    "schemas": [USER_SCHEMA, ENTERPRISE],
                    "userName": u, "externalId": format!("x-{u}"),
                    "name": {"givenName": g, "familyName": f},
                    "title": if u == "dave" { Value::Null } else { json!("Engineer") },
                    "active": active,
                    "emails": [{"value": e, "type": t, "primary": true}],
                    ENTERPRISE: {"employeeNumber": emp, "department": dept}
                }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
}

async fn names(hub: &Hub, filter: &str) -> Vec<String> {
    let r = hub
        .get(&format!("/Users?sortBy=userName&filter={}", q(filter)))
        .await;
    assert_eq!(r.status, 200, "filter {filter}: {}", r.text);
    r.resources()
        .iter()
        .map(|u| u["userName"].as_str().unwrap_or_default().to_string())
        .collect()
}

on_every_backend!(filters, |hub: Hub| async move {
    seed(&hub).await;
    let cases: &[(&str, &[&str])] = &[
        ("userName eq \"ALICE\"", &["alice"]),
        ("userName ne \"alice\"", &["bob", "carol", "dave"]),
        ("userName co \"aro\"", &["carol"]),
        ("userName sw \"A\"", &["alice"]),
        ("userName ew \"E\"", &["alice", "dave"]),
        ("title pr", &["alice", "bob", "carol"]),
        ("not (title pr)", &["dave"]),
        ("name.familyName gt \"D\"", &["carol", "dave", "alice"]),
        ("name.familyName ge \"Grohl\"", &["dave", "alice"]),
        ("name.familyName lt \"C\"", &["bob"]),
        ("name.familyName le \"Danvers\"", &["bob", "carol"]),
        ("active eq true", &["alice", "carol", "dave"]),
        ("active eq false", &["bob"]),
        ("externalId eq \"x-bob\"", &["bob"]),
        ("externalId eq \"X-BOB\"", &[]),
        ("emails co \"example.org\"", &["alice", "carol"]),
        (
            "emails[type eq \"work\" and value ew \"example.org\"]",
            &["alice", "carol"],
        ),
        ("emails[type eq \"home\"]", &["bob"]),
        ("emails.value sw \"dave@\"", &["dave"]),
        (
            "userName eq \"alice\" or userName eq \"bob\"",
            &["alice", "bob"],
        ),
        (
            "active eq true and (userName sw \"a\" or userName sw \"d\")",
            &["alice", "dave"],
        ),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \"sales\"",
            &["alice", "carol"],
        ),
        (
            "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"carol\"",
            &["carol"],
        ),
        (
            "meta.created gt \"2000-01-01T00:00:00Z\"",
            &["alice", "bob", "carol", "dave"],
        ),
        ("meta.lastModified lt \"2000-01-01T00:00:00Z\"", &[]),
        ("userName eq \"nobody\"", &[]),
    ];
    for (filter, want) in cases {
        let mut got = names(&hub, filter).await;
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "filter: {filter}");
    }
    // The same through POST /.search.
    let r = hub
        .post("/Users/.search", &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName eq \"bob\"", "attributes": ["userName"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.total(), 1);
    assert!(r.resources()[0].get("emails").is_none());
    // Bad filters are 400 invalidFilter.
    for bad in [
        "userName eq",
        "nope eq \"x\"",
        "userName xx \"a\"",
        "(userName eq \"a\"",
        "emails[type eq \"work\"",
        "name eq \"x\"",
    ] {
        hub.get(&format!("/Users?filter={}", q(bad)))
            .await
            .assert_error(400, Some("invalidFilter"));
    }
    // A nesting bomb is refused, not a crash.
    let bomb = format!("{}userName eq \"a\"{}", "(".repeat(5000), ")".repeat(5000));
    let r = hub.post("/Users/.search", &json!({"filter": bomb})).await;
    r.assert_error(400, Some("invalidFilter"));
});

on_every_backend!(paging_and_sorting, |hub: Hub| async move {
    for i in 0..25 {
        hub.user(&format!("user{:02}", 24 - i)).await;
    }
    let r = hub
        .get("/Users?startIndex=1&count=10&sortBy=userName")
        .await;
    assert_eq!(r.total(), 25);
    assert_eq!(r.body["itemsPerPage"], 10);
    assert_eq!(r.body["startIndex"], 1);
    assert_eq!(r.resources()[0]["userName"], "user00");
    let r = hub
        .get("/Users?startIndex=21&count=10&sortBy=userName")
        .await;
    assert_eq!(r.body["itemsPerPage"], 5);
    assert_eq!(r.resources()[4]["userName"], "user24");
    let r = hub.get("/Users?startIndex=26&count=10").await;
    assert_eq!(r.total(), 25);
    assert_eq!(r.body["itemsPerPage"], 0);
    assert_eq!(r.resources().len(), 0);
    // count=0: only the total.
    let r = hub.get("/Users?count=0").await;
    assert_eq!(r.total(), 25);
    assert_eq!(r.resources().len(), 0);
    // startIndex < 1 is 1; negative count is 0 (RFC 7644 §3.4.2.4).
    let r = hub.get("/Users?startIndex=-4&count=2").await;
    assert_eq!(r.body["startIndex"], 1);
    assert_eq!(r.resources().len(), 2);
    assert_eq!(hub.get("/Users?count=-1").await.resources().len(), 0);
    // A huge count is clamped to maxResults, a non-number refused.
    assert_eq!(
        hub.get("/Users?count=99999999999").await.resources().len(),
        25
    );
    hub.get("/Users?count=lots")
        .await
        .assert_error(400, Some("invalidValue"));
    hub.get("/Users?startIndex=1.5")
        .await
        .assert_error(400, Some("invalidValue"));
    // Descending.
    let r = hub
        .get("/Users?sortBy=userName&sortOrder=descending&count=3")
        .await;
    let got: Vec<_> = r
        .resources()
        .iter()
        .map(|u| u["userName"].clone())
        .collect();
    assert_eq!(got, vec![json!("user24"), json!("user23"), json!("user22")]);
    // Pages walk the whole set without overlap.
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let r = hub.get(&format!("/Users?startIndex={start}&count=7")).await;
        let page = r.resources();
        if page.is_empty() {
            break;
        }
        seen.extend(page.iter().map(|u| u["id"].as_str().unwrap().to_string()));
        start += page.len();
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);
});

on_every_backend!(projection, |hub: Hub| async move {
    let id = hub.post("/Users", &alice()).await.id();
    let r = hub
        .get(&format!("/Users/{id}?attributes=userName,name.givenName"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["id"], id, "id is always returned");
    assert_eq!(r.body["userName"], "Alice@Example.org");
    assert_eq!(r.body["name"], json!({"givenName": "Alice"}));
    assert!(r.body.get("emails").is_none());
    let r = hub
        .get(&format!("/Users/{id}?excludedAttributes=emails,name"))
        .await;
    assert!(r.body.get("emails").is_none() && r.body.get("name").is_none());
    assert_eq!(r.body["userName"], "Alice@Example.org");
    let r = hub
        .get(&format!(
            "/Users/{id}?attributes={}",
            q(&format!("{ENTERPRISE}:department"))
        ))
        .await;
    assert_eq!(r.body[ENTERPRISE]["department"], "Looking Glass");
    assert!(r.body[ENTERPRISE].get("employeeNumber").is_none());
    // password cannot be asked for.
    let r = hub.get(&format!("/Users/{id}?attributes=password")).await;
    assert!(r.body.get("password").is_none());
    // On list and on create too.
    let r = hub.get("/Users?attributes=userName").await;
    assert!(r.resources()[0].get("name").is_none());
});

on_every_backend!(etags, |hub: Hub| async move {
    let r = hub.post("/Users", &alice()).await;
    let id = r.id();
    let v1 = r.header("etag").unwrap().to_string();
    // Matching If-Match succeeds.
    let patch = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "Queen"}]});
    let r = hub
        .req(reqwest::Method::PATCH, &format!("/Users/{id}"))
        .header("If-Match", &v1)
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v2 = r.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(v1, v2);
    // Stale If-Match: 412, nothing written.
    let patch = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "Knave"}]});
    let r = hub
        .req(reqwest::Method::PATCH, &format!("/Users/{id}"))
        .header("If-Match", &v1)
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    provisync_tests::Resp::from(r).await.assert_error(412, None);
    assert_eq!(
        hub.get(&format!("/Users/{id}")).await.body["title"],
        "Queen"
    );
    let r = hub
        .req(reqwest::Method::PUT, &format!("/Users/{id}"))
        .header("If-Match", &v1)
        .body(alice().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let r = hub
        .req(reqwest::Method::DELETE, &format!("/Users/{id}"))
        .header("If-Match", &v1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    // If-None-Match with the current tag: 304.
    let r = hub
        .req(reqwest::Method::GET, &format!("/Users/{id}"))
        .header("If-None-Match", &v2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // A no-op PATCH writes nothing and keeps the version.
    let patch = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "Queen"}]});
    let r = hub.patch(&format!("/Users/{id}"), &patch).await;
    assert_eq!(r.header("etag").unwrap(), v2);
    // Wildcard.
    let r = hub
        .req(reqwest::Method::DELETE, &format!("/Users/{id}"))
        .header("If-Match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
});
