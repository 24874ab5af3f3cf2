//! SCIM over HTTP on loopback: user creation and filtered `userName eq` lookups over
//! 10,000 users, on the embedded on-disk store (what `provisync serve` runs).
//!
//! `make bench` (= `cargo bench -p provisync-tests --bench scim_http`). Environment:
//! `BENCH_USERS` (default 10000), `BENCH_LOOKUPS` (default 100000), `BENCH_CONCURRENCY`
//! (default 32).

use std::sync::Arc;

use provisync_core::store::embedded::EmbeddedStore;
use provisync_tests::load::{drive, env_usize};
use provisync_tests::{Hub, TOKEN, USER_SCHEMA, q};
use serde_json::json;

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
