//! Reading attribute paths out of SCIM-shaped JSON, with attribute names matched
//! case-insensitively (RFC 7643 §2.1).

use serde_json::Value;

use crate::schema::{AttrPath, GROUP_SCHEMA, USER_SCHEMA};

/// The value at `path` in a resource, as a string: a multi-valued attribute gives its
/// primary value, or its first (RFC 7643 §2.4).
pub fn read_path(resource: &Value, path: &AttrPath) -> Option<String> {
    let container = match &path.urn {
        Some(urn) => {
            // A core attribute may be written fully qualified too.
            let schemas_core = [USER_SCHEMA, GROUP_SCHEMA];
            if schemas_core.iter().any(|c| c.eq_ignore_ascii_case(urn)) {
                resource
            } else {
                get_ci(resource, urn)?
            }
        }
        None => resource,
    };
    let mut v = get_ci(container, &path.attr)?;
    if let Value::Array(items) = v {
        v = items
            .iter()
            .find(|i| get_ci(i, "primary").and_then(Value::as_bool) == Some(true))
            .or_else(|| items.first())?;
    }
    if let Some(sub) = &path.sub_attr {
        v = get_ci(v, sub)?;
    } else if v.is_object() {
        // A multi-valued complex attribute without sub-attribute means its `value`.
        v = get_ci(v, "value")?;
    }
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The member `key` of an object, the name matched case-insensitively.
pub fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let o = v.as_object()?;
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}
