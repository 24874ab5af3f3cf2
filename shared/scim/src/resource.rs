//! Validation and normalisation of resource bodies sent by clients (POST / PUT / Bulk).
//!
//! The storage shape (what [`normalize`] returns and what PATCH works on) is a JSON object
//! with `schemas` first, the common attributes (`id`, `externalId`, `meta`) and the core
//! attributes at the top level under their schema-cased names, and each extension's
//! attributes inside an object keyed by the extension URN. Groups keep `members` here as
//! `[{value, type?}]`; the caller moves them into membership records.
//!
//! Decisions (each one is what Entra ID / Okta need, or what RFC 7643/7644 allow):
//! - `schemas` is REQUIRED (RFC 7643 §3) and must list the core schema: 400 `invalidSyntax`
//!   otherwise. Okta and Entra always send it (fixtures `okta/create_user.json`,
//!   `entra/create_user.json`).
//! - A URN in `schemas` that this resource type does not know is ignored as long as the body
//!   carries no attribute under it: Entra's documented Create Group lists a non-URN
//!   Microsoft schema with no data (`entra/create_group.json`). Attributes keyed by an unknown
//!   schema URN (nested object or `urn:...:attr` flat key) are 400 `invalidValue`, so data is
//!   never silently lost to a schema the operator has not registered.
//! - Unknown attributes are dropped (RFC 7644 §3.3 lets a service provider ignore them).
//! - `readOnly` attributes (`id`, `meta`, `groups`, `manager.displayName`, `members.display`)
//!   are dropped silently (RFC 7643 §2.2: "any values provided SHALL be ignored").
//! - `null` and `[]` mean unassigned (RFC 7643 §2.5) and are dropped; so are complex values
//!   with no known sub-attribute left.
//! - Coercions for known IdP quirks: booleans as `"True"`/`"false"` strings (Entra, see
//!   `entra/disable_user_default.json`), integers/decimals as numeric strings, numbers where a
//!   string is expected, a single value where an array is expected (wrapped), a one-element
//!   array where a single value is expected (unwrapped), and a bare scalar for a complex
//!   attribute that has a `value` sub-attribute (Entra's `manager`, `entra/add_manager.json`).
//! - More than one `primary: true` in a multi-valued attribute: the first one is kept and the
//!   others are set to `false` (RFC 7643 §2.4 allows one; rejecting would fail a whole
//!   provisioning cycle over a cosmetic flag).
//! - `canonicalValues` are not enforced (IdPs send custom `type`s).
//! - `password` (writeOnly) is kept: the caller extracts and hashes it.
//! - At most [`crate::limits::MAX_VALUES_PER_ATTRIBUTE`] values in one multi-valued
//!   attribute and [`crate::limits::MAX_MEMBERS_PER_REQUEST`] group members: 400
//!   `invalidValue` naming the cap. Duplicates are found with a set, so the work is linear
//!   in the size of the body.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::limits::{ValueIndex, max_values, too_many_values};
use super::schema::{
    AttrLocation, AttrPath, AttrType, Attribute, Mutability, ResourceKind, ResourceSchema, Schema,
};

/// Where a value being validated comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Sent by a client: `readOnly` values are dropped.
    Client,
    /// Already stored, re-validated after a PATCH: server-set `readOnly` values are kept.
    Stored,
}

/// Validates a client-sent resource against the schema and returns it normalised:
/// attribute names in their canonical case, extension attributes under their schema URN,
/// `schemas` listing the core schema and each extension present, values coerced where
/// identity providers are known to send the wrong JSON type (Entra's `"True"`/`"False"`),
/// read-only attributes (`id`, `meta`, `groups`, ...) dropped, unknown attributes dropped.
/// Errors: missing required attribute, wrong type, unknown schema URN -> 400.
/// Group `members` are kept (the caller stores them as membership records).
pub fn normalize(schema: &ResourceSchema<'_>, body: &Value) -> Result<Value, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the resource must be a JSON object"))?;
    check_schemas_member(schema, obj)?;
    let out = ingest(schema, obj, Mode::Client)?;
    finish(schema, out)
}

