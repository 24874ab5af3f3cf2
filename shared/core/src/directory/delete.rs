//! Deletes: the resource, its uniqueness keys and everything that points at it.

use super::counts::count_write;
use super::keys::{UniqueAttr, member_key, resource_key};
use super::{Directory, DirectoryError, Stored, WriteContext, check_if_match, store_error};
use crate::event::{ChangeOp, outbox_write};
use crate::store::{Condition, Key, MAX_TRANSACT_ITEMS, StoreError, Write};
use provisync_scim::ResourceKind;

impl Directory {
    /// Deletes a resource and everything that points at it (uniqueness keys, its
    /// memberships, and a group's member items).
    pub async fn delete(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<Stored, DirectoryError> {
        self.delete_in(kind, id, if_match, &WriteContext::default())
            .await
    }

    /// [`Directory::delete`] with an origin and extra writes in the same transaction as
    /// the resource's removal.
    pub async fn delete_in(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
        ctx: &WriteContext,
    ) -> Result<Stored, DirectoryError> {
        let current = self.load(kind, id).await?;
        check_if_match(if_match, current.version)?;
        // Memberships first: if we stop half way the resource still exists and a retry
        // finishes the job; the reverse would leave memberships of a ghost.
        let membership_keys: Vec<Key> = match kind {
            ResourceKind::User => self
                .groups_of_ids(id)
                .await?
                .into_iter()
                .map(|g| member_key(&g, id))
                .collect(),
            ResourceKind::Group => {
                let mut ks: Vec<Key> = self
                    .members_of(id)
                    .await?
                    .into_iter()
                    .map(|m| member_key(id, &m.value))
                    .collect();
                // A group can be a member of other groups too.
                ks.extend(
                    self.groups_of_ids(id)
                        .await?
                        .into_iter()
                        .map(|g| member_key(&g, id)),
                );
                ks
            }
        };
        for chunk in membership_keys.chunks(MAX_TRANSACT_ITEMS) {
            self.store
                .transact(chunk.iter().cloned().map(Write::delete).collect())
                .await
                .map_err(store_error)?;
        }
        // The resource and its count, in one transaction (`counts.rs`).
        let mut writes = vec![
            Write::Delete {
                key: resource_key(kind, id),
                condition: Condition::VersionIs(current.version),
            },
            count_write(kind, -1),
        ];
        for attr in UniqueAttr::for_kind(kind) {
            if let Some(v) = attr.value_in(&current.resource) {
                writes.push(Write::delete(attr.key(kind, v)));
            }
        }
        // Targets need what identified the resource there: the last state rides along.
        let event = self.event_for(
            kind,
            id,
            ChangeOp::Delete,
            (&current.resource, 0),
            &[],
            None,
            &ctx.origin(),
        );
        writes.extend(ctx.extra.iter().cloned());
        if let Some(e) = &event {
            writes.push(outbox_write(e).map_err(|e| DirectoryError::Internal(e.to_string()))?);
        }
        match self.store.transact(writes).await {
            Ok(()) => {
                self.publish(&event.into_iter().collect::<Vec<_>>()).await;
                Ok(current)
            }
            Err(StoreError::ConditionFailed { .. }) if if_match.is_some() => {
                Err(DirectoryError::VersionConflict)
            }
            Err(StoreError::ConditionFailed { .. }) => Err(DirectoryError::Conflict),
            Err(e) => Err(store_error(e)),
        }
    }
}
