//! Signed webhooks over HTTP on loopback: verified `POST /webhooks/{id}` per second, on
//! the embedded on-disk store (what `provisync serve` runs). Each request carries a
//! Standard Webhooks signature the hub verifies (HMAC-SHA256, timestamp window, replay
//! id), then the envelope is applied: first every `user.upsert` creates a user (one
//! transaction with its change event, replay id, link and audit entry), then the same
//! users are sent again — the echo a bidirectional site produces — and absorbed as no-ops.
//!
//! `cargo bench -p provisync-tests --bench webhooks`. Environment: `BENCH_WEBHOOKS`
//! (default 5000), `BENCH_CONCURRENCY` (default 32).

use std::sync::Arc;

use provisync_core::store::embedded::EmbeddedStore;
use provisync_tests::Hub;
use provisync_tests::load::{drive, env_usize};
use provisync_tests::site::signed_headers;
use reqwest::Method;
use serde_json::json;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn request(client: &reqwest::Client, url: &str, round: usize, i: usize) -> reqwest::RequestBuilder {
    let body = json!({
        "type": "user.upsert",
        "occurred_at": chrono::Utc::now().to_rfc3339(),
        "data": {
            "externalId": i.to_string(),
            "userName": format!("user{i:06}@example.org"),
            "name": {"givenName": "User", "familyName": format!("N{i}")},
            "emails": [{"value": format!("user{i:06}@example.org"), "primary": true}]
        }
    })
    .to_string()
    .into_bytes();
    let mut req = client.post(url).header("content-type", "application/json");
    for (k, v) in signed_headers(SECRET, &format!("msg_{round}_{i}"), &body) {
        req = req.header(k, v);
    }
    req.body(body)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: then a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let total = env_usize("BENCH_WEBHOOKS", if full { 5_000 } else { 200 });
    let concurrency = env_usize("BENCH_CONCURRENCY", 32);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let hub = Hub::start_on(store).await;
    let r = hub
        .admin(
            Method::PUT,
            "/sources/bench-site",
            Some(&json!({"secret": SECRET, "user_sync": true})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    println!(
        "Provisync signed webhooks over HTTP on loopback, embedded on-disk store, {concurrency} concurrent senders"
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let url = format!("http://{}/webhooks/bench-site", hub.addr);
    for (round, what) in [
        (0, "user.upsert, new user"),
        (1, "user.upsert, unchanged (echo)"),
    ] {
        let c = client.clone();
        let u = url.clone();
        drive(concurrency, total, move |i| request(&c, &u, round, i))
            .await
            .report(what);
    }
}
