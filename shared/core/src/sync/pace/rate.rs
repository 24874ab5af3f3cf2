//! The rate learned from a target's refusals (see the parent module's documentation:
//! the first refusal's cycle, slow start, the replay against a token bucket, probing
//! upward and cutting on a later refusal).

use std::time::Duration;

// Tokio's clock (the real one outside tests): paused time simulates limiters in the tests.
use tokio::time::Instant;

use super::bucket::bucket_rate;

/// A refusal while paced cuts the rate at least to this share of the rate refused.
const RATE_CUT: f64 = 0.95;
/// Slow start: the rate doubles this many times per period until a refusal.
pub(super) const SLOW_START_STEPS: u32 = 8;
/// After a refusal in slow start, the rate settles this far below the limit estimated.
const SETTLE: f64 = 0.95;
/// The most calls of one slow-start cycle kept to estimate the limit from.
const MAX_REPLAY: usize = 4096;
/// The slowest rate learned: one call a minute.
pub(super) const MIN_RATE: f64 = 1.0 / 60.0;
/// The shortest and longest period a limiter is assumed to count over.
pub(super) const MIN_PERIOD: Duration = Duration::from_secs(1);
pub(super) const MAX_PERIOD: Duration = Duration::from_secs(60);

/// The rate learned from a target's refusals.
pub(super) struct Rate {
    /// Calls per second (none until the target refuses a call).
    pub(super) rate: Option<f64>,
    /// The limit is below it, as a refusal last showed (the rate refused, or the upper
    /// bound the slow-start replay found); none in slow start.
    pub(super) ceiling: Option<f64>,
    /// The rate before the last increase (it held a step without refusal), or what the
    /// last cycle delivered.
    pub(super) good: f64,
    /// The limiter's period: the longest `Retry-After` seen, within 1 s to 60 s.
    pub(super) period: Duration,
    /// When the rate last changed (or the hold after it ended), and the calls started
    /// since (the rate was tried only if calls went at about that rate: the consumer may
    /// send fewer).
    pub(super) changed: Instant,
    pub(super) sent: u32,
    /// The first cycle, sent unpaced until the first refusal: the calls it answered and
    /// the seconds from its first call to the refused one (a token bucket's burst and
    /// what it refilled meanwhile).
    pub(super) burst: Option<(f64, f64)>,
    /// In slow start, when the calls of this cycle that were answered started, and how
    /// long the limiter refilled before the cycle began (the hold; none after an idle
    /// spell): replayed against a token bucket at the next refusal.
    pub(super) starts: Vec<Instant>,
    pub(super) refilled: Option<Duration>,
    /// When a refusal last cut the rate (calls started before count once).
    pub(super) cut_at: Option<Instant>,
    pub(super) cut_ms: i64,
    /// The current cycle (since the last hold ended, or the first call after an idle
    /// spell) and the calls answered in it.
    pub(super) cycle_start: Instant,
    pub(super) cycle_answered: u32,
}

impl Rate {
    pub(super) fn new(now: Instant) -> Self {
        Rate {
            rate: None,
            ceiling: None,
            good: 0.0,
            period: MIN_PERIOD,
            changed: now,
            sent: 0,
            burst: None,
            starts: Vec::new(),
            refilled: None,
            cut_at: None,
            cut_ms: 0,
            cycle_start: now,
            cycle_answered: 0,
        }
    }

    pub(super) fn answered(&mut self, started: Instant, now: Instant) {
        if started >= self.cycle_start {
            self.cycle_answered += 1;
        }
        let slow_start = self.rate.is_some() && self.ceiling.is_none();
        if slow_start && started >= self.cycle_start && self.starts.len() < MAX_REPLAY {
            self.starts.push(started);
        }
        self.probe(now);
    }

    /// The rate is now `rate`, from `at` (the end of a hold, or now).
    pub(super) fn set(&mut self, rate: f64, at: Instant) {
        self.rate = Some(rate);
        self.changed = at;
        self.sent = 0;
    }

