//! SCIM over HTTP on loopback: user creation and filtered `userName eq` lookups over
//! 10,000 users, on the embedded on-disk store (what `provisync serve` runs).
//!
//! Creates are measured three ways in the same run, with the same workload (the same
//! bodies, the same number of concurrent keep-alive clients): the hub with group commit
//! (many concurrent creates per flush), the hub with one flush per transaction (how the
//! store committed before group commit), and `scim2-server`, the Python reference SCIM
//! server (everything in memory), when the test venv has it (`scripts/test-env.sh`).
//! Ratios are what to quote: the machine is shared and absolute rates move.
//!
//! `make bench` (= `scripts/test-env.sh cargo bench -p provisync-tests --bench scim_http`).
//! Environment: `BENCH_USERS` (default 10000), `BENCH_LOOKUPS` (default 100000),
//! `BENCH_CONCURRENCY` (default 32), `BENCH_PEER_BACKLOG` (scim2-server's listen backlog,
//! default 128; 0: its own 5).

use std::sync::Arc;

use provisync_core::store::embedded::EmbeddedStore;
use provisync_tests::load::{Summary, bench_user, cpu_seconds, drive, env_usize};
use provisync_tests::peers::ScimPeer;
use provisync_tests::{Hub, TOKEN, q};

/// `users` creates from `concurrency` clients against `{base}/Users`.
async fn creates(
    what: &str,
    base: &str,
    token: &str,
    prefix: &'static str,
    concurrency: usize,
    users: usize,
) -> Summary {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let (base, token) = (base.to_string(), token.to_string());
    drive(concurrency, users, move |i| {
        client
            .post(format!("{base}/Users"))
            .bearer_auth(&token)
            .header("Content-Type", "application/scim+json")
            .body(bench_user(prefix, i).to_string())
    })
    .await
    .report(what)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: then a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let users = env_usize("BENCH_USERS", if full { 10_000 } else { 200 });
    let lookups = env_usize("BENCH_LOOKUPS", if full { 100_000 } else { 1_000 });
    let concurrency = env_usize("BENCH_CONCURRENCY", 32);
    println!(
        "SCIM over HTTP on loopback, {concurrency} concurrent keep-alive clients, {users} creates each"
    );

    // Before group commit: the same store, one flush per transaction.
    let one_dir = tempfile::tempdir().expect("tempdir");
    let one = EmbeddedStore::open(one_dir.path())
        .expect("store")
        .with_max_group(1);
    let one_hub = Hub::start_on(Arc::new(one.clone())).await;
    let before = creates(
        "hub, one flush per transaction",
        &one_hub.base,
        TOKEN,
        "one",
        concurrency,
        users,
    )
    .await;
    drop(one_hub);

    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("store");
    let hub = Hub::start_on(Arc::new(store.clone())).await;
    let cpu_before = cpu_seconds(None);
    let after = creates(
        "hub, group commit",
        &hub.base,
        TOKEN,
        "user",
        concurrency,
        users,
    )
    .await;
    // This process: the hub and the load generator.
    let hub_cpu = cpu_seconds(None).zip(cpu_before).map(|(b, a)| b - a);
    let stats = store.commit_stats();
    println!(
        "  group commit: {} transactions in {} flushes ({:.1} per flush; one flush per transaction: {:.1})",
        stats.transactions,
        stats.groups,
        stats.transactions as f64 / stats.groups.max(1) as f64,
        {
            let s = one.commit_stats();
            s.transactions as f64 / s.groups.max(1) as f64
        }
    );
    println!(
        "  group commit / one flush per transaction: {:.2}x",
        after.rate / before.rate
    );
    // A listen backlog for the 32 clients (scim2-server's own 5 drops connection
    // attempts, retried after 1 s, 3 s, ...: its tail then measured those timeouts).
    let backlog = env_usize("BENCH_PEER_BACKLOG", 128);
    let backlog = (backlog > 0).then_some(backlog as u32);
    match ScimPeer::start_with_backlog(backlog).await {
        Some(peer) => {
            let peer_before = cpu_seconds(Some(peer.pid()));
            let direct = creates(
                &format!(
                    "scim2-server (reference, in memory; listen backlog {})",
                    backlog.map_or("5, as shipped".to_string(), |b| b.to_string())
                ),
                &peer.base,
                &peer.token,
                "peer",
                concurrency,
                users,
            )
            .await;
            println!(
                "  hub (group commit) / scim2-server: {:.1}x req/s, p50 {:.2}x, p99 {:.2}x; \
                 hub (one flush per transaction) / scim2-server: {:.1}x",
                after.rate / direct.rate,
                after.p50 / direct.p50,
                after.p99 / direct.p99,
                before.rate / direct.rate,
            );
            // CPU per create, which the machine's other load moves less than rates: this
            // process (the hub and its load generator) against the server alone.
            let server = cpu_seconds(Some(peer.pid()))
                .zip(peer_before)
                .map(|(b, a)| b - a);
            if let (Some(hub_cpu), Some(server)) = (hub_cpu, server) {
                let per = |s: f64| s / users as f64 * 1e6;
                println!(
                    "  CPU per create: hub with its load generator {:.0} us, scim2-server alone {:.0} us ({:.1}x)",
                    per(hub_cpu),
                    per(server),
                    server / hub_cpu.max(f64::EPSILON),
                );
            }
        }
        None => println!("  scim2-server: skipped (run under scripts/test-env.sh)"),
    }

    if lookups == 0 {
        // `BENCH_LOOKUPS=0`: the creates alone.
        return;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let base = hub.base.clone();
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
