//! Synchronisation: change events, targets, delivery, audit.

pub mod audit;
pub mod consumer;
pub mod deliver;
pub mod deliver_guard;
mod deliver_members;
pub mod envelope;
pub mod held;
pub mod inbound;
pub mod insight;
pub mod journal;
pub mod link;
pub mod mapping;
pub mod ondemand;
pub mod plan;
pub mod provision;
pub mod pull;
pub mod reconcile;
pub mod runs;
pub mod schedule;
pub mod undo;
