//! SCIM PATCH (RFC 7644 §3.5.2) with the dialects identity providers really send.
//!
//! STUB: the API below is the contract; the implementation is being written.

use serde_json::Value;

use super::error::ScimError;
use super::filter::Filter;
use super::schema::ResourceSchema;

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
    let _ = (schema, resource, body);
    todo!()
}
