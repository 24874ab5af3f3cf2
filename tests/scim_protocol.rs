//! Protocol-level behaviour over real HTTP: auth, discovery, Bulk, bad input.

use provisync_tests::{GROUP_SCHEMA, Hub, USER_SCHEMA, on_every_backend};
use serde_json::{Value, json};

on_every_backend!(authentication, |hub: Hub| async move {
    let url = hub.url("/Users");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic dGVzdDp0ZXN0"),
        Some("Bearer "),
        Some("Bearer test-admin-token"),
    ] {
        let mut r = hub.client.get(&url);
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        let r = provisync_tests::Resp::from(r.send().await.unwrap()).await;
        r.assert_error(401, None);
        assert!(r.header("www-authenticate").is_some());
    }
    // Scheme is case-insensitive (RFC 6750 / RFC 7235).
    let r = hub
        .client
        .get(&url)
        .header(
            "Authorization",
            format!("bearer {}", provisync_tests::TOKEN),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Writes are refused too, and nothing is stored.
    let r = hub
        .client
        .post(&url)
        .body(json!({"schemas": [USER_SCHEMA], "userName": "x"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(hub.get("/Users").await.total(), 0);
});

on_every_backend!(discovery, |hub: Hub| async move {
    let r = hub.get("/ServiceProviderConfig").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
    for f in ["patch", "bulk", "filter", "changePassword", "sort", "etag"] {
        assert_eq!(r.body[f]["supported"], true, "{f}");
    }
    assert_eq!(r.body["filter"]["maxResults"], 1000);
    assert!(r.body["bulk"]["maxOperations"].as_u64().unwrap() > 0);
    assert_eq!(
        r.body["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );

    let r = hub.get("/ResourceTypes").await;
    assert_eq!(r.total(), 2);
    let user = r
        .resources()
        .into_iter()
        .find(|rt| rt["id"] == "User")
        .unwrap();
    assert_eq!(user["endpoint"], "/Users");
    assert_eq!(
        user["schemaExtensions"][0]["schema"],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    );
    assert_eq!(
        hub.get("/ResourceTypes/Group").await.body["schema"],
        GROUP_SCHEMA
    );
    hub.get("/ResourceTypes/Nope").await.assert_error(404, None);

    let r = hub.get("/Schemas").await;
    assert_eq!(r.total(), 3);
    let r = hub.get(&format!("/Schemas/{USER_SCHEMA}")).await;
    assert_eq!(r.status, 200);
    let attrs = r.body["attributes"].as_array().unwrap();
    let user_name = attrs.iter().find(|a| a["name"] == "userName").unwrap();
    assert_eq!(user_name["uniqueness"], "server");
    assert_eq!(user_name["caseExact"], false);
    let password = attrs.iter().find(|a| a["name"] == "password").unwrap();
    assert_eq!(password["returned"], "never");
    assert_eq!(password["mutability"], "writeOnly");
    hub.get("/Schemas/urn:nope").await.assert_error(404, None);
});

on_every_backend!(bad_input, |hub: Hub| async move {
    // Malformed JSON.
    let r = hub
        .req(reqwest::Method::POST, "/Users")
        .body("{\"schemas\": [")
        .send()
        .await
        .unwrap();
    provisync_tests::Resp::from(r)
        .await
        .assert_error(400, Some("invalidSyntax"));
    let r = hub
        .req(reqwest::Method::POST, "/Users")
        .body("")
        .send()
        .await
        .unwrap();
    provisync_tests::Resp::from(r)
        .await
        .assert_error(400, Some("invalidSyntax"));
    // Not an object.
    hub.post("/Users", &json!([1, 2]))
        .await
        .assert_error(400, None);
    // Wrong types.
    // (A number where a string belongs is coerced: IdPs send employeeNumber as 42.)
    hub.post(
        "/Users",
        &json!({"schemas": [USER_SCHEMA], "userName": ["a", "b"]}),
    )
    .await
    .assert_error(400, None);
    hub.post(
        "/Users",
        &json!({"schemas": [USER_SCHEMA], "userName": {"nested": true}}),
    )
    .await
    .assert_error(400, None);
    hub.post(
        "/Users",
        &json!({"schemas": [USER_SCHEMA], "userName": "x", "active": "maybe"}),
    )
    .await
    .assert_error(400, None);
    hub.post(
        "/Users",
        &json!({"schemas": [USER_SCHEMA], "userName": "x", "name": "flat"}),
    )
    .await
    .assert_error(400, None);
    // Missing required attribute.
    hub.post(
        "/Users",
        &json!({"schemas": [USER_SCHEMA], "displayName": "x"}),
    )
    .await
    .assert_error(400, None);
    // Unknown schema.
    // Unknown schema with data under it (a bare unknown URN in `schemas` is tolerated:
    // Microsoft's documented Create Group lists one).
    hub.post("/Users", &json!({"schemas": [USER_SCHEMA, "urn:example:unknown"], "userName": "x", "urn:example:unknown": {"a": 1}}))
        .await
        .assert_error(400, None);
    hub.post("/Users", &json!({"userName": "no-schemas"}))
        .await
        .assert_error(400, Some("invalidSyntax"));
    // Oversized body: 413 in SCIM format.
    let big =
        json!({"schemas": [USER_SCHEMA], "userName": "big", "displayName": "x".repeat(300 * 1024)});
    hub.post("/Users", &big).await.assert_error(413, None);
    // Bad PATCH bodies.
    let id = hub.user("patchee").await;
    for body in [
        json!({"Operations": [{"op": "replace", "path": "title", "value": "x"}]}),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": []}),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "explode", "path": "title"}]}),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "nope[[", "value": 1}]}),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "id", "value": "mine"}]}),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove"}]}),
    ] {
        let r = hub.patch(&format!("/Users/{id}"), &body).await;
        assert_eq!(r.status, 400, "{body} -> {}", r.text);
        r.assert_error(400, None);
    }
    // Nothing was half written.
    let r = hub.get(&format!("/Users/{id}")).await;
    assert_eq!(r.body["userName"], "patchee");
    assert_eq!(r.body["meta"]["version"], "W/\"1\"");
    assert_eq!(hub.get("/Users").await.total(), 1);
    // Unknown endpoint, method, /Me.
    hub.get("/Nope").await.assert_error(404, None);
    hub.send(reqwest::Method::DELETE, "/Users", None)
        .await
        .assert_error(405, None);
    hub.get("/Me").await.assert_error(501, None);
    hub.get("/Users/not-an-id").await.assert_error(404, None);
});

on_every_backend!(bulk, |hub: Hub| async move {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "failOnErrors": 2,
        "Operations": [
            {"method": "POST", "path": "/Groups", "bulkId": "g1", "data": {"schemas": [GROUP_SCHEMA], "displayName": "Team", "members": [{"type": "User", "value": "bulkId:u1"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "u1", "data": {"schemas": [USER_SCHEMA], "userName": "bulky"}},
            {"method": "POST", "path": "/Users", "bulkId": "u2", "data": {"schemas": [USER_SCHEMA], "userName": "bulky"}},
            {"method": "PATCH", "path": "/Users/bulkId:u1", "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "title", "value": "Boss"}]}},
        ]
    });
    let r = hub.post("/Bulk", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
    );
    let ops = r.body["Operations"].as_array().unwrap().clone();
    assert_eq!(ops.len(), 4, "{}", r.text);
    let by = |b: &str| {
        ops.iter()
            .find(|o| o["bulkId"] == b)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by("u1")["status"], "201");
    assert_eq!(
        by("g1")["status"],
        "201",
        "group waits for the user it references"
    );
    assert_eq!(by("u2")["status"], "409");
    assert_eq!(by("u2")["response"]["scimType"], "uniqueness");
    let uid = by("u1")["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let g = hub
        .get(
            by("g1")["location"]
                .as_str()
                .unwrap()
                .trim_start_matches(&hub.base),
        )
        .await;
    assert_eq!(g.body["members"][0]["value"], uid);
    assert_eq!(
        hub.get(&format!("/Users/{uid}")).await.body["title"],
        "Boss"
    );

    // failOnErrors stops processing.
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "failOnErrors": 1,
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"schemas": [USER_SCHEMA], "userName": "bulky"}},
            {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"schemas": [USER_SCHEMA], "userName": "never"}},
        ]
    });
    let r = hub.post("/Bulk", &body).await;
    assert_eq!(r.body["Operations"].as_array().unwrap().len(), 1);
    assert_eq!(
        hub.get("/Users?filter=userName%20eq%20%22never%22")
            .await
            .total(),
        0
    );
    // Delete through bulk, bad method, too many operations.
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "DELETE", "path": format!("/Users/{uid}")},
        {"method": "FETCH", "path": "/Users"},
    ]});
    let r = hub.post("/Bulk", &body).await;
    assert_eq!(r.body["Operations"][0]["status"], "204");
    assert_eq!(r.body["Operations"][1]["status"], "400");
    let ops: Vec<Value> = (0..1001)
        .map(|_| json!({"method": "DELETE", "path": "/Users/x"}))
        .collect();
    hub.post("/Bulk", &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops})).await.assert_error(413, None);
    hub.post("/Bulk", &json!({"Operations": []}))
        .await
        .assert_error(400, None);
});

