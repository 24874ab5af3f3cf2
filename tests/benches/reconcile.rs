//! Reconcile diff and import rate.
//!
//! `cargo bench -p provisync-tests --bench reconcile` (env `BENCH_USERS`, default 100,000;
//! `BENCH_IMPORT_ROWS`, default 100,000; 0 skips the import part).
//!
//! 1. **Diff**: the library's reconcile core on 100,000 users — index the hub side (map
//!    each user with the target's mapping, scope filter, matching value, links), then
//!    read a target listing of 100,000 accounts a page of 100 at a time, classify each
//!    (link / externalId / userName), and judge it against the mapped hub user. The
//!    listing differs from the hub in 1% of accounts (edited), 1% missing, 1% strangers.
//!    Hub users and target pages are generated as a store and a target would hand them
//!    over (a page at a time), so the memory measured is the engine's. Reports CPU time
//!    and peak RSS (`VmHWM`).
//! 2. **Import**: `transfer::read_csv` + `check_rows` + `import_rows` into an on-disk
//!    embedded store (the `provisync import --data-dir` path), rows per second.

use std::collections::HashSet;
use std::time::Instant;

use provisync_core::sync::mapping::map_resource;
use provisync_core::sync::reconcile::{HubIndex, Matched, Verdict, judge};
use provisync_core::target::TargetConfig;
use provisync_tests::load::env_usize;
use serde_json::{Value, json};

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn hub_id(i: usize) -> String {
    format!("0190a000-0000-7000-8000-{i:012}")
}

/// The hub's copy of user `i`.
fn hub_user(i: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": hub_id(i),
        "userName": format!("user{i:06}@example.org"),
        "name": {"givenName": format!("Given{i}"), "familyName": format!("Family{i}")},
        "displayName": format!("Given{i} Family{i}"),
        "emails": [{"value": format!("user{i:06}@example.org"), "type": "work", "primary": true}],
        "active": true,
        "title": "Engineer",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": format!("D{}", i % 50)},
        "meta": {"resourceType": "User", "version": "W/\"1\""}
    })
}

/// What the target holds for user `i`: what the hub sent, plus what a SCIM server adds.
fn target_account(t: &TargetConfig, i: usize) -> Value {
    let mut a = map_resource(
        provisync_scim::ResourceKind::User,
        &hub_id(i),
        &hub_user(i),
        &t.mapping,
        &t.group_mapping,
    );
    a["id"] = json!(format!("t-{i}"));
    a["meta"] = json!({"resourceType": "User", "created": "2025-01-01T00:00:00Z"});
    a["name"]["formatted"] = json!(format!("Given{i} Family{i}"));
    if i % 100 == 1 {
        a["name"]["givenName"] = json!("Edited");
    }
    a
}

