//! The SCIM filter language (RFC 7644 §3.4.2.2): parser, printer and evaluator, plus the
//! PATCH path syntax (RFC 7644 §3.5.2) that reuses it.
//!
//! The grammar (RFC 7644 §3.4.2.2, Figure 1):
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"
//! valuePath = attrPath "[" valFilter "]"
//! valFilter = attrExp / logExp / *1"not" "(" valFilter ")"
//! attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//! logExp    = FILTER SP ("and" / "or") SP FILTER
//! compValue = false / null / true / number / string   ; JSON (RFC 7159)
//! attrPath  = [URI ":"] ATTRNAME *1subAttr
//! ```
//!
//! `and` binds tighter than `or` (§3.4.2.2: "and" has higher precedence), both are
//! left-associative. Operators and keywords are case-insensitive. The parser is a
//! hand-written recursive descent whose recursion only happens through `(`, `not (` and
//! `[`, each of which counts against [`MAX_FILTER_DEPTH`], so a hostile filter is rejected
//! with `invalidFilter` long before the stack is at risk. Chains of `and`/`or` are built in a
//! loop (left-associative trees), and their length is bounded by [`MAX_FILTER_LEN`].
//!
//! Whitespace: the RFC requires exactly one SP between tokens; we accept any run of
//! whitespace, and none around parentheses and brackets (`not(a pr)`), because real clients
//! send both.

mod compare;
mod eval;
mod lexer;
mod parser;
mod print;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

use super::error::ScimError;
use super::schema::AttrPath;

pub(crate) use compare::{cmp_numbers, parse_instant};
pub(crate) use eval::{attr_json, get_ci};
pub(crate) use parser::parse_attr_path;
pub use parser::{parse, parse_patch_path};
pub use validate::resolve_attr;

/// Deepest nesting of parentheses / `not` / value paths a filter may have.
pub const MAX_FILTER_DEPTH: usize = 32;
/// Longest filter string accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    pub const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ];

    /// The operator as the RFC spells it (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// Parses an operator, case-insensitively (RFC 7644 §3.4.2.2: "Attribute names and
    /// attribute operators used in filters are case insensitive").
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(s))
    }

    /// `gt` / `ge` / `lt` / `le`.
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }

    /// `co` / `sw` / `ew`.
    pub fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison value: JSON `false` / `null` / `true` / number / string.
#[derive(Clone, Debug, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(String),
}

impl CompValue {
    /// The value as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            CompValue::Null => Value::Null,
            CompValue::Bool(b) => Value::Bool(*b),
            CompValue::Number(n) => Value::Number(n.clone()),
            CompValue::Str(s) => Value::String(s.clone()),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            CompValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Number(n) => write!(f, "{n}"),
            // JSON string syntax, as the grammar says: quotes, backslashes and control
            // characters escaped.
            CompValue::Str(s) => write!(f, "{}", Value::String(s.clone())),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// `attrPath op value`
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    /// `attrPath pr`
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    /// `not ( filter )`
    Not(Box<Filter>),
    /// `attrPath [ valFilter ]` — `filter` paths are relative to the elements of `path`.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

/// A PATCH path (RFC 7644 §3.5.2): `attrPath [ "[" valFilter "]" ] [ "." subAttr ]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// Sub-attribute after a value filter (`emails[type eq "work"].value`).
    pub sub_attr: Option<String>,
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Filter {
    type Err = ScimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}
