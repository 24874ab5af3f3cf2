//! Crash safety of delivery: `provisync serve` is killed with SIGKILL in the middle of
//! delivering changes and started again on the same data; every change still arrives on
//! the target, and each user is created there exactly once.
//!
//! These tests run the real binary, `<target dir>/debug/provisync`, as a child process.
//! `make test` (`cargo test --workspace --all-targets`) builds it, since `provisync-cli`
//! is a workspace member with that bin target; `cargo build -p provisync-cli --bin
//! provisync` builds it alone. When it is missing the tests skip, or fail under
//! `PROVISYNC_REQUIRE_PEERS` (set by `scripts/test-env.sh`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use provisync_tests::peers::FaultyTarget;
use provisync_tests::serve::{ServeProcess, provisync_bin};
use provisync_tests::{ADMIN_TOKEN, TOKEN, USER_SCHEMA};
use reqwest::Method;
use serde_json::{Value, json};

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// Users per `/Bulk` request.
const BULK_SIZE: usize = 100;
/// Per-request latency of the target while the users are created (the hub's SCIM writes
/// are slower than delivery in a debug build): delivery must not finish before the kill.
const INGEST_LATENCY: Duration = Duration::from_millis(500);
/// Then: delivering the rest takes a few seconds, and the kill lands in the middle.
const TARGET_LATENCY: Duration = Duration::from_millis(20);

fn require_peers() -> bool {
    std::env::var_os("PROVISYNC_REQUIRE_PEERS").is_some()
}

/// One run of `provisync serve` ([`ServeProcess`], killed with SIGKILL on drop), with a
/// client for it.
struct Serve {
    process: ServeProcess,
    origin: String,
    client: reqwest::Client,
}

impl Serve {
    /// Starts `provisync serve` on a free port with `data` as its data folder, the test
    /// tokens, loopback peers allowed and `env`, and waits until `/healthz` answers.
    /// Output goes to `log` (appended, so both runs of a test end up in one file).
    async fn start(bin: &Path, data: &Path, env: &[(String, String)], log: &Path) -> Serve {
        // The peers are on loopback (serve's default too, but said here).
        let mut all: Vec<(&str, &str)> = vec![
            ("PROVISYNC_ALLOW_PRIVATE_TARGETS", "loopback"),
            ("RUST_LOG", "warn"),
        ];
        all.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let process = ServeProcess::start(bin, data, &all, log).await;
        Serve {
            origin: process.origin.clone(),
            process,
            client: reqwest::Client::new(),
        }
    }

    /// SIGKILL: no graceful shutdown, no chance to ack or flush anything.
    fn kill(mut self) {
        let child = &mut self.process.child;
        child.kill().expect("kill provisync serve");
        child.wait().expect("reap provisync serve");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }

    async fn call(&self, method: Method, url: String, token: &str, body: Option<&Value>) -> Value {
        let mut r = self
            .client
            .request(method, &url)
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .timeout(Duration::from_secs(120));
        if let Some(b) = body {
            r = r.body(b.to_string());
        }
        let r = r
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:?}\nlog:\n{}", self.log_text()));
        let status = r.status();
        let text = r.text().await.expect("body");
        assert!(status.is_success(), "{url}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Value {
        let url = format!("{}/admin{path}", self.origin);
        self.call(method, url, ADMIN_TOKEN, body).await
    }

    async fn add_target(&self, id: &str, target: &FaultyTarget) {
        let body =
            json!({"kind": "scim", "base_url": target.base, "auth": {"bearer": target.token}});
        self.admin(Method::PUT, &format!("/targets/{id}"), Some(&body))
            .await;
    }

