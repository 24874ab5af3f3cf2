//! CloudWatch metrics as Embedded Metric Format (EMF) lines: a JSON object per line on
//! stdout, which CloudWatch Logs turns into metrics of the namespace [`NAMESPACE`] without
//! any log parsing or `PutMetricData` call (and so no extra right, latency or cost in the
//! function). Format: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>.
//!
//! The lines are made at the edge from what the engine reports: one line per delivery
//! outcome on a target (from the audit entry the delivery engine records, see
//! [`delivery_line`]), one per `queue-deliver` batch ([`BatchStats`]), and from a
//! scheduled cycle's report ([`schedule_lines`]).
//!
//! | metric | dimensions | unit | from |
//! | --- | --- | --- | --- |
//! | `Delivered`, `Retried`, `Failed`, `Dead`, `Skipped` | `Target` | Count | each delivery outcome |
//! | `DeliveryLatency` | `Target` | Milliseconds | each delivery outcome that called the target |
//! | `Records`, `NotAttempted`, `CutAtDeadline`, `Resent`, `BatchFailures` | `Function` | Count | each `queue-deliver` batch |
//! | `ReconcileChecked`, `ReconcileCreated`, `ReconcileUpdated`, `ReconcileDeactivated`, `ReconcileDeleted`, `ReconcileOrphaned`, `ReconcileFailed` | `Target` | Count | a reconcile run that ended (complete or failed) |
//! | `ReconcileSuspended`, `ReconcileBusy`, `ReconcileError` | `Target` | Count | a cycle that left the run unfinished |
//! | `PullFetched`, `PullCreated`, `PullUpdated`, `PullFailed`, `PullError` | `Source` | Count | each pulled source |
//! | `DeadLetters`, `OutboxResent`, `OutboxIncomplete` | `Function` | Count | each scheduled cycle |

use std::sync::{Arc, Mutex};

use provisync_core::sync::audit::{AuditEntry, AuditStatus};
use provisync_core::sync::reconcile::RunState;
use provisync_core::sync::schedule::CycleReport;
use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every Provisync metric.
pub const NAMESPACE: &str = "Provisync";

/// Every metric name the hub emits (the dashboard in `infra/template.yaml` may show only
/// these; a test checks it).
pub const ALL_METRICS: &[&str] = &[
    "Delivered",
    "Retried",
    "Failed",
    "Dead",
    "Skipped",
    "DeliveryLatency",
    "Records",
    "NotAttempted",
    "CutAtDeadline",
    "Resent",
    "BatchFailures",
    "ReconcileChecked",
    "ReconcileCreated",
    "ReconcileUpdated",
    "ReconcileDeactivated",
    "ReconcileDeleted",
    "ReconcileOrphaned",
    "ReconcileFailed",
    "ReconcileError",
    "ReconcileSuspended",
    "ReconcileBusy",
    "PullFetched",
    "PullCreated",
    "PullUpdated",
    "PullFailed",
    "PullError",
    "DeadLetters",
    "OutboxResent",
    "OutboxIncomplete",
];

/// A metric's unit (the EMF names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF document: a set of dimensions and the values measured under them.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricLine {
    pub dimensions: Vec<(&'static str, String)>,
    pub values: Vec<(&'static str, u64, Unit)>,
}

impl MetricLine {
    pub fn new(dimension: &'static str, value: impl Into<String>) -> Self {
        MetricLine {
            dimensions: vec![(dimension, value.into())],
            values: Vec::new(),
        }
    }

    pub fn count(mut self, name: &'static str, n: u64) -> Self {
        self.values.push((name, n, Unit::Count));
        self
    }

    pub fn millis(mut self, name: &'static str, ms: u64) -> Self {
        self.values.push((name, ms, Unit::Milliseconds));
        self
    }

    /// The EMF JSON object (one line), stamped `timestamp_ms` (epoch milliseconds).
    pub fn to_json(&self, timestamp_ms: u64) -> String {
        let mut doc = Map::new();
        let dimension_names: Vec<&str> = self.dimensions.iter().map(|(k, _)| *k).collect();
        let metrics: Vec<Value> = self
            .values
            .iter()
            .map(|(name, _, unit)| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [dimension_names],
                    "Metrics": metrics,
                }],
            }),
        );
        for (k, v) in &self.dimensions {
            doc.insert((*k).into(), Value::String(v.clone()));
        }
        for (name, n, _) in &self.values {
            doc.insert((*name).into(), json!(n));
        }
        Value::Object(doc).to_string()
    }
}

