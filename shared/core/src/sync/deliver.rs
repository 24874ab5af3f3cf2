//! The delivery engine: one change event, every target it concerns.
//!
//! For each enabled target in real-time mode (or named by an on-demand event) the engine
//! decides what the change means there — create, update, password, deactivate, delete,
//! membership changes — from the target's scoping filter, operations, attribute mapping
//! and the link to what it delivered before; calls the target's connector; records the
//! link with a hash of what was delivered (so an update that changes nothing is skipped);
//! and writes an audit entry. A per-(event, target) receipt makes redelivery harmless:
//! an event delivered to a target once is never applied there again.
//!
//! A user created on a target (or linked to an account there) joins at once the groups
//! the hub has it in that are already on that target: a re-created account keeps its
//! memberships, and a group change that reached the target before the user did (its
//! member could not be translated then) is made good.
//!
//! Failures a retry can fix (timeouts, 429, 5xx) make [`Deliverer::deliver`] return
//! [`DeliveryError::Retry`] with the target's `Retry-After` when it gave one; targets done
//! already are protected by their receipts. Refusals (4xx) are final and audited.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::audit::{Audit, AuditEntry, AuditOp, AuditStatus};
use super::held::{Held, HeldChange};
use super::link::{Link, LinkChange, Links};
pub use super::mapping::in_scope;
use super::mapping::{content_hash, map_resource};
pub use super::member_work::MEMBER_WORK;
use super::member_work::MemberWork;
use super::pace::{PaceLimits, Pacer};
use super::paced::Paced;
use super::runs::outcome_write;
use crate::connector::ConnectorFactory;
use crate::connector::http::scrub_secret;
use crate::connector::{Connector, ConnectorError, SetupError};
use crate::crypto::SecretBox;
use crate::directory::{Directory, DirectoryError};
use crate::event::{ChangeEvent, ChangeOp, Origin};
use crate::queue::{AckWith, Queue};
use crate::sync::envelope::envelope_for;
use crate::target::{DeliveryMode, Operation, OutOfScope, TargetConfig, TargetKind, Targets};
use provisync_scim::{ResourceKind, SchemaRegistry};

