//! The deprovision guard of a target: how many deactivations, deletions and membership
//! removals it takes within a window before the hub holds the rest for an operator.

use serde::{Deserialize, Serialize};

use crate::validation::{ValidationError, invalid};

/// Default window of a guard, minutes.
pub const DEFAULT_WINDOW_MINUTES: u32 = 60;
/// The default guard's count: a floor, so small targets and the usual leavers of an hour
/// flow without approval.
pub const DEFAULT_GUARD_MAX: u64 = 10;
/// The default guard's share of the target's linked accounts (Okta's import safeguard and
/// Grouper's failsafe use 20% as well).
pub const DEFAULT_GUARD_PERCENT: u32 = 20;
/// Longest window, minutes (a week).
const MAX_WINDOW_MINUTES: u32 = 7 * 24 * 60;

/// `deprovision_guard`: `{"max": 10, "max_percent": 20, "window_minutes": 60}`.
///
/// Deprovisions (deactivations, deletions, membership removals) beyond the allowance
/// within one window are held. With only `max`, the allowance is `max`; with only
/// `max_percent`, that share of the accounts linked on the target when the window opened
/// (rounded down); with both, the **larger** of the two (`max` is then the floor that
/// keeps a small target usable). A new target gets [`DeprovisionGuard::default`];
/// `"deprovision_guard": null` turns the guard off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeprovisionGuard {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_percent: Option<u32>,
    #[serde(default = "default_window")]
    pub window_minutes: u32,
}

fn default_window() -> u32 {
    DEFAULT_WINDOW_MINUTES
}

impl Default for DeprovisionGuard {
    fn default() -> Self {
        DeprovisionGuard {
            max: Some(DEFAULT_GUARD_MAX),
            max_percent: Some(DEFAULT_GUARD_PERCENT),
            window_minutes: DEFAULT_WINDOW_MINUTES,
        }
    }
}

/// What a target without the field gets: the default guard.
pub(super) fn default_guard() -> Option<DeprovisionGuard> {
    Some(DeprovisionGuard::default())
}

impl DeprovisionGuard {
    /// Deprovisions allowed in one window, given the accounts linked on the target.
    pub fn allowance(&self, linked: u64) -> u64 {
        let by_share = self
            .max_percent
            .map(|p| linked.saturating_mul(u64::from(p)) / 100);
        match (self.max, by_share) {
            (Some(m), Some(s)) => m.max(s),
            (Some(m), None) => m,
            (None, Some(s)) => s,
            (None, None) => u64::MAX,
        }
    }

    /// Whether the allowance depends on the linked accounts (they are counted then).
    pub fn needs_linked(&self) -> bool {
        self.max_percent.is_some()
    }

    pub fn window_secs(&self) -> i64 {
        i64::from(self.window_minutes) * 60
    }

    pub(super) fn validate(&self) -> Result<(), ValidationError> {
        if self.max.is_none() && self.max_percent.is_none() {
            return Err(invalid(
                "deprovision_guard",
                "deprovision_guard needs max, max_percent or both (null turns the guard off)",
            ));
        }
        if self.max_percent.is_some_and(|p| p > 100) {
            return Err(invalid(
                "deprovision_guard.max_percent",
                "deprovision_guard.max_percent is a percentage: 0 to 100",
            ));
        }
        if self.window_minutes == 0 || self.window_minutes > MAX_WINDOW_MINUTES {
            return Err(invalid(
                "deprovision_guard.window_minutes",
                format!("deprovision_guard.window_minutes must be 1 to {MAX_WINDOW_MINUTES}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_is_the_larger_of_count_and_share() {
        let g = DeprovisionGuard::default();
        assert_eq!(g.allowance(5), 10, "the floor keeps small targets usable");
        assert_eq!(g.allowance(1000), 200);
        let only_max = DeprovisionGuard {
            max: Some(3),
            max_percent: None,
            window_minutes: 60,
        };
        assert_eq!(only_max.allowance(1000), 3);
        let only_share = DeprovisionGuard {
            max: None,
            max_percent: Some(50),
            window_minutes: 60,
        };
        assert_eq!(only_share.allowance(9), 4);
    }

    #[test]
    fn validation() {
        assert!(DeprovisionGuard::default().validate().is_ok());
        let g = DeprovisionGuard {
            max_percent: Some(101),
            ..Default::default()
        };
        assert!(g.validate().is_err());
        let g = DeprovisionGuard {
            max: None,
            max_percent: None,
            window_minutes: 60,
        };
        assert!(g.validate().is_err());
        let g = DeprovisionGuard {
            window_minutes: 0,
            ..Default::default()
        };
        assert!(g.validate().is_err());
    }
}
