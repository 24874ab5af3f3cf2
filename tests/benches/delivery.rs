//! Delivery throughput: how fast changes get from the hub's SCIM API to a target.
//!
//! The hub runs in this process, as `provisync serve` wires it (SCIM API over loopback
//! HTTP, embedded on-disk store, store-backed queue, the same queue consumer and SCIM
//! connector), with its consumer in-process ([`Hub::run_delivery`]).
//!
//! (a) End to end to a fast sink: `BENCH_DELIVERY_USERS` (10,000) user creations POSTed
//!     by `BENCH_CONCURRENCY` (32) clients, timed from the first POST to the last user on
//!     an in-memory SCIM target ([`FaultyTarget`] with recording off).
//! (b) Against the reference server `scim2-server`: its own create rate when called
//!     directly (`BENCH_PEER_USERS`, 2,000 POSTs from `BENCH_PEER_CONCURRENCY`, 10 = the
//!     consumer's batch size, clients), then the hub's delivery rate to a fresh instance
//!     for the same users (created in the hub first, then the consumer is started and
//!     timed until the last user is on the peer: counted by an observer of the hub's
//!     audit log, then confirmed by its audit API; `BENCH_POLL_AUDIT=1` polls the audit
//!     API every 100 ms instead, as before), and the ratio of the two. The peer
//!     listens with a backlog of `BENCH_PEER_BACKLOG` (128; 0: scim2-server's own 5, which
//!     drops connection attempts of more than 5 clients: `scripts/scim2_peer.py`). Both
//!     runs print the CPU time per create of this process (the direct run's clients; the
//!     hub) and of scim2-server, from `/proc`. `BENCH_PIN=1`: in both, scim2-server runs
//!     on a CPU of its own and this process on the others (`taskset`), as a target on
//!     its own machine (default: all share the machine's CPUs, as before).
//!     `BENCH_DIRECT_CPU_US`: the direct run's clients spend this many microseconds of
//!     CPU per call besides (a busy loop), as a caller with the hub's CPU per change.
//!     Then the same pairs again with scim2-server limited to `BENCH_PEER_CPU` CPUs (0.6
//!     in the full run, 0 skips it; a cgroup's CFS quota, [`CpuBudget`]), as a server on
//!     a small VM of its own: the hub's CPU is then not taken from the server's. Skipped
//!     where the machine has no writable cgroup CPU controller.
//!
//! (c) To a target that rate-limits ([`FaultyTarget::set_rate_limit`]: 429 with
//!     `Retry-After: 1` beyond `BENCH_RATE_LIMIT`, 50, calls a second):
//!     `BENCH_RATE_USERS` (500) users created in the hub first, then the consumer is
//!     started and timed until the last one is on the target; once with the target's
//!     `max_rate` set to its limit, once without (the pace found from 429s alone), once
//!     without where the target advertises its quota in every answer (IETF
//!     `RateLimit-Policy: "default";q=50;w=1` and `RateLimit`,
//!     [`FaultyTarget::set_advertised_rate_limit`]). The share of the limit reached, the
//!     429s, and the most 429s any one user got; the runs without `max_rate` then deliver
//!     a second batch to the same target (the pace already found).
//!
//! `BENCH_PEER_PAIRS` (3; 1 in the smoke run): (b) runs that many pairs and prints the
//! median of their ratios.
//! `BENCH_ONLY=c` (or `a`, `b`, or several: `BENCH_ONLY=ac`) runs only those sections.
//! `BENCH_WORKERS` (2): the runtime's worker threads.
//!
//! `cargo bench -p provisync-tests --bench delivery` under `scripts/test-env.sh` (for
//! scim2-server). Without `--bench` (as `cargo test --all-targets` runs it) the sizes
//! are small: a smoke run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use provisync_core::store::embedded::EmbeddedStore;
use provisync_core::sync::audit::{AuditEntry, AuditOp, AuditStatus};
use provisync_tests::budget::CpuBudget;
use provisync_tests::counting::CountingStore;
use provisync_tests::load::{bench_user, cpu_seconds, env_usize};
use provisync_tests::peers::{FaultyTarget, ScimPeer};
use provisync_tests::{Hub, TOKEN};
use reqwest::Method;
use serde_json::{Value, json};

