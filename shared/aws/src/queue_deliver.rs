//! `queue-deliver`: an SQS FIFO batch through the delivery engine, inside the
//! invocation's time, with partial batch failures (`ReportBatchItemFailures`).
//!
//! Each record is delivered by the same per-message code as the local consumer
//! ([`handle_delivery`]). What the Lambda adds:
//!
//! - **Group order.** A message group's records go one after another, and the batch's
//!   groups side by side ([`run_batch`]). Once a record of a group failed, the later
//!   records of that group in the batch are not attempted and are reported failed with
//!   the same retry delay, so the group comes back together and in order.
//! - **The deadline.** A record is started only while at least
//!   [`DeadlinePolicy::start_margin`] is left (one connector call's timeout), and its
//!   delivery is stopped [`DeadlinePolicy::finish_margin`] before the invocation's deadline
//!   (then retried with the usual backoff), so the function always answers with its
//!   partial batch response instead of being killed with the whole batch.
//! - **No march to the dead-letter queue for records never tried.** SQS counts receives,
//!   not attempts, and a receive cannot be undone. So: records are taken in order of
//!   their group's highest receive count (most-received first; order within a group
//!   kept), records left untried because time ran out are made visible again at once
//!   (`ChangeMessageVisibility` 0: no backoff), and a record left untried whose receive
//!   count has reached the dead-letter threshold (its next receive would dead-letter it)
//!   is sent again as a fresh message (same group and body, new deduplication id, receive
//!   count 1), with the untried records after it in its group, in order; the originals
//!   are then not reported failed, so Lambda deletes them. The copies go to the end of
//!   their group: a message of that group already waiting in the queue (not in this
//!   batch) is delivered before them, exactly as after a dead-letter redrive.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use tokio::time::Instant;

use crate::metrics::{BatchStats, Metrics, delivery_line};
use provisync_core::connector::http::DEFAULT_REQUEST_TIMEOUT;
use provisync_core::queue::{Delivery, OutMessage, Queue};
use provisync_core::sync::audit::Audit;
use provisync_core::sync::consumer::{Disposition, handle_delivery};
use provisync_core::sync::deliver::{Deliverer, backoff};

/// How close to the invocation's deadline `queue-deliver` still works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlinePolicy {
    /// A record is started only while at least this much time is left.
    pub start_margin: Duration,
    /// A record's delivery is stopped this long before the deadline, leaving time for
    /// the visibility changes, resends and the response.
    pub finish_margin: Duration,
}

impl DeadlinePolicy {
    /// Start a record only with one whole connector call's timeout left; stop 5 s before
    /// the deadline. With `queue-deliver`'s 60 s timeout a record can always make one full
    /// call (the template test checks `start + finish <= timeout`).
    pub const DEFAULT: DeadlinePolicy = DeadlinePolicy {
        start_margin: DEFAULT_REQUEST_TIMEOUT,
        finish_margin: Duration::from_secs(5),
    };
}

impl Default for DeadlinePolicy {
    fn default() -> Self {
        DeadlinePolicy::DEFAULT
    }
}

/// An SQS record as a queue [`Delivery`] (the same type the local consumer handles).
pub fn delivery_from_record(r: &SqsMessage) -> Delivery {
    let attr = |k: &str| r.attributes.get(k).cloned().unwrap_or_default();
    Delivery {
        receipt: r.receipt_handle.clone().unwrap_or_default(),
        body: r.body.clone().unwrap_or_default(),
        group_id: attr("MessageGroupId"),
        dedup_id: attr("MessageDeduplicationId"),
        receive_count: r
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
    }
}

/// What became of one record of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Delivered (or nothing to do): Lambda deletes it.
    Done,
    /// Attempted and failed: retry after this delay.
    Retry(Duration),
    /// Attempted, and stopped at the deadline: retry after this delay.
    Cut(Duration),
    /// Not attempted: an earlier record of its group failed (retry with that delay).
    BehindFailure(Duration),
    /// Not attempted: the invocation's time ran out.
    OutOfTime,
}

impl RecordOutcome {
    fn attempted(&self) -> bool {
        matches!(
            self,
            RecordOutcome::Done | RecordOutcome::Retry(_) | RecordOutcome::Cut(_)
        )
    }
}

