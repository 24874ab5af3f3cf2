//! [`Queue`] on an SQS FIFO queue: `MessageGroupId` = group id (the resource id),
//! `MessageDeduplicationId` = dedup id (the change event id). The dead-letter queue is the
//! one named by the queue's `RedrivePolicy` (see `aws-init` and `infra/template.yaml`).
//!
//! `redrive` receives from the dead-letter queue and sends again (emulators lack
//! `StartMessageMoveTask`, and this keeps the group and order). A redriven message gets
//! the dedup id `<original>~r<random>`: the original id may still be inside the five-minute
//! deduplication window, where SQS would silently drop the resend.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    Message, MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use tokio::sync::OnceCell;

use provisync_core::queue::{
    DeadLetter, Delivery, MAX_VISIBILITY, MAX_WAIT, OutMessage, Queue, QueueError, SQS_BATCH_MAX,
};

const THROTTLE_CODES: &[&str] = &["ThrottlingException", "RequestThrottled", "Throttling"];
/// How long `dead_letters` hides what it peeks at (released right after).
const PEEK_VISIBILITY_SECS: i32 = 5;
/// How long `redrive` holds a dead letter while resending it.
const REDRIVE_VISIBILITY_SECS: i32 = 60;

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
    dlq_url: OnceCell<String>,
    /// The queue's visibility timeout, read once ([`Queue::lease`]).
    visibility: OnceCell<Duration>,
}

fn sqs_error<E, R>(op: &str, e: SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.code() {
        Some(c) if THROTTLE_CODES.contains(&c) => QueueError::Throttled,
        Some("ReceiptHandleIsInvalid") | Some("InvalidParameterValue")
            if op != "SendMessageBatch" =>
        {
            QueueError::InvalidReceipt
        }
        _ => QueueError::Unavailable(format!("{op}: {}", DisplayErrorContext(&e))),
    }
}

fn secs(d: Duration, max: Duration) -> i32 {
    // Round up so a sub-second wait still waits.
    let d = d.min(max);
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s).unwrap_or(i32::MAX)
}

fn attr(m: &Message, name: MessageSystemAttributeName) -> Option<&str> {
    m.attributes()
        .and_then(|a| a.get(&name))
        .map(String::as_str)
}

