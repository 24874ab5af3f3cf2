//! The cost of one page of a directory listing as the directory grows: SCIM `GET /Users`
//! over loopback HTTP with 1,000, 20,000 and 100,000 users, by `startIndex` (RFC 7644) and
//! by cursor (RFC 9865), and the store items each page reads (a counting store wrapper).
//!
//! `cargo bench -p provisync-tests --bench directory_pages` (part of `make bench`).
//! Environment: `BENCH_SIZES` (default `1000,20000,100000`), `BENCH_REPS` (repetitions
//! of each timed page, default 9), `BENCH_PASS_SECS` (a whole-directory pass stops after
//! this long, default 300), `BENCH_BACKEND` (`embedded`, the default: the on-disk store
//! `provisync serve` runs; `moto`: DynamoDB on the emulator `scripts/test-env.sh` starts).
//!
//! Reported per size: the median time and the items read of one page of 100 at the start,
//! the middle and the end — by `startIndex` the first time that page is asked for (cold)
//! and again (warm), by cursor —, of `count=0`, and the time to page through everything
//! (by `startIndex`, sequentially as identity providers do, and by cursor).

use std::sync::Arc;
use std::time::{Duration, Instant};

use provisync_core::directory::Directory;
use provisync_core::event::Origin;
use provisync_core::store::Store;
use provisync_core::store::embedded::EmbeddedStore;
use provisync_scim::{ResourceKind, SchemaRegistry};
use provisync_tests::counting::{CountingStore, Reads};
use provisync_tests::load::env_usize;
use provisync_tests::{Hub, TOKEN, USER_SCHEMA};
use serde_json::{Value, json};

const PAGE: usize = 100;

struct Bench {
    hub: Hub,
    counting: CountingStore,
    client: reqwest::Client,
}

/// One timed request: wall time, store reads, the body.
struct Sample {
    time: Duration,
    reads: Reads,
    body: Value,
}

