//! A delivery's time for member calls on one target, and the members it left for
//! follow-up events (`deliver_members.rs` does the calls).

use std::time::Duration;

// Tokio's clock (the real one outside tests): paused time runs the budget in the tests.
use tokio::time::Instant;

use crate::event::{ChangeEvent, ChangeOp};
use provisync_scim::ResourceKind;

/// How long one delivery to one target works at a group's members before it leaves the
/// rest to follow-up events: well inside the 25 s a `queue-deliver` record always has
/// (started with a call's 30 s timeout left, stopped 5 s before the deadline), and short
/// enough that a store queue's visibility timeout never hands the message out again
/// while it runs. The first call always goes: every delivery makes progress.
pub const MEMBER_WORK: Duration = Duration::from_secs(10);

/// Members one follow-up event names at most: about as many as one of the hub's own
/// membership events (one store transaction's member writes), a few KB, far inside the
/// queue's and the store's item limits (10,000 left would be 400 KB in one).
const MEMBERS_PER_EVENT: usize = 100;

/// A hub id and the id of the same user or group on the target.
pub(super) type OnTarget = (String, String);

/// One delivery's time for member calls on one target, and the members it left for
/// follow-up events.
pub(super) struct MemberWork {
    until: Instant,
    left: Vec<Left>,
}

/// Members of one hub group a delivery did not reach.
struct Left {
    group: String,
    added: Vec<String>,
    removed: Vec<String>,
    /// The removals were admitted by the deprovision guard and journaled whole: the
    /// follow-up neither counts them against it again nor journals them twice.
    admitted: bool,
}

impl MemberWork {
    /// `budget` from now.
    pub(super) fn new(budget: Duration) -> Self {
        MemberWork {
            until: Instant::now() + budget,
            left: Vec::new(),
        }
    }

    pub(super) fn spent(&self) -> bool {
        Instant::now() >= self.until
    }

    pub(super) fn leave(
        &mut self,
        group: &str,
        added: Vec<String>,
        removed: Vec<String>,
        admitted: bool,
    ) {
        if added.is_empty() && removed.is_empty() {
            return;
        }
        self.left.push(Left {
            group: group.to_string(),
            added,
            removed,
            admitted,
        });
    }

    /// The follow-up events for what was left, for `target` only: members-only updates
    /// of each group (no state: its attributes went with `event`), naming at most
    /// [`MEMBERS_PER_EVENT`] members to look at each. Part of `event`'s run, which waits
    /// for them as it does for `event` (`runs::outcome_write` lists them).
    pub(super) fn follow_ups(&self, event: &ChangeEvent, target: &str) -> Vec<ChangeEvent> {
        let mut out = Vec::new();
        // One batch per delivery: a run records the batch and its size, not every id.
        let batch = uuid::Uuid::now_v7().simple().to_string();
        for l in &self.left {
            let names: Vec<(bool, &String)> = l
                .added
                .iter()
                .map(|m| (true, m))
                .chain(l.removed.iter().map(|m| (false, m)))
                .collect();
            for names in names.chunks(MEMBERS_PER_EVENT) {
                let mut e = ChangeEvent::new(
                    ResourceKind::Group,
                    &l.group,
                    ChangeOp::Update,
                    event.origin.clone(),
                );
                if l.group == event.resource_id && event.resource_type == ResourceKind::Group {
                    e.version = event.version;
                }
                for (add, m) in names {
                    if *add {
                        e.members_added.push((*m).clone());
                    } else {
                        e.members_removed.push((*m).clone());
                    }
                }
                e.only_targets = vec![target.to_string()];
                e.approved = event.approved;
                e.removals_admitted = l.admitted && !e.members_removed.is_empty();
                e.follow_up_of = Some(batch.clone());
                e.run = event.run.clone();
                out.push(e);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;

    fn ids(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn follow_ups_name_at_most_100_members_each() {
        let mut event = ChangeEvent::new(ResourceKind::Group, "g", ChangeOp::Create, Origin::Scim);
        event.version = 7;
        event.run = Some("run-1".into());
        let mut work = MemberWork::new(Duration::ZERO);
        assert!(work.spent());
        work.leave("g", ids("a", 250), ids("r", 30), true);
        // Nothing left: no event.
        work.leave("empty", vec![], vec![], false);
        // A group a new user did not join yet.
        work.leave("other", vec!["u".into()], vec![], false);
        let out = work.follow_ups(&event, "t");
        let left: usize = out
            .iter()
            .map(|e| e.members_added.len() + e.members_removed.len())
            .sum();
        assert_eq!(left, 281);
        let shape: Vec<(&str, usize, usize, bool, u64)> = out
            .iter()
            .map(|e| {
                (
                    e.resource_id.as_str(),
                    e.members_added.len(),
                    e.members_removed.len(),
                    e.removals_admitted,
                    e.version,
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("g", 100, 0, false, 7),
                ("g", 100, 0, false, 7),
                ("g", 50, 30, true, 7),
                ("other", 1, 0, false, 0),
            ]
        );
        for e in &out {
            assert_eq!(e.resource_type, ResourceKind::Group);
            assert_eq!(e.op, ChangeOp::Update);
            assert!(e.resource.is_none(), "members only");
            assert_eq!(e.only_targets, vec!["t".to_string()]);
            assert_eq!(e.run.as_deref(), Some("run-1"), "the run waits for them");
            assert_eq!(e.follow_up_of, out[0].follow_up_of, "one batch");
            assert!(e.follow_up_of.is_some());
            assert_ne!(e.id, event.id);
        }
        let mut named: Vec<&String> = out
            .iter()
            .filter(|e| e.resource_id == "g")
            .flat_map(|e| e.members_added.iter().chain(&e.members_removed))
            .collect();
        named.sort();
        named.dedup();
        assert_eq!(named.len(), 280, "each member named once");
    }
}
