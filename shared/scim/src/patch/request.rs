//! Reading a PatchOp request body: the operations, their kinds and their paths.

use serde_json::Value;

use crate::error::ScimError;
use crate::filter::Filter;
use crate::limits::MAX_PATCH_OPERATIONS;
use crate::resource::get_ci;
use crate::schema::{AttrPath, PATCH_OP};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OpKind {
    Add,
    Replace,
    Remove,
}

pub(super) struct Op<'b> {
    pub(super) kind: OpKind,
    pub(super) path: Option<&'b str>,
    pub(super) value: Option<&'b Value>,
}

/// RFC 7644 §3.5.2: `schemas` lists the PatchOp URN; `Operations` is a non-empty array.
pub(super) fn parse_body(body: &Value) -> Result<Vec<Op<'_>>, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the PATCH body must be a JSON object"))?;
    let lists_patch_op = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP)))
        });
    if !lists_patch_op {
        return Err(ScimError::invalid_syntax(format!(
            "\"schemas\" must list {PATCH_OP}"
        )));
    }
    let ops = match get_ci(obj, "Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => ops,
        _ => {
            return Err(ScimError::invalid_syntax(
                "\"Operations\" must be a non-empty array of operations",
            ));
        }
    };
    if ops.len() > MAX_PATCH_OPERATIONS {
        return Err(ScimError::invalid_value(format!(
            "{} operations in one PATCH request; at most {MAX_PATCH_OPERATIONS} are accepted",
            ops.len()
        )));
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            let o = op.as_object().ok_or_else(|| {
                ScimError::invalid_syntax(format!("operation {i} is not an object"))
            })?;
            let kind = match get_ci(o, "op").and_then(Value::as_str) {
                Some(s) if s.eq_ignore_ascii_case("add") => OpKind::Add,
                Some(s) if s.eq_ignore_ascii_case("replace") => OpKind::Replace,
                Some(s) if s.eq_ignore_ascii_case("remove") => OpKind::Remove,
                _ => {
                    return Err(ScimError::invalid_syntax(format!(
                        "operation {i}: \"op\" must be add, replace or remove"
                    )));
                }
            };
            let path = match get_ci(o, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(s.as_str()),
                Some(_) => {
                    return Err(ScimError::invalid_path(format!(
                        "operation {i}: \"path\" must be a string"
                    )));
                }
            };
            Ok(Op {
                kind,
                path,
                value: get_ci(o, "value"),
            })
        })
        .collect()
}

/// A parsed PATCH target: `path.sub_attr` holds the sub-attribute whichever form it had
/// (`name.givenName` or `emails[...].value`).
pub(super) struct Target {
    pub(super) path: AttrPath,
    pub(super) filter: Option<Filter>,
}

pub(super) fn parse_target(p: &str) -> Result<Target, ScimError> {
    // Attribute paths are ASCII (RFC 7643 §2.1 ATTRNAME, RFC 8141 URNs).
    if !p.is_ascii() {
        return Err(ScimError::invalid_path(
            "the path is not a valid attribute path",
        ));
    }
    let pp = crate::filter::parse_patch_path(p)?;
    let mut path = pp.attr;
    match (path.sub_attr.is_some(), pp.sub_attr) {
        (true, Some(_)) => {
            return Err(ScimError::invalid_path("the path has two sub-attributes"));
        }
        (false, Some(sub)) => path.sub_attr = Some(sub),
        _ => {}
    }
    Ok(Target {
        path,
        filter: pp.filter,
    })
}

/// Paths echoed in error details are cut short (details are shown to the client and logged).
pub(super) fn short(s: &str) -> &str {
    match s.char_indices().nth(120) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
