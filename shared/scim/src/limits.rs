//! What one request may carry, and the set structure that keeps the work on a request
//! body linear in its size.
//!
//! The caps are far above what identity providers send (AWS IAM Identity Center takes at
//! most 100 membership changes per request and Entra ID provisions into it; IBM Verify
//! 2,500; Miro 8,000), and low enough that the largest legal body costs milliseconds.
//! They are announced in the README ("Limits and integrity") and named in the error.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use serde_json::{Map, Value};

use crate::error::ScimError;

/// Most values one multi-valued attribute may hold (`emails`, `roles`, ...), in a body or
/// after a PATCH. Group `members` have their own cap, [`MAX_MEMBERS_PER_REQUEST`].
pub const MAX_VALUES_PER_ATTRIBUTE: usize = 1_000;
/// Most group members one request may name: the `members` of a POST or PUT, or all the
/// members the operations of one PATCH add, remove or replace together. A group may hold
/// more; they are added in several requests.
pub const MAX_MEMBERS_PER_REQUEST: usize = 10_000;
/// Most operations in one PATCH request.
pub const MAX_PATCH_OPERATIONS: usize = 1_000;

/// The cap of one multi-valued attribute (`members` of a group: the members cap).
pub(crate) fn max_values(attr_name: &str) -> usize {
    if attr_name == "members" {
        MAX_MEMBERS_PER_REQUEST
    } else {
        MAX_VALUES_PER_ATTRIBUTE
    }
}

/// 400 `invalidValue` naming the attribute and the cap.
pub(crate) fn too_many_values(label: &str, n: usize, cap: usize) -> ScimError {
    if label == "members" {
        return too_many_members(n);
    }
    ScimError::invalid_value(format!(
        "attribute {label} has {n} values; at most {cap} values per multi-valued attribute are accepted"
    ))
}

/// 400 `invalidValue` naming the members cap.
pub(crate) fn too_many_members(n: usize) -> ScimError {
    ScimError::invalid_value(format!(
        "{n} members in one request; at most {MAX_MEMBERS_PER_REQUEST} members per request are accepted (send the rest in further PATCH requests)"
    ))
}

/// Values seen so far, found again in constant time: JSON values have no `Hash`, so each
/// is hashed structurally (object members in any order, as `serde_json`'s equality has
/// it) with a per-set random key, and equal hashes are confirmed with `==`.
pub(crate) struct ValueIndex {
    state: RandomState,
    buckets: HashMap<u64, Vec<usize>>,
    /// Elements equal but for their `primary` flag count as the same value.
    ignore_primary: bool,
}

/// Two elements of a multi-valued attribute hold the same value: equal but for `primary`.
pub(crate) fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let others = |m: &Map<String, Value>| m.keys().filter(|k| *k != "primary").count();
            others(x) == others(y)
                && x.iter()
                    .filter(|(k, _)| *k != "primary")
                    .all(|(k, v)| y.get(k) == Some(v))
        }
        _ => a == b,
    }
}

impl ValueIndex {
    pub(crate) fn new() -> Self {
        ValueIndex {
            state: RandomState::new(),
            buckets: HashMap::new(),
            ignore_primary: false,
        }
    }

    /// An index of `items` in which elements equal but for `primary` are the same value
    /// (re-adding an email as primary finds the one already there).
    pub(crate) fn of_values(items: &[Value]) -> Self {
        let mut ix = ValueIndex::new();
        ix.ignore_primary = true;
        for (i, v) in items.iter().enumerate() {
            ix.insert(v, i);
        }
        ix
    }

    /// An index of `items` (position of each).
    pub(crate) fn of(items: &[Value]) -> Self {
        let mut ix = ValueIndex::new();
        for (i, v) in items.iter().enumerate() {
            ix.insert(v, i);
        }
        ix
    }

    /// The position in `items` of a value equal to `v`, if one was inserted.
    pub(crate) fn find(&self, items: &[Value], v: &Value) -> Option<usize> {
        self.buckets.get(&self.hash(v))?.iter().copied().find(|&i| {
            items.get(i).is_some_and(|e| {
                if self.ignore_primary {
                    same_value(e, v)
                } else {
                    e == v
                }
            })
        })
    }

    pub(crate) fn insert(&mut self, v: &Value, position: usize) {
        let h = self.hash(v);
        self.buckets.entry(h).or_default().push(position);
    }

    fn hash(&self, v: &Value) -> u64 {
        let mut h = self.state.build_hasher();
        match v {
            Value::Object(m) if self.ignore_primary => {
                let mut sum = 0u64;
                let mut n = 0usize;
                for (k, x) in m.iter().filter(|(k, _)| *k != "primary") {
                    let mut eh = self.state.build_hasher();
                    k.hash(&mut eh);
                    self.feed(x, &mut eh);
                    sum = sum.wrapping_add(eh.finish());
                    n += 1;
                }
                (5u8, n, sum).hash(&mut h);
            }
            _ => self.feed(v, &mut h),
        }
        h.finish()
    }

    fn feed(&self, v: &Value, h: &mut impl Hasher) {
        match v {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => (1u8, b).hash(h),
            // Equal numbers have the same representation, so the same text.
            Value::Number(n) => (2u8, n.to_string()).hash(h),
            Value::String(s) => (3u8, s).hash(h),
            Value::Array(a) => {
                (4u8, a.len()).hash(h);
                for x in a {
                    self.feed(x, h);
                }
            }
            Value::Object(m) => {
                // Order-independent: the members' own hashes, added.
                let mut sum = 0u64;
                for (k, x) in m {
                    let mut eh = self.state.build_hasher();
                    k.hash(&mut eh);
                    self.feed(x, &mut eh);
                    sum = sum.wrapping_add(eh.finish());
                }
                (5u8, m.len(), sum).hash(h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_equal_values_whatever_the_member_order() {
        let items = vec![
            json!({"value": "a@x", "type": "work"}),
            json!(1),
            json!("s"),
            json!([1, 2]),
        ];
        let ix = ValueIndex::of(&items);
        assert_eq!(
            ix.find(&items, &json!({"type": "work", "value": "a@x"})),
            Some(0)
        );
        assert_eq!(ix.find(&items, &json!(1)), Some(1));
        assert_eq!(ix.find(&items, &json!(1.0)), None);
        assert_eq!(ix.find(&items, &json!("s")), Some(2));
        assert_eq!(ix.find(&items, &json!([2, 1])), None);
        assert_eq!(ix.find(&items, &json!({"value": "a@x"})), None);
    }
}