impl Bench {
    async fn get(&self, query: &str) -> Sample {
        self.counting.reset();
        let t = Instant::now();
        let r = self
            .client
            .get(format!("{}/Users?{query}", self.hub.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request");
        let status = r.status();
        let text = r.text().await.expect("body");
        let time = t.elapsed();
        assert!(status.is_success(), "GET /Users?{query}: {status} {text}");
        Sample {
            time,
            reads: self.counting.reads(),
            body: serde_json::from_str(&text).expect("json"),
        }
    }

    /// The median time and median reads of `reps` requests of `query`.
    async fn median(&self, query: &str, reps: usize) -> (Duration, u64) {
        let mut times = Vec::new();
        let mut reads = Vec::new();
        for _ in 0..reps {
            let s = self.get(query).await;
            times.push(s.time);
            reads.push(s.reads.items);
        }
        times.sort();
        reads.sort();
        (times[reps / 2], reads[reps / 2])
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn row(what: &str, time: &str, reads: &str) {
    println!("  {what:<44} {time:>14} {reads:>14}");
}

fn user(i: usize) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": format!("user{i:07}@example.org"),
        "name": {"givenName": "User", "familyName": format!("N{i}")},
        "emails": [{"value": format!("user{i:07}@example.org"), "type": "work", "primary": true}],
        "active": true
    })
}

async fn store_for(backend: &str, dir: &std::path::Path) -> Arc<dyn Store> {
    match backend {
        "moto" => provisync_tests::moto_store()
            .await
            .expect("BENCH_BACKEND=moto needs the emulator: run through scripts/test-env.sh"),
        _ => Arc::new(EmbeddedStore::open(dir).expect("store")),
    }
}

async fn run_size(backend: &str, n: usize, reps: usize, pass_budget: Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let counting = CountingStore::new(store_for(backend, dir.path()).await);
    let store: Arc<dyn Store> = Arc::new(counting.clone());

    // Seed through the import path (batched creates, no change events).
    let seeding = Instant::now();
    let directory = Directory::new(store.clone(), SchemaRegistry::builtin());
    let mut i = 0;
    while i < n {
        let bodies: Vec<Value> = (i..(i + 1000).min(n)).map(user).collect();
        for r in directory
            .create_batch(ResourceKind::User, &bodies, Origin::Import, false)
            .await
        {
            r.expect("seed user");
        }
        i += bodies.len();
    }
    let seeded = seeding.elapsed();

    let hub = Hub::start_on(store).await;
    let b = Bench {
        hub,
        counting,
        client: reqwest::Client::new(),
    };
    println!(
        "\n{n} users ({backend} store; seeded in {:.1} s)",
        seeded.as_secs_f64()
    );
    row("request", "median time", "items read");

    let (t, r) = b.median("count=0", reps).await;
    row("count=0 (totalResults only)", &ms(t), &r.to_string());

    let mid = n / 2 + 1;
    let end = n.saturating_sub(PAGE - 1).max(1);
    for (name, start) in [("start", 1), ("middle", mid), ("end", end)] {
        let q = format!("startIndex={start}&count={PAGE}");
        let cold = b.get(&q).await;
        assert_eq!(
            cold.body["totalResults"].as_u64(),
            Some(n as u64),
            "totalResults"
        );
        row(
            &format!("startIndex={start} ({name}), first request"),
            &ms(cold.time),
            &cold.reads.items.to_string(),
        );
        let (t, r) = b.median(&q, reps).await;
        row(
            &format!("startIndex={start} ({name}), again"),
            &ms(t),
            &r.to_string(),
        );
    }

    // A whole pass by startIndex, each page right after the one before.
    let pass = Instant::now();
    let mut start = 1;
    let mut pages = 0;
    let mut reads = 0;
    let mut seen = 0;
    while start <= n {
        let s = b.get(&format!("startIndex={start}&count={PAGE}")).await;
        let got = s.body["Resources"].as_array().map_or(0, Vec::len);
        seen += got;
        reads += s.reads.items;
        pages += 1;
        start += got.max(1);
        if pass.elapsed() > pass_budget {
            break;
        }
    }
    let took = pass.elapsed();
    let done = if seen >= n {
        format!("{:.2} s", took.as_secs_f64())
    } else {
        format!("stopped: {seen} in {:.0} s", took.as_secs_f64())
    };
    row(
        &format!("every page by startIndex ({pages} pages)"),
        &done,
        &format!("{} /page", reads / pages.max(1) as u64),
    );

    // A whole pass by cursor; the cursors of the first, middle and last pages are kept to
    // time those pages again.
    let pass = Instant::now();
    let mut cursor = String::new();
    let mut cursors = Vec::new();
    let mut seen = 0;
    let mut reads = 0;
    loop {
        cursors.push(cursor.clone());
        let s = b.get(&format!("cursor={cursor}&count={PAGE}")).await;
        seen += s.body["Resources"].as_array().map_or(0, Vec::len);
        reads += s.reads.items;
        match s.body["nextCursor"].as_str() {
            Some(c) if pass.elapsed() < pass_budget => cursor = c.to_string(),
            _ => break,
        }
    }
    let took = pass.elapsed();
    if cursors.len() == 1 && seen < n {
        row("cursor paging", "not supported", "");
        return;
    }
    let done = if seen >= n {
        format!("{:.2} s", took.as_secs_f64())
    } else {
        format!("stopped: {seen} in {:.0} s", took.as_secs_f64())
    };
    row(
        &format!("every page by cursor ({} pages)", cursors.len()),
        &done,
        &format!("{} /page", reads / cursors.len() as u64),
    );
    let last = cursors.len() - 1;
    for (name, at) in [("start", 0), ("middle", last / 2), ("end", last)] {
        let (t, r) = b
            .median(&format!("cursor={}&count={PAGE}", cursors[at]), reps)
            .await;
        row(
            &format!("cursor page {at} ({name})"),
            &ms(t),
            &r.to_string(),
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: then a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| {
            if full {
                "1000,20000,100000".into()
            } else {
                "300".into()
            }
        })
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let reps = env_usize("BENCH_REPS", if full { 9 } else { 3 }).max(1);
    let pass_budget = Duration::from_secs(env_usize("BENCH_PASS_SECS", 300) as u64);
    let backend = std::env::var("BENCH_BACKEND").unwrap_or_else(|_| "embedded".into());
    println!(
        "Provisync directory pages over loopback HTTP, {PAGE} per page, {reps} repetitions per median"
    );
    for n in sizes {
        run_size(&backend, n, reps, pass_budget).await;
    }
}