/// For PUT (RFC 7644 §3.5.1): an `immutable` attribute that has a value in `old` must have
/// the same value in `new` (RFC 7643 §2.2 "immutable"). Sub-attributes of single-valued
/// complex attributes are checked too. Multi-valued complex attributes with immutable
/// sub-attributes (group `members`) are not compared here: members are stored as records and
/// changed through [`super::patch::MemberChange`].
pub fn check_immutable(
    schema: &ResourceSchema<'_>,
    old: &Value,
    new: &Value,
) -> Result<(), ScimError> {
    let empty = Map::new();
    let old_root = old.as_object().unwrap_or(&empty);
    let new_root = new.as_object().unwrap_or(&empty);
    let check = |loc: AttrLocation<'_>, attrs: &[Attribute]| -> Result<(), ScimError> {
        let (o, n) = match loc {
            AttrLocation::Core => (Some(old_root), Some(new_root)),
            AttrLocation::Extension(urn) => (
                get_ci(old_root, urn).and_then(Value::as_object),
                get_ci(new_root, urn).and_then(Value::as_object),
            ),
        };
        for attr in attrs {
            let ov = o
                .and_then(|m| get_ci(m, &attr.name))
                .filter(|v| is_assigned(v));
            let nv = n
                .and_then(|m| get_ci(m, &attr.name))
                .filter(|v| is_assigned(v));
            if attr.mutability == Mutability::Immutable {
                if let Some(ov) = ov
                    && Some(ov) != nv
                {
                    return Err(ScimError::mutability(format!(
                        "attribute {} is immutable and already has a value",
                        attr.name
                    )));
                }
            } else if attr.is_complex() && !attr.multi_valued {
                let (Some(Value::Object(om)), nv) = (ov, nv) else {
                    continue;
                };
                let nm = nv.and_then(Value::as_object);
                for sub in attr
                    .sub_attributes
                    .iter()
                    .filter(|s| s.mutability == Mutability::Immutable)
                {
                    if let Some(osv) = get_ci(om, &sub.name).filter(|v| is_assigned(v))
                        && nm.and_then(|m| get_ci(m, &sub.name)) != Some(osv)
                    {
                        return Err(ScimError::mutability(format!(
                            "attribute {}.{} is immutable and already has a value",
                            attr.name, sub.name
                        )));
                    }
                }
            }
        }
        Ok(())
    };
    check(AttrLocation::Core, &schema.common.attributes)?;
    check(AttrLocation::Core, &schema.core.attributes)?;
    for (ext, _) in &schema.extensions {
        check(AttrLocation::Extension(ext.id.as_str()), &ext.attributes)?;
    }
    Ok(())
}

/// `schemas` must be an array of strings naming the core schema (RFC 7643 §3).
fn check_schemas_member(
    schema: &ResourceSchema<'_>,
    obj: &Map<String, Value>,
) -> Result<(), ScimError> {
    let Some(list) = get_ci(obj, "schemas") else {
        return Err(ScimError::invalid_syntax(format!(
            "the resource must have a \"schemas\" attribute listing {}",
            schema.core.id
        )));
    };
    let Some(list) = list.as_array() else {
        return Err(ScimError::invalid_syntax(
            "\"schemas\" must be an array of URIs",
        ));
    };
    let mut has_core = false;
    for item in list {
        let Some(urn) = item.as_str() else {
            return Err(ScimError::invalid_syntax(
                "\"schemas\" must be an array of URIs",
            ));
        };
        has_core |= urn.eq_ignore_ascii_case(&schema.core.id);
    }
    if !has_core {
        return Err(ScimError::invalid_syntax(format!(
            "\"schemas\" must list {}",
            schema.core.id
        )));
    }
    Ok(())
}

/// Reads every attribute of `obj` into the storage shape (without `schemas`).
pub(crate) fn ingest(
    schema: &ResourceSchema<'_>,
    obj: &Map<String, Value>,
    mode: Mode,
) -> Result<Map<String, Value>, ScimError> {
    let mut out = Map::new();
    for (key, val) in obj {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if !is_urn(key) {
            set_attr(schema, &mut out, AttrLocation::Core, key, val, mode)?;
            continue;
        }
        if let Some((loc, _)) = schema_for_urn(schema, key) {
            // `"urn:...:enterprise:2.0:User": {...}` (and, rarely, the core URN as a key).
            match val {
                Value::Null => {}
                Value::Object(inner) => {
                    for (k, v) in inner {
                        set_attr(schema, &mut out, loc, k, v, mode)?;
                    }
                }
                _ => {
                    return Err(ScimError::invalid_value(format!(
                        "{key} must be an object of that schema's attributes"
                    )));
                }
            }
            continue;
        }
        // URN-qualified flat key: `urn:...:enterprise:2.0:User:department` (some clients).
        let flat = AttrPath::parse(key).and_then(|p| {
            let urn = p.urn.clone()?;
            schema_for_urn(schema, &urn).map(|(loc, _)| (loc, p))
        });
        match flat {
            Some((loc, p)) => match &p.sub_attr {
                None => set_attr(schema, &mut out, loc, &p.attr, val, mode)?,
                Some(sub) => {
                    let mut wrapped = Map::new();
                    wrapped.insert(sub.clone(), val.clone());
                    set_attr(
                        schema,
                        &mut out,
                        loc,
                        &p.attr,
                        &Value::Object(wrapped),
                        mode,
                    )?
                }
            },
            None => {
                return Err(ScimError::invalid_value(format!(
                    "unknown schema: {key} is not a schema of the {} resource type",
                    schema.kind.as_str()
                )));
            }
        }
    }
    Ok(out)
}

