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
mod tests {
    use super::*;
    use crate::schema::{ResourceKind, SchemaRegistry};
    use proptest::prelude::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn ids(resources: &[Value]) -> Vec<&str> {
        resources
            .iter()
            .map(|r| r["id"].as_str().unwrap_or("?"))
            .collect()
    }

    fn sorted(resources: &[Value], by: &str, descending: bool) -> Vec<String> {
        let reg = SchemaRegistry::builtin();
        let schema = reg.view(ResourceKind::User);
        let path = validate_sort_by(&schema, by).unwrap();
        let mut v = resources.to_vec();
        sort_resources(&schema, &mut v, &path, descending);
        ids(&v).into_iter().map(String::from).collect()
    }

    #[test]
    fn strings_case_insensitive_unless_case_exact() {
        let rs = vec![
            json!({"id": "1", "userName": "bob", "externalId": "b"}),
            json!({"id": "2", "userName": "Alice", "externalId": "B"}),
            json!({"id": "3", "userName": "carol", "externalId": "a"}),
            json!({"id": "4", "userName": "ALAN", "externalId": "A"}),
        ];
        assert_eq!(sorted(&rs, "userName", false), ["4", "2", "1", "3"]);
        assert_eq!(sorted(&rs, "USERNAME", true), ["3", "1", "2", "4"]);
        // externalId is caseExact: code point order, upper case first.
        assert_eq!(sorted(&rs, "externalId", false), ["4", "2", "3", "1"]);
    }

    #[test]
    fn missing_values_last_ascending_first_descending() {
        let rs = vec![
            json!({"id": "1"}),
            json!({"id": "2", "title": "b"}),
            json!({"id": "3", "title": null}),
            json!({"id": "4", "title": "a"}),
            json!({"id": "5", "title": ""}),
        ];
        assert_eq!(sorted(&rs, "title", false), ["4", "2", "1", "3", "5"]);
        assert_eq!(sorted(&rs, "title", true), ["1", "3", "5", "2", "4"]);
    }

    #[test]
    fn stable_for_equal_keys() {
        let rs: Vec<Value> = (0..10)
            .map(|i| json!({"id": i.to_string(), "userType": if i % 2 == 0 { "A" } else { "a" }}))
            .collect();
        assert_eq!(
            sorted(&rs, "userType", false),
            ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
        );
        assert_eq!(
            sorted(&rs, "userType", true),
            ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
        );
    }

    #[test]
    fn multi_valued_sorts_by_primary_else_first() {
        let rs = vec![
            json!({"id": "1", "emails": [{"value": "z@x"}, {"value": "a@x", "primary": true}]}),
            json!({"id": "2", "emails": [{"value": "m@x"}, {"value": "b@x"}]}),
            json!({"id": "3", "emails": []}),
            json!({"id": "4", "emails": [{"value": "C@x", "primary": false}]}),
        ];
        assert_eq!(sorted(&rs, "emails.value", false), ["1", "4", "2", "3"]);
        assert_eq!(sorted(&rs, "emails", false), ["1", "4", "2", "3"]);
        assert_eq!(sorted(&rs, "emails", true), ["3", "2", "4", "1"]);
        let rs = vec![
            json!({"id": "1", "emails": [{"value": "a@x", "type": "work"}]}),
            json!({"id": "2", "emails": [{"value": "b@x", "type": "home", "primary": true}, {"type": "aaa"}]}),
        ];
        assert_eq!(sorted(&rs, "emails.type", false), ["2", "1"]);
    }

    #[test]
    fn date_times_by_instant_and_sub_attributes() {
        let rs = vec![
            json!({"id": "1", "meta": {"lastModified": "2020-01-01T12:00:00+05:00"}}),
            json!({"id": "2", "meta": {"lastModified": "2020-01-01T08:00:00Z"}}),
            json!({"id": "3", "meta": {"lastModified": "2020-01-01T07:30:00Z"}}),
            json!({"id": "4", "meta": {}}),
        ];
        // 12:00+05:00 is 07:00Z: earliest.
        assert_eq!(
            sorted(&rs, "meta.lastModified", false),
            ["1", "3", "2", "4"]
        );
        let rs = vec![
            json!({"id": "1", "name": {"familyName": "smith"}}),
            json!({"id": "2", "name": {"familyName": "Jensen"}}),
        ];
        assert_eq!(sorted(&rs, "name.familyName", false), ["2", "1"]);
    }

