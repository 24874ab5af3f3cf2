//! What a large request body costs: group bodies of 1,000 and 30,000 members, through the
//! SCIM normalisation alone and over HTTP on loopback (a body whose members do not exist,
//! refused after the members are read), and the latency of `GET /healthz` while the
//! largest body the hub accepts is being written.
//!
//! `cargo bench -p provisync-tests --bench request_bodies`. Environment: `BENCH_RUNS`
//! (default 5, the median is reported), `BENCH_LEGAL_MEMBERS` (default 10000: the members
//! of the accepted body, created first).

use std::sync::Arc;
use std::time::{Duration, Instant};

use provisync_core::directory::Directory;
use provisync_core::event::Origin;
use provisync_core::store::embedded::EmbeddedStore;
use provisync_http::HttpConfig;
use provisync_scim::{ResourceKind, SchemaRegistry};
use provisync_tests::load::env_usize;
use provisync_tests::{GROUP_SCHEMA, Hub, TOKEN, USER_SCHEMA};
use serde_json::{Value, json};

fn group_body(members: &[String]) -> Value {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    json!({"schemas": [GROUP_SCHEMA], "displayName": format!("g{}", uuid::Uuid::new_v4()), "members": members})
}

/// Short member ids (as a client probing the limits would send): 30,000 fit in 1 MiB.
fn ids(n: usize) -> Vec<String> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    (0..n).map(|i| format!("{}{i:06}", &run[..4])).collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: then a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let runs = env_usize("BENCH_RUNS", if full { 5 } else { 1 });
    let sizes: &[usize] = if full { &[1_000, 30_000] } else { &[100, 300] };
    let legal = env_usize("BENCH_LEGAL_MEMBERS", if full { 10_000 } else { 200 });
    println!("Provisync request bodies: group members, median of {runs} runs");

    // 1. Normalisation alone (what every POST / PUT of a group does first).
    let schemas = SchemaRegistry::builtin();
    let view = schemas.view(ResourceKind::Group);
    let mut normalise = Vec::new();
    for &n in sizes {
        let body = group_body(&ids(n));
        let times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let r = provisync_scim::resource::normalize(&view, &body);
                let e = t.elapsed();
                std::hint::black_box(r.is_ok());
                e
            })
            .collect();
        let m = median(times);
        println!(
            "normalise a group of {n:>6} members        {:>10.2} ms",
            ms(m)
        );
        normalise.push(m);
    }
    if let [a, b] = normalise[..] {
        println!(
            "  ratio {} / {} members: {:.0}x",
            sizes[1],
            sizes[0],
            b.as_secs_f64() / a.as_secs_f64().max(1e-9)
        );
    }

    // 2. Over HTTP: POST /Groups whose members do not exist (refused), 1 MiB body limit.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let hub = Hub::start_with(store.clone(), |s| {
        s.config = Arc::new(HttpConfig {
            max_body_bytes: 1024 * 1024,
            ..HttpConfig::default()
        })
    })
    .await;
    let client = reqwest::Client::new();
    let post = |body: String| {
        client
            .post(format!("{}/Groups", hub.base))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/scim+json")
            .body(body)
            .send()
    };
    let mut http = Vec::new();
    for &n in sizes {
        let body = group_body(&ids(n)).to_string();
        let mut times = Vec::new();
        let mut status = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let r = post(body.clone()).await.expect("request");
            status = r.status().as_u16();
            let _ = r.bytes().await;
            times.push(t.elapsed());
        }
        let m = median(times);
        println!(
            "POST /Groups, {n:>6} unknown members     {:>10.2} ms  ({} KiB, answered {status})",
            ms(m),
            body.len() / 1024
        );
        http.push(m);
    }
    if let [a, b] = http[..] {
        println!(
            "  ratio {} / {} members: {:.0}x",
            sizes[1],
            sizes[0],
            b.as_secs_f64() / a.as_secs_f64().max(1e-9)
        );
    }

    // 3. /healthz while the largest bodies are processed: two at once (one per core),
    // first the largest a client can send (1 MiB of unknown members), then the largest the
    // hub accepts (`legal` existing members).
    let directory = Directory::new(store.clone(), SchemaRegistry::builtin());
    let users: Vec<Value> = (0..legal)
        .map(|i| json!({"schemas": [USER_SCHEMA], "userName": format!("member{i:06}")}))
        .collect();
    let mut member_ids = Vec::with_capacity(legal);
    for chunk in users.chunks(1000) {
        for r in directory
            .create_batch(ResourceKind::User, chunk, Origin::Import, false)
            .await
        {
            member_ids.push(r.expect("member created").id().to_string());
        }
    }
    let biggest = (0..2)
        .map(|_| {
            let mut n = 40_000;
            loop {
                let b = group_body(&ids(n)).to_string();
                if b.len() <= 1024 * 1024 - 256 {
                    return (n, b);
                }
                n -= 2_000;
            }
        })
        .collect::<Vec<_>>();
    let accepted = (0..2)
        .map(|_| (legal, group_body(&member_ids).to_string()))
        .collect::<Vec<_>>();
    for (what, bodies) in [("unknown", biggest), ("existing", accepted)] {
        let health = format!("http://{}/healthz", hub.addr);
        let probe_client = reqwest::Client::new();
        let _ = probe_client.get(&health).send().await;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let probe = tokio::spawn(async move {
            let mut lat = Vec::new();
            while !*stop_rx.borrow() {
                let t = Instant::now();
                let r = probe_client.get(&health).send().await.expect("healthz");
                let _ = r.bytes().await;
                lat.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            lat
        });
        let t = Instant::now();
        let n = bodies[0].0;
        let kib = bodies[0].1.len() / 1024;
        let send = |b: String| async {
            let r = post(b).await.expect("request");
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            status
        };
        let mut two = bodies.into_iter().map(|(_, b)| b);
        let (a, b) = (
            two.next().unwrap_or_default(),
            two.next().unwrap_or_default(),
        );
        let (sa, sb) = tokio::join!(send(a), send(b));
        let statuses = [sa, sb];
        let took = t.elapsed();
        let _ = stop_tx.send(true);
        let mut lat = probe.await.expect("probe");
        lat.sort();
        println!(
            "2 x POST /Groups, {n:>6} {what:<8} members {:>10.2} ms  ({kib} KiB each, answered {statuses:?})",
            ms(took),
        );
        if let Some(max) = lat.last() {
            println!(
                "  GET /healthz meanwhile: {} probes, p50 {:.2} ms, max {:.2} ms",
                lat.len(),
                ms(lat[lat.len() / 2]),
                ms(*max)
            );
        }
    }
}
