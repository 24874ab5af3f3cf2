//! A CPU budget for a process a benchmark starts: a target "on a small VM" on a machine
//! whose cores the hub and its load generator share with it.
//!
//! On 2 shared cores, every CPU-second the hub spends (a durable queue, links, an audit
//! log: about 1 ms per delivered change) is taken from the target, while a plain load
//! generator spends 0.2 ms. A target with a budget of its own (a cgroup's CFS quota,
//! [`CpuBudget::new`]) is bounded by that budget alone, as a server on its own small
//! VM is, so the two rates compare the callers rather than who wins the shared cores.

use std::path::PathBuf;

/// A cgroup whose processes may use `cpus` CPUs between them (a CFS quota per 10 ms
/// period). Removed when dropped (after its processes have exited).
pub struct CpuBudget {
    dir: PathBuf,
    cpus: f64,
}

/// The CFS period: short, so the quota throttles in small steps (a 100 ms period would
/// stall the server for tens of milliseconds at a time).
const PERIOD_US: u64 = 10_000;

impl CpuBudget {
    /// A budget of `cpus` CPUs (0.6: 6 ms of every 10 ms) named `name`, on the cgroup v1
    /// `cpu` controller or cgroup v2's `cpu.max`. `None` when this machine does not allow
    /// it (not root, no CPU controller, a read-only cgroup file system).
    pub fn new(name: &str, cpus: f64) -> Option<CpuBudget> {
        if !(cpus.is_finite() && cpus > 0.0) {
            return None;
        }
        let quota = ((cpus * PERIOD_US as f64) as u64).max(1_000);
        let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(name);
            let _ = std::fs::create_dir(&dir);
            let ok = std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string()).is_ok()
                && std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()).is_ok();
            return ok.then_some(CpuBudget { dir, cpus });
        }
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).ok()?;
        if !controllers.split_whitespace().any(|c| c == "cpu") {
            return None;
        }
        let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
        let dir = v2.join(name);
        let _ = std::fs::create_dir(&dir);
        std::fs::write(dir.join("cpu.max"), format!("{quota} {PERIOD_US}"))
            .is_ok()
            .then_some(CpuBudget { dir, cpus })
    }

    /// The CPUs this budget allows.
    pub fn cpus(&self) -> f64 {
        self.cpus
    }

    /// Moves process `pid` (every thread, and the threads it starts later) into the
    /// budget; false when that failed.
    pub fn add(&self, pid: u32) -> bool {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).is_ok()
    }
}

impl Drop for CpuBudget {
    fn drop(&mut self) {
        // Fails while a process is still in it (then it is reused by name next time).
        let _ = std::fs::remove_dir(&self.dir);
    }
}
