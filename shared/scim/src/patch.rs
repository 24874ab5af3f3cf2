//! SCIM PATCH (RFC 7644 §3.5.2) with the dialects identity providers really send.
//!
//! The operations are applied to a copy of the stored resource, which is then validated
//! again exactly like a POST body (types, required attributes, `primary`, immutables): all
//! or nothing. Group membership is never applied to the JSON; it becomes
//! [`MemberChange`]s in request order.
//!
//! Dialects and decisions (fixtures in `tests/fixtures/`, see the README there):
//! - `op` is matched case-insensitively: Entra sends `Add`/`Replace`/`Remove`.
//! - Entra's default dialect: booleans as `"True"`/`"False"` (`entra/disable_user_default.json`),
//!   `manager` as a bare id (`entra/add_manager.json`), member removal as
//!   `remove members` with a value array that lists the members to remove
//!   (`entra/remove_member_default.json`) -> only those are removed.
//! - Entra's `aadOptscim062020` dialect: a path-less `replace` whose value has dotted keys
//!   (`name.givenName`), URN-qualified keys and value-filter keys
//!   (`entra/replace_multiple_aadopt.json`). Every key of a path-less value is handled as if
//!   it were the path of its own operation.
//! - `replace` (or `add`) on `attr[filter]` / `attr[filter].sub` when no element matches:
//!   RFC 7644 §3.5.2.3 says 400 `noTarget`, but Entra sends
//!   `replace emails[type eq "work"].value` to users that have no work email yet and expects
//!   it to be created (`entra/update_user_multi_valued.json`). When the filter is made only of
//!   `eq` comparisons joined by `and`, the element is created from them (`{"type": "work",
//!   "value": ...}`); any other filter gives `noTarget`.
//! - Okta: a path-less `replace` of `{"active": false}` (`okta/patch_deactivate_user.json`);
//!   a group rename that repeats the group's `id` (`okta/patch_group_rename.json`): in a
//!   path-less value an `id` equal to the stored one is ignored, a different one is 400
//!   `mutability`; other `readOnly` attributes there (`meta`, `groups` echoed from a GET) are
//!   ignored as in a PUT body (RFC 7644 §3.5.1). With a `path`, any `readOnly` target is 400
//!   `mutability`.
//! - `replace` with a path and no (or a `null`) value unassigns the attribute (Entra clears
//!   extension attributes that way); `add` without a value is 400 `invalidSyntax`.
//! - `replace` on a single-valued complex attribute replaces the sub-attributes given and
//!   keeps the others (RFC 7644 §3.5.2.3); `replace` on `attr[filter]` replaces the matching
//!   elements whole.
//! - `remove` without a path is 400 `noTarget` (RFC 7644 §3.5.2.2); removing a required
//!   attribute fails re-validation with 400 `invalidValue`; targeting a `readOnly` attribute
//!   is 400 `mutability`; an `immutable` one may only be set while it has no value.
//! - `remove attr[filter]` matching nothing is a no-op (idempotent retries).
//! - `add` to a multi-valued attribute appends the new elements that are not already present;
//!   a new element with `primary: true` clears `primary` on the others (RFC 7644 §3.5.2).
//! - Unknown attributes: 400 `invalidPath` in a `path`, ignored inside a path-less value
//!   (like unknown attributes in a POST body).

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{CompValue, CompareOp, Filter};
use super::resource::{
    Mode, check_immutable, coerce, coerce_single, container_mut, finish, get_ci, ingest,
    is_assigned, is_urn, remove_ci, schema_for_urn,
};
use super::schema::{
    AttrLocation, AttrPath, Attribute, Mutability, PATCH_OP, ResourceKind, ResourceSchema,
};

/// A member reference as sent by a client (`{"value": id, "type"?: "User"|"Group"}`).
#[derive(Clone, Debug, PartialEq)]
pub struct MemberRef {
    pub value: String,
    pub kind: Option<String>,
}

/// A change to a group's membership. Group members are stored one record per member
/// (a 100,000-member group must not be rewritten for one change), so PATCH operations
/// on `members` are not applied to the JSON but handed to the store in order.
#[derive(Clone, Debug, PartialEq)]
pub enum MemberChange {
    Add(Vec<MemberRef>),
    /// Remove these member ids (`members[value eq "id"]`, Entra's value array).
    Remove(Vec<String>),
    /// Remove the members matching a filter other than `value eq` (rare; costs a listing).
    RemoveWhere(Filter),
    /// `remove members` with no filter.
    RemoveAll,
    /// `replace members`: the new complete list.
    Replace(Vec<MemberRef>),
}

