//! Updates (PUT and PATCH), retried on lost optimistic-concurrency races.

use super::keys::{UniqueAttr, member_key};
use super::{
    Directory, DirectoryError, MembershipDiff, Saved, Stored, WRITE_ATTEMPTS, WriteContext,
    WriteRole, as_object_mut, check_if_match, check_key_lengths, etag, member_item, now_rfc3339,
    prepare_body, reorder, strip_meta, take_password, to_item, unique_item,
};
use crate::event::ChangeOp;
use crate::store::{Condition, MAX_TRANSACT_ITEMS, Write};
use provisync_scim::ResourceKind;
use provisync_scim::patch::{MemberChange, apply_patch};
use provisync_scim::resource::check_immutable;
use serde_json::{Value, json};

impl Directory {
    /// Replaces a resource (PUT, RFC 7644 §3.5.1).
    pub async fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Saved, DirectoryError> {
        self.replace_in(kind, id, body, if_match, &WriteContext::default())
            .await
    }

    /// [`Directory::replace`] with an origin and extra writes in the same transaction. A
    /// replacement that changes nothing writes nothing (not the extra writes either) and
    /// returns the stored version unchanged.
    pub async fn replace_in(
        &self,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        ctx: &WriteContext,
    ) -> Result<Saved, DirectoryError> {
        let view = self.schemas.view(kind);
        let (incoming, password, members) = prepare_body(&self.schemas, kind, body).await?;
        self.check_members_exist(&members).await?;
        for attempt in 0.. {
            let current = self.load(kind, id).await?;
            check_if_match(if_match, current.version)?;
            check_immutable(&view, &current.resource, &incoming)?;
            let member_changes = match kind {
                ResourceKind::Group => vec![MemberChange::Replace(members.clone())],
                ResourceKind::User => vec![],
            };
            match self
                .write_update(
                    kind,
                    &current,
                    incoming.clone(),
                    &member_changes,
                    if_match.is_some(),
                    password.as_deref(),
                    ctx,
                )
                .await
            {
                Err(DirectoryError::Conflict) if attempt + 1 < WRITE_ATTEMPTS => {
                    continue;
                }
                r => return r.map(|stored| Saved { stored, password }),
            }
        }
        unreachable!("the loop returns")
    }

    /// Applies a PatchOp (RFC 7644 §3.5.2).
    pub async fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Saved, DirectoryError> {
        for attempt in 0.. {
            let current = self.load(kind, id).await?;
            check_if_match(if_match, current.version)?;
            let (resource, password, plan) = {
                let schemas = self.schemas.clone();
                let stored = current.resource.clone();
                let body = body.clone();
                // Off the reactor: a PATCH may carry a thousand operations.
                crate::cpu::run(move || -> Result<_, DirectoryError> {
                    let mut plan = apply_patch(&schemas.view(kind), &stored, &body)?;
                    let mut resource = std::mem::take(&mut plan.resource);
                    let password = take_password(&mut resource);
                    check_key_lengths(kind, &resource)?;
                    Ok((resource, password, plan))
                })
                .await
                .map_err(|e| DirectoryError::Internal(e.to_string()))??
            };
            for change in &plan.member_changes {
                if let MemberChange::Add(m) | MemberChange::Replace(m) = change {
                    self.check_members_exist(m).await?;
                }
            }
            match self
                .write_update(
                    kind,
                    &current,
                    resource,
                    &plan.member_changes,
                    if_match.is_some(),
                    password.as_deref(),
                    &WriteContext::default(),
                )
                .await
            {
                Err(DirectoryError::Conflict) if attempt + 1 < WRITE_ATTEMPTS => {
                    continue;
                }
                r => return r.map(|stored| Saved { stored, password }),
            }
        }
        unreachable!("the loop returns")
    }

    /// Writes a new state of an existing resource: bumps the version (conditional on the
    /// one read), moves uniqueness keys that changed, applies membership changes.
    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        kind: ResourceKind,
        current: &Stored,
        mut resource: Value,
        member_changes: &[MemberChange],
        precondition: bool,
        password: Option<&str>,
        ctx: &WriteContext,
    ) -> Result<Stored, DirectoryError> {
        let id = current.id().to_string();
        let MembershipDiff { adds, removes } =
            self.resolve_member_changes(&id, member_changes).await?;
        // Carry over what the client cannot set.
        let obj = as_object_mut(&mut resource)?;
        obj.insert("id".into(), json!(id));
        obj.remove("groups");
        obj.remove("members");
        let mut meta = current
            .resource
            .get("meta")
            .cloned()
            .unwrap_or_else(|| json!({}));

        let unchanged = strip_meta(&resource) == strip_meta(&current.resource)
            && adds.is_empty()
            && removes.is_empty()
            // A new password is a change even though the directory does not keep it.
            && password.is_none();
        if unchanged {
            // A PATCH or PUT that changes nothing writes nothing (IdPs resend a lot).
            return Ok(current.clone());
        }
        let version = current.version + 1;
        meta["lastModified"] = json!(now_rfc3339());
        meta["version"] = json!(etag(version));
        as_object_mut(&mut resource)?.insert("meta".into(), meta);
        let resource = reorder(resource);

        let mut writes = vec![Write::Put {
            item: to_item(kind, &id, &resource, version)?,
            condition: Condition::VersionIs(current.version),
        }];
        let mut roles = vec![WriteRole::Resource];
        for attr in UniqueAttr::for_kind(kind) {
            let old = attr.value_in(&current.resource).map(|v| attr.normalise(v));
            let new = attr.value_in(&resource);
            if old.as_deref() == new.map(|v| attr.normalise(v)).as_deref() {
                continue;
            }
            if let Some(old) = attr.value_in(&current.resource) {
                writes.push(Write::delete(attr.key(kind, old)));
                roles.push(WriteRole::Other);
            }
            if let Some(new) = new {
                writes.push(Write::put_new(unique_item(kind, *attr, new, &id)));
                roles.push(WriteRole::Unique(*attr, new.to_string()));
            }
        }
        for w in &ctx.extra {
            writes.push(w.clone());
            roles.push(WriteRole::Other);
        }
        let failed_precondition = || {
            if precondition {
                Some(DirectoryError::VersionConflict)
            } else {
                None
            }
        };
        // Room beside the resource's own writes and the change event's.
        let room = MAX_TRANSACT_ITEMS.saturating_sub(self.event_room() + writes.len());
        let mut member_writes: Vec<Write> = adds
            .iter()
            .map(|m| Write::put(member_item(&id, m)))
            .chain(removes.iter().map(|m| Write::delete(member_key(&id, m))))
            .collect();
        if member_writes.len() > room {
            // More membership changes than one transaction holds: the surplus goes first,
            // in transactions of its own, each conditioned on the resource still being at
            // the version read and carrying the change event of what it changes. A
            // failure or a concurrent write at any point leaves the resource as it was
            // plus some memberships (each announced to the targets); the caller's retry
            // computes the difference again from there and finishes the job.
            let surplus: Vec<Write> = member_writes.drain(..member_writes.len() - room).collect();
            self.write_members_guarded(kind, current, surplus, failed_precondition, &ctx.origin())
                .await?;
        }
        let event = self.event_for(
            kind,
            &id,
            ChangeOp::Update,
            (&resource, version),
            &member_writes,
            password,
            &ctx.origin(),
        );
        roles.extend(member_writes.iter().map(|_| WriteRole::Other));
        writes.extend(member_writes);
        self.commit_change(kind, writes, &roles, failed_precondition(), event, false)
            .await?;
        Ok(Stored { resource, version })
    }
}
