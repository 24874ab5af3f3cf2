//! The quota a target advertises in its answers' headers, so delivery can pace from its
//! first answer instead of learning the rate from its refusals ([`crate::sync::pace`]).
//!
//! Two header families are read:
//! - the IETF's (draft-ietf-httpapi-ratelimit-headers), in the forms its drafts used:
//!   `RateLimit-Limit: 50`, `RateLimit-Remaining: 10`, `RateLimit-Reset: 1` (drafts up
//!   to -06, the limit possibly followed by its policies: `50, 50;w=1`); `RateLimit:
//!   limit=50, remaining=10, reset=1` with `RateLimit-Policy: 50;w=1` (-07); and
//!   `RateLimit-Policy: "default";q=50;w=1` with `RateLimit: "default";r=10;t=1` (-08
//!   on). Reset and window are delta seconds. With several policies, the one of the
//!   lowest rate (`q / w`) is taken, and the `RateLimit` item of the same name.
//! - the vendors': Okta's `X-Rate-Limit-Limit`, `X-Rate-Limit-Remaining`,
//!   `X-Rate-Limit-Reset`, and the same as GitHub and others spell it (`X-RateLimit-*`).
//!   Reset is the UTC epoch second at which the window resets; the window is not said.
//!
//! The IETF family is read when it gives a limit or a remainder, else the vendors'. Any
//! value that is not a plain non-negative integer, a limit of 0, a window outside 1 s to
//! a day, a reset more than a day ahead: that value is ignored, never the call.
//!
//! **How a quota reaches the pace without a change to the `Connector` trait.** A
//! connector call is one future that may send several requests (a token, then the call;
//! a lookup, then the write), and its result type is the connector's. The pace's wrapper
//! (`sync/paced.rs`) runs that future in [`scoped`], a task-local slot; the HTTP client
//! ([`note`], from `provisync_connectors::http::HttpClient::send`, the one place every
//! HTTP connector's answers pass) writes each answer's quota into it (success and error
//! answers alike; the last answer wins). Outside a scope (a pull, a connection test),
//! [`note`] does nothing. Threading the quota through every connector method's return
//! type would have changed the port and every adapter for a hint only pacing reads.
//!
//! **Every request paced, not only the first.** The same slot paces the requests after
//! a call's first ([`before_request`], also from `HttpClient::send`): a call's slot
//! covers its first request, and each later one (a group read before its members, a
//! read before a PUT, the next 100 members, a second try with a fresh token) waits for
//! the scope's [`RequestGate`], which spaces it at the target's rate and holds it through
//! a `Retry-After`. Without it, a `max_rate: N` target saw more than N requests in a
//! second. Requests that are not the target's (an OAuth token fetch from an identity
//! provider) run [`outside`] the scope: neither paced nor read for a quota.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderMap;
// Tokio's clock: the pace runs on it (paused time in its tests).
use tokio::time::Instant;

/// Longest window or reset taken from a header: a day (daily quotas exist; more is
/// taken for garbage).
pub const MAX_RESET: Duration = Duration::from_secs(86_400);

/// Request starts a scope keeps (a call that sends more is paced all the same; only the
/// first this many starts reach the pace's records).
const MAX_STARTS: usize = 256;

/// What one answer said of the target's quota.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Quota {
    /// Calls allowed per window.
    pub limit: Option<u32>,
    /// Calls left in the current window.
    pub remaining: Option<u32>,
    /// Until the window resets (the remainder is back).
    pub reset: Option<Duration>,
    /// The window the limit counts over (the IETF policy's `w`; the vendor headers do
    /// not say it).
    pub window: Option<Duration>,
}

