//! Attribute mapping: what a hub resource looks like on one target.
//!
//! The identity mapping first (every attribute the client may write, without the hub's
//! `id`, `meta`, computed `groups`/`members` and any password), with `externalId` set to
//! the hub id so the target can always name us; then the target's rules for that kind of
//! resource (users or groups: [`crate::target::AppliesTo`]) in order; then,
//! for groups, the group-to-group mapping of `displayName`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::target::AttributeMapping;
use provisync_scim::ResourceKind;
use provisync_scim::schema::AttrPath;

/// Reads the value at `path` (`attr`, `attr.sub`, `urn:…:attr[.sub]`) in a resource.
/// Attribute names match case-insensitively.
pub fn get_path<'a>(resource: &'a Value, path: &str) -> Option<&'a Value> {
    let p = AttrPath::parse(path)?;
    let container = match &p.urn {
        Some(urn) if !is_core(urn) => get_ci(resource, urn)?,
        _ => resource,
    };
    let v = get_ci(container, &p.attr)?;
    match &p.sub_attr {
        None => Some(v),
        Some(sub) => match v {
            // `emails.value`: the primary element's, else the first's.
            Value::Array(items) => items
                .iter()
                .find(|i| i.get("primary") == Some(&Value::Bool(true)))
                .or_else(|| items.first())
                .and_then(|i| get_ci(i, sub)),
            other => get_ci(other, sub),
        },
    }
}

/// Writes `value` at `path`, creating objects on the way (`None` removes).
pub fn set_path(resource: &mut Value, path: &str, value: Option<Value>) {
    let Some(p) = AttrPath::parse(path) else {
        return;
    };
    let Some(root) = resource.as_object_mut() else {
        return;
    };
    let container = match &p.urn {
        Some(urn) if !is_core(urn) => {
            let key = existing_key(root, urn).unwrap_or_else(|| urn.clone());
            let entry = root.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            match entry.as_object_mut() {
                Some(m) => m,
                None => return,
            }
        }
        _ => root,
    };
    let key = existing_key(container, &p.attr).unwrap_or_else(|| p.attr.clone());
    match (&p.sub_attr, value) {
        (None, Some(v)) => {
            container.insert(key, v);
        }
        (None, None) => {
            container.remove(&key);
        }
        (Some(sub), v) => {
            let entry = container
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Some(m) = entry.as_object_mut() {
                let sk = existing_key(m, sub).unwrap_or_else(|| sub.clone());
                match v {
                    Some(v) => {
                        m.insert(sk, v);
                    }
                    None => {
                        m.remove(&sk);
                    }
                }
            }
        }
    }
    // An extension left empty is dropped.
    if let Some(urn) = &p.urn
        && let Some(root) = resource.as_object_mut()
        && let Some(k) = existing_key(root, urn)
        && root
            .get(&k)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        root.remove(&k);
    }
}

fn is_core(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(provisync_scim::schema::USER_SCHEMA)
        || urn.eq_ignore_ascii_case(provisync_scim::schema::GROUP_SCHEMA)
}

fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let m = v.as_object()?;
    m.get(key).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn existing_key(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()
}

/// The resource as this target should receive it: the target's rules for this kind of
/// resource only (a user rule never reaches a group: a server that knows no `userType` on
/// groups refuses the group).
pub fn map_resource(
    kind: ResourceKind,
    hub_id: &str,
    resource: &Value,
    rules: &[AttributeMapping],
    group_mapping: &BTreeMap<String, String>,
) -> Value {
    let mut out = resource.clone();
    if let Some(m) = out.as_object_mut() {
        for k in ["id", "meta", "groups", "members", "password"] {
            m.remove(k);
        }
        m.insert("externalId".into(), Value::String(hub_id.to_string()));
    }
    for rule in rules.iter().filter(|r| r.applies_to.kind() == kind) {
        let value = if rule.drop {
            None
        } else if let Some(v) = &rule.value {
            Some(v.clone())
        } else {
            rule.source
                .as_deref()
                .and_then(|s| get_path(resource, s).cloned())
                .or_else(|| rule.default.clone())
        };
        set_path(&mut out, &rule.target, value);
    }
    if kind == ResourceKind::Group
        && let Some(name) = out.get("displayName").and_then(Value::as_str)
        && let Some(mapped) = group_mapping.get(name)
    {
        out["displayName"] = Value::String(mapped.clone());
    }
    // `schemas` lists the extensions actually present.
    if let Some(m) = out.as_object_mut() {
        let core = kind.core_schema().to_string();
        let mut schemas = vec![Value::String(core)];
        schemas.extend(
            m.keys()
                .filter(|k| k.starts_with("urn:"))
                .map(|k| Value::String(k.clone())),
        );
        m.insert("schemas".into(), Value::Array(schemas));
    }
    out
}

