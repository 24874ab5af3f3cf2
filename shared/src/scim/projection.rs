//! `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9) and the `returned`
//! characteristic of each attribute (RFC 7643 §7).
//!
//! STUB: the API below is the contract; the implementation is being written.

use serde_json::Value;

use super::error::ScimError;
use super::schema::{AttrPath, ResourceSchema};

/// Parses a comma-separated attribute list (`userName,name.givenName,urn:...:manager`).
/// Unknown attributes are allowed by the RFC and ignored; malformed names -> 400.
pub fn parse_attribute_list(s: &str) -> Result<Vec<AttrPath>, ScimError> {
    let _ = s;
    todo!()
}

/// What a client asked to see.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Projection {
    pub attributes: Vec<AttrPath>,
    pub excluded: Vec<AttrPath>,
}

impl Projection {
    /// Would `path` be in the output? (lets the store skip computing e.g. a user's
    /// `groups` or a group's `members` when they would be dropped anyway).
    pub fn includes(&self, schema: &ResourceSchema<'_>, path: &AttrPath) -> bool {
        let _ = (schema, path);
        todo!()
    }

    /// Applies the projection and the `returned` rules (`never` always dropped, `always`
    /// always kept, `request` only when named) to a full resource.
    pub fn apply(&self, schema: &ResourceSchema<'_>, resource: &Value) -> Value {
        let _ = (schema, resource);
        todo!()
    }
}
