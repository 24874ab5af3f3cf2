//! The real `provisync` binary for the tests that run it as an operator would:
//! `provisync serve` in a process of its own, on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ADMIN_TOKEN, TOKEN};

/// The `provisync` binary next to this test's own executable (`<target>/debug/deps/..`),
/// else under `$CARGO_TARGET_DIR`. `None` (skip) when it was not built, a failure when
/// peers are required (`make test` builds it first).
pub fn provisync_bin() -> Option<PathBuf> {
    let name = format!("provisync{}", std::env::consts::EXE_SUFFIX);
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile_dir) = exe.parent().and_then(Path::parent)
    {
        candidates.push(profile_dir.join(&name));
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("debug").join(&name));
    }
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Some(found.clone());
    }
    let msg = format!(
        "the provisync binary is not built (looked at {candidates:?}): run `make test`, or \
         `cargo build -p provisync-cli --bin provisync` first"
    );
    assert!(
        std::env::var_os("PROVISYNC_REQUIRE_PEERS").is_none(),
        "{msg}"
    );
    eprintln!("skipped: {msg}");
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `provisync serve` on the embedded store in `data`, with the test tokens, output to
/// `log`; killed on drop unless stopped with [`ServeProcess::stop`].
pub struct ServeProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    pub log: PathBuf,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeProcess {
    /// Starts it with `env` added and waits until `/healthz` answers (a few tries, as a
    /// free port can be taken between probing and binding).
    pub async fn start(bin: &Path, data: &Path, env: &[(&str, &str)], log: &Path) -> ServeProcess {
        let client = reqwest::Client::new();
        for _attempt in 0..3 {
            let port = free_port();
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("log file");
            let child = Command::new(bin)
                .arg("serve")
                .env("PORT", port.to_string())
                .env("PROVISYNC_DATA_DIR", data)
                .env("PROVISYNC_SCIM_TOKEN", TOKEN)
                .env("PROVISYNC_ADMIN_TOKEN", ADMIN_TOKEN)
                .env("PROVISYNC_BACKEND", "embedded")
                .env_remove("PROVISYNC_ALLOW_PRIVATE_TARGETS")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log file"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut serve = ServeProcess {
                child,
                origin: format!("http://127.0.0.1:{port}"),
                log: log.to_path_buf(),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = serve.child.try_wait() {
                    eprintln!("provisync serve exited early ({status}); retrying");
                    break;
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
        }
        panic!(
            "provisync serve did not come up; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// What it wrote so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then its exit status (`None`: it did not stop within `within`).
    pub fn stop(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}
