//! add / replace / remove on the values of one attribute (RFC 7644 §3.5.2.1-3), with and
//! without a value filter.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::{CompValue, CompareOp, Filter};
use crate::limits::{ValueIndex, max_values, too_many_values};
use crate::resource::{Mode, coerce, coerce_single, is_assigned, remove_ci};
use crate::schema::{AttrPath, Attribute, Mutability};

use super::request::OpKind;

fn take_array(c: &mut Map<String, Value>, name: &str) -> Vec<Value> {
    match remove_ci(c, name) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other],
    }
}

fn put_array(c: &mut Map<String, Value>, name: &str, items: Vec<Value>) {
    if !items.is_empty() {
        c.insert(name.to_string(), Value::Array(items));
    }
}

fn take_object(c: &mut Map<String, Value>, name: &str) -> Map<String, Value> {
    match remove_ci(c, name) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn put_object(c: &mut Map<String, Value>, name: &str, m: Map<String, Value>) {
    if !m.is_empty() {
        c.insert(name.to_string(), Value::Object(m));
    }
}

fn is_primary(v: &Value) -> bool {
    v.get("primary") == Some(&Value::Bool(true))
}

/// RFC 7644 §3.5.2: when an element is made primary, the others stop being primary.
fn clear_primary_except(items: &mut [Value], winners: &[usize]) {
    if !winners
        .iter()
        .any(|&i| items.get(i).is_some_and(is_primary))
    {
        return;
    }
    let winners: HashSet<usize> = winners.iter().copied().collect();
    for (i, item) in items.iter_mut().enumerate() {
        if !winners.contains(&i)
            && is_primary(item)
            && let Value::Object(m) = item
        {
            m.insert("primary".into(), Value::Bool(false));
        }
    }
}

/// add / replace without a value filter.
pub(super) fn set_plain(
    c: &mut Map<String, Value>,
    kind: OpKind,
    attr: &Attribute,
    sub: Option<&Attribute>,
    value: &Value,
    label: &str,
) -> Result<(), ScimError> {
    match sub {
        None => {
            let coerced = coerce(attr, value, label, Mode::Client)?;
            let Some(new) = coerced else {
                // `replace` with null / [] unassigns (RFC 7643 §2.5); `add` of nothing is a no-op.
                if kind == OpKind::Replace {
                    remove_ci(c, &attr.name);
                }
                return Ok(());
            };
            if attr.multi_valued {
                let new_items = match new {
                    Value::Array(items) => items,
                    other => vec![other],
                };
                if kind == OpKind::Replace {
                    put_array(c, &attr.name, new_items);
                    return Ok(());
                }
                // RFC 7644 §3.5.2.1: add appends; a value already there is not duplicated.
                // `primary` is a flag of an element, not part of its value: re-adding an
                // element as primary makes the one there primary (so a retried request
                // changes nothing more).
                let mut items = take_array(c, &attr.name);
                let mut index = ValueIndex::of_values(&items);
                let mut winners = Vec::new();
                for item in new_items {
                    match index.find(&items, &item) {
                        Some(i) => {
                            if is_primary(&item)
                                && let Value::Object(m) = &mut items[i]
                            {
                                m.insert("primary".into(), Value::Bool(true));
                            }
                            winners.push(i);
                        }
                        None => {
                            index.insert(&item, items.len());
                            items.push(item);
                            winners.push(items.len() - 1);
                        }
                    }
                }
                let cap = max_values(&attr.name);
                if items.len() > cap {
                    return Err(too_many_values(label, items.len(), cap));
                }
                clear_primary_except(&mut items, &winners);
                put_array(c, &attr.name, items);
            } else if attr.is_complex() {
                // RFC 7644 §3.5.2.1 / §3.5.2.3: the sub-attributes given are set, the others kept.
                let mut obj = take_object(c, &attr.name);
                if let Value::Object(m) = new {
                    for (k, v) in m {
                        obj.insert(k, v);
                    }
                }
                put_object(c, &attr.name, obj);
            } else {
                remove_ci(c, &attr.name);
                c.insert(attr.name.clone(), new);
            }
        }
        Some(sub) => {
            let coerced = coerce(sub, value, label, Mode::Client)?;
            if attr.multi_valued {
                // `emails.value` without a filter: every element (or a new one if none).
                let mut items = take_array(c, &attr.name);
                match coerced {
                    None => {
                        if kind == OpKind::Replace {
                            for item in items.iter_mut() {
                                if let Value::Object(m) = item {
                                    remove_ci(m, &sub.name);
                                }
                            }
                        }
                    }
                    Some(x) => {
                        if items.is_empty() {
                            let mut m = Map::new();
                            m.insert(sub.name.clone(), x);
                            items.push(Value::Object(m));
                        } else {
                            for item in items.iter_mut() {
                                if let Value::Object(m) = item {
                                    remove_ci(m, &sub.name);
                                    m.insert(sub.name.clone(), x.clone());
                                }
                            }
                        }
                    }
                }
                put_array(c, &attr.name, items);
            } else {
                let mut obj = take_object(c, &attr.name);
                remove_ci(&mut obj, &sub.name);
                if let Some(x) = coerced {
                    obj.insert(sub.name.clone(), x);
                }
                put_object(c, &attr.name, obj);
            }
        }
    }
    Ok(())
}

/// add / replace on `attr[filter]` or `attr[filter].sub`.
pub(super) fn set_filtered(
    c: &mut Map<String, Value>,
    kind: OpKind,
    attr: &Attribute,
    sub: Option<&Attribute>,
    filter: &Filter,
    value: &Value,
    label: &str,
) -> Result<(), ScimError> {
    if !(attr.multi_valued && attr.is_complex()) {
        return Err(ScimError::invalid_path(format!(
            "a value filter needs a multi-valued complex attribute; {} is not one",
            attr.name
        )));
    }
    // A bare value for a filtered element (`replace emails[type eq "work"]` with
    // `"a@example.org"`) is its `value` sub-attribute, as `emails[type eq "work"].value`:
    // read as a whole element `{"value": ...}`, it dropped the attributes the filter
    // selects on, and the same request applied again matched nothing and added another.
    let bare = matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_));
    let sub = match sub {
        None if bare => attr.sub("value").or(sub),
        _ => sub,
    };
    let mut items = take_array(c, &attr.name);
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, e)| filter.matches_element(attr, e))
        .map(|(i, _)| i)
        .collect();
    let no_target = || {
        ScimError::no_target(format!(
            "no value of {} matches the filter (and the filter does not describe a new value)",
            attr.name
        ))
    };
    let mut winners = matched.clone();
    match sub {
        None => match coerce_single(attr, value, label, Mode::Client)? {
            None => {
                if kind == OpKind::Replace {
                    let matched: HashSet<usize> = matched.iter().copied().collect();
                    let mut i = 0;
                    items.retain(|_| {
                        let keep = !matched.contains(&i);
                        i += 1;
                        keep
                    });
                    winners.clear();
                }
            }
            Some(Value::Object(new)) => {
                if matched.is_empty() {
                    let mut seed = eq_seed(attr, filter).ok_or_else(no_target)?;
                    for (k, v) in new {
                        seed.insert(k, v);
                    }
                    items.push(Value::Object(seed));
                    winners = vec![items.len() - 1];
                } else {
                    // A replacement is the element the filter describes with this value
                    // (`replace emails[type eq "work"]` with `{"value": ...}` stays the
                    // work email), as a new one is when nothing matches: replaced whole,
                    // it left the filter, and the same request applied again added one.
                    let mut replacement = eq_seed(attr, filter).unwrap_or_default();
                    for (k, v) in &new {
                        remove_ci(&mut replacement, k);
                        replacement.insert(k.clone(), v.clone());
                    }
                    for &i in &matched {
                        if let Some(item) = items.get_mut(i) {
                            match (kind, item) {
                                (OpKind::Add, Value::Object(m)) => {
                                    for (k, v) in &new {
                                        m.insert(k.clone(), v.clone());
                                    }
                                }
                                (_, item) => *item = Value::Object(replacement.clone()),
                            }
                        }
                    }
                }
            }
            Some(_) => {
                return Err(ScimError::invalid_value(format!(
                    "attribute {label} must be an object"
                )));
            }
        },
        Some(sub) => {
            let coerced = coerce(sub, value, label, Mode::Client)?;
            if matched.is_empty() {
                if let Some(x) = coerced {
                    // Entra: `replace emails[type eq "work"].value` creates the work email.
                    let mut seed = eq_seed(attr, filter).ok_or_else(no_target)?;
                    seed.insert(sub.name.clone(), x);
                    items.push(Value::Object(seed));
                    winners = vec![items.len() - 1];
                }
            } else {
                for &i in &matched {
                    if let Some(Value::Object(m)) = items.get_mut(i) {
                        remove_ci(m, &sub.name);
                        if let Some(x) = &coerced {
                            m.insert(sub.name.clone(), x.clone());
                        }
                    }
                }
            }
        }
    }
    clear_primary_except(&mut items, &winners);
    put_array(c, &attr.name, items);
    Ok(())
}