/// What a request after a call's first waits for: its turn at the target's pace.
pub trait RequestGate: Send + Sync {
    fn wait(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// One paced call's task-local slot.
struct CallScope {
    /// The last answer's quota.
    quota: Cell<Option<Quota>>,
    /// When each of the call's requests (to the target) started.
    starts: RefCell<Vec<Instant>>,
    gate: Option<Arc<dyn RequestGate>>,
    /// Requests run here are not the target's ([`outside`]).
    outside: bool,
}

impl CallScope {
    fn new(gate: Option<Arc<dyn RequestGate>>, outside: bool) -> Self {
        CallScope {
            quota: Cell::new(None),
            starts: RefCell::new(Vec::new()),
            gate,
            outside,
        }
    }
}

tokio::task_local! {
    static SCOPE: CallScope;
}

/// What a scoped call's requests left.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scoped {
    /// The quota its last answer advertised (none when no answer carried one).
    pub quota: Option<Quota>,
    /// When each request to the target started (at most [`MAX_STARTS`]; none when the
    /// call sent nothing through the HTTP client).
    pub starts: Vec<Instant>,
}

/// Runs `call` with a slot [`note`] fills with the quota of its last answer, and in which
/// every request after the first waits for `gate` ([`before_request`]); returns the
/// call's output and what its requests left.
pub async fn scoped<F: Future>(gate: Option<Arc<dyn RequestGate>>, call: F) -> (F::Output, Scoped) {
    SCOPE
        .scope(CallScope::new(gate, false), async {
            let out = call.await;
            let left = SCOPE
                .try_with(|s| Scoped {
                    quota: s.quota.get(),
                    starts: s.starts.take(),
                })
                .unwrap_or_default();
            (out, left)
        })
        .await
}

/// Runs `request` outside the current call's scope, if any: a request that is not the
/// target's (an OAuth token from an identity provider) is not paced as one, and its
/// answer's headers are not the target's quota.
pub async fn outside<F: Future>(request: F) -> F::Output {
    SCOPE.scope(CallScope::new(None, true), request).await
}

/// Before each request to the target: in a paced call, every request after the first
/// waits for the call's gate (the first went in the call's own slot). Nothing outside a
/// scope.
pub async fn before_request() {
    let gate = SCOPE
        .try_with(|s| {
            if s.outside {
                return None;
            }
            let earlier = s.starts.borrow().len();
            if earlier == 0 { None } else { s.gate.clone() }
        })
        .ok()
        .flatten();
    if let Some(gate) = gate {
        gate.wait().await;
    }
    let _ = SCOPE.try_with(|s| {
        let mut starts = s.starts.borrow_mut();
        if !s.outside && starts.len() < MAX_STARTS {
            starts.push(Instant::now());
        }
    });
}

/// Records the quota `headers` advertise (or none) as the current call's last answer's;
/// nothing outside [`scoped`] (the headers are not even read: a pull from a source or a
/// connection test pays nothing).
pub fn note(headers: &HeaderMap) {
    let _ = SCOPE.try_with(|s| {
        if !s.outside {
            s.quota
                .set(Quota::from_headers(headers, chrono::Utc::now()));
        }
    });
}

impl Quota {
    /// The quota `headers` advertise, if any (`now` converts the vendors' epoch resets).
    pub fn from_headers(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Quota> {
        let ietf = ietf(headers);
        if ietf.limit.is_some() || ietf.remaining.is_some() {
            return Some(ietf);
        }
        let vendor = vendor(headers, now);
        (vendor.limit.is_some() || vendor.remaining.is_some()).then_some(vendor)
    }

    /// The calls per second it allows from now on: the policy's `limit / window`, or the
    /// remainder spread over what is left of the window when that is lower (a quota
    /// nearly spent) or when the window is not said. The spread needs a reset over a
    /// second: delta seconds are whole, and a window that turns within a second says
    /// nothing a pace can use (a token bucket's "full again in 1 s" is no remainder to
    /// ration). None when it says neither.
    pub fn rate(&self) -> Option<f64> {
        let policy = match (self.limit, self.window) {
            (Some(l), Some(w)) => Some(f64::from(l) / w.as_secs_f64()),
            _ => None,
        };
        let spread = match (self.remaining, self.reset) {
            (Some(r), Some(t)) if r > 0 && t > Duration::from_secs(1) => {
                Some(f64::from(r) / t.as_secs_f64())
            }
            _ => None,
        };
        match (policy, spread) {
            (Some(p), Some(s)) => Some(p.min(s)),
            (p, s) => p.or(s),
        }
    }

    /// How long no call will be accepted: the remainder is 0 until the reset.
    pub fn spent_for(&self) -> Option<Duration> {
        match (self.remaining, self.reset) {
            (Some(0), Some(t)) if !t.is_zero() => Some(t),
            _ => None,
        }
    }
}

/// A header's value, as text.
fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A plain non-negative integer (RFC 8941 sf-integer, no sign), else none.
fn integer(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 15 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn limit(s: &str) -> Option<u32> {
    integer(s)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
}

fn count(s: &str) -> Option<u32> {
    integer(s).and_then(|n| u32::try_from(n).ok())
}

/// Delta seconds within a day.
fn seconds(s: &str) -> Option<Duration> {
    integer(s)
        .map(Duration::from_secs)
        .filter(|d| *d <= MAX_RESET)
}

/// A window: 1 s to a day.
fn window(s: &str) -> Option<Duration> {
    seconds(s).filter(|d| !d.is_zero())
}

/// The members of a structured-field list or dictionary (split at commas outside quoted
/// strings).
fn members(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.retain(|m| !m.is_empty());
    out
}

/// One member: its item (a bare value, a `key=value`, or a quoted name) and its
/// parameters (`;key=value`).
struct Member<'a> {
    item: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> Member<'a> {
    fn parse(m: &'a str) -> Member<'a> {
        // Parameters follow the item after `;` (a quoted name has no `;` in practice;
        // one that does is taken apart and its values ignored).
        let mut parts = m.split(';');
        let item = parts.next().unwrap_or("").trim();
        let params = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        Member { item, params }
    }

    fn param(&self, key: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }

    /// The quoted name, if the item is one.
    fn name(&self) -> Option<&'a str> {
        self.item
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
    }
}

/// A policy of `RateLimit-Policy`: `50;w=1` or `"name";q=50;w=1`.
struct Policy<'a> {
    name: Option<&'a str>,
    quota: u32,
    window: Option<Duration>,
}

fn policies(s: &str) -> Vec<Policy<'_>> {
    members(s)
        .into_iter()
        .map(Member::parse)
        .filter_map(|m| {
            let quota = match m.name() {
                Some(_) => m.param("q").and_then(limit),
                None => limit(m.item),
            }?;
            Some(Policy {
                name: m.name(),
                quota,
                window: m.param("w").and_then(window),
            })
        })
        .collect()
}

