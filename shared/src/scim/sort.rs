//! Sorting of query results (RFC 7644 §3.4.2.3).
//!
//! * `sortBy` names one attribute in standard attribute notation (§3.10). A complex
//!   attribute must be named through a sub-attribute (`name.familyName`); a multi-valued
//!   attribute sorts by its primary value, or else its first value (§3.4.2.3).
//! * Strings compare by Unicode code point, case-insensitively unless the attribute is
//!   `caseExact` (§3.4.2.3: "case-insensitive Unicode alphabetic sort order, with no
//!   specific locale implied"); numbers and dateTimes compare by value.
//! * Missing values: "if there is no data for the specified sortBy value, they are sorted
//!   via the sortOrder parameter, i.e., they are ordered last if ascending and first if
//!   descending" (§3.4.2.3). So descending is exactly the reverse of ascending.
//! * The sort is stable: resources with equal keys keep their store order, which keeps
//!   paging deterministic.
//! * An unknown (but well-formed) `sortBy` is accepted: the RFC gives no error for it, and
//!   sorting is OPTIONAL, so every resource then has "no data" and the store order is kept.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};
use serde_json::{Number, Value};

use super::error::ScimError;
use super::filter::{attr_json, cmp_numbers, get_ci, parse_attr_path, parse_instant, resolve_attr};
use super::schema::{AttrLocation, AttrPath, AttrType, Attribute, ResourceSchema};

/// Parses and checks a `sortBy` parameter.
///
/// 400 `invalidValue` when it is not an attribute path, or names a complex attribute that
/// has no `value` sub-attribute to sort by (`sortBy=name`: §3.4.2.3 says "if the attribute
/// is complex the attribute name must be a path to a sub-attribute"). Unknown attributes
/// are accepted (see the module documentation).
pub fn validate_sort_by(schema: &ResourceSchema<'_>, sort_by: &str) -> Result<AttrPath, ScimError> {
    let s = sort_by.trim();
    let path = parse_attr_path(s).ok_or_else(|| {
        ScimError::invalid_value(format!(
            "sortBy `{}` is not an attribute path",
            s.chars().take(64).collect::<String>().escape_debug()
        ))
    })?;
    if let Some(r) = resolve_attr(schema, &path)
        && r.sub.is_none()
        && r.attr.is_complex()
        && r.attr.sub("value").is_none()
    {
        return Err(ScimError::invalid_value(format!(
            "sortBy `{path}` is a complex attribute: name one of its sub-attributes (e.g. `{}.{}`)",
            r.attr.name,
            r.attr
                .sub_attributes
                .first()
                .map(|a| a.name.as_str())
                .unwrap_or("value")
        )));
    }
    Ok(path)
}

/// Sorts resources in place by `sort_by` (stable; see the module documentation for the
/// rules).
pub fn sort_resources(
    schema: &ResourceSchema<'_>,
    resources: &mut [Value],
    sort_by: &AttrPath,
    descending: bool,
) {
    let resolved = resolve_attr(schema, sort_by);
    let (location, attr_name, leaf_def) = match &resolved {
        Some(r) => (r.location, r.attr.name.as_str(), Some(r.leaf())),
        None => (AttrLocation::Core, sort_by.attr.as_str(), None),
    };
    // A path that does not resolve would be found nowhere in a normalised resource; still
    // look it up by name (URN-qualified names in their extension object) so data outside
    // the schema sorts sensibly.
    let location = match (&resolved, &sort_by.urn) {
        (None, Some(urn)) => AttrLocation::Extension(urn.as_str()),
        _ => location,
    };
    let keys: Vec<Option<Key>> = resources
        .iter()
        .map(|r| {
            let raw = attr_json(r, location, attr_name)?;
            sort_value(raw, sort_by.sub_attr.as_deref(), leaf_def)
                .and_then(|v| Key::of(v, leaf_def))
        })
        .collect();
    let mut order: Vec<usize> = (0..resources.len()).collect();
    // `sort_by` is stable; reversing the comparator (not the result) keeps equal keys in
    // store order in both directions.
    order.sort_by(|&a, &b| {
        let o = cmp_keys(keys[a].as_ref(), keys[b].as_ref());
        if descending { o.reverse() } else { o }
    });
    let mut taken: Vec<Value> = resources.iter_mut().map(std::mem::take).collect();
    for (slot, &i) in resources.iter_mut().zip(&order) {
        *slot = std::mem::take(&mut taken[i]);
    }
}

/// The single value a resource sorts by: for a multi-valued attribute, the primary
/// element, else the first (§3.4.2.3); for a complex element without a named
/// sub-attribute, its `value`.
fn sort_value<'v>(
    raw: &'v Value,
    sub: Option<&str>,
    leaf_def: Option<&Attribute>,
) -> Option<&'v Value> {
    let element = match raw {
        Value::Array(items) => items
            .iter()
            .find(|e| get_ci(e, "primary").and_then(Value::as_bool) == Some(true))
            .or_else(|| items.first())?,
        other => other,
    };
    let v = match sub {
        Some(sub) => get_ci(element, sub)?,
        None if element.is_object() || leaf_def.is_some_and(Attribute::is_complex) => {
            get_ci(element, "value")?
        }
        None => element,
    };
    // A multi-valued sub-attribute (not in the standard schemas): first value.
    match v {
        Value::Array(items) => items.first(),
        other => Some(other),
    }
}

/// A sort key. Different kinds only meet when stored data disagrees with the schema; they
/// then order by kind so that the order stays total.
#[derive(Debug)]
enum Key {
    Bool(bool),
    Number(Number),
    Instant(DateTime<FixedOffset>),
    Text(String),
}

impl Key {
    fn of(v: &Value, def: Option<&Attribute>) -> Option<Key> {
        // For a complex leaf (`emails`), the type and case rules are those of `value`.
        let def = match def {
            Some(d) if d.is_complex() => d.sub("value"),
            other => other,
        };
        match v {
            Value::Bool(b) => Some(Key::Bool(*b)),
            Value::Number(n) => Some(Key::Number(n.clone())),
            // No data: sorts as missing (§3.4.2.3).
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => {
                let ty = def.map(|d| d.ty);
                if ty == Some(AttrType::DateTime)
                    && let Some(t) = parse_instant(s)
                {
                    return Some(Key::Instant(t));
                }
                // RFC 7643 §2.2: caseExact defaults to false.
                if def.is_some_and(|d| d.case_exact) {
                    Some(Key::Text(s.clone()))
                } else {
                    Some(Key::Text(s.to_lowercase()))
                }
            }
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Key::Bool(_) => 0,
            Key::Number(_) => 1,
            Key::Instant(_) => 2,
            Key::Text(_) => 3,
        }
    }
}

fn cmp_keys(a: Option<&Key>, b: Option<&Key>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        // Missing values last in ascending order (first once reversed for descending).
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => match (a, b) {
            (Key::Bool(x), Key::Bool(y)) => x.cmp(y),
            (Key::Number(x), Key::Number(y)) => cmp_numbers(x, y).unwrap_or_else(|| {
                // NaN cannot occur in JSON numbers; stay total anyway.
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.total_cmp(&y)
            }),
            (Key::Instant(x), Key::Instant(y)) => x.cmp(y),
            (Key::Text(x), Key::Text(y)) => x.cmp(y),
            _ => a.rank().cmp(&b.rank()),
        },
    }
}

#[cfg(test)]
mod tests {}