/// What happened on one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered(AuditOp),
    /// Linked to an account that already existed there.
    Linked,
    /// Nothing to do: unchanged, out of scope and not linked, operation not enabled.
    Skipped(&'static str),
    /// Older than what the target holds (or the resource is deleted in the hub since):
    /// not applied.
    Stale(&'static str),
    /// Refused by the target: final.
    Refused(String),
    /// Beyond the target's deprovision guard: not sent, kept for an operator
    /// ([`super::held`]). `label`: the account's userName; `cause`: why it was to be sent.
    Held {
        op: AuditOp,
        label: String,
        cause: String,
        count: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Retry the event later (at the earliest after `after`).
    #[error("retry later: {detail}")]
    Retry {
        after: Option<Duration>,
        detail: String,
    },
    /// The event cannot be read: retrying will not help (dead-letter it).
    #[error("malformed change event: {0}")]
    Malformed(String),
}

type CachedConnector = (TargetConfig, Arc<dyn Connector>);

pub struct Deliverer {
    pub(super) targets: Targets,
    pub(super) links: Links,
    /// Reads memberships (the groups a user is in), from the links' store.
    pub(super) directory: Directory,
    pub(super) audit: Audit,
    pub(super) held: Held,
    pub(super) journal: super::journal::Journal,
    pub(super) direct: super::direct::Direct,
    pub(super) schemas: SchemaRegistry,
    secrets: Option<Arc<SecretBox>>,
    factory: ConnectorFactory,
    /// Connectors by target id, with the definition they were built from.
    connectors: Mutex<HashMap<String, CachedConnector>>,
    /// The pace of each target: calls in flight found by AIMD, `Retry-After`, the
    /// operator's `max_rate` / `max_in_flight` ([`super::pace`]). One per process, shared
    /// with the reconciler ([`crate::hub::Hub::new`]).
    pacer: Arc<Pacer>,
    /// Where follow-up events go at once ([`Deliverer::with_queue`]); without it, the
    /// outbox sweep sends them.
    pub(super) queue: Option<Arc<dyn Queue>>,
    /// A delivery's time for member calls on one target, in milliseconds
    /// ([`MEMBER_WORK`]; [`Deliverer::set_member_work`]).
    member_work_ms: AtomicU64,
}

pub(super) fn op_allowed(t: &TargetConfig, op: Operation) -> bool {
    t.operations.contains(&op)
}

impl Deliverer {
    pub fn new(
        targets: Targets,
        links: Links,
        audit: Audit,
        schemas: SchemaRegistry,
        secrets: Option<Arc<SecretBox>>,
        factory: ConnectorFactory,
        pacer: Arc<Pacer>,
    ) -> Self {
        let directory = Directory::new(links.store().clone(), schemas.clone());
        let links_store = links.store().clone();
        let direct = super::direct::Direct::new(links_store.clone(), audit.clone());
        Deliverer {
            targets,
            links,
            directory,
            audit,
            held: Held::new(links_store.clone()),
            direct,
            journal: super::journal::Journal::new(links_store),
            schemas,
            secrets,
            factory,
            connectors: Mutex::new(HashMap::new()),
            pacer,
            queue: None,
            member_work_ms: AtomicU64::new(MEMBER_WORK.as_millis() as u64),
        }
    }

    /// Sends the follow-up events of deliveries that ran out of time for members to
    /// `queue` once the delivery's receipt is written (they are in the outbox before it,
    /// so the sweep sends what this could not).
    pub fn with_queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// A delivery's time for member calls on one target from now on (default
    /// [`MEMBER_WORK`]); tests shorten it to see follow-up events without big groups.
    pub fn set_member_work(&self, budget: Duration) {
        self.member_work_ms
            .store(budget.as_millis() as u64, AtomicOrdering::Relaxed);
    }

    /// Every target's delivery pace.
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    pub fn links(&self) -> &Links {
        &self.links
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The connector of a target, built once per target definition.
    pub(super) fn connector(&self, t: &TargetConfig) -> Result<Arc<dyn Connector>, SetupError> {
        let mut cache = self.connectors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cfg, c)) = cache.get(&t.id)
            && cfg == t
        {
            return Ok(c.clone());
        }
        let c = (self.factory)(t)?;
        cache.insert(t.id.clone(), (t.clone(), c.clone()));
        Ok(c)
    }

    /// `c`, each of its calls paced as `t`'s ([`super::paced`]).
    pub(super) fn paced<'a>(&'a self, t: &'a TargetConfig, c: &'a dyn Connector) -> Paced<'a> {
        Paced {
            inner: c,
            pacer: &self.pacer,
            target: &t.id,
            limits: PaceLimits::of(t),
        }
    }

    /// Delivers one queue message body. `final_attempt`: the queue will dead-letter the
    /// event if this attempt fails too (audited as `dead`).
    pub async fn deliver_body(&self, body: &str, final_attempt: bool) -> Result<(), DeliveryError> {
        self.deliver_body_acking(body, final_attempt, None)
            .await
            .map(|_| ())
    }

    /// [`Deliverer::deliver_body`], acking the message it came in with the event's last
    /// receipt when the queue lives in this store ([`AckWith`]). `Ok(true)`:
    /// delivered and acked; `Ok(false)`: delivered, the message still to be acked.
    pub async fn deliver_body_acking(
        &self,
        body: &str,
        final_attempt: bool,
        ack: Option<AckWith<'_>>,
    ) -> Result<bool, DeliveryError> {
        let event =
            ChangeEvent::from_body(body).map_err(|e| DeliveryError::Malformed(e.to_string()))?;
        self.deliver_acking(&event, final_attempt, ack).await
    }

    /// Delivers one change event to every target it concerns.
    pub async fn deliver(
        &self,
        event: &ChangeEvent,
        final_attempt: bool,
    ) -> Result<(), DeliveryError> {
        self.deliver_acking(event, final_attempt, None)
            .await
            .map(|_| ())
    }

    /// [`Deliverer::deliver`]; `ack`: the message the event came in, acked with the receipt
    /// of the last target when it can be (`Ok(true)`).
    async fn deliver_acking(
        &self,
        event: &ChangeEvent,
        final_attempt: bool,
        ack: Option<AckWith<'_>>,
    ) -> Result<bool, DeliveryError> {
        let targets = self
            .targets
            .list_enabled()
            .await
            .map_err(|e| DeliveryError::Retry {
                after: None,
                detail: format!("targets: {e}"),
            })?;
        let gone = self.gone_from_hub(event).await?;
        let password = self.open_password(event);
        let mut retry: Option<DeliveryError> = None;
        let mut concerned: Vec<&TargetConfig> = targets
            .iter()
            .filter(|t| {
                let wanted = if event.only_targets.is_empty() {
                    t.mode == DeliveryMode::Realtime
                } else {
                    event.only_targets.iter().any(|id| id == &t.id)
                };
                wanted && !self.is_echo(event, t) && concerns(event, t)
            })
            .collect();
        // Targets that wait for their rate or a `Retry-After` last: the others have the
        // change at once, while this delivery waits there (parked: `sync::consumer`).
        concerned.sort_by_key(|t| self.pacer.is_slow(&t.id));
        // Targets this event has an outcome on (or will have: a retry); a run's event
        // names its target, and the run waits for an outcome there. The others are told
        // first: the last receipt may ack the message, and nothing of the event is
        // written after it.
        let answered: Vec<&str> = concerned.iter().map(|t| t.id.as_str()).collect();
        self.unanswered_run_targets(event, &answered).await;
        let last = concerned.len().saturating_sub(1);
        let mut acked = false;
        for (i, t) in concerned.into_iter().enumerate() {
            match self.links.delivered(&event.id, &t.id).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    retry.get_or_insert(DeliveryError::Retry {
                        after: None,
                        detail: e.to_string(),
                    });
                    continue;
                }
            }
            let started = Instant::now();
            let mut work = MemberWork::new(Duration::from_millis(
                self.member_work_ms.load(AtomicOrdering::Relaxed),
            ));
            let result = if gone {
                Ok((
                    DeliveryOutcome::Stale("the resource was deleted in the hub since"),
                    LinkChange::Keep,
                ))
            } else {
                self.deliver_to(event, t, &mut work).await
            };
            let follow_ups = match &result {
                Ok(_) => work.follow_ups(event, &t.id),
                Err(_) => Vec::new(),
            };
            let ms = started.elapsed().as_millis() as u64;
            // A target may echo the user's password in its error text: it never reaches
            // the audit log or the logs (the target's own credentials are scrubbed by its
            // connector).
            let scrub = |detail: String| match password.as_deref() {
                Some(p) => scrub_secret(&detail, p),
                None => detail,
            };
            let entry = |op: AuditOp, status: AuditStatus, detail: String| {
                AuditEntry::new(t.id.clone(), op, status)
                    .resource(event.subject(), &event.resource_id)
                    .event(&event.id)
                    .detail(scrub(detail))
                    .latency_ms(ms)
            };
            // (the audit entry, and the receipt with the link change when the event is done
            // with this target: committed together, with a held change)
            let mut held = None;
            let (audit, receipt) = match result {
                Ok((outcome, mut link)) => {
                    // The link remembers the newest version the target holds.
                    if let LinkChange::Put(l) = &mut link {
                        l.version = l.version.max(event.version);
                    }
                    let e = match outcome {
                        DeliveryOutcome::Delivered(op) => {
                            entry(op, AuditStatus::Delivered, follow_up_note(&follow_ups))
                        }
                        DeliveryOutcome::Linked => entry(
                            AuditOp::Create,
                            AuditStatus::Linked,
                            match follow_up_note(&follow_ups) {
                                note if note.is_empty() => "matched an existing account".into(),
                                note => format!("matched an existing account; {note}"),
                            },
                        ),
                        DeliveryOutcome::Skipped(why) => {
                            entry(default_op(event), AuditStatus::Skipped, why.into())
                        }
                        DeliveryOutcome::Stale(why) => entry(
                            default_op(event),
                            AuditStatus::SkippedStale,
                            format!("version {}: {why}", event.version),
                        ),
                        DeliveryOutcome::Refused(why) => {
                            entry(default_op(event), AuditStatus::Refused, why)
                        }
                        DeliveryOutcome::Held {
                            op,
                            label,
                            cause,
                            count,
                        } => {
                            let e = entry(op, AuditStatus::Held, format!("held: {cause}"));
                            held = Some(HeldChange::new(event, &t.id, op, label, cause, count));
                            e
                        }
                    };
                    (e, Some(link))
                }
                Err((
                    op,
                    ConnectorError::Retryable {
                        retry_after,
                        detail,
                        ..
                    },
                )) => {
                    let status = if final_attempt {
                        AuditStatus::Dead
                    } else {
                        AuditStatus::Retry
                    };
                    let detail = scrub(detail);
                    let e = entry(op, status, detail.clone());
                    retry = Some(match retry {
                        Some(DeliveryError::Retry { after, detail: d }) => DeliveryError::Retry {
                            after: after.max(retry_after),
                            detail: d,
                        },
                        _ => DeliveryError::Retry {
                            after: retry_after,
                            detail,
                        },
                    });
                    (e, None)
                }
                Err((op, ConnectorError::Gone(why))) => {
                    // 410: the target is gone for good; stop sending to it.
                    if let Err(e) = self.targets.disable(&t.id).await {
                        tracing::error!(target_id = %t.id, error = %e, "could not disable a gone target");
                    }
                    (
                        entry(
                            op,
                            AuditStatus::Refused,
                            format!("target gone, disabled: {why}"),
                        ),
                        Some(LinkChange::Keep),
                    )
                }
                Err((op, e)) => {
                    // Refused / NotFound / Conflict that the flow could not resolve: final.
                    (
                        entry(op, AuditStatus::Refused, e.to_string()),
                        Some(LinkChange::Keep),
                    )
                }
            };
            // Only the last target's receipt may carry the message's ack.
            let ack = ack.filter(|_| i == last);
            acked = self
                .write_outcome(
                    event,
                    &t.id,
                    audit,
                    held,
                    receipt,
                    &follow_ups,
                    ack,
                    &mut retry,
                )
                .await;
        }
        match retry {
            Some(e) => Err(e),
            None => Ok(acked),
        }
    }

    /// Is this a change (not the delete) of a SCIM resource the hub no longer holds? Then
    /// it is older than the delete that followed it: applying it would bring the resource
    /// back on a target after (or before) its deletion there.
    async fn gone_from_hub(&self, event: &ChangeEvent) -> Result<bool, DeliveryError> {
        if event.record.is_some() || event.op == ChangeOp::Delete {
            return Ok(false);
        }
        match self
            .directory
            .load(event.resource_type, &event.resource_id)
            .await
        {
            Ok(_) => Ok(false),
            Err(DirectoryError::NotFound { .. }) => Ok(true),
            Err(e) => Err(DeliveryError::Retry {
                after: None,
                detail: format!("hub store: {e}"),
            }),
        }
    }

    /// The targets a run's event names that had no part in it (disabled or removed since
    /// the run queued it, or not concerned): the run is told it was skipped there, so it
    /// does not wait for an outcome that never comes.
    async fn unanswered_run_targets(&self, event: &ChangeEvent, answered: &[&str]) {
        if event.run.is_none() {
            return;
        }
        for id in event
            .only_targets
            .iter()
            .filter(|id| !answered.contains(&id.as_str()))
        {
            let entry = AuditEntry::new(id.clone(), default_op(event), AuditStatus::Skipped)
                .resource(event.subject(), &event.resource_id)
                .event(&event.id)
                .detail("the target is disabled, removed, or takes no such change");
            let written = match outcome_write(event, id, &entry, &[]) {
                Ok(Some(w)) => self.links.store().transact(vec![w]).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                tracing::warn!(error = %e, target_id = %id, "run outcome not written");
            }
        }
    }

    /// A change never goes back to where it came from.
    fn is_echo(&self, event: &ChangeEvent, t: &TargetConfig) -> bool {
        matches!(&event.origin, Origin::Webhook { source } if source == &t.id)
    }

    /// Is this user in the target's scope?
    pub(super) fn in_scope(&self, t: &TargetConfig, kind: ResourceKind, resource: &Value) -> bool {
        in_scope(&self.schemas, t, kind, resource)
    }

    async fn deliver_to(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        work: &mut MemberWork,
    ) -> Result<(DeliveryOutcome, LinkChange), (AuditOp, ConnectorError)> {
        if let TargetKind::Webhook(w) = &t.kind {
            return self.deliver_webhook(event, t, w).await;
        }
        let connector = self.connector(t).map_err(|e| {
            (
                default_op(event),
                ConnectorError::Refused {
                    status: None,
                    reason: e.0,
                },
            )
        })?;
        let c = self.paced(t, connector.as_ref());
        match event.resource_type {
            ResourceKind::User => self.deliver_user(event, t, &c, work).await,
            ResourceKind::Group => self.deliver_group(event, t, &c, work).await,
        }
    }

    async fn deliver_user(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        c: &dyn Connector,
        work: &mut MemberWork,
    ) -> Result<(DeliveryOutcome, LinkChange), (AuditOp, ConnectorError)> {
        let kind = ResourceKind::User;
        let link = self
            .links
            .get(&t.id, kind, &event.resource_id)
            .await
            .map_err(|e| (AuditOp::Update, retryable(e)))?;
        if is_stale(event, link.as_ref()) {
            return Ok((
                DeliveryOutcome::Stale("older than the version the target holds"),
                LinkChange::Keep,
            ));
        }
        let resource = event.resource.as_ref();
        let leaving =
            event.op == ChangeOp::Delete || resource.is_none_or(|r| !self.in_scope(t, kind, r));
        if leaving {
            let Some(link) = link else {
                return Ok((
                    DeliveryOutcome::Skipped("not on the target"),
                    LinkChange::Keep,
                ));
            };
            return self.user_leaves(event, t, c, link).await;
        }
        let Some(resource) = resource else {
            return Ok((DeliveryOutcome::Skipped("no state"), LinkChange::Keep));
        };
        let mut payload = map_resource(
            kind,
            &event.resource_id,
            resource,
            &t.mapping,
            &t.group_mapping,
        );
        // Back from a deactivation (out of scope): say `active: true` even when the hub
        // user leaves `active` unset, or a minimal update would leave the account disabled.
        if link.as_ref().is_some_and(|l| l.disabled)
            && let Some(obj) = payload.as_object_mut()
        {
            obj.entry("active").or_insert(Value::Bool(true));
        }
        let password = self.open_password(event);
        let hash = content_hash(&payload);
        let active = payload
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        match link {
            // Stored before its account joined its groups, never confirmed (the process
            // stopped in between): create again, which finds the account and links it.
            Some(link) if link.hash == UNCONFIRMED => {
                self.create_user(event, t, c, payload, hash, password, work)
                    .await
            }
            Some(link) => {
                if link.hash == hash && password.is_none() {
                    return Ok((DeliveryOutcome::Skipped("unchanged"), LinkChange::Keep));
                }
                let op = if !active && !link.disabled_or_inactive() {
                    AuditOp::Deactivate
                } else if link.hash == hash {
                    AuditOp::Password
                } else {
                    AuditOp::Update
                };
                let needed = match op {
                    AuditOp::Deactivate => Operation::Deactivate,
                    _ => Operation::Update,
                };
                if !op_allowed(t, needed) {
                    return Ok((
                        DeliveryOutcome::Skipped("operation not enabled for this target"),
                        LinkChange::Keep,
                    ));
                }
                if op == AuditOp::Deactivate
                    && let Some(held) = self.guard(event, t, op, 1, &link).await?
                {
                    return Ok((held, LinkChange::Keep));
                }
                match c
                    .update_user(
                        &link.target_id,
                        &payload,
                        Some(&link.delivered),
                        password.as_deref(),
                    )
                    .await
                {
                    // The target may have given the account a new id (a rename where
                    // the id is the user name): the link follows it.
                    Ok(new_id) => Ok((
                        DeliveryOutcome::Delivered(op),
                        LinkChange::Put(Box::new(self.link(
                            t,
                            kind,
                            &event.resource_id,
                            new_id.as_deref().unwrap_or(&link.target_id),
                            hash,
                            payload,
                            false,
                        ))),
                    )),
                    // Gone from the target behind our back: create it again.
                    Err(ConnectorError::NotFound) => {
                        self.create_user(event, t, c, payload, hash, password, work)
                            .await
                    }
                    Err(e) => Err((op, e)),
                }
            }
            None => {
                self.create_user(event, t, c, payload, hash, password, work)
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_user(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        c: &dyn Connector,
        payload: Value,
        hash: String,
        password: Option<String>,
        work: &mut MemberWork,
    ) -> Result<(DeliveryOutcome, LinkChange), (AuditOp, ConnectorError)> {
        let kind = ResourceKind::User;
        if !op_allowed(t, Operation::Create) {
            return Ok((
                DeliveryOutcome::Skipped("create not enabled for this target"),
                LinkChange::Keep,
            ));
        }
        // Match an existing account first: link it, never duplicate it. Targets that
        // refuse duplicates themselves are matched on the conflict instead (below).
        let existing = if c.create_detects_existing() {
            None
        } else {
            c.find_user(&payload)
                .await
                .map_err(|e| (AuditOp::Create, e))?
        };
        let (target_id, outcome) = match existing {
            Some(id) => {
                let new_id = c
                    .update_user(&id, &payload, None, password.as_deref())
                    .await
                    .map_err(|e| (AuditOp::Update, e))?;
                (new_id.unwrap_or(id), DeliveryOutcome::Linked)
            }
            None => match c.create_user(&payload, password.as_deref()).await {
                Ok(id) => (id, DeliveryOutcome::Delivered(AuditOp::Create)),
                Err(ConnectorError::Conflict(_)) => {
                    // Created concurrently (or by an earlier attempt whose answer was lost).
                    let id = c
                        .find_user(&payload)
                        .await
                        .map_err(|e| (AuditOp::Create, e))?
                        .ok_or((
                            AuditOp::Create,
                            ConnectorError::Refused {
                                status: Some(409),
                                reason: "conflict, and no matching account found".into(),
                            },
                        ))?;
                    let new_id = c
                        .update_user(&id, &payload, None, password.as_deref())
                        .await
                        .map_err(|e| (AuditOp::Update, e))?;
                    (new_id.unwrap_or(id), DeliveryOutcome::Linked)
                }
                Err(e) => return Err((AuditOp::Create, e)),
            },
        };
        // Marked unconfirmed: stored before the account joins any group (see
        // `join_groups`), confirmed with the receipt below.
        let early = self.link(
            t,
            kind,
            &event.resource_id,
            &target_id,
            UNCONFIRMED.to_string(),
            payload.clone(),
            false,
        );
        self.join_groups(t, c, &early, work).await?;
        let link = self.link(
            t,
            kind,
            &event.resource_id,
            &target_id,
            hash,
            payload,
            false,
        );
        Ok((outcome, LinkChange::Put(Box::new(link))))
    }

    async fn user_leaves(
        &self,
        event: &ChangeEvent,
        t: &TargetConfig,
        c: &dyn Connector,
        link: Link,
    ) -> Result<(DeliveryOutcome, LinkChange), (AuditOp, ConnectorError)> {
        let deleted = event.op == ChangeOp::Delete;
        let policy = if deleted && op_allowed(t, Operation::Delete) {
            OutOfScope::Delete
        } else {
            t.out_of_scope
        };
        match policy {
            OutOfScope::Leave => Ok((
                DeliveryOutcome::Skipped("left in place (out-of-scope policy)"),
                LinkChange::Keep,
            )),
            OutOfScope::Delete if op_allowed(t, Operation::Delete) => {
                if let Some(days) = t.deferred_delete_days() {
                    return self.defer_delete(event, t, c, link, days).await;
                }
                if let Some(held) = self.guard(event, t, AuditOp::Delete, 1, &link).await? {
                    return Ok((held, LinkChange::Keep));
                }
                match c.delete_user(&link.target_id).await {
                    Ok(()) | Err(ConnectorError::NotFound) => {}
                    Err(e) => return Err((AuditOp::Delete, e)),
                }
                Ok((
                    DeliveryOutcome::Delivered(AuditOp::Delete),
                    LinkChange::Remove(ResourceKind::User, event.resource_id.clone()),
                ))
            }
            _ => {
                if !op_allowed(t, Operation::Deactivate) {
                    return Ok((
                        DeliveryOutcome::Skipped("deactivate not enabled for this target"),
                        LinkChange::Keep,
                    ));
                }
                if link.disabled {
                    return Ok((
                        DeliveryOutcome::Skipped("already deactivated"),
                        LinkChange::Keep,
                    ));
                }
                if let Some(held) = self.guard(event, t, AuditOp::Deactivate, 1, &link).await? {
                    return Ok((held, LinkChange::Keep));
                }
                match c.disable_user(&link.target_id).await {
                    Ok(()) => {}
                    Err(ConnectorError::NotFound) => {
                        return Ok((
                            DeliveryOutcome::Skipped("not on the target any more"),
                            LinkChange::Remove(ResourceKind::User, event.resource_id.clone()),
                        ));
                    }
                    Err(e) => return Err((AuditOp::Deactivate, e)),
                }
                let mut l = link;
                l.disabled = true;
                l.hash = String::new();
                // What the target now holds: inactive. A later update that brings the
                // user back then differs in `active` and sends it (minimal PATCHes too).
                if let Some(obj) = l.delivered.as_object_mut() {
                    obj.insert("active".into(), Value::Bool(false));
                }
                Ok((
                    DeliveryOutcome::Delivered(AuditOp::Deactivate),
                    LinkChange::Put(Box::new(l)),
                ))
            }
        }
    }

    fn open_password(&self, event: &ChangeEvent) -> Option<String> {
        let sealed = event.password.as_deref()?;
        let secrets = self.secrets.as_ref()?;
        match secrets.open(sealed) {
            Ok(p) => Some(p),
            Err(_) => {
                tracing::warn!(event_id = %event.id, "a password in a change event could not be opened (key changed?): dropped");
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn link(
        &self,
        t: &TargetConfig,
        kind: ResourceKind,
        hub_id: &str,
        target_id: &str,
        hash: String,
        delivered: Value,
        disabled: bool,
    ) -> Link {
        Link {
            target: t.id.clone(),
            resource_type: kind,
            hub_id: hub_id.to_string(),
            target_id: target_id.to_string(),
            hash,
            delivered,
            disabled,
            version: 0,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

impl Link {
    fn disabled_or_inactive(&self) -> bool {
        self.disabled || self.delivered.get("active") == Some(&Value::Bool(false))
    }
}

/// The hash of a link stored before its delivery was confirmed (see `create_user`).
pub(super) const UNCONFIRMED: &str = "unconfirmed";

/// Is this event for this kind of target at all? Entity and configuration changes go to
/// sites only; a site takes only what its filters name.
fn concerns(event: &ChangeEvent, t: &TargetConfig) -> bool {
    match &t.kind {
        TargetKind::Webhook(w) => envelope_for(w, event).is_some(),
        _ => event.record.is_none(),
    }
}

/// An update older than the version the target holds (per its link). A delete is never
/// stale: it is the resource's last version.
pub(super) fn is_stale(event: &ChangeEvent, link: Option<&Link>) -> bool {
    event.op != ChangeOp::Delete && link.is_some_and(|l| l.version > event.version)
}

pub(super) fn retryable(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Retryable {
        status: None,
        retry_after: None,
        detail: format!("hub store: {e}"),
    }
}

/// A delivered change's audit detail when it left members to follow-up events.
fn follow_up_note(follow_ups: &[ChangeEvent]) -> String {
    let left: usize = follow_ups
        .iter()
        .map(|e| e.members_added.len() + e.members_removed.len())
        .sum();
    match follow_ups {
        [] => String::new(),
        [one] => format!(
            "{left} memberships not reached in this delivery's time: sent in follow-up event {}",
            one.id
        ),
        more => format!(
            "{left} memberships not reached in this delivery's time: sent in {} follow-up events",
            more.len()
        ),
    }
}

pub(super) fn default_op(event: &ChangeEvent) -> AuditOp {
    match event.op {
        ChangeOp::Create => AuditOp::Create,
        ChangeOp::Update => AuditOp::Update,
        ChangeOp::Delete => AuditOp::Delete,
    }
}

/// Exponential backoff with full jitter for redeliveries: about 1 s, 2 s, 4 s, ...
/// capped at 5 minutes, never sooner than the target's `Retry-After`.
pub fn backoff(receive_count: u32, retry_after: Option<Duration>) -> Duration {
    use rand::Rng;
    let exp = 2u64.saturating_pow(receive_count.saturating_sub(1).min(16));
    let cap = Duration::from_secs(300);
    let base = Duration::from_secs(exp).min(cap);
    let jittered = base.mul_f64(rand::rng().random_range(0.5..=1.0));
    jittered
        .max(retry_after.unwrap_or_default())
        .min(Duration::from_secs(12 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::DEFAULT_MAX_RECEIVE_COUNT;

    /// The waits between the default number of receives add up to 19-38 minutes: a
    /// target that is down for less than that loses no change to the dead-letter queue.
    #[test]
    fn the_default_receives_outlast_a_19_minute_outage() {
        for _ in 0..20 {
            let total: Duration = (1..DEFAULT_MAX_RECEIVE_COUNT)
                .map(|n| backoff(n, None))
                .sum();
            assert!(
                total >= Duration::from_secs(19 * 60) && total <= Duration::from_secs(39 * 60),
                "{total:?}"
            );
        }
        // A target's Retry-After is a floor.
        assert!(backoff(1, Some(Duration::from_secs(90))) >= Duration::from_secs(90));
    }
}
