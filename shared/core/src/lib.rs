//! Provisync's core: the ports and the logic behind them.
//!
//! - Ports: [`store::Store`] (with the embedded adapter behind the `embedded` feature),
//!   [`queue::Queue`] (with the store-backed queue), [`connector::Connector`].
//! - [`directory`]: SCIM resources on any store, with uniqueness, versions and members.
//! - [`event`]: change events and the outbox; [`records`]: replicated site data.
//! - [`sync`]: targets and sources, delivery, inbound changes, pull, reconcile, schedule.
//!
//! The SCIM protocol itself is [`provisync_scim`]; adapters for AWS, the connectors and
//! the HTTP surfaces are crates of their own that depend on this one.

pub mod config;
pub mod connector;
pub mod cpu;
pub mod crypto;
pub mod definitions;
pub mod directory;
pub mod event;
pub mod hub;
pub mod net;
pub mod queue;
pub mod records;
pub mod source;
pub mod store;
pub mod sync;
pub mod target;
pub mod validation;
pub mod webhook_sig;