fn ietf(headers: &HeaderMap) -> Quota {
    let mut q = Quota::default();
    // The policy of the lowest rate (a per-minute quota binds over a per-second one).
    let policy = text(headers, "ratelimit-policy").and_then(|s| {
        policies(s).into_iter().min_by(|a, b| {
            let rate = |p: &Policy| {
                p.window
                    .map_or(f64::INFINITY, |w| f64::from(p.quota) / w.as_secs_f64())
            };
            rate(a).total_cmp(&rate(b))
        })
    });
    if let Some(p) = &policy {
        q.limit = Some(p.quota);
        q.window = p.window;
    }
    if let Some(s) = text(headers, "ratelimit") {
        let ms: Vec<Member> = members(s).into_iter().map(Member::parse).collect();
        let dict = |key: &str| {
            ms.iter().find_map(|m| {
                m.item
                    .split_once('=')
                    .filter(|(k, _)| k.trim().eq_ignore_ascii_case(key))
                    .map(|(_, v)| v.trim())
            })
        };
        if dict("remaining").is_some() || dict("limit").is_some() {
            // draft -07: `limit=50, remaining=10, reset=1`.
            q.limit = q.limit.or_else(|| dict("limit").and_then(limit));
            q.remaining = dict("remaining").and_then(count);
            q.reset = dict("reset").and_then(seconds);
        } else {
            // -08 on: `"name";r=10;t=1`, the item of the policy taken (or the first).
            let wanted = policy.as_ref().and_then(|p| p.name);
            let m = ms
                .iter()
                .find(|m| wanted.is_some() && m.name() == wanted)
                .or_else(|| ms.first());
            if let Some(m) = m {
                q.remaining = m.param("r").and_then(count);
                q.reset = m.param("t").and_then(seconds);
            }
        }
    }
    // Drafts up to -06: one header each; the limit may list its policies after it.
    if let (None, Some(s)) = (q.limit, text(headers, "ratelimit-limit")) {
        let ms: Vec<Member> = members(s).into_iter().map(Member::parse).collect();
        if let Some(first) = ms.first() {
            q.limit = limit(first.item);
            q.window = q.window.or_else(|| {
                ms.iter()
                    .find(|m| m.item == first.item && m.param("w").is_some())
                    .and_then(|m| m.param("w").and_then(window))
            });
        }
    }
    if q.remaining.is_none() {
        q.remaining = text(headers, "ratelimit-remaining").and_then(count);
    }
    if q.reset.is_none() {
        q.reset = text(headers, "ratelimit-reset").and_then(seconds);
    }
    q
}

