//! Operations on a group's `members`, which become [`MemberChange`]s instead of JSON edits.

use std::collections::HashSet;

use serde_json::Value;

use crate::error::ScimError;
use crate::filter::{CompValue, CompareOp, Filter};
use crate::limits::{MAX_MEMBERS_PER_REQUEST, too_many_members};
use crate::resource::{get_ci, is_assigned};
use crate::schema::Attribute;

use super::edit::rel_name;
use super::request::OpKind;
use super::{MemberChange, MemberRef};

/// Member ids named by `value eq "id"` (possibly several joined by `or`).
fn member_ids(parent: &Attribute, f: &Filter) -> Option<Vec<String>> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(id),
        } if rel_name(parent, path).is_some_and(|n| n.eq_ignore_ascii_case("value")) => {
            Some(vec![id.clone()])
        }
        Filter::Or(a, b) => {
            let mut ids = member_ids(parent, a)?;
            ids.extend(member_ids(parent, b)?);
            Some(ids)
        }
        _ => None,
    }
}

/// `[{"value": id, "type"?: ...}]` (or one such object) -> member references.
fn member_refs(v: &Value) -> Result<Vec<MemberRef>, ScimError> {
    let items: Vec<&Value> = match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    if items.len() > MAX_MEMBERS_PER_REQUEST {
        return Err(too_many_members(items.len()));
    }
    let mut out: Vec<MemberRef> = Vec::with_capacity(items.len());
    let mut seen: HashSet<String> = HashSet::with_capacity(items.len());
    for item in items {
        let Some(m) = item.as_object() else {
            return Err(ScimError::invalid_value(
                "each member must be an object with a string \"value\" (the member's id)",
            ));
        };
        let id = match get_ci(m, "value") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(ScimError::invalid_value(
                    "each member must be an object with a string \"value\" (the member's id)",
                ));
            }
        };
        let kind = match get_ci(m, "type") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ScimError::invalid_value("members.type must be a string")),
        };
        if seen.insert(id.clone()) {
            out.push(MemberRef { value: id, kind });
        }
    }
    Ok(out)
}

/// An operation on a group's `members` as a [`MemberChange`] (`None`: nothing to do).
pub(super) fn member_change(
    members: &Attribute,
    kind: OpKind,
    filter: Option<Filter>,
    sub: Option<&Attribute>,
    value: Option<&Value>,
) -> Result<Option<MemberChange>, ScimError> {
    if sub.is_some() {
        // members.value / $ref / type are immutable, display is readOnly (RFC 7643 §4.2).
        return Err(ScimError::mutability(
            "member sub-attributes cannot be changed; add or remove whole members",
        ));
    }
    Ok(match kind {
        OpKind::Add => {
            if filter.is_some() {
                return Err(ScimError::invalid_path(
                    "add to members takes no value filter",
                ));
            }
            let v = value.ok_or_else(|| ScimError::invalid_syntax("add requires a \"value\""))?;
            let refs = member_refs(v)?;
            (!refs.is_empty()).then_some(MemberChange::Add(refs))
        }
        OpKind::Replace => {
            if filter.is_some() {
                return Err(ScimError::mutability(
                    "members are immutable: remove the member and add the new one",
                ));
            }
            Some(MemberChange::Replace(match value {
                None => Vec::new(),
                Some(v) => member_refs(v)?,
            }))
        }
        OpKind::Remove => match (filter, value) {
            (Some(f), _) => Some(match member_ids(members, &f) {
                Some(ids) => MemberChange::Remove(ids),
                None => MemberChange::RemoveWhere(f),
            }),
            // Entra's default dialect lists the members to remove in `value`
            // (entra/remove_member_default.json): only those go.
            (None, Some(v)) if is_assigned(v) => {
                let ids: Vec<String> = member_refs(v)?.into_iter().map(|r| r.value).collect();
                (!ids.is_empty()).then_some(MemberChange::Remove(ids))
            }
            (None, _) => Some(MemberChange::RemoveAll),
        },
    })
}
