//! Connector construction: one match on [`TargetKind`], the one place that knows which
//! adapter serves which kind of target.

use std::sync::Arc;

use crate::connector::Connector;
use crate::sync::target::{TargetConfig, TargetKind};

/// Builds connectors from target definitions (a function pointer so tests and the admin
/// state can substitute their own).
pub type ConnectorFactory = fn(&TargetConfig) -> Result<Arc<dyn Connector>, String>;

/// The connector for a target (secrets already opened). The error is shown to operators:
/// it never quotes a secret.
pub fn connectors_for(target: &TargetConfig) -> Result<Arc<dyn Connector>, String> {
    match &target.kind {
        TargetKind::Scim(scim) => crate::connector::scim::ScimConnector::new(scim)
            .map(|c| Arc::new(c) as Arc<dyn Connector>)
            .map_err(|e| e.to_string()),
        TargetKind::Crowd(crowd) => crate::connector::crowd::CrowdConnector::new(crowd)
            .map(|c| Arc::new(c) as Arc<dyn Connector>)
            .map_err(|e| e.to_string()),
        TargetKind::Webhook(w) => crate::connector::webhook::WebhookSender::new(w)
            .map(|c| Arc::new(c) as Arc<dyn Connector>),
    }
}
