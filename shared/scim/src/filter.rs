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

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime};
use serde_json::{Number, Value};

use super::error::ScimError;
use super::schema::{
    AttrLocation, AttrPath, AttrType, Attribute, ResolvedAttr, ResourceSchema, is_attr_name,
};

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

/// Parses a filter. Errors are 400 `invalidFilter` with a detail that says where.
pub fn parse(input: &str) -> Result<Filter, ScimError> {
    if input.len() > MAX_FILTER_LEN {
        return Err(ScimError::invalid_filter(format!(
            "filter is {} bytes long; the limit is {MAX_FILTER_LEN}",
            input.len()
        )));
    }
    let mut p = Parser::new(input);
    let result = p.parse_or(false).and_then(|f| match p.next()? {
        Lexed { tok: Tok::Eof, .. } => Ok(f),
        other => Err(other.unexpected("`and`, `or` or the end of the filter")),
    });
    result.map_err(|e| {
        ScimError::invalid_filter(format!("invalid filter at position {}: {}", e.pos, e.msg))
    })
}

impl std::str::FromStr for Filter {
    type Err = ScimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses a PATCH path. Errors are 400 `invalidPath`.
///
/// RFC 7644 §3.5.2: `PATH = attrPath / valuePath [subAttr]`. The value filter uses the
/// filter grammar (without nested value paths); the URN form may contain dots (`2.0`), which
/// is why the attribute part is split with [`AttrPath::parse`] (last `:` first).
pub fn parse_patch_path(input: &str) -> Result<PatchPath, ScimError> {
    let invalid = |pos: usize, msg: &str| {
        ScimError::invalid_path(format!("invalid path at position {pos}: {msg}"))
    };
    if input.len() > MAX_FILTER_LEN {
        return Err(ScimError::invalid_path(format!(
            "path is {} bytes long; the limit is {MAX_FILTER_LEN}",
            input.len()
        )));
    }
    let start = input.len() - input.trim_start().len();
    let s = input.trim_end();
    if s.len() <= start {
        return Err(ScimError::invalid_path("the path is empty"));
    }
    let Some(open) = s.find('[') else {
        return match parse_attr_path(&s[start..]) {
            Some(attr) => Ok(PatchPath {
                attr,
                filter: None,
                sub_attr: None,
            }),
            None => Err(invalid(
                start,
                &format!("`{}` is not an attribute path", snippet(&s[start..])),
            )),
        };
    };
    let attr = parse_attr_path(&s[start..open]).ok_or_else(|| {
        invalid(
            start,
            &format!("`{}` is not an attribute path", snippet(&s[start..open])),
        )
    })?;
    let mut p = Parser::new(s);
    p.pos = open + 1;
    p.depth = 1;
    let filter = p
        .parse_or(true)
        .and_then(|f| match p.next()? {
            Lexed {
                tok: Tok::RBracket, ..
            } => Ok(f),
            other => Err(other.unexpected("`and`, `or` or `]`")),
        })
        .map_err(|e| invalid(e.pos, &e.msg))?;
    let tail = &s[p.pos..];
    let sub_attr = if tail.is_empty() {
        None
    } else {
        match tail.strip_prefix('.') {
            Some(sub) if is_attr_name(sub) => Some(sub.to_string()),
            _ => {
                return Err(invalid(
                    p.pos,
                    &format!(
                        "expected `.subAttribute` or the end of the path after `]`, found `{}`",
                        snippet(tail)
                    ),
                ));
            }
        }
    };
    Ok(PatchPath {
        attr,
        filter: Some(filter),
        sub_attr,
    })
}

/// [`AttrPath::parse`], guarded: attribute paths (ATTRNAME and URNs) are ASCII, and
/// refusing anything else up front keeps byte slicing inside `AttrPath::parse` on character
/// boundaries whatever the client sent.
pub(crate) fn parse_attr_path(s: &str) -> Option<AttrPath> {
    if s.is_empty() || !s.is_ascii() {
        return None;
    }
    AttrPath::parse(s)
}

/// A short, single-line excerpt of client input for error details (never the whole
/// filter: it may be 8 KiB long).
fn snippet(s: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = s.chars().take(MAX).collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out.escape_debug().to_string()
}

// ---------------------------------------------------------------------------------------
// Lexer and parser
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct ParseError {
    pos: usize,
    msg: String,
}

#[derive(Debug)]
enum Tok<'a> {
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// A JSON string, decoded.
    Str(String),
    /// Anything else up to whitespace or `( ) [ ] "`: attribute paths, operators,
    /// keywords, numbers.
    Word(&'a str),
    Eof,
}

#[derive(Debug)]
struct Lexed<'a> {
    tok: Tok<'a>,
    start: usize,
    end: usize,
}