    #[test]
    fn numbers_and_extensions() {
        let reg = SchemaRegistry::builtin()
            .add_extension(
                ResourceKind::User,
                r#"{"id":"urn:acme:User","name":"Acme","attributes":[{"name":"badge","type":"integer"}]}"#,
                false,
            )
            .unwrap();
        let schema = reg.view(ResourceKind::User);
        let mut rs = vec![
            json!({"id": "1", "urn:acme:User": {"badge": 10}}),
            json!({"id": "2", "urn:acme:User": {"badge": 9}}),
            json!({"id": "3", "urn:acme:User": {"badge": -1.5}}),
            json!({"id": "4"}),
        ];
        let path = validate_sort_by(&schema, "urn:acme:User:badge").unwrap();
        sort_resources(&schema, &mut rs, &path, false);
        assert_eq!(ids(&rs), ["3", "2", "1", "4"]);
        let path = validate_sort_by(&schema, "badge").unwrap();
        sort_resources(&schema, &mut rs, &path, true);
        assert_eq!(ids(&rs), ["4", "1", "2", "3"]);

        let rs = vec![
            json!({"id": "1", ENT: {"employeeNumber": "20"}}),
            json!({"id": "2", ENT: {"employeeNumber": "100"}}),
        ];
        // employeeNumber is a string: "100" < "20".
        assert_eq!(
            sorted(&rs, &format!("{ENT}:employeeNumber"), false),
            ["2", "1"]
        );
        let rs = vec![
            json!({"id": "1", ENT: {"manager": {"value": "m2"}}}),
            json!({"id": "2", ENT: {"manager": {"value": "m1"}}}),
        ];
        assert_eq!(
            sorted(&rs, &format!("{ENT}:manager.value"), false),
            ["2", "1"]
        );
    }

    #[test]
    fn validate_sort_by_rules() {
        let reg = SchemaRegistry::builtin();
        let schema = reg.view(ResourceKind::User);
        assert_eq!(
            validate_sort_by(&schema, " userName ").unwrap(),
            AttrPath::new("userName")
        );
        // Unknown attributes are accepted; nothing moves.
        let unknown = validate_sort_by(&schema, "favouriteColour").unwrap();
        let mut rs = vec![json!({"id": "b"}), json!({"id": "a"})];
        sort_resources(&schema, &mut rs, &unknown, false);
        assert_eq!(ids(&rs), ["b", "a"]);
        sort_resources(&schema, &mut rs, &unknown, true);
        assert_eq!(ids(&rs), ["b", "a"]);
        for bad in [
            "",
            "1abc",
            "a.b.c",
            "userName desc",
            "émail",
            "name",
            "addresses",
        ] {
            let e = validate_sort_by(&schema, bad).expect_err(bad);
            assert_eq!(e.status, 400);
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidValue), "{bad}");
        }
        assert!(
            validate_sort_by(&schema, "name")
                .unwrap_err()
                .detail
                .contains("name.formatted")
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter_map("finite", serde_json::Number::from_f64)
                .prop_map(Value::Number),
            "[a-zA-Z0-9 :-]{0,8}".prop_map(Value::String),
            Just(Value::String("2011-05-13T04:42:34Z".into())),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("userName".to_string()),
                            Just("emails".to_string()),
                            Just("value".to_string()),
                            Just("primary".to_string()),
                            Just("meta".to_string()),
                            Just("lastModified".to_string()),
                            "[a-z]{1,3}",
                        ],
                        inner
                    ),
                    0..4
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn sort_never_panics_and_is_a_permutation(
            mut rs in prop::collection::vec(arb_json(), 0..12),
            by in proptest::sample::select(vec!["userName", "emails", "emails.value", "meta.lastModified", "zz", "active"]),
            descending in any::<bool>(),
        ) {
            let reg = SchemaRegistry::builtin();
            let schema = reg.view(ResourceKind::User);
            let path = validate_sort_by(&schema, by).unwrap();
            let mut before: Vec<String> = rs.iter().map(Value::to_string).collect();
            sort_resources(&schema, &mut rs, &path, descending);
            let mut after: Vec<String> = rs.iter().map(Value::to_string).collect();
            before.sort();
            after.sort();
            prop_assert_eq!(before, after);
        }

        #[test]
        fn descending_is_ascending_reversed_for_distinct_keys(names in prop::collection::btree_set("[a-z]{1,6}", 0..10)) {
            let rs: Vec<Value> = names.iter().rev().map(|n| json!({"id": n, "userName": n})).collect();
            let asc = sorted(&rs, "userName", false);
            let mut desc = sorted(&rs, "userName", true);
            desc.reverse();
            prop_assert_eq!(&asc, &desc);
            prop_assert_eq!(asc, names.into_iter().collect::<Vec<_>>());
        }
    }
}
