//! What identity providers really send, over HTTP: the request bodies Microsoft Entra ID
//! and Okta document (tests/fixtures/, sources in tests/fixtures/README.md), replayed in
//! the order each IdP sends them. Fixture ids are replaced by the ids this hub assigned.

use provisync_tests::{ENTERPRISE, Hub, on_every_backend, q};
use serde_json::Value;

fn fixture(path: &str) -> String {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// A fixture body with placeholder ids replaced.
fn body(path: &str, ids: &[(&str, &str)]) -> Value {
    let mut text = fixture(path);
    for (from, to) in ids {
        text = text.replace(from, to);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

on_every_backend!(entra_user_and_group_flow, |hub: Hub| async move {
    // Entra first looks the user up by its matching attribute, then creates it.
    let create = body("entra/create_user.json", &[]);
    let user_name = create["userName"].as_str().unwrap().to_string();
    let r = hub
        .get(&format!(
            "/Users?filter={}",
            q(&format!("userName eq \"{user_name}\""))
        ))
        .await;
    assert_eq!(r.total(), 0);
    let r = hub.post("/Users", &create).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let uid = r.id();
    // ...and looks it up again, case-insensitively, by userName and by externalId.
    let r = hub
        .get(&format!(
            "/Users?filter={}",
            q(&format!("userName eq \"{}\"", user_name.to_uppercase()))
        ))
        .await;
    assert_eq!(r.total(), 1);
    let r = hub
        .get(&format!(
            "/Users?filter={}",
            q("externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"")
        ))
        .await;
    assert_eq!(r.total(), 1);

    let patch = |f: &'static str| {
        let hub = &hub;
        let uid = uid.clone();
        async move {
            let r = hub.patch(&format!("/Users/{uid}"), &body(f, &[])).await;
            assert_eq!(r.status, 200, "{f}: {}", r.text);
            r.body
        }
    };
    let u = patch("entra/update_user_multi_valued.json").await;
    assert_eq!(u["name"]["familyName"], "updatedFamilyName");
    assert_eq!(u["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(u["emails"][0]["type"], "work");
    let u = patch("entra/replace_multiple_aadopt.json").await;
    assert_eq!(u["displayName"], "Bjfe");
    assert_eq!(u["name"]["givenName"], "Kkom");
    assert_eq!(u["name"]["familyName"], "Unua");
    assert_eq!(u[ENTERPRISE]["employeeNumber"], "Aklq");
    assert_eq!(u["emails"][0]["value"], "TestMhvaes@test.microsoft.com");
    let u = patch("entra/replace_multiple_default.json").await;
    assert!(u["displayName"].is_string());
    let u = patch("entra/update_user_single_valued.json").await;
    assert_eq!(u["id"], uid);
    let u = patch("entra/add_single_value_default.json").await;
    assert_eq!(u["id"], uid);
    let u = patch("entra/add_manager.json").await;
    assert_eq!(
        u[ENTERPRISE]["manager"]["value"],
        "26118915-6090-4610-87e4-4ed23f1e2c4b"
    );
    let u = patch("entra/disable_user_default.json").await;
    assert_eq!(u["active"], false, "\"False\" as a string");
    // Entra re-enables with a boolean in the aadOptscim062020 form.
    let r = hub
        .patch(&format!("/Users/{uid}"), &serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "active", "value": true}]}))
        .await;
    assert_eq!(r.body["active"], true);
    let u = patch("entra/disable_user_aadopt.json").await;
    assert_eq!(u["active"], false);
    let u = patch("entra/disable_user.json").await;
    assert_eq!(u["active"], false);

    // Groups.
    let r = hub
        .post("/Groups", &body("entra/create_group.json", &[]))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let gid = r.id();
    let other = hub.user("second@example.org").await;
    let gpatch = |f: &'static str, ids: Vec<(&'static str, String)>| {
        let hub = &hub;
        let gid = gid.clone();
        async move {
            let ids: Vec<(&str, &str)> = ids.iter().map(|(a, b)| (*a, b.as_str())).collect();
            let r = hub.patch(&format!("/Groups/{gid}"), &body(f, &ids)).await;
            assert_eq!(r.status, 200, "{f}: {}", r.text);
            r.body
        }
    };
    let g = gpatch(
        "entra/add_members.json",
        vec![("f648f8d5ea4e4cd38e9c", uid.clone())],
    )
    .await;
    assert_eq!(g["members"].as_array().map(Vec::len), Some(1));
    let g = gpatch(
        "entra/add_members.json",
        vec![("f648f8d5ea4e4cd38e9c", other.clone())],
    )
    .await;
    assert_eq!(g["members"].as_array().map(Vec::len), Some(2));
    // Default dialect: `remove` with a value array removes only those members.
    let g = gpatch(
        "entra/remove_member_default.json",
        vec![("u1091", other.clone())],
    )
    .await;
    assert_eq!(g["members"][0]["value"], uid);
    let g = gpatch(
        "entra/remove_member_aadopt.json",
        vec![("7f4bc1a3-285e-48ae-8202-5accb43efb0e", uid.clone())],
    )
    .await;
    assert!(g.get("members").is_none(), "{g}");
    gpatch(
        "entra/add_members.json",
        vec![("f648f8d5ea4e4cd38e9c", uid.clone())],
    )
    .await;
    let g = gpatch(
        "entra/remove_members.json",
        vec![("f648f8d5ea4e4cd38e9c", uid.clone())],
    )
    .await;
    assert!(g.get("members").is_none());
    let g = gpatch("entra/update_group_display_name.json", vec![]).await;
    assert_eq!(
        g["displayName"],
        "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
    );

    // Deprovisioning: DELETE.
    assert_eq!(hub.delete(&format!("/Users/{uid}")).await.status, 204);
    assert_eq!(hub.delete(&format!("/Groups/{gid}")).await.status, 204);
});