/// Validates one attribute value and stores it under its canonical name.
fn set_attr(
    schema: &ResourceSchema<'_>,
    out: &mut Map<String, Value>,
    loc: AttrLocation<'_>,
    key: &str,
    val: &Value,
    mode: Mode,
) -> Result<(), ScimError> {
    let attr = match loc {
        AttrLocation::Core => schema
            .common
            .attribute(key)
            .or_else(|| schema.core.attribute(key)),
        AttrLocation::Extension(urn) => schema.extension(urn).and_then(|s| s.attribute(key)),
    };
    let Some(attr) = attr else {
        // Unknown attribute: ignored (RFC 7644 §3.3).
        return Ok(());
    };
    if attr.name == "schemas" {
        return Ok(());
    }
    if attr.mutability == Mutability::ReadOnly {
        if mode == Mode::Stored && loc == AttrLocation::Core && is_assigned(val) {
            // Server-set (`id`, `meta`): kept verbatim.
            remove_ci(out, &attr.name);
            out.insert(attr.name.clone(), val.clone());
        }
        return Ok(());
    }
    let label = match loc {
        AttrLocation::Core => attr.name.clone(),
        AttrLocation::Extension(urn) => format!("{urn}:{}", attr.name),
    };
    let Some(mut value) = coerce(attr, val, &label, mode)? else {
        return Ok(());
    };
    if schema.kind == ResourceKind::Group && loc == AttrLocation::Core && attr.name == "members" {
        value = members_storage_shape(value)?;
    }
    let container = container_mut(out, loc);
    match (remove_ci(container, &attr.name), value) {
        // The same complex attribute given twice (case variants, nested + flat URN forms):
        // merged, later keys win.
        (Some(Value::Object(mut prev)), Value::Object(next)) if !attr.multi_valued => {
            for (k, v) in next {
                prev.insert(k, v);
            }
            container.insert(attr.name.clone(), Value::Object(prev));
        }
        (_, value) => {
            container.insert(attr.name.clone(), value);
        }
    }
    Ok(())
}

/// Group members are stored as `{value, type?}`: `display` and `$ref` are computed by the
/// server (RFC 7643 §4.2).
fn members_storage_shape(value: Value) -> Result<Value, ScimError> {
    let Value::Array(items) = value else {
        return Ok(value);
    };
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    let mut seen: HashSet<String> = HashSet::with_capacity(items.len());
    for item in items {
        let id = item.get("value").and_then(Value::as_str);
        let Some(id) = id.filter(|s| !s.is_empty()) else {
            return Err(ScimError::invalid_value(
                "each member must have a \"value\" (the member's id)",
            ));
        };
        if !seen.insert(id.to_string()) {
            continue;
        }
        let mut m = Map::new();
        m.insert("value".into(), Value::String(id.to_string()));
        if let Some(t) = item.get("type").and_then(Value::as_str) {
            m.insert("type".into(), Value::String(t.to_string()));
        }
        out.push(Value::Object(m));
    }
    Ok(Value::Array(out))
}

