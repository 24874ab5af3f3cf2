//! Synchronisation: change events, targets, delivery, audit.

pub mod audit;
pub mod consumer;
pub mod deferred;
pub mod deliver;
mod deliver_group;
pub mod deliver_guard;
mod deliver_members;
mod deliver_outcome;
mod deliver_site;
pub mod direct;
pub mod envelope;
pub mod held;
pub mod inbound;
pub mod insight;
pub mod journal;
pub mod link;
pub mod mapping;
mod member_work;
pub mod ondemand;
pub mod pace;
mod paced;
pub mod plan;
pub mod provision;
pub mod pull;
pub mod reconcile;
pub mod runs;
pub mod schedule;
pub mod undo;

/// How long a scheduled phase (a source's pull, a target's reconcile, the outbox sweep)
/// may run past its deadline to finish the call in flight, when it runs inside an
/// invocation that ends at a fixed time (Lambda: [`schedule::Schedule::bounded`]). The
/// deadline is checked between pages, so every phase makes some progress however short
/// its time; bounded, it is stopped at the deadline plus this grace (a reconcile's lease
/// released). A bounded cycle given a budget therefore ends within the budget plus this
/// grace: what an invocation must keep in hand beyond the budget it grants
/// ([`schedule::budget_within`]). Unbounded (`provisync serve`, the CLI), a call in flight
/// finishes, within its own timeout.
pub const PHASE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// `work` to its end, or, with a `hard_stop`, until that instant at most (`None`: it was
/// stopped there).
pub(crate) async fn until<F: std::future::Future>(
    hard_stop: Option<tokio::time::Instant>,
    work: F,
) -> Option<F::Output> {
    match hard_stop {
        None => Some(work.await),
        Some(at) => tokio::time::timeout_at(at, work).await.ok(),
    }
}