/// The records of a batch in the order they are taken: the groups whose records were
/// received most often first, each group's records in their order (a stable sort, so
/// FIFO order within a group holds; records without a group stand alone).
pub fn take_order(records: &[SqsMessage]) -> Vec<usize> {
    let deliveries: Vec<Delivery> = records.iter().map(delivery_from_record).collect();
    let mut most: HashMap<&str, u32> = HashMap::new();
    for d in &deliveries {
        if !d.group_id.is_empty() {
            let m = most.entry(d.group_id.as_str()).or_default();
            *m = (*m).max(d.receive_count);
        }
    }
    let rank = |d: &Delivery| match d.group_id.as_str() {
        "" => d.receive_count,
        g => most.get(g).copied().unwrap_or(d.receive_count),
    };
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(rank(&deliveries[i])));
    order
}

/// Runs `attempt` on the records within `deadline` (none: no limit) and says what became
/// of each (indexed like `records`). `attempt` returns the retry delay of a record that
/// failed, `None` when it is done.
///
/// Each message group's records go one after another, in their order, and the groups at
/// once (in [`take_order`]; a record without a group alone): a call waiting at one
/// target, for its pace or its answer, does not hold back the other groups' records,
/// and the target's window (`sync::pace`) sees the batch's calls together. Before, the
/// records went one after another: one call in flight per invocation, and a record
/// waiting for a slow target's turn held the whole batch.
pub async fn run_batch<F, Fut>(
    records: &[SqsMessage],
    deadline: Option<Instant>,
    policy: DeadlinePolicy,
    attempt: F,
) -> Vec<RecordOutcome>
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = Option<Duration>>,
{
    let mut chains: Vec<Vec<usize>> = Vec::new();
    let mut of_group: HashMap<String, usize> = HashMap::new();
    for i in take_order(records) {
        let group = delivery_from_record(&records[i]).group_id;
        if group.is_empty() {
            chains.push(vec![i]);
        } else if let Some(&c) = of_group.get(&group) {
            chains[c].push(i);
        } else {
            of_group.insert(group, chains.len());
            chains.push(vec![i]);
        }
    }
    let attempt = &attempt;
    let runs = chains
        .into_iter()
        .map(|chain| run_group(records, chain, deadline, policy, attempt));
    let mut outcomes = vec![RecordOutcome::OutOfTime; records.len()];
    for (i, outcome) in futures::future::join_all(runs).await.into_iter().flatten() {
        outcomes[i] = outcome;
    }
    outcomes
}

/// One message group's records of a batch (`chain`, indexes into `records`, in order):
/// once one fails, the later ones are not attempted.
async fn run_group<F, Fut>(
    records: &[SqsMessage],
    chain: Vec<usize>,
    deadline: Option<Instant>,
    policy: DeadlinePolicy,
    attempt: &F,
) -> Vec<(usize, RecordOutcome)>
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = Option<Duration>>,
{
    let mut done = Vec::with_capacity(chain.len());
    let mut failed: Option<Duration> = None;
    for i in chain {
        let d = delivery_from_record(&records[i]);
        let id = records[i].message_id.clone().unwrap_or_default();
        if let Some(delay) = failed {
            tracing::info!(message_id = %id, group = %d.group_id, "not attempted: an earlier message of its group failed");
            done.push((i, RecordOutcome::BehindFailure(delay)));
            continue;
        }
        if let Some(deadline) = deadline
            && deadline.saturating_duration_since(Instant::now()) < policy.start_margin
        {
            tracing::info!(message_id = %id, group = %d.group_id, "not attempted: the invocation's time is nearly up");
            done.push((i, RecordOutcome::OutOfTime));
            continue;
        }
        let (group, receive_count) = (d.group_id.clone(), d.receive_count);
        let outcome = match deadline {
            None => attempt(d)
                .await
                .map_or(RecordOutcome::Done, RecordOutcome::Retry),
            Some(deadline) => {
                let stop = deadline
                    .checked_sub(policy.finish_margin)
                    .unwrap_or(deadline);
                match tokio::time::timeout_at(stop, attempt(d)).await {
                    Ok(r) => r.map_or(RecordOutcome::Done, RecordOutcome::Retry),
                    Err(_) => {
                        tracing::warn!(message_id = %id, group = %group, receive_count, "delivery stopped at the invocation's deadline: it will be retried");
                        RecordOutcome::Cut(backoff(receive_count, None))
                    }
                }
            }
        };
        if let RecordOutcome::Retry(delay) | RecordOutcome::Cut(delay) = outcome {
            tracing::warn!(message_id = %id, group = %group, receive_count, delay_ms = delay.as_millis() as u64, "delivery failed");
            if !group.is_empty() {
                failed = Some(delay);
            }
        }
        done.push((i, outcome));
    }
    done
}