/// remove (RFC 7644 §3.5.2.2).
pub(super) fn remove(
    c: &mut Map<String, Value>,
    attr: &Attribute,
    sub: Option<&Attribute>,
    filter: Option<&Filter>,
    value: Option<&Value>,
    label: &str,
) -> Result<(), ScimError> {
    if let Some(f) = filter {
        if !(attr.multi_valued && attr.is_complex()) {
            return Err(ScimError::invalid_path(format!(
                "a value filter needs a multi-valued complex attribute; {} is not one",
                attr.name
            )));
        }
        let mut items = take_array(c, &attr.name);
        match sub {
            None => items.retain(|e| !f.matches_element(attr, e)),
            Some(sub) => {
                for item in items.iter_mut() {
                    if f.matches_element(attr, item)
                        && let Value::Object(m) = item
                    {
                        remove_ci(m, &sub.name);
                    }
                }
            }
        }
        put_array(c, &attr.name, items);
        return Ok(());
    }
    match sub {
        None => {
            let selective = attr.multi_valued && value.is_some_and(is_assigned);
            if !selective {
                remove_ci(c, &attr.name);
                return Ok(());
            }
            // `remove emails` with a value array: only the listed values go (the Entra
            // member-removal form, applied to any multi-valued attribute).
            let given = match value
                .map(|v| coerce(attr, v, label, Mode::Client))
                .transpose()?
                .flatten()
            {
                Some(Value::Array(items)) => items,
                Some(other) => vec![other],
                None => Vec::new(),
            };
            let given_index = ValueIndex::of(&given);
            let given_values: Vec<Value> = given
                .iter()
                .filter_map(|g| g.get("value"))
                .cloned()
                .collect();
            let values_index = ValueIndex::of(&given_values);
            let mut items = take_array(c, &attr.name);
            items.retain(|e| {
                let same = given_index.find(&given, e).is_some();
                let same_value = e
                    .get("value")
                    .is_some_and(|v| values_index.find(&given_values, v).is_some());
                !(same || same_value)
            });
            put_array(c, &attr.name, items);
        }
        Some(sub) => {
            if attr.multi_valued {
                let mut items = take_array(c, &attr.name);
                for item in items.iter_mut() {
                    if let Value::Object(m) = item {
                        remove_ci(m, &sub.name);
                    }
                }
                put_array(c, &attr.name, items);
            } else {
                let mut obj = take_object(c, &attr.name);
                remove_ci(&mut obj, &sub.name);
                put_object(c, &attr.name, obj);
            }
        }
    }
    Ok(())
}

