//! Deletes: the resource, its uniqueness keys and everything that points at it.

use super::counts::count_write;
use super::keys::{UniqueAttr, member_key, resource_key};
use super::{
    Directory, DirectoryError, Stored, WRITE_ATTEMPTS, WriteContext, WriteRole, check_if_match,
};
use crate::event::ChangeOp;
use crate::store::{Condition, Write};
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
    /// the resource's removal. Without `If-Match`, a concurrent write to the resource
    /// makes the delete start again from the new state.
    pub async fn delete_in(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
        ctx: &WriteContext,
    ) -> Result<Stored, DirectoryError> {
        for attempt in 0.. {
            match self.delete_once(kind, id, if_match, ctx).await {
                Err(DirectoryError::Conflict)
                    if if_match.is_none() && attempt + 1 < WRITE_ATTEMPTS =>
                {
                    continue;
                }
                r => return r,
            }
        }
        unreachable!("the loop returns")
    }

    /// One attempt. Order: memberships first, each transaction guarded by the version
    /// read and announcing what it removes (a user's groups hear that it left them);
    /// the resource last, conditionally. Whatever step fails, the resource still exists
    /// and a retry finishes the job from there; nothing is removed unannounced.
    async fn delete_once(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
        ctx: &WriteContext,
    ) -> Result<Stored, DirectoryError> {
        let current = self.load(kind, id).await?;
        check_if_match(if_match, current.version)?;
        let on_mismatch = || {
            Some(if if_match.is_some() {
                DirectoryError::VersionConflict
            } else {
                DirectoryError::Conflict
            })
        };
        let origin = ctx.origin();
        if kind == ResourceKind::Group {
            let own: Vec<Write> = self
                .members_of(id)
                .await?
                .into_iter()
                .map(|m| Write::delete(member_key(id, &m.value)))
                .collect();
            self.write_members_guarded(kind, &current, own, on_mismatch, &origin)
                .await?;
        }
        // Users, and groups that are members of other groups.
        self.leave_all_groups(kind, &current, on_mismatch, &origin)
            .await?;
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
        // The deletion is the resource's last version: an older event that arrives later
        // is stale.
        let event = self.event_for(
            kind,
            id,
            ChangeOp::Delete,
            (&current.resource, current.version + 1),
            &[],
            None,
            &origin,
        );
        writes.extend(ctx.extra.iter().cloned());
        // Any failed condition: the resource changed meanwhile.
        let roles = vec![WriteRole::Resource; writes.len()];
        self.commit_change(kind, writes, &roles, on_mismatch(), event, false)
            .await?;
        Ok(current)
    }
}
