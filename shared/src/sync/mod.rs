//! Synchronisation: change events, targets, delivery, audit.

pub mod event;
pub mod link;
pub mod mapping;
pub mod target;