/// The outcome of a PATCH request.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPlan {
    /// The patched resource (for groups: without `members`).
    pub resource: Value,
    /// Membership changes, in request order (always empty for users).
    pub member_changes: Vec<MemberChange>,
}

/// Applies a PatchOp request body to `resource` (a stored, normalised SCIM resource; for
/// groups, without `members`). `resource` is unchanged on error: all or nothing.
pub fn apply_patch(
    schema: &ResourceSchema<'_>,
    resource: &Value,
    body: &Value,
) -> Result<PatchPlan, ScimError> {
    let ops = parse_body(body)?;
    let doc = resource
        .as_object()
        .cloned()
        .ok_or_else(|| ScimError::internal("the stored resource is not a JSON object"))?;
    let mut ctx = Ctx {
        schema,
        doc,
        changes: Vec::new(),
    };
    for op in &ops {
        ctx.apply(op)?;
    }
    let Ctx {
        mut doc, changes, ..
    } = ctx;
    if schema.kind == ResourceKind::Group {
        remove_ci(&mut doc, "members");
    }
    let patched = finish(schema, ingest(schema, &doc, Mode::Stored)?)?;
    check_immutable(schema, resource, &patched)?;
    Ok(PatchPlan {
        resource: patched,
        member_changes: changes,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Add,
    Replace,
    Remove,
}

struct Op<'b> {
    kind: OpKind,
    path: Option<&'b str>,
    value: Option<&'b Value>,
}

/// RFC 7644 §3.5.2: `schemas` lists the PatchOp URN; `Operations` is a non-empty array.
fn parse_body(body: &Value) -> Result<Vec<Op<'_>>, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the PATCH body must be a JSON object"))?;
    let lists_patch_op = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP)))
        });
    if !lists_patch_op {
        return Err(ScimError::invalid_syntax(format!(
            "\"schemas\" must list {PATCH_OP}"
        )));
    }
    let ops = match get_ci(obj, "Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => ops,
        _ => {
            return Err(ScimError::invalid_syntax(
                "\"Operations\" must be a non-empty array of operations",
            ));
        }
    };
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            let o = op.as_object().ok_or_else(|| {
                ScimError::invalid_syntax(format!("operation {i} is not an object"))
            })?;
            let kind = match get_ci(o, "op").and_then(Value::as_str) {
                Some(s) if s.eq_ignore_ascii_case("add") => OpKind::Add,
                Some(s) if s.eq_ignore_ascii_case("replace") => OpKind::Replace,
                Some(s) if s.eq_ignore_ascii_case("remove") => OpKind::Remove,
                _ => {
                    return Err(ScimError::invalid_syntax(format!(
                        "operation {i}: \"op\" must be add, replace or remove"
                    )));
                }
            };
            let path = match get_ci(o, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(s.as_str()),
                Some(_) => {
                    return Err(ScimError::invalid_path(format!(
                        "operation {i}: \"path\" must be a string"
                    )));
                }
            };
            Ok(Op {
                kind,
                path,
                value: get_ci(o, "value"),
            })
        })
        .collect()
}

/// A parsed PATCH target: `path.sub_attr` holds the sub-attribute whichever form it had
/// (`name.givenName` or `emails[...].value`).
struct Target {
    path: AttrPath,
    filter: Option<Filter>,
}

fn parse_target(p: &str) -> Result<Target, ScimError> {
    // Attribute paths are ASCII (RFC 7643 §2.1 ATTRNAME, RFC 8141 URNs).
    if !p.is_ascii() {
        return Err(ScimError::invalid_path(
            "the path is not a valid attribute path",
        ));
    }
    let pp = super::filter::parse_patch_path(p)?;
    let mut path = pp.attr;
    match (path.sub_attr.is_some(), pp.sub_attr) {
        (true, Some(_)) => {
            return Err(ScimError::invalid_path("the path has two sub-attributes"));
        }
        (false, Some(sub)) => path.sub_attr = Some(sub),
        _ => {}
    }
    Ok(Target {
        path,
        filter: pp.filter,
    })
}

