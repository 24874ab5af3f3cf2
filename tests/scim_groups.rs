//! Groups over real HTTP: lifecycle, membership PATCHes, cascades, and the O(1)
//! membership write cost on a large group.

use std::sync::Arc;

use provisync_core::store::embedded::EmbeddedStore;
use provisync_tests::counting::CountingStore;
use provisync_tests::{GROUP_SCHEMA, Hub, PATCH_OP, on_every_backend, q};
use serde_json::{Value, json};

fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["value"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

on_every_backend!(group_lifecycle, |hub: Hub| async move {
    let a = hub.user("ann").await;
    let b = hub.user("ben").await;
    let c = hub.user("cid").await;
    let r = hub
        .post("/Groups", &json!({"schemas": [GROUP_SCHEMA], "displayName": "Sales", "externalId": "g-1", "members": [{"value": a}, {"value": b, "type": "User"}]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let g = r.id();
    assert_eq!(member_ids(&r.body), sorted(vec![a.clone(), b.clone()]));
    assert!(
        r.header("location")
            .unwrap()
            .ends_with(&format!("/Groups/{g}"))
    );

    // Duplicate displayName (case-insensitive) is refused.
    hub.post(
        "/Groups",
        &json!({"schemas": [GROUP_SCHEMA], "displayName": "SALES"}),
    )
    .await
    .assert_error(409, Some("uniqueness"));
    // Unknown member is refused, nothing written.
    hub.post("/Groups", &json!({"schemas": [GROUP_SCHEMA], "displayName": "Ghosts", "members": [{"value": "no-such-id"}]}))
        .await
        .assert_error(400, Some("invalidValue"));
    assert_eq!(
        hub.get(&format!(
            "/Groups?filter={}",
            q("displayName eq \"Ghosts\"")
        ))
        .await
        .total(),
        0
    );

    // The user's groups attribute.
    let r = hub.get(&format!("/Users/{a}")).await;
    assert_eq!(r.body["groups"][0]["value"], g);
    assert_eq!(r.body["groups"][0]["display"], "Sales");

    // Add, remove by filter, and a no-op.
    let add = json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": c}]}]});
    let r = hub.patch(&format!("/Groups/{g}"), &add).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        member_ids(&r.body),
        sorted(vec![a.clone(), b.clone(), c.clone()])
    );
    let rm = json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": format!("members[value eq \"{b}\"]")}]});
    let r = hub.patch(&format!("/Groups/{g}"), &rm).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(member_ids(&r.body), sorted(vec![a.clone(), c.clone()]));
    let v = r.header("etag").unwrap().to_string();
    let r = hub.patch(&format!("/Groups/{g}"), &rm).await;
    assert_eq!(
        r.header("etag").unwrap(),
        v,
        "removing an absent member changes nothing"
    );

    // excludedAttributes=members, as Entra asks.
    let r = hub
        .get(&format!("/Groups/{g}?excludedAttributes=members"))
        .await;
    assert!(r.body.get("members").is_none());
    assert_eq!(r.body["displayName"], "Sales");

    // Rename + replace members in one PATCH.
    let ops = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Sales EMEA"},
        {"op": "replace", "path": "members", "value": [{"value": b}]}
    ]});
    let r = hub.patch(&format!("/Groups/{g}"), &ops).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["displayName"], "Sales EMEA");
    assert_eq!(member_ids(&r.body), vec![b.clone()]);
    assert!(
        hub.get(&format!("/Users/{a}"))
            .await
            .body
            .get("groups")
            .is_none()
    );

    // PUT replaces members.
    let r = hub.put(&format!("/Groups/{g}"), &json!({"schemas": [GROUP_SCHEMA], "displayName": "Sales EMEA", "members": [{"value": a}, {"value": c}]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(member_ids(&r.body), sorted(vec![a.clone(), c.clone()]));

    // Deleting a user removes its memberships.
    assert_eq!(hub.delete(&format!("/Users/{a}")).await.status, 204);
    assert_eq!(
        member_ids(&hub.get(&format!("/Groups/{g}")).await.body),
        vec![c.clone()]
    );

    // Filter groups by member.
    let r = hub
        .get(&format!(
            "/Groups?filter={}",
            q(&format!("members[value eq \"{c}\"]"))
        ))
        .await;
    assert_eq!(r.total(), 1, "{}", r.text);

    // Remove all members, then delete the group.
    let r = hub
        .patch(
            &format!("/Groups/{g}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "members"}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("members").is_none());
    assert_eq!(hub.delete(&format!("/Groups/{g}")).await.status, 204);
    assert!(
        hub.get(&format!("/Users/{c}"))
            .await
            .body
            .get("groups")
            .is_none()
    );
    hub.get(&format!("/Groups/{g}"))
        .await
        .assert_error(404, None);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_change_is_constant_work_in_a_large_group() {
    let store = CountingStore::new(Arc::new(EmbeddedStore::in_memory()));
    let hub = Hub::start_on(Arc::new(store.clone())).await;
    // 3,000 members, created through Bulk to keep the test quick.
    let n = 3000;
    let mut ids = Vec::with_capacity(n);
    for chunk in 0..(n / 500) {
        let ops: Vec<Value> = (0..500)
            .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"), "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("m{chunk}-{i}")}}))
            .collect();
        let r = hub.post("/Bulk", &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        for op in r.body["Operations"].as_array().unwrap() {
            assert_eq!(op["status"], "201", "{op}");
            ids.push(
                op["location"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    let g = hub.group("Everyone", &[]).await;
    for chunk in ids.chunks(500) {
        let members: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
        let r = hub.patch(&format!("/Groups/{g}?excludedAttributes=members"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": members}]})).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = hub
        .get(&format!("/Groups/{g}?attributes=displayName"))
        .await;
    assert_eq!(r.status, 200);
    let r = hub.get(&format!("/Groups/{g}")).await;
    assert_eq!(r.body["members"].as_array().unwrap().len(), n);

    let extra = hub.user("late-joiner").await;
    // Measure one add and one remove, as Entra sends them.
    for body in [
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "Add", "path": "members", "value": [{"value": extra}]}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "Remove", "path": "members", "value": [{"value": extra}]}]}),
    ] {
        store.reset();
        let r = hub
            .patch(&format!("/Groups/{g}?excludedAttributes=members"), &body)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let (written, read) = (store.written(), store.read_items());
        // The membership item, the group (version), the outbox record; then the queue's
        // message items and the outbox record's removal: a constant, whatever the size.
        assert!(written <= 10, "one member change wrote {written} items");
        assert!(
            read <= 10,
            "one member change read {read} items in a group of {n}"
        );
    }

    // Is this user in the group? (Entra asks it so.) Point reads of the membership,
    // not a read of the 3,000 members (before: 3,008 items).
    for (member, expected) in [(ids[5].as_str(), 1), (extra.as_str(), 0)] {
        let filter = format!("id eq \"{g}\" and members[value eq \"{member}\"]");
        store.reset();
        let r = hub
            .get(&format!(
                "/Groups?excludedAttributes=members&filter={}",
                provisync_tests::q(&filter)
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["totalResults"], expected, "{}", r.text);
        let read = store.read_items();
        assert!(
            read <= 10,
            "a membership check read {read} items in a group of {n}"
        );
    }
    // The same check asked of the users: the user, found by id, and its one membership.
    let filter = format!("id eq \"{}\" and groups.value eq \"{g}\"", ids[7]);
    store.reset();
    let r = hub
        .get(&format!(
            "/Users?attributes=userName&filter={}",
            provisync_tests::q(&filter)
        ))
        .await;
    assert_eq!(r.body["totalResults"], 1, "{}", r.text);
    assert!(store.read_items() <= 10, "read {}", store.read_items());
    // The users of the group, a page at a time: a cursor page reads its own members,
    // not the 3,000 (before: 9,001 items a page of 10 or of 700: every membership item,
    // every member, and each one's membership again).
    // A group among the members is no user: not listed.
    let sub = hub.group("Subteam", &[]).await;
    let r = hub.patch(&format!("/Groups/{g}?excludedAttributes=members"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": sub, "type": "Group"}]}]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let filter = provisync_tests::q(&format!("groups.value eq \"{g}\""));
    let mut seen: Vec<String> = Vec::new();
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut cursor = String::new();
    loop {
        store.reset();
        let r = hub
            .get(&format!(
                "/Users?attributes=userName&count=700&filter={filter}&cursor={cursor}"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let read = store.read_items();
        let page: Vec<String> = r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        assert!(
            read <= 2 * 700 + 20,
            "a page of 700 members read {read} items"
        );
        seen.extend(page.iter().cloned());
        pages.push(page);
        match r.body["nextCursor"].as_str() {
            Some(next) => cursor = provisync_tests::q(next),
            None => break,
        }
    }
    assert_eq!(pages.len(), 5, "3,000 users in pages of 700");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "in id (creation) order");
    sorted.dedup();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(sorted, all, "every member once, the subgroup not");
    // A small page reads a small page's worth, at the start or further on (its members,
    // its users, and their groups: 41 items).
    store.reset();
    let r = hub
        .get(&format!("/Users?count=10&filter={filter}&cursor="))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        store.read_items() <= 60,
        "a page of 10 read {}",
        store.read_items()
    );
    let next = provisync_tests::q(r.body["nextCursor"].as_str().unwrap());
    store.reset();
    let second = hub
        .get(&format!("/Users?count=10&filter={filter}&cursor={next}"))
        .await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert!(
        store.read_items() <= 60,
        "a page of 10 read {}",
        store.read_items()
    );
    assert_eq!(second.body["Resources"][0]["id"], json!(seen[10]));
    // Back to the first page.
    let back = provisync_tests::q(second.body["previousCursor"].as_str().unwrap());
    let first = hub
        .get(&format!("/Users?count=10&filter={filter}&cursor={back}"))
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["Resources"], r.body["Resources"]);
    assert!(first.body.get("previousCursor").is_none(), "{}", first.text);
    // By startIndex: the count comes from the membership items; only the page is loaded.
    store.reset();
    let r = hub
        .get(&format!("/Users?startIndex=2991&count=20&filter={filter}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["totalResults"], 3000, "{}", r.text);
    assert_eq!(r.body["Resources"].as_array().unwrap().len(), 10);
    assert_eq!(r.body["Resources"][9]["id"], json!(seen[2999]));
    let read = store.read_items();
    assert!(read <= 3001 + 60, "a page by startIndex read {read} items");

    // Asked whole, the members and groups are all there.
    let filter = format!("members[value eq \"{}\"]", ids[9]);
    let r = hub
        .get(&format!("/Groups?filter={}", provisync_tests::q(&filter)))
        .await;
    assert_eq!(r.body["totalResults"], 1, "{}", r.text);
    assert_eq!(
        r.body["Resources"][0]["members"].as_array().map(Vec::len),
        Some(n + 1),
        "the users and the subgroup"
    );
}
