//! Paging the directory over HTTP, on both stores: RFC 9865 cursors, `startIndex` pages
//! that continue where the page before ended, maintained counts, the last-modified index,
//! and the move of a store written in the layout before shards.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use provisync_core::directory::{Directory, PAGE_READ_BUDGET};
use provisync_core::event::Origin;
use provisync_core::store::{Item, Store, Write};
use provisync_scim::{ResourceKind, SchemaRegistry};
use provisync_tests::counting::CountingStore;
use provisync_tests::{Backend, Hub, PATCH_OP, Resp, USER_SCHEMA, backend_store, q};
use serde_json::{Value, json};

/// Runs a test body with a fresh store of every backend available in this run.
macro_rules! on_every_store {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                if let Some(store) = backend_store(Backend::Embedded).await {
                    ($body)(store).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dynamodb() {
                if let Some(store) = backend_store(Backend::DynamoDb).await {
                    ($body)(store).await;
                }
            }
        }
    };
}

fn user(name: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": name})
}

/// Creates `n` users named `{prefix}{i:05}` through the import path (batched).
async fn seed(store: &Arc<dyn Store>, prefix: &str, n: usize, extra: Value) -> Vec<String> {
    let dir = Directory::new(store.clone(), SchemaRegistry::builtin());
    let bodies: Vec<Value> = (0..n)
        .map(|i| {
            let mut u = user(&format!("{prefix}{i:05}"));
            if let (Some(o), Some(e)) = (u.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            u
        })
        .collect();
    dir.create_batch(ResourceKind::User, &bodies, Origin::Import, false)
        .await
        .into_iter()
        .map(|r| r.expect("seed").id().to_string())
        .collect()
}

fn ids(r: &Resp) -> Vec<String> {
    r.resources()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect()
}

fn next(r: &Resp) -> Option<String> {
    r.body["nextCursor"].as_str().map(str::to_string)
}

/// Pages `query` by cursor to the end; returns every page.
async fn walk(hub: &Hub, query: &str) -> Vec<Resp> {
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = hub
            .get(&format!("/Users?{query}&cursor={}", q(&cursor)))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let n = next(&r);
        pages.push(r);
        match n {
            Some(c) => cursor = c,
            None => return pages,
        }
        assert!(pages.len() < 1000, "cursor paging does not end");
    }
}

on_every_store!(cursor_pages, |store: Arc<dyn Store>| async move {
    let hub = Hub::start_on(store.clone()).await;
    let mut created = Vec::new();
    for i in 0..25 {
        created.push(hub.user(&format!("cursor{i:02}")).await);
    }

    // First page: an empty cursor.
    let p1 = hub.get("/Users?cursor=&count=10").await;
    assert_eq!(p1.status, 200, "{}", p1.text);
    assert_eq!(p1.total(), 25);
    assert_eq!(p1.body["itemsPerPage"], 10);
    assert!(p1.body.get("startIndex").is_none(), "{}", p1.text);
    assert!(
        p1.body.get("previousCursor").is_none(),
        "no previous on the first page"
    );
    let c1 = next(&p1).expect("nextCursor");
    assert!(
        c1.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)),
        "{c1}"
    );
    // The bare `cursor` parameter of RFC 9865's example is the first page too.
    let bare = hub.get("/Users?cursor&count=10").await;
    assert_eq!(ids(&bare), ids(&p1));

    let p2 = hub.get(&format!("/Users?cursor={}&count=10", q(&c1))).await;
    assert_eq!(p2.status, 200, "{}", p2.text);
    assert_eq!(p2.resources().len(), 10);
    let back = p2.body["previousCursor"].as_str().expect("previousCursor");
    let p3 = hub
        .get(&format!(
            "/Users?cursor={}&count=10",
            q(&next(&p2).unwrap())
        ))
        .await;
    assert_eq!(p3.resources().len(), 5);
    assert!(next(&p3).is_none(), "the last page has no nextCursor");

    // Every user exactly once, in creation order.
    let all: Vec<String> = [&p1, &p2, &p3].iter().flat_map(|p| ids(p)).collect();
    assert_eq!(all, created);

    // previousCursor goes back one page.
    let again = hub
        .get(&format!("/Users?cursor={}&count=10", q(back)))
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(ids(&again), ids(&p1));
    assert!(next(&again).is_some());
    let p3_back = p3.body["previousCursor"].as_str().unwrap();
    let again = hub
        .get(&format!("/Users?cursor={}&count=10", q(p3_back)))
        .await;
    assert_eq!(ids(&again), ids(&p2));

    // A cursor is reusable (nothing kept on the server): the same page again.
    let p2_again = hub.get(&format!("/Users?cursor={}&count=10", q(&c1))).await;
    assert_eq!(ids(&p2_again), ids(&p2));

    // POST .search takes the cursor in the body.
    let s1 = hub
        .post(
            "/Users/.search",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "cursor": "", "count": 10}),
        )
        .await;
    assert_eq!(s1.status, 200, "{}", s1.text);
    assert_eq!(ids(&s1), ids(&p1));
    let s2 = hub
        .post(
            "/Users/.search",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "cursor": next(&s1).unwrap(), "count": 10}),
        )
        .await;
    assert_eq!(ids(&s2), ids(&p2));

    // count=0: the total only.
    let z = hub.get("/Users?cursor=&count=0").await;
    assert_eq!(z.status, 200, "{}", z.text);
    assert_eq!(z.total(), 25);
    assert!(z.resources().is_empty() && next(&z).is_none());
    let z = hub.get("/Users?count=0").await;
    assert_eq!((z.total(), z.resources().len()), (25, 0));

    // Sorted by an attribute no index orders by: still every user once, in that order.
    let sorted = walk(&hub, "count=7&sortBy=userName&sortOrder=descending").await;
    let names: Vec<String> = sorted
        .iter()
        .flat_map(|p| p.resources())
        .map(|u| u["userName"].as_str().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = (0..25).map(|i| format!("cursor{i:02}")).collect();
    want.reverse();
    assert_eq!(names, want);
    assert_eq!(sorted.len(), 4);
});

