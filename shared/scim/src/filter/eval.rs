//! Evaluation of a filter against a resource (or one element of a multi-valued attribute).

use std::cmp::Ordering;

use serde_json::Value;

use super::compare::{Leaf, equals, order, substring};
use super::validate::resolve_attr;
use super::{CompValue, CompareOp, Filter};
use crate::schema::{AttrLocation, AttrPath, Attribute, ResourceSchema};

impl Filter {
    /// Does `resource` (a full SCIM resource in JSON) match?
    pub fn matches(&self, schema: &ResourceSchema<'_>, resource: &Value) -> bool {
        eval(self, Scope::Resource(schema), resource)
    }

    /// Does one element of the multi-valued complex attribute `parent` match? (value
    /// filters in PATCH paths and value paths).
    pub fn matches_element(&self, parent: &Attribute, element: &Value) -> bool {
        eval(self, Scope::Element(Some(parent)), element)
    }
}

/// Object member by name, exact first, then ASCII case-insensitively (RFC 7643 §2.1:
/// attribute names are case-insensitive; stored resources are normalised, but we do not
/// rely on it).
pub(crate) fn get_ci<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The elements of a multi-valued value, or the value itself.
fn elements(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// RFC 7644 §3.4.2.2 `pr`: "If the attribute has a non-empty value, or if it contains a
/// non-empty node for complex attributes, there is a match."
pub(super) fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(members) => members.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// The JSON of the top-level attribute a resolved path lives in.
pub(crate) fn attr_json<'v>(
    resource: &'v Value,
    location: AttrLocation<'_>,
    name: &str,
) -> Option<&'v Value> {
    match location {
        AttrLocation::Core => get_ci(resource, name),
        AttrLocation::Extension(urn) => get_ci(get_ci(resource, urn)?, name),
    }
}

#[derive(Clone, Copy)]
enum Scope<'s, 'a> {
    /// Paths are full attribute paths into a resource.
    Resource(&'s ResourceSchema<'a>),
    /// Paths are sub-attribute names of one element of this complex attribute (`None`
    /// when the attribute is not in the schema: evaluate without type information).
    Element(Option<&'s Attribute>),
}

/// What a path points at in one resource / element.
struct Target<'v, 's> {
    /// Leaf values (multi-valued attributes flattened).
    values: Vec<&'v Value>,
    /// Definition of the leaf, when known.
    def: Option<&'s Attribute>,
}

fn locate<'v, 's>(scope: Scope<'s, '_>, path: &AttrPath, v: &'v Value) -> Target<'v, 's> {
    let (raw, attr_def, sub_def): (Option<&Value>, Option<&Attribute>, Option<&Attribute>) =
        match scope {
            Scope::Resource(schema) => match resolve_attr(schema, path) {
                Some(r) => (attr_json(v, r.location, &r.attr.name), Some(r.attr), r.sub),
                // Not in the schema (validate() rejects that before a query runs, but
                // scoping filters and stored data may disagree): look it up anyway.
                None => {
                    let location = match &path.urn {
                        Some(urn) if get_ci(v, urn).is_some() => AttrLocation::Extension(urn),
                        _ => AttrLocation::Core,
                    };
                    (attr_json(v, location, &path.attr), None, None)
                }
            },
            Scope::Element(parent) => {
                let def = parent.and_then(|p| p.sub(&path.attr));
                let sub = match (&path.sub_attr, def) {
                    (Some(s), Some(d)) => d.sub(s),
                    _ => None,
                };
                (get_ci(v, &path.attr), def, sub)
            }
        };
    let mut values = Vec::new();
    if let Some(raw) = raw {
        for item in elements(raw) {
            match &path.sub_attr {
                None => values.push(item),
                Some(sub) => {
                    if let Some(x) = get_ci(item, sub) {
                        values.extend(elements(x));
                    }
                }
            }
        }
    }
    let def = match &path.sub_attr {
        None => attr_def,
        Some(_) => sub_def,
    };
    Target { values, def }
}

fn eval(filter: &Filter, scope: Scope<'_, '_>, v: &Value) -> bool {
    match filter {
        Filter::And(l, r) => eval(l, scope, v) && eval(r, scope, v),
        Filter::Or(l, r) => eval(l, scope, v) || eval(r, scope, v),
        Filter::Not(inner) => !eval(inner, scope, v),
        Filter::Present(path) => locate(scope, path, v).values.into_iter().any(is_present),
        Filter::Compare { path, op, value } => {
            let target = locate(scope, path, v);
            compare_target(&target, *op, value)
        }
        Filter::ValuePath { path, filter } => {
            // RFC 7644 §3.4.2.2: the inner filter applies to each element on its own; one
            // element must satisfy all of it.
            let target = locate(scope, path, v);
            let inner_scope = Scope::Element(target.def);
            target
                .values
                .into_iter()
                .any(|element| eval(filter, inner_scope, element))
        }
    }
}

fn compare_target(target: &Target<'_, '_>, op: CompareOp, value: &CompValue) -> bool {
    // Complex attribute compared directly (`emails co "x"`): compare each element's
    // `value` sub-attribute (RFC 7644 §3.4.2.2).
    let complex = target.def.is_some_and(Attribute::is_complex);
    let value_def = if complex {
        target.def.and_then(|d| d.sub("value"))
    } else {
        target.def
    };
    let leaf = Leaf {
        ty: value_def.map(|d| d.ty),
        // RFC 7643 §2.2: caseExact defaults to false.
        case_exact: value_def.is_some_and(|d| d.case_exact),
    };
    let leaves: Vec<&Value> = target
        .values
        .iter()
        .filter_map(|v| match v {
            Value::Object(_) if complex || target.def.is_none() => get_ci(v, "value"),
            _ => Some(*v),
        })
        .filter(|v| is_present(v))
        .collect();
    match (op, value) {
        // `eq null` asks whether there is no value; `ne null` whether there is one.
        (CompareOp::Eq, CompValue::Null) => leaves.is_empty(),
        (CompareOp::Ne, CompValue::Null) => !leaves.is_empty(),
        // `ne` is the complement of `eq`: true when the attribute is absent or when no
        // value equals. (Read literally, "any value matches" would make
        // `emails.type ne "work"` true for a user with a work and a home address, which
        // is never what a scoping filter means.)
        (CompareOp::Ne, _) => !leaves.iter().any(|v| equals(v, value, leaf)),
        (CompareOp::Eq, _) => leaves.iter().any(|v| equals(v, value, leaf)),
        (CompareOp::Co | CompareOp::Sw | CompareOp::Ew, CompValue::Str(needle)) => {
            leaves.iter().any(|v| substring(v, needle, op, leaf))
        }
        (CompareOp::Co | CompareOp::Sw | CompareOp::Ew, _) => false,
        (CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le, _) => {
            leaves.iter().any(|v| {
                order(v, value, leaf).is_some_and(|o| match op {
                    CompareOp::Gt => o == Ordering::Greater,
                    CompareOp::Ge => o != Ordering::Less,
                    CompareOp::Lt => o == Ordering::Less,
                    _ => o != Ordering::Greater,
                })
            })
        }
    }
}