fn user(prefix: &str, i: usize) -> Value {
    bench_user(prefix, i)
}

/// `total` POSTs of `body(i)` to `url` from `concurrency` workers; every answer must be 201.
async fn post_all(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    concurrency: usize,
    total: usize,
    body: impl Fn(usize) -> Value + Send + Sync + 'static,
) {
    let body = Arc::new(body);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, token) = (client.clone(), url.to_string(), token.to_string());
        let (body, next) = (body.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("Content-Type", "application/scim+json")
                    .body(body(i).to_string())
                    .send()
                    .await
                    .expect("POST");
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                assert_eq!(status.as_u16(), 201, "POST {i} to {url}: {text}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
}

/// Polls `count` until it reaches `n`; panics with `what` after `timeout`.
async fn wait_count<F, Fut>(what: &str, n: usize, timeout: Duration, every: Duration, count: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let start = Instant::now();
    loop {
        let c = count().await;
        if c >= n {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {c}/{n} {what}"
        );
        tokio::time::sleep(every).await;
    }
}

async fn add_target(hub: &Hub, id: &str, base: &str, token: &str) {
    add_target_with(hub, id, base, token, json!({})).await
}

async fn add_target_with(hub: &Hub, id: &str, base: &str, token: &str, extra: Value) {
    let mut body = json!({"kind": "scim", "base_url": base, "auth": {"bearer": token}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    let r = hub
        .admin(Method::PUT, &format!("/targets/{id}"), Some(&body))
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
}

async fn on_disk_hub() -> (Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    (Hub::start_on(store).await, dir)
}

struct Row {
    what: String,
    n: usize,
    secs: f64,
}

impl Row {
    fn new(what: impl Into<String>, n: usize, elapsed: Duration) -> Row {
        Row {
            what: what.into(),
            n,
            secs: elapsed.as_secs_f64(),
        }
    }
    fn rate(&self) -> f64 {
        self.n as f64 / self.secs
    }
}

/// (a): returns (ingest, end to end).
///
/// Also prints the store work and the CPU time of this process (clients, hub and sink)
/// per change, ingest and delivery together: run at `BENCH_DELIVERY_USERS=100000` to see
/// whether they grow with the data.
async fn to_fast_sink(n: usize, concurrency: usize, timeout: Duration) -> (Row, Row) {
    let sink = FaultyTarget::start().await;
    sink.set_recording(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = EmbeddedStore::open(dir.path()).expect("store");
    let counting = CountingStore::new(Arc::new(embedded.clone()));
    let hub = Hub::start_on(Arc::new(counting.clone())).await;
    add_target(&hub, "sink", &sink.base, &sink.token).await;
    let _delivery = hub.run_delivery();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    counting.reset();
    let flushes = embedded.commit_stats().flushes;
    let cpu = cpu_time(None);
    let start = Instant::now();
    post_all(&client, &hub.url("/Users"), TOKEN, concurrency, n, |i| {
        user("sink", i)
    })
    .await;
    let ingest = start.elapsed();
    wait_count(
        "users on the sink",
        n,
        timeout,
        Duration::from_millis(5),
        || async { sink.user_count() },
    )
    .await;
    let total = start.elapsed();
    assert_eq!(sink.user_count(), n, "each user exactly once on the sink");
    let (reads, tx) = (counting.reads(), counting.transactions());
    let per = |v: u64| v as f64 / n as f64;
    let cpu_ms = match (cpu, cpu_time(None)) {
        (Some(a), Some(b)) => format!("{:.2}", (b - a).as_secs_f64() * 1000.0 / n as f64),
        _ => "?".into(),
    };
    println!(
        "  per change, ingest and delivery together: {:.1} store reads ({:.1} items), \
         {:.2} transactions, {:.2} flushes; {cpu_ms} ms CPU in this process (clients, hub, sink)",
        per(reads.calls),
        per(reads.items),
        per(tx),
        per(embedded.commit_stats().flushes - flushes),
    );
    (
        Row::new("  SCIM POST /Users into the hub", n, ingest),
        Row::new("  first POST -> last user on the sink", n, total),
    )
}

/// Creates the hub's audit shows as delivered to `target` (asks the hub, not the target:
/// polling scim2-server itself would take its single thread from the deliveries).
async fn delivered_count(hub: &Hub, target: &str) -> usize {
    let mut n = 0;
    let mut cursor = String::new();
    loop {
        let r = hub
            .admin(
                Method::GET,
                &format!(
                    "/audit?target={target}&op=create&status=delivered&limit=1000&cursor={cursor}"
                ),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        n += r.body["entries"].as_array().map_or(0, Vec::len);
        match r.body["next_cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = provisync_tests::q(c),
            _ => return n,
        }
    }
}

async fn peer_count(peer: &ScimPeer) -> usize {
    let (status, body) = peer.get("/Users?count=0").await;
    assert_eq!(status, 200, "{body}");
    body["totalResults"].as_u64().unwrap_or(0) as usize
}

/// CPU time (user + system) process `pid` has used so far (`None`: this process).
fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    cpu_seconds(pid).map(Duration::from_secs_f64)
}

/// CPU time this process (the hub, or the direct run's clients) and the peer used while
/// `n` changes went through, per change, in ms: (this process, peer).
struct CpuPer {
    me: Option<Duration>,
    peer: Option<Duration>,
    peer_pid: u32,
}

impl CpuPer {
    fn start(peer: &ScimPeer) -> CpuPer {
        let peer_pid = peer.pid();
        CpuPer {
            me: cpu_time(None),
            peer: cpu_time(Some(peer_pid)),
            peer_pid,
        }
    }
    fn per_change(&self, n: usize) -> String {
        let per = |before: Option<Duration>, pid: Option<u32>| match (before, cpu_time(pid)) {
            (Some(b), Some(a)) => format!("{:.2}", (a - b).as_secs_f64() * 1000.0 / n as f64),
            _ => "?".to_string(),
        };
        format!(
            "{} ms in this process, {} ms in scim2-server",
            per(self.me, None),
            per(self.peer, Some(self.peer_pid))
        )
    }
}

/// The CPUs of this machine, as `taskset` lists them (`0-1`), or `None` with fewer than 2.
fn cpu_list() -> Option<(String, String, String)> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (n >= 2).then(|| {
        let last = n - 1;
        let rest = if last == 1 {
            "0".to_string()
        } else {
            format!("0-{}", last - 1)
        };
        (format!("0-{last}"), rest, last.to_string())
    })
}

/// `taskset -a -p -c cpus pid` (every thread of `pid`); false when it failed.
fn pin(pid: u32, cpus: &str) -> bool {
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// With `BENCH_PIN=1`, (b) gives scim2-server a CPU of its own, and this process (the
/// direct clients, or the hub) the others, as when the target runs on its own machine:
/// on 2 shared cores the hub's own CPU per change (about 1 ms against the direct
/// clients' 0.2 ms) is taken from the server, which runs its requests under one
/// interpreter lock. Returns whether both pins took.
fn pin_apart(peer: &ScimPeer) -> bool {
    if env_usize("BENCH_PIN", 0) == 0 {
        return false;
    }
    let Some((_, mine, theirs)) = cpu_list() else {
        return false;
    };
    pin(peer.pid(), &theirs) && pin(std::process::id(), &mine)
}

/// Puts scim2-server into `budget` (when there is one), before anything is timed.
fn budget_peer(budget: Option<&CpuBudget>, peer: &ScimPeer) {
    if let Some(b) = budget {
        assert!(
            b.add(peer.pid()),
            "scim2-server not moved into its CPU budget"
        );
    }
}

/// (b) `pairs` times (direct, then through the hub, each to fresh servers), scim2-server
/// limited to `cpus` CPUs when set; prints each pair and the median of their ratios.
async fn peer_pairs(
    pairs: usize,
    n: usize,
    concurrency: usize,
    backlog: Option<u32>,
    cpus: Option<f64>,
    timeout: Duration,
) {
    let mut ratios = Vec::new();
    for pair in 1..=pairs {
        match against_scim2_server(n, concurrency, backlog, cpus, timeout).await {
            Some((direct, hub)) => {
                print_rows(&[&direct, &hub]);
                let ratio = 100.0 * hub.rate() / direct.rate();
                println!(
                    "  pair {pair}: hub delivery rate / scim2-server direct rate: {ratio:.0}%"
                );
                ratios.push(ratio);
            }
            None => {
                println!("  skipped: scim2-server not available (run under scripts/test-env.sh)");
                break;
            }
        }
    }
    if !ratios.is_empty() {
        ratios.sort_by(f64::total_cmp);
        println!(
            "  hub delivery rate / scim2-server direct rate, median of {} pairs: {:.0}% \
             (range {:.0}-{:.0}%; goal >= 95%)",
            ratios.len(),
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}

/// Gives this process every CPU again (after (b)).
fn unpin() {
    if let Some((all, _, _)) = cpu_list() {
        pin(std::process::id(), &all);
    }
}

/// (b): `None` when scim2-server is not available in this run.
async fn against_scim2_server(
    n: usize,
    concurrency: usize,
    backlog: Option<u32>,
    cpus: Option<f64>,
    timeout: Duration,
) -> Option<(Row, Row)> {
    // `BENCH_DIRECT_CPU_US`: the direct run's clients also spend this much CPU per call
    // (a busy loop), as a client with the hub's own CPU per change would: it tells how
    // much of the share the CPU a caller takes from the shared cores explains.
    let burn_per_call = Duration::from_micros(env_usize("BENCH_DIRECT_CPU_US", 0) as u64);
    // Direct: the peer's own create rate.
    let direct = {
        // Declared before the peer: dropped after it has exited.
        let budget = cpus.and_then(|c| CpuBudget::new("provisync-bench-peer", c));
        let peer = ScimPeer::start_with_backlog(backlog).await?;
        budget_peer(budget.as_ref(), &peer);
        let pinned = pin_apart(&peer);
        println!(
            "  scim2-server on a CPU of its own: {}",
            if pinned { "yes (taskset)" } else { "no" }
        );
        let cpu = CpuPer::start(&peer);
        let start = Instant::now();
        post_all(
            &peer.client,
            &format!("{}/Users", peer.base),
            &peer.token,
            concurrency,
            n,
            // As the hub sends it: with an `externalId` (the hub's id), which the
            // server also stores and indexes.
            move |i| {
                burn(burn_per_call);
                let mut u = user("direct", i);
                u["externalId"] = json!(uuid::Uuid::new_v4().to_string());
                u
            },
        )
        .await;
        let elapsed = start.elapsed();
        println!(
            "  CPU per create, direct ({concurrency} clients): {}",
            cpu.per_change(n)
        );
        assert_eq!(peer_count(&peer).await, n, "{}", peer.log());
        elapsed
    };

    // Through the hub, to a fresh peer (same size of data): users in the hub first, then
    // the consumer is started and timed until the last one is on the peer.
    let budget = cpus.and_then(|c| CpuBudget::new("provisync-bench-peer", c));
    let peer = ScimPeer::start_with_backlog(backlog).await?;
    budget_peer(budget.as_ref(), &peer);
    pin_apart(&peer);
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = EmbeddedStore::open(dir.path()).expect("store");
    let counting = CountingStore::new(Arc::new(embedded.clone()));
    let hub = Hub::start_on(Arc::new(counting.clone())).await;
    // `BENCH_PEER_MAX_IN_FLIGHT`: the target's `max_in_flight` (unset: the default window).
    let extra = match env_usize("BENCH_PEER_MAX_IN_FLIGHT", 0) {
        0 => json!({}),
        k => json!({"max_in_flight": k}),
    };
    add_target_with(&hub, "peer", &peer.base, &peer.token, extra).await;
    let client = reqwest::Client::new();
    post_all(&client, &hub.url("/Users"), TOKEN, 32, n, |i| {
        user("hub", i)
    })
    .await;
    // The delivered creates as the engine records them: an observer of its audit log
    // (free), then the audit API once to confirm. `BENCH_POLL_AUDIT=1`: ask the audit
    // API every 100 ms instead, as this bench did before; each ask reads and sends up to
    // 1,000 entries, CPU taken from the hub and scim2-server while they are timed.
    let recorded = Arc::new(AtomicUsize::new(0));
    let poll_audit = env_usize("BENCH_POLL_AUDIT", 0) > 0;
    {
        let recorded = recorded.clone();
        hub.deliverer
            .audit()
            .observe(Arc::new(move |e: &AuditEntry| {
                if e.target == "peer"
                    && e.op == AuditOp::Create
                    && e.status == AuditStatus::Delivered
                {
                    recorded.fetch_add(1, Ordering::Relaxed);
                }
            }));
    }
    counting.reset();
    let flushes = embedded.commit_stats().flushes;
    let cpu = CpuPer::start(&peer);
    let start = Instant::now();
    let _delivery = hub.run_delivery();
    if !poll_audit {
        wait_count(
            "users delivered to scim2-server (audit observer)",
            n,
            timeout,
            Duration::from_millis(5),
            || async { recorded.load(Ordering::Relaxed) },
        )
        .await;
    }
    wait_count(
        "users delivered to scim2-server (hub audit)",
        n,
        timeout,
        Duration::from_millis(if poll_audit { 100 } else { 5 }),
        || delivered_count(&hub, "peer"),
    )
    .await;
    let through_hub = start.elapsed();
    println!("  CPU per create, through the hub: {}", cpu.per_change(n));
    let (reads, tx) = (counting.reads(), counting.transactions());
    println!(
        "  hub store work per delivered change (the bench's audit reads included): \
         {:.1} reads ({:.1} items), {:.2} transactions, {:.2} flushes",
        reads.calls as f64 / n as f64,
        reads.items as f64 / n as f64,
        tx as f64 / n as f64,
        (embedded.commit_stats().flushes - flushes) as f64 / n as f64,
    );
    let pace = hub.admin(Method::GET, "/targets/peer/pace", None).await;
    println!(
        "  hub's pace to scim2-server at the end: window {}, slow-downs {}",
        pace.body["window"], pace.body["slow_downs"]
    );
    assert_eq!(
        peer_count(&peer).await,
        n,
        "each user exactly once on the peer"
    );
    Some((
        Row::new(
            format!("  scim2-server POST /Users directly ({concurrency} clients)"),
            n,
            direct,
        ),
        Row::new("  hub delivery to scim2-server", n, through_hub),
    ))
}

/// Spins on this thread for `d` (CPU time, as a caller's own work per call).
fn burn(d: Duration) {
    if d.is_zero() {
        return;
    }
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// How (c) meets the rate-limited target.
#[derive(Clone, Copy, PartialEq)]
enum Pace {
    /// The target's `max_rate` set to this.
    MaxRate(f64),
    /// No `max_rate`: the pace found from 429s alone.
    From429s,
    /// No `max_rate`; the target advertises its quota in every answer.
    Advertised,
}

/// (c): one run to a target limited to `limit` calls a second, met as `pace` says.
/// Returns the row and (429s, most 429s for one user), and the same for a second batch
/// when there is no `max_rate`.
async fn to_rate_limited(
    n: usize,
    limit: f64,
    pace: Pace,
    timeout: Duration,
) -> (Row, usize, u32, Option<(Row, usize, u32)>) {
    let max_rate = match pace {
        Pace::MaxRate(r) => Some(r),
        _ => None,
    };
    let target = FaultyTarget::start().await;
    target.set_recording(false);
    let (hub, _dir) = on_disk_hub().await;
    let extra = match max_rate {
        Some(r) => json!({"max_rate": r}),
        None => json!({}),
    };
    add_target_with(&hub, "limited", &target.base, &target.token, extra).await;
    let client = reqwest::Client::new();
    post_all(&client, &hub.url("/Users"), TOKEN, 32, n, |i| {
        user("limited", i)
    })
    .await;
    if pace == Pace::Advertised {
        target.set_advertised_rate_limit(limit);
    } else {
        target.set_rate_limit(limit);
    }
    let start = Instant::now();
    let _delivery = hub.run_delivery();
    wait_count(
        "users on the rate-limited target",
        n,
        timeout,
        Duration::from_millis(20),
        || async { target.user_count() },
    )
    .await;
    let elapsed = start.elapsed();
    let report = hub.admin(Method::GET, "/targets/limited/pace", None).await;
    if max_rate.is_none() {
        println!(
            "  {}: pace after the first batch: learned rate {}/s, advertised {}/s, window {}",
            match pace {
                Pace::Advertised => "quota advertised",
                _ => "pace from 429s",
            },
            report.body["learned_rate"],
            report.body["advertised_rate"],
            report.body["window"]
        );
    }
    let limited = target.rate_limited();
    let refusals = limited.values().map(|c| *c as usize).sum();
    let worst = limited.values().copied().max().unwrap_or(0);
    let mut next = None;
    if max_rate.is_none() {
        // A second batch to the same target, as a running hub sends its next changes:
        // from the rate learned by the first, not from nothing.
        let start = Instant::now();
        post_all(&client, &hub.url("/Users"), TOKEN, 32, n, |i| {
            user("second", i)
        })
        .await;
        wait_count(
            "the second batch on the rate-limited target",
            2 * n,
            timeout,
            Duration::from_millis(20),
            || async { target.user_count() },
        )
        .await;
        let row = Row::new(
            match pace {
                Pace::Advertised => "  advertised quota, the next batch".to_string(),
                _ => "  no max_rate, the next batch (rate learned)".to_string(),
            },
            n,
            start.elapsed(),
        );
        let second: Vec<u32> = target
            .rate_limited()
            .into_iter()
            .filter(|(who, _)| who.starts_with("second"))
            .map(|(_, c)| c)
            .collect();
        let refusals = second.iter().map(|c| *c as usize).sum();
        let worst = second.iter().copied().max().unwrap_or(0);
        next = Some((row, refusals, worst));
    }
    let what = match pace {
        Pace::MaxRate(r) => format!("  max_rate {r}/s"),
        Pace::From429s => "  no max_rate (pace from 429s)".to_string(),
        Pace::Advertised => "  no max_rate, quota advertised in headers".to_string(),
    };
    (Row::new(what, n, elapsed), refusals, worst, next)
}

fn print_rows(rows: &[&Row]) {
    for r in rows {
        println!(
            "{:<52} {:>7} {:>9.2} s {:>10.0} /s",
            r.what,
            r.n,
            r.secs,
            r.rate()
        );
    }
}

/// `BENCH_WORKERS` (2): the runtime's worker threads (the hub, its clients and the
/// direct run's clients share them).
fn main() {
    let workers = env_usize("BENCH_WORKERS", 2).max(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(workers));
}

async fn run(workers: usize) {
    // `cargo test --all-targets` runs this too, without `--bench`: then a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let sink_users = env_usize("BENCH_DELIVERY_USERS", if full { 10_000 } else { 300 });
    let concurrency = env_usize("BENCH_CONCURRENCY", 32);
    let peer_users = env_usize("BENCH_PEER_USERS", if full { 2_000 } else { 100 });
    let peer_concurrency = env_usize("BENCH_PEER_CONCURRENCY", 10);
    let timeout = Duration::from_secs(if full { 600 } else { 120 });

    println!(
        "Provisync delivery, in-process hub (SCIM API over loopback HTTP, embedded on-disk \
         store, store-backed queue, queue consumer), {workers} worker threads"
    );
    println!(
        "{:<52} {:>7} {:>11} {:>13}",
        "scenario", "changes", "time", "throughput"
    );
    if only('a') {
        println!("(a) user creations to an in-memory SCIM sink, {concurrency} SCIM clients");
        let (ingest, e2e) = to_fast_sink(sink_users, concurrency, timeout).await;
        print_rows(&[&ingest, &e2e]);
    }

    if only('b') {
        let backlog = env_usize("BENCH_PEER_BACKLOG", 128);
        let backlog = (backlog > 0).then_some(backlog as u32);
        println!(
            "(b) user creations to scim2-server (listen backlog {})",
            backlog.map_or("5, as shipped".to_string(), |b| b.to_string())
        );
        // `BENCH_PEER_PAIRS` pairs (direct, then through the hub), each to fresh servers:
        // one run of each moves by 10 points on a shared machine, the median of the
        // pairs' ratios much less (the pairing cancels the machine's drift).
        let pairs = env_usize("BENCH_PEER_PAIRS", if full { 3 } else { 1 }).max(1);
        peer_pairs(pairs, peer_users, peer_concurrency, backlog, None, timeout).await;
        // Then scim2-server on a CPU budget of its own (`BENCH_PEER_CPU` CPUs, 0.6 in
        // the full run; 0: not run), as on a small VM: the hub's own CPU is no longer
        // taken from the server's.
        let cpus = std::env::var("BENCH_PEER_CPU")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .or(full.then_some(0.6))
            .filter(|c| *c > 0.0);
        if let Some(cpus) = cpus {
            if CpuBudget::new("provisync-bench-peer", cpus).is_some() {
                println!("(b) the same, scim2-server limited to {cpus} CPU (a cgroup's quota)");
                peer_pairs(
                    pairs,
                    peer_users,
                    peer_concurrency,
                    backlog,
                    Some(cpus),
                    timeout,
                )
                .await;
            } else {
                println!(
                    "(b) scim2-server limited to {cpus} CPU: skipped, this machine has no \
                     writable cgroup CPU controller"
                );
            }
        }
        unpin();
    }

    if only('c') {
        let rate_users = env_usize("BENCH_RATE_USERS", if full { 500 } else { 60 });
        let limit = env_usize("BENCH_RATE_LIMIT", 50) as f64;
        println!(
            "(c) user creations to a target that allows {limit} calls/s (429 Retry-After: 1 \
             beyond)"
        );
        for pace in [Pace::MaxRate(limit), Pace::From429s, Pace::Advertised] {
            let (row, refusals, worst, next) =
                to_rate_limited(rate_users, limit, pace, timeout).await;
            for (row, refusals, worst) in std::iter::once((row, refusals, worst)).chain(next) {
                print_rows(&[&row]);
                println!(
                    "    {:.0}% of the limit; {refusals} answered 429, at most {worst} for one \
                     user",
                    100.0 * row.rate() / limit
                );
            }
        }
    }
}

/// `BENCH_ONLY` (the letters of the sections to run, e.g. `c`; unset: all) has `section`.
fn only(section: char) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(s) if !s.is_empty() => s.contains(section),
        _ => true,
    }
}
