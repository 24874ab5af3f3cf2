//! SCIM over HTTP on loopback: user creation and filtered `userName eq` lookups over
//! 10,000 users, on the embedded on-disk store (what `provisync serve` runs).
//!
//! `make bench` (= `cargo bench -p provisync-tests --bench scim_http`). Environment:
//! `BENCH_USERS` (default 10000), `BENCH_LOOKUPS` (default 100000), `BENCH_CONCURRENCY`
//! (default 32).

use std::sync::Arc;
use std::time::{Duration, Instant};

use provisync::store::embedded::EmbeddedStore;
use provisync_tests::{Hub, TOKEN, USER_SCHEMA, q};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Stats {
    fn report(mut self, what: &str) {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| self.latencies[((n as f64 * p) as usize).min(n - 1)];
        println!(
            "{what:<28} {n:>7} requests  {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
            n as f64 / self.elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            self.latencies[n - 1].as_secs_f64() * 1e3,
        );
    }
}

/// Runs `total` requests from `concurrency` workers; `make(i)` builds request i.
async fn drive<F>(concurrency: usize, total: usize, make: F) -> Stats
where
    F: Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let make = make.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return lat;
                }
                let t = Instant::now();
                let r = make(i).send().await.expect("request");
                let status = r.status();
                let _ = r.bytes().await;
                assert!(status.is_success(), "request {i}: {status}");
                lat.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.extend(t.await.expect("worker"));
    }
    Stats {
        latencies,
        elapsed: start.elapsed(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: then a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let users = env_usize("BENCH_USERS", if full { 10_000 } else { 200 });
    let lookups = env_usize("BENCH_LOOKUPS", if full { 100_000 } else { 1_000 });
    let concurrency = env_usize("BENCH_CONCURRENCY", 32);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let hub = Hub::start_on(store).await;
    println!(
        "Provisync SCIM over HTTP on loopback, embedded on-disk store, {concurrency} concurrent clients"
    );

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let base = hub.base.clone();
    let c = client.clone();
    let b = base.clone();
    drive(concurrency, users, move |i| {
        c.post(format!("{b}/Users"))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/scim+json")
            .body(
                json!({
                    "schemas": [USER_SCHEMA],
                    "userName": format!("user{i:06}@example.org"),
                    "name": {"givenName": "User", "familyName": format!("N{i}")},
                    "emails": [{"value": format!("user{i:06}@example.org"), "type": "work", "primary": true}],
                    "active": true
                })
                .to_string(),
            )
    })
    .await
    .report("create user (POST /Users)");

    let c = client.clone();
    let b = base.clone();
    drive(concurrency, lookups, move |i| {
        let n = (i * 7919) % users;
        c.get(format!(
            "{b}/Users?filter={}",
            q(&format!("userName eq \"user{n:06}@example.org\""))
        ))
        .bearer_auth(TOKEN)
    })
    .await
    .report("filter userName eq (GET)");
}