on_every_backend!(okta_user_and_group_flow, |hub: Hub| async move {
    let r = hub
        .get(&format!(
            "/Users?filter={}&startIndex=1&count=100",
            q("userName eq \"test.user@okta.local\"")
        ))
        .await;
    assert_eq!(r.total(), 0);
    let r = hub
        .post("/Users", &body("okta/create_user.json", &[]))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let uid = r.id();
    assert!(r.body.get("password").is_none());
    // Okta updates profiles with a full PUT (its own id in the body).
    let r = hub
        .put(
            &format!("/Users/{uid}"),
            &body(
                "okta/put_user.json",
                &[("23a35c27-23d3-4c03-b4c5-6443c09e7173", &uid)],
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["name"]["middleName"], "Excited");
    assert_eq!(r.body["name"]["givenName"], "Another");
    // Deactivation: a path-less replace.
    let r = hub
        .patch(
            &format!("/Users/{uid}"),
            &body("okta/patch_deactivate_user.json", &[]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["active"], false);
    assert_eq!(
        hub.get(&format!("/Users/{uid}")).await.body["active"],
        false
    );

    let r = hub
        .post("/Groups", &body("okta/create_group.json", &[]))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let gid = r.id();
    let second = hub.user("second.user@okta.local").await;
    let ids = [
        ("23a35c27-23d3-4c03-b4c5-6443c09e7173", uid.as_str()),
        ("89bb1940-b905-4575-9e7f-6f887cfb368e", second.as_str()),
        ("abf4dd94-a4c0-4f67-89c9-76b03340cb9b", gid.as_str()),
    ];
    let r = hub
        .patch(
            &format!("/Groups/{gid}"),
            &body("okta/patch_group_replace_members.json", &ids),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["members"].as_array().map(Vec::len), Some(2));
    let r = hub
        .patch(
            &format!("/Groups/{gid}"),
            &body("okta/patch_group_members.json", &ids),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let members: Vec<&str> = r.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, vec![uid.as_str()]);
    let r = hub
        .patch(
            &format!("/Groups/{gid}"),
            &body("okta/patch_group_rename.json", &ids),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["displayName"],
        body("okta/patch_group_rename.json", &ids)["Operations"][0]["value"]["displayName"]
    );
    assert_eq!(r.body["id"], gid);
});
