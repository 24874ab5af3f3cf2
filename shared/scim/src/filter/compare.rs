//! Comparison of one JSON value with a comparison value: strings (caseExact), numbers,
//! booleans and dateTimes.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset, NaiveDateTime};
use serde_json::{Number, Value};

use super::{CompValue, CompareOp};
use crate::schema::AttrType;

/// How the values of a leaf compare.
#[derive(Clone, Copy)]
pub(super) struct Leaf {
    pub(super) ty: Option<AttrType>,
    pub(super) case_exact: bool,
}

/// Parses an RFC 3339 / xsd:dateTime instant (RFC 7643 §2.3.5). A value without a zone
/// is taken as UTC, as xsd:dateTime leaves it to the application.
pub(crate) fn parse_instant(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc().fixed_offset())
}

/// Numbers compare exactly when both are integers, else as f64.
pub(crate) fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// String comparison honouring caseExact (RFC 7643 §2.2: case-insensitive unless
/// caseExact).
fn fold(s: &str, leaf: Leaf) -> std::borrow::Cow<'_, str> {
    if leaf.case_exact {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.to_lowercase())
    }
}

fn is_date_time(leaf: Leaf) -> bool {
    leaf.ty == Some(AttrType::DateTime)
}

pub(super) fn equals(v: &Value, value: &CompValue, leaf: Leaf) -> bool {
    match (v, value) {
        (Value::Bool(a), CompValue::Bool(b)) => a == b,
        (Value::Number(a), CompValue::Number(b)) => cmp_numbers(a, b) == Some(Ordering::Equal),
        (Value::String(a), CompValue::Str(b)) => {
            if is_date_time(leaf)
                && let (Some(x), Some(y)) = (parse_instant(a), parse_instant(b))
            {
                return x == y;
            }
            fold(a, leaf) == fold(b, leaf)
        }
        _ => false,
    }
}

pub(super) fn substring(v: &Value, needle: &str, op: CompareOp, leaf: Leaf) -> bool {
    let Value::String(hay) = v else {
        return false;
    };
    let (hay, needle) = (fold(hay, leaf), fold(needle, leaf));
    match op {
        CompareOp::Co => hay.contains(needle.as_ref()),
        CompareOp::Sw => hay.starts_with(needle.as_ref()),
        _ => hay.ends_with(needle.as_ref()),
    }
}

/// `v` compared with `value`, for gt/ge/lt/le. `None` when they do not compare: booleans,
/// binary, mixed types.
pub(super) fn order(v: &Value, value: &CompValue, leaf: Leaf) -> Option<Ordering> {
    if matches!(leaf.ty, Some(AttrType::Boolean | AttrType::Binary)) {
        return None;
    }
    match (v, value) {
        (Value::Number(a), CompValue::Number(b)) => cmp_numbers(a, b),
        (Value::String(a), CompValue::Str(b)) => {
            // dateTime compares as instants: "2011-05-13T04:42:34Z" and
            // "2011-05-13T06:42:34+02:00" are the same moment. Falls back to the strings.
            if (is_date_time(leaf) || leaf.ty.is_none())
                && let (Some(x), Some(y)) = (parse_instant(a), parse_instant(b))
            {
                return Some(x.cmp(&y));
            }
            Some(fold(a, leaf).cmp(&fold(b, leaf)))
        }
        _ => None,
    }
}