impl SqsQueue {
    /// `url`: the queue URL (see [`crate::queue_url`] to resolve a name).
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
            dlq_url: OnceCell::new(),
            visibility: OnceCell::new(),
        }
    }

    /// With a known dead-letter queue URL (skips the `RedrivePolicy` lookup).
    pub fn with_dlq_url(self, dlq_url: impl Into<String>) -> Self {
        SqsQueue {
            dlq_url: OnceCell::new_with(Some(dlq_url.into())),
            ..self
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn dlq(&self) -> Result<&str, QueueError> {
        self.dlq_url
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_queue_attributes()
                    .queue_url(&self.url)
                    .attribute_names(QueueAttributeName::RedrivePolicy)
                    .send()
                    .await
                    .map_err(|e| sqs_error("GetQueueAttributes", e))?;
                let policy = out
                    .attributes
                    .and_then(|mut a| a.remove(&QueueAttributeName::RedrivePolicy))
                    .ok_or_else(|| {
                        QueueError::Invalid(format!("queue {} has no RedrivePolicy", self.url))
                    })?;
                let arn = serde_json::from_str::<serde_json::Value>(&policy)
                    .ok()
                    .and_then(|v| v["deadLetterTargetArn"].as_str().map(str::to_string))
                    .ok_or_else(|| {
                        QueueError::Invalid("RedrivePolicy without deadLetterTargetArn".into())
                    })?;
                // arn:aws:sqs:REGION:ACCOUNT:NAME
                let parts: Vec<&str> = arn.split(':').collect();
                let (Some(account), Some(name)) = (parts.get(4), parts.get(5)) else {
                    return Err(QueueError::Invalid(format!(
                        "bad dead-letter queue ARN {arn}"
                    )));
                };
                self.client
                    .get_queue_url()
                    .queue_name(*name)
                    .queue_owner_aws_account_id(*account)
                    .send()
                    .await
                    .map_err(|e| sqs_error("GetQueueUrl", e))?
                    .queue_url
                    .ok_or_else(|| QueueError::Unavailable(format!("no URL for {name}")))
            })
            .await
            .map(String::as_str)
    }

    async fn receive_from(
        &self,
        url: &str,
        max: usize,
        wait: i32,
        visibility: Option<i32>,
    ) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, SQS_BATCH_MAX) as i32)
            .wait_time_seconds(wait)
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .customize()
            // A long poll legitimately takes its wait: the attempt timeout is on top of it.
            .config_override(
                aws_sdk_sqs::config::Builder::new().timeout_config(
                    aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
                        .operation_attempt_timeout(
                            crate::SDK_ATTEMPT_TIMEOUT + Duration::from_secs(wait.max(0) as u64),
                        )
                        .operation_timeout(
                            crate::SDK_OPERATION_TIMEOUT + Duration::from_secs(wait.max(0) as u64),
                        )
                        .build(),
                ),
            )
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", e))?;
        Ok(out.messages.unwrap_or_default())
    }

    async fn send_batch(&self, chunk: Vec<OutMessage>) -> Result<(), QueueError> {
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, m) in chunk.iter().enumerate() {
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(&m.body)
                    .message_group_id(&m.group_id)
                    .message_deduplication_id(&m.dedup_id)
                    .build()
                    .map_err(|e| QueueError::Invalid(e.to_string()))?,
            );
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sqs_error("SendMessageBatch", e))?;
        if !out.failed().is_empty() {
            let codes: Vec<String> = out
                .failed()
                .iter()
                .map(|f| format!("{}:{}", f.id(), f.code()))
                .collect();
            return Err(QueueError::Unavailable(format!(
                "SendMessageBatch failed entries: {}",
                codes.join(", ")
            )));
        }
        Ok(())
    }

    /// Makes messages peeked at in the dead-letter queue visible again at once.
    async fn release(&self, dlq: &str, held: Vec<String>) {
        for r in held {
            let _ = self
                .client
                .change_message_visibility()
                .queue_url(dlq)
                .receipt_handle(r)
                .visibility_timeout(0)
                .send()
                .await;
        }
    }

    fn to_dead_letter(m: &Message) -> DeadLetter {
        DeadLetter {
            body: m.body().unwrap_or_default().to_string(),
            group_id: attr(m, MessageSystemAttributeName::MessageGroupId)
                .unwrap_or_default()
                .to_string(),
            dedup_id: attr(m, MessageSystemAttributeName::MessageDeduplicationId)
                .unwrap_or_default()
                .to_string(),
            receive_count: attr(m, MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
        }
    }
}

