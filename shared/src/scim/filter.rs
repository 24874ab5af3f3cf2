//! The SCIM filter language (RFC 7644 §3.4.2.2): parser, printer and evaluator.
//!
//! STUB: the API below is the contract; the implementation is being written.

use serde_json::Value;

use super::error::ScimError;
use super::schema::{AttrPath, Attribute, ResourceSchema};

/// Deepest nesting of parentheses / `not` / value paths a filter may have.
pub const MAX_FILTER_DEPTH: usize = 32;
/// Longest filter string accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A comparison value: JSON `false` / `null` / `true` / number / string.
#[derive(Clone, Debug, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// `attrPath op value`
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    /// `attrPath pr`
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    /// `not ( filter )`
    Not(Box<Filter>),
    /// `attrPath [ valFilter ]` — `filter` paths are relative to the elements of `path`.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

/// A PATCH path (RFC 7644 §3.5.2): `attrPath [ "[" valFilter "]" ] [ "." subAttr ]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// Sub-attribute after a value filter (`emails[type eq "work"].value`).
    pub sub_attr: Option<String>,
}

/// Parses a filter. Errors are 400 `invalidFilter` with a detail that says where.
pub fn parse(input: &str) -> Result<Filter, ScimError> {
    let _ = input;
    todo!()
}

/// Parses a PATCH path. Errors are 400 `invalidPath`.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, ScimError> {
    let _ = input;
    todo!()
}

impl Filter {
    /// Checks every attribute path against the schema: unknown attributes are 400
    /// `invalidFilter`.
    pub fn validate(&self, schema: &ResourceSchema<'_>) -> Result<(), ScimError> {
        let _ = schema;
        todo!()
    }

    /// Does `resource` (a full SCIM resource in JSON) match?
    pub fn matches(&self, schema: &ResourceSchema<'_>, resource: &Value) -> bool {
        let _ = (schema, resource);
        todo!()
    }

    /// Does one element of the multi-valued complex attribute `parent` match? (value
    /// filters in PATCH paths and value paths).
    pub fn matches_element(&self, parent: &Attribute, element: &Value) -> bool {
        let _ = (parent, element);
        todo!()
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let _ = f;
        todo!()
    }
}
