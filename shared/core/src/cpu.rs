//! CPU-heavy work on request bodies (parsing, normalising, patching a large resource) off
//! the async reactor threads: a slow body must not stall `/healthz` or other requests.
//!
//! The work runs on tokio's blocking pool, at most one job per core at a time (a
//! semaphore): a burst of large bodies queues here instead of starting hundreds of
//! threads that would fight for two cores.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

/// The job panicked or was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("CPU job failed: {0}")]
pub struct CpuError(String);

fn pool() -> &'static Arc<Semaphore> {
    static POOL: OnceLock<Arc<Semaphore>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(cores))
    })
}

/// Runs `job` on the blocking pool (bounded by the number of cores) and waits for it
/// without holding a reactor thread.
pub async fn run<T, F>(job: F) -> Result<T, CpuError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let permit = pool()
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| CpuError(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let out = job();
        drop(permit);
        out
    })
    .await
    .map_err(|e| CpuError(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_off_the_reactor_and_returns() {
        let reactor = std::thread::current().id();
        let (value, thread) = super::run(|| (21 * 2, std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(value, 42);
        assert_ne!(thread, reactor);
    }
}