/// Paths echoed in error details are cut short (details are shown to the client and logged).
fn short(s: &str) -> &str {
    match s.char_indices().nth(120) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

struct Ctx<'s, 'a> {
    schema: &'s ResourceSchema<'a>,
    doc: Map<String, Value>,
    changes: Vec<MemberChange>,
}

impl Ctx<'_, '_> {
    fn apply(&mut self, op: &Op<'_>) -> Result<(), ScimError> {
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
fn set_plain(
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
                // RFC 7644 §3.5.2.1: add appends; identical values are not duplicated.
                let mut items = take_array(c, &attr.name);
                let mut winners = Vec::new();
                for item in new_items {
                    match items.iter().position(|e| e == &item) {
                        Some(i) => winners.push(i),
                        None => {
                            items.push(item);
                            winners.push(items.len() - 1);
                        }
                    }
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
fn set_filtered(
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
                    for &i in &matched {
                        if let Some(item) = items.get_mut(i) {
                            match (kind, item) {
                                (OpKind::Add, Value::Object(m)) => {
                                    for (k, v) in &new {
                                        m.insert(k.clone(), v.clone());
                                    }
                                }
                                (_, item) => *item = Value::Object(new.clone()),
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
fn remove(
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
            let mut items = take_array(c, &attr.name);
            items.retain(|e| {
                !given.iter().any(|g| {
                    g == e || (g.get("value").is_some() && g.get("value") == e.get("value"))
                })
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
fn rel_name<'p>(parent: &Attribute, path: &'p AttrPath) -> Option<&'p str> {
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
    let mut out: Vec<MemberRef> = Vec::with_capacity(items.len());
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
        if !out.iter().any(|r| r.value == id) {
            out.push(MemberRef { value: id, kind });
        }
    }
    Ok(out)
}

/// An operation on a group's `members` as a [`MemberChange`] (`None`: nothing to do).
fn member_change(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScimType;
    use crate::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, SchemaRegistry, USER_SCHEMA};
    use serde_json::json;

    fn fixture(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn stored_user() -> Value {
        json!({
            "schemas": [USER_SCHEMA],
            "id": "5171a35d82074e068ce2",
            "externalId": "aa1eca08",
            "meta": {"resourceType": "User", "created": "2018-03-27T19:59:26.000Z"},
            "userName": "Test_User@testuser.com",
            "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
            "active": true,
            "emails": [{"value": "old@testuser.com", "type": "work", "primary": true}]
        })
    }

    fn stored_group() -> Value {
        json!({
            "schemas": [GROUP_SCHEMA],
            "id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b",
            "displayName": "Old name",
            "meta": {"resourceType": "Group"}
        })
    }

    fn patch_user(resource: &Value, body: &Value) -> Result<PatchPlan, ScimError> {
        let reg = SchemaRegistry::builtin();
        apply_patch(&reg.view(ResourceKind::User), resource, body)
    }

    fn patch_group(resource: &Value, body: &Value) -> Result<PatchPlan, ScimError> {
        let reg = SchemaRegistry::builtin();
        apply_patch(&reg.view(ResourceKind::Group), resource, body)
    }

    fn ops(ops: Value) -> Value {
        json!({"schemas": [PATCH_OP], "Operations": ops})
    }

    fn err_type(r: Result<PatchPlan, ScimError>) -> Option<ScimType> {
        r.unwrap_err().scim_type
    }

    #[test]
    fn entra_disable_user_all_three_forms() {
        for body in [
            include_str!("../../../tests/fixtures/entra/disable_user.json"),
            include_str!("../../../tests/fixtures/entra/disable_user_default.json"),
            include_str!("../../../tests/fixtures/entra/disable_user_aadopt.json"),
            include_str!("../../../tests/fixtures/okta/patch_deactivate_user.json"),
        ] {
            let plan = patch_user(&stored_user(), &fixture(body)).unwrap();
            assert_eq!(plan.resource["active"], false, "{body}");
            assert!(plan.member_changes.is_empty());
            assert_eq!(plan.resource["id"], "5171a35d82074e068ce2");
            assert_eq!(plan.resource["meta"], stored_user()["meta"]);
        }
    }

    #[test]
    fn entra_single_valued_updates() {
        let plan = patch_user(
            &stored_user(),
            &fixture(include_str!(
                "../../../tests/fixtures/entra/update_user_single_valued.json"
            )),
        )
        .unwrap();
        assert_eq!(
            plan.resource["userName"],
            "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
        );
        let plan = patch_user(
            &stored_user(),
            &fixture(include_str!(
                "../../../tests/fixtures/entra/add_single_value_default.json"
            )),
        )
        .unwrap();
        assert_eq!(plan.resource["nickName"], "Babs");
    }

    #[test]
    fn entra_manager_as_bare_id() {
        let plan = patch_user(
            &stored_user(),
            &fixture(include_str!(
                "../../../tests/fixtures/entra/add_manager.json"
            )),
        )
        .unwrap();
        assert_eq!(
            plan.resource[ENTERPRISE_USER_SCHEMA]["manager"],
            json!({"value": "26118915-6090-4610-87e4-4ed23f1e2c4b"})
        );
        assert_eq!(
            plan.resource["schemas"],
            json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA])
        );
        // ... and removed again, which drops the empty extension and its schema URN.
        let plan = patch_user(
            &plan.resource,
            &ops(json!([{"op": "Remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}])),
        )
        .unwrap();
        assert!(plan.resource.get(ENTERPRISE_USER_SCHEMA).is_none());
        assert_eq!(plan.resource["schemas"], json!([USER_SCHEMA]));
    }

    #[test]
    fn extension_paths_and_readonly_sub() {
        let plan = patch_user(
            &stored_user(),
            &ops(json!([
                {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "value": "m1"},
                {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "value": {"costCenter": "42"}}
            ])),
        )
        .unwrap();
        assert_eq!(
            plan.resource[ENTERPRISE_USER_SCHEMA],
            json!({"department": "Sales", "manager": {"value": "m1"}, "costCenter": "42"})
        );
        // Entra clears an attribute with a value-less replace.
        let cleared = patch_user(
            &plan.resource,
            &ops(json!([{"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}])),
        )
        .unwrap();
        assert!(
            cleared.resource[ENTERPRISE_USER_SCHEMA]
                .get("department")
                .is_none()
        );
        let r = patch_user(
            &plan.resource,
            &ops(
                json!([{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName", "value": "x"}]),
            ),
        );
        assert_eq!(err_type(r), Some(ScimType::Mutability));
        let r = patch_user(
            &plan.resource,
            &ops(json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}])),
        )
        .unwrap();
        assert!(r.resource.get(ENTERPRISE_USER_SCHEMA).is_none());
        let r = patch_user(
            &stored_user(),
            &ops(json!([{"op": "add", "path": "urn:example:nope:2.0:User:x", "value": 1}])),
        );
        assert_eq!(err_type(r), Some(ScimType::InvalidValue));
    }

    #[test]
    fn body_validation() {
        let u = stored_user();
        let cases = [
            (
                json!({"Operations": [{"op": "add", "path": "nickName", "value": "x"}]}),
                ScimType::InvalidSyntax,
            ),
            (
                json!({"schemas": [PATCH_OP], "Operations": []}),
                ScimType::InvalidSyntax,
            ),
            (json!({"schemas": [PATCH_OP]}), ScimType::InvalidSyntax),
            (
                ops(json!([{"op": "merge", "path": "nickName", "value": "x"}])),
                ScimType::InvalidSyntax,
            ),
            (ops(json!([{"op": "remove"}])), ScimType::NoTarget),
            (
                ops(json!([{"op": "add", "path": "nickName"}])),
                ScimType::InvalidSyntax,
            ),
            (
                ops(json!([{"op": "add", "value": "x"}])),
                ScimType::InvalidValue,
            ),
            (
                ops(json!([{"op": "add", "path": "nope", "value": "x"}])),
                ScimType::InvalidPath,
            ),
            (
                ops(json!([{"op": "add", "path": "name.nope", "value": "x"}])),
                ScimType::InvalidPath,
            ),
            (
                ops(json!([{"op": "add", "path": "a..b", "value": "x"}])),
                ScimType::InvalidPath,
            ),
            (
                ops(json!([{"op": "add", "path": "nïckName", "value": "x"}])),
                ScimType::InvalidPath,
            ),
            (
                ops(json!([{"op": "replace", "path": "id", "value": "x"}])),
                ScimType::Mutability,
            ),
            (
                ops(
                    json!([{"op": "replace", "path": "meta.created", "value": "2020-01-01T00:00:00Z"}]),
                ),
                ScimType::Mutability,
            ),
            (
                ops(json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}])),
                ScimType::Mutability,
            ),
            (
                ops(json!([{"op": "remove", "path": "userName"}])),
                ScimType::InvalidValue,
            ),
            (
                ops(json!([{"op": "replace", "path": "userName", "value": ""}])),
                ScimType::InvalidValue,
            ),
            (
                ops(json!([{"op": "replace", "path": "active", "value": "maybe"}])),
                ScimType::InvalidValue,
            ),
            (
                ops(json!([{"op": "replace", "value": {"id": "other"}}])),
                ScimType::Mutability,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(err_type(patch_user(&u, &body)), Some(want), "{body}");
        }
    }

    #[test]
    fn all_or_nothing() {
        let u = stored_user();
        let body = ops(json!([
            {"op": "replace", "path": "displayName", "value": "changed"},
            {"op": "replace", "path": "active", "value": "maybe"}
        ]));
        assert!(patch_user(&u, &body).is_err());
        assert_eq!(u, stored_user());
    }

    #[test]
    fn no_path_values() {
        let plan = patch_user(
            &stored_user(),
            &ops(json!([{"op": "Replace", "value": {
                "NAME": {"givenName": "Babs"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
                "unknownThing": 1,
                "schemas": ["whatever"]
            }}])),
        )
        .unwrap();
        // replace on a complex attribute keeps the sub-attributes not given (RFC 7644 §3.5.2.3).
        assert_eq!(plan.resource["name"]["givenName"], "Babs");
        assert_eq!(plan.resource["name"]["familyName"], "familyName");
        assert_eq!(plan.resource[ENTERPRISE_USER_SCHEMA]["department"], "R&D");
        assert!(plan.resource.get("unknownThing").is_none());
        // Server-owned attributes echoed from a GET are ignored in a path-less value.
        let plan = patch_user(
            &stored_user(),
            &ops(json!([{"op": "replace", "value": {"meta": {"resourceType": "User"}, "groups": [{"value": "g"}], "id": "5171a35d82074e068ce2", "nickName": "B"}}])),
        )
        .unwrap();
        assert_eq!(plan.resource["meta"], stored_user()["meta"]);
        assert!(plan.resource.get("groups").is_none());
        assert_eq!(plan.resource["nickName"], "B");
    }

    #[test]
    fn multi_valued_add_dedupe_and_primary() {
        let plan = patch_user(
            &stored_user(),
            &ops(json!([{"op": "add", "path": "emails", "value": [
                {"value": "old@testuser.com", "type": "work", "primary": true},
                {"value": "new@home.com", "type": "home", "primary": true}
            ]}])),
        )
        .unwrap();
        assert_eq!(
            plan.resource["emails"],
            json!([
                {"value": "old@testuser.com", "type": "work", "primary": true},
                {"value": "new@home.com", "type": "home", "primary": false}
            ])
        );
        let plan = patch_user(
            &stored_user(),
            &ops(json!([{"op": "add", "path": "emails", "value": {"value": "new@home.com", "type": "home", "primary": "True"}}])),
        )
        .unwrap();
        assert_eq!(plan.resource["emails"][0]["primary"], false);
        assert_eq!(plan.resource["emails"][1]["primary"], true);
        // replace on a multi-valued attribute without filter replaces every value.
        let plan = patch_user(
            &stored_user(),
            &ops(json!([{"op": "replace", "path": "emails", "value": [{"value": "x@y"}]}])),
        )
        .unwrap();
        assert_eq!(plan.resource["emails"], json!([{"value": "x@y"}]));
        // remove with a value array removes only those (Entra's form, any attribute).
        let plan = patch_user(&stored_user(), &ops(json!([{"op": "remove", "path": "emails", "value": [{"value": "old@testuser.com"}]}]))).unwrap();
        assert!(plan.resource.get("emails").is_none());
        let plan = patch_user(
            &stored_user(),
            &ops(json!([{"op": "remove", "path": "emails.primary"}])),
        )
        .unwrap();
        assert_eq!(
            plan.resource["emails"],
            json!([{"value": "old@testuser.com", "type": "work"}])
        );
        let plan = patch_user(
            &stored_user(),
            &ops(json!([{"op": "add", "path": "phoneNumbers.value", "value": "+1 555"}])),
        )
        .unwrap();
        assert_eq!(plan.resource["phoneNumbers"], json!([{"value": "+1 555"}]));
    }

    #[test]
    fn okta_group_rename_tolerates_its_own_id() {
        let plan = patch_group(
            &stored_group(),
            &fixture(include_str!(
                "../../../tests/fixtures/okta/patch_group_rename.json"
            )),
        )
        .unwrap();
        assert_eq!(plan.resource["displayName"], "Test SCIMv2");
        assert_eq!(plan.resource["id"], "abf4dd94-a4c0-4f67-89c9-76b03340cb9b");
        assert!(plan.member_changes.is_empty());
        let plan = patch_group(
            &stored_group(),
            &fixture(include_str!(
                "../../../tests/fixtures/entra/update_group_display_name.json"
            )),
        )
        .unwrap();
        assert_eq!(
            plan.resource["displayName"],
            "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
        );
    }

    #[test]
    fn entra_group_members() {
        let plan = patch_group(
            &stored_group(),
            &fixture(include_str!(
                "../../../tests/fixtures/entra/add_members.json"
            )),
        )
        .unwrap();
        assert_eq!(
            plan.member_changes,
            vec![MemberChange::Add(vec![MemberRef {
                value: "f648f8d5ea4e4cd38e9c".into(),
                kind: None
            }])]
        );
        assert!(plan.resource.get("members").is_none());
        let plan = patch_group(
            &stored_group(),
            &fixture(include_str!(
                "../../../tests/fixtures/entra/remove_members.json"
            )),
        )
        .unwrap();
        assert_eq!(
            plan.member_changes,
            vec![MemberChange::Remove(vec!["f648f8d5ea4e4cd38e9c".into()])]
        );
        let plan = patch_group(
            &stored_group(),
            &fixture(include_str!(
                "../../../tests/fixtures/entra/remove_member_default.json"
            )),
        )
        .unwrap();
        assert_eq!(
            plan.member_changes,
            vec![MemberChange::Remove(vec!["u1091".into()])]
        );
    }

    #[test]
    fn member_change_forms() {
        let g = stored_group();
        let plan = patch_group(
            &g,
            &fixture(include_str!(
                "../../../tests/fixtures/okta/patch_group_replace_members.json"
            )),
        )
        .unwrap();
        assert_eq!(
            plan.member_changes,
            vec![MemberChange::Replace(vec![
                MemberRef {
                    value: "23a35c27-23d3-4c03-b4c5-6443c09e7173".into(),
                    kind: None
                },
                MemberRef {
                    value: "89bb1940-b905-4575-9e7f-6f887cfb368e".into(),
                    kind: None
                },
            ])]
        );
        let plan = patch_group(
            &g,
            &ops(json!([
                {"op": "remove", "path": "members"},
                {"op": "add", "value": {"members": [{"value": "u2", "type": "User"}], "displayName": "New"}},
                {"op": "replace", "path": "members", "value": []}
            ])),
        )
        .unwrap();
        assert_eq!(
            plan.member_changes,
            vec![
                MemberChange::RemoveAll,
                MemberChange::Add(vec![MemberRef {
                    value: "u2".into(),
                    kind: Some("User".into())
                }]),
                MemberChange::Replace(vec![]),
            ]
        );
        assert_eq!(plan.resource["displayName"], "New");
        assert!(plan.resource.get("members").is_none());
        for (body, want) in [
            (
                ops(json!([{"op": "add", "path": "members", "value": [{"display": "x"}]}])),
                ScimType::InvalidValue,
            ),
            (
                ops(json!([{"op": "replace", "path": "members.value", "value": "x"}])),
                ScimType::Mutability,
            ),
            (
                ops(json!([{"op": "remove", "path": "displayName"}])),
                ScimType::InvalidValue,
            ),
        ] {
            assert_eq!(err_type(patch_group(&g, &body)), Some(want), "{body}");
        }
    }

    #[test]
    fn entra_value_filter_paths_create_missing_work_email() {
        // The user has a work email: it is updated in place.
        let plan = patch_user(
            &stored_user(),
            &fixture(include_str!(
                "../../../tests/fixtures/entra/update_user_multi_valued.json"
            )),
        )
        .unwrap();
        assert_eq!(
            plan.resource["emails"],
            json!([{"value": "updatedEmail@microsoft.com", "type": "work", "primary": true}])
        );
        assert_eq!(plan.resource["name"]["familyName"], "updatedFamilyName");
        // No work email yet: Entra still sends `replace`, and expects it to be created.
        let mut u = stored_user();
        u.as_object_mut().unwrap().remove("emails");
        let plan = patch_user(
            &u,
            &fixture(include_str!(
                "../../../tests/fixtures/entra/replace_multiple_default.json"
            )),
        )
        .unwrap();
        let r = &plan.resource;
        assert_eq!(
            r["emails"],
            json!([{"type": "work", "value": "TestBcwqnm@test.microsoft.com"}])
        );
        assert_eq!(r["displayName"], "Pvlo");
        assert_eq!(r["name"]["givenName"], "Gtfd");
        assert_eq!(r["name"]["familyName"], "Pkqf");
        assert_eq!(r["externalId"], "Eqpj");
        assert_eq!(r[ENTERPRISE_USER_SCHEMA]["employeeNumber"], "Eqpj");
        assert_eq!(r["schemas"], json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]));
    }

    #[test]
    fn entra_aadopt_flat_replace() {
        let plan = patch_user(
            &stored_user(),
            &fixture(include_str!(
                "../../../tests/fixtures/entra/replace_multiple_aadopt.json"
            )),
        )
        .unwrap();
        let r = &plan.resource;
        assert_eq!(r["emails"][0]["value"], "TestMhvaes@test.microsoft.com");
        assert_eq!(r["displayName"], "Bjfe");
        assert_eq!(r["name"]["givenName"], "Kkom");
        assert_eq!(r["name"]["familyName"], "Unua");
        assert_eq!(r["name"]["formatted"], "givenName familyName");
        assert_eq!(r[ENTERPRISE_USER_SCHEMA]["employeeNumber"], "Aklq");
        // A value-filter key inside a path-less value (aadOptscim062020 sends these too).
        let plan = patch_user(
            &stored_user(),
            &ops(json!([{"op": "replace", "value": {"emails[type eq \"work\"].value": "w@x", "addresses[type eq \"work\"].streetAddress": "1 Main St"}}])),
        )
        .unwrap();
        assert_eq!(plan.resource["emails"][0]["value"], "w@x");
        assert_eq!(
            plan.resource["addresses"],
            json!([{"type": "work", "streetAddress": "1 Main St"}])
        );
    }

    #[test]
    fn value_filters() {
        let u = patch_user(
            &stored_user(),
            &ops(json!([{"op": "add", "path": "emails", "value": [{"value": "h@x", "type": "home"}]}])),
        )
        .unwrap()
        .resource;
        // replace a whole matching element.
        let plan = patch_user(&u, &ops(json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "h2@x", "type": "home"}}]))).unwrap();
        assert_eq!(
            plan.resource["emails"][1],
            json!({"value": "h2@x", "type": "home"})
        );
        // primary moved by a filtered replace.
        let plan = patch_user(&u, &ops(json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]))).unwrap();
        assert_eq!(plan.resource["emails"][0]["primary"], false);
        assert_eq!(plan.resource["emails"][1]["primary"], true);
        // remove matching elements / a sub-attribute of them; no match is a no-op.
        let plan = patch_user(
            &u,
            &ops(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}])),
        )
        .unwrap();
        assert_eq!(plan.resource["emails"], stored_user()["emails"]);
        let plan = patch_user(
            &u,
            &ops(json!([{"op": "remove", "path": "emails[value co \"@\"].type"}])),
        )
        .unwrap();
        assert!(
            plan.resource["emails"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e.get("type").is_none())
        );
        let plan = patch_user(
            &u,
            &ops(json!([{"op": "remove", "path": "emails[type eq \"other\"]"}])),
        )
        .unwrap();
        assert_eq!(plan.resource, u);
        // a filter that does not describe an element: RFC 7644 §3.5.2.3 noTarget.
        let r = patch_user(
            &u,
            &ops(
                json!([{"op": "replace", "path": "emails[type ne \"work\" and type ne \"home\"].value", "value": "x"}]),
            ),
        );
        assert_eq!(err_type(r), Some(ScimType::NoTarget));
        let r = patch_user(
            &u,
            &ops(json!([{"op": "replace", "path": "userName[value eq \"x\"]", "value": "x"}])),
        );
        assert_eq!(err_type(r), Some(ScimType::InvalidPath));
        let r = patch_user(
            &u,
            &ops(json!([{"op": "replace", "path": "emails[type eq ]", "value": "x"}])),
        );
        assert_eq!(err_type(r), Some(ScimType::InvalidPath));
        // Filters compare case-insensitively where the schema says so (type is not caseExact).
        let plan = patch_user(&u, &ops(json!([{"op": "replace", "path": "emails[TYPE eq \"WORK\"].value", "value": "w@x"}]))).unwrap();
        assert_eq!(plan.resource["emails"][0]["value"], "w@x");
        assert_eq!(plan.resource["emails"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn group_member_filters() {
        let g = stored_group();
        let plan = patch_group(
            &g,
            &fixture(include_str!(
                "../../../tests/fixtures/okta/patch_group_members.json"
            )),
        )
        .unwrap();
        assert_eq!(
            plan.member_changes,
            vec![
                MemberChange::Remove(vec!["89bb1940-b905-4575-9e7f-6f887cfb368e".into()]),
                MemberChange::Add(vec![MemberRef {
                    value: "23a35c27-23d3-4c03-b4c5-6443c09e7173".into(),
                    kind: None
                }]),
            ]
        );
        let plan = patch_group(
            &g,
            &fixture(include_str!(
                "../../../tests/fixtures/entra/remove_member_aadopt.json"
            )),
        )
        .unwrap();
        assert_eq!(
            plan.member_changes,
            vec![MemberChange::Remove(vec![
                "7f4bc1a3-285e-48ae-8202-5accb43efb0e".into()
            ])]
        );
        let plan = patch_group(
            &g,
            &ops(json!([{"op": "remove", "path": "members[value eq \"a\" or value eq \"b\"]"}])),
        )
        .unwrap();
        assert_eq!(
            plan.member_changes,
            vec![MemberChange::Remove(vec!["a".into(), "b".into()])]
        );
        let plan = patch_group(
            &g,
            &ops(json!([{"op": "remove", "path": "members[type eq \"Group\"]"}])),
        )
        .unwrap();
        assert!(matches!(
            plan.member_changes.as_slice(),
            [MemberChange::RemoveWhere(_)]
        ));
        let r = patch_group(
            &g,
            &ops(
                json!([{"op": "replace", "path": "members[value eq \"a\"]", "value": {"value": "b"}}]),
            ),
        );
        assert_eq!(err_type(r), Some(ScimType::Mutability));
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;

        fn arb_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|i| json!(i)),
                any::<f64>().prop_map(|f| json!(f)),
                "[a-zA-Z0-9 @.\\-]{0,12}".prop_map(Value::String),
                prop_oneof![
                    Just("True"),
                    Just("false"),
                    Just("work"),
                    Just("2024-01-01T00:00:00Z")
                ]
                .prop_map(|s| Value::String(s.into())),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((arb_key(), inner), 0..4)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            })
        }

        fn arb_key() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("value".to_string()),
                Just("type".to_string()),
                Just("primary".to_string()),
                Just("givenName".to_string()),
                Just("members".to_string()),
                Just("displayName".to_string()),
                Just("id".to_string()),
                Just("name.givenName".to_string()),
                Just(ENTERPRISE_USER_SCHEMA.to_string()),
                Just(format!("{ENTERPRISE_USER_SCHEMA}:manager")),
                Just("emails[type eq \"work\"].value".to_string()),
                "[a-zA-Z$.\\[\\]\" :]{0,10}",
            ]
        }

        fn arb_path() -> impl Strategy<Value = Option<String>> {
            let known = prop_oneof![
                Just("userName"),
                Just("active"),
                Just("name"),
                Just("name.givenName"),
                Just("emails"),
                Just("emails.value"),
                Just("emails[type eq \"work\"]"),
                Just("emails[type eq \"work\"].value"),
                Just("emails[primary eq true].primary"),
                Just("addresses[type eq \"work\"].streetAddress"),
                Just("members"),
                Just("members[value eq \"x\"]"),
                Just("members[type eq \"User\"].value"),
                Just("displayName"),
                Just("id"),
                Just("meta.created"),
                Just("groups"),
                Just("password"),
                Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"),
                Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"),
                Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"),
                Just("urn:x:y"),
                Just("x509Certificates[value pr].value"),
            ]
            .prop_map(str::to_string);
            proptest::option::of(prop_oneof![
                known,
                any::<String>(),
                "[a-zA-Z.:\\[\\]\" ]{0,24}"
            ])
        }

        fn arb_op() -> impl Strategy<Value = Value> {
            (
                prop_oneof![
                    Just("add"),
                    Just("Add"),
                    Just("replace"),
                    Just("Replace"),
                    Just("remove"),
                    Just("REMOVE"),
                    Just("copy")
                ],
                arb_path(),
                proptest::option::of(arb_json()),
            )
                .prop_map(|(op, path, value)| {
                    let mut m = Map::new();
                    m.insert("op".into(), json!(op));
                    if let Some(p) = path {
                        m.insert("path".into(), json!(p));
                    }
                    if let Some(v) = value {
                        m.insert("value".into(), v);
                    }
                    Value::Object(m)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn arbitrary_operations_never_panic(ops_list in prop::collection::vec(arb_op(), 1..5), junk in arb_json()) {
                let u = stored_user();
                let g = stored_group();
                let body = ops(Value::Array(ops_list));
                if let Ok(plan) = patch_user(&u, &body) {
                    // Whatever was accepted is a valid stored resource.
                    let reg = SchemaRegistry::builtin();
                    let again = apply_patch(&reg.view(ResourceKind::User), &plan.resource,
                        &ops(json!([{"op": "replace", "path": "active", "value": true}])));
                    prop_assert!(again.is_ok(), "{:?}", again);
                    prop_assert!(plan.member_changes.is_empty());
                }
                if let Ok(plan) = patch_group(&g, &body) {
                    prop_assert!(plan.resource.get("members").is_none());
                }
                let _ = patch_user(&u, &junk);
                let _ = patch_user(&u, &ops(json!([{"op": "replace", "value": junk}])));
                prop_assert_eq!(u, stored_user());
            }
        }
    }
}
