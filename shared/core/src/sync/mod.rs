//! Synchronisation: change events, targets, delivery, audit.

pub mod audit;
pub mod consumer;
pub mod deliver;
mod deliver_members;
pub mod envelope;
pub mod inbound;
pub mod insight;
pub mod link;
pub mod mapping;
pub mod ondemand;
pub mod pace;
pub mod provision;
pub mod pull;
pub mod reconcile;
pub mod runs;
pub mod schedule;
