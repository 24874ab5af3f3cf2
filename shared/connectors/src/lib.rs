//! Provisync's connectors: one adapter per kind of target, each behind a Cargo feature of
//! its own (all on by default). [`connectors_for`] is the one place that knows which
//! adapter serves which kind of target; a build without a vendor's feature refuses that
//! kind of target with a clear message instead of linking its code.
//!
//! The port they implement, [`provisync_core::connector::Connector`], and the outbound
//! HTTP policy ([`provisync_core::connector::http`]) are in the core crate; the client
//! that keeps that policy ([`http::HttpClient`], reqwest and rustls) and OAuth client
//! credentials ([`oauth`]) are here, so only the processes that call out link them. The
//! core's outbound port ([`provisync_core::connector::http::HttpPort`]) is served by
//! [`http::http_port`].

use std::sync::Arc;

use provisync_core::connector::{Connector, SetupError};
use provisync_core::target::{TargetConfig, TargetKind};

pub mod http;
pub mod oauth;

#[cfg(feature = "cognito")]
pub mod cognito;
#[cfg(feature = "crowd")]
pub mod crowd;
#[cfg(feature = "entra")]
pub mod entra;
#[cfg(feature = "okta")]
pub mod okta;
#[cfg(feature = "salesforce")]
pub mod salesforce;
#[cfg(feature = "scim")]
pub mod scim;
#[cfg(feature = "webhook")]
pub mod webhook;

pub use provisync_core::connector::ConnectorFactory;

/// The connector for a target (secrets already opened). The error is shown to operators:
/// it never quotes a secret.
pub fn connectors_for(target: &TargetConfig) -> Result<Arc<dyn Connector>, SetupError> {
    fn boxed<C: Connector + 'static, E: std::fmt::Display>(
        c: Result<C, E>,
    ) -> Result<Arc<dyn Connector>, SetupError> {
        c.map(|c| Arc::new(c) as Arc<dyn Connector>)
            .map_err(SetupError::from_display)
    }
    match &target.kind {
        #[cfg(feature = "scim")]
        TargetKind::Scim(t) => boxed(scim::ScimConnector::new(t)),
        #[cfg(feature = "crowd")]
        TargetKind::Crowd(t) => boxed(crowd::CrowdConnector::new(t)),
        #[cfg(feature = "entra")]
        TargetKind::Entra(t) => boxed(entra::EntraConnector::new(t)),
        #[cfg(feature = "salesforce")]
        TargetKind::Salesforce(t) => boxed(salesforce::SalesforceConnector::new(t)),
        #[cfg(feature = "cognito")]
        TargetKind::Cognito(t) => boxed(cognito::CognitoConnector::new(t)),
        #[cfg(feature = "okta")]
        TargetKind::Okta(t) => boxed(okta::OktaConnector::new(t)),
        #[cfg(feature = "webhook")]
        TargetKind::Webhook(t) => boxed(webhook::WebhookSender::new(t)),
        #[allow(unreachable_patterns)]
        _ => Err(SetupError(format!(
            "target {}: this build has no connector for {} targets",
            target.id,
            target.kind_name()
        ))),
    }
}