    /// Creates users `prefix-0..n` through `/scim/v2/Bulk`; returns userName -> hub id.
    async fn create_users(&self, prefix: &str, n: usize) -> HashMap<String, String> {
        let mut ids = HashMap::new();
        let url = format!("{}/scim/v2/Bulk", self.origin);
        for start in (0..n).step_by(BULK_SIZE) {
            let ops: Vec<Value> = (start..n.min(start + BULK_SIZE))
                .map(|i| {
                    json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                           "data": {"schemas": [USER_SCHEMA], "userName": format!("{prefix}-{i}"),
                                    "name": {"givenName": "User", "familyName": format!("N{i}")}}})
                })
                .collect();
            let body = json!({"schemas": [BULK_REQUEST], "Operations": ops});
            let r = self
                .call(Method::POST, url.clone(), TOKEN, Some(&body))
                .await;
            let results = r["Operations"].as_array().cloned().unwrap_or_default();
            assert_eq!(results.len(), ops.len(), "{r}");
            for op in results {
                let i: usize = op["bulkId"].as_str().unwrap()[1..].parse().unwrap();
                let name = format!("{prefix}-{i}");
                let id = if op["status"] == "201" {
                    op["location"]
                        .as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_string()
                } else {
                    // A 503 (the store busy, seen on moto under load) is for the client to
                    // retry, as an IdP does.
                    assert_eq!(op["status"], "503", "bulk create failed: {op}");
                    self.create_user_retrying(&name).await
                };
                ids.insert(name, id);
            }
        }
        ids
    }

    /// Creates one user, retrying 503s; a 409 means an earlier attempt did create it.
    async fn create_user_retrying(&self, name: &str) -> String {
        let body = json!({"schemas": [USER_SCHEMA], "userName": name});
        for _ in 0..5 {
            let r = self
                .client
                .post(format!("{}/scim/v2/Users", self.origin))
                .bearer_auth(TOKEN)
                .header("Content-Type", "application/scim+json")
                .body(body.to_string())
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .expect("POST /Users");
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            match status {
                201 => return v["id"].as_str().expect("id").to_string(),
                409 => {
                    let filter = provisync_tests::q(&format!("userName eq \"{name}\""));
                    let url = format!("{}/scim/v2/Users?filter={filter}", self.origin);
                    let found = self.call(Method::GET, url, TOKEN, None).await;
                    return found["Resources"][0]["id"]
                        .as_str()
                        .expect("id")
                        .to_string();
                }
                503 => tokio::time::sleep(Duration::from_millis(500)).await,
                _ => panic!("POST /Users {name}: {status} {v}"),
            }
        }
        panic!("POST /Users {name}: still 503 after 5 attempts");
    }

    /// Every audit entry matching `query`, across pages.
    async fn audit_all(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/audit?{query}&limit=1000");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", provisync_tests::q(c)));
            }
            let page = self.admin(Method::GET, &path, None).await;
            out.extend(page["entries"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
                _ => return out,
            }
        }
    }
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        let state = match check() {
            Ok(()) => return,
            Err(state) => state,
        };
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The scenario on one backend: `env` selects it (plus what it needs), `n` changes.
async fn kill_mid_delivery_then_restart(bin: &Path, env: &[(String, String)], n: usize) {
    let started = Instant::now();
    let target = FaultyTarget::start().await;
    target.set_latency(INGEST_LATENCY);
    let data = tempfile::tempdir().expect("tempdir");
    let log = data.path().join("serve.log");
    let hub_data = data.path().join("hub");

    let serve = Serve::start(bin, &hub_data, env, &log).await;
    serve.add_target("sink", &target).await;
    let prefix = format!("crash-{}", uuid::Uuid::new_v4().simple());
    let ids = serve.create_users(&prefix, n).await;
    assert_eq!(ids.len(), n);
    eprintln!(
        "{n} users created through the hub in {:?}",
        started.elapsed()
    );

    // Kill once about half, but not all, has arrived.
    target.set_latency(TARGET_LATENCY);
    wait_for(
        "the first changes on the target",
        Duration::from_secs(60),
        || match target.user_count() {
            c if c >= n / 2 => Ok(()),
            c => Err(format!("{c}/{n} arrived")),
        },
    )
    .await;
    serve.kill();
    let at_kill = target.user_count();
    eprintln!("killed provisync serve with {at_kill}/{n} users on the target");
    assert!(
        at_kill < n,
        "delivery finished before the kill ({at_kill}/{n}): the test proves nothing; slow the target down"
    );

    // Same data, new process.
    let restarted = Instant::now();
    let serve = Serve::start(bin, &hub_data, env, &log).await;
    wait_for(
        "every change on the target after the restart",
        Duration::from_secs(60),
        || match target.user_count() {
            c if c >= n => Ok(()),
            c => Err(format!("{c}/{n} arrived ({at_kill} before the kill)")),
        },
    )
    .await;
    eprintln!(
        "all {n} on the target {:?} after the restart",
        restarted.elapsed()
    );

    // Exactly the hub's users, each once, each knowing its hub id.
    let on_target = target.users();
    assert_eq!(on_target.len(), n, "users on the target");
    let mut seen = HashSet::new();
    for u in &on_target {
        let name = u["userName"].as_str().expect("userName").to_string();
        let hub_id = ids
            .get(&name)
            .unwrap_or_else(|| panic!("a user the hub never had: {u}"));
        assert_eq!(u["externalId"], hub_id.as_str(), "{u}");
        assert!(seen.insert(name.clone()), "{name} twice on the target");
    }
    assert_eq!(seen.len(), n);
    let posts = target.count("POST", "/Users");
    assert!(posts >= n, "{posts} POST /Users for {n} users");
    eprintln!(
        "{posts} POST /Users for {n} users ({} answered 409 Conflict)",
        posts - n
    );

    // The hub's record: every user's create delivered or, when the answer to the first
    // attempt was lost in the crash, linked to the account the target already had.
    let hub_ids: HashSet<&str> = ids.values().map(String::as_str).collect();
    let mut created = HashSet::new();
    wait_for_audit(&serve, &hub_ids, &mut created).await;
    let unaudited: Vec<&&str> = hub_ids
        .iter()
        .filter(|id| !created.contains(**id))
        .collect();
    // The audit entry is committed in the same transaction as the delivery receipt: a
    // kill can lose neither without the other.
    assert!(
        unaudited.is_empty(),
        "{} users have no create audited: {unaudited:?}",
        unaudited.len()
    );
    for status in ["failed", "dead"] {
        let bad = serve.audit_all(&format!("status={status}")).await;
        assert!(bad.is_empty(), "{status} deliveries: {bad:?}");
    }
    eprintln!("scenario took {:?}", started.elapsed());
}

