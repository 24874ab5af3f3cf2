//! The token-bucket replay of slow start (see [`super`]): bounds on a bucket's rate from
//! the calls it accepted and the one it refused.

use std::time::Duration;

use tokio::time::Instant;

/// Bounds on the rate of a token bucket that accepted calls started at `starts` (sorted)
/// and refused one started at `refused`: its burst is the first cycle's `(calls,
/// seconds)` less what it refilled over them, and it refilled for `refilled` before
/// `from` (or was full). Returns the least rate that gives every accepted call a token
/// and the least that would have given the refused one a token (by bisection: the
/// tokens grow with the rate).
pub(super) fn bucket_rate(
    burst: (f64, f64),
    from: Instant,
    refilled: Option<Duration>,
    starts: &[Instant],
    refused: Instant,
) -> (f64, f64) {
    // The fewest tokens an accepted call found, and the tokens the refused one found.
    let replay = |rate: f64| {
        // It answered `calls` over `seconds`: its burst was at most that, and less
        // what it refilled meanwhile beyond the last token (the larger: the slower).
        let burst = (burst.0 + 1.0 - rate * burst.1).min(burst.0).max(1.0);
        let mut tokens = refilled.map_or(burst, |r| (rate * r.as_secs_f64()).min(burst));
        let (mut at, mut least) = (from, f64::INFINITY);
        for &t in starts.iter().filter(|t| **t < refused) {
            tokens = (tokens + rate * t.saturating_duration_since(at).as_secs_f64()).min(burst);
            at = at.max(t);
            least = least.min(tokens);
            tokens -= 1.0;
        }
        let left = tokens + rate * refused.saturating_duration_since(at).as_secs_f64();
        (least, left.min(burst))
    };
    let bisect = |enough: &dyn Fn(f64) -> bool| {
        let (mut lo, mut hi) = (0.0, 1.0);
        while !enough(hi) && hi < 1e6 {
            (lo, hi) = (hi, hi * 2.0);
        }
        for _ in 0..40 {
            let mid = (lo + hi) / 2.0;
            if enough(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    };
    // The least rate at which every accepted call found a token; the least at which the
    // refused one would have.
    let accepted_all = bisect(&|r| replay(r).0 >= 1.0);
    let refused_one = bisect(&|r| replay(r).1 >= 1.0);
    (accepted_all, refused_one.max(accepted_all))
}
