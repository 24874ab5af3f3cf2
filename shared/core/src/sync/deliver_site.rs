//! Delivery to a site (a `webhook` target): the change event itself, as a signed envelope
//! (`webhook-id` = event id), within the site's filters and its `scope_filter`.
//!
//! A site keeps no account ids of its own for the hub, but the hub keeps a link per user
//! it sent a site (target id = the hub id), so that a user leaving the site's scope is
//! taken off it: the site gets a `user.delete` naming only the hub id (never the data of
//! a user outside its scope), and the link stays, disabled, as "not at the site" so that
//! later changes of that user send nothing. A user with no link that is outside the scope
//! may have been sent before sites had links: it gets the `user.delete` once too.

use serde_json::{Value, json};

use super::deliver::{Deliverer, DeliveryOutcome, default_op};
use super::link::LinkChange;
use crate::connector::{Connector, ConnectorError};
use crate::event::{ChangeEvent, ChangeOp};
use crate::sync::audit::AuditOp;
use crate::sync::deliver::retryable;
use crate::sync::envelope::envelope_for;
use crate::target::{TargetConfig, WebhookTarget};
use provisync_scim::ResourceKind;

type Failure = (AuditOp, ConnectorError);

impl Deliverer {
    pub(super) async fn deliver_webhook(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        w: &WebhookTarget,
    ) -> Result<(DeliveryOutcome, LinkChange), Failure> {
        let op = default_op(event);
        let Some(envelope) = envelope_for(w, event) else {
            return Ok((
                DeliveryOutcome::Skipped("not in this site's filters"),
                LinkChange::Keep,
            ));
        };
        // Entity and configuration records, and groups: no scope.
        if event.record.is_some() || event.resource_type != ResourceKind::User {
            self.send_to_site(event, t, op, &envelope).await?;
            return Ok((DeliveryOutcome::Delivered(op), LinkChange::Keep));
        }
        let id = &event.resource_id;
        let in_scope = event
            .resource
            .as_ref()
            .is_none_or(|r| self.in_scope(t, ResourceKind::User, r));
        if in_scope {
            self.send_to_site(event, t, op, &envelope).await?;
            let link = match event.op {
                ChangeOp::Delete => LinkChange::Remove(ResourceKind::User, id.clone()),
                _ => self.site_link(t, id, false),
            };
            return Ok((DeliveryOutcome::Delivered(op), link));
        }
        let link = self
            .links
            .get(&t.id, ResourceKind::User, id)
            .await
            .map_err(|e| (op, retryable(e)))?;
        // Known not to be at the site, or just created outside its scope: nothing to send
        // (a deleted user's "not at the site" link goes with it).
        if link.as_ref().is_some_and(|l| l.disabled) || event.op == ChangeOp::Create {
            let link = match (&link, event.op) {
                (Some(_), ChangeOp::Delete) => LinkChange::Remove(ResourceKind::User, id.clone()),
                _ => LinkChange::Keep,
            };
            return Ok((
                DeliveryOutcome::Skipped("not in this site's scope_filter"),
                link,
            ));
        }
        // At the site (or perhaps, sent before sites had links): taken off it, by id only.
        let gone = json!({"type": "user.delete", "occurred_at": event.occurred_at,
            "data": {"id": id}});
        self.send_to_site(event, t, AuditOp::Delete, &gone).await?;
        let link = match event.op {
            ChangeOp::Delete => LinkChange::Remove(ResourceKind::User, id.clone()),
            _ => self.site_link(t, id, true),
        };
        Ok((DeliveryOutcome::Delivered(AuditOp::Delete), link))
    }

    /// The link of a user the hub sent a site (`false`), or knows is not there (`true`):
    /// the site's id for it is the hub id.
    fn site_link(&self, t: &TargetConfig, id: &str, not_there: bool) -> LinkChange {
        LinkChange::Put(Box::new(self.link(
            t,
            ResourceKind::User,
            id,
            id,
            String::new(),
            Value::Null,
            not_there,
        )))
    }

    /// Signs and sends `envelope` to the site, paced as any target's calls.
    async fn send_to_site(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        op: AuditOp,
        envelope: &Value,
    ) -> Result<(), Failure> {
        let sender = self.connector(t).map_err(|e| {
            (
                op,
                ConnectorError::Refused {
                    status: None,
                    reason: e.0,
                },
            )
        })?;
        self.paced(t, sender.as_ref())
            .relay(&event.id, envelope)
            .await
            .map_err(|e| (op, e))
    }
}