on_every_store!(bad_cursors, |store: Arc<dyn Store>| async move {
    let hub = Hub::start_on(store.clone()).await;
    for i in 0..5 {
        hub.user(&format!("bad{i}")).await;
    }
    let p1 = hub.get("/Users?cursor=&count=2").await;
    let c = next(&p1).unwrap();

    // Changed, truncated, made up.
    let mut tampered = c.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [tampered.as_str(), &c[..c.len() - 4], "v1.AAAA", "hello"] {
        hub.get(&format!("/Users?cursor={}&count=2", q(bad)))
            .await
            .assert_error(400, Some("invalidCursor"));
    }
    // Issued for another query: another filter, another sort, the other resource type.
    hub.get(&format!(
        "/Users?cursor={}&count=2&filter={}",
        q(&c),
        q(r#"userName sw "bad""#)
    ))
    .await
    .assert_error(400, Some("invalidCursor"));
    hub.get(&format!("/Users?cursor={}&count=2&sortBy=userName", q(&c)))
        .await
        .assert_error(400, Some("invalidCursor"));
    hub.get(&format!("/Groups?cursor={}&count=2", q(&c)))
        .await
        .assert_error(400, Some("invalidCursor"));
    // Another page size (RFC 9865 §2.1: the count of the initial query).
    hub.get(&format!("/Users?cursor={}&count=3", q(&c)))
        .await
        .assert_error(400, Some("invalidCount"));
    // startIndex and cursor together ask for two paging methods.
    hub.get(&format!("/Users?cursor={}&count=2&startIndex=3", q(&c)))
        .await
        .assert_error(400, Some("invalidValue"));
    hub.get("/Users?cursor=&startIndex=1")
        .await
        .assert_error(400, Some("invalidValue"));
    // Root search pages by index only.
    hub.post(
        "/.search",
        &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "cursor": ""}),
    )
    .await
    .assert_error(400, Some("invalidValue"));
    // Without a cursor, startIndex paging as before (the default method).
    let r = hub.get("/Users?startIndex=2&count=2").await;
    assert_eq!(r.status, 200);
    assert_eq!((r.total(), r.body["startIndex"].as_u64()), (5, Some(2)));
    assert!(next(&r).is_none());

    // A cursor from a hub with another operator key does not open here.
    let other = Hub::start_on(store.clone()).await;
    let foreign = next(&other.get("/Users?cursor=&count=2").await).unwrap();
    hub.get(&format!("/Users?cursor={}&count=2", q(&foreign)))
        .await
        .assert_error(400, Some("invalidCursor"));

    // Expired: a hub whose cursors last one second.
    let short = Hub::start_with(store.clone(), |state| {
        state.hub.directory = state
            .hub
            .directory
            .clone()
            .with_cursor_timeout(Duration::from_secs(1));
    })
    .await;
    let spc = short.get("/ServiceProviderConfig").await;
    assert_eq!(spc.body["pagination"]["cursorTimeout"], 1);
    let c = next(&short.get("/Users?cursor=&count=2").await).unwrap();
    assert_eq!(
        short
            .get(&format!("/Users?cursor={}&count=2", q(&c)))
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    short
        .get(&format!("/Users?cursor={}&count=2", q(&c)))
        .await
        .assert_error(400, Some("expiredCursor"));
});

