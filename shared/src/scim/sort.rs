//! Sorting (RFC 7644 §3.4.2.3). STUB: being written on branch `filter`.

use serde_json::Value;

use super::schema::{AttrPath, ResourceSchema};

pub fn sort_resources(
    schema: &ResourceSchema<'_>,
    resources: &mut [Value],
    sort_by: &AttrPath,
    descending: bool,
) {
    let _ = (schema, resources, sort_by, descending);
    todo!()
}
