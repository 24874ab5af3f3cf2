//! The printer: the canonical text form of a filter.

use std::fmt;

use super::Filter;

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
