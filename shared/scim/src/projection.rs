//! `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9) and the `returned`
//! characteristic of each attribute (RFC 7643 §7).
//!
//! Decisions:
//! - Names are matched case-insensitively (RFC 7643 §2.1), with or without a schema URN
//!   prefix; a bare schema URN (`urn:...:enterprise:2.0:User`) names every attribute of that
//!   extension.
//! - When both parameters are given, `attributes` wins and `excludedAttributes` is ignored
//!   (RFC 7644 §3.9 says they are alternatives; honouring the positive list is the least
//!   surprising).
//! - `returned: never` (password) is always dropped; `always` (`id`, `schemas`) always kept;
//!   `request` only when named; `default` unless excluded / not named.
//! - Extension objects left empty are removed and `schemas` then lists only the core schema
//!   and the extensions still present (RFC 7643 §3: `schemas` names the schemas "used to
//!   indicate the attributes contained within a resource").
//! - Unknown names are ignored (RFC 7644 §3.9 does not make them errors); a name that is not
//!   an attribute path at all (`a b`, `name.`, `1x`) is 400 `invalidValue`.

use serde_json::{Map, Value};

use super::error::ScimError;
use super::resource::{get_ci, is_urn};
use super::schema::{AttrLocation, AttrPath, Attribute, ResourceSchema, Returned, Schema};

/// Parses a comma-separated attribute list (`userName,name.givenName,urn:...:manager`).
/// Unknown attributes are allowed by the RFC and ignored; malformed names -> 400.
pub fn parse_attribute_list(s: &str) -> Result<Vec<AttrPath>, ScimError> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        // ASCII only: attribute names and URNs are (and AttrPath::parse slices by byte).
        let parsed = if part.is_ascii() {
            AttrPath::parse(part)
        } else {
            None
        };
        match parsed {
            Some(p) => {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            None => {
                let shown: String = part.chars().take(120).collect();
                return Err(ScimError::invalid_value(format!(
                    "\"{shown}\" is not an attribute name"
                )));
            }
        }
    }
    Ok(out)
}

/// What a client asked to see.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Projection {
    pub attributes: Vec<AttrPath>,
    pub excluded: Vec<AttrPath>,
}

/// What one requested name designates.
enum Named<'a> {
    /// Every attribute of this extension schema.
    Schema(&'a Schema),
    /// An attribute (and possibly one of its sub-attributes).
    Attr {
        loc: AttrLocation<'a>,
        attr: &'a Attribute,
        sub: Option<&'a Attribute>,
    },
}

fn designate<'a>(schema: &ResourceSchema<'a>, p: &AttrPath) -> Option<Named<'a>> {
    if p.sub_attr.is_none()
        && let Some(urn) = &p.urn
        && let Some(ext) = schema.extension(&format!("{urn}:{}", p.attr))
    {
        return Some(Named::Schema(ext));
    }
    let r = schema.resolve(p)?;
    Some(Named::Attr {
        loc: r.location,
        attr: r.attr,
        sub: r.sub,
    })
}

/// How much of one attribute the output gets.
enum Keep<'a> {
    No,
    Whole,
    /// Only these sub-attributes (`name.givenName`, `emails.value`).
    Subs(Vec<&'a Attribute>),
}

impl Projection {
    /// Would `path` be in the output? (lets the store skip computing e.g. a user's
    /// `groups` or a group's `members` when they would be dropped anyway).
    pub fn includes(&self, schema: &ResourceSchema<'_>, path: &AttrPath) -> bool {
        match designate(schema, path) {
            Some(Named::Attr { loc, attr, sub }) => match (self.keep(schema, loc, attr), sub) {
                (Keep::No, _) => false,
                (_, None) => true,
                (Keep::Whole, Some(s)) => self.sub_visible(schema, loc, attr, s),
                (Keep::Subs(subs), Some(s)) => {
                    s.returned == Returned::Always
                        || (s.returned != Returned::Never
                            && subs.iter().any(|x| std::ptr::eq(*x, s)))
                }
            },
            Some(Named::Schema(ext)) => ext.attributes.iter().any(|a| {
                !matches!(
                    self.keep(schema, AttrLocation::Extension(ext.id.as_str()), a),
                    Keep::No
                )
            }),
            None => self.attributes.is_empty(),
        }
    }

