//! The parser: filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2), with the depth and
//! length limits.

use serde_json::Number;

use super::lexer::{Lexed, ParseError, Parser, Tok, snippet};
use super::{CompValue, CompareOp, Filter, MAX_FILTER_DEPTH, MAX_FILTER_LEN, PatchPath};
use crate::error::ScimError;
use crate::schema::{AttrPath, is_attr_name};

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

impl Parser<'_> {
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
