//! What one delivery to one target came to, written: its audit entry, the run's outcome,
//! a held change, and, when the event is done with the target, the receipt with the link
//! change, all in one transaction. The event's last receipt also carries the ack of the
//! queue message it came in, when the queue lives in the hub's store
//! ([`crate::queue::AckWith`]): one transaction fewer per delivered change.

use super::audit::AuditEntry;
use super::deliver::{Deliverer, DeliveryError};
use super::held::{Held, HeldChange};
use super::link::{LinkChange, Links};
use super::runs::outcome_write;
use crate::event::ChangeEvent;
use crate::queue::AckWith;
use crate::store::Write;

impl Deliverer {
    /// Writes the outcome of delivering `event` to `target`. `receipt`: the link change
    /// when the event is done with the target (`None`: it comes back). `ack`: the message
    /// to ack in the same transaction, when nothing is left to retry (`retry` unset).
    /// A failure to write (or to keep a held change) sets `retry`. `true`: acked.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_outcome(
        &self,
        event: &ChangeEvent,
        target: &str,
        audit: AuditEntry,
        held: Option<HeldChange>,
        mut receipt: Option<LinkChange>,
        ack: Option<AckWith<'_>>,
        retry: &mut Option<DeliveryError>,
    ) -> bool {
        let mut writes: Vec<Write> = Vec::new();
        match held.map(|h| Held::hold_write(&h)) {
            Some(Ok(w)) => writes.push(w),
            Some(Err(e)) => {
                // Not kept: not done either (the event comes back).
                receipt = None;
                retry.get_or_insert(DeliveryError::Retry {
                    after: None,
                    detail: e.to_string(),
                });
            }
            None => {}
        }
        match outcome_write(event, target, &audit) {
            Ok(w) => writes.extend(w),
            Err(e) => tracing::error!(error = %e, "run outcome not written"),
        }
        match self.audit.write_for(audit) {
            Ok(w) => writes.push(w),
            Err(e) => tracing::error!(error = %e, "audit entry not written"),
        }
        let store = self.links.store();
        let mut acked = false;
        let written = match (receipt, ack.filter(|_| retry.is_none())) {
            (Some(link), Some(ack)) => {
                match Links::receipt_writes(&event.id, target, link, writes) {
                    Ok(w) => ack.commit_with(store, w).await.map(|done| acked = done),
                    Err(e) => Err(e),
                }
            }
            (Some(link), None) => {
                self.links
                    .mark_delivered(&event.id, target, link, writes)
                    .await
            }
            (None, _) if writes.is_empty() => Ok(()),
            (None, _) => store.transact(writes).await,
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "delivery outcome not written");
            retry.get_or_insert(DeliveryError::Retry {
                after: None,
                detail: e.to_string(),
            });
        }
        acked
    }
}
