//! The load generator of the HTTP benchmarks (`tests/benches/`): requests from a number
//! of concurrent workers, latency percentiles and throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The user the benchmarks create: `{prefix}{i:06}@example.org` with a name and an email.
pub fn bench_user(prefix: &str, i: usize) -> serde_json::Value {
    serde_json::json!({
        "schemas": [crate::USER_SCHEMA],
        "userName": format!("{prefix}{i:06}@example.org"),
        "name": {"givenName": "User", "familyName": format!("N{i}")},
        "emails": [{"value": format!("{prefix}{i:06}@example.org"), "type": "work", "primary": true}],
        "active": true
    })
}

/// A `BENCH_*` setting from the environment, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies of one run and its wall time.
pub struct Stats {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

/// What [`Stats::report`] printed: the rate and the latency percentiles, in ms.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub rate: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    /// Prints one line: requests, req/s, p50, p90, p99, max; returns them.
    pub fn report(mut self, what: &str) -> Summary {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| self.latencies[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1e3;
        let s = Summary {
            rate: n as f64 / self.elapsed.as_secs_f64(),
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: pct(1.0),
        };
        println!(
            "{what:<36} {n:>7} requests  {:>9.0} req/s   p50 {:>7.2} ms   p90 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
            s.rate, s.p50, s.p90, s.p99, s.max,
        );
        s
    }
}

/// Runs `total` requests from `concurrency` workers; `make(i)` builds request i.
pub async fn drive<F>(concurrency: usize, total: usize, make: F) -> Stats
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

/// CPU time (user + system, all threads) a process has used so far: this process when
/// `pid` is `None`. From `/proc/<pid>/stat` (Linux; 10 ms ticks), `None` where it cannot
/// be read. Benches divide it by requests: a cost that does not move with the machine's
/// load the way a rate does.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // After `pid (comm) `: state is the first field, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