fn vendor(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Quota {
    let field = |name: &str| {
        text(headers, &format!("x-rate-limit-{name}"))
            .or_else(|| text(headers, &format!("x-ratelimit-{name}")))
    };
    let reset = field("reset").and_then(integer).and_then(|at| {
        // The epoch second of the reset, from now (a past one: now).
        let ahead = at as f64 - now.timestamp_millis() as f64 / 1000.0;
        let ahead = Duration::try_from_secs_f64(ahead.max(0.0)).ok()?;
        (ahead <= MAX_RESET).then_some(ahead)
    });
    Quota {
        limit: field("limit").and_then(limit),
        remaining: field("remaining").and_then(count),
        reset,
        window: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_609_459_170, 0).unwrap()
    }

    fn quota(pairs: &[(&'static str, &str)]) -> Option<Quota> {
        Quota::from_headers(&headers(pairs), now())
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn ietf_headers_in_each_drafts_form() {
        // Drafts up to -06 (the -06 examples: `RateLimit-Limit: 10`, `-Remaining: 1`,
        // `-Reset: 7`, and the limit with its policies).
        let q = quota(&[
            ("ratelimit-limit", "10"),
            ("ratelimit-remaining", "1"),
            ("ratelimit-reset", "7"),
        ])
        .unwrap();
        assert_eq!(
            q,
            Quota {
                limit: Some(10),
                remaining: Some(1),
                reset: Some(7 * SEC),
                window: None
            }
        );
        let q = quota(&[
            ("ratelimit-limit", "10, 10;w=1, 50;w=60"),
            ("ratelimit-remaining", "6"),
            ("ratelimit-reset", "3"),
        ])
        .unwrap();
        assert_eq!((q.limit, q.window), (Some(10), Some(SEC)));
        // With the policy in its own header.
        let q = quota(&[
            ("ratelimit-limit", "50"),
            ("ratelimit-remaining", "10"),
            ("ratelimit-reset", "1"),
            ("ratelimit-policy", "50;w=1"),
        ])
        .unwrap();
        assert_eq!(q.rate(), Some(50.0));
        // -07: `RateLimit: limit=100, remaining=50, reset=5` and `RateLimit-Policy: 100;w=10`.
        let q = quota(&[
            ("ratelimit", "limit=100, remaining=50, reset=5"),
            ("ratelimit-policy", "100;w=10"),
        ])
        .unwrap();
        assert_eq!(
            q,
            Quota {
                limit: Some(100),
                remaining: Some(50),
                reset: Some(5 * SEC),
                window: Some(10 * SEC)
            }
        );
        assert_eq!(
            q.rate(),
            Some(10.0),
            "the policy, under the spread (50/5 s)"
        );
        // -08 on: named policies, `q` and `w`; `RateLimit` names the one it reports.
        let q = quota(&[
            ("ratelimit-policy", "\"default\";q=50;w=1"),
            ("ratelimit", "\"default\";r=10;t=1"),
        ])
        .unwrap();
        assert_eq!(
            q,
            Quota {
                limit: Some(50),
                remaining: Some(10),
                reset: Some(SEC),
                window: Some(SEC)
            }
        );
        assert_eq!(q.rate(), Some(50.0));
        // Several policies: the lowest rate, and its own `RateLimit` item.
        let q = quota(&[
            (
                "ratelimit-policy",
                "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400",
            ),
            ("ratelimit", "\"burst\";r=50;t=30, \"daily\";r=900;t=40000"),
        ])
        .unwrap();
        assert_eq!(q.limit, Some(1000));
        assert_eq!((q.remaining, q.reset), (Some(900), Some(40_000 * SEC)));
        // Its own quota unit and partition key are parameters it ignores.
        let q = quota(&[
            (
                "ratelimit-policy",
                "\"peruser\";q=100;qu=\"requests\";w=60;pk=:cHsdsRa894=:",
            ),
            ("ratelimit", "\"peruser\";r=0;t=12;pk=:cHsdsRa894=:"),
        ])
        .unwrap();
        assert_eq!(q.spent_for(), Some(12 * SEC));
    }

    /// Okta's example answer (`X-Rate-Limit-Limit: 1200`, `-Remaining: 1199`, `-Reset:
    /// 1609459200`, 30 s after `now`), and GitHub's spelling.
    #[test]
    fn vendor_headers_reset_at_an_epoch_second() {
        let q = quota(&[
            ("x-rate-limit-limit", "1200"),
            ("x-rate-limit-remaining", "1199"),
            ("x-rate-limit-reset", "1609459200"),
        ])
        .unwrap();
        assert_eq!(
            q,
            Quota {
                limit: Some(1200),
                remaining: Some(1199),
                reset: Some(30 * SEC),
                window: None
            }
        );
        assert!((q.rate().unwrap() - 1199.0 / 30.0).abs() < 1e-9);
        let q = quota(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1609459260"),
        ])
        .unwrap();
        assert_eq!(q.spent_for(), Some(90 * SEC));
        assert_eq!(q.rate(), None);
        // A reset in the past is now; beyond a day is garbage.
        let past = quota(&[
            ("x-rate-limit-remaining", "3"),
            ("x-rate-limit-reset", "1500000000"),
        ])
        .unwrap();
        assert_eq!(past.reset, Some(Duration::ZERO));
        let far = quota(&[
            ("x-rate-limit-remaining", "3"),
            ("x-rate-limit-reset", "1909459200"),
        ])
        .unwrap();
        assert_eq!(far.reset, None);
        // The IETF headers win when both come.
        let both = quota(&[
            ("x-rate-limit-limit", "1200"),
            ("ratelimit-policy", "50;w=1"),
        ])
        .unwrap();
        assert_eq!(both.limit, Some(50));
    }

    #[test]
    fn malformed_values_are_ignored() {
        assert_eq!(quota(&[]), None);
        assert_eq!(quota(&[("ratelimit-limit", "lots")]), None);
        assert_eq!(quota(&[("ratelimit-limit", "0")]), None, "no limit of 0");
        assert_eq!(quota(&[("ratelimit-limit", "-5")]), None);
        assert_eq!(quota(&[("ratelimit-limit", "1e9")]), None);
        assert_eq!(quota(&[("ratelimit-limit", "99999999999999999999")]), None);
        assert_eq!(quota(&[("x-rate-limit-limit", "12.5")]), None);
        let q = quota(&[
            ("ratelimit-limit", "50"),
            ("ratelimit-remaining", "ten"),
            ("ratelimit-reset", "999999999"),
            (
                "ratelimit-policy",
                "50;w=0, ;;;, \"x\";q=;w=abc, \"unterminated;q=5",
            ),
        ])
        .unwrap();
        assert_eq!(
            q,
            Quota {
                limit: Some(50),
                ..Quota::default()
            }
        );
        assert_eq!(q.rate(), None);
        for junk in [
            "",
            ",",
            "=",
            "limit=",
            "\"",
            "\";r=;t=",
            "limit=1, limit=2, remaining=-1",
            "\u{7f}",
        ] {
            if let Ok(v) = HeaderValue::from_str(junk) {
                let mut h = HeaderMap::new();
                h.insert("ratelimit", v.clone());
                h.insert("ratelimit-policy", v);
                let _ = Quota::from_headers(&h, now());
            }
        }
        // Not UTF-8 text: ignored.
        let mut h = HeaderMap::new();
        h.insert(
            "ratelimit-limit",
            HeaderValue::from_bytes(b"5\xff").unwrap(),
        );
        assert_eq!(Quota::from_headers(&h, now()), None);
    }

    #[test]
    fn rate_and_spent() {
        let q = |limit, remaining, reset: u32, window: Option<u32>| Quota {
            limit: Some(limit),
            remaining: Some(remaining),
            reset: Some(reset * SEC),
            window: window.map(|w| w * SEC),
        };
        // On pace: the policy.
        assert_eq!(q(120, 60, 30, Some(60)).rate(), Some(2.0));
        // Nearly spent: the remainder over what is left of the window.
        assert_eq!(q(120, 10, 20, Some(60)).rate(), Some(0.5));
        // A window that turns within a second: the policy, not "9 calls in 1 s".
        assert_eq!(q(50, 9, 1, Some(1)).rate(), Some(50.0));
        assert_eq!(q(50, 0, 1, Some(1)).spent_for(), Some(SEC));
        assert_eq!(q(50, 0, 0, Some(1)).spent_for(), None);
    }

    #[tokio::test]
    async fn the_last_answer_of_a_scoped_call_is_kept() {
        let okta = headers(&[
            ("x-rate-limit-limit", "600"),
            ("x-rate-limit-remaining", "5"),
        ]);
        let ((), q) = scoped(None, async {
            note(&headers(&[("ratelimit-limit", "9")]));
            note(&okta);
        })
        .await;
        assert_eq!(q.quota.and_then(|q| q.remaining), Some(5));
        // An answer without a quota leaves none.
        let ((), q) = scoped(None, async {
            note(&okta);
            note(&HeaderMap::new());
        })
        .await;
        assert_eq!(q.quota, None);
        // An answer outside the call's scope (a token endpoint's) is not the target's.
        let ((), q) = scoped(None, async {
            note(&okta);
            outside(async { note(&HeaderMap::new()) }).await;
        })
        .await;
        assert_eq!(q.quota.and_then(|q| q.remaining), Some(5));
        // Outside a scope: nothing, no panic.
        note(&okta);
    }

    /// Counts its waits.
    struct Counting(std::sync::atomic::AtomicU32);

    impl RequestGate for Counting {
        fn wait(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn requests_after_the_first_wait_for_the_gate() {
        use std::sync::atomic::Ordering;
        let gate = Arc::new(Counting(Default::default()));
        let ((), left) = scoped(Some(gate.clone()), async {
            before_request().await;
            assert_eq!(
                gate.0.load(Ordering::SeqCst),
                0,
                "the first goes in the call's slot"
            );
            // A token fetch is not the target's: no wait, not counted.
            outside(before_request()).await;
            assert_eq!(gate.0.load(Ordering::SeqCst), 0);
            before_request().await;
            before_request().await;
        })
        .await;
        assert_eq!(gate.0.load(Ordering::SeqCst), 2);
        assert_eq!(left.starts.len(), 3);
        // Outside a scope: nothing, no panic.
        before_request().await;
    }
}