/// Where EMF lines go: stdout in Lambda (CloudWatch Logs reads them there), a list in
/// tests. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    sink: Arc<dyn Fn(String) + Send + Sync>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// One line per document on stdout (`println!` writes the whole line under the
    /// stdout lock, so lines from concurrent tasks and the JSON logs never interleave).
    pub fn stdout() -> Self {
        Metrics {
            sink: Arc::new(|line: String| println!("{line}")),
        }
    }

    /// Lines kept in memory (tests), with the list they go to.
    pub fn collecting() -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        (
            Metrics {
                sink: Arc::new(move |line: String| {
                    sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }),
            },
            lines,
        )
    }

    pub fn emit(&self, line: &MetricLine) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (self.sink)(line.to_json(now));
    }
}

/// The metric of a delivery outcome on one target, from the audit entry the delivery
/// engine records for it; `None` for entries that are not delivery outcomes.
pub fn delivery_line(entry: &AuditEntry) -> Option<MetricLine> {
    let name = match entry.status {
        AuditStatus::Delivered | AuditStatus::Linked => "Delivered",
        AuditStatus::Retry => "Retried",
        AuditStatus::Refused | AuditStatus::Failed => "Failed",
        AuditStatus::Dead => "Dead",
        AuditStatus::Skipped | AuditStatus::SkippedStale | AuditStatus::Unlinked => "Skipped",
        // Held by the deprovision guard, waiting for an operator.
        AuditStatus::Held => "Held",
        AuditStatus::Queued => return None,
    };
    if entry.target.is_empty() {
        return None;
    }
    let mut line = MetricLine::new("Target", entry.target.clone()).count(name, 1);
    // A skip never called the target: its latency would drag the percentiles down.
    if !matches!(
        entry.status,
        AuditStatus::Skipped
            | AuditStatus::SkippedStale
            | AuditStatus::Unlinked
            | AuditStatus::Held
    ) {
        line = line.millis("DeliveryLatency", entry.latency_ms);
    }
    Some(line)
}

/// What one `queue-deliver` batch did with its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Records in the batch.
    pub records: u64,
    /// Records left untouched because the invocation's time ran out.
    pub not_attempted: u64,
    /// Records whose delivery was stopped at the deadline.
    pub cut_at_deadline: u64,
    /// Never-attempted records sent again as fresh messages (their receive count had
    /// reached the dead-letter threshold).
    pub resent: u64,
    /// Records reported as batch item failures.
    pub failures: u64,
}

impl BatchStats {
    pub fn line(&self, function: &str) -> MetricLine {
        MetricLine::new("Function", function)
            .count("Records", self.records)
            .count("NotAttempted", self.not_attempted)
            .count("CutAtDeadline", self.cut_at_deadline)
            .count("Resent", self.resent)
            .count("BatchFailures", self.failures)
    }
}