/// The dedup id of a message sent again (a dead-letter redrive, an untried message
/// resent by `queue-deliver`): the original may still be inside the deduplication window,
/// where SQS would silently drop the copy. At most 128 characters, as SQS requires.
pub fn resend_dedup_id(original: &str) -> String {
    let suffix = format!("~r{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let keep: String = original.chars().take(128 - suffix.len()).collect();
    format!("{keep}{suffix}")
}

/// SQS's limit on one message and on a whole `SendMessageBatch` (bodies added up): 256 KiB,
/// the limit every SQS queue has had (larger payloads need a queue configured for them).
pub const SQS_MAX_BATCH_BYTES: usize = 256 * 1024;

/// Messages in `SendMessageBatch` calls: at most [`SQS_BATCH_MAX`] and
/// [`SQS_MAX_BATCH_BYTES`] each, in order. A message larger than the limit on its own
/// cannot be sent at all: nothing is, and the error names it (the outbox sweep then sends
/// the others one by one and reports that one).
fn batches(messages: Vec<OutMessage>) -> Result<Vec<Vec<OutMessage>>, QueueError> {
    if let Some(m) = messages.iter().find(|m| m.body.len() > SQS_MAX_BATCH_BYTES) {
        return Err(QueueError::Invalid(format!(
            "message {} is {} bytes; SQS takes at most {SQS_MAX_BATCH_BYTES}",
            m.dedup_id,
            m.body.len()
        )));
    }
    let mut out: Vec<Vec<OutMessage>> = Vec::new();
    let mut bytes = 0;
    for m in messages {
        let fits = out.last().is_some_and(|b| {
            b.len() < SQS_BATCH_MAX && bytes + m.body.len() <= SQS_MAX_BATCH_BYTES
        });
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += m.body.len();
        if let Some(b) = out.last_mut() {
            b.push(m);
        }
    }
    Ok(out)
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, messages: Vec<OutMessage>) -> Result<(), QueueError> {
        for batch in batches(messages)? {
            self.send_batch(batch).await?;
        }
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let msgs = self
            .receive_from(&self.url, max, secs(wait, MAX_WAIT), None)
            .await?;
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            let Some(receipt) = m.receipt_handle() else {
                continue;
            };
            out.push(Delivery {
                receipt: receipt.to_string(),
                body: m.body().unwrap_or_default().to_string(),
                group_id: attr(&m, MessageSystemAttributeName::MessageGroupId)
                    .unwrap_or_default()
                    .to_string(),
                dedup_id: attr(&m, MessageSystemAttributeName::MessageDeduplicationId)
                    .unwrap_or_default()
                    .to_string(),
                receive_count: attr(&m, MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            });
        }
        Ok(out)
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sqs_error("DeleteMessage", e))?;
        Ok(())
    }

    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs(delay, MAX_VISIBILITY))
            .send()
            .await
            .map_err(|e| sqs_error("ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let dlq = self.dlq().await?.to_string();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut held = Vec::new();
        while out.len() < limit {
            let batch = self
                .receive_from(&dlq, limit - out.len(), 0, Some(PEEK_VISIBILITY_SECS))
                .await?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                if let Some(r) = m.receipt_handle() {
                    held.push(r.to_string());
                }
                if seen.insert(m.message_id().unwrap_or_default().to_string()) {
                    out.push(Self::to_dead_letter(&m));
                }
            }
        }
        // Release what we peeked at.
        self.release(&dlq, held).await;
        Ok(out)
    }

    async fn dead_letter_count(&self) -> Result<usize, QueueError> {
        let dlq = self.dlq().await?.to_string();
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sqs_error("GetQueueAttributes", e))?;
        let attrs = out.attributes.unwrap_or_default();
        let n = |k: &QueueAttributeName| {
            attrs
                .get(k)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        };
        Ok(n(&QueueAttributeName::ApproximateNumberOfMessages)
            + n(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }

    async fn redrive(&self, limit: usize) -> Result<usize, QueueError> {
        let dlq = self.dlq().await?.to_string();
        let mut moved = 0;
        while moved < limit {
            let batch = self
                .receive_from(&dlq, limit - moved, 0, Some(REDRIVE_VISIBILITY_SECS))
                .await?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                let letter = Self::to_dead_letter(&m);
                let resend = OutMessage::new(
                    letter.group_id,
                    resend_dedup_id(&letter.dedup_id),
                    letter.body,
                );
                self.send_batch(vec![resend]).await?;
                if let Some(r) = m.receipt_handle() {
                    self.client
                        .delete_message()
                        .queue_url(&dlq)
                        .receipt_handle(r)
                        .send()
                        .await
                        .map_err(|e| sqs_error("DeleteMessage", e))?;
                }
                moved += 1;
            }
        }
        Ok(moved)
    }

    async fn redrive_one(&self, dedup_id: &str) -> Result<bool, QueueError> {
        let dlq = self.dlq().await?.to_string();
        let mut held = Vec::new();
        let mut seen = HashSet::new();
        let mut found = false;
        // Peek through the dead-letter queue until the letter turns up or every message
        // has been seen once.
        'search: loop {
            let batch = self
                .receive_from(&dlq, SQS_BATCH_MAX, 0, Some(PEEK_VISIBILITY_SECS))
                .await?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                let Some(r) = m.receipt_handle().map(str::to_string) else {
                    continue;
                };
                let letter = Self::to_dead_letter(&m);
                if !found && letter.dedup_id == dedup_id {
                    let resend = OutMessage::new(
                        letter.group_id,
                        resend_dedup_id(&letter.dedup_id),
                        letter.body,
                    );
                    self.send_batch(vec![resend]).await?;
                    self.client
                        .delete_message()
                        .queue_url(&dlq)
                        .receipt_handle(&r)
                        .send()
                        .await
                        .map_err(|e| sqs_error("DeleteMessage", e))?;
                    found = true;
                    continue;
                }
                held.push(r);
                if !seen.insert(m.message_id().unwrap_or_default().to_string()) {
                    break 'search;
                }
            }
            if found {
                break;
            }
        }
        self.release(&dlq, held).await;
        Ok(found)
    }

    fn backend(&self) -> &'static str {
        "sqs"
    }

    /// The queue's `VisibilityTimeout` attribute (receives here set none of their own),
    /// read once; `None` while it cannot be read (then nothing is renewed).
    async fn lease(&self) -> Option<Duration> {
        self.visibility
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_queue_attributes()
                    .queue_url(&self.url)
                    .attribute_names(QueueAttributeName::VisibilityTimeout)
                    .send()
                    .await
                    .map_err(|e| sqs_error("GetQueueAttributes", e))?;
                out.attributes
                    .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout)?.parse().ok())
                    .map(Duration::from_secs)
                    .ok_or_else(|| QueueError::Unavailable("no VisibilityTimeout".into()))
            })
            .await
            .map_err(|e| tracing::warn!(error = %e, "queue's visibility timeout not read: leases not renewed"))
            .ok()
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up_and_cap() {
        assert_eq!(secs(Duration::ZERO, MAX_WAIT), 0);
        assert_eq!(secs(Duration::from_millis(300), MAX_WAIT), 1);
        assert_eq!(secs(Duration::from_secs(90), MAX_WAIT), 20);
    }

    #[test]
    fn batches_split_by_count_and_size() {
        let msg =
            |i: usize, kib: usize| OutMessage::new("g", format!("m{i}"), "x".repeat(kib * 1024));
        let sizes = |b: &[Vec<OutMessage>]| b.iter().map(Vec::len).collect::<Vec<_>>();
        let small: Vec<OutMessage> = (0..25).map(|i| msg(i, 1)).collect();
        assert_eq!(sizes(&batches(small).unwrap()), [10, 10, 5]);
        // 100 KiB each: two per batch (three would be 300 KiB).
        let large: Vec<OutMessage> = (0..5).map(|i| msg(i, 100)).collect();
        assert_eq!(sizes(&batches(large).unwrap()), [2, 2, 1]);
        let exact = vec![msg(0, 256), msg(1, 1)];
        assert_eq!(sizes(&batches(exact).unwrap()), [1, 1]);
        let too_big = vec![msg(0, 1), msg(1, 257)];
        let e = batches(too_big).unwrap_err();
        assert!(
            matches!(&e, QueueError::Invalid(d) if d.contains("m1")),
            "{e}"
        );
    }

    #[test]
    fn resend_dedup_ids_fit() {
        let long = "x".repeat(200);
        assert_eq!(resend_dedup_id(&long).chars().count(), 128);
        assert!(resend_dedup_id("evt-1").starts_with("evt-1~r"));
    }
}
