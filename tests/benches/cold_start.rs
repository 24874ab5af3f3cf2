//! Cold start of the HTTP functions, locally, under a stand-in for the Lambda Runtime API.
//!
//! `make cold-start` (scripts/cold-start.sh) builds `scim-api`, `webhook-ingest`,
//! `admin-api` and a bare `lambda_http` binary (functions/scim-api/examples/bare_lambda_http.rs)
//! the same way (release profile, stripped), then runs this under scripts/test-env.sh (the AWS emulator, moto, on
//! loopback): `cargo bench -p provisync-tests --bench cold_start -- <dir of the binaries>`.
//!
//! For each binary, `COLD_START_RUNS` times (default 15): start it as Lambda would (the
//! runtime API's address in `AWS_LAMBDA_RUNTIME_API`, the function's environment as the
//! template gives it, pointed at the emulator), and measure
//!
//! - **init**: from spawning the process to its first `GET /runtime/invocation/next`
//!   (everything a cold start does before it can take a request: for a Provisync function,
//!   the SDK configuration, `GetSecretValue` of the operator key, the hub and router);
//! - **first request**: handing it an API Gateway `GET /healthz` event until its response;
//! - **peak RSS** (`VmHWM`) after that response.
//!
//! Reports medians. The emulator answers on loopback in about a millisecond, so the
//! network part of a real cold start (Secrets Manager, and IMDS-free credentials from the
//! environment) is not in these figures.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use provisync_tests::load::env_usize;
use serde_json::Value;
use tokio::sync::Notify;

#[derive(Default)]
struct Run {
    first_next: Option<Instant>,
    served_at: Option<Instant>,
    response_at: Option<Instant>,
    error: Option<String>,
    nexts: usize,
}

#[derive(Clone)]
struct Api {
    run: Arc<Mutex<Run>>,
    event: Arc<String>,
    done: Arc<Notify>,
}

/// `GET /2018-06-01/runtime/invocation/next`: the first call gets the event, later calls
/// wait (the process stays up, idle, like a warm Lambda environment).
async fn next(State(api): State<Api>) -> (HeaderMap, String) {
    let first = {
        let mut run = api.run.lock().unwrap();
        run.nexts += 1;
        if run.first_next.is_none() {
            run.first_next = Some(Instant::now());
        }
        run.nexts == 1
    };
    if !first {
        std::future::pending::<()>().await;
    }
    let mut h = HeaderMap::new();
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + Duration::from_secs(29);
    h.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_static("cold-start-1"),
    );
    h.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from_str(&deadline.as_millis().to_string()).unwrap(),
    );
    h.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:cold-start"),
    );
    h.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static("Root=1-00000000-000000000000000000000000"),
    );
    h.insert("content-type", HeaderValue::from_static("application/json"));
    api.run.lock().unwrap().served_at = Some(Instant::now());
    (h, api.event.as_str().to_string())
}

async fn response(State(api): State<Api>, Path(_id): Path<String>, body: String) -> &'static str {
    {
        let mut run = api.run.lock().unwrap();
        run.response_at = Some(Instant::now());
        let status = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["statusCode"].as_u64());
        if status != Some(200) {
            run.error = Some(format!("response: {body}"));
        }
    }
    api.done.notify_one();
    "{}"
}

async fn error(State(api): State<Api>, body: String) -> &'static str {
    api.run.lock().unwrap().error = Some(body);
    api.done.notify_one();
    "{}"
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0)
}

struct Sample {
    init: Duration,
    first: Duration,
    rss_kb: u64,
}