    /// Raises the rate after a step in which calls went at half of it or more (it was
    /// tried: the consumer may send fewer) and none was refused.
    pub(super) fn probe(&mut self, now: Instant) {
        let Some(rate) = self.rate else { return };
        if self.ceiling.is_some_and(|c| rate > 1.2 * c) {
            // Well past the old ceiling without a refusal: the limit was raised. Slow
            // start again, replaying from here (calls went below the limit: a bucket is
            // full).
            self.ceiling = None;
            self.cycle_start = now;
            self.cycle_answered = 0;
            self.starts.clear();
            self.refilled = None;
        }
        let every = match self.ceiling {
            // Slow start: doubling every eighth of a period until a refusal.
            None => self.period / SLOW_START_STEPS,
            // Near the ceiling: five periods per step.
            Some(c) if rate >= SETTLE * c - 1e-9 => self.period * 5,
            Some(_) => self.period,
        };
        let mut elapsed = now.saturating_duration_since(self.changed);
        if self.ceiling.is_none() && self.sent > 0 {
            // In slow start a step lasts at least one call (below one call a step, each
            // answered call is one).
            elapsed = elapsed.max(Duration::from_secs_f64(1.0 / rate));
        }
        if elapsed < every {
            return;
        }
        let sent = f64::from(self.sent) / elapsed.as_secs_f64();
        if sent < 0.5 * rate {
            return;
        }
        let next = match self.ceiling {
            None => rate * 2.0,
            // Far below the ceiling (after a deep cut): back up by a tenth per period.
            Some(c) if rate < 0.9 * c => (rate * 1.1).min(0.9 * c).max(rate + 0.01 * c),
            Some(c) => rate + 0.01 * c,
        };
        self.good = rate;
        self.set(next, now);
    }

    /// A 429/503 for a call started at `started`: learns (or cuts) the rate, unless a
    /// cut since that call started already counted this burst. True when it changed.
    pub(super) fn refused(
        &mut self,
        started: Instant,
        retry_after: Option<Duration>,
        now: Instant,
        now_ms: i64,
    ) -> bool {
        if self.cut_at.is_some_and(|c| started < c) {
            return false;
        }
        let hold = retry_after.unwrap_or(MIN_PERIOD);
        if self.cycle_answered == 0 {
            // Nothing answered since the last hold (or ever): the target's first answer,
            // or the first call after a hold, was refused. That shows no rate it accepts
            // (a hold too short for its limiter, a limiter found spent, or a refusal that
            // is no limiter's): it holds, and its burst counts once, but teaches no rate,
            // no burst and no period. Before any rate, the cycle after the hold goes
            // unpaced as the first did (its count is the burst).
            self.cut_at = Some(now);
            self.cycle_start = now + hold;
            self.starts.clear();
            self.refilled = Some(hold);
            if let Some(rate) = self.rate {
                self.set(rate, now + hold);
            }
            return false;
        }
        self.period = self.period.max(hold.clamp(MIN_PERIOD, MAX_PERIOD));
        // What the target accepted over this cycle, counting the hold it imposes.
        let span = now.saturating_duration_since(self.cycle_start) + hold.max(MIN_PERIOD);
        let accepted = f64::from(self.cycle_answered) / span.as_secs_f64();
        let next = match self.rate {
            // At least one call per hold.
            None => {
                let secs = started.saturating_duration_since(self.cycle_start);
                self.burst = Some((f64::from(self.cycle_answered), secs.as_secs_f64()));
                accepted.max(1.0 / hold.max(MIN_PERIOD).as_secs_f64())
            }
            Some(rate) if self.ceiling.is_none() => {
                // Slow start: the limit is at least what this cycle delivered. A token
                // bucket (the first cycle's count for its burst) accepted this cycle's
                // answered calls and refused this one: its rate lies between the least
                // that gives every answered call a token and the least that would have
                // given this one a token.
                let replayed = match self.burst {
                    Some(burst) if burst.0 >= 1.0 && self.starts.len() < MAX_REPLAY => {
                        self.starts.sort_unstable();
                        Some(bucket_rate(
                            burst,
                            self.cycle_start,
                            self.refilled,
                            &self.starts,
                            started,
                        ))
                    }
                    _ => None,
                };
                let (least, most) = replayed.unwrap_or((accepted, self.good.min(rate)));
                let (least, most) = (least.max(accepted), most.max(accepted));
                // A little below the middle, and not above the least (the limit is at
                // least that); the upper bound is the ceiling probed toward.
                let next = (SETTLE * (least + most) / 2.0).min(least);
                self.ceiling = Some(most.max(next));
                next
            }
            Some(rate) => {
                // Settled: 90% of the rate refused, or what the cycle delivered.
                self.ceiling = Some(rate);
                accepted.max(rate * 0.9).min(rate * RATE_CUT)
            }
        }
        .max(MIN_RATE);
        self.good = accepted.min(next);
        self.set(next, now + hold);
        self.cut_at = Some(now);
        self.cut_ms = now_ms;
        self.cycle_start = now + hold;
        self.cycle_answered = 0;
        self.starts.clear();
        self.refilled = Some(hold);
        true
    }
}