    /// Applies the projection and the `returned` rules (`never` always dropped, `always`
    /// always kept, `request` only when named) to a full resource.
    pub fn apply(&self, schema: &ResourceSchema<'_>, resource: &Value) -> Value {
        let Some(obj) = resource.as_object() else {
            return resource.clone();
        };
        let mut out = Map::new();
        let mut present_exts: Vec<String> = Vec::new();
        for (key, val) in obj {
            if key.eq_ignore_ascii_case("schemas") {
                // Rebuilt below once the extensions kept are known.
                out.insert("schemas".into(), Value::Null);
                continue;
            }
            if is_urn(key)
                && let Some(ext) = schema.extension(key)
            {
                let loc = AttrLocation::Extension(ext.id.as_str());
                let mut inner_out = Map::new();
                if let Value::Object(inner) = val {
                    for (k, v) in inner {
                        let Some(attr) = ext.attribute(k) else {
                            continue;
                        };
                        if let Some(v) = self.project_attr(schema, loc, attr, v) {
                            inner_out.insert(k.clone(), v);
                        }
                    }
                }
                if !inner_out.is_empty() {
                    present_exts.push(ext.id.clone());
                    out.insert(key.clone(), Value::Object(inner_out));
                }
                continue;
            }
            let attr = schema
                .common
                .attribute(key)
                .or_else(|| schema.core.attribute(key));
            match attr {
                Some(attr) => {
                    if let Some(v) = self.project_attr(schema, AttrLocation::Core, attr, val) {
                        out.insert(key.clone(), v);
                    }
                }
                // Not in any schema (should not happen for normalised resources): shown only
                // when nothing narrowed the output.
                None => {
                    if self.attributes.is_empty() {
                        out.insert(key.clone(), val.clone());
                    }
                }
            }
        }
        if out.contains_key("schemas") {
            let stored: Vec<&str> = get_ci(obj, "schemas")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let kept: Vec<Value> = stored
                .into_iter()
                .filter(|s| {
                    s.eq_ignore_ascii_case(&schema.core.id)
                        || present_exts.iter().any(|e| e.eq_ignore_ascii_case(s))
                })
                .map(|s| Value::String(s.to_string()))
                .collect();
            out.insert("schemas".into(), Value::Array(kept));
        }
        Value::Object(out)
    }

    fn project_attr(
        &self,
        schema: &ResourceSchema<'_>,
        loc: AttrLocation<'_>,
        attr: &Attribute,
        val: &Value,
    ) -> Option<Value> {
        match self.keep(schema, loc, attr) {
            Keep::No => None,
            Keep::Whole => strip_subs(attr, val, |sub| self.sub_visible(schema, loc, attr, sub)),
            Keep::Subs(subs) => strip_subs(attr, val, |sub| {
                sub.returned == Returned::Always
                    || (sub.returned != Returned::Never
                        && subs.iter().any(|s| std::ptr::eq(*s, sub)))
            }),
        }
    }

