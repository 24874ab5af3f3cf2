//! Synchronisation: change events, targets, delivery, audit.

pub mod audit;
pub mod factory;
pub mod ondemand;
pub mod target;

pub use factory::{ConnectorFactory, connectors_for};