/// Required attributes, empty extensions, `schemas`: the last step for every stored shape.
pub(crate) fn finish(
    schema: &ResourceSchema<'_>,
    mut out: Map<String, Value>,
) -> Result<Value, ScimError> {
    check_required(&schema.core.attributes, &out, "")?;
    let mut schemas = vec![Value::String(schema.core.id.clone())];
    for (ext, required) in &schema.extensions {
        let present = match get_ci(&out, &ext.id) {
            Some(Value::Object(m)) => !m.is_empty(),
            _ => false,
        };
        if present {
            if let Some(Value::Object(m)) = get_ci(&out, &ext.id) {
                check_required(&ext.attributes, m, &format!("{}:", ext.id))?;
            }
            schemas.push(Value::String(ext.id.clone()));
        } else {
            remove_ci(&mut out, &ext.id);
            if *required {
                return Err(ScimError::invalid_value(format!(
                    "the required schema extension {} is missing",
                    ext.id
                )));
            }
        }
    }
    let mut result = Map::new();
    result.insert("schemas".into(), Value::Array(schemas));
    for (k, v) in out {
        result.insert(k, v);
    }
    Ok(Value::Object(result))
}

fn check_required(
    attrs: &[Attribute],
    obj: &Map<String, Value>,
    prefix: &str,
) -> Result<(), ScimError> {
    for attr in attrs.iter().filter(|a| a.required) {
        let ok = match get_ci(obj, &attr.name) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if !ok {
            return Err(ScimError::invalid_value(format!(
                "the required attribute {prefix}{} is missing or empty",
                attr.name
            )));
        }
    }
    Ok(())
}

/// Validates and coerces a value for `attr` (single or multi-valued). `Ok(None)` means
/// unassigned (RFC 7643 §2.5): `null`, `[]`, or a complex value with nothing left in it.
pub(crate) fn coerce(
    attr: &Attribute,
    v: &Value,
    label: &str,
    mode: Mode,
) -> Result<Option<Value>, ScimError> {
    if !attr.multi_valued {
        return match v {
            // A one-element array for a single-valued attribute: unwrapped (lenient).
            Value::Array(items) => match items.as_slice() {
                [] => Ok(None),
                [one] => coerce_single(attr, one, label, mode),
                _ => Err(ScimError::invalid_value(format!(
                    "attribute {label} is single-valued but an array was given"
                ))),
            },
            _ => coerce_single(attr, v, label, mode),
        };
    }
    let items: Vec<&Value> = match v {
        Value::Null => return Ok(None),
        Value::Array(items) => items.iter().collect(),
        // A single value for a multi-valued attribute: wrapped (IdPs do that).
        other => vec![other],
    };
    let cap = max_values(&attr.name);
    if items.len() > cap {
        return Err(too_many_values(label, items.len(), cap));
    }
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    let mut seen = ValueIndex::new();
    for item in items {
        if let Some(c) = coerce_single(attr, item, label, mode)?
            && seen.find(&out, &c).is_none()
        {
            seen.insert(&c, out.len());
            out.push(c);
        }
    }
    if attr.is_complex() {
        single_primary(&mut out);
    }
    Ok(if out.is_empty() {
        None
    } else {
        Some(Value::Array(out))
    })
}

/// At most one `primary: true` (RFC 7643 §2.4): the first one wins.
pub(crate) fn single_primary(items: &mut [Value]) {
    let mut seen = false;
    for item in items.iter_mut() {
        if let Some(Value::Object(m)) = Some(item)
            && m.get("primary") == Some(&Value::Bool(true))
        {
            if seen {
                m.insert("primary".into(), Value::Bool(false));
            }
            seen = true;
        }
    }
}

/// Validates and coerces one value (one element of a multi-valued attribute).
pub(crate) fn coerce_single(
    attr: &Attribute,
    v: &Value,
    label: &str,
    mode: Mode,
) -> Result<Option<Value>, ScimError> {
    if v.is_null() {
        return Ok(None);
    }
    let wrong =
        |expected: &str| ScimError::invalid_value(format!("attribute {label} must be {expected}"));
    let out = match attr.ty {
        AttrType::String => match v {
            Value::String(_) => v.clone(),
            // A number where a string is expected (employee numbers...): its decimal text.
            Value::Number(n) => Value::String(n.to_string()),
            _ => return Err(wrong("a string")),
        },
        AttrType::Reference => match v {
            Value::String(_) => v.clone(),
            _ => return Err(wrong("a string (a reference)")),
        },
        AttrType::Binary => match v {
            Value::String(s) if is_base64ish(s) => v.clone(),
            _ => return Err(wrong("a base64-encoded string")),
        },
        AttrType::Boolean => match v {
            Value::Bool(_) => v.clone(),
            // Entra's default dialect sends "True"/"False" (entra/disable_user_default.json).
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(wrong("a boolean")),
        },
        AttrType::Integer => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
                _ => return Err(wrong("an integer")),
            },
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => json!(i),
                Err(_) => return Err(wrong("an integer")),
            },
            _ => return Err(wrong("an integer")),
        },
        AttrType::Decimal => match v {
            Value::Number(_) => v.clone(),
            Value::String(s) => match s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Some(n) => Value::Number(n),
                None => return Err(wrong("a decimal number")),
            },
            _ => return Err(wrong("a decimal number")),
        },
        AttrType::DateTime => match v {
            Value::String(s) if chrono::DateTime::parse_from_rfc3339(s.trim()).is_ok() => v.clone(),
            _ => return Err(wrong("an RFC 3339 date-time (xsd:dateTime)")),
        },
        AttrType::Complex => return coerce_complex(attr, v, label, mode),
    };
    Ok(Some(out))
}

