//! `provisync token` while the hub runs (through its admin API), and offline on a named
//! store only; `provisync target add` for the kinds beyond SCIM, as an operator runs it: the real
//! `provisync` binary, against a running `provisync serve`, with the secrets from an
//! environment variable and from stdin (never in the arguments). The targets are read back
//! redacted and tested against the Okta and Graph fakes, which accept only the right
//! secrets: what the CLI sent is what the hub stored.
//!
//! Like `restart.rs`, these tests need the binary (`<target dir>/debug/provisync`, built by
//! `cargo test --workspace` or `cargo build -p provisync-cli --bin provisync`): they skip
//! when it is missing, and fail then under `PROVISYNC_REQUIRE_PEERS`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use provisync_tests::graph::{FakeGraph, TENANT};
use provisync_tests::kinds::{EveryKind, SITE_SECRET};
use provisync_tests::okta::FakeOkta;
use provisync_tests::serve::provisync_bin;
use provisync_tests::{ADMIN_TOKEN, TOKEN, USER_SCHEMA};
use serde_json::{Value, json};

/// `provisync serve` on a free port with its own data folder; killed on drop.
struct Serve {
    child: Child,
    origin: String,
    data: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl Serve {
    async fn start(bin: &Path, name: &str) -> Serve {
        // The peers are on loopback (serve's default too, but said here).
        Self::start_with(
            bin,
            name,
            &[("PROVISYNC_ALLOW_PRIVATE_TARGETS", "loopback")],
        )
        .await
    }

    /// `provisync serve` with `env` added to the test's own.
    async fn start_with(bin: &Path, name: &str, env: &[(&str, &str)]) -> Serve {
        let data = std::env::temp_dir().join(format!("psy-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&data).expect("data dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(bin)
            .arg("serve")
            .env("PORT", port.to_string())
            .env("PROVISYNC_DATA_DIR", &data)
            .env("PROVISYNC_SCIM_TOKEN", TOKEN)
            .env("PROVISYNC_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("PROVISYNC_BACKEND", "embedded")
            .env_remove("PROVISYNC_ALLOW_PRIVATE_TARGETS")
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn provisync serve");
        let mut serve = Serve {
            child,
            origin: format!("http://127.0.0.1:{port}"),
            data,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!("provisync serve exited: {status}");
            }
            let probe = client
                .get(format!("{}/healthz", serve.origin))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                return serve;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("provisync serve did not come up");
    }

    /// Stops the hub (SIGKILL) and keeps its data folder: its store is free to open.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs `provisync ARGS` against this hub with `env`, `stdin` on its standard input.
    fn cli(&self, bin: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        self.cli_in(bin, None, args, env, stdin)
    }

    /// [`Serve::cli`] in the working directory `dir`.
    fn cli_in(
        &self,
        bin: &Path,
        dir: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> Run {
        let mut cmd = Command::new(bin);
        if let Some(d) = dir {
            cmd.current_dir(d);
        }
        cmd.args(args)
            .env("PROVISYNC_URL", &self.origin)
            .env("PROVISYNC_ADMIN_TOKEN", ADMIN_TOKEN)
            // Not this hub's folder: the token must come from the environment.
            .env("PROVISYNC_DATA_DIR", self.data.join("nowhere"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn provisync");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
        let out: Output = child.wait_with_output().expect("provisync output");
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_ok(&self, what: &str) -> &Run {
        assert!(self.ok, "{what} failed:\n{}\n{}", self.stdout, self.stderr);
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_adds_okta_and_entra_targets() {
    let Some(bin) = provisync_bin() else {
        return;
    };
    let okta = FakeOkta::start().await;
    let graph = FakeGraph::start().await;
    let hub = Serve::start(&bin, "cli-targets").await;
    let secrets = [okta.token.as_str(), graph.client_secret.as_str()];
    let no_secret = |run: &Run| {
        for s in secrets {
            assert!(
                !run.stdout.contains(s) && !run.stderr.contains(s),
                "a secret was printed:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
    };

    // Okta: the token from an environment variable.
    let run = hub.cli(
        &bin,
        &[
            "target",
            "add",
            "okta",
            "--kind",
            "okta",
            "--base-url",
            &okta.base,
            "--token-env",
            "OKTA_TOKEN",
            "--operations",
            "create,update,deactivate",
        ],
        &[("OKTA_TOKEN", &okta.token)],
        None,
    );
    run.assert_ok("target add okta");
    no_secret(&run);
    assert!(run.stdout.contains("target okta saved"), "{}", run.stdout);

    // Entra: the client secret from stdin, the other fields with --set.
    let tenant = format!("tenant_id={TENANT}");
    let client_id = format!("client_id={}", graph.client_id);
    let graph_url = format!("graph_url={}", graph.base);
    let login_url = format!("login_url={}", graph.base);
    let run = hub.cli(
        &bin,
        &[
            "target",
            "add",
            "entra",
            "--kind",
            "entra",
            "--set",
            &tenant,
            "--set",
            &client_id,
            "--set",
            &graph_url,
            "--set",
            &login_url,
            "--set",
            "mapping=[{\"target\": \"usageLocation\", \"value\": \"FR\"}]",
            "--secret-stdin",
        ],
        &[],
        Some(&format!("{}\n", graph.client_secret)),
    );
    run.assert_ok("target add entra");
    no_secret(&run);

    // Read back, redacted.
    let run = hub.cli(&bin, &["target", "show", "okta"], &[], None);
    let t = run.assert_ok("target show okta").json();
    no_secret(&run);
    assert_eq!(t["kind"], "okta", "{t}");
    assert_eq!(t["base_url"], okta.base.as_str(), "{t}");
    assert_eq!(t["token"], "***", "{t}");
    assert_eq!(
        t["operations"],
        serde_json::json!(["create", "update", "deactivate"]),
        "{t}"
    );
    let run = hub.cli(&bin, &["target", "show", "entra"], &[], None);
    let t = run.assert_ok("target show entra").json();
    no_secret(&run);
    assert_eq!(t["kind"], "entra", "{t}");
    assert_eq!(t["tenant_id"], TENANT, "{t}");
    assert_eq!(t["client_id"], graph.client_id.as_str(), "{t}");
    assert_eq!(t["graph_url"], graph.base.as_str(), "{t}");
    assert_eq!(t["client_secret"], "***", "{t}");
    assert_eq!(t["mapping"][0]["target"], "usageLocation", "{t}");
    let run = hub.cli(&bin, &["target", "list"], &[], None);
    run.assert_ok("target list");
    assert!(
        run.stdout.contains("okta") && run.stdout.contains("entra"),
        "{}",
        run.stdout
    );

    // The secrets the hub stored are the right ones: the fakes accept nothing else.
    for id in ["okta", "entra"] {
        let run = hub.cli(&bin, &["target", "test", id], &[], None);
        run.assert_ok(&format!("target test {id}"));
        no_secret(&run);
        assert!(
            run.stdout.starts_with(&format!("OK {id}")),
            "{}",
            run.stdout
        );
    }

    // A field the kind does not have: refused before anything is sent, naming the fields.
    let run = hub.cli(
        &bin,
        &[
            "target",
            "add",
            "okta2",
            "--kind",
            "okta",
            "--base-url",
            &okta.base,
            "--token-env",
            "OKTA_TOKEN",
            "--set",
            "tenant_id=x",
        ],
        &[("OKTA_TOKEN", &okta.token)],
        None,
    );
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stderr.contains("tenant_id")
            && run.stderr.contains("okta targets have: base_url, token"),
        "{}",
        run.stderr
    );
    no_secret(&run);
    let run = hub.cli(&bin, &["target", "show", "okta2"], &[], None);
    assert!(
        !run.ok && run.stderr.contains("404"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );

    // What the hub refuses (http to a non-loopback host) comes back as the hub's message.
    let run = hub.cli(
        &bin,
        &[
            "target",
            "add",
            "okta3",
            "--kind",
            "okta",
            "--base-url",
            "http://okta.example.com",
            "--token-env",
            "OKTA_TOKEN",
        ],
        &[("OKTA_TOKEN", &okta.token)],
        None,
    );
    assert!(!run.ok, "{}", run.stdout);
    assert!(run.stderr.contains("400"), "{}", run.stderr);
    no_secret(&run);
}

impl Serve {
    /// `PUT /admin/targets/{id}` (or sources) with this JSON, answering the status.
    async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .put(format!("{}/admin{path}", self.origin))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("admin request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A file in this hub's data folder (removed with it).
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.data.join(name);
        std::fs::write(&path, text).expect("write file");
        path.display().to_string()
    }
}

/// `provisync target show` then `target add --file` of what it printed, for every kind:
/// the stored secrets stay (the peers accept nothing else), and `target update` changes
/// one field without them. Same for a source: `source show` then `source add --file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_then_add_file_keeps_every_secret() {
    let Some(bin) = provisync_bin() else {
        return;
    };
    let Some(peers) = EveryKind::start().await else {
        return;
    };
    let hub = Serve::start(&bin, "cli-secrets").await;
    let no_secret = |run: &Run| {
        for s in peers.secrets() {
            assert!(
                !run.stdout.contains(&s) && !run.stderr.contains(&s),
                "a secret was printed:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
    };
    for (id, def) in peers.definitions() {
        let (status, body) = hub.put(&format!("/targets/{id}"), &def).await;
        assert_eq!(status, 201, "{id}: {body}");
        let run = hub.cli(&bin, &["target", "show", id], &[], None);
        run.assert_ok("target show");
        no_secret(&run);
        let file = hub.file(&format!("{id}.json"), &run.stdout);
        let run = hub.cli(&bin, &["target", "add", id, "--file", &file], &[], None);
        run.assert_ok(&format!("target add {id} --file (what show printed)"));
        no_secret(&run);
        let run = hub.cli(&bin, &["target", "test", id], &[], None);
        run.assert_ok(&format!("target test {id} after show -> add --file"));
        let run = hub.cli(
            &bin,
            &["target", "update", id, "--scope", "active eq true"],
            &[],
            None,
        );
        run.assert_ok(&format!("target update {id}"));
        no_secret(&run);
        let shown = hub
            .cli(&bin, &["target", "show", id], &[], None)
            .assert_ok("target show")
            .json();
        assert_eq!(shown["scope_filter"], "active eq true", "{id}: {shown}");
        hub.cli(&bin, &["target", "test", id], &[], None)
            .assert_ok(&format!("target test {id} after update"));
    }
    // The site's secret: a delivery still verifies.
    let r = reqwest::Client::new()
        .post(format!("{}/scim/v2/Users", hub.origin))
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json")
        // Active: every target's scope is now `active eq true`, the site's too.
        .body(
            json!({"schemas": [USER_SCHEMA], "userName": "cli@example.org", "active": true})
                .to_string(),
        )
        .send()
        .await
        .expect("create user");
    assert_eq!(r.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(30);
    while peers.site.received().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(peers.site.received().len(), 1, "the site received the user");
    assert_eq!(peers.site.bad_signatures(), 0);

    // A source: its webhook secret survives show -> add --file and an update.
    let (status, body) = hub
        .put(
            "/sources/site",
            &json!({"secret": SITE_SECRET, "user_sync": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let run = hub.cli(&bin, &["source", "show", "site"], &[], None);
    run.assert_ok("source show");
    no_secret(&run);
    let file = hub.file("source.json", &run.stdout);
    hub.cli(&bin, &["source", "add", "site", "--file", &file], &[], None)
        .assert_ok("source add --file (what show printed)");
    hub.cli(
        &bin,
        &["source", "update", "site", "--entity-types", "node"],
        &[],
        None,
    )
    .assert_ok("source update");
    let shown = hub
        .cli(&bin, &["source", "show", "site"], &[], None)
        .assert_ok("source show")
        .json();
    assert_eq!(shown["entity_types"], json!(["node"]), "{shown}");
    assert_eq!(shown["secrets"], json!(["***"]), "{shown}");
    let body = json!({"type": "user.upsert", "occurred_at": chrono::Utc::now().to_rfc3339(),
        "data": {"externalId": "7", "userName": "from-site@example.org"}})
    .to_string()
    .into_bytes();
    let mut req = reqwest::Client::new()
        .post(format!("{}/webhooks/site", hub.origin))
        .header("content-type", "application/json");
    for (k, v) in provisync_tests::site::signed_headers(SITE_SECRET, "msg_cli_1", &body) {
        req = req.header(k, v);
    }
    let r = req.body(body).send().await.expect("webhook");
    assert_eq!(r.status(), 202, "the kept secret verifies");
}

/// What `provisync serve` lets targets point at: loopback by default, never a private
/// network or a metadata address without the opt-in; `none` takes loopback away too, and
/// a value it does not know stops it with a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_url_rules() {
    let Some(bin) = provisync_bin() else {
        return;
    };
    let def = |url: &str| json!({"kind": "okta", "base_url": url, "token": "okta-token"});
    let by_default = Serve::start_with(&bin, "urls-default", &[]).await;
    for (url, status) in [
        ("http://127.0.0.1:9001/", 201),
        ("http://localhost:9/", 201),
        ("http://10.0.0.1/", 400),
        ("https://192.168.0.1/", 400),
        ("https://169.254.169.254/", 400),
        ("https://[fd00:ec2::254]/", 400),
        ("http://example.com/", 400),
        ("https://example.com/", 201),
    ] {
        let (s, body) = by_default.put("/targets/t", &def(url)).await;
        assert_eq!(s / 100, status / 100, "{url}: {body}");
    }
    let strict = Serve::start_with(
        &bin,
        "urls-none",
        &[("PROVISYNC_ALLOW_PRIVATE_TARGETS", "none")],
    )
    .await;
    let (s, body) = strict
        .put("/targets/t", &def("http://127.0.0.1:9001/"))
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("PROVISYNC_ALLOW_PRIVATE_TARGETS")),
        "{body}"
    );
    let private = Serve::start_with(
        &bin,
        "urls-private",
        &[("PROVISYNC_ALLOW_PRIVATE_TARGETS", "private")],
    )
    .await;
    let (s, body) = private.put("/targets/t", &def("http://10.0.0.1/")).await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = private
        .put("/targets/t", &def("https://169.254.169.254/"))
        .await;
    assert_eq!(s, 400, "{body}");

    let out = Command::new(&bin)
        .arg("serve")
        .env("PORT", "0")
        .env("PROVISYNC_DATA_DIR", strict.data.join("bogus"))
        .env("PROVISYNC_ALLOW_PRIVATE_TARGETS", "metadata")
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PROVISYNC_ALLOW_PRIVATE_TARGETS must be"),
        "{err}"
    );
}

/// `provisync token create`, the command the Entra and Okta guides give, while `provisync
/// serve` runs: through the admin API (it failed with "Database already open" before),
/// listed without secrets, revoked by id or by the secret on stdin, the revoked token
/// refused. With no hub and no store it fails and creates no `./.provisync`; offline it
/// names the store it opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_tokens_while_the_hub_runs() {
    let Some(bin) = provisync_bin() else {
        return;
    };
    let mut hub = Serve::start(&bin, "cli-tokens").await;
    let client = reqwest::Client::new();
    let status = |path: &str, token: &str| {
        let req = client
            .get(format!("{}{path}", hub.origin))
            .bearer_auth(token)
            .send();
        async move { req.await.expect("request").status().as_u16() }
    };

    let run = hub.cli(
        &bin,
        &["token", "create", "--scope", "scim", "--name", "okta"],
        &[],
        None,
    );
    run.assert_ok("token create");
    let scim = run.stdout.trim().to_string();
    assert!(scim.starts_with("psy_"), "{}", run.stdout);
    assert!(run.stderr.contains("tok_"), "{}", run.stderr);
    assert_eq!(status("/scim/v2/Users", &scim).await, 200);

    let run = hub.cli(&bin, &["token", "list"], &[], None);
    run.assert_ok("token list");
    assert!(!run.stdout.contains(&scim), "{}", run.stdout);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("okta"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        line.contains("scim") && line.contains("admin:static"),
        "{line}"
    );
    let id = line.split_whitespace().next().unwrap().to_string();
    assert!(id.starts_with("tok_"), "{line}");

    let run = hub.cli(&bin, &["token", "revoke", &id], &[], None);
    run.assert_ok("token revoke");
    assert_eq!(status("/scim/v2/Users", &scim).await, 401);
    let run = hub.cli(&bin, &["token", "revoke", &id], &[], None);
    assert!(!run.ok && run.stderr.contains("404"), "{}", run.stderr);

    // An admin token, revoked by its secret on stdin.
    let run = hub.cli(
        &bin,
        &["token", "create", "--scope", "admin", "--name", "ops"],
        &[],
        None,
    );
    let admin = run
        .assert_ok("token create admin")
        .stdout
        .trim()
        .to_string();
    assert_eq!(status("/admin/targets", &admin).await, 200);
    hub.cli(&bin, &["token", "revoke"], &[], Some(&format!("{admin}\n")))
        .assert_ok("token revoke (stdin)");
    assert_eq!(status("/admin/targets", &admin).await, 401);

    // The store of a running hub cannot be opened offline: the message says what to do.
    let data = hub.data.to_string_lossy().into_owned();
    let run = hub.cli(
        &bin,
        &["token", "list", "--offline"],
        &[("PROVISYNC_DATA_DIR", &data)],
        None,
    );
    assert!(!run.ok, "{}", run.stdout);
    assert!(run.stderr.contains("PROVISYNC_URL"), "{}", run.stderr);

    // No hub and no store: a clear failure, and no `.provisync` appears here.
    let here = tempfile::tempdir().expect("tempdir");
    let dead = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port()
    );
    let run = hub.cli_in(
        &bin,
        Some(here.path()),
        &["token", "create", "--scope", "scim"],
        &[("PROVISYNC_URL", &dead), ("PROVISYNC_DATA_DIR", "")],
        None,
    );
    assert!(!run.ok, "{}", run.stdout);
    assert!(run.stderr.contains("no store in"), "{}", run.stderr);
    assert!(!here.path().join(".provisync").exists());

    // The hub stopped: offline on its folder, naming the store.
    hub.stop();
    let run = hub.cli(
        &bin,
        &["token", "create", "--scope", "scim", "--name", "late"],
        &[("PROVISYNC_DATA_DIR", &data), ("PROVISYNC_URL", &dead)],
        None,
    );
    run.assert_ok("token create (no hub answers)");
    assert!(
        run.stderr.contains("no hub answers") && run.stderr.contains("store: embedded store in"),
        "{}",
        run.stderr
    );
    let run = hub.cli(
        &bin,
        &["token", "list", "--offline"],
        &[("PROVISYNC_DATA_DIR", &data)],
        None,
    );
    run.assert_ok("token list --offline");
    assert!(
        run.stdout.contains("late") && run.stdout.contains("offline"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("okta"), "revoked: {}", run.stdout);
}

/// `provisync sync` says what the target answered, and exits non-zero when anything
/// failed: against `scim2-server` refusing every user (an attribute it does not know),
/// the reconcile and the on-demand sync print the refusals by name and exit 1 (before,
/// the reconcile printed `created 3  failed 0` and exited 0); once the target takes the
/// users, 0. `provisync import` exits non-zero when rows were rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_sync_and_import_exit_non_zero_on_failures() {
    let Some(bin) = provisync_bin() else {
        return;
    };
    let Some(peer) = provisync_tests::peers::ScimPeer::start().await else {
        return;
    };
    let hub = Serve::start(&bin, "cli-sync").await;
    let client = reqwest::Client::new();
    let put_target = |mapping: Value| {
        let body = serde_json::json!({"kind": "scim", "base_url": peer.base,
            "auth": {"bearer": peer.token}, "mode": "manual", "mapping": mapping});
        let req = client
            .put(format!("{}/admin/targets/peer", hub.origin))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send();
        async move { assert!(req.await.unwrap().status().is_success()) }
    };
    put_target(serde_json::json!([{"target": "favoriteColor", "value": "blue"}])).await;
    for n in ["alice", "bob", "carol"] {
        let r = client
            .post(format!("{}/scim/v2/Users", hub.origin))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/scim+json")
            .body(
                serde_json::json!({"schemas": [provisync_tests::USER_SCHEMA], "userName": n})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }

    let run = hub.cli(
        &bin,
        &["sync", "--target", "peer", "--reconcile"],
        &[],
        None,
    );
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("reconcile peer: complete_with_failures")
            && run.stdout.contains("created 0")
            && run.stdout.contains("refused 3"),
        "{}",
        run.stdout
    );
    for n in ["alice", "bob", "carol"] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains("refused create") && l.contains(&format!("{n:?}"))),
            "{n}: {}",
            run.stdout
        );
    }
    let run = hub.cli(
        &bin,
        &[
            "sync",
            "--target",
            "peer",
            "--filter",
            "userName eq \"alice\"",
        ],
        &[],
        None,
    );
    assert!(!run.ok, "{}", run.stdout);
    assert!(run.stdout.contains("refused 1"), "{}", run.stdout);
    assert!(
        run.stderr.contains("complete_with_failures"),
        "{}",
        run.stderr
    );

    // The target takes them now.
    put_target(serde_json::json!([])).await;
    // `--plan`: what a reconcile (or a sync) would send, printed; nothing sent.
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let run = hub.cli(
        &bin,
        &["sync", "--target", "peer", "--reconcile", "--plan"],
        &[],
        None,
    );
    run.assert_ok("sync --reconcile --plan");
    assert!(
        run.stdout
            .contains("plan for peer (complete): create 3 (nothing sent)"),
        "{}",
        run.stdout
    );
    for n in ["alice", "bob", "carol"] {
        assert!(
            run.stdout.contains(&format!("create User {n:?}")),
            "{n}: {}",
            run.stdout
        );
    }
    let run = hub.cli(
        &bin,
        &[
            "sync",
            "--target",
            "peer",
            "--filter",
            "userName eq \"alice\"",
            "--plan",
        ],
        &[],
        None,
    );
    run.assert_ok("sync --filter --plan");
    assert!(
        run.stdout.contains("create 1 (nothing sent)")
            && run.stdout.contains("create User \"alice\""),
        "{}",
        run.stdout
    );
    let (status, body) = peer.get("/Users").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totalResults"], 0, "a plan sends nothing: {body}");
    let run = hub.cli(
        &bin,
        &["undo", "--target", "peer", "--since", &since, "--plan"],
        &[],
        None,
    );
    run.assert_ok("undo --plan");
    assert!(run.stdout.contains("0 step(s) planned"), "{}", run.stdout);
    let run = hub.cli(
        &bin,
        &["undo", "--target", "peer", "--since", &since, "--apply"],
        &[],
        None,
    );
    run.assert_ok("undo --apply");
    assert!(
        run.stdout
            .contains("0 step(s) applied, 0 failed, 0 not tried"),
        "{}",
        run.stdout
    );
    let run = hub.cli(&bin, &["held", "release", "--target", "peer"], &[], None);
    run.assert_ok("held release");
    assert!(
        run.stdout
            .contains("released=0 superseded=0 failed=0 left=0"),
        "{}",
        run.stdout
    );
    let run = hub.cli(
        &bin,
        &["sync", "--target", "peer", "--reconcile"],
        &[],
        None,
    );
    run.assert_ok("sync --reconcile");
    assert!(
        run.stdout.contains("reconcile peer: complete") && run.stdout.contains("created 3"),
        "{}",
        run.stdout
    );

    // Import: a rejected row fails the command; a clean file does not.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "userName,name.givenName\ndora,Dora\n,Nobody\n").unwrap();
    let scim = [("PROVISYNC_SCIM_TOKEN", TOKEN)];
    let run = hub.cli(&bin, &["import", bad.to_str().unwrap()], &scim, None);
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stdout.contains("1 created") && run.stdout.contains("1 rejected"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("1 of 2 rows rejected"),
        "{}",
        run.stderr
    );
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "userName,name.givenName\neve,Eve\n").unwrap();
    hub.cli(&bin, &["import", good.to_str().unwrap()], &scim, None)
        .assert_ok("import good.csv");
}
