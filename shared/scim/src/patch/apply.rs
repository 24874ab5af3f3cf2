//! Applying operations to the resource: path-less values (Entra's `aadOptscim062020` keys,
//! Okta's echoed `id`), paths, `readOnly` checks, and the dispatch to [`super::edit`] and
//! [`super::members`].

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::resource::{container_mut, is_assigned, is_urn, remove_ci, schema_for_urn};
use crate::schema::{AttrLocation, AttrPath, Attribute, Mutability, ResourceKind, ResourceSchema};

use super::MemberChange;
use super::edit::{remove, set_filtered, set_plain};
use super::members::member_change;
use super::request::{Op, OpKind, parse_target, short};

pub(super) struct Ctx<'s, 'a> {
    pub(super) schema: &'s ResourceSchema<'a>,
    pub(super) doc: Map<String, Value>,
    pub(super) changes: Vec<MemberChange>,
}

impl Ctx<'_, '_> {
    pub(super) fn apply(&mut self, op: &Op<'_>) -> Result<(), ScimError> {
        let Some(path) = op.path else {
            if op.kind == OpKind::Remove {
                // RFC 7644 §3.5.2.2.
                return Err(ScimError::no_target("remove requires a \"path\""));
            }
            let Some(Value::Object(attrs)) = op.value else {
                return Err(ScimError::invalid_value(
                    "without a \"path\", \"value\" must be an object of attributes",
                ));
            };
            for (key, v) in attrs {
                self.apply_keyed(op.kind, key, v)?;
            }
            return Ok(());
        };
        self.apply_path(op.kind, path, op.value, false)
    }

    /// One member of a path-less value (RFC 7644 §3.5.2.1 / §3.5.2.3), including Entra's
    /// `aadOptscim062020` dotted, URN-qualified and value-filter keys.
    fn apply_keyed(&mut self, kind: OpKind, key: &str, v: &Value) -> Result<(), ScimError> {
        if key.eq_ignore_ascii_case("schemas") {
            return Ok(());
        }
        if is_urn(key)
            && let Some((loc, _)) = schema_for_urn(self.schema, key)
        {
            match (v, loc) {
                (Value::Object(inner), _) => {
                    for (k, v2) in inner {
                        let path = match loc {
                            AttrLocation::Core => k.clone(),
                            AttrLocation::Extension(urn) => format!("{urn}:{k}"),
                        };
                        self.apply_keyed(kind, &path, v2)?;
                    }
                }
                (Value::Null, AttrLocation::Extension(urn)) if kind == OpKind::Replace => {
                    remove_ci(&mut self.doc, urn);
                }
                (Value::Null, _) => {}
                _ => {
                    return Err(ScimError::invalid_value(format!(
                        "{} must be an object of that schema's attributes",
                        short(key)
                    )));
                }
            }
            return Ok(());
        }
        self.apply_path(kind, key, Some(v), true)
    }

    /// `lenient`: the path is a key of a path-less value, where unknown attributes are
    /// ignored and unchanged `readOnly` values are tolerated.
    fn apply_path(
        &mut self,
        kind: OpKind,
        p: &str,
        value: Option<&Value>,
        lenient: bool,
    ) -> Result<(), ScimError> {
        let target = parse_target(p)?;
        let schema = self.schema;
        // The whole extension: `urn:...:enterprise:2.0:User`.
        if target.filter.is_none()
            && target.path.sub_attr.is_none()
            && let Some(urn) = &target.path.urn
            && let Some(ext) = schema.extension(&format!("{urn}:{}", target.path.attr))
        {
            let urn = ext.id.as_str();
            return match (kind, value) {
                (OpKind::Remove, _) | (OpKind::Replace, None | Some(Value::Null)) => {
                    remove_ci(&mut self.doc, urn);
                    Ok(())
                }
                (_, Some(v)) => self.apply_keyed(kind, urn, v),
                (OpKind::Add, None) => Err(ScimError::invalid_syntax("add requires a \"value\"")),
            };
        }
        let base = AttrPath {
            urn: target.path.urn.clone(),
            attr: target.path.attr.clone(),
            sub_attr: None,
        };
        let Some(resolved) = schema.resolve(&base) else {
            if let Some(urn) = &base.urn
                && schema_for_urn(schema, urn).is_none()
            {
                return Err(ScimError::invalid_value(format!(
                    "unknown schema: {} is not a schema of the {} resource type",
                    short(urn),
                    schema.kind.as_str()
                )));
            }
            if lenient {
                return Ok(());
            }
            return Err(ScimError::invalid_path(format!(
                "unknown attribute \"{}\"",
                short(p)
            )));
        };
        let attr = resolved.attr;
        let sub = match &target.path.sub_attr {
            None => None,
            Some(name) => match attr.sub(name) {
                Some(s) => Some(s),
                None if lenient => return Ok(()),
                None => {
                    return Err(ScimError::invalid_path(format!(
                        "unknown attribute \"{}\"",
                        short(p)
                    )));
                }
            },
        };
        if attr.name == "schemas" && resolved.location == AttrLocation::Core {
            // `schemas` is computed from the attributes present.
            return Ok(());
        }
        if schema.kind == ResourceKind::Group
            && resolved.location == AttrLocation::Core
            && attr.name == "members"
        {
            if let Some(change) = member_change(attr, kind, target.filter, sub, value)? {
                self.changes.push(change);
            }
            return Ok(());
        }
        let read_only = attr.mutability == Mutability::ReadOnly
            || sub.is_some_and(|s| s.mutability == Mutability::ReadOnly);
        if read_only {
            if lenient && resolved.location == AttrLocation::Core && attr.name != "id" {
                // Path-less values are treated like PUT bodies for server-owned attributes
                // (RFC 7644 §3.5.1: readOnly values provided SHALL be ignored): `meta` and
                // `groups` echoed back from a GET are ignored. Only `id` is compared.
                return Ok(());
            }
            if lenient && kind != OpKind::Remove && target.filter.is_none() && sub.is_none() {
                let current = container_mut(&mut self.doc, resolved.location)
                    .get(&attr.name)
                    .cloned()
                    .unwrap_or(Value::Null);
                let same = match value {
                    None => true,
                    Some(v) => v == &current || (!is_assigned(v) && !is_assigned(&current)),
                };
                if same {
                    return Ok(());
                }
            }
            return Err(ScimError::mutability(format!(
                "attribute {} is readOnly",
                label(resolved.location, attr, sub)
            )));
        }
        let label = label(resolved.location, attr, sub);
        let c = container_mut(&mut self.doc, resolved.location);
        match kind {
            OpKind::Remove => remove(c, attr, sub, target.filter.as_ref(), value, &label),
            OpKind::Add | OpKind::Replace => {
                let value = match (kind, value) {
                    (OpKind::Add, None) => {
                        return Err(ScimError::invalid_syntax("add requires a \"value\""));
                    }
                    (_, v) => v.unwrap_or(&Value::Null),
                };
                match &target.filter {
                    None => set_plain(c, kind, attr, sub, value, &label),
                    Some(f) => set_filtered(c, kind, attr, sub, f, value, &label),
                }
            }
        }
    }
}

fn label(loc: AttrLocation<'_>, attr: &Attribute, sub: Option<&Attribute>) -> String {
    let mut s = match loc {
        AttrLocation::Core => attr.name.clone(),
        AttrLocation::Extension(urn) => format!("{urn}:{}", attr.name),
    };
    if let Some(sub) = sub {
        s.push('.');
        s.push_str(&sub.name);
    }
    s
}