fn coerce_complex(
    attr: &Attribute,
    v: &Value,
    label: &str,
    mode: Mode,
) -> Result<Option<Value>, ScimError> {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                // Unknown sub-attributes are ignored, like unknown attributes.
                let Some(sub) = attr.sub(k) else { continue };
                if mode == Mode::Client && sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                let sub_label = format!("{label}.{}", sub.name);
                if let Some(c) = coerce(sub, val, &sub_label, mode)? {
                    out.insert(sub.name.clone(), c);
                }
            }
            Ok(if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            })
        }
        // Entra sends `manager` as the manager's id, not `{"value": id}`
        // (entra/add_manager.json): a scalar is the `value` sub-attribute.
        Value::String(_) | Value::Number(_) | Value::Bool(_) if attr.sub("value").is_some() => {
            let mut m = Map::new();
            m.insert("value".into(), v.clone());
            coerce_complex(attr, &Value::Object(m), label, mode)
        }
        _ => Err(ScimError::invalid_value(format!(
            "attribute {label} must be an object (a complex attribute)"
        ))),
    }
}

/// RFC 4648 alphabet (standard or URL-safe), padding and line breaks (PEM bodies).
fn is_base64ish(s: &str) -> bool {
    s.chars().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_' | '=' | '\r' | '\n' | ' ')
    })
}

/// Is this a value at all? (RFC 7643 §2.5: null and [] are unassigned).
pub(crate) fn is_assigned(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

pub(crate) fn is_urn(s: &str) -> bool {
    s.len() > 4 && s.is_char_boundary(4) && s[..4].eq_ignore_ascii_case("urn:")
}

/// The schema a URN names for this resource type: the core schema or one of its extensions.
pub(crate) fn schema_for_urn<'a>(
    schema: &ResourceSchema<'a>,
    urn: &str,
) -> Option<(AttrLocation<'a>, &'a Schema)> {
    if urn.eq_ignore_ascii_case(&schema.core.id) {
        return Some((AttrLocation::Core, schema.core));
    }
    schema
        .extension(urn)
        .map(|s| (AttrLocation::Extension(s.id.as_str()), s))
}

/// Case-insensitive member lookup (RFC 7643 §2.1: attribute names are case-insensitive).
pub(crate) fn get_ci<'m>(m: &'m Map<String, Value>, name: &str) -> Option<&'m Value> {
    m.get(name).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Removes every case variant of `name`; returns the last one removed.