fn diff(users: usize) {
    let t: TargetConfig = serde_json::from_value(json!({
        "id": "bench", "kind": "scim", "base_url": "https://scim.example.com/v2",
        "auth": {"bearer": "x"}, "scope_filter": "active eq true",
        "mapping": [{"target": "title", "source": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}]
    }))
    .expect("target");
    let schemas = provisync_scim::SchemaRegistry::builtin();
    let cpu0 = cpu_seconds();
    let wall = Instant::now();
    // The hub side: every user once (as a directory scan hands them over).
    let mut index = HubIndex::new("userName");
    // Time spent in the engine only (generating the test data is not the engine's).
    let mut engine = std::time::Duration::ZERO;
    for i in 0..users {
        let u = hub_user(i);
        let t0 = Instant::now();
        let mapped = map_resource(
            provisync_scim::ResourceKind::User,
            &hub_id(i),
            &u,
            &t.mapping,
            &t.group_mapping,
        );
        let scoped = provisync_core::sync::deliver::in_scope(
            &schemas,
            &t,
            provisync_scim::ResourceKind::User,
            &u,
        );
        index.add_user(&hub_id(i), scoped, &mapped);
        // 99% linked by an earlier delivery; the rest matched by userName.
        if i % 100 != 2 {
            index.add_link(&hub_id(i), &format!("t-{i}"));
        }
        engine += t0.elapsed();
    }
    let indexed = engine;
    // The target listing, a page of 100 at a time: 1% missing, 1% strangers.
    let (mut unchanged, mut update, mut orphan, mut leave) = (0, 0, 0, 0);
    let mut seen: HashSet<String> = HashSet::with_capacity(users);
    let mut page: Vec<Value> = Vec::with_capacity(100);
    let flush = |page: &mut Vec<Value>,
                 seen: &mut HashSet<String>,
                 engine: &mut std::time::Duration,
                 counts: (&mut usize, &mut usize, &mut usize, &mut usize)| {
        for account in page.drain(..) {
            let t0 = Instant::now();
            let matched = index.classify(&account);
            *engine += t0.elapsed();
            match matched {
                Matched::Linked(h) | Matched::Found(h) => {
                    let i: usize = h[24..].parse().unwrap_or(0);
                    // The store hands the hub user over (generated here).
                    let user = hub_user(i);
                    let t0 = Instant::now();
                    let mapped = map_resource(
                        provisync_scim::ResourceKind::User,
                        &h,
                        &user,
                        &t.mapping,
                        &t.group_mapping,
                    );
                    let v = judge(&t, index.in_scope(&h), &mapped, &account, None);
                    *engine += t0.elapsed();
                    seen.insert(h);
                    match v {
                        Verdict::Unchanged => *counts.0 += 1,
                        Verdict::Update => *counts.1 += 1,
                        Verdict::Leave(_) => *counts.3 += 1,
                    }
                }
                Matched::Orphan => *counts.2 += 1,
            }
        }
    };
    for i in 0..users {
        if i % 100 == 3 {
            page.push(json!({"id": format!("s-{i}"), "userName": format!("stranger{i}")}));
        } else if i % 100 != 4 {
            page.push(target_account(&t, i));
        }
        if page.len() == 100 {
            flush(
                &mut page,
                &mut seen,
                &mut engine,
                (&mut unchanged, &mut update, &mut orphan, &mut leave),
            );
        }
    }
    flush(
        &mut page,
        &mut seen,
        &mut engine,
        (&mut unchanged, &mut update, &mut orphan, &mut leave),
    );
    let t0 = Instant::now();
    let missing = index.missing(&seen, None).len();
    engine += t0.elapsed();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "reconcile diff: {users} hub users vs {} target accounts: engine {:.2} s (index {:.2} s), whole run with data generation {:.2} s wall / {:.2} s CPU, peak RSS {:.0} MB",
        users - users / 100,
        engine.as_secs_f64(),
        indexed.as_secs_f64(),
        wall.elapsed().as_secs_f64(),
        cpu,
        peak_rss_mb()
    );
    println!(
        "  verdicts: unchanged {unchanged}, update {update}, out of scope {leave}, orphans {orphan}, missing {missing}"
    );
    assert_eq!(orphan, users / 100);
    assert_eq!(update, users / 100);
    // 1% never listed, and 1% whose account a stranger replaced in the listing.
    assert_eq!(missing, 2 * (users / 100));
}

async fn import(rows: usize) {
    use provisync_transfer::{self as transfer, DirectorySink, ImportOptions};
    let dir = tempfile::tempdir().expect("tempdir");
    let store: std::sync::Arc<dyn provisync_core::store::Store> = std::sync::Arc::new(
        provisync_core::store::embedded::EmbeddedStore::open(dir.path()).expect("store"),
    );
    let queue = std::sync::Arc::new(provisync_core::queue::store_queue::StoreQueue::new(
        store.clone(),
        "deliver",
        Default::default(),
    ));
    let (secrets, _) = provisync_core::crypto::SecretBox::generate();
    let state = provisync_core::hub::Hub::new(provisync_core::hub::HubParts {
        store,
        queue,
        schemas: provisync_scim::SchemaRegistry::builtin(),
        secrets,
        connectors: provisync_connectors::connectors_for,
        http: provisync_connectors::http::http_port,
    });
    let mut csv = String::from("userName,name.givenName,name.familyName,email,active,title\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "user{i:06},Given{i},Family{i},user{i:06}@example.org,true,Engineer\n"
        ));
    }
    let started = Instant::now();
    let rows_read = transfer::read_csv(csv.as_bytes(), None).expect("csv");
    let (good, bad) = transfer::check_rows(rows_read);
    assert!(bad.is_empty());
    let sink = DirectorySink::new(state.directory.clone()).leaving_events_in_outbox();
    let (summary, rejected) =
        transfer::import_rows(&sink, &good, ImportOptions::default(), |_| {}).await;
    let secs = started.elapsed().as_secs_f64();
    assert!(
        rejected.is_empty(),
        "{:?}",
        &rejected[..rejected.len().min(3)]
    );
    assert_eq!(summary.created, rows);
    println!(
        "import: {rows} CSV rows into the on-disk embedded store (change events in the outbox, as `provisync import --data-dir`) in {secs:.1} s: {:.0} rows/s",
        rows as f64 / secs
    );
}

fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: then a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let users = env_usize("BENCH_USERS", if full { 100_000 } else { 2_000 });
    diff(users);
    let rows = env_usize("BENCH_IMPORT_ROWS", if full { 100_000 } else { 2_000 });
    if rows > 0 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(import(rows));
    }
}
