//! The docs run as tests (#20): every shell block of `README.md` and `docs/*.md`, followed
//! in order as a new user would, in one shell session (its variables carry from block to
//! block) against the real `provisync serve` started as `make run` does (tokens generated
//! into `./.provisync`), with `scim2-server` as the downstream SCIM peer and a Standard
//! Webhooks receiver. How each block is checked is its `<!-- doctest: … -->` marker
//! (`tests/common/doctest.rs`); a shell block without one fails. The webhook types table is
//! sent, signed, to the source the README registers. Plus the checks of what the docs
//! state about the product (#20 item 6).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use provisync_tests::doctest::{self, Block};
use provisync_tests::peers::ScimPeer;
use provisync_tests::serve::provisync_bin;
use provisync_tests::site::{Site, post, signed_headers};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// `README.md`, then `docs/*.md` by name: (path relative to the repo, text).
fn docs() -> Vec<(String, String)> {
    let root = repo();
    let mut names: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    names.sort();
    names.insert(0, "README.md".into());
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root.join(&n)).expect("doc");
            (n, text)
        })
        .collect()
}

const MODES: &[&str] = &["run", "each", "vendor", "shape", "output"];

/// Every shell block says how it is checked; every marker is a known mode, and `shape`
/// says why it cannot run.
#[test]
fn every_shell_block_is_marked() {
    let mut problems = Vec::new();
    for (file, text) in docs() {
        for b in doctest::blocks(&file, &text) {
            match &b.marker {
                None if doctest::is_shell(&b.lang) => problems.push(format!(
                    "{}:{}: a ```{} block without a <!-- doctest: MODE --> marker",
                    b.file, b.line, b.lang
                )),
                None => {}
                Some(m) if !MODES.contains(&m.mode.as_str()) => problems.push(format!(
                    "{}:{}: unknown doctest mode {:?} (known: {MODES:?})",
                    b.file, b.line, m.mode
                )),
                Some(m) if m.mode == "shape" && m.why.is_none() => problems.push(format!(
                    "{}:{}: a shape-only block says `why:` it cannot run",
                    b.file, b.line
                )),
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// #20 item 6: headings are unique within a document (the IdP and target sections of
/// Entra ID and Okta say which is which) and every `](#anchor)` names one.
#[test]
fn headings_are_unique_and_links_resolve() {
    let mut problems = Vec::new();
    for (file, text) in docs() {
        let heads = doctest::headings(&text);
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (title, _) in &heads {
            *seen.entry(title.as_str()).or_default() += 1;
        }
        for (title, n) in seen {
            if n > 1 {
                problems.push(format!("{file}: heading {title:?} appears {n} times"));
            }
        }
        let anchors: Vec<&str> = heads.iter().map(|(_, a)| a.as_str()).collect();
        for part in text.split("](#").skip(1) {
            let a = part.split(')').next().unwrap_or_default();
            if !anchors.contains(&a) {
                problems.push(format!("{file}: link to #{a}, which no heading has"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// #20 item 6: the stack's `ApiUrl` output ends with `/`; the docs join it without
/// another one (`//scim/v2/Users` is a 404 on API Gateway).
#[test]
fn api_url_joins_with_one_slash() {
    let template = std::fs::read_to_string(repo().join("infra/template.yaml")).unwrap();
    let out = template
        .split("\n  ApiUrl:")
        .nth(1)
        .expect("ApiUrl output in infra/template.yaml");
    let value = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Value:"))
        .expect("ApiUrl Value");
    assert!(value.trim().trim_end_matches('"').ends_with('/'), "{value}");
    let mut bad = Vec::new();
    for (file, text) in docs().into_iter().chain([(
        "infra/README.md".to_string(),
        std::fs::read_to_string(repo().join("infra/README.md")).unwrap_or_default(),
    )]) {
        for (n, line) in text.lines().enumerate() {
            if line.contains("$ApiUrl/")
                || line.contains("${ApiUrl}/")
                || line.contains("<ApiUrl>/")
            {
                bad.push(format!("{file}:{}: {line}", n + 1));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "ApiUrl already ends with /:\n{}",
        bad.join("\n")
    );
}

/// #20 item 6: what the README says reconcile lists is what the code does: the kinds
/// whose connector implements `list_users` (README and docs/connectors.md used to
/// disagree).
#[test]
fn reconcile_kinds_are_the_codes() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let para = readme
        .split("\n\n")
        .find(|p| p.starts_with("Reconcile lists"))
        .expect("the README's `Reconcile lists …` paragraph");
    let mut listing = Vec::new();
    for (kind, _) in provisync_core::target::KIND_FIELDS {
        let src = std::fs::read_to_string(repo().join(format!("shared/connectors/src/{kind}.rs")))
            .unwrap_or_default();
        if src.contains("async fn list_users") {
            listing.push(*kind);
        } else {
            assert!(
                para.contains(&format!("but `{kind}`")),
                "{kind} does not list: {para}"
            );
        }
    }
    for kind in listing {
        assert!(
            para.contains(&format!("`{kind}`")),
            "{kind} lists its accounts: {para}"
        );
    }
}

/// #20 item 6: `make run` runs the binary `cargo build --release` builds, so one build
/// serves both: the packages `make run` builds resolve to the same features as a plain
/// `cargo build` at the root (a difference recompiles the whole dependency tree).
#[test]
fn make_run_reuses_cargo_build_release() {
    let root = repo();
    let dry = Command::new("make")
        .args(["-n", "run"])
        .current_dir(&root)
        .output()
        .expect("make");
    let recipe = String::from_utf8_lossy(&dry.stdout).to_string();
    let cargo_line = recipe
        .lines()
        .find(|l| l.contains(" run ") || l.contains(" build "))
        .unwrap_or_else(|| panic!("make -n run: {recipe}"));
    assert!(cargo_line.contains("--release"), "{cargo_line}");
    let w = doctest::words(cargo_line);
    let mut selection = Vec::new();
    for (i, a) in w.iter().enumerate() {
        if (a == "-p" || a == "--package") && i + 1 < w.len() {
            selection.extend([a.clone(), w[i + 1].clone()]);
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = |sel: &[String]| -> std::collections::BTreeSet<String> {
        let out = Command::new(&cargo)
            .args([
                "tree",
                "--offline",
                "-e",
                "normal,build",
                "--prefix",
                "none",
            ])
            .args(["-f", "{p}|{f}"])
            .args(sel)
            .current_dir(&root)
            .output()
            .expect("cargo tree");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end_matches(" (*)").to_string())
            .collect()
    };
    let make_run = tree(&selection);
    let plain = tree(&[]);
    let differ: Vec<&String> = make_run.symmetric_difference(&plain).collect();
    assert!(
        differ.is_empty(),
        "`{cargo_line}` and `cargo build --release` resolve different features: {differ:#?}"
    );
}

fn provisync(args: &[&str]) -> Option<(bool, String)> {
    let bin = provisync_bin()?;
    let out = Command::new(bin).args(args).output().expect("provisync");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), text))
}

/// #20 item 6: `serve --help` lists only what applies to it (not the operator commands'
/// `--url`/`--token`), and `target add --kind` names every kind the hub knows.
#[test]
fn cli_help_says_what_applies() {
    let Some((ok, serve)) = provisync(&["serve", "--help"]) else {
        return;
    };
    assert!(ok, "{serve}");
    assert!(
        !serve.contains("--url") && !serve.contains("--token"),
        "{serve}"
    );
    let (_, list) = provisync(&["target", "list", "--help"]).unwrap();
    assert!(list.contains("--url") && list.contains("--token"), "{list}");
    let (_, add) = provisync(&["target", "add", "--help"]).unwrap();
    let kind_help = add
        .split("--kind <KIND>")
        .nth(1)
        .and_then(|h| h.split("\n  -").next())
        .unwrap_or_default()
        .to_string();
    for (kind, _) in provisync_core::target::KIND_FIELDS {
        assert!(
            kind_help.contains(kind),
            "--kind help lacks {kind}: {kind_help}"
        );
    }
}

// ---- the docs, run ------------------------------------------------------------------

/// The live hub, the peers and the shell session the blocks run in.
struct Session {
    dir: tempfile::TempDir,
    origin: String,
    serve: std::process::Child,
    banner: PathBuf,
    path: String,
    values: HashMap<&'static str, String>,
    client: reqwest::Client,
    _peer: ScimPeer,
    site: Site,
    /// What ran, and how long it took, for the log.
    ran: Vec<String>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.serve.kill();
        let _ = self.serve.wait();
    }
}

const SITE_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

impl Session {
    async fn start() -> Option<Session> {
        let bin = provisync_bin()?;
        let peer = ScimPeer::start().await?;
        let site = Site::start(SITE_SECRET).await;
        let dir = tempfile::tempdir().unwrap();
        // `provisync` and a `curl` that fails on an HTTP error (as a reader would notice
        // one) first on PATH.
        let tools = dir.path().join(".doctest-bin");
        std::fs::create_dir_all(&tools).unwrap();
        let real_curl = which("curl").expect("curl on PATH");
        write_exec(
            &tools.join("curl"),
            &format!(
                "#!/bin/sh\nexec {} --fail-with-body -sS \"$@\"\n",
                real_curl.display()
            ),
        );
        std::os::unix::fs::symlink(&bin, tools.join("provisync")).unwrap();
        let path = format!(
            "{}:{}",
            tools.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let banner = dir.path().join(".doctest-serve.log");
        let log = std::fs::File::create(&banner).unwrap();
        // As `make run` starts it: tokens generated into ./.provisync.
        let serve = Command::new(&bin)
            .arg("serve")
            .current_dir(dir.path())
            .env("PORT", port.to_string())
            .env("PROVISYNC_SCHEDULE_SECONDS", "0")
            .env("RUST_LOG", "warn")
            .env_remove("PROVISYNC_DATA_DIR")
            .env_remove("PROVISYNC_SCIM_TOKEN")
            .env_remove("PROVISYNC_ADMIN_TOKEN")
            .env_remove("PROVISYNC_BACKEND")
            .env_remove("PROVISYNC_ALLOW_PRIVATE_TARGETS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let origin = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = client.get(format!("{origin}/healthz")).send().await;
            if up.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "provisync serve did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let values = HashMap::from([
            ("SCIM_PEER", peer.base.clone()),
            ("PEER_TOKEN", peer.token.clone()),
            ("SITE_URL", site.url()),
            ("SITE_SECRET", SITE_SECRET.to_string()),
        ]);
        std::fs::write(dir.path().join(".doctest-state"), "").unwrap();
        Some(Session {
            dir,
            origin,
            serve,
            banner,
            path,
            values,
            client,
            _peer: peer,
            site,
            ran: vec![],
        })
    }

    /// `text` with the README's local address made this hub's, and `@NAME@` values.
    fn fill(&self, text: &str) -> String {
        let mut t = text.replace("http://127.0.0.1:8787", &self.origin);
        for (k, v) in &self.values {
            t = t.replace(&format!("@{k}@"), v);
        }
        t
    }

    /// Runs `body` in bash in the session (the variables of earlier blocks, saved after
    /// it): its exit status and output (stdout and stderr).
    fn shell(&self, body: &str, strict: bool, env: &[(String, String)]) -> (i32, String) {
        let state = self.dir.path().join(".doctest-state");
        let script = format!(
            r#"__base=$(compgen -v)
__save() {{ for __v in $(compgen -v); do
  case "$__v" in __*|BASH*|FUNCNAME|PIPESTATUS|_|LINENO|RANDOM|SECONDS|OPTIND|OPTARG) continue;; esac
  grep -qxF "$__v" <<<"$__base" || declare -p "$__v" 2>/dev/null; done > "{state}.new"; mv "{state}.new" "{state}"; }}
trap '__rc=$?; set +eu; __save; exit $__rc' EXIT
source "{state}"
{strict}
{body}
"#,
            state = state.display(),
            strict = if strict {
                "set -euo pipefail"
            } else {
                "set -u"
            },
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .env("PATH", &self.path)
            .env("PROVISYNC_URL", &self.origin)
            .env_remove("PROVISYNC_ADMIN_TOKEN")
            .env_remove("PROVISYNC_SCIM_TOKEN")
            .env_remove("PROVISYNC_DATA_DIR")
            .env_remove("PROVISYNC_BACKEND")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("bash");
        let mut text = String::from_utf8_lossy(&out.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Runs one block as its marker says; panics with the block and its output on a
    /// failure.
    async fn block(&mut self, b: &Block) {
        let Some(m) = &b.marker else { return };
        let started = Instant::now();
        let mut body = b.body.clone();
        for (from, to) in &m.subs {
            assert!(
                body.contains(from.as_str()),
                "{}:{}: `sub: {from}` is not in the block",
                b.file,
                b.line
            );
            body = body.replace(from.as_str(), to);
        }
        let body = self.fill(&body);
        let at = format!("{}:{}", b.file, b.line);
        let mut output = String::new();
        match m.mode.as_str() {
            "run" => {
                let (rc, out) = self.shell(&body, true, &[]);
                assert_eq!(rc, 0, "{at}: the block failed:\n{body}\n--- output:\n{out}");
                output = out;
            }
            "each" => {
                for (cmd, said) in doctest::commands(&body) {
                    let want = said
                        .iter()
                        .find_map(|c| c.split("exit status ").nth(1))
                        .and_then(|n| n.trim_end_matches(')').trim().parse().ok())
                        .unwrap_or(0);
                    let (rc, out) = self.shell(&cmd, false, &[]);
                    assert_eq!(
                        rc, want,
                        "{at}: `{cmd}` exited {rc}, the docs say {want}:\n{out}"
                    );
                    output.push_str(&out);
                }
            }
            "vendor" => output = self.vendor(&at, &body).await,
            "shape" => self.shape(&at, &body),
            "output" => self.output(&at, &body).await,
            other => panic!("{at}: unknown mode {other}"),
        }
        for e in &m.expect {
            let e = self.fill(e);
            assert!(output.contains(&e), "{at}: expected {e:?} in:\n{output}");
        }
        for c in &m.check {
            let (rc, out) = self.shell(&self.fill(c), true, &[]);
            assert_eq!(rc, 0, "{at}: check `{c}` failed:\n{out}");
        }
        self.ran.push(format!(
            "{at} {} ({:.1} s)",
            m.mode,
            started.elapsed().as_secs_f64()
        ));
    }

    /// A vendor's block: its definitions saved on the live hub (placeholders filled,
    /// secrets from dummy variables and files); what would call the vendor (a connection
    /// test) checked for shape.
    async fn vendor(&self, at: &str, body: &str) -> String {
        let mut output = String::new();
        for (cmd, _) in doctest::commands(body) {
            let cmd = fill_placeholders(&cmd);
            let w = doctest::words(&cmd);
            let mut env = Vec::new();
            for (i, a) in w.iter().enumerate() {
                if a.ends_with("-env") && a.starts_with("--") && i + 1 < w.len() {
                    env.push((w[i + 1].clone(), "doctest-secret".to_string()));
                }
            }
            if let Some(file) = cmd.split(" < ").nth(1) {
                std::fs::write(self.dir.path().join(file.trim()), "doctest-secret\n").unwrap();
            }
            if w.first().is_some_and(|c| c == "provisync") && w.get(2).is_some_and(|c| c == "test")
            {
                self.parses(at, &w[1..]);
                continue;
            }
            if w.first().is_some_and(|c| c == "curl") && cmd.trim_end().ends_with("/test") {
                self.route_exists(at, &w).await;
                continue;
            }
            let (rc, out) = self.shell(&cmd, true, &env);
            assert_eq!(rc, 0, "{at}: `{cmd}` failed:\n{out}");
            output.push_str(&out);
        }
        output
    }

    /// `POST …/targets/{id}/test` is a route of the admin API (asked of a target that does
    /// not exist: the answer names it, not a missing path).
    async fn route_exists(&self, at: &str, words: &[String]) {
        let url = words.last().unwrap();
        let path = url.split("/admin/").nth(1).expect("an admin URL");
        let mut parts: Vec<&str> = path.split('/').collect();
        let n = parts.len();
        parts[n - 2] = "doctest-missing";
        let r = self
            .client
            .post(format!("{}/admin/{}", self.origin, parts.join("/")))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        assert!(
            status == 404 && text.contains("doctest-missing"),
            "{at}: {url} is not a route: {status} {text}"
        );
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(".provisync/admin-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Every `provisync` (or `cargo run -p provisync-cli --`) command parses, every
    /// `make` target exists.
    fn shape(&self, at: &str, body: &str) {
        for (cmd, _) in doctest::commands(body) {
            for part in cmd.split("&&") {
                let mut w: Vec<String> = doctest::words(part)
                    .into_iter()
                    .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                    .take_while(|w| !matches!(w.as_str(), "&" | "|" | ">" | "<" | ";"))
                    .collect();
                if w.len() > 4 && w[..4] == ["cargo", "run", "-p", "provisync-cli"] {
                    let rest = w.iter().position(|x| x == "--").map_or(0, |i| i + 1);
                    w = std::iter::once("provisync".to_string())
                        .chain(w[rest..].iter().cloned())
                        .collect();
                }
                match w.first().map(String::as_str) {
                    Some("provisync") => self.parses(at, &w[1..]),
                    Some("make") => {
                        let out = Command::new("make")
                            .arg("-n")
                            .args(&w[1..])
                            .current_dir(repo())
                            .output()
                            .unwrap();
                        assert!(
                            out.status.success(),
                            "{at}: `{}` is no make target: {}",
                            w.join(" "),
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    /// The CLI parses `args` (`--help` after them: every flag and value checked, nothing
    /// run).
    fn parses(&self, at: &str, args: &[String]) {
        let bin = self.dir.path().join(".doctest-bin/provisync");
        let out = Command::new(bin).args(args).arg("--help").output().unwrap();
        assert!(
            out.status.success(),
            "{at}: `provisync {}` does not parse: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Printed text: each line the docs show (up to a `…`) is a line `serve` printed.
    async fn output(&self, at: &str, body: &str) {
        let printed = std::fs::read_to_string(&self.banner).unwrap();
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let prefix = line.split('…').next().unwrap_or_default().trim_end();
            assert!(
                printed.lines().any(|p| p.starts_with(prefix)),
                "{at}: the docs show {line:?}; `provisync serve` printed:\n{printed}"
            );
        }
    }

    /// The README's table of webhook types: each example, signed with the secret of the
    /// source the README registered, is accepted (202) by `POST /webhooks/drupal-main`.
    async fn webhook_table(&self, text: &str) {
        let (rc, secret) = self.shell("printf %s \"$SECRET\"", true, &[]);
        assert_eq!(rc, 0, "{secret}");
        let rows: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("| `type` | `data` |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert_eq!(rows.len(), 8, "the webhook types table");
        for row in rows {
            let cells: Vec<&str> = row.split(" | ").collect();
            let kind = cells[0].trim_start_matches("| ").trim_matches('`');
            let data = first_json(cells[1]).unwrap_or_else(|| panic!("no example in {row}"));
            let env = serde_json::json!({"type": kind,
                "occurred_at": chrono::Utc::now().to_rfc3339(), "data": data});
            let body = env.to_string().into_bytes();
            let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
            let (status, answer) = post(
                &self.client,
                &format!("{}/webhooks/drupal-main", self.origin),
                &signed_headers(&secret, &id, &body),
                body,
            )
            .await;
            assert_eq!(status, 202, "README webhook example {kind}: {answer}");
        }
    }
}

/// The first balanced `{…}` in `cell`, as JSON.
fn first_json(cell: &str) -> Option<serde_json::Value> {
    let start = cell.find('{')?;
    let mut depth = 0;
    for (i, c) in cell[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return serde_json::from_str(&cell[start..=start + i]).ok();
                }
            }
            _ => {}
        }
    }
    None
}

/// `<Consumer Key>` and the like (not a `< file` redirect) → `placeholder`.
fn fill_placeholders(cmd: &str) -> String {
    let mut out = String::new();
    let mut rest = cmd;
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        match after.find('>') {
            Some(j) if !after.starts_with(' ') && !after[..j].contains('<') => {
                out.push_str(&rest[..i]);
                out.push_str("placeholder");
                rest = &after[j + 1..];
            }
            _ => {
                out.push_str(&rest[..=i]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Files the import examples read, as the docs describe them.
fn import_files(dir: &Path) {
    let mut people = String::from("userName,name.givenName,name.familyName,email,title\n");
    for i in 0..97 {
        people.push_str(&format!(
            "person{i:03}@example.org,Given{i},Family{i},person{i:03}@example.org,Engineer\n"
        ));
    }
    // Three bad rows: no userName, a bad e-mail, a duplicate.
    people.push_str(",No,Name,nobody@example.org,\n");
    people.push_str("bad@example.org,Bad,Mail,not-an-address,\n");
    people.push_str("person000@example.org,Dup,Licate,dup@example.org,\n");
    std::fs::write(dir.join("people.csv"), people).unwrap();
    let mut big = String::from("userName,email\n");
    for i in 0..50 {
        big.push_str(&format!("big{i:03},big{i:03}@example.org\n"));
    }
    std::fs::write(dir.join("big.csv"), big).unwrap();
    std::fs::write(
        dir.join("hr.csv"),
        "Login,E-Mail\nhr001,hr001@example.org\nhr002,hr002@example.org\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("cols.toml"),
        "[columns]\n\"E-Mail\" = \"email\"\nLogin = \"userName\"\n",
    )
    .unwrap();
}

/// Every doc, in order, against the live hub and peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_run_as_written() {
    let Some(mut s) = Session::start().await else {
        return;
    };
    import_files(s.dir.path());
    let started = Instant::now();
    for (file, text) in docs() {
        let blocks = doctest::blocks(&file, &text);
        let table_line = text
            .lines()
            .position(|l| l.starts_with("| `type` | `data` |"))
            .map(|i| i + 1);
        let mut table_done = false;
        for b in &blocks {
            if let Some(t) = table_line
                && !table_done
                && b.line > t
            {
                s.webhook_table(&text).await;
                table_done = true;
            }
            s.block(b).await;
        }
    }
    // The webhook target the README defines received the hub's changes, signed.
    assert!(
        s.site.bad_signatures() == 0,
        "the README's webhook target got badly signed deliveries"
    );
    eprintln!(
        "docs run in {:.1} s:\n{}",
        started.elapsed().as_secs_f64(),
        s.ran.join("\n")
    );
}

/// #20 item 6: the banner of `serve` names the store it runs on: on the AWS backend the
/// DynamoDB table (as `/healthz` says `dynamodb`), never the embedded store's folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_banner_names_its_store() {
    let Some(bin) = provisync_bin() else { return };
    let Some(moto) = std::env::var("PROVISYNC_TEST_MOTO")
        .ok()
        .filter(|m| !m.is_empty())
    else {
        eprintln!("skipped: PROVISYNC_TEST_MOTO not set (run through scripts/test-env.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = format!("banner-{}", uuid::Uuid::new_v4().simple());
    let env = [
        ("PROVISYNC_BACKEND", "aws"),
        ("PROVISYNC_TABLE", table.as_str()),
        ("PROVISYNC_QUEUE", table.as_str()),
        ("AWS_ENDPOINT_URL", moto.as_str()),
        ("PROVISYNC_SCHEDULE_SECONDS", "0"),
    ];
    let init = Command::new(&bin)
        .arg("aws-init")
        .envs(env)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let serve = provisync_tests::serve::ServeProcess::start(&bin, &data, &env, &log).await;
    let health: serde_json::Value = reqwest::get(format!("{}/healthz", serve.origin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["store"], "dynamodb");
    let banner = serve.log_text();
    let first = banner
        .lines()
        .find(|l| l.starts_with("Provisync is running"))
        .unwrap_or_else(|| panic!("no banner: {banner}"));
    assert!(
        first.contains(&format!("store: dynamodb table {table}")),
        "{first}"
    );
}