pub(crate) fn remove_ci(m: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let keys: Vec<String> = m
        .keys()
        .filter(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    let mut last = None;
    for k in keys {
        last = m.remove(&k);
    }
    last
}

/// The object holding attributes at `loc` (an extension object is created on demand).
pub(crate) fn container_mut<'m>(
    root: &'m mut Map<String, Value>,
    loc: AttrLocation<'_>,
) -> &'m mut Map<String, Value> {
    match loc {
        AttrLocation::Core => root,
        AttrLocation::Extension(urn) => {
            let existing = remove_ci(root, urn);
            let obj = match existing {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            root.insert(urn.to_string(), Value::Object(obj));
            match root.get_mut(urn) {
                Some(Value::Object(m)) => m,
                // Just inserted as an object.
                _ => unreachable!("extension container was inserted as an object"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, SchemaRegistry, USER_SCHEMA};

    fn user(body: Value) -> Result<Value, ScimError> {
        let reg = SchemaRegistry::builtin();
        normalize(&reg.view(ResourceKind::User), &body)
    }

    fn group(body: Value) -> Result<Value, ScimError> {
        let reg = SchemaRegistry::builtin();
        normalize(&reg.view(ResourceKind::Group), &body)
    }

    #[test]
    fn entra_create_user_fixture() {
        let body: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/entra/create_user.json"
        ))
        .unwrap();
        let out = user(body).unwrap();
        assert_eq!(out["schemas"], json!([USER_SCHEMA]));
        assert_eq!(
            out["userName"],
            "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
        );
        assert_eq!(out["active"], true);
        assert_eq!(out["name"]["givenName"], "givenName");
        assert_eq!(out["emails"][0]["type"], "work");
        assert!(out.get("meta").is_none(), "readOnly meta dropped");
        assert!(out.get("roles").is_none(), "empty array is unassigned");
    }

    #[test]
    fn entra_create_group_fixture_with_foreign_schema_uri() {
        let body: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/entra/create_group.json"
        ))
        .unwrap();
        let out = group(body).unwrap();
        assert_eq!(out["schemas"], json!([GROUP_SCHEMA]));
        assert_eq!(out["displayName"], "displayName");
        assert_eq!(out["externalId"], "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");
    }

    #[test]
    fn okta_create_user_and_put_fixtures() {
        let body: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/okta/create_user.json"
        ))
        .unwrap();
        let out = user(body).unwrap();
        assert_eq!(
            out["password"], "1mz050nq",
            "writeOnly password kept for the caller"
        );
        assert!(out.get("groups").is_none());
        assert_eq!(out["locale"], "en-US");
        let body: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/okta/put_user.json"))
                .unwrap();
        let out = user(body).unwrap();
        assert!(out.get("id").is_none(), "readOnly id dropped");
        assert_eq!(out["name"]["middleName"], "Excited");
        assert!(out["emails"][0].get("display").is_some());
    }

    #[test]
    fn okta_create_group_fixture() {
        let body: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/okta/create_group.json"
        ))
        .unwrap();
        let out = group(body).unwrap();
        assert_eq!(out["displayName"], "Test SCIMv2");
        assert!(out.get("members").is_none());
    }

    #[test]
    fn canonical_case_extensions_and_flat_urn_keys() {
        let out = user(json!({
            "schemas": [USER_SCHEMA.to_uppercase().replace("URN:", "urn:"), ENTERPRISE_USER_SCHEMA],
            "USERNAME": "bjensen",
            "Name": {"GIVENNAME": "Barbara", "bogus": 1},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"Department": "Tour"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": 701984,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager": "26118915",
            "nonsense": true
        }))
        .unwrap();
        assert_eq!(out["userName"], "bjensen");
        assert_eq!(out["name"], json!({"givenName": "Barbara"}));
        let ext = &out[ENTERPRISE_USER_SCHEMA];
        assert_eq!(ext["department"], "Tour");
        assert_eq!(ext["employeeNumber"], "701984");
        assert_eq!(ext["manager"], json!({"value": "26118915"}));
        assert_eq!(out["schemas"], json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]));
        assert!(out.get("nonsense").is_none());
    }

    #[test]
    fn schemas_rules() {
        let e = user(json!({"userName": "a"})).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::ScimType::InvalidSyntax));
        let e = user(json!({"schemas": [GROUP_SCHEMA], "userName": "a"})).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::ScimType::InvalidSyntax));
        let e = user(json!({"schemas": [USER_SCHEMA], "userName": "a",
            "urn:example:custom:2.0:User": {"x": 1}}))
        .unwrap_err();
        assert_eq!(e.scim_type, Some(crate::ScimType::InvalidValue));
        assert!(e.detail.contains("unknown schema"));
        let e = user(json!({"schemas": [USER_SCHEMA], "userName": "a",
            "urn:example:custom:2.0:User:badge": 1}))
        .unwrap_err();
        assert!(e.detail.contains("unknown schema"));
        assert!(user(json!("x")).is_err());
    }

    #[test]
    fn types_and_coercions() {
        let out = user(
            json!({"schemas": [USER_SCHEMA], "userName": "a", "active": "False",
            "emails": {"value": "a@b", "primary": "true"}}),
        )
        .unwrap();
        assert_eq!(out["active"], false);
        assert_eq!(out["emails"], json!([{"value": "a@b", "primary": true}]));
        let e =
            user(json!({"schemas": [USER_SCHEMA], "userName": "a", "active": "yes"})).unwrap_err();
        assert!(e.detail.contains("active"));
        let e = user(json!({"schemas": [USER_SCHEMA], "userName": "a", "name": "x"})).unwrap_err();
        assert!(e.detail.contains("name"));
        let e = user(json!({"schemas": [USER_SCHEMA], "userName": ["a", "b"]})).unwrap_err();
        assert!(e.detail.contains("userName"));
        let e = user(json!({"schemas": [USER_SCHEMA], "userName": "a", "x509Certificates": [{"value": "not base64!"}]})).unwrap_err();
        assert!(e.detail.contains("x509Certificates.value"));
    }

    #[test]
    fn custom_extension_types() {
        let reg = SchemaRegistry::builtin()
            .add_extension(
                ResourceKind::User,
                r#"{"id":"urn:example:acme:2.0:User","name":"Acme","attributes":[
                    {"name":"badge","type":"integer"},{"name":"ratio","type":"decimal"},
                    {"name":"hired","type":"dateTime"},{"name":"serial","type":"string","mutability":"immutable"}]}"#,
                false,
            )
            .unwrap();
        let s = reg.view(ResourceKind::User);
        let out = normalize(&s, &json!({"schemas": [USER_SCHEMA], "userName": "a",
            "urn:example:acme:2.0:User": {"badge": "42", "ratio": "0.5", "hired": "2024-01-02T03:04:05Z", "serial": "s1"}}))
        .unwrap();
        assert_eq!(out["urn:example:acme:2.0:User"]["badge"], 42);
        assert_eq!(out["urn:example:acme:2.0:User"]["ratio"], 0.5);
        assert_eq!(out["schemas"][1], "urn:example:acme:2.0:User");
        for bad in [
            json!({"badge": "4.5"}),
            json!({"ratio": "x"}),
            json!({"hired": "2024-13-01"}),
        ] {
            let e = normalize(&s, &json!({"schemas": [USER_SCHEMA], "userName": "a", "urn:example:acme:2.0:User": bad})).unwrap_err();
            assert_eq!(e.status, 400);
        }
        let changed = normalize(
            &s,
            &json!({"schemas": [USER_SCHEMA], "userName": "a",
            "urn:example:acme:2.0:User": {"serial": "s2"}}),
        )
        .unwrap();
        let e = check_immutable(&s, &out, &changed).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::ScimType::Mutability));
        check_immutable(&s, &out, &out).unwrap();
        let unset = normalize(&s, &json!({"schemas": [USER_SCHEMA], "userName": "a"})).unwrap();
        check_immutable(&s, &unset, &changed).unwrap();
        assert!(check_immutable(&s, &out, &unset).is_err());
    }

    #[test]
    fn required_and_unassigned() {
        for body in [
            json!({"schemas": [USER_SCHEMA]}),
            json!({"schemas": [USER_SCHEMA], "userName": ""}),
            json!({"schemas": [USER_SCHEMA], "userName": null}),
        ] {
            let e = user(body).unwrap_err();
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidValue));
            assert!(e.detail.contains("userName"));
        }
        let e = group(json!({"schemas": [GROUP_SCHEMA]})).unwrap_err();
        assert!(e.detail.contains("displayName"));
        let out = user(json!({"schemas": [USER_SCHEMA], "userName": "a", "name": {"givenName": null},
            "emails": [], "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": null}}))
        .unwrap();
        assert_eq!(out, json!({"schemas": [USER_SCHEMA], "userName": "a"}));
    }

    #[test]
    fn primary_and_duplicates() {
        let out = user(json!({"schemas": [USER_SCHEMA], "userName": "a", "emails": [
            {"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}, {"value": "a@x", "primary": true}]}))
        .unwrap();
        assert_eq!(
            out["emails"],
            json!([{"value": "a@x", "primary": true}, {"value": "b@x", "primary": false}])
        );
    }

    #[test]
    fn group_members_shape() {
        let out = group(json!({"schemas": [GROUP_SCHEMA], "displayName": "g", "members": [
            {"value": "u1", "display": "x", "$ref": "https://h/Users/u1"}, {"value": "g2", "type": "Group"}]}))
        .unwrap();
        assert_eq!(
            out["members"],
            json!([{"value": "u1"}, {"value": "g2", "type": "Group"}])
        );
        let e = group(
            json!({"schemas": [GROUP_SCHEMA], "displayName": "g", "members": [{"type": "User"}]}),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some(crate::ScimType::InvalidValue));
    }
}