on_every_store!(
    discovery_announces_both_methods,
    |store: Arc<dyn Store>| async move {
        let hub = Hub::start_on(store).await;
        let spc = hub.get("/ServiceProviderConfig").await;
        let p = &spc.body["pagination"];
        assert_eq!(p["cursor"], true);
        assert_eq!(p["index"], true);
        assert_eq!(p["defaultPaginationMethod"], "index");
        assert_eq!(p["defaultPageSize"], 1000);
        assert_eq!(p["maxPageSize"], 1000);
        assert_eq!(p["cursorTimeout"], 3600);
    }
);

// A page of a filter no index answers examines a bounded number of users and may come
// back short, with a cursor that continues after the last one examined.
on_every_store!(filtered_pages_read_a_bounded_number, |store: Arc<
    dyn Store,
>| async move {
    // A budget of 100 a page (1,000 by default) keeps the directory small enough for the
    // emulated DynamoDB.
    const BUDGET: usize = 100;
    let counting = CountingStore::new(store.clone());
    let hub = Hub::start_with(Arc::new(counting.clone()), |state| {
        state.hub.directory = state.hub.directory.clone().with_page_read_budget(BUDGET);
    })
    .await;
    seed(&store, "plain", 300, json!({"title": "clerk"})).await;
    let rare = seed(&store, "rare", 6, json!({"title": "keeper"})).await;
    counting.reset();

    let pages = walk(
        &hub,
        &format!("count=5&filter={}", q(r#"title eq "keeper""#)),
    )
    .await;
    let got: Vec<String> = pages.iter().flat_map(ids).collect();
    assert_eq!(
        got.iter().cloned().collect::<HashSet<_>>(),
        rare.iter().cloned().collect::<HashSet<_>>()
    );
    assert_eq!(got.len(), 6, "each once");
    // 306 users, at most BUDGET examined per page: the first page comes back with fewer
    // than it asked for and a cursor; the walk takes about 306 / BUDGET pages.
    assert!(pages.len() >= 3, "{} pages", pages.len());
    assert!(pages[0].resources().len() < 5, "{}", pages[0].text);
    assert!(pages[0].body.get("totalResults").is_none(), "not counted");
    let reads = counting.reset();
    assert!(
        reads.items <= (pages.len() * (BUDGET + 40)) as u64,
        "{reads:?} for {} pages",
        pages.len()
    );
    // The default budget is larger than this directory: one page, all six.
    let dir = Directory::new(store.clone(), SchemaRegistry::builtin());
    let req = provisync_core::directory::SearchRequest {
        filter: provisync_scim::filter::parse(r#"title eq "keeper""#).ok(),
        cursor: Some(String::new()),
        count: Some(10),
        ..Default::default()
    };
    let r = dir.search(ResourceKind::User, &req).await.unwrap();
    assert_eq!((r.resources.len(), r.next_cursor), (6, None));
    const { assert!(PAGE_READ_BUDGET > 306) };

    // Unfiltered pages read about a page each, wherever they are.
    let first = hub.get("/Users?cursor=&count=40").await;
    let first_reads = counting.reset();
    let mut c = next(&first).unwrap();
    for _ in 0..6 {
        let r = hub.get(&format!("/Users?cursor={}&count=40", q(&c))).await;
        let reads = counting.reset();
        assert_eq!(r.resources().len(), 40);
        assert!(reads.items <= 120, "{reads:?}");
        c = next(&r).unwrap();
    }
    assert!(first_reads.items <= 120, "{first_reads:?}");
    // count=0 reads the counters, not the users.
    let z = hub.get("/Users?count=0").await;
    assert_eq!(z.total(), 306);
    assert!(counting.reset().items <= 20);
});

// `startIndex` pages in order continue where the page before ended: no page counts from
// the start.
on_every_store!(
    index_pages_do_not_rescan,
    |store: Arc<dyn Store>| async move {
        let counting = CountingStore::new(store.clone());
        let hub = Hub::start_on(Arc::new(counting.clone())).await;
        let created = seed(&store, "index", 450, json!({})).await;
        counting.reset();
        let mut seen = Vec::new();
        let mut start = 1;
        while start <= 450 {
            let r = hub
                .get(&format!("/Users?startIndex={start}&count=40"))
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.total(), 450);
            assert_eq!(r.body["startIndex"], start);
            let reads = counting.reset();
            // A page of 40 with each shard's spare, the counters and a remembered position;
            // counting from the start would read up to 450.
            assert!(
                reads.items <= 120,
                "page at {start} read {} items",
                reads.items
            );
            let got = ids(&r);
            start += got.len();
            seen.extend(got);
        }
        assert_eq!(seen, created, "every user once, in order");
        // A page asked for again is served from where it started.
        hub.get("/Users?startIndex=201&count=40").await;
        counting.reset();
        let again = hub.get("/Users?startIndex=201&count=40").await;
        assert_eq!(ids(&again), created[200..240].to_vec());
        assert!(counting.reset().items <= 120);
        // A page nobody asked for yet skips from the nearest known position: still right.
        let jump = hub.get("/Users?startIndex=377&count=10").await;
        assert_eq!(ids(&jump), created[376..386].to_vec());
        // Filtered index paging: counted once, then continued.
        let f = q(r#"userName sw "index001""#);
        let r1 = hub
            .get(&format!("/Users?filter={f}&startIndex=1&count=40"))
            .await;
        assert_eq!(r1.total(), 100);
        let r2 = hub
            .get(&format!("/Users?filter={f}&startIndex=41&count=40"))
            .await;
        let r3 = hub
            .get(&format!("/Users?filter={f}&startIndex=81&count=40"))
            .await;
        assert_eq!(r3.resources().len(), 20);
        let all: Vec<String> = [&r1, &r2, &r3].iter().flat_map(|r| ids(r)).collect();
        assert_eq!(all, created[100..200].to_vec());
    }
);

// The counts are kept in the transactions of creates and deletes, concurrent or not.
on_every_store!(counts_hold_under_concurrent_writes, |store: Arc<
    dyn Store,
>| async move {
    let hub = Arc::new(Hub::start_on(store.clone()).await);
    let doomed = seed(&store, "doomed", 30, json!({})).await;
    // A 503 is retried, as identity providers do: moto's transactions are not safe
    // under concurrent requests (it copies the whole table at the start of each, and
    // fails with "dictionary changed size during iteration" before writing anything).
    async fn retried(
        f: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Resp> + Send>>,
    ) -> Resp {
        for _ in 0..20 {
            let r = f().await;
            if r.status != 503 {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        f().await
    }
    let mut tasks = Vec::new();
    for i in 0..40 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let r = retried(|| {
                let hub = hub.clone();
                Box::pin(async move { hub.post("/Users", &user(&format!("busy{i:03}"))).await })
            })
            .await;
            assert_eq!(r.status, 201, "{}", r.text);
        }));
    }
    for id in doomed.iter().take(20) {
        let id = id.clone();
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let r = retried(|| {
                let (hub, id) = (hub.clone(), id.clone());
                Box::pin(async move { hub.delete(&format!("/Users/{id}")).await })
            })
            .await;
            assert_eq!(r.status, 204, "{}", r.text);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counted = hub.get("/Users?count=0").await.total();
    let listed: usize = walk(&hub, "count=100")
        .await
        .iter()
        .map(|p| p.resources().len())
        .sum();
    assert_eq!(listed, 30 + 40 - 20);
    assert_eq!(counted, 50);
    // Groups have their own count.
    let g = hub.group("counted", &[]).await;
    assert_eq!(hub.get("/Groups?count=0").await.total(), 1);
    hub.delete(&format!("/Groups/{g}")).await;
    assert_eq!(hub.get("/Groups?count=0").await.total(), 0);
    assert_eq!(hub.get("/Users?count=0").await.total(), 50);
});

// `meta.lastModified gt|ge` is answered from the last-modified index: what changed, in
// the order it changed, without reading the rest.
on_every_store!(last_modified_filters, |store: Arc<dyn Store>| async move {
    let counting = CountingStore::new(store.clone());
    let hub = Hub::start_on(Arc::new(counting.clone())).await;
    seed(&store, "old", 400, json!({})).await;
    let a = hub.user("changed-a").await;
    let b = hub.user("changed-b").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let c = hub.user("new-c").await;
    let r = hub
        .patch(
            &format!("/Users/{a}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "moved"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let a_modified = r.body["meta"]["lastModified"].as_str().unwrap().to_string();

    counting.reset();
    let f = q(&format!(r#"meta.lastModified gt "{since}""#));
    let r = hub.get(&format!("/Users?filter={f}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        ids(&r),
        [c.clone(), a.clone()],
        "in the order of modification"
    );
    assert_eq!(r.total(), 2);
    let reads = counting.reset();
    assert!(reads.items < 60, "read {reads:?} for 2 of 403 users");

    // By cursor, one a page.
    let pages = walk(&hub, &format!("count=1&filter={f}")).await;
    let got: Vec<String> = pages.iter().flat_map(ids).collect();
    assert_eq!(got, [c.clone(), a.clone()]);
    // ge an exact instant includes it; gt excludes it; with more conditions.
    let ge = q(&format!(r#"meta.lastModified ge "{a_modified}""#));
    assert_eq!(
        ids(&hub.get(&format!("/Users?filter={ge}")).await),
        std::slice::from_ref(&a)
    );
    let gt = q(&format!(r#"meta.lastModified gt "{a_modified}""#));
    assert!(
        hub.get(&format!("/Users?filter={gt}"))
            .await
            .resources()
            .is_empty()
    );
    let and = q(&format!(
        r#"meta.lastModified gt "{since}" and userName sw "new""#
    ));
    assert_eq!(
        ids(&hub.get(&format!("/Users?filter={and}")).await),
        std::slice::from_ref(&c)
    );
    // Sorted by lastModified, descending: the newest first.
    let r = hub
        .get("/Users?sortBy=meta.lastModified&sortOrder=descending&count=3")
        .await;
    assert_eq!(ids(&r)[..2], [a.clone(), c.clone()]);
    let _ = b;
});

// A store written in the layout before shards (one type index partition, no counts, no
// last-modified index) is served as it is, and `migrate_layout` moves it.
on_every_store!(
    old_layout_is_served_then_moved,
    |store: Arc<dyn Store>| async move {
        // Users as the previous version wrote them.
        let mut old_ids = Vec::new();
        let mut writes = Vec::new();
        for i in 0..30 {
            let id = format!("0190a000-0000-7000-8000-{i:012}");
            let body = json!({
                "schemas": [USER_SCHEMA], "id": id, "userName": format!("legacy{i:02}"),
                "meta": {"resourceType": "User", "created": "2024-05-01T10:00:00.000Z",
                         "lastModified": format!("2024-05-0{}T10:00:00.000Z", 1 + i % 3), "version": "W/\"1\""}
            });
            writes.push(Write::put(
                Item::new(format!("USER#{id}"), "USER", body.to_string().into_bytes())
                    .with_gsi1("RT#User", id.clone())
                    .with_version(1),
            ));
            writes.push(Write::put(Item::new(
                format!("UNIQ#User#userName#legacy{i:02}"),
                "UNIQ",
                json!({"id": id}).to_string().into_bytes(),
            )));
            old_ids.push(id);
        }
        for chunk in writes.chunks(50) {
            store.transact(chunk.to_vec()).await.unwrap();
        }
        let hub = Hub::start_on(store.clone()).await;
        // A user the new version creates before the move.
        let fresh = hub.user("fresh").await;

        // Served as it is: every user, counted by reading.
        let pages = walk(&hub, "count=7").await;
        let listed: Vec<String> = pages.iter().flat_map(ids).collect();
        let mut want = old_ids.clone();
        want.push(fresh.clone());
        assert_eq!(listed, want);
        assert_eq!(hub.get("/Users?count=0").await.total(), 31);
        let f = q(r#"meta.lastModified gt "2024-05-02T12:00:00Z""#);
        let r = hub.get(&format!("/Users?filter={f}")).await;
        assert_eq!(r.total(), 11, "10 old users on May 3rd and the fresh one");

        // The move: counted, indexed, marked; a second run has nothing to do.
        let dir = Directory::new(store.clone(), SchemaRegistry::builtin());
        let report = dir.migrate_layout(None).await.unwrap();
        assert!(report.complete);
        assert_eq!((report.users_moved, report.users), (30, Some(31)));
        let again = dir.migrate_layout(None).await.unwrap();
        assert_eq!((again.users_moved, again.users), (0, None));
        assert_eq!(dir.count(ResourceKind::User).await.unwrap(), 31);

        let hub = Hub::start_on(store.clone()).await;
        assert_eq!(hub.get("/Users?count=0").await.total(), 31);
        let listed: Vec<String> = walk(&hub, "count=7").await.iter().flat_map(ids).collect();
        assert_eq!(listed, want);
        let r = hub.get(&format!("/Users?filter={f}")).await;
        assert_eq!(r.total(), 11);
        let got = ids(&r);
        assert_eq!(got.last(), Some(&fresh), "by last modification");
        // The moved users keep their data and version (ETag).
        let r = hub.get(&format!("/Users/{}", old_ids[0])).await;
        assert_eq!(r.header("etag"), Some("W/\"1\""));
        assert_eq!(r.body["userName"], "legacy00");
    }
);

// The users of one group (`groups.value eq "G"` alone), by cursor forward and back and by
// `startIndex`, on both stores: read from the group's membership items, its subgroups
// left out, in id order.
on_every_store!(group_members_pages, |store: Arc<dyn Store>| async move {
    let hub = Hub::start_on(store.clone()).await;
    let users = seed(&store, "gm", 25, json!({})).await;
    let sub = hub.group("gm-sub", &[]).await;
    let g = hub.group("gm-all", &[]).await;
    let mut members: Vec<Value> = users.iter().map(|id| json!({"value": id})).collect();
    members.insert(7, json!({"value": sub, "type": "Group"}));
    let r = hub
        .patch(
            &format!("/Groups/{g}?excludedAttributes=members"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": members}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Not a member: listed by no page.
    hub.user("gm-outsider").await;
    let f = q(&format!("groups.value eq \"{g}\""));

    let pages = walk(&hub, &format!("count=10&filter={f}")).await;
    assert_eq!(pages.len(), 3);
    let listed: Vec<String> = pages.iter().flat_map(ids).collect();
    assert_eq!(listed, users, "every user once, in id order; no subgroup");
    assert_eq!(pages[2].resources().len(), 5);
    // Back from the third page: the second.
    let back = pages[2].body["previousCursor"]
        .as_str()
        .expect("previousCursor");
    let r = hub
        .get(&format!("/Users?count=10&filter={f}&cursor={}", q(back)))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r), ids(&pages[1]));
    assert!(pages[0].body.get("previousCursor").is_none());
    // The same with the other spelling, by startIndex: counted, then the page alone.
    let f2 = q(&format!("groups[value eq \"{g}\"]"));
    let r = hub
        .get(&format!("/Users?startIndex=21&count=10&filter={f2}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.total(), 25);
    assert_eq!(ids(&r), users[20..].to_vec());
    // count=0 asks for the number alone.
    let r = hub.get(&format!("/Users?count=0&filter={f}&cursor=")).await;
    assert_eq!((r.total(), r.resources().len()), (25, 0), "{}", r.text);
    // A group id no store could hold as a key: no users, not an error.
    let long = q(&format!("groups.value eq \"{}\"", "x".repeat(3000)));
    let r = hub.get(&format!("/Users?count=10&filter={long}")).await;
    assert_eq!((r.status, r.total()), (200, 0), "{}", r.text);
    // A cursor of another query is refused, clearly.
    let other = next(&walk(&hub, "count=10").await[0]).unwrap();
    let r = hub
        .get(&format!("/Users?count=10&filter={f}&cursor={}", q(&other)))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
});