async fn cold_start(
    binary: &std::path::Path,
    env: &HashMap<String, String>,
    event: &str,
) -> Sample {
    let api = Api {
        run: Arc::default(),
        event: Arc::new(event.to_string()),
        done: Arc::new(Notify::new()),
    };
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let started = Instant::now();
    let mut child = std::process::Command::new(binary)
        .env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let pid = child.id();
    let answered = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited: {status}", binary.display());
            }
            tokio::select! {
                _ = api.done.notified() => return,
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
        }
    })
    .await;
    if answered.is_err() {
        let _ = child.kill();
        panic!("{} did not answer", binary.display());
    }
    // The first response is in: the process is idle in its next `next` now.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rss_kb = peak_rss_kb(pid);
    let _ = child.kill();
    let _ = child.wait();
    server.abort();
    let run = api.run.lock().unwrap();
    if let Some(e) = &run.error {
        panic!("{}: {e}", binary.display());
    }
    Sample {
        init: run.first_next.expect("asked for an event") - started,
        first: run.response_at.expect("answered") - run.served_at.expect("served"),
        rss_kb,
    }
}

fn median<T: Copy + Ord>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

/// The table, queue and operator key the functions find at cold start, on the emulator.
async fn function_env(endpoint: &str) -> HashMap<String, String> {
    let clients = provisync_aws::AwsClients::for_endpoint(endpoint).await;
    let name = format!("cold-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let report = provisync_aws::aws_init_with(
        &clients,
        &provisync_aws::AwsInitConfig::new(name.clone(), Some(name.clone())),
    )
    .await
    .expect("aws-init on the emulator");
    let secret = clients
        .secrets
        .create_secret()
        .name(format!("{name}/operator-key"))
        .secret_string(provisync_core::crypto::SecretBox::generate().1)
        .send()
        .await
        .expect("create-secret on the emulator");
    let mut env: HashMap<String, String> = [
        ("AWS_LAMBDA_FUNCTION_NAME", "cold-start"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/cold-start"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "cold-start"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("PROVISYNC_BACKEND", "aws"),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.insert("AWS_ENDPOINT_URL".into(), endpoint.to_string());
    env.insert("PROVISYNC_TABLE".into(), name);
    env.insert("PROVISYNC_QUEUE_URL".into(), report.queue_url.unwrap());
    env.insert("PROVISYNC_DLQ_URL".into(), report.dlq_url.unwrap());
    env.insert("PROVISYNC_SECRET_KEY_ARN".into(), secret.arn.unwrap());
    env
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` (`make test`) runs this too, without `--bench` and without
    // the release binaries `make cold-start` builds: nothing to measure then.
    let Some(dir) = std::env::args().skip(1).find(|a| !a.starts_with('-')) else {
        println!("cold_start: no binaries given (`make cold-start` builds and measures them)");
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let endpoint = std::env::var("PROVISYNC_TEST_MOTO").expect("run under scripts/test-env.sh");
    let runs = env_usize("COLD_START_RUNS", 15);
    let env = function_env(&endpoint).await;
    let mut event: Value = serde_json::from_str(include_str!(
        "../fixtures/aws/apigw-v2-request-no-authorizer.json"
    ))
    .unwrap();
    event["rawPath"] = "/healthz".into();
    event["requestContext"]["http"]["path"] = "/healthz".into();
    let event = event.to_string();

    println!(
        "{:<18} {:>10} {:>10} {:>14} {:>12} {:>10}",
        "binary", "size", "init", "first request", "peak RSS", "runs"
    );
    for name in [
        "bare_lambda_http",
        "scim-api",
        "webhook-ingest",
        "admin-api",
    ] {
        let path = if name == "bare_lambda_http" {
            dir.join("examples").join(name)
        } else {
            dir.join(name)
        };
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        let mut samples = Vec::new();
        for _ in 0..runs {
            samples.push(cold_start(&path, &env, &event).await);
        }
        let init = median(samples.iter().map(|s| s.init).collect());
        let first = median(samples.iter().map(|s| s.first).collect());
        let rss = median(samples.iter().map(|s| s.rss_kb).collect());
        println!(
            "{:<18} {:>7.1} MB {:>7.1} ms {:>11.2} ms {:>9.1} MB {:>10}",
            name,
            size as f64 / 1e6,
            init.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3,
            rss as f64 / 1024.0,
            runs
        );
    }
}
