//! Synchronisation: change events, targets, delivery, audit.

pub mod target;