on_every_backend!(root_search, |hub: Hub| async move {
    let u = hub.user("rooty").await;
    let g = hub.group("Rooters", &[&u]).await;
    let r = hub
        .post(
            "/.search",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.total(), 2);
    let r = hub
        .post("/.search", &json!({"filter": "displayName eq \"Rooters\""}))
        .await;
    assert_eq!(r.total(), 1, "{}", r.text);
    assert_eq!(r.resources()[0]["id"], g);
    let r = hub
        .post("/.search", &json!({"filter": "userName eq \"rooty\""}))
        .await;
    assert_eq!(r.total(), 1);
    hub.post("/.search", &json!({"filter": "bogus eq 1"}))
        .await
        .assert_error(400, Some("invalidFilter"));
});

/// Custom extension schemas are data: a JSON file in `PROVISYNC_SCHEMA_DIR` adds one, and
/// discovery, validation and filters all know it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_extension_schema_from_config() {
    const ACME: &str = "urn:example:params:scim:schemas:extension:acme:2.0:User";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("acme.json"),
        json!({"id": ACME, "name": "Acme", "description": "Badges", "attributes": [
            {"name": "badge", "type": "integer"},
            {"name": "site", "type": "string", "caseExact": true}
        ]})
        .to_string(),
    )
    .unwrap();
    let registry = provisync_core::config::load_schemas(Some(dir.path())).unwrap();
    let store: std::sync::Arc<dyn provisync_core::store::Store> =
        std::sync::Arc::new(provisync_core::store::embedded::EmbeddedStore::in_memory());
    let s2 = store.clone();
    let hub = Hub::start_with(store, move |state| {
        state.hub.directory = provisync_core::directory::Directory::new(s2, registry);
    })
    .await;
    assert_eq!(hub.get("/Schemas").await.total(), 4);
    assert_eq!(
        hub.get(&format!("/Schemas/{ACME}")).await.body["attributes"][0]["name"],
        "badge"
    );
    let rt = hub.get("/ResourceTypes/User").await;
    assert!(rt.text.contains(ACME), "{}", rt.text);
    let r = hub
        .post("/Users", &json!({"schemas": [USER_SCHEMA, ACME], "userName": "badged", ACME: {"badge": 7, "site": "Oslo"}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body[ACME]["badge"], 7);
    let r = hub
        .get(&format!(
            "/Users?filter={}",
            provisync_tests::q(&format!("{ACME}:badge gt 5"))
        ))
        .await;
    assert_eq!(r.total(), 1, "{}", r.text);
    let r = hub
        .get(&format!(
            "/Users?filter={}",
            provisync_tests::q(&format!("{ACME}:site eq \"oslo\""))
        ))
        .await;
    assert_eq!(r.total(), 0, "caseExact from the custom schema");
    hub.post(
        "/Users",
        &json!({"schemas": [USER_SCHEMA, ACME], "userName": "bad", ACME: {"badge": "many"}}),
    )
    .await
    .assert_error(400, Some("invalidValue"));
}
