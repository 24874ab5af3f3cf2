//! The lexer: tokens of the filter language, and the token-level half of [`Parser`].

/// A short, single-line excerpt of client input for error details (never the whole
/// filter: it may be 8 KiB long).
pub(super) fn snippet(s: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = s.chars().take(MAX).collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out.escape_debug().to_string()
}

#[derive(Debug)]
pub(super) struct ParseError {
    pub(super) pos: usize,
    pub(super) msg: String,
}

#[derive(Debug)]
pub(super) enum Tok<'a> {
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
pub(super) struct Lexed<'a> {
    pub(super) tok: Tok<'a>,
    pub(super) start: usize,
    pub(super) end: usize,
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

    pub(super) fn unexpected(&self, expected: &str) -> ParseError {
        ParseError {
            pos: self.start,
            msg: format!("expected {expected}, found {}", self.describe()),
        }
    }
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"')
}

pub(super) struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next unread character.
    pub(super) pos: usize,
    pub(super) depth: usize,
    peeked: Option<Lexed<'a>>,
}

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a str) -> Self {
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

    pub(super) fn next(&mut self) -> Result<Lexed<'a>, ParseError> {
        let l = match self.peeked.take() {
            Some(l) => l,
            None => self.lex()?,
        };
        self.pos = l.end;
        Ok(l)
    }

    pub(super) fn peek(&mut self) -> Result<&Lexed<'a>, ParseError> {
        let l = match self.peeked.take() {
            Some(l) => l,
            None => self.lex()?,
        };
        Ok(self.peeked.insert(l))
    }

    pub(super) fn peek_is_keyword(&mut self, kw: &str) -> Result<bool, ParseError> {
        Ok(matches!(self.peek()?.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw)))
    }
}
