//! Paging through a SCIM listing as a client: by cursor (RFC 9865) when the service
//! provider announces it in its `/ServiceProviderConfig`, by `startIndex` (RFC 7644
//! §3.4.2.4) otherwise. A caller keeps a [`PagePosition`] between pages (as a string:
//! [`PagePosition::to_token`]) and asks each list response where the next page starts.

use serde_json::Value;

/// Whether a service provider pages by cursor: `pagination.cursor` of its
/// `/ServiceProviderConfig` (RFC 9865 §4).
pub fn offers_cursors(service_provider_config: &Value) -> bool {
    service_provider_config["pagination"]["cursor"]
        .as_bool()
        .unwrap_or(false)
}

/// Where a page of a listing starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PagePosition {
    /// The first page of a cursor-paged listing (an empty `cursor`).
    FirstCursor,
    /// A page by `startIndex` (1-based).
    Index(u64),
    /// The page a `nextCursor` named.
    Cursor(String),
}

/// The token prefix of a cursor position (a bare number is a start index).
const CURSOR_TOKEN: &str = "c:";

/// Why a list response cannot be paged further.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error("listing position {0:?} is neither a start index nor a cursor")]
    BadToken(String),
}

impl PagePosition {
    /// The first page: by cursor when the service provider offers cursors.
    pub fn first(cursors: bool) -> PagePosition {
        if cursors {
            PagePosition::FirstCursor
        } else {
            PagePosition::Index(1)
        }
    }

    /// A position kept as [`PagePosition::to_token`] wrote it (a bare number is a start
    /// index, as positions were kept before cursors).
    pub fn from_token(token: &str) -> Result<PagePosition, PagingError> {
        if let Some(c) = token.strip_prefix(CURSOR_TOKEN) {
            return Ok(if c.is_empty() {
                PagePosition::FirstCursor
            } else {
                PagePosition::Cursor(c.to_string())
            });
        }
        token
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .map(PagePosition::Index)
            .ok_or_else(|| PagingError::BadToken(token.to_string()))
    }

    pub fn to_token(&self) -> String {
        match self {
            PagePosition::FirstCursor => CURSOR_TOKEN.to_string(),
            PagePosition::Index(n) => n.to_string(),
            PagePosition::Cursor(c) => format!("{CURSOR_TOKEN}{c}"),
        }
    }

    /// Whether this page is asked for by cursor.
    pub fn by_cursor(&self) -> bool {
        !matches!(self, PagePosition::Index(_))
    }

    /// The query parameters of this page: `cursor` or `startIndex`, and `count`.
    pub fn query(&self, count: usize) -> Vec<(&'static str, String)> {
        let at = match self {
            PagePosition::FirstCursor => ("cursor", String::new()),
            PagePosition::Cursor(c) => ("cursor", c.clone()),
            PagePosition::Index(n) => ("startIndex", n.to_string()),
        };
        vec![at, ("count", count.to_string())]
    }

    /// Where the page after `list` (the response to this page, `count` asked for)
    /// starts; `None` when `list` was the last page. By cursor, the last page is the one
    /// without `nextCursor` (RFC 9865 §2) — unless the service provider answered with an
    /// index page instead (`startIndex` in the response), which is then continued by
    /// index. By index, the listing goes on while `totalResults` says there is more (or,
    /// without it, while pages come back full).
    pub fn next(&self, list: &Value, count: usize) -> Option<PagePosition> {
        if let Some(c) = list["nextCursor"].as_str().filter(|c| !c.is_empty()) {
            return Some(PagePosition::Cursor(c.to_string()));
        }
        let got = list["Resources"].as_array().map_or(0, Vec::len) as u64;
        let start = match self {
            PagePosition::Index(n) => *n,
            _ => list["startIndex"].as_u64()?,
        };
        let more = got > 0
            && match list["totalResults"].as_u64() {
                Some(total) => start + got <= total,
                None => got >= count as u64,
            };
        more.then_some(PagePosition::Index(start + got))
    }
}

/// Whether an error response refuses a page's cursor (RFC 9865 §2.1 `invalidCursor`,
/// `expiredCursor`): the listing has to start over.
pub fn cursor_refused(status: u16, error: &Value) -> bool {
    status == 400
        && matches!(
            error["scimType"].as_str(),
            Some("invalidCursor" | "expiredCursor")
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_round_trip_and_read_bare_start_indexes() {
        for p in [
            PagePosition::FirstCursor,
            PagePosition::Index(101),
            PagePosition::Cursor("v1.abc_-".into()),
        ] {
            assert_eq!(PagePosition::from_token(&p.to_token()), Ok(p));
        }
        assert_eq!(
            PagePosition::from_token("201"),
            Ok(PagePosition::Index(201))
        );
        assert!(PagePosition::from_token("0").is_err());
        assert!(PagePosition::from_token("x").is_err());
        assert_eq!(PagePosition::first(true), PagePosition::FirstCursor);
        assert_eq!(PagePosition::first(false), PagePosition::Index(1));
    }

    #[test]
    fn query_and_next() {
        assert_eq!(
            PagePosition::FirstCursor.query(50),
            [("cursor", String::new()), ("count", "50".into())]
        );
        assert_eq!(
            PagePosition::Index(7).query(5),
            [("startIndex", "7".into()), ("count", "5".into())]
        );
        let page = |n: usize| json!({"Resources": vec![json!({}); n]});
        // By cursor: nextCursor, or the end.
        let mut with_next = page(2);
        with_next["nextCursor"] = json!("n1");
        assert_eq!(
            PagePosition::FirstCursor.next(&with_next, 2),
            Some(PagePosition::Cursor("n1".into()))
        );
        assert_eq!(PagePosition::Cursor("a".into()).next(&page(2), 2), None);
        // A server that answered by index although cursors were asked for.
        let mut indexed = page(2);
        indexed["startIndex"] = json!(1);
        indexed["totalResults"] = json!(5);
        assert_eq!(
            PagePosition::FirstCursor.next(&indexed, 2),
            Some(PagePosition::Index(3))
        );
        // By index: totalResults, or full pages.
        let mut last = page(1);
        last["totalResults"] = json!(5);
        assert_eq!(PagePosition::Index(5).next(&last, 2), None);
        assert_eq!(
            PagePosition::Index(3).next(&page(2), 2),
            Some(PagePosition::Index(5))
        );
        assert_eq!(PagePosition::Index(3).next(&page(1), 2), None);
        assert_eq!(PagePosition::Index(3).next(&page(0), 2), None);
    }

    #[test]
    fn refused_cursors() {
        assert!(cursor_refused(400, &json!({"scimType": "expiredCursor"})));
        assert!(cursor_refused(400, &json!({"scimType": "invalidCursor"})));
        assert!(!cursor_refused(400, &json!({"scimType": "invalidFilter"})));
        assert!(!cursor_refused(500, &json!({"scimType": "invalidCursor"})));
    }
}
