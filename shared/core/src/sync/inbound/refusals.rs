//! Refusals are audited, but not one entry per request: anyone who knows a source's id
//! can send it badly signed requests, and each audit entry is a store write kept for 90
//! days. In each window ([`REFUSAL_WINDOW`]) the first refusal of a source for a reason is
//! recorded; the ones after it are counted (and logged), and the count goes into the next
//! entry recorded for that reason. A source keeps at most [`MAX_REASONS_PER_SOURCE`]
//! reasons at once (more fall under one catch-all), so the writes of a flood are bounded
//! by the number of sources the operator defined, per window, per process.
//!
//! The state is in memory, per process (each Lambda instance counts its own): bounding
//! the writes must not itself cost a write per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One audit entry per source and reason per minute.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// Distinct reasons tracked per source; the rest share one slot.
pub const MAX_REASONS_PER_SOURCE: usize = 16;
/// The slot of the reasons past [`MAX_REASONS_PER_SOURCE`].
const OTHER_REASONS: &str = "(other reasons)";

/// Whether to record a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write the audit entry; `suppressed` refusals like it were counted since the last
    /// one recorded.
    Record { suppressed: u64 },
    /// Counted, not recorded.
    Suppress,
}

struct Slot {
    opened: Instant,
    suppressed: u64,
}

/// The per-process record of which refusals were audited recently.
pub struct RefusalGate {
    window: Duration,
    /// source id -> reason -> slot.
    slots: Mutex<HashMap<String, HashMap<String, Slot>>>,
}

impl RefusalGate {
    pub fn new(window: Duration) -> Self {
        RefusalGate {
            window,
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Decides for one refusal of `source` for `reason` (the audit detail: refusals with
    /// the same text are "like it").
    pub fn admit(&self, source: &str, reason: &str) -> Admit {
        self.admit_at(source, reason, Instant::now())
    }

    fn admit_at(&self, source: &str, reason: &str, now: Instant) -> Admit {
        let window = self.window;
        let mut all = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Windows that ended: their counts are logged (a line, not a write) and dropped.
        // Sources are the operator's (an unknown source id is never audited), so the map
        // stays as small as the list of sources.
        for (src, reasons) in all.iter_mut() {
            reasons.retain(|r, slot| {
                let open = now.duration_since(slot.opened) < window;
                if !open && slot.suppressed > 0 && (src != source || r != reason) {
                    tracing::warn!(source = %src, reason = %r, count = slot.suppressed, window_secs = window.as_secs(), "webhook refusals counted, not audited one by one");
                }
                open || (src == source && r == reason)
            });
        }
        all.retain(|_, reasons| !reasons.is_empty());
        let reasons = all.entry(source.to_string()).or_default();
        let key = if reasons.contains_key(reason) || reasons.len() < MAX_REASONS_PER_SOURCE {
            reason
        } else {
            OTHER_REASONS
        };
        match reasons.get_mut(key) {
            Some(slot) if now.duration_since(slot.opened) < window => {
                slot.suppressed += 1;
                if slot.suppressed == 1 {
                    tracing::warn!(source = %source, reason = %key, window_secs = window.as_secs(), "repeated webhook refusals: counted, not audited, until the window ends");
                }
                Admit::Suppress
            }
            Some(slot) => {
                let suppressed = slot.suppressed;
                *slot = Slot {
                    opened: now,
                    suppressed: 0,
                };
                Admit::Record { suppressed }
            }
            None => {
                reasons.insert(
                    key.to_string(),
                    Slot {
                        opened: now,
                        suppressed: 0,
                    },
                );
                Admit::Record { suppressed: 0 }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_per_source_and_reason_per_window() {
        let gate = RefusalGate::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(
            gate.admit_at("a", "bad sig", at(0)),
            Admit::Record { suppressed: 0 }
        );
        for s in 1..50 {
            assert_eq!(gate.admit_at("a", "bad sig", at(s)), Admit::Suppress);
        }
        // Another reason, another source: their own first entries.
        assert_eq!(
            gate.admit_at("a", "window", at(10)),
            Admit::Record { suppressed: 0 }
        );
        assert_eq!(
            gate.admit_at("b", "bad sig", at(10)),
            Admit::Record { suppressed: 0 }
        );
        // The next window's first entry carries the count.
        assert_eq!(
            gate.admit_at("a", "bad sig", at(61)),
            Admit::Record { suppressed: 49 }
        );
        assert_eq!(gate.admit_at("a", "bad sig", at(62)), Admit::Suppress);
    }

    #[test]
    fn reasons_per_source_are_bounded() {
        let gate = RefusalGate::new(Duration::from_secs(60));
        let now = Instant::now();
        let recorded = (0..1000)
            .filter(|i| {
                matches!(
                    gate.admit_at("a", &format!("field `f{i}` not allowed"), now),
                    Admit::Record { .. }
                )
            })
            .count();
        assert_eq!(recorded, MAX_REASONS_PER_SOURCE + 1);
        let slots = gate.slots.lock().unwrap();
        assert_eq!(slots["a"].len(), MAX_REASONS_PER_SOURCE + 1);
    }
}
