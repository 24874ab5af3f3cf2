//! Synchronisation: change events, targets, delivery, audit.

pub mod audit;
pub mod consumer;
pub mod deliver;
pub mod envelope;
pub mod inbound;
pub mod link;
pub mod mapping;
pub mod ondemand;
pub mod pull;
pub mod reconcile;
pub mod schedule;

/// How long a scheduled phase (a source's pull, a target's reconcile, the outbox sweep)
/// may run past its deadline to finish the call in flight. The deadline is checked
/// between pages, so every phase makes some progress however short its time; at the
/// deadline plus this grace it is stopped (a reconcile's lease released). A cycle given a
/// budget therefore ends within the budget plus this grace: what an invocation must keep
/// in hand beyond the budget it grants ([`schedule::budget_within`]).
pub const PHASE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
