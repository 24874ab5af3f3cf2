//! Provisync: an identity provisioning and sync hub.
//!
//! Layers (see the design map): the domain ([`scim`]) is pure Rust without I/O; the ports
//! ([`store::Store`]) are traits with adapters beside them; [`directory`] keeps SCIM
//! resources on any store; [`http`] builds the axum routers the Lambda functions and
//! `provisync serve` both mount.

pub mod aws;
pub mod config;
pub mod connector;
pub mod crypto;
pub mod directory;
pub mod http;
pub mod lambda;
pub mod queue;
pub mod scim;
pub mod store;
pub mod sync;
pub mod transfer;
pub mod webhook_sig;
