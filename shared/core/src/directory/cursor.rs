//! RFC 9865 cursors: what a `nextCursor` / `previousCursor` holds, and how it is sealed.
//!
//! A cursor is the position a page continues from (an index sort key of the directory's
//! ordered indexes, or an offset in a list sorted in memory), the direction, the page
//! size, a hash of the query it belongs to (resource type, filter, sort) and an expiry.
//! It is sealed with a key derived from the operator key (XChaCha20-Poly1305: encrypted,
//! so clients cannot read positions out of it, and authenticated, so a changed byte or a
//! forged cursor does not open): `v1.` and base64url, characters a URL takes as they are
//! (RFC 3986 §2.3 unreserved, as RFC 9865 §2 asks). Nothing is kept on the server for it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crypto::SecretBox;
use provisync_scim::ResourceKind;

use super::SearchRequest;

/// Why a cursor was refused (RFC 9865 §2.1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not a cursor this service issued, altered, or issued for another query.
    #[error("the cursor is invalid: {0}")]
    Invalid(&'static str),
    /// Older than the cursor timeout.
    #[error("the cursor has expired: request the first page again with an empty cursor")]
    Expired,
    /// A page size other than the one of the query the cursor was issued for.
    #[error("count must be {expected}, the count of the query this cursor belongs to")]
    Count { expected: usize },
}

/// Where a page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Position {
    /// After (going back: before) this sort key of an ordered index; `None`: at the start
    /// (going back: the end).
    Key(Option<String>),
    /// The number of results before the page, in a list sorted in memory.
    Offset(usize),
}

/// An opened cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PageCursor {
    pub(super) position: Position,
    /// The page before `position` rather than the one after it (a `previousCursor`).
    pub(super) back: bool,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    /// The query hash.
    q: String,
    /// The page size.
    n: usize,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    k: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    o: Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    b: bool,
    /// Expiry, epoch seconds.
    x: i64,
}

/// The hash a cursor is bound to: the resource type, the filter and the sort (RFC 9865 §2:
/// a client repeats every parameter but the cursor). Also keys remembered index positions.
pub(super) fn query_hash(kind: ResourceKind, req: &SearchRequest) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_str().as_bytes());
    h.update(b"\0");
    if let Some(f) = &req.filter {
        h.update(f.to_string().as_bytes());
    }
    h.update(b"\0");
    if let Some(s) = &req.sort_by {
        h.update(s.to_string().to_ascii_lowercase().as_bytes());
        h.update(if req.descending { b"\0d" } else { b"\0a" });
    }
    hex::encode(&h.finalize()[..12])
}

/// Seals and opens cursors.
pub(super) struct Cursors<'a> {
    pub(super) key: &'a SecretBox,
    pub(super) timeout_secs: i64,
}

impl Cursors<'_> {
    pub(super) fn seal(&self, query: &str, count: usize, c: &PageCursor, now: i64) -> String {
        let (k, o) = match &c.position {
            Position::Key(k) => (k.clone(), None),
            Position::Offset(o) => (None, Some(*o)),
        };
        let sealed = Sealed {
            q: query.to_string(),
            n: count,
            k,
            o,
            b: c.back,
            x: now + self.timeout_secs,
        };
        // A struct of strings and numbers always serialises.
        self.key
            .seal(&serde_json::to_string(&sealed).unwrap_or_default())
    }

    pub(super) fn open(
        &self,
        token: &str,
        query: &str,
        count: usize,
        now: i64,
    ) -> Result<PageCursor, CursorError> {
        let json = self
            .key
            .open(token)
            .map_err(|_| CursorError::Invalid("not a cursor of this service, or altered"))?;
        let s: Sealed = serde_json::from_str(&json)
            .map_err(|_| CursorError::Invalid("not a cursor of this service"))?;
        if s.q != query {
            return Err(CursorError::Invalid(
                "it belongs to a query with another filter or sort order",
            ));
        }
        if s.x < now {
            return Err(CursorError::Expired);
        }
        if s.n != count {
            return Err(CursorError::Count { expected: s.n });
        }
        let position = match (s.k, s.o) {
            (_, Some(o)) => Position::Offset(o),
            (k, None) => Position::Key(k),
        };
        Ok(PageCursor {
            position,
            back: s.b,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provisync_scim::filter::parse;

    fn req(filter: &str) -> SearchRequest {
        SearchRequest {
            filter: Some(parse(filter).unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_what_they_were_not_issued_for() {
        let (key, _) = SecretBox::generate();
        let cursors = Cursors {
            key: &key,
            timeout_secs: 60,
        };
        let q = query_hash(ResourceKind::User, &req(r#"title eq "x""#));
        let c = PageCursor {
            position: Position::Key(Some("0190-id".into())),
            back: false,
        };
        let token = cursors.seal(&q, 10, &c, 1000);
        assert!(
            token
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-._~".contains(ch)),
            "{token}"
        );
        assert!(!token.contains("0190-id"), "positions are not readable");
        assert_eq!(cursors.open(&token, &q, 10, 1000).unwrap(), c);
        assert_eq!(
            cursors.open(&token, &q, 10, 1061),
            Err(CursorError::Expired)
        );
        assert_eq!(
            cursors.open(&token, &q, 20, 1000),
            Err(CursorError::Count { expected: 10 })
        );
        let other = query_hash(ResourceKind::User, &req(r#"title eq "y""#));
        assert!(matches!(
            cursors.open(&token, &other, 10, 1000),
            Err(CursorError::Invalid(_))
        ));
        let groups = query_hash(ResourceKind::Group, &req(r#"title eq "x""#));
        assert_ne!(groups, q);
        // A changed character, another key, garbage.
        let mut bad = token.clone().into_bytes();
        let i = bad.len() - 3;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(matches!(
            cursors.open(&bad, &q, 10, 1000),
            Err(CursorError::Invalid(_))
        ));
        let (other_key, _) = SecretBox::generate();
        let foreign = Cursors {
            key: &other_key,
            timeout_secs: 60,
        };
        assert!(matches!(
            foreign.open(&token, &q, 10, 1000),
            Err(CursorError::Invalid(_))
        ));
        assert!(matches!(
            cursors.open("garbage", &q, 10, 1000),
            Err(CursorError::Invalid(_))
        ));
        let sorted = SearchRequest {
            sort_by: provisync_scim::schema::AttrPath::parse("userName"),
            ..req(r#"title eq "x""#)
        };
        assert_ne!(query_hash(ResourceKind::User, &sorted), q);
    }
}
