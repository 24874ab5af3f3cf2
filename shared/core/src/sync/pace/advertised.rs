//! The rate a target advertises in its answers' quota headers ([`Quota`], read by the HTTP
//! client): delivery paces at it from the first answers, as at an operator's `max_rate`,
//! instead of learning the rate from refusals (see [`super`]).

use std::time::Duration;

use crate::connector::quota::Quota;

/// An advertised rate below the one in force by more than this factor (or the first one)
/// takes effect only once a second answer says about the same (within the factor): one
/// odd header does not pin a target.
const CONFIRM: f64 = 2.0;
/// The longest hold for a quota an answer says is spent (`remaining: 0`): past it, the
/// next call's 429 and its `Retry-After` hold for real.
pub(super) const MAX_SPENT_HOLD: Duration = Duration::from_secs(60);
/// An answer that says the quota is spent holds only when the answer before said at most
/// this many calls were left (it counted down to it): one odd header does not hold.
const COUNTDOWN: u32 = 2;

/// The advertised rate in force, and a lower one awaiting a second answer's word.
#[derive(Debug, Default)]
pub(super) struct Advertised {
    /// Calls per second, if the target advertised a quota.
    pub rate: Option<f64>,
    pending: Option<f64>,
    /// The remainder the last answer advertised.
    remaining: Option<u32>,
}

impl Advertised {
    /// Takes one answer's quota. `accepted`: the rate the target was seen to accept
    /// without refusal (what the refusals path measured), under which an advertised rate
    /// is not taken. Returns how long to hold every call (the quota is spent until its
    /// reset), if it is.
    pub fn observe(&mut self, quota: &Quota, accepted: f64) -> Option<Duration> {
        if let Some(rate) = quota.rate() {
            let rate = rate.max(accepted).max(super::MIN_RATE);
            let agrees = |other: f64| rate >= other / CONFIRM && rate <= other * CONFIRM;
            if self.rate.is_some_and(|r| rate >= r / CONFIRM) || self.pending.is_some_and(agrees) {
                self.rate = Some(rate);
                self.pending = None;
            } else {
                self.pending = Some(rate);
            }
        }
        let counted_down = self.remaining.is_some_and(|r| r <= COUNTDOWN);
        self.remaining = quota.remaining.or(self.remaining);
        quota
            .spent_for()
            .filter(|_| counted_down)
            .map(|d| d.min(MAX_SPENT_HOLD))
    }

    /// A rate another process stored, when this one has none.
    pub fn adopt(&mut self, stored: Option<f64>) {
        if self.rate.is_none() {
            self.rate = stored.filter(|r| r.is_finite() && *r > 0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: u32, window: u64) -> Quota {
        Quota {
            limit: Some(limit),
            window: Some(Duration::from_secs(window)),
            ..Quota::default()
        }
    }

    #[test]
    fn a_rate_takes_effect_once_two_answers_agree() {
        let mut a = Advertised::default();
        assert_eq!(a.observe(&policy(50, 1), 0.0), None);
        assert_eq!(a.rate, None, "one answer");
        a.observe(&policy(50, 1), 0.0);
        assert_eq!(a.rate, Some(50.0));
        // Higher, or a little lower: at once.
        a.observe(&policy(80, 1), 0.0);
        assert_eq!(a.rate, Some(80.0));
        a.observe(&policy(60, 1), 0.0);
        assert_eq!(a.rate, Some(60.0));
        // One odd header (1 a minute) between good ones: no effect.
        a.observe(&policy(1, 60), 0.0);
        a.observe(&policy(60, 1), 0.0);
        a.observe(&policy(1, 60), 0.0);
        assert_eq!(a.rate, Some(60.0));
        // Said twice in a row: taken.
        a.observe(&policy(1, 60), 0.0);
        assert_eq!(a.rate, Some(1.0 / 60.0));
    }

    #[test]
    fn not_below_what_the_target_accepted() {
        let mut a = Advertised::default();
        a.observe(&policy(1, 60), 40.0);
        a.observe(&policy(1, 60), 40.0);
        assert_eq!(a.rate, Some(40.0));
    }

    #[test]
    fn a_spent_quota_counted_down_to_holds_until_its_reset_at_most_a_minute() {
        let mut a = Advertised::default();
        let spent = |reset| Quota {
            remaining: Some(0),
            reset: Some(Duration::from_secs(reset)),
            ..Quota::default()
        };
        let left = |n| Quota {
            remaining: Some(n),
            ..Quota::default()
        };
        // Out of the blue (after 5 left): one odd header, no hold.
        a.observe(&left(5), 0.0);
        assert_eq!(a.observe(&spent(12), 0.0), None);
        assert_eq!(a.observe(&spent(12), 0.0), Some(Duration::from_secs(12)));
        a.observe(&left(1), 0.0);
        assert_eq!(a.observe(&spent(3600), 0.0), Some(MAX_SPENT_HOLD));
        assert_eq!(a.rate, None);
    }
}