/// Waits (bounded) until the audit shows a create delivered or linked for every hub id;
/// `created` ends as the set of those ids.
async fn wait_for_audit(serve: &Serve, hub_ids: &HashSet<&str>, created: &mut HashSet<String>) {
    // Until complete. A delivery whose receipt was lost in the crash is retried after the
    // restart (with backoff), so its audit entry may come well after every account is on
    // the target: under load that takes seconds, so only the deadline ends the wait.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        created.clear();
        let mut linked = 0;
        for status in ["delivered", "linked"] {
            for e in serve
                .audit_all(&format!("op=create&status={status}&target=sink"))
                .await
            {
                let id = e["resource_id"].as_str().unwrap_or_default().to_string();
                assert!(hub_ids.contains(id.as_str()), "audit of an unknown id: {e}");
                if status == "linked" {
                    linked += 1;
                }
                created.insert(id);
            }
        }
        if created.len() == hub_ids.len() || Instant::now() >= deadline {
            eprintln!(
                "audit: {} creates, {linked} of them linked after the crash",
                created.len()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Embedded store + store-backed queue (the `make run` setup): 1,000 changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_kill_mid_delivery_all_arrive() {
    let Some(bin) = provisync_bin() else { return };
    kill_mid_delivery_then_restart(&bin, &[], 1000).await;
}

/// DynamoDB + SQS FIFO on moto. 200 changes: moto's FIFO queue and table are much slower
/// than the embedded store, and the point — messages received but not acked when the
/// process dies come back — is the same at any size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kill_mid_delivery_all_arrive() {
    let Some(moto) = std::env::var("PROVISYNC_TEST_MOTO")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        assert!(
            !require_peers(),
            "PROVISYNC_TEST_MOTO is not set but PROVISYNC_REQUIRE_PEERS is: run through scripts/test-env.sh"
        );
        eprintln!("skipped: PROVISYNC_TEST_MOTO not set (run `make test`)");
        return;
    };
    let Some(bin) = provisync_bin() else { return };
    let name = format!("provisync-restart-{}", uuid::Uuid::new_v4().simple());
    let env: Vec<(String, String)> = [
        ("PROVISYNC_BACKEND", "aws"),
        ("PROVISYNC_TABLE", name.as_str()),
        ("PROVISYNC_QUEUE", name.as_str()),
        ("AWS_ENDPOINT_URL", moto.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain(
        ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
            .into_iter()
            .filter(|k| std::env::var_os(k).is_none())
            .map(|k| {
                (
                    k.to_string(),
                    if k == "AWS_REGION" {
                        "us-east-1"
                    } else {
                        "testing"
                    }
                    .to_string(),
                )
            }),
    )
    .collect();
    let out = Command::new(&bin)
        .arg("aws-init")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run provisync aws-init");
    assert!(
        out.status.success(),
        "provisync aws-init: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // SQS hides a received message for the queue's visibility timeout (6 minutes as
    // aws-init creates it, sized for the Lambda consumer); a message the killed process
    // had received comes back only then. Shorten it so the test does not wait 6 minutes:
    // what is tested is that it comes back and is delivered once.
    let clients = provisync_aws::AwsClients::for_endpoint(&moto).await;
    let url = clients
        .sqs
        .get_queue_url()
        .queue_name(format!("{name}.fifo"))
        .send()
        .await
        .expect("GetQueueUrl")
        .queue_url
        .expect("queue url");
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "5",
        )
        .send()
        .await
        .expect("SetQueueAttributes");
    kill_mid_delivery_then_restart(&bin, &env, 200).await;
}

/// Group commit is durable: `provisync serve` (embedded store) is killed with SIGKILL while
/// 32 clients are creating users, and every user it answered 201 for is there, unchanged,
/// after the restart on the same data. (Answering before the group's flush, or flushing
/// lazily, loses the last answered creates here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_kill_during_creates_keeps_every_answered_create() {
    let Some(bin) = provisync_bin() else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let log = data.path().join("serve.log");
    let hub_data = data.path().join("hub");
    let serve = Serve::start(&bin, &hub_data, &[], &log).await;
    let url = format!("{}/scim/v2/Users", serve.origin);
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..32 {
        let (client, url) = (serve.client.clone(), url.clone());
        let (answered, stop) = (answered.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let name = format!("durable-{c}-{i}");
                let body = json!({"schemas": [USER_SCHEMA], "userName": name});
                let sent = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("Content-Type", "application/scim+json")
                    .body(body.to_string())
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                // The kill cuts requests off mid-flight: those were never answered.
                let Ok(r) = sent else { return };
                if r.status().as_u16() != 201 {
                    return;
                }
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                let id = v["id"].as_str().expect("id").to_string();
                answered.lock().unwrap().push((id, name));
            }
        }));
    }
    wait_for(
        "500 answered creates",
        Duration::from_secs(120),
        || match answered.lock().unwrap().len() {
            n if n >= 500 => Ok(()),
            n => Err(format!("{n} answered")),
        },
    )
    .await;
    // Killed while the clients keep writing: groups are forming and flushing.
    serve.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let answered = answered.lock().unwrap().clone();
    eprintln!("{} creates answered 201 before the kill", answered.len());

    let serve = Serve::start(&bin, &hub_data, &[], &log).await;
    let mut missing = Vec::new();
    for (id, name) in &answered {
        let r = serve
            .client
            .get(format!("{}/scim/v2/Users/{id}", serve.origin))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET /Users/{id}");
        if r.status().as_u16() != 200 {
            missing.push(name.clone());
            continue;
        }
        let v: Value = r.json().await.expect("user");
        assert_eq!(v["userName"], name.as_str(), "{v}");
    }
    assert!(
        missing.is_empty(),
        "{} of {} answered creates lost in the kill: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(10)]
    );
}