    /// The attribute-level decision.
    fn keep<'a>(
        &self,
        schema: &ResourceSchema<'_>,
        loc: AttrLocation<'_>,
        attr: &'a Attribute,
    ) -> Keep<'a> {
        match attr.returned {
            Returned::Never => return Keep::No,
            Returned::Always => return Keep::Whole,
            Returned::Default | Returned::Request => {}
        }
        if !self.attributes.is_empty() {
            let mut subs: Vec<&'a Attribute> = Vec::new();
            for p in &self.attributes {
                match designate(schema, p) {
                    Some(Named::Schema(ext)) if loc == AttrLocation::Extension(ext.id.as_str()) => {
                        return Keep::Whole;
                    }
                    Some(Named::Attr {
                        loc: l,
                        attr: a,
                        sub,
                    }) if l == loc && std::ptr::eq(a, attr) => match sub {
                        None => return Keep::Whole,
                        Some(s) => {
                            // Re-borrow the sub-attribute from `attr` for the right lifetime.
                            if let Some(s) =
                                attr.sub_attributes.iter().find(|x| std::ptr::eq(*x, s))
                            {
                                subs.push(s);
                            }
                        }
                    },
                    _ => {}
                }
            }
            return if subs.is_empty() {
                Keep::No
            } else {
                Keep::Subs(subs)
            };
        }
        if attr.returned == Returned::Request {
            return Keep::No;
        }
        for p in &self.excluded {
            match designate(schema, p) {
                Some(Named::Schema(ext)) if loc == AttrLocation::Extension(ext.id.as_str()) => {
                    return Keep::No;
                }
                Some(Named::Attr {
                    loc: l,
                    attr: a,
                    sub: None,
                }) if l == loc && std::ptr::eq(a, attr) => {
                    return Keep::No;
                }
                _ => {}
            }
        }
        Keep::Whole
    }

    /// Sub-attributes of a kept attribute: `never` dropped, `request` only when named,
    /// `excludedAttributes=name.familyName` honoured.
    fn sub_visible(
        &self,
        schema: &ResourceSchema<'_>,
        loc: AttrLocation<'_>,
        attr: &Attribute,
        sub: &Attribute,
    ) -> bool {
        let named_in = |list: &[AttrPath]| {
            list.iter().any(|p| {
                matches!(designate(schema, p),
                    Some(Named::Attr { loc: l, attr: a, sub: Some(s) }) if l == loc && std::ptr::eq(a, attr) && std::ptr::eq(s, sub))
            })
        };
        match sub.returned {
            Returned::Never => false,
            Returned::Always => true,
            Returned::Request => named_in(&self.attributes),
            Returned::Default => !self.attributes.is_empty() || !named_in(&self.excluded),
        }
    }
}

