//! Synchronisation: change events, targets, delivery, audit.

pub mod audit;
pub mod consumer;
pub mod definitions;
pub mod deliver;
pub mod event;
pub mod factory;
pub mod inbound;
pub mod link;
pub mod mapping;
pub mod ondemand;
pub mod pull;
pub mod reconcile;
pub mod records;
pub mod source;
pub mod target;

pub use factory::{ConnectorFactory, connectors_for};
