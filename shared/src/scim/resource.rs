//! Validation and normalisation of resource bodies sent by clients (POST / PUT / Bulk).
//!
//! STUB: the API below is the contract; the implementation is being written.

use serde_json::Value;

use super::error::ScimError;
use super::schema::ResourceSchema;

/// Validates a client-sent resource against the schema and returns it normalised:
/// attribute names in their canonical case, extension attributes under their schema URN,
/// `schemas` listing the core schema and each extension present, values coerced where
/// identity providers are known to send the wrong JSON type (Entra's `"True"`/`"False"`),
/// read-only attributes (`id`, `meta`, `groups`, ...) dropped, unknown attributes dropped.
/// Errors: missing required attribute, wrong type, unknown schema URN -> 400.
/// Group `members` are kept (the caller stores them as membership records).
pub fn normalize(schema: &ResourceSchema<'_>, body: &Value) -> Result<Value, ScimError> {
    let _ = (schema, body);
    todo!()
}

/// PUT: an immutable attribute that has a value may not change (400 mutability).
pub fn check_immutable(
    schema: &ResourceSchema<'_>,
    old: &Value,
    new: &Value,
) -> Result<(), ScimError> {
    let _ = (schema, old, new);
    todo!()
}