/// The `queue-deliver` function's state: the delivery engine, the queue (for
/// `ChangeMessageVisibility` and resends), the dead-letter threshold, the deadline policy
/// and where metrics go.
pub struct QueueDeliver {
    deliverer: Arc<Deliverer>,
    queue: Arc<dyn Queue>,
    max_receives: u32,
    policy: DeadlinePolicy,
    metrics: Option<Metrics>,
}

/// Every delivery outcome the engine records (its audit entry) becomes a metric line
/// (`provisync_aws::metrics::delivery_line`).
pub fn observe_deliveries(audit: &Audit, metrics: Metrics) {
    if !audit.observe(Arc::new(move |entry| {
        if let Some(line) = delivery_line(entry) {
            metrics.emit(&line);
        }
    })) {
        tracing::warn!("the audit log has an observer already: delivery metrics not added");
    }
}

impl QueueDeliver {
    pub fn new(deliverer: Arc<Deliverer>, queue: Arc<dyn Queue>, max_receives: u32) -> Self {
        QueueDeliver {
            deliverer,
            queue,
            max_receives: max_receives.max(1),
            policy: DeadlinePolicy::DEFAULT,
            metrics: None,
        }
    }

    pub fn with_policy(mut self, policy: DeadlinePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Emit one metric line per batch ([`BatchStats`]).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Delivers an SQS batch within `deadline` (the invocation's; `None`: no limit) and
    /// returns the partial batch response (see the module documentation).
    pub async fn handle(
        &self,
        records: Vec<SqsMessage>,
        deadline: Option<Instant>,
    ) -> SqsBatchResponse {
        let outcomes = run_batch(&records, deadline, self.policy, |d| async move {
            match handle_delivery(&self.deliverer, &d, self.max_receives).await {
                Disposition::Ack => None,
                Disposition::RetryAfter(delay) => Some(delay),
            }
        })
        .await;
        let resent = self.resend_untried(&records, &outcomes).await;
        let mut stats = BatchStats {
            records: records.len() as u64,
            ..Default::default()
        };
        let mut response = SqsBatchResponse::default();
        for (i, (record, outcome)) in records.iter().zip(&outcomes).enumerate() {
            match outcome {
                RecordOutcome::Cut(_) => stats.cut_at_deadline += 1,
                RecordOutcome::OutOfTime => stats.not_attempted += 1,
                _ => {}
            }
            if resent.contains(&i) {
                stats.resent += 1;
                continue;
            }
            let delay = match outcome {
                RecordOutcome::Done => continue,
                RecordOutcome::Retry(delay)
                | RecordOutcome::Cut(delay)
                | RecordOutcome::BehindFailure(delay) => *delay,
                // Nothing was tried: back at once, no backoff.
                RecordOutcome::OutOfTime => Duration::ZERO,
            };
            self.retry_later(record.receipt_handle.as_deref().unwrap_or(""), delay)
                .await;
            // A failed record without a message id is reported with an empty identifier,
            // which makes Lambda retry the whole batch (the safe choice).
            response
                .batch_item_failures
                .push(failure(record.message_id.clone().unwrap_or_default()));
        }
        stats.failures = response.batch_item_failures.len() as u64;
        if let Some(m) = &self.metrics {
            m.emit(&stats.line("queue-deliver"));
        }
        response
    }

    /// Sends again, as fresh messages, the untried records whose next receive would
    /// dead-letter them, each with the untried records after it in its group (in order).
    /// Returns the indexes of the records resent (not to be reported failed).
    async fn resend_untried(
        &self,
        records: &[SqsMessage],
        outcomes: &[RecordOutcome],
    ) -> HashSet<usize> {
        let mut resent = HashSet::new();
        let deliveries: Vec<Delivery> = records.iter().map(delivery_from_record).collect();
        let at_threshold: HashSet<&str> = deliveries
            .iter()
            .zip(outcomes)
            .filter(|(d, o)| !o.attempted() && d.receive_count >= self.max_receives)
            .map(|(d, _)| d.group_id.as_str())
            .collect();
        if at_threshold.is_empty() {
            return resent;
        }
        // Per group (and each ungrouped record alone), the untried records in batch
        // order: always a tail of the group's records here, so sending them in this
        // order keeps the group's order.
        let mut plan: Vec<(usize, OutMessage)> = Vec::new();
        for (i, (d, o)) in deliveries.iter().zip(outcomes).enumerate() {
            let group_due = !d.group_id.is_empty() && at_threshold.contains(d.group_id.as_str());
            let alone_due = d.group_id.is_empty() && d.receive_count >= self.max_receives;
            if o.attempted() || !(group_due || alone_due) {
                continue;
            }
            plan.push((
                i,
                OutMessage::new(
                    d.group_id.clone(),
                    crate::sqs::resend_dedup_id(&d.dedup_id),
                    d.body.clone(),
                ),
            ));
        }
        let (indexes, messages): (Vec<usize>, Vec<OutMessage>) = plan.into_iter().unzip();
        if messages.is_empty() {
            return resent;
        }
        match self.queue.send(messages).await {
            Ok(()) => {
                tracing::info!(
                    messages = indexes.len(),
                    "resent untried messages at the dead-letter threshold as fresh messages"
                );
                resent.extend(indexes);
            }
            Err(e) => {
                tracing::error!(error = %e, messages = indexes.len(), "could not resend untried messages at the dead-letter threshold: SQS will dead-letter them on their next receive");
            }
        }
        resent
    }

    async fn retry_later(&self, receipt: &str, delay: Duration) {
        if receipt.is_empty() {
            return;
        }
        if let Err(e) = self.queue.retry_later(receipt, delay).await {
            // The queue's visibility timeout brings the message back anyway.
            tracing::warn!(error = %e, "could not change the message visibility");
        }
    }
}

fn failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsEvent;

    fn fixture(name: &str) -> Vec<SqsMessage> {
        let path = format!(
            "{}/../../tests/fixtures/aws/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str::<SqsEvent>(&text).unwrap().records
    }

    fn ids(
        records: &[SqsMessage],
        pick: impl Fn(&RecordOutcome) -> bool,
        outcomes: &[RecordOutcome],
    ) -> Vec<String> {
        records
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| pick(o))
            .map(|(r, _)| r.message_id.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn fifo_record_becomes_a_delivery() {
        let records = fixture("sqs-fifo-event.json");
        let d = delivery_from_record(&records[0]);
        assert_eq!(d.group_id, "1");
        assert_eq!(d.dedup_id, "1");
        assert_eq!(d.receive_count, 1);
        assert_eq!(d.body, "Test message.");
        assert!(d.receipt.starts_with("AQEB"));
    }

    #[tokio::test]
    async fn later_records_of_a_failed_group_are_not_attempted() {
        let records = fixture("sqs-fifo-batch.json");
        let handled = std::cell::RefCell::new(Vec::new());
        let outcomes = run_batch(&records, None, DeadlinePolicy::DEFAULT, |d| {
            handled.borrow_mut().push(d.dedup_id.clone());
            async move { (d.body == "FAIL").then_some(Duration::from_secs(3)) }
        })
        .await;
        // msg-3 (user-a) failed, so msg-5 (user-a) is not attempted; user-b is unaffected.
        // Each group in its order (the groups side by side).
        let mut handled = handled.into_inner();
        handled.sort();
        assert_eq!(handled, ["e1", "e2", "e3", "e4"]);
        assert_eq!(outcomes[2], RecordOutcome::Retry(Duration::from_secs(3)));
        assert_eq!(
            outcomes[4],
            RecordOutcome::BehindFailure(Duration::from_secs(3))
        );
        assert_eq!(
            ids(&records, |o| *o != RecordOutcome::Done, &outcomes),
            ["msg-3", "msg-5"]
        );
    }

    #[tokio::test]
    async fn standard_queue_records_fail_alone() {
        let mut records = fixture("sqs-standard-event.json");
        records.push(records[0].clone());
        records[1].message_id = Some("MessageID_2".into());
        let first = std::cell::Cell::new(true);
        let outcomes = run_batch(&records, None, DeadlinePolicy::DEFAULT, |_| {
            let fail = first.replace(false);
            async move { fail.then_some(Duration::ZERO) }
        })
        .await;
        assert_eq!(
            ids(&records, |o| *o != RecordOutcome::Done, &outcomes),
            ["MessageID_1"]
        );
    }

    #[test]
    fn groups_received_most_often_go_first_in_their_order() {
        let mut records = fixture("sqs-fifo-batch.json");
        // user-a: msg-1, msg-3, msg-5; user-b: msg-2, msg-4. user-b's later message has
        // been received 4 times: the whole group goes first, in its order.
        records[3]
            .attributes
            .insert("ApproximateReceiveCount".into(), "4".into());
        let order: Vec<String> = take_order(&records)
            .into_iter()
            .map(|i| records[i].message_id.clone().unwrap())
            .collect();
        assert_eq!(order, ["msg-2", "msg-4", "msg-1", "msg-3", "msg-5"]);
    }

    /// A target that hangs: the first record is stopped before the deadline (and retried
    /// with backoff), the others are not attempted (and retried at once), and the batch
    /// answers before the deadline.
    #[tokio::test(start_paused = true)]
    async fn the_deadline_stops_the_batch_in_time() {
        let records = fixture("sqs-fifo-batch.json");
        let start = Instant::now();
        let deadline = start + Duration::from_secs(60);
        let attempted = std::cell::RefCell::new(Vec::new());
        let outcomes = run_batch(&records, Some(deadline), DeadlinePolicy::DEFAULT, |d| {
            attempted.borrow_mut().push(d.dedup_id.clone());
            async move {
                // Hangs: never answers.
                std::future::pending::<()>().await;
                None
            }
        })
        .await;
        let answered = Instant::now();
        assert_eq!(
            answered - start,
            Duration::from_secs(55),
            "stopped 5 s before"
        );
        // Each group's first record started at once, side by side.
        assert_eq!(attempted.into_inner(), ["e1", "e2"]);
        // Both stopped; each group's later records wait behind its first with its delay.
        let (RecordOutcome::Cut(a), RecordOutcome::Cut(b)) = (&outcomes[0], &outcomes[1]) else {
            panic!("{outcomes:?}")
        };
        assert!(*a > Duration::ZERO && *b > Duration::ZERO);
        assert_eq!(
            outcomes[2..],
            [
                RecordOutcome::BehindFailure(*a),
                RecordOutcome::BehindFailure(*b),
                RecordOutcome::BehindFailure(*a)
            ]
        );
    }

    /// A slow (not hung) first record: the next ones run while one call's timeout is left.
    #[tokio::test(start_paused = true)]
    async fn records_start_while_a_calls_time_is_left() {
        let records = fixture("sqs-fifo-batch.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        let outcomes = run_batch(
            &records,
            Some(deadline),
            DeadlinePolicy::DEFAULT,
            |_| async {
                tokio::time::sleep(Duration::from_secs(16)).await;
                None
            },
        )
        .await;
        // The groups side by side, each in its order. user-a: msg-1 and msg-3 start at 0
        // and 16 s, msg-5 not at 32 s (28 s left, under a call's 30 s); user-b: msg-2
        // and msg-4 at 0 and 16 s. One after another, only two would have been done.
        assert_eq!(
            outcomes,
            [
                RecordOutcome::Done,
                RecordOutcome::Done,
                RecordOutcome::Done,
                RecordOutcome::Done,
                RecordOutcome::OutOfTime
            ]
        );
    }
}