/// The metrics of one scheduled cycle: reconcile counts per target, pull counts per
/// source, and the cycle's dead letters and outbox sweep.
///
/// A reconcile run's counts cover the whole run (a run suspended at a cycle's deadline
/// continues in the next), so they are emitted once, when the run ends (complete or
/// failed); a cycle that leaves it unfinished counts `ReconcileSuspended` or
/// `ReconcileBusy`.
pub fn schedule_lines(function: &str, report: &CycleReport) -> Vec<MetricLine> {
    let mut lines = Vec::new();
    for r in &report.reconciled {
        let line = MetricLine::new("Target", r.target.clone());
        let c = &r.counts;
        let line = match r.state {
            RunState::Complete
            | RunState::CompleteWithFailures
            | RunState::Pending
            | RunState::Failed => {
                let line = line
                    .count("ReconcileChecked", c.checked + c.groups.checked)
                    .count("ReconcileCreated", c.created + c.groups.created)
                    .count("ReconcileUpdated", c.updated + c.groups.updated)
                    .count("ReconcileDeactivated", c.deactivated)
                    .count("ReconcileDeleted", c.deleted + c.groups.deleted)
                    .count("ReconcileOrphaned", c.orphaned + c.groups.orphaned)
                    .count(
                        "ReconcileFailed",
                        c.failed + c.refused + c.groups.failed + c.groups.refused,
                    );
                match r.state {
                    RunState::Failed => line.count("ReconcileError", 1),
                    // The target refused or failed some of what the run sent.
                    RunState::CompleteWithFailures => line.count("ReconcileWithFailures", 1),
                    // Outcomes still queued: counted by the schedule when it settles them.
                    RunState::Pending => line.count("ReconcilePending", 1),
                    _ => line,
                }
            }
            RunState::Suspended => line.count("ReconcileSuspended", 1),
            RunState::Busy => line.count("ReconcileBusy", 1),
            RunState::Unsupported => continue,
        };
        lines.push(line);
    }
    for p in &report.pulled {
        let mut line = MetricLine::new("Source", p.source.clone())
            .count("PullFetched", p.users.fetched + p.groups.fetched)
            .count("PullCreated", p.users.created + p.groups.created)
            .count("PullUpdated", p.users.updated + p.groups.updated)
            .count("PullFailed", p.users.failed + p.groups.failed);
        if p.error.is_some() {
            line = line.count("PullError", 1);
        }
        lines.push(line);
    }
    lines.push(
        MetricLine::new("Function", function)
            .count("DeadLetters", report.dead_letters as u64)
            .count("OutboxResent", report.outbox_resent as u64)
            .count("OutboxIncomplete", u64::from(!report.outbox_complete)),
    );
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use provisync_core::sync::audit::AuditOp;
    use provisync_core::sync::pull::PullReport;
    use provisync_core::sync::reconcile::{ReconcileCounts, ReconcileReport};

    fn parse(line: &MetricLine) -> Value {
        serde_json::from_str(&line.to_json(1_700_000_000_123)).unwrap()
    }

    /// The shape CloudWatch requires: `_aws.Timestamp` (epoch ms), one directive with the
    /// namespace, the dimension set and each metric's name and unit; the dimension values
    /// and the metric values at the top level (values numbers, dimensions strings).
    fn assert_emf(doc: &Value) {
        let aws = &doc["_aws"];
        assert!(
            aws["Timestamp"]
                .as_u64()
                .is_some_and(|t| t > 1_600_000_000_000)
        );
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let d = &directives[0];
        assert_eq!(d["Namespace"], NAMESPACE);
        for set in d["Dimensions"].as_array().unwrap() {
            for name in set.as_array().unwrap() {
                assert!(doc[name.as_str().unwrap()].is_string(), "dimension {name}");
            }
        }
        let metrics = d["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        for m in metrics {
            let name = m["Name"].as_str().unwrap();
            assert!(ALL_METRICS.contains(&name), "{name} is not in ALL_METRICS");
            assert!(["Count", "Milliseconds"].contains(&m["Unit"].as_str().unwrap()));
            assert!(doc[name].is_u64(), "{name} has no numeric value");
        }
    }

    fn entry(status: AuditStatus, ms: u64) -> AuditEntry {
        AuditEntry::new("crm", AuditOp::Create, status).latency_ms(ms)
    }

    #[test]
    fn a_delivery_outcome_is_one_emf_line_per_target() {
        let doc = parse(&delivery_line(&entry(AuditStatus::Delivered, 42)).unwrap());
        assert_emf(&doc);
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_123u64);
        assert_eq!(doc["Target"], "crm");
        assert_eq!(doc["Delivered"], 1);
        assert_eq!(doc["DeliveryLatency"], 42);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Target"]])
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "Delivered", "Unit": "Count"}, {"Name": "DeliveryLatency", "Unit": "Milliseconds"}])
        );
        for (status, name) in [
            (AuditStatus::Linked, "Delivered"),
            (AuditStatus::Retry, "Retried"),
            (AuditStatus::Refused, "Failed"),
            (AuditStatus::Failed, "Failed"),
            (AuditStatus::Dead, "Dead"),
        ] {
            let doc = parse(&delivery_line(&entry(status, 7)).unwrap());
            assert_emf(&doc);
            assert_eq!(doc[name], 1, "{status:?}");
        }
        // A skip says so, without a latency (nothing was called).
        let doc = parse(&delivery_line(&entry(AuditStatus::Skipped, 0)).unwrap());
        assert_emf(&doc);
        assert_eq!(doc["Skipped"], 1);
        assert!(doc.get("DeliveryLatency").is_none());
        // Not delivery outcomes.
        assert!(delivery_line(&entry(AuditStatus::Queued, 0)).is_none());
        assert!(
            delivery_line(&AuditEntry::new(
                "",
                AuditOp::Create,
                AuditStatus::Delivered
            ))
            .is_none()
        );
    }

    #[test]
    fn a_batch_is_one_line() {
        let stats = BatchStats {
            records: 10,
            not_attempted: 6,
            cut_at_deadline: 1,
            resent: 2,
            failures: 5,
        };
        let doc = parse(&stats.line("queue-deliver"));
        assert_emf(&doc);
        assert_eq!(doc["Function"], "queue-deliver");
        assert_eq!(
            (
                doc["Records"].as_u64(),
                doc["NotAttempted"].as_u64(),
                doc["CutAtDeadline"].as_u64(),
                doc["Resent"].as_u64(),
                doc["BatchFailures"].as_u64()
            ),
            (Some(10), Some(6), Some(1), Some(2), Some(5))
        );
    }

    #[test]
    fn a_cycle_reports_each_target_each_source_and_itself() {
        let mut counts = ReconcileCounts {
            checked: 10,
            created: 2,
            updated: 1,
            ..Default::default()
        };
        counts.groups.created = 1;
        let report = |target: &str, state| ReconcileReport {
            target: target.into(),
            state,
            counts: counts.clone(),
            resumed: false,
            pages: 1,
            error: None,
            run: None,
            problems: Vec::new(),
        };
        let cycle = CycleReport {
            pulled: vec![PullReport {
                source: "idp".into(),
                ..Default::default()
            }],
            reconciled: vec![
                report("crm", RunState::Complete),
                report("big", RunState::Suspended),
                report("other", RunState::Busy),
                report("hook", RunState::Unsupported),
            ],
            dead_letters: 3,
            outbox_resent: 1,
            outbox_complete: false,
            ..Default::default()
        };
        let docs: Vec<Value> = schedule_lines("scheduled-sync", &cycle)
            .iter()
            .map(parse)
            .collect();
        docs.iter().for_each(assert_emf);
        assert_eq!(docs.len(), 5, "{docs:?}");
        assert_eq!(docs[0]["Target"], "crm");
        assert_eq!(docs[0]["ReconcileCreated"], 3);
        assert_eq!(docs[0]["ReconcileChecked"], 10);
        // A suspended run's counts are not final: emitted when it ends.
        assert_eq!(docs[1]["ReconcileSuspended"], 1);
        assert!(docs[1].get("ReconcileCreated").is_none());
        assert_eq!(docs[2]["ReconcileBusy"], 1);
        assert_eq!(docs[3]["Source"], "idp");
        assert_eq!(docs[4]["DeadLetters"], 3);
        assert_eq!(docs[4]["OutboxIncomplete"], 1);
    }

    #[test]
    fn collected_lines_are_json() {
        let (m, lines) = Metrics::collecting();
        m.emit(&MetricLine::new("Target", "a").count("Delivered", 1));
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains('\n'));
        assert_emf(&serde_json::from_str(&lines[0]).unwrap());
    }
}
