//! Validation of a filter against a resource schema.

use std::fmt;

use super::{CompValue, CompareOp, Filter};
use crate::error::ScimError;
use crate::schema::{AttrLocation, AttrPath, AttrType, Attribute, ResolvedAttr, ResourceSchema};

/// Resolves a path against a resource type: [`ResourceSchema::resolve`], and for a path
/// without a URN that names no core or common attribute, the one extension that defines it.
/// RFC 7644 §3.10 has clients qualify extension attributes with the schema URN, but some
/// send the bare name (`employeeNumber`); when exactly one extension defines it there is no
/// ambiguity, so we accept it.
pub fn resolve_attr<'a>(schema: &ResourceSchema<'a>, path: &AttrPath) -> Option<ResolvedAttr<'a>> {
    if let Some(r) = schema.resolve(path) {
        return Some(r);
    }
    if path.urn.is_some() {
        return None;
    }
    let mut found = None;
    for &(ext, _) in &schema.extensions {
        let Some(attr) = ext.attribute(&path.attr) else {
            continue;
        };
        let sub = match &path.sub_attr {
            None => None,
            Some(name) => match attr.sub(name) {
                Some(s) => Some(s),
                None => continue,
            },
        };
        if found.is_some() {
            return None; // defined by two extensions: the client must say which
        }
        found = Some(ResolvedAttr {
            location: AttrLocation::Extension(ext.id.as_str()),
            attr,
            sub,
        });
    }
    found
}

fn unknown_attribute(path: &dyn fmt::Display) -> ScimError {
    ScimError::invalid_filter(format!("unknown attribute `{path}` in filter"))
}

/// Checks that `op value` makes sense for an attribute defined by `leaf`.
fn check_comparison(
    path: &dyn fmt::Display,
    leaf: &Attribute,
    op: CompareOp,
    value: &CompValue,
) -> Result<(), ScimError> {
    // RFC 7644 §3.4.2.2: a multi-valued complex attribute without a sub-attribute is
    // compared through its `value` sub-attribute (`emails co "example.com"`). We apply the
    // same rule to any complex attribute that has a `value` (the enterprise `manager`).
    // Other complex attributes (`name`, `addresses`) have nothing to compare against.
    let leaf = if leaf.is_complex() {
        leaf.sub("value").ok_or_else(|| {
            ScimError::invalid_filter(format!(
                "`{path}` is a complex attribute: compare one of its sub-attributes instead"
            ))
        })?
    } else {
        leaf
    };
    if op.is_ordering() {
        // RFC 7644 §3.4.2.2, gt/ge/lt/le: "If comparing a Boolean or Binary attribute,
        // the server SHALL return an HTTP 400 error with a scimType of invalidFilter".
        if matches!(leaf.ty, AttrType::Boolean | AttrType::Binary) {
            return Err(ScimError::invalid_filter(format!(
                "`{op}` cannot be used on `{path}`, a {} attribute",
                if leaf.ty == AttrType::Boolean {
                    "boolean"
                } else {
                    "binary"
                }
            )));
        }
        if matches!(value, CompValue::Null | CompValue::Bool(_)) {
            return Err(ScimError::invalid_filter(format!(
                "`{op}` needs a string or a number to compare `{path}` with, not {value}"
            )));
        }
    }
    if op.is_substring() && !matches!(value, CompValue::Str(_)) {
        return Err(ScimError::invalid_filter(format!(
            "`{op}` needs a string to compare `{path}` with, not {value}"
        )));
    }
    Ok(())
}

impl Filter {
    /// Checks every attribute path against the schema: unknown attributes are 400
    /// `invalidFilter`.
    pub fn validate(&self, schema: &ResourceSchema<'_>) -> Result<(), ScimError> {
        match self {
            Filter::Compare { path, op, value } => {
                let r = resolve_attr(schema, path).ok_or_else(|| unknown_attribute(path))?;
                check_comparison(path, r.leaf(), *op, value)
            }
            Filter::Present(path) => resolve_attr(schema, path)
                .map(|_| ())
                .ok_or_else(|| unknown_attribute(path)),
            Filter::And(l, r) | Filter::Or(l, r) => {
                l.validate(schema)?;
                r.validate(schema)
            }
            Filter::Not(inner) => inner.validate(schema),
            Filter::ValuePath { path, filter } => {
                let r = resolve_attr(schema, path).ok_or_else(|| unknown_attribute(path))?;
                if path.sub_attr.is_some() || !r.attr.is_complex() {
                    return Err(ScimError::invalid_filter(format!(
                        "`{path}[...]`: a value filter applies to a complex attribute"
                    )));
                }
                filter.validate_in(r.attr, path)
            }
        }
    }

    /// Checks a value filter (paths relative to the elements of `parent`, as in
    /// `emails[type eq "work"]` or a PATCH path). Errors are 400 `invalidFilter`.
    pub fn validate_element(&self, parent: &Attribute) -> Result<(), ScimError> {
        self.validate_in(parent, &parent.name)
    }

    fn validate_in(
        &self,
        parent: &Attribute,
        parent_path: &dyn fmt::Display,
    ) -> Result<(), ScimError> {
        let sub_of = |path: &AttrPath| -> Result<&Attribute, ScimError> {
            let name = format!("{parent_path}.{path}");
            if path.urn.is_some() || path.sub_attr.is_some() {
                return Err(unknown_attribute(&name));
            }
            parent
                .sub(&path.attr)
                .ok_or_else(|| unknown_attribute(&name))
        };
        match self {
            Filter::Compare { path, op, value } => {
                let leaf = sub_of(path)?;
                check_comparison(&format_args!("{parent_path}.{path}"), leaf, *op, value)
            }
            Filter::Present(path) => sub_of(path).map(|_| ()),
            Filter::And(l, r) | Filter::Or(l, r) => {
                l.validate_in(parent, parent_path)?;
                r.validate_in(parent, parent_path)
            }
            Filter::Not(inner) => inner.validate_in(parent, parent_path),
            Filter::ValuePath { .. } => Err(ScimError::invalid_filter(
                "value paths cannot be nested inside a value filter",
            )),
        }
    }
}
