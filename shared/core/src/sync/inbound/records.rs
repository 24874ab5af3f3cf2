//! Entities and configuration from sites: last writer wins by `occurred_at`, tombstones
//! for deletes.

use super::{
    Applied, Envelope, Inbound, InboundError, Outcome, not_newer, older, op_for, short_serde,
    unavailable,
};
use crate::event::{ChangeEvent, ChangeOp, Origin, RecordChange};
use crate::records::{ConfigData, EntityData, Record};
use crate::source::SourceConfig;
use crate::store::{Condition, Item, Key, StoreError, Write};
use chrono::{DateTime, Utc};

impl Inbound {
    pub(super) async fn entity(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        at: DateTime<Utc>,
        marker: Option<Write>,
    ) -> Result<Applied, InboundError> {
        let data: EntityData = serde_json::from_value(envelope.data.clone()).map_err(|e| {
            InboundError::Malformed(format!(
                "data must be {{\"entity_type\",\"uuid\",\"langcode\"?,\"fields\",\"changed\"?}}: {}",
                short_serde(&e)
            ))
        })?;
        data.validate()
            .map_err(|e| InboundError::Malformed(e.to_string()))?;
        if !source.entity_types.iter().any(|t| t == &data.entity_type) {
            return Err(InboundError::Forbidden(format!(
                "entity type `{}` is not in this source's entity_types",
                data.entity_type
            )));
        }
        let key = data.key();
        let held: Option<(Record<EntityData>, u64)> =
            self.records.get(&key).await.map_err(unavailable)?;
        self.write_record(
            source,
            envelope,
            at,
            marker,
            &key,
            held,
            data,
            RecordChange::Entity,
            |r, v| r.to_item(v),
            |a: &EntityData, b: &EntityData| a.fields == b.fields && a.changed == b.changed,
        )
        .await
    }

    pub(super) async fn config(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        at: DateTime<Utc>,
        marker: Option<Write>,
    ) -> Result<Applied, InboundError> {
        let data: ConfigData = serde_json::from_value(envelope.data.clone()).map_err(|e| {
            InboundError::Malformed(format!(
                "data must be {{\"name\",\"value\"}}: {}",
                short_serde(&e)
            ))
        })?;
        data.validate()
            .map_err(|e| InboundError::Malformed(e.to_string()))?;
        if !source
            .config_prefixes
            .iter()
            .any(|p| data.name.starts_with(p.as_str()))
        {
            return Err(InboundError::Forbidden(format!(
                "configuration `{}` is outside this source's config_prefixes",
                data.name
            )));
        }
        let key = data.key();
        let held: Option<(Record<ConfigData>, u64)> =
            self.records.get(&key).await.map_err(unavailable)?;
        self.write_record(
            source,
            envelope,
            at,
            marker,
            &key,
            held,
            data,
            RecordChange::Config,
            |r, v| r.to_item(v),
            |a: &ConfigData, b: &ConfigData| a.value == b.value,
        )
        .await
    }

    /// Last writer wins, no-op, tombstones: the same for both kinds of record.
    #[allow(clippy::too_many_arguments)]
    async fn write_record<T: Clone>(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        at: DateTime<Utc>,
        marker: Option<Write>,
        key: &Key,
        held: Option<(Record<T>, u64)>,
        data: T,
        change: impl Fn(T) -> RecordChange,
        to_item: impl Fn(&Record<T>, u64) -> Result<Item, StoreError>,
        same: impl Fn(&T, &T) -> bool,
    ) -> Result<Applied, InboundError> {
        let delete = envelope.kind.is_delete();
        let op = op_for(envelope.kind);
        let quiet =
            |applied, detail: &str| Outcome::new(applied, op, key.pk.clone()).detail(detail);
        let writes: Vec<Write> = marker.into_iter().collect();
        // An older change is stale; so is a change that would bring back a deleted record
        // and is no newer than its delete (ties go to the tombstone).
        if let Some((r, _)) = &held
            && (older(at, Some(&r.occurred_at))
                || (r.deleted && !delete && not_newer(at, Some(&r.occurred_at))))
        {
            return self
                .commit_quiet(
                    source,
                    envelope.kind,
                    writes,
                    quiet(Applied::Stale, "older than the change the hub holds"),
                )
                .await;
        }
        let unchanged = match &held {
            None => delete,
            Some((r, _)) if r.deleted => delete,
            Some((r, _)) => !delete && same(&r.data, &data),
        };
        if unchanged {
            return self
                .commit_quiet(source, envelope.kind, writes, quiet(Applied::Unchanged, ""))
                .await;
        }
        // A delete keeps the last state in the tombstone (targets may need it).
        let state = match (&held, delete) {
            (Some((r, _)), true) => r.data.clone(),
            _ => data,
        };
        let record = Record {
            data: state.clone(),
            occurred_at: envelope.occurred_at.clone(),
            source: source.id.clone(),
            deleted: delete,
        };
        let (condition, version) = match &held {
            Some((_, v)) => (Condition::VersionIs(*v), v + 1),
            None => (Condition::NotExists, 1),
        };
        let mut all = vec![Write::Put {
            item: to_item(&record, version).map_err(unavailable)?,
            condition,
        }];
        all.extend(writes);
        let (change_op, applied) = match (delete, &held) {
            (true, _) => (ChangeOp::Delete, Applied::Deleted),
            (false, Some((r, _))) if !r.deleted => (ChangeOp::Update, Applied::Updated),
            (false, _) => (ChangeOp::Create, Applied::Created),
        };
        self.audit_outcome(
            source,
            envelope.kind,
            Outcome::new(applied, op, key.pk.clone()),
            Some(&mut all),
        )
        .await;
        let event = ChangeEvent::for_record(
            &key.pk,
            change_op,
            Origin::Webhook {
                source: source.id.clone(),
            },
            change(state),
        );
        match self.directory.transact_change(all, event).await {
            Ok(()) => Ok(applied),
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => Err(
                InboundError::Unavailable("a concurrent change to the same item won".into()),
            ),
            Err(StoreError::Invalid(d)) => Err(InboundError::Malformed(format!(
                "the record cannot be stored: {d}"
            ))),
            Err(e) => Err(unavailable(e)),
        }
    }
}