impl Lexed<'_> {
    fn describe(&self) -> String {
        match &self.tok {
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Str(s) => format!("the string \"{}\"", snippet(s)),
            Tok::Word(w) => format!("`{}`", snippet(w)),
            Tok::Eof => "the end of the filter".into(),
        }
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        ParseError {
            pos: self.start,
            msg: format!("expected {expected}, found {}", self.describe()),
        }
    }
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"')
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next unread character.
    pos: usize,
    depth: usize,
    peeked: Option<Lexed<'a>>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            pos: 0,
            depth: 0,
            peeked: None,
        }
    }

    /// Reads the token at `self.pos` without consuming it.
    fn lex(&self) -> Result<Lexed<'a>, ParseError> {
        let rest = &self.src[self.pos..];
        let trimmed = rest.trim_start();
        let start = self.pos + (rest.len() - trimmed.len());
        let mut chars = trimmed.chars();
        let Some(c) = chars.next() else {
            return Ok(Lexed {
                tok: Tok::Eof,
                start,
                end: start,
            });
        };
        let single = |tok| {
            Ok(Lexed {
                tok,
                start,
                end: start + 1,
            })
        };
        match c {
            '(' => single(Tok::LParen),
            ')' => single(Tok::RParen),
            '[' => single(Tok::LBracket),
            ']' => single(Tok::RBracket),
            '"' => {
                // Find the closing quote, skipping escaped characters; the JSON decoder
                // then checks the escapes themselves (\" \\ \/ \b \f \n \r \t \uXXXX).
                let bytes = trimmed.as_bytes();
                let mut i = 1;
                let end = loop {
                    match bytes.get(i) {
                        None => {
                            return Err(ParseError {
                                pos: start,
                                msg: "unterminated string".into(),
                            });
                        }
                        Some(b'\\') => i += 2,
                        Some(b'"') => break i + 1,
                        Some(_) => i += 1,
                    }
                };
                // `end` follows an ASCII quote, so it is a character boundary.
                let literal = &trimmed[..end];
                match serde_json::from_str::<String>(literal) {
                    Ok(s) => Ok(Lexed {
                        tok: Tok::Str(s),
                        start,
                        end: start + end,
                    }),
                    Err(e) => Err(ParseError {
                        pos: start,
                        msg: format!("invalid string literal: {e}"),
                    }),
                }
            }
            _ => {
                let len = trimmed.find(is_delimiter).unwrap_or(trimmed.len());
                Ok(Lexed {
                    tok: Tok::Word(&trimmed[..len]),
                    start,
                    end: start + len,
                })
            }
        }
    }

    fn next(&mut self) -> Result<Lexed<'a>, ParseError> {
        let l = match self.peeked.take() {
            Some(l) => l,
            None => self.lex()?,
        };
        self.pos = l.end;
        Ok(l)
    }

    fn peek(&mut self) -> Result<&Lexed<'a>, ParseError> {
        let l = match self.peeked.take() {
            Some(l) => l,
            None => self.lex()?,
        };
        Ok(self.peeked.insert(l))
    }

    fn peek_is_keyword(&mut self, kw: &str) -> Result<bool, ParseError> {
        Ok(matches!(self.peek()?.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw)))
    }

    fn enter(&mut self, at: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err(ParseError {
                pos: at,
                msg: format!(
                    "filter is nested too deeply (more than {MAX_FILTER_DEPTH} levels of parentheses, `not` and value paths)"
                ),
            });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn expect_close(&mut self, close: &str, open_at: usize) -> Result<(), ParseError> {
        let l = self.next()?;
        let ok = match (&l.tok, close) {
            (Tok::RParen, ")") | (Tok::RBracket, "]") => true,
            (Tok::Eof, _) => {
                return Err(ParseError {
                    pos: l.start,
                    msg: format!("missing `{close}` for the one opened at position {open_at}"),
                });
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(l.unexpected(&format!("`and`, `or` or `{close}`")))
        }
    }

    /// `FILTER *("or" FILTER)`, where each operand is an `and` chain. `in_value` is set
    /// inside `[ ]`, where value paths may not nest.
    fn parse_or(&mut self, in_value: bool) -> Result<Filter, ParseError> {
        let mut left = self.parse_and(in_value)?;
        while self.peek_is_keyword("or")? {
            self.next()?;
            let right = self.parse_and(in_value)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self, in_value: bool) -> Result<Filter, ParseError> {
        let mut left = self.parse_unary(in_value)?;
        while self.peek_is_keyword("and")? {
            self.next()?;
            let right = self.parse_unary(in_value)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_unary(&mut self, in_value: bool) -> Result<Filter, ParseError> {
        let l = self.next()?;
        match l.tok {
            Tok::LParen => {
                self.enter(l.start)?;
                let f = self.parse_or(in_value)?;
                self.expect_close(")", l.start)?;
                self.leave();
                Ok(f)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("not") => {
                match self.peek()?.tok {
                    Tok::LParen => {
                        let open = self.next()?;
                        self.enter(l.start)?;
                        let f = self.parse_or(in_value)?;
                        self.expect_close(")", open.start)?;
                        self.leave();
                        Ok(Filter::Not(Box::new(f)))
                    }
                    // An attribute that happens to be called `not` (ATTRNAME allows it).
                    Tok::LBracket => self.parse_attr_exp(w, l.start, in_value),
                    Tok::Word(op)
                        if op.eq_ignore_ascii_case("pr") || CompareOp::parse(op).is_some() =>
                    {
                        self.parse_attr_exp(w, l.start, in_value)
                    }
                    _ => Err(self.next()?.unexpected("`(` after `not`")),
                }
            }
            Tok::Word(w) => self.parse_attr_exp(w, l.start, in_value),
            _ => Err(l.unexpected("an attribute path, `(` or `not`")),
        }
    }

    /// `attrPath pr` / `attrPath op value` / `attrPath [ valFilter ]`.
    fn parse_attr_exp(
        &mut self,
        word: &str,
        at: usize,
        in_value: bool,
    ) -> Result<Filter, ParseError> {
        let path = parse_attr_path(word).ok_or_else(|| ParseError {
            pos: at,
            msg: format!("`{}` is not an attribute path", snippet(word)),
        })?;
        let l = self.next()?;
        match l.tok {
            Tok::LBracket if in_value => Err(ParseError {
                pos: l.start,
                msg: "value paths cannot be nested inside a value filter".into(),
            }),
            Tok::LBracket => {
                self.enter(l.start)?;
                let inner = self.parse_or(true)?;
                self.expect_close("]", l.start)?;
                self.leave();
                Ok(Filter::ValuePath {
                    path,
                    filter: Box::new(inner),
                })
            }
            Tok::Word(op) if op.eq_ignore_ascii_case("pr") => Ok(Filter::Present(path)),
            Tok::Word(op) => {
                let op = CompareOp::parse(op).ok_or_else(|| ParseError {
                    pos: l.start,
                    msg: format!(
                        "unknown operator `{}` (expected eq, ne, co, sw, ew, gt, ge, lt, le or pr)",
                        snippet(op)
                    ),
                })?;
                let value = self.parse_value()?;
                Ok(Filter::Compare { path, op, value })
            }
            _ => Err(l.unexpected(&format!("an operator after `{path}`"))),
        }
    }

    fn parse_value(&mut self) -> Result<CompValue, ParseError> {
        let l = self.next()?;
        let expected = "a comparison value (a string, a number, true, false or null)";
        match l.tok {
            Tok::Str(s) => Ok(CompValue::Str(s)),
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => Ok(CompValue::Bool(true)),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => Ok(CompValue::Bool(false)),
            Tok::Word(w) if w.eq_ignore_ascii_case("null") => Ok(CompValue::Null),
            Tok::Word(w) if w.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                parse_number(w)
                    .map(CompValue::Number)
                    .ok_or_else(|| ParseError {
                        pos: l.start,
                        msg: format!("`{}` is not a valid number", snippet(w)),
                    })
            }
            _ => Err(l.unexpected(expected)),
        }
    }
}

/// A JSON number (RFC 7159 §6: `[ "-" ] int [ frac ] [ exp ]`, no leading zeros).
/// Integers that fit stay integers; everything else becomes the nearest f64, parsed with
/// the standard library (correctly rounded, so printing and re-parsing a float gives the
/// same float). Out-of-range values (`1e999`) are refused.
fn parse_number(w: &str) -> Option<Number> {
    let b = w.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let int_len = digits(&mut i);
    if int_len == 0 || (int_len > 1 && b[int_start] == b'0') {
        return None;
    }
    let mut integral = true;
    if b.get(i) == Some(&b'.') {
        i += 1;
        integral = false;
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        integral = false;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    if integral {
        if let Ok(n) = w.parse::<u64>() {
            return Some(n.into());
        }
        if let Ok(n) = w.parse::<i64>() {
            return Some(n.into());
        }
    }
    w.parse::<f64>().ok().and_then(Number::from_f64)
}

// ---------------------------------------------------------------------------------------
// Printer
// ---------------------------------------------------------------------------------------

/// Binding strength for the printer: `or` < `and` < everything else.
fn precedence(f: &Filter) -> u8 {
    match f {
        Filter::Or(..) => 1,
        Filter::And(..) => 2,
        _ => 3,
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, operand: &Filter, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({operand})")
    } else {
        write!(f, "{operand}")
    }
}

/// Canonical form: lower-case operators, JSON literals, one space between tokens, and only
/// the parentheses the tree needs. Chains are left-associative, so a right operand of the
/// same operator is parenthesised: `parse(&f.to_string()) == f` for every filter the parser
/// can produce.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::And(l, r) => {
                write_operand(f, l, precedence(l) < 2)?;
                f.write_str(" and ")?;
                write_operand(f, r, precedence(r) <= 2)
            }
            Filter::Or(l, r) => {
                write_operand(f, l, precedence(l) < 1)?;
                f.write_str(" or ")?;
                write_operand(f, r, precedence(r) <= 1)
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

/// Resolves a path against a resource type: [`ResourceSchema::resolve`], and for a path
/// without a URN that names no core or common attribute, the one extension that defines it.
/// RFC 7644 §3.10 has clients qualify extension attributes with the schema URN, but some
/// send the bare name (`employeeNumber`); when exactly one extension defines it there is no
/// ambiguity, so we accept it.
pub fn resolve_attr<'a>(schema: &ResourceSchema<'a>, path: &AttrPath) -> Option<ResolvedAttr<'a>> {
    if let Some(r) = schema.resolve(path) {
        return Some(r);
    }
    if path.urn.is_some() {
        return None;
    }
    let mut found = None;
    for &(ext, _) in &schema.extensions {
        let Some(attr) = ext.attribute(&path.attr) else {
            continue;
        };
        let sub = match &path.sub_attr {
            None => None,
            Some(name) => match attr.sub(name) {
                Some(s) => Some(s),
                None => continue,
            },
        };
        if found.is_some() {
            return None; // defined by two extensions: the client must say which
        }
        found = Some(ResolvedAttr {
            location: AttrLocation::Extension(ext.id.as_str()),
            attr,
            sub,
        });
    }
    found
}

fn unknown_attribute(path: &dyn fmt::Display) -> ScimError {
    ScimError::invalid_filter(format!("unknown attribute `{path}` in filter"))
}

/// Checks that `op value` makes sense for an attribute defined by `leaf`.
fn check_comparison(
    path: &dyn fmt::Display,
    leaf: &Attribute,
    op: CompareOp,
    value: &CompValue,
) -> Result<(), ScimError> {
    // RFC 7644 §3.4.2.2: a multi-valued complex attribute without a sub-attribute is
    // compared through its `value` sub-attribute (`emails co "example.com"`). We apply the
    // same rule to any complex attribute that has a `value` (the enterprise `manager`).
    // Other complex attributes (`name`, `addresses`) have nothing to compare against.
    let leaf = if leaf.is_complex() {
        leaf.sub("value").ok_or_else(|| {
            ScimError::invalid_filter(format!(
                "`{path}` is a complex attribute: compare one of its sub-attributes instead"
            ))
        })?
    } else {
        leaf
    };
    if op.is_ordering() {
        // RFC 7644 §3.4.2.2, gt/ge/lt/le: "If comparing a Boolean or Binary attribute,
        // the server SHALL return an HTTP 400 error with a scimType of invalidFilter".
        if matches!(leaf.ty, AttrType::Boolean | AttrType::Binary) {
            return Err(ScimError::invalid_filter(format!(
                "`{op}` cannot be used on `{path}`, a {} attribute",
                if leaf.ty == AttrType::Boolean {
                    "boolean"
                } else {
                    "binary"
                }
            )));
        }
        if matches!(value, CompValue::Null | CompValue::Bool(_)) {
            return Err(ScimError::invalid_filter(format!(
                "`{op}` needs a string or a number to compare `{path}` with, not {value}"
            )));
        }
    }
    if op.is_substring() && !matches!(value, CompValue::Str(_)) {
        return Err(ScimError::invalid_filter(format!(
            "`{op}` needs a string to compare `{path}` with, not {value}"
        )));
    }
    Ok(())
}

impl Filter {
    /// Checks every attribute path against the schema: unknown attributes are 400
    /// `invalidFilter`.
    pub fn validate(&self, schema: &ResourceSchema<'_>) -> Result<(), ScimError> {
        match self {
            Filter::Compare { path, op, value } => {
                let r = resolve_attr(schema, path).ok_or_else(|| unknown_attribute(path))?;
                check_comparison(path, r.leaf(), *op, value)
            }
            Filter::Present(path) => resolve_attr(schema, path)
                .map(|_| ())
                .ok_or_else(|| unknown_attribute(path)),
            Filter::And(l, r) | Filter::Or(l, r) => {
                l.validate(schema)?;
                r.validate(schema)
            }
            Filter::Not(inner) => inner.validate(schema),
            Filter::ValuePath { path, filter } => {
                let r = resolve_attr(schema, path).ok_or_else(|| unknown_attribute(path))?;
                if path.sub_attr.is_some() || !r.attr.is_complex() {
                    return Err(ScimError::invalid_filter(format!(
                        "`{path}[...]`: a value filter applies to a complex attribute"
                    )));
                }
                filter.validate_in(r.attr, path)
            }
        }
    }

    /// Checks a value filter (paths relative to the elements of `parent`, as in
    /// `emails[type eq "work"]` or a PATCH path). Errors are 400 `invalidFilter`.
    pub fn validate_element(&self, parent: &Attribute) -> Result<(), ScimError> {
        self.validate_in(parent, &parent.name)
    }

    fn validate_in(
        &self,
        parent: &Attribute,
        parent_path: &dyn fmt::Display,
    ) -> Result<(), ScimError> {
        let sub_of = |path: &AttrPath| -> Result<&Attribute, ScimError> {
            let name = format!("{parent_path}.{path}");
            if path.urn.is_some() || path.sub_attr.is_some() {
                return Err(unknown_attribute(&name));
            }
            parent
                .sub(&path.attr)
                .ok_or_else(|| unknown_attribute(&name))
        };
        match self {
            Filter::Compare { path, op, value } => {
                let leaf = sub_of(path)?;
                check_comparison(&format_args!("{parent_path}.{path}"), leaf, *op, value)
            }
            Filter::Present(path) => sub_of(path).map(|_| ()),
            Filter::And(l, r) | Filter::Or(l, r) => {
                l.validate_in(parent, parent_path)?;
                r.validate_in(parent, parent_path)
            }
            Filter::Not(inner) => inner.validate_in(parent, parent_path),
            Filter::ValuePath { .. } => Err(ScimError::invalid_filter(
                "value paths cannot be nested inside a value filter",
            )),
        }
    }

    /// Does `resource` (a full SCIM resource in JSON) match?
    pub fn matches(&self, schema: &ResourceSchema<'_>, resource: &Value) -> bool {
        eval(self, Scope::Resource(schema), resource)
    }

    /// Does one element of the multi-valued complex attribute `parent` match? (value
    /// filters in PATCH paths and value paths).
    pub fn matches_element(&self, parent: &Attribute, element: &Value) -> bool {
        eval(self, Scope::Element(Some(parent)), element)
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// Object member by name, exact first, then ASCII case-insensitively (RFC 7643 §2.1:
/// attribute names are case-insensitive; stored resources are normalised, but we do not
/// rely on it).
pub(crate) fn get_ci<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The elements of a multi-valued value, or the value itself.
fn elements(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// RFC 7644 §3.4.2.2 `pr`: "If the attribute has a non-empty value, or if it contains a
/// non-empty node for complex attributes, there is a match."
fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(members) => members.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// The JSON of the top-level attribute a resolved path lives in.
pub(crate) fn attr_json<'v>(
    resource: &'v Value,
    location: AttrLocation<'_>,
    name: &str,
) -> Option<&'v Value> {
    match location {
        AttrLocation::Core => get_ci(resource, name),
        AttrLocation::Extension(urn) => get_ci(get_ci(resource, urn)?, name),
    }
}

#[derive(Clone, Copy)]
enum Scope<'s, 'a> {
    /// Paths are full attribute paths into a resource.
    Resource(&'s ResourceSchema<'a>),
    /// Paths are sub-attribute names of one element of this complex attribute (`None`
    /// when the attribute is not in the schema: evaluate without type information).
    Element(Option<&'s Attribute>),
}

/// What a path points at in one resource / element.
struct Target<'v, 's> {
    /// Leaf values (multi-valued attributes flattened).
    values: Vec<&'v Value>,
    /// Definition of the leaf, when known.
    def: Option<&'s Attribute>,
}

fn locate<'v, 's>(scope: Scope<'s, '_>, path: &AttrPath, v: &'v Value) -> Target<'v, 's> {
    let (raw, attr_def, sub_def): (Option<&Value>, Option<&Attribute>, Option<&Attribute>) =
        match scope {
            Scope::Resource(schema) => match resolve_attr(schema, path) {
                Some(r) => (attr_json(v, r.location, &r.attr.name), Some(r.attr), r.sub),
                // Not in the schema (validate() rejects that before a query runs, but
                // scoping filters and stored data may disagree): look it up anyway.
                None => {
                    let location = match &path.urn {
                        Some(urn) if get_ci(v, urn).is_some() => AttrLocation::Extension(urn),
                        _ => AttrLocation::Core,
                    };
                    (attr_json(v, location, &path.attr), None, None)
                }
            },
            Scope::Element(parent) => {
                let def = parent.and_then(|p| p.sub(&path.attr));
                let sub = match (&path.sub_attr, def) {
                    (Some(s), Some(d)) => d.sub(s),
                    _ => None,
                };
                (get_ci(v, &path.attr), def, sub)
            }
        };
    let mut values = Vec::new();
    if let Some(raw) = raw {
        for item in elements(raw) {
            match &path.sub_attr {
                None => values.push(item),
                Some(sub) => {
                    if let Some(x) = get_ci(item, sub) {
                        values.extend(elements(x));
                    }
                }
            }
        }
    }
    let def = match &path.sub_attr {
        None => attr_def,
        Some(_) => sub_def,
    };
    Target { values, def }
}

fn eval(filter: &Filter, scope: Scope<'_, '_>, v: &Value) -> bool {
    match filter {
        Filter::And(l, r) => eval(l, scope, v) && eval(r, scope, v),
        Filter::Or(l, r) => eval(l, scope, v) || eval(r, scope, v),
        Filter::Not(inner) => !eval(inner, scope, v),
        Filter::Present(path) => locate(scope, path, v).values.into_iter().any(is_present),
        Filter::Compare { path, op, value } => {
            let target = locate(scope, path, v);
            compare_target(&target, *op, value)
        }
        Filter::ValuePath { path, filter } => {
            // RFC 7644 §3.4.2.2: the inner filter applies to each element on its own; one
            // element must satisfy all of it.
            let target = locate(scope, path, v);
            let inner_scope = Scope::Element(target.def);
            target
                .values
                .into_iter()
                .any(|element| eval(filter, inner_scope, element))
        }
    }
}

/// How the values of a leaf compare.
#[derive(Clone, Copy)]
struct Leaf {
    ty: Option<AttrType>,
    case_exact: bool,
}

fn compare_target(target: &Target<'_, '_>, op: CompareOp, value: &CompValue) -> bool {
    // Complex attribute compared directly (`emails co "x"`): compare each element's
    // `value` sub-attribute (RFC 7644 §3.4.2.2).
    let complex = target.def.is_some_and(Attribute::is_complex);
    let value_def = if complex {
        target.def.and_then(|d| d.sub("value"))
    } else {
        target.def
    };
    let leaf = Leaf {
        ty: value_def.map(|d| d.ty),
        // RFC 7643 §2.2: caseExact defaults to false.
        case_exact: value_def.is_some_and(|d| d.case_exact),
    };
    let leaves: Vec<&Value> = target
        .values
        .iter()
        .filter_map(|v| match v {
            Value::Object(_) if complex || target.def.is_none() => get_ci(v, "value"),
            _ => Some(*v),
        })
        .filter(|v| is_present(v))
        .collect();
    match (op, value) {
        // `eq null` asks whether there is no value; `ne null` whether there is one.
        (CompareOp::Eq, CompValue::Null) => leaves.is_empty(),
        (CompareOp::Ne, CompValue::Null) => !leaves.is_empty(),
        // `ne` is the complement of `eq`: true when the attribute is absent or when no
        // value equals. (Read literally, "any value matches" would make
        // `emails.type ne "work"` true for a user with a work and a home address, which
        // is never what a scoping filter means.)
        (CompareOp::Ne, _) => !leaves.iter().any(|v| equals(v, value, leaf)),
        (CompareOp::Eq, _) => leaves.iter().any(|v| equals(v, value, leaf)),
        (CompareOp::Co | CompareOp::Sw | CompareOp::Ew, CompValue::Str(needle)) => {
            leaves.iter().any(|v| substring(v, needle, op, leaf))
        }
        (CompareOp::Co | CompareOp::Sw | CompareOp::Ew, _) => false,
        (CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le, _) => {
            leaves.iter().any(|v| {
                order(v, value, leaf).is_some_and(|o| match op {
                    CompareOp::Gt => o == Ordering::Greater,
                    CompareOp::Ge => o != Ordering::Less,
                    CompareOp::Lt => o == Ordering::Less,
                    _ => o != Ordering::Greater,
                })
            })
        }
    }
}

/// Parses an RFC 3339 / xsd:dateTime instant (RFC 7643 §2.3.5). A value without a zone
/// is taken as UTC, as xsd:dateTime leaves it to the application.
pub(crate) fn parse_instant(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc().fixed_offset())
}

/// Numbers compare exactly when both are integers, else as f64.
pub(crate) fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// String comparison honouring caseExact (RFC 7643 §2.2: case-insensitive unless
/// caseExact).
fn fold(s: &str, leaf: Leaf) -> std::borrow::Cow<'_, str> {
    if leaf.case_exact {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.to_lowercase())
    }
}

fn is_date_time(leaf: Leaf) -> bool {
    leaf.ty == Some(AttrType::DateTime)
}

fn equals(v: &Value, value: &CompValue, leaf: Leaf) -> bool {
    match (v, value) {
        (Value::Bool(a), CompValue::Bool(b)) => a == b,
        (Value::Number(a), CompValue::Number(b)) => cmp_numbers(a, b) == Some(Ordering::Equal),
        (Value::String(a), CompValue::Str(b)) => {
            if is_date_time(leaf)
                && let (Some(x), Some(y)) = (parse_instant(a), parse_instant(b))
            {
                return x == y;
            }
            fold(a, leaf) == fold(b, leaf)
        }
        _ => false,
    }
}

fn substring(v: &Value, needle: &str, op: CompareOp, leaf: Leaf) -> bool {
    let Value::String(hay) = v else {
        return false;
    };
    let (hay, needle) = (fold(hay, leaf), fold(needle, leaf));
    match op {
        CompareOp::Co => hay.contains(needle.as_ref()),
        CompareOp::Sw => hay.starts_with(needle.as_ref()),
        _ => hay.ends_with(needle.as_ref()),
    }
}

/// `v` compared with `value`, for gt/ge/lt/le. `None` when they do not compare: booleans,
/// binary, mixed types.
fn order(v: &Value, value: &CompValue, leaf: Leaf) -> Option<Ordering> {
    if matches!(leaf.ty, Some(AttrType::Boolean | AttrType::Binary)) {
        return None;
    }
    match (v, value) {
        (Value::Number(a), CompValue::Number(b)) => cmp_numbers(a, b),
        (Value::String(a), CompValue::Str(b)) => {
            // dateTime compares as instants: "2011-05-13T04:42:34Z" and
            // "2011-05-13T06:42:34+02:00" are the same moment. Falls back to the strings.
            if (is_date_time(leaf) || leaf.ty.is_none())
                && let (Some(x), Some(y)) = (parse_instant(a), parse_instant(b))
            {
                return Some(x.cmp(&y));
            }
            Some(fold(a, leaf).cmp(&fold(b, leaf)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ResourceKind, SchemaRegistry};
    use proptest::prelude::*;
    use serde_json::json;

    fn p(s: &str) -> Filter {
        parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn path(s: &str) -> AttrPath {
        AttrPath::parse(s).unwrap()
    }

    fn cmp(a: &str, op: CompareOp, v: CompValue) -> Filter {
        Filter::Compare {
            path: path(a),
            op,
            value: v,
        }
    }

    fn s(v: &str) -> CompValue {
        CompValue::Str(v.into())
    }

    fn and(l: Filter, r: Filter) -> Filter {
        Filter::And(Box::new(l), Box::new(r))
    }

    fn or(l: Filter, r: Filter) -> Filter {
        Filter::Or(Box::new(l), Box::new(r))
    }

    fn not(f: Filter) -> Filter {
        Filter::Not(Box::new(f))
    }

    fn pr(a: &str) -> Filter {
        Filter::Present(path(a))
    }

    fn parse_err(s: &str) -> ScimError {
        match parse(s) {
            Ok(f) => panic!("{s:?} should not parse, got {f:?}"),
            Err(e) => {
                assert_eq!(e.status, 400);
                assert_eq!(e.scim_type, Some(crate::ScimType::InvalidFilter));
                e
            }
        }
    }

    fn user_matches(filter: &str, resource: &Value) -> bool {
        let reg = SchemaRegistry::builtin();
        let schema = reg.view(ResourceKind::User);
        let f = p(filter);
        f.validate(&schema)
            .unwrap_or_else(|e| panic!("{filter:?} should validate: {e}"));
        f.matches(&schema, resource)
    }

    fn validate_user(filter: &str) -> Result<(), ScimError> {
        let reg = SchemaRegistry::builtin();
        let schema = reg.view(ResourceKind::User);
        p(filter).validate(&schema)
    }

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn bjensen() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "Bjensen-Ext",
            "userName": "bjensen@example.com",
            "name": {"familyName": "O'Malley", "givenName": "Barbara", "formatted": "Ms. Barbara J Jensen, III"},
            "displayName": "Babs Jensen",
            "title": "Tour Guide",
            "userType": "Employee",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "ims": [{"value": "babs@foo.com", "type": "xmpp"}],
            "meta": {
                "resourceType": "User",
                "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34Z",
                "version": "W/\"3694e05e9dff591\"",
                "location": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646"
            },
            ENT: {
                "employeeNumber": "701984",
                "costCenter": "4130",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}
            }
        })
    }

    // ------------------------------------------------------------------ parsing

    #[test]
    fn every_operator_parses_case_insensitively() {
        for op in CompareOp::ALL {
            for spelling in [op.as_str().to_string(), op.as_str().to_uppercase()] {
                let f = p(&format!("userName {spelling} \"x\""));
                assert_eq!(f, cmp("userName", op, s("x")));
            }
        }
        assert_eq!(p("title pr"), pr("title"));
        assert_eq!(p("title PR"), pr("title"));
        assert!(
            parse("userName xx \"x\"")
                .unwrap_err()
                .detail
                .contains("unknown operator")
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let (a, b, c) = (pr("a"), pr("b"), pr("c"));
        assert_eq!(
            p("a pr or b pr and c pr"),
            or(a.clone(), and(b.clone(), c.clone()))
        );
        assert_eq!(
            p("a pr and b pr or c pr"),
            or(and(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            p("(a pr or b pr) and c pr"),
            and(or(a.clone(), b.clone()), c.clone())
        );
        // Left-associative chains.
        assert_eq!(
            p("a pr and b pr and c pr"),
            and(and(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            p("a pr or b pr or c pr"),
            or(or(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            p("a pr AND b pr Or c pr"),
            or(and(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(p("a pr and (b pr and c pr)"), and(a, and(b, c)));
    }

    #[test]
    fn not_and_parentheses() {
        assert_eq!(p("not (a pr)"), not(pr("a")));
        assert_eq!(p("NOT(a pr)"), not(pr("a")));
        assert_eq!(
            p("not (a pr or b pr) and c pr"),
            and(not(or(pr("a"), pr("b"))), pr("c"))
        );
        assert_eq!(p("((a pr))"), pr("a"));
        assert_eq!(p("  ( a pr )  "), pr("a"));
        // An attribute called `not` is still an attribute.
        assert_eq!(p("not pr"), pr("not"));
        assert_eq!(p("not eq \"x\""), cmp("not", CompareOp::Eq, s("x")));
        assert!(
            parse("not a pr")
                .unwrap_err()
                .detail
                .contains("`(` after `not`")
        );
    }

    #[test]
    fn value_paths() {
        let f = p(r#"emails[type eq "work" and value ew "@x.org"]"#);
        assert_eq!(
            f,
            Filter::ValuePath {
                path: path("emails"),
                filter: Box::new(and(
                    cmp("type", CompareOp::Eq, s("work")),
                    cmp("value", CompareOp::Ew, s("@x.org"))
                )),
            }
        );
        let f = p(r#"emails[not (type eq "work")] or ims[type eq "xmpp"]"#);
        assert!(matches!(f, Filter::Or(..)));
        parse_err(r#"emails[type eq "work"].value eq "x""#);
        let e = parse_err(r#"emails[type[value eq "x"] pr]"#);
        assert!(e.detail.contains("nested"), "{}", e.detail);
        parse_err("emails[]");
        parse_err(r#"emails[type eq "work""#);
        parse_err(r#"emails[type eq "work")"#);
    }

    #[test]
    fn urn_qualified_names() {
        let f = p(&format!("{ENT}:manager.value eq \"x\""));
        let Filter::Compare { path: ap, .. } = &f else {
            panic!("{f:?}")
        };
        assert_eq!(ap.urn.as_deref(), Some(ENT));
        assert_eq!(ap.attr, "manager");
        assert_eq!(ap.sub_attr.as_deref(), Some("value"));
        let f = p("urn:ietf:params:scim:schemas:core:2.0:User:userName sw \"J\"");
        let Filter::Compare { path: ap, .. } = &f else {
            panic!("{f:?}")
        };
        assert_eq!(
            ap.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:core:2.0:User")
        );
        assert_eq!(ap.attr, "userName");
        let f = p(&format!("{ENT}:employeeNumber pr"));
        assert_eq!(f.to_string(), format!("{ENT}:employeeNumber pr"));
    }

    #[test]
    fn string_escapes() {
        let f = p(r#"displayName eq "a\"b\\c\/d\n\t\u00e9\ud83d\ude00""#);
        assert_eq!(f, cmp("displayName", CompareOp::Eq, s("a\"b\\c/d\n\té😀")));
        assert_eq!(
            p(r#"displayName eq "O'Malley (x) [y]""#),
            cmp("displayName", CompareOp::Eq, s("O'Malley (x) [y]"))
        );
        assert_eq!(
            p(r#"displayName eq """#),
            cmp("displayName", CompareOp::Eq, s(""))
        );
        assert_eq!(
            p("displayName eq \"héllo wörld\""),
            cmp("displayName", CompareOp::Eq, s("héllo wörld"))
        );
        let e = parse_err(r#"displayName eq "abc"#);
        assert!(e.detail.contains("unterminated string"), "{}", e.detail);
        parse_err(r#"displayName eq "abc\"#);
        parse_err(r#"displayName eq "\x""#);
        parse_err(r#"displayName eq "\u12""#);
        parse_err("displayName eq \"a\u{1}b\"");
        parse_err("displayName eq 'single'");
    }

    #[test]
    fn numbers_and_literals() {
        let n = |x: &str| CompValue::Number(serde_json::from_str(x).unwrap());
        for lit in [
            "0",
            "42",
            "-7",
            "3.25",
            "-0.5",
            "1e3",
            "1.5E-2",
            "-2e+10",
            "18446744073709551615",
        ] {
            assert_eq!(
                p(&format!("x eq {lit}")),
                cmp("x", CompareOp::Eq, n(lit)),
                "{lit}"
            );
        }
        // Floats survive print + parse bit for bit (the std parser is correctly rounded).
        let x = 0.055929095829221565_f64;
        let f = cmp(
            "x",
            CompareOp::Eq,
            CompValue::Number(Number::from_f64(x).unwrap()),
        );
        assert_eq!(p(&f.to_string()), f);
        for bad in [
            "01", "1.", ".5", "+1", "1e", "--1", "1x", "0x10", "NaN", "1e999",
        ] {
            parse_err(&format!("x eq {bad}"));
        }
        assert_eq!(
            p("x eq true"),
            cmp("x", CompareOp::Eq, CompValue::Bool(true))
        );
        assert_eq!(
            p("x eq False"),
            cmp("x", CompareOp::Eq, CompValue::Bool(false))
        );
        assert_eq!(p("x eq NULL"), cmp("x", CompareOp::Eq, CompValue::Null));
        parse_err("x eq work");
        parse_err("x eq");
        parse_err("x");
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = parse_err("userName eq \"x\" and");
        assert!(e.detail.contains("position 19"), "{}", e.detail);
        let e = parse_err("userName eq \"x\" foo");
        assert!(
            e.detail.contains("position 16") && e.detail.contains("`foo`"),
            "{}",
            e.detail
        );
        let e = parse_err("(userName pr");
        assert!(e.detail.contains("missing `)`"), "{}", e.detail);
        parse_err("");
        parse_err("   ");
        parse_err("userName pr)");
        parse_err("and pr pr");
        parse_err("1abc pr");
        parse_err("a.b.c pr");
        parse_err("urné pr");
        parse_err("()");
        parse_err("userName eq \"x\" userName eq \"y\"");
    }

    #[test]
    fn depth_and_length_limits() {
        let ok = format!(
            "{}a pr{}",
            "(".repeat(MAX_FILTER_DEPTH),
            ")".repeat(MAX_FILTER_DEPTH)
        );
        assert_eq!(p(&ok), pr("a"));
        let too_deep = format!(
            "{}a pr{}",
            "(".repeat(MAX_FILTER_DEPTH + 1),
            ")".repeat(MAX_FILTER_DEPTH + 1)
        );
        assert!(parse_err(&too_deep).detail.contains("nested too deeply"));
        // Bombs: rejected, never a stack overflow.
        let bomb = "(".repeat(10_000);
        parse_err(&bomb);
        let bomb = format!("{}a pr{}", "(".repeat(4_000), ")".repeat(4_000));
        parse_err(&bomb);
        let bomb = "not (".repeat(1_600);
        assert!(parse_err(&bomb).detail.contains("nested too deeply"));
        let huge = format!("userName eq \"{}\"", "x".repeat(MAX_FILTER_LEN));
        assert!(parse_err(&huge).detail.contains("limit"));
        // A long flat chain within the limit is fine, and evaluates without trouble.
        let chain = vec!["a pr"; 800].join(" and ");
        assert!(chain.len() < MAX_FILTER_LEN);
        let f = p(&chain);
        assert_eq!(parse(&f.to_string()).unwrap(), f);
        let reg = SchemaRegistry::builtin();
        assert!(f.matches(&reg.view(ResourceKind::User), &json!({"a": 1})));
    }

    /// Every example filter of RFC 7644 §3.4.2.2 (Figure 2) parses, prints back to
    /// itself, validates against the User schema and evaluates as expected on bjensen.
    #[test]
    fn rfc7644_example_filters() {
        let cases: &[(&str, bool)] = &[
            (r#"userName eq "bjensen""#, false),
            (r#"name.familyName co "O'Malley""#, true),
            (r#"userName sw "J""#, false),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
                false,
            ),
            ("title pr", true),
            (r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, false),
            (r#"meta.lastModified ge "2011-05-13T04:42:34Z""#, true),
            (r#"meta.lastModified lt "2011-05-13T04:42:34Z""#, false),
            (r#"meta.lastModified le "2011-05-13T04:42:34Z""#, true),
            (r#"title pr and userType eq "Employee""#, true),
            (r#"title pr or userType eq "Intern""#, true),
            (
                r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
                true,
            ),
            (
                r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
                true,
            ),
            (
                r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
                false,
            ),
            (
                r#"userType eq "Employee" and (emails.type eq "work")"#,
                true,
            ),
            (
                r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
                true,
            ),
            (
                r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
                true,
            ),
        ];
        let reg = SchemaRegistry::builtin();
        let schema = reg.view(ResourceKind::User);
        let user = bjensen();
        for (text, expected) in cases {
            let f = p(text);
            f.validate(&schema)
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(f.matches(&schema, &user), *expected, "{text}");
            let printed = f.to_string();
            // The canonical form drops the one pair of redundant parentheses the RFC has.
            let canonical = text.replace(r#"(emails.type eq "work")"#, r#"emails.type eq "work""#);
            assert_eq!(printed, canonical, "canonical form");
            assert_eq!(p(&printed), f);
        }
        // The same with sJ-style data: userName "bjensen" and "J..." prefixes.
        let mut other = user.clone();
        other["userName"] = json!("Jbjensen");
        assert!(user_matches(r#"userName sw "j""#, &other));
        other["userName"] = json!("BJENSEN");
        assert!(user_matches(r#"userName eq "bjensen""#, &other));
    }

    #[test]
    fn printer_adds_only_needed_parentheses() {
        assert_eq!(
            p("(a pr and b pr) or c pr").to_string(),
            "a pr and b pr or c pr"
        );
        assert_eq!(
            p("a pr and (b pr or c pr)").to_string(),
            "a pr and (b pr or c pr)"
        );
        assert_eq!(
            p("a pr or (b pr or c pr)").to_string(),
            "a pr or (b pr or c pr)"
        );
        assert_eq!(
            p("(a pr or b pr) or c pr").to_string(),
            "a pr or b pr or c pr"
        );
        assert_eq!(p("NOT ( a PR )").to_string(), "not (a pr)");
        assert_eq!(p("x EQ TRUE").to_string(), "x eq true");
        assert_eq!(
            p(r#"x eq "a\u0022\u0001""#).to_string(),
            r#"x eq "a\"\u0001""#
        );
    }

    // ------------------------------------------------------------------ PATCH paths

    #[test]
    fn patch_paths() {
        let pp = parse_patch_path("userName").unwrap();
        assert_eq!(
            pp,
            PatchPath {
                attr: path("userName"),
                filter: None,
                sub_attr: None
            }
        );
        let pp = parse_patch_path("name.givenName").unwrap();
        assert_eq!(pp.attr, path("name.givenName"));
        let pp = parse_patch_path(r#"emails[type eq "work"]"#).unwrap();
        assert_eq!(pp.attr, path("emails"));
        assert_eq!(pp.filter, Some(cmp("type", CompareOp::Eq, s("work"))));
        assert_eq!(pp.sub_attr, None);
        let pp = parse_patch_path(r#"emails[type eq "work" and primary eq true].value"#).unwrap();
        assert_eq!(pp.sub_attr.as_deref(), Some("value"));
        assert_eq!(
            pp.to_string(),
            r#"emails[type eq "work" and primary eq true].value"#
        );
        let pp = parse_patch_path(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#)
            .unwrap();
        assert_eq!(pp.attr, path("members"));
        let pp = parse_patch_path(&format!("{ENT}:manager")).unwrap();
        assert_eq!(pp.attr.urn.as_deref(), Some(ENT));
        assert_eq!(pp.attr.attr, "manager");
        let pp =
            parse_patch_path("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName").unwrap();
        assert_eq!(pp.attr.attr, "name");
        assert_eq!(pp.attr.sub_attr.as_deref(), Some("givenName"));
        let pp = parse_patch_path(r#"addresses[type eq "work"].streetAddress"#).unwrap();
        assert_eq!(pp.sub_attr.as_deref(), Some("streetAddress"));
        // A `]` inside a string does not close the filter.
        let pp = parse_patch_path(r#"emails[value eq "a]b"].display"#).unwrap();
        assert_eq!(pp.filter, Some(cmp("value", CompareOp::Eq, s("a]b"))));

        for bad in [
            "",
            "  ",
            "1abc",
            "emails[",
            "emails[]",
            r#"emails[type eq "work""#,
            r#"emails[type eq "work"]value"#,
            r#"emails[type eq "work"].1x"#,
            r#"emails[type eq "work"].value.x"#,
            r#"emails[type eq "work"]]"#,
            r#"emails[type[value pr] pr]"#,
            "a.b.c",
            "emails type",
            "ém",
        ] {
            let e = parse_patch_path(bad).expect_err(bad);
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidPath), "{bad}");
            assert_eq!(e.status, 400);
        }
        let deep = format!("emails[{}a pr{}]", "(".repeat(5_000), ")".repeat(5_000));
        assert!(parse_patch_path(&deep).is_err());
    }

    // ------------------------------------------------------------------ validation

    #[test]
    fn validation() {
        validate_user(r#"userName eq "x""#).unwrap();
        validate_user(r#"USERNAME eq "x""#).unwrap();
        validate_user(r#"name.givenName sw "B""#).unwrap();
        validate_user(&format!("{ENT}:manager.value eq \"x\"")).unwrap();
        validate_user(&format!("{ENT}:manager eq \"x\"")).unwrap();
        validate_user(r#"employeeNumber eq "1""#).unwrap(); // unqualified extension name
        validate_user(r#"emails co "x""#).unwrap();
        validate_user(r#"emails[type eq "work" and primary eq true]"#).unwrap();
        validate_user(r#"meta.created gt "2020-01-01T00:00:00Z""#).unwrap();
        validate_user(r#"active eq true"#).unwrap();
        validate_user("id pr and externalId pr").unwrap();

        let invalid = |f: &str, needle: &str| {
            let e = validate_user(f).expect_err(f);
            assert_eq!(e.status, 400);
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidFilter));
            assert!(e.detail.contains(needle), "{f}: {}", e.detail);
        };
        invalid(r#"nope eq "x""#, "unknown attribute `nope`");
        invalid(r#"name.nope eq "x""#, "unknown attribute");
        invalid("nope pr", "unknown attribute");
        invalid(r#"userName eq "x" and not (bogus pr)"#, "bogus");
        invalid(
            r#"emails[bogus eq "x"]"#,
            "unknown attribute `emails.bogus`",
        );
        invalid(r#"emails[value.x eq "x"]"#, "unknown attribute");
        invalid(r#"bogus[value eq "x"]"#, "unknown attribute");
        invalid(r#"userName[value eq "x"]"#, "complex attribute");
        invalid(
            r#"urn:example:nope:User:userName eq "x""#,
            "unknown attribute",
        );
        invalid(r#"name eq "x""#, "complex attribute");
        invalid(r#"addresses eq "x""#, "complex attribute");
        invalid("active gt true", "boolean");
        invalid("active le false", "boolean");
        invalid(r#"emails.primary lt true"#, "boolean");
        invalid(r#"x509Certificates.value gt "AAAA""#, "binary");
        invalid(r#"emails[primary ge false]"#, "boolean");
        invalid("userName co 5", "needs a string");
        invalid("userName gt null", "needs a string or a number");

        // Value filters on their own (PATCH paths).
        let reg = SchemaRegistry::builtin();
        let schema = reg.view(ResourceKind::User);
        let emails = schema.core.attribute("emails").unwrap();
        p(r#"type eq "work""#).validate_element(emails).unwrap();
        assert!(p(r#"nope eq "work""#).validate_element(emails).is_err());
        assert!(p(r#"x[y pr]"#).validate_element(emails).is_err());
    }

    // ------------------------------------------------------------------ evaluation

    #[test]
    fn operators_on_strings_and_case_exactness() {
        let u = bjensen();
        // userName: caseExact false.
        assert!(user_matches(r#"userName eq "BJensen@Example.com""#, &u));
        assert!(user_matches(r#"userName co "JENSEN""#, &u));
        assert!(user_matches(r#"userName sw "BJ""#, &u));
        assert!(user_matches(r#"userName ew ".COM""#, &u));
        assert!(!user_matches(r#"userName ew "example""#, &u));
        assert!(user_matches(r#"userName gt "a""#, &u));
        assert!(user_matches(r#"userName lt "C""#, &u));
        assert!(user_matches(r#"userName ne "other""#, &u));
        assert!(!user_matches(r#"userName ne "BJENSEN@example.com""#, &u));
        // id / externalId: caseExact true.
        assert!(user_matches(r#"externalId eq "Bjensen-Ext""#, &u));
        assert!(!user_matches(r#"externalId eq "bjensen-ext""#, &u));
        assert!(!user_matches(
            r#"id eq "2819C223-7F76-453A-919D-413861904646""#,
            &u
        ));
        assert!(user_matches(r#"id sw "2819c223""#, &u));
        assert!(!user_matches(r#"externalId co "EXT""#, &u));
        // Keys looked up case-insensitively.
        let odd = json!({"USERNAME": "Alice", "Name": {"GIVENNAME": "Al"}});
        assert!(user_matches(r#"userName eq "alice""#, &odd));
        assert!(user_matches(r#"name.givenName eq "al""#, &odd));
    }

    #[test]
    fn ne_absent_and_null() {
        let u = bjensen();
        assert!(user_matches(r#"nickName ne "x""#, &u)); // absent
        assert!(user_matches("nickName eq null", &u));
        assert!(!user_matches("nickName ne null", &u));
        assert!(!user_matches("userName eq null", &u));
        assert!(user_matches("userName ne null", &u));
        let with_null = json!({"nickName": null, "title": ""});
        assert!(user_matches("nickName eq null", &with_null));
        assert!(user_matches("title eq null", &with_null));
        assert!(user_matches(r#"title ne "x""#, &with_null));
        // ne on multi-valued: true only when no value equals.
        assert!(!user_matches(r#"emails.type ne "work""#, &u));
        assert!(user_matches(r#"emails.type ne "other""#, &u));
    }

    #[test]
    fn presence() {
        let u = bjensen();
        assert!(user_matches("title pr", &u));
        assert!(user_matches("emails pr", &u));
        assert!(user_matches("emails.value pr", &u));
        assert!(user_matches("name pr", &u));
        assert!(user_matches(&format!("{ENT}:manager pr"), &u));
        assert!(user_matches(&format!("{ENT}:manager.displayName pr"), &u));
        assert!(!user_matches(&format!("{ENT}:division pr"), &u));
        assert!(!user_matches("nickName pr", &u));
        let empty = json!({
            "title": "", "nickName": null, "emails": [], "name": {},
            "phoneNumbers": [{"value": ""}], "addresses": [{"type": null}],
        });
        for a in [
            "title",
            "nickName",
            "emails",
            "name",
            "phoneNumbers",
            "phoneNumbers.value",
            "addresses",
            "userName",
        ] {
            assert!(!user_matches(&format!("{a} pr"), &empty), "{a}");
            assert!(user_matches(&format!("not ({a} pr)"), &empty), "{a}");
        }
    }

    #[test]
    fn multi_valued_any_match() {
        let u = bjensen();
        assert!(user_matches(r#"emails.value eq "babs@jensen.org""#, &u));
        assert!(user_matches(r#"emails eq "BABS@jensen.org""#, &u)); // through `value`
        assert!(user_matches(r#"emails co "jensen.org""#, &u));
        assert!(user_matches(r#"emails.type eq "home""#, &u));
        assert!(!user_matches(r#"emails.type eq "other""#, &u));
        assert!(user_matches(r#"emails.primary eq true"#, &u));
        assert!(user_matches(
            r#"schemas eq "urn:ietf:params:scim:schemas:core:2.0:User""#,
            &u
        ));
        // Case-exact reference: `schemas` is caseExact in the common schema.
        assert!(!user_matches(
            r#"schemas eq "URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER""#,
            &u
        ));
        // Multi-valued attribute given as a single object is still handled.
        let single = json!({"emails": {"value": "a@b.c", "type": "work"}});
        assert!(user_matches(r#"emails.type eq "work""#, &single));
        assert!(user_matches(r#"emails[type eq "work"]"#, &single));
    }

    #[test]
    fn value_path_needs_one_element_to_match_everything() {
        let u = bjensen();
        assert!(user_matches(
            r#"emails[type eq "work" and value co "@example.com"]"#,
            &u
        ));
        // type work is on one element, jensen.org on the other: no single element matches.
        assert!(!user_matches(
            r#"emails[type eq "work" and value co "jensen.org"]"#,
            &u
        ));
        // Whereas the flattened form matches any element for each clause.
        assert!(user_matches(
            r#"emails.type eq "work" and emails.value co "jensen.org""#,
            &u
        ));
        assert!(user_matches(
            r#"emails[type eq "home" and not (primary eq true)]"#,
            &u
        ));
        assert!(user_matches(
            r#"emails[primary eq true or type eq "nope"]"#,
            &u
        ));
        assert!(!user_matches(r#"ims[type eq "work"]"#, &u));
        assert!(!user_matches(r#"phoneNumbers[type pr]"#, &u));
        assert!(user_matches(r#"not (phoneNumbers[type pr])"#, &u));
        // Case-insensitive sub-attribute `type`.
        assert!(user_matches(r#"emails[TYPE eq "WORK"]"#, &u));
    }

    #[test]
    fn extension_attributes() {
        let u = bjensen();
        assert!(user_matches(
            &format!("{ENT}:employeeNumber eq \"701984\""),
            &u
        ));
        assert!(user_matches(
            &format!("{ENT}:manager.value eq \"26118915-6090-4610-87e4-49d8ca9f808d\""),
            &u
        ));
        assert!(user_matches(
            &format!("{ENT}:manager eq \"26118915-6090-4610-87e4-49d8ca9f808d\""),
            &u
        ));
        assert!(user_matches(
            &format!("{ENT}:manager.displayName eq \"john smith\""),
            &u
        ));
        assert!(user_matches(r#"employeeNumber eq "701984""#, &u));
        assert!(user_matches(r#"costCenter sw "41""#, &u));
        // Extension object keyed case-insensitively.
        let lower = json!({ENT.to_lowercase(): {"employeeNumber": "1"}});
        assert!(user_matches(
            &format!("{ENT}:employeeNumber eq \"1\""),
            &lower
        ));
        // Core URN prefix reaches top-level attributes.
        assert!(user_matches(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName eq "barbara""#,
            &u
        ));
    }

    #[test]
    fn date_times_compare_as_instants() {
        let u = bjensen(); // lastModified 2011-05-13T04:42:34Z
        assert!(user_matches(
            r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#,
            &u
        ));
        assert!(user_matches(
            r#"meta.lastModified eq "2011-05-13T04:42:34.000Z""#,
            &u
        ));
        assert!(user_matches(
            r#"meta.lastModified gt "2011-05-13T05:00:00+02:00""#,
            &u
        ));
        assert!(user_matches(
            r#"meta.lastModified lt "2011-05-13T04:42:35Z""#,
            &u
        ));
        assert!(!user_matches(
            r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
            &u
        ));
        assert!(user_matches(r#"meta.created lt "2011-01-01T00:00:00""#, &u)); // no zone: UTC
        // Not a date: string comparison.
        assert!(user_matches(r#"meta.lastModified gt "2010""#, &u));
        assert!(user_matches(r#"meta.lastModified sw "2011-05""#, &u));
    }

    #[test]
    fn numbers_and_booleans() {
        let reg = SchemaRegistry::builtin()
            .add_extension(
                ResourceKind::User,
                r#"{"id":"urn:acme:User","name":"Acme","attributes":[
                    {"name":"badge","type":"integer"},
                    {"name":"score","type":"decimal"},
                    {"name":"flags","type":"integer","multiValued":true}]}"#,
                false,
            )
            .unwrap();
        let schema = reg.view(ResourceKind::User);
        let u =
            json!({"active": false, "urn:acme:User": {"badge": 42, "score": 2.5, "flags": [1, 7]}});
        let m = |f: &str| {
            let f = p(f);
            f.validate(&schema).unwrap();
            f.matches(&schema, &u)
        };
        assert!(m("urn:acme:User:badge eq 42"));
        assert!(m("urn:acme:User:badge eq 42.0"));
        assert!(m("urn:acme:User:badge gt 41.5"));
        assert!(m("urn:acme:User:badge ge 42"));
        assert!(!m("urn:acme:User:badge lt 42"));
        assert!(m("urn:acme:User:badge le 4.2e1"));
        assert!(m("urn:acme:User:badge ne 43"));
        assert!(!m(r#"urn:acme:User:badge eq "42""#)); // types differ
        assert!(m("urn:acme:User:score lt 3"));
        assert!(m("urn:acme:User:score gt -1"));
        assert!(m("urn:acme:User:flags eq 7"));
        assert!(m("urn:acme:User:flags gt 5"));
        assert!(!m("urn:acme:User:flags gt 7"));
        assert!(m("badge eq 42")); // unqualified, one extension defines it
        assert!(m("active eq false"));
        assert!(!m("active eq true"));
        assert!(m("active ne true"));
        assert!(m("active pr")); // false is a value
        assert!(!m(r#"active eq "false""#));
        // Large integers compare exactly.
        let big = json!({"urn:acme:User": {"badge": 9007199254740993_u64}});
        let f = p("urn:acme:User:badge gt 9007199254740992");
        assert!(f.matches(&schema, &big));
    }

    #[test]
    fn matches_element_uses_parent_definitions() {
        let reg = SchemaRegistry::builtin();
        let schema = reg.view(ResourceKind::User);
        let emails = schema.core.attribute("emails").unwrap();
        let e = json!({"value": "Babs@Example.com", "type": "Work", "primary": true});
        assert!(p(r#"type eq "work""#).matches_element(emails, &e));
        assert!(p(r#"value eq "babs@example.com""#).matches_element(emails, &e));
        assert!(p("primary eq true").matches_element(emails, &e));
        assert!(!p("primary eq false").matches_element(emails, &e));
        assert!(p(r#"type eq "work" and primary eq true"#).matches_element(emails, &e));
        assert!(p(r#"display eq null"#).matches_element(emails, &e));
        let group = reg.view(ResourceKind::Group);
        let members = group.core.attribute("members").unwrap();
        let m = json!({"value": "ABC", "type": "User"});
        assert!(p(r#"value eq "abc""#).matches_element(members, &m)); // caseExact false in schema
        assert!(!p(r#"value eq "abd""#).matches_element(members, &m));
        assert!(!p(r#"value eq "abc""#).matches_element(members, &json!("abc")));
    }

    #[test]
    fn group_filters() {
        let reg = SchemaRegistry::builtin();
        let schema = reg.view(ResourceKind::Group);
        let g = json!({"id": "g1", "displayName": "Admins", "members": [{"value": "u1"}, {"value": "u2"}]});
        for (f, want) in [
            (r#"displayName eq "admins""#, true),
            (r#"members[value eq "u2"]"#, true),
            (r#"members.value eq "u3""#, false),
            (r#"members eq "u1""#, true),
        ] {
            let f = p(f);
            f.validate(&schema).unwrap();
            assert_eq!(f.matches(&schema, &g), want, "{f}");
        }
        assert!(p(r#"userName eq "x""#).validate(&schema).is_err());
    }

    #[test]
    fn unknown_attributes_still_evaluate_without_panicking() {
        let reg = SchemaRegistry::builtin();
        let schema = reg.view(ResourceKind::User);
        let r = json!({"custom": "Hello", "urn:x:y": {"z": [1, 2]}, "objs": [{"value": "v"}]});
        assert!(p(r#"custom eq "hello""#).matches(&schema, &r));
        assert!(p("urn:x:y:z eq 2").matches(&schema, &r));
        assert!(p(r#"objs eq "v""#).matches(&schema, &r));
        assert!(p(r#"objs[value eq "v"]"#).matches(&schema, &r));
        assert!(!p("custom pr").matches(&schema, &json!("not an object")));
        assert!(!p("custom pr").matches(&schema, &json!(null)));
    }

    // ------------------------------------------------------------------ properties

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("userName".to_string()),
            Just("emails".to_string()),
            Just("not".to_string()),
            Just("and".to_string()),
            Just("or".to_string()),
            Just("pr".to_string()),
            Just("eq".to_string()),
            Just("true".to_string()),
            Just("$ref".to_string()),
            "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
        ]
    }

    fn arb_path(with_urn: bool) -> impl Strategy<Value = AttrPath> {
        let urn = if with_urn {
            prop_oneof![
                3 => Just(None),
                1 => Just(Some("urn:ietf:params:scim:schemas:core:2.0:User".to_string())),
                1 => Just(Some(ENT.to_string())),
                1 => Just(Some("urn:a:b.c:1.0".to_string())),
            ]
            .boxed()
        } else {
            Just(None).boxed()
        };
        (urn, arb_name(), proptest::option::of(arb_name())).prop_map(|(urn, attr, sub_attr)| {
            AttrPath {
                urn,
                attr,
                sub_attr,
            }
        })
    }

    fn arb_value() -> impl Strategy<Value = CompValue> {
        prop_oneof![
            Just(CompValue::Null),
            any::<bool>().prop_map(CompValue::Bool),
            any::<i64>().prop_map(|n| CompValue::Number(n.into())),
            any::<u64>().prop_map(|n| CompValue::Number(n.into())),
            any::<f64>()
                .prop_filter_map("finite", serde_json::Number::from_f64)
                .prop_map(CompValue::Number),
            any::<String>().prop_map(CompValue::Str),
            "[a-z\"\\\\()\\[\\] ]{0,10}".prop_map(CompValue::Str),
        ]
    }

    fn arb_op() -> impl Strategy<Value = CompareOp> {
        proptest::sample::select(CompareOp::ALL.to_vec())
    }

    fn arb_filter_in(in_value: bool) -> BoxedStrategy<Filter> {
        let leaf = prop_oneof![
            (arb_path(!in_value), arb_op(), arb_value())
                .prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
            arb_path(!in_value).prop_map(Filter::Present),
        ];
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Filter::And(Box::new(l), Box::new(r))),
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Filter::Or(Box::new(l), Box::new(r))),
                inner.prop_map(|f| Filter::Not(Box::new(f))),
            ]
        })
        .boxed()
    }

    fn arb_filter() -> impl Strategy<Value = Filter> {
        let value_path = (arb_path(true), arb_filter_in(true)).prop_map(|(mut path, f)| {
            path.sub_attr = None;
            Filter::ValuePath {
                path,
                filter: Box::new(f),
            }
        });
        let atom = prop_oneof![3 => arb_filter_in(false), 1 => value_path];
        atom.prop_recursive(2, 8, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Filter::And(Box::new(l), Box::new(r))),
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Filter::Or(Box::new(l), Box::new(r))),
                inner.prop_map(|f| Filter::Not(Box::new(f))),
            ]
        })
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter_map("finite", serde_json::Number::from_f64)
                .prop_map(Value::Number),
            "[a-zA-Z0-9@. :-]{0,12}".prop_map(Value::String),
            Just(Value::String("2011-05-13T04:42:34Z".into())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("userName".to_string()),
                            Just("emails".to_string()),
                            Just("value".to_string()),
                            Just("type".to_string()),
                            Just("primary".to_string()),
                            Just("name".to_string()),
                            Just("givenName".to_string()),
                            Just("meta".to_string()),
                            Just("lastModified".to_string()),
                            Just("active".to_string()),
                            Just(ENT.to_string()),
                            Just("manager".to_string()),
                            "[a-z]{1,4}",
                        ],
                        inner
                    ),
                    0..5
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Filters over the User schema's real attributes, to exercise typed evaluation.
    fn arb_user_filter() -> impl Strategy<Value = Filter> {
        let names = proptest::sample::select(vec![
            "userName",
            "emails",
            "emails.value",
            "emails.type",
            "emails.primary",
            "name.givenName",
            "name",
            "meta.lastModified",
            "active",
            "id",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "employeeNumber",
            "value",
            "type",
            "primary",
        ]);
        let leaf = prop_oneof![
            (names.clone(), arb_op(), arb_value()).prop_map(|(n, op, value)| Filter::Compare {
                path: AttrPath::parse(n).unwrap(),
                op,
                value
            }),
            names
                .clone()
                .prop_map(|n| Filter::Present(AttrPath::parse(n).unwrap())),
        ];
        let leaf2 = leaf.clone();
        let vp = (
            proptest::sample::select(vec!["emails", "name", "userName", "bogus"]),
            leaf2,
        )
            .prop_map(|(n, f)| Filter::ValuePath {
                path: AttrPath::new(n),
                filter: Box::new(f),
            });
        prop_oneof![3 => leaf, 1 => vp].prop_recursive(3, 16, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Filter::And(Box::new(l), Box::new(r))),
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Filter::Or(Box::new(l), Box::new(r))),
                inner.prop_map(|f| Filter::Not(Box::new(f))),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn print_then_parse_is_identity(f in arb_filter()) {
            let printed = f.to_string();
            let reparsed = parse(&printed);
            prop_assert_eq!(reparsed.as_ref().ok(), Some(&f), "printed: {} -> {:?}", printed, reparsed);
        }

        #[test]
        fn patch_path_print_then_parse(attr in arb_path(true), f in arb_filter_in(true), sub in proptest::option::of("[a-zA-Z][a-zA-Z0-9]{0,5}")) {
            let pp = PatchPath { attr: AttrPath { sub_attr: None, ..attr }, filter: Some(f), sub_attr: sub };
            let printed = pp.to_string();
            prop_assert_eq!(parse_patch_path(&printed).ok(), Some(pp), "{}", printed);
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = parse(&s);
            let _ = parse_patch_path(&s);
        }

        #[test]
        fn parse_never_panics_on_filter_like_soup(
            tokens in prop::collection::vec(prop_oneof![
                Just("("), Just(")"), Just("["), Just("]"), Just("\""), Just("\\"), Just(" "),
                Just("not"), Just("and"), Just("or"), Just("pr"), Just("eq"), Just("gt"),
                Just("userName"), Just("emails"), Just("."), Just(":"), Just("urn:a:b"),
                Just("\"x\""), Just("1"), Just("-"), Just("e5"), Just("true"), Just("null"),
                Just("\\u12"), Just("é"), Just("urn"), Just("urné"),
            ], 0..40)
        ) {
            let s: String = tokens.concat();
            let _ = parse(&s);
            let _ = parse_patch_path(&s);
        }

        #[test]
        fn matches_never_panics(f in arb_user_filter(), v in arb_json()) {
            let reg = SchemaRegistry::builtin();
            let schema = reg.view(ResourceKind::User);
            let _ = f.validate(&schema);
            let _ = f.matches(&schema, &v);
            let emails = schema.core.attribute("emails").unwrap();
            let _ = f.matches_element(emails, &v);
            let _ = f.validate_element(emails);
            // `not` is the exact complement.
            prop_assert_eq!(Filter::Not(Box::new(f.clone())).matches(&schema, &v), !f.matches(&schema, &v));
        }

        #[test]
        fn arbitrary_filters_never_panic_in_evaluation(f in arb_filter(), v in arb_json()) {
            let reg = SchemaRegistry::builtin();
            let schema = reg.view(ResourceKind::User);
            let _ = f.validate(&schema);
            let _ = f.matches(&schema, &v);
        }
    }
}
