//! SCIM PATCH (RFC 7644 §3.5.2) with the dialects identity providers really send.
//!
//! The operations are applied to a copy of the stored resource, which is then validated
//! again exactly like a POST body (types, required attributes, `primary`, immutables): all
//! or nothing. Group membership is never applied to the JSON; it becomes
//! [`MemberChange`]s in request order.
//!
//! Dialects and decisions (fixtures in `tests/fixtures/`, see the README there):
//! - `op` is matched case-insensitively: Entra sends `Add`/`Replace`/`Remove`.
//! - Entra's default dialect: booleans as `"True"`/`"False"` (`entra/disable_user_default.json`),
//!   `manager` as a bare id (`entra/add_manager.json`), member removal as
//!   `remove members` with a value array that lists the members to remove
//!   (`entra/remove_member_default.json`) -> only those are removed.
//! - Entra's `aadOptscim062020` dialect: a path-less `replace` whose value has dotted keys
//!   (`name.givenName`), URN-qualified keys and value-filter keys
//!   (`entra/replace_multiple_aadopt.json`). Every key of a path-less value is handled as if
//!   it were the path of its own operation.
//! - `replace` (or `add`) on `attr[filter]` / `attr[filter].sub` when no element matches:
//!   RFC 7644 §3.5.2.3 says 400 `noTarget`, but Entra sends
//!   `replace emails[type eq "work"].value` to users that have no work email yet and expects
//!   it to be created (`entra/update_user_multi_valued.json`). When the filter is made only of
//!   `eq` comparisons joined by `and`, the element is created from them (`{"type": "work",
//!   "value": ...}`); any other filter gives `noTarget`.
//! - Okta: a path-less `replace` of `{"active": false}` (`okta/patch_deactivate_user.json`);
//!   a group rename that repeats the group's `id` (`okta/patch_group_rename.json`): in a
//!   path-less value an `id` equal to the stored one is ignored, a different one is 400
//!   `mutability`; other `readOnly` attributes there (`meta`, `groups` echoed from a GET) are
//!   ignored as in a PUT body (RFC 7644 §3.5.1). With a `path`, any `readOnly` target is 400
//!   `mutability`.
//! - `replace` with a path and no (or a `null`) value unassigns the attribute (Entra clears
//!   extension attributes that way); `add` without a value is 400 `invalidSyntax`.
//! - `replace` on a single-valued complex attribute replaces the sub-attributes given and
//!   keeps the others (RFC 7644 §3.5.2.3); `replace` on `attr[filter]` replaces the matching
//!   elements whole.
//! - `remove` without a path is 400 `noTarget` (RFC 7644 §3.5.2.2); removing a required
//!   attribute fails re-validation with 400 `invalidValue`; targeting a `readOnly` attribute
//!   is 400 `mutability`; an `immutable` one may only be set while it has no value.
//! - `remove attr[filter]` matching nothing is a no-op (idempotent retries).
//! - `add` to a multi-valued attribute appends the new elements that are not already present;
//!   a new element with `primary: true` clears `primary` on the others (RFC 7644 §3.5.2).
//! - Unknown attributes: 400 `invalidPath` in a `path`, ignored inside a path-less value
//!   (like unknown attributes in a POST body).
//! - Limits ([`crate::limits`]): at most 1,000 operations, 10,000 members named by all of
//!   them together, 1,000 values in a multi-valued attribute after any operation: 400
//!   `invalidValue` naming the cap.

mod apply;
mod edit;
mod members;
mod request;

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::error::ScimError;
use crate::filter::Filter;
use crate::limits::{MAX_MEMBERS_PER_REQUEST, too_many_members};
use crate::resource::{Mode, check_immutable, finish, ingest, remove_ci};
use crate::schema::{ResourceKind, ResourceSchema};

use apply::Ctx;
use request::parse_body;

/// A member reference as sent by a client (`{"value": id, "type"?: "User"|"Group"}`).
#[derive(Clone, Debug, PartialEq)]
pub struct MemberRef {
    pub value: String,
    pub kind: Option<String>,
}

/// A change to a group's membership. Group members are stored one record per member
/// (a 100,000-member group must not be rewritten for one change), so PATCH operations
/// on `members` are not applied to the JSON but handed to the store in order.
#[derive(Clone, Debug, PartialEq)]
pub enum MemberChange {
    Add(Vec<MemberRef>),
    /// Remove these member ids (`members[value eq "id"]`, Entra's value array).
    Remove(Vec<String>),
    /// Remove the members matching a filter other than `value eq` (rare; costs a listing).
    RemoveWhere(Filter),
    /// `remove members` with no filter.
    RemoveAll,
    /// `replace members`: the new complete list.
    Replace(Vec<MemberRef>),
}

impl MemberChange {
    /// How many members the change names.
    pub fn size(&self) -> usize {
        match self {
            MemberChange::Add(m) | MemberChange::Replace(m) => m.len(),
            MemberChange::Remove(ids) => ids.len(),
            MemberChange::RemoveWhere(_) | MemberChange::RemoveAll => 0,
        }
    }
}

/// The outcome of a PATCH request.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPlan {
    /// The patched resource (for groups: without `members`).
    pub resource: Value,
    /// Membership changes, in request order (always empty for users).
    pub member_changes: Vec<MemberChange>,
}

/// Applies a PatchOp request body to `resource` (a stored, normalised SCIM resource; for
/// groups, without `members`). `resource` is unchanged on error: all or nothing.
pub fn apply_patch(
    schema: &ResourceSchema<'_>,
    resource: &Value,
    body: &Value,
) -> Result<PatchPlan, ScimError> {
    let ops = parse_body(body)?;
    let doc = resource
        .as_object()
        .cloned()
        .ok_or_else(|| ScimError::internal("the stored resource is not a JSON object"))?;
    let mut ctx = Ctx {
        schema,
        doc,
        changes: Vec::new(),
    };
    for op in &ops {
        ctx.apply(op)?;
    }
    // The members all the operations name together (each operation's own list is capped
    // as it is read).
    let named: usize = ctx.changes.iter().map(MemberChange::size).sum();
    if named > MAX_MEMBERS_PER_REQUEST {
        return Err(too_many_members(named));
    }
    let Ctx {
        mut doc, changes, ..
    } = ctx;
    if schema.kind == ResourceKind::Group {
        remove_ci(&mut doc, "members");
    }
    let patched = finish(schema, ingest(schema, &doc, Mode::Stored)?)?;
    check_immutable(schema, resource, &patched)?;
    Ok(PatchPlan {
        resource: patched,
        member_changes: changes,
    })
}
