//! What one delivery to one target came to, written: its audit entry, the run's outcome,
//! a held change, and, when the event is done with the target, the receipt with the link
//! change, all in one transaction. The event's last receipt also carries the ack of the
//! queue message it came in, when the queue lives in the hub's store
//! ([`crate::queue::AckWith`]): one transaction fewer per delivered change. Follow-up
//! events (members a delivery did not reach, `deliver_members`) go into the outbox just
//! before that transaction, and to the queue after it.

use super::audit::AuditEntry;
use super::deliver::{Deliverer, DeliveryError};
use super::held::{Held, HeldChange};
use super::link::{LinkChange, Links};
use super::runs::outcome_write;
use crate::event::{ChangeEvent, outbox_write, publish};
use crate::queue::AckWith;
use crate::store::{MAX_TRANSACT_ITEMS, StoreError, Write};

impl Deliverer {
    /// Writes the outcome of delivering `event` to `target`. `receipt`: the link change
    /// when the event is done with the target (`None`: it comes back). `follow_ups`: events
    /// for what the delivery left (kept only with a receipt, and before it). `ack`: the message to ack
    /// in the same transaction, when nothing is left to retry (`retry` unset).
    /// A failure to write (or to keep a held change) sets `retry`. `true`: acked.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_outcome(
        &self,
        event: &ChangeEvent,
        target: &str,
        audit: AuditEntry,
        held: Option<HeldChange>,
        mut receipt: Option<LinkChange>,
        follow_ups: &[ChangeEvent],
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
        let mut kept: &[ChangeEvent] = &[];
        if receipt.is_some() && !follow_ups.is_empty() {
            match self.keep_follow_ups(follow_ups).await {
                Ok(()) => kept = follow_ups,
                Err(e) => {
                    // Not kept: not done either (the event comes back and leaves them
                    // again; any kept meanwhile only name members to look at again).
                    receipt = None;
                    retry.get_or_insert(DeliveryError::Retry {
                        after: None,
                        detail: format!("follow-up events: {e}"),
                    });
                }
            }
        }
        match outcome_write(event, target, &audit, kept) {
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
        match written {
            Err(e) => {
                tracing::error!(error = %e, "delivery outcome not written");
                retry.get_or_insert(DeliveryError::Retry {
                    after: None,
                    detail: e.to_string(),
                });
            }
            Ok(()) if !kept.is_empty() => self.send_follow_ups(kept).await,
            Ok(()) => {}
        }
        acked
    }

    /// Writes follow-up events to the outbox, before the receipt (in transactions of
    /// their own: a user joining hundreds of groups leaves as many).
    async fn keep_follow_ups(&self, events: &[ChangeEvent]) -> Result<(), StoreError> {
        for chunk in events.chunks(MAX_TRANSACT_ITEMS) {
            let writes = chunk
                .iter()
                .map(outbox_write)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            self.links.store().transact(writes).await?;
        }
        Ok(())
    }

    /// Sends follow-up events already in the outbox to the queue (and clears them there);
    /// on failure, or without a queue, the outbox sweep sends them.
    async fn send_follow_ups(&self, events: &[ChangeEvent]) {
        let Some(queue) = self.queue.as_deref() else {
            return;
        };
        if let Err(e) = publish(self.links.store().as_ref(), queue, events).await {
            tracing::warn!(error = %e, events = events.len(), "follow-up events left to the outbox sweep");
        }
    }
}