/// The name a filter path gives to a sub-attribute of `parent`: `type` (relative, the
/// RFC 7644 §3.5.2 valFilter form) or `emails.type`.
pub(super) fn rel_name<'p>(parent: &Attribute, path: &'p AttrPath) -> Option<&'p str> {
    match &path.sub_attr {
        Some(sub) if path.attr.eq_ignore_ascii_case(&parent.name) => Some(sub.as_str()),
        Some(_) => None,
        None => Some(path.attr.as_str()),
    }
}

/// The element an `eq`/`and` filter describes (`type eq "work"` -> `{"type": "work"}`), or
/// `None` when the filter is anything else.
fn eq_seed(parent: &Attribute, f: &Filter) -> Option<Map<String, Value>> {
    fn collect(parent: &Attribute, f: &Filter, out: &mut Map<String, Value>) -> bool {
        match f {
            Filter::And(a, b) => collect(parent, a, out) && collect(parent, b, out),
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } => {
                let Some(sub) = rel_name(parent, path).and_then(|n| parent.sub(n)) else {
                    return false;
                };
                if sub.mutability == Mutability::ReadOnly {
                    return false;
                }
                let v = match value {
                    CompValue::Str(s) => Value::String(s.clone()),
                    CompValue::Bool(b) => Value::Bool(*b),
                    CompValue::Number(n) => Value::Number(n.clone()),
                    CompValue::Null => return false,
                };
                match coerce_single(sub, &v, &sub.name, Mode::Client) {
                    Ok(Some(v)) => {
                        out.insert(sub.name.clone(), v);
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }
    let mut out = Map::new();
    collect(parent, f, &mut out).then_some(out)
}