/// Keeps only the sub-attributes `keep` accepts (in each element for multi-valued
/// attributes); a complex value with nothing left is dropped.
fn strip_subs(attr: &Attribute, val: &Value, keep: impl Fn(&Attribute) -> bool) -> Option<Value> {
    if !attr.is_complex() {
        return Some(val.clone());
    }
    let strip_one = |v: &Value| -> Option<Value> {
        let Value::Object(m) = v else {
            return Some(v.clone());
        };
        let kept: Map<String, Value> = m
            .iter()
            .filter(|(k, _)| attr.sub(k).is_none_or(&keep))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (!kept.is_empty()).then_some(Value::Object(kept))
    };
    match val {
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(strip_one).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        other => strip_one(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ENTERPRISE_USER_SCHEMA, ResourceKind, SchemaRegistry, USER_SCHEMA};
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "id": "u1",
            "externalId": "e1",
            "meta": {"resourceType": "User", "created": "2020-01-01T00:00:00Z"},
            "userName": "bjensen",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "password": "secret",
            "emails": [{"value": "a@x", "type": "work", "primary": true}, {"value": "b@x", "type": "home"}],
            ENTERPRISE_USER_SCHEMA: {"department": "Tour", "manager": {"value": "m1", "displayName": "Boss"}}
        })
    }

    fn project(attrs: &str, excluded: &str) -> Value {
        let reg = SchemaRegistry::builtin();
        let p = Projection {
            attributes: parse_attribute_list(attrs).unwrap(),
            excluded: parse_attribute_list(excluded).unwrap(),
        };
        p.apply(&reg.view(ResourceKind::User), &user())
    }

    #[test]
    fn parse_lists() {
        let l = parse_attribute_list(" userName , name.givenName,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager,,").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[2].attr, "manager");
        assert!(parse_attribute_list("").unwrap().is_empty());
        for bad in ["user name", "name.", "1abc", "a.b.c", "naïve"] {
            let e = parse_attribute_list(bad).unwrap_err();
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidValue), "{bad}");
        }
    }

    #[test]
    fn default_view_drops_never() {
        let out = project("", "");
        let mut want = user();
        want.as_object_mut().unwrap().remove("password");
        assert_eq!(out, want);
    }

    #[test]
    fn attributes_keeps_always_and_named() {
        assert_eq!(
            project("USERNAME", ""),
            json!({"schemas": [USER_SCHEMA], "id": "u1", "userName": "bjensen"})
        );
        assert_eq!(
            project("name.givenName,emails.value", ""),
            json!({"schemas": [USER_SCHEMA], "id": "u1", "name": {"givenName": "Barbara"},
                   "emails": [{"value": "a@x"}, {"value": "b@x"}]})
        );
        assert_eq!(project("name", "")["name"], user()["name"]);
        assert_eq!(
            project("password", ""),
            json!({"schemas": [USER_SCHEMA], "id": "u1"})
        );
        let out = project(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            "",
        );
        assert_eq!(
            out,
            json!({"schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA], "id": "u1", ENTERPRISE_USER_SCHEMA: {"department": "Tour"}})
        );
        let out = project(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "",
        );
        assert_eq!(out[ENTERPRISE_USER_SCHEMA], user()[ENTERPRISE_USER_SCHEMA]);
        // attributes wins over excludedAttributes.
        assert_eq!(project("userName", "userName")["userName"], "bjensen");
        // unknown names are ignored.
        assert_eq!(
            project("nope", ""),
            json!({"schemas": [USER_SCHEMA], "id": "u1"})
        );
    }

    #[test]
    fn excluded() {
        let out = project(
            "",
            "emails,name.familyName,id,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        );
        assert!(out.get("emails").is_none());
        assert_eq!(out["name"], json!({"givenName": "Barbara"}));
        assert_eq!(out["id"], "u1", "returned: always");
        assert!(out.get(ENTERPRISE_USER_SCHEMA).is_none());
        assert_eq!(out["schemas"], json!([USER_SCHEMA]));
        assert!(out.get("password").is_none());
    }

    #[test]
    fn includes() {
        let reg = SchemaRegistry::builtin();
        let s = reg.view(ResourceKind::User);
        let groups = AttrPath::new("groups");
        assert!(Projection::default().includes(&s, &groups));
        let p = Projection {
            attributes: vec![],
            excluded: parse_attribute_list("groups").unwrap(),
        };
        assert!(!p.includes(&s, &groups));
        let p = Projection {
            attributes: parse_attribute_list("userName").unwrap(),
            excluded: vec![],
        };
        assert!(!p.includes(&s, &groups));
        assert!(p.includes(&s, &AttrPath::new("id")));
        assert!(!Projection::default().includes(&s, &AttrPath::new("password")));
        let p = Projection {
            attributes: parse_attribute_list("groups.display").unwrap(),
            excluded: vec![],
        };
        assert!(p.includes(&s, &groups));
        let reg = SchemaRegistry::builtin();
        let g = reg.view(ResourceKind::Group);
        let p = Projection {
            attributes: vec![],
            excluded: parse_attribute_list("MEMBERS").unwrap(),
        };
        assert!(!p.includes(&g, &AttrPath::new("members")));
        assert!(p.includes(&g, &AttrPath::new("displayName")));
    }

    #[test]
    fn request_returned_attributes() {
        let reg = SchemaRegistry::builtin()
            .add_extension(
                ResourceKind::User,
                r#"{"id":"urn:example:acme:2.0:User","name":"Acme","attributes":[
                    {"name":"badge","type":"integer","returned":"request"},{"name":"team","type":"string"}]}"#,
                false,
            )
            .unwrap();
        let s = reg.view(ResourceKind::User);
        let r = json!({"schemas": [USER_SCHEMA, "urn:example:acme:2.0:User"], "id": "u1", "userName": "a",
                       "urn:example:acme:2.0:User": {"badge": 7, "team": "x"}});
        let out = Projection::default().apply(&s, &r);
        assert_eq!(out["urn:example:acme:2.0:User"], json!({"team": "x"}));
        let p = Projection {
            attributes: parse_attribute_list("urn:example:acme:2.0:User:badge").unwrap(),
            excluded: vec![],
        };
        assert_eq!(
            p.apply(&s, &r)["urn:example:acme:2.0:User"],
            json!({"badge": 7})
        );
        assert!(p.includes(
            &s,
            &AttrPath::parse("urn:example:acme:2.0:User:badge").unwrap()
        ));
        assert!(!Projection::default().includes(
            &s,
            &AttrPath::parse("urn:example:acme:2.0:User:badge").unwrap()
        ));
    }
}