/// A stable hash of what was delivered (key order does not matter): an update whose hash
/// equals the last delivered one changes nothing on the target and is skipped.
pub fn content_hash(v: &Value) -> String {
    use sha2::{Digest, Sha256};
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for k in keys {
                    out.push_str(&serde_json::to_string(k).unwrap_or_default());
                    out.push(':');
                    canonical(&m[k], out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for x in a {
                    canonical(x, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    canonical(v, &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Is this resource in the target's scope (its `scope_filter`; groups always are)? The
/// one rule delivery and reconcile share.
pub fn in_scope(
    schemas: &provisync_scim::SchemaRegistry,
    t: &crate::target::TargetConfig,
    kind: ResourceKind,
    resource: &Value,
) -> bool {
    let Some(f) = &t.scope_filter else {
        return true;
    };
    if kind != ResourceKind::User {
        return true;
    }
    match provisync_scim::filter::parse(f) {
        Ok(f) => f.matches(&schemas.view(ResourceKind::User), resource),
        // Validated when the target was saved; a filter that no longer parses
        // matches nothing rather than everything.
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::AppliesTo;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    #[test]
    fn identity_then_rules() {
        let user = json!({
            "schemas": [provisync_scim::schema::USER_SCHEMA, ENT],
            "id": "h1", "meta": {"version": "W/\"1\""}, "userName": "a", "title": "T",
            "emails": [{"value": "x@y", "primary": true}, {"value": "z@y"}],
            ENT: {"department": "Sales"},
            "groups": [{"value": "g"}]
        });
        let rules = vec![
            AttributeMapping {
                applies_to: AppliesTo::Users,
                target: "title".into(),
                source: Some(format!("{ENT}:department")),
                value: None,
                default: None,
                drop: false,
            },
            AttributeMapping {
                applies_to: AppliesTo::Users,
                target: "userType".into(),
                source: None,
                value: Some(json!("Employee")),
                default: None,
                drop: false,
            },
            AttributeMapping {
                applies_to: AppliesTo::Users,
                target: "nickName".into(),
                source: Some("nickName".into()),
                value: None,
                default: Some(json!("n/a")),
                drop: false,
            },
            AttributeMapping {
                applies_to: AppliesTo::Users,
                target: "name.formatted".into(),
                source: Some("emails.value".into()),
                value: None,
                default: None,
                drop: false,
            },
            AttributeMapping {
                applies_to: AppliesTo::Users,
                target: format!("{ENT}:department"),
                source: None,
                value: None,
                default: None,
                drop: true,
            },
        ];
        let out = map_resource(ResourceKind::User, "h1", &user, &rules, &BTreeMap::new());
        assert_eq!(out["externalId"], "h1");
        assert!(
            out.get("id").is_none() && out.get("meta").is_none() && out.get("groups").is_none()
        );
        assert_eq!(out["title"], "Sales");
        assert_eq!(out["userType"], "Employee");
        assert_eq!(out["nickName"], "n/a");
        assert_eq!(out["name"]["formatted"], "x@y");
        assert!(out.get(ENT).is_none(), "emptied extension dropped: {out}");
        assert_eq!(out["schemas"], json!([provisync_scim::schema::USER_SCHEMA]));
    }

    /// The README's example: a constant `userType` for users reaches users only; a
    /// group rule reaches groups only.
    #[test]
    fn rules_apply_to_their_kind_only() {
        let rules: Vec<AttributeMapping> = serde_json::from_value(json!([
            {"target": "userType", "value": "Employee"},
            {"applies_to": "groups", "target": "externalId", "source": "displayName"}
        ]))
        .unwrap();
        assert_eq!(rules[0].applies_to, AppliesTo::Users, "users unless stated");
        let g = json!({"displayName": "Sales", "id": "g1"});
        let out = map_resource(ResourceKind::Group, "g1", &g, &rules, &BTreeMap::new());
        assert!(out.get("userType").is_none(), "{out}");
        assert_eq!(out["externalId"], "Sales");
        let u = json!({"userName": "a", "id": "u1", "displayName": "A"});
        let out = map_resource(ResourceKind::User, "u1", &u, &rules, &BTreeMap::new());
        assert_eq!(out["userType"], "Employee");
        assert_eq!(
            out["externalId"], "u1",
            "the group rule is not applied: {out}"
        );
    }

    #[test]
    fn group_mapping_and_hash() {
        let g = json!({"displayName": "Sales", "id": "g1"});
        let mut gm = BTreeMap::new();
        gm.insert("Sales".to_string(), "crm-sales".to_string());
        let out = map_resource(ResourceKind::Group, "g1", &g, &[], &gm);
        assert_eq!(out["displayName"], "crm-sales");
        assert_eq!(
            content_hash(&json!({"a": 1, "b": [1, 2]})),
            content_hash(&json!({"b": [1, 2], "a": 1}))
        );
        assert_ne!(
            content_hash(&json!({"a": 1})),
            content_hash(&json!({"a": 2}))
        );
    }
}
