//! Users and groups from sources: resolving the source's id to a hub resource, the
//! last-writer-wins stamp, upserts within `allowed_fields`, and deletes.

use super::{
    Applied, DEFAULT_ALLOWED_FIELDS, Envelope, EnvelopeType, Inbound, InboundError, Outcome,
    STRUCTURAL, SourceLink, directory_error, older, op_for, source_link_key, stamp_key,
    unavailable,
};
use crate::directory::keys::UniqueAttr;
use crate::directory::{DirectoryError, Stored, WriteContext};
use crate::event::Origin;
use crate::source::SourceConfig;
use crate::store::{Condition, Item, Write};
use crate::sync::audit::AuditOp;
use chrono::{DateTime, Utc};
use provisync_scim::ResourceKind;
use serde_json::{Map, Value, json};

impl Inbound {
    fn scim_kind(kind: EnvelopeType) -> ResourceKind {
        match kind {
            EnvelopeType::GroupUpsert | EnvelopeType::GroupDelete => ResourceKind::Group,
            _ => ResourceKind::User,
        }
    }

    /// The site's id (`externalId`), the data as an object, after the `user_sync` check.
    fn scim_data<'a>(
        source: &SourceConfig,
        envelope: &'a Envelope,
    ) -> Result<(&'a Map<String, Value>, String), InboundError> {
        if !source.user_sync {
            return Err(InboundError::Forbidden(
                "user_sync is off for this source: users and groups are not accepted".into(),
            ));
        }
        let data = envelope.data.as_object().ok_or_else(|| {
            InboundError::Malformed("data must be a SCIM resource (an object)".into())
        })?;
        let site_id = match data.get("externalId") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 && !s.contains('#') => {
                s.clone()
            }
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(InboundError::Malformed(
                    "data.externalId (the site's own id: 1 to 256 characters) is required".into(),
                ));
            }
        };
        Ok((data, site_id))
    }

    /// The hub resource a site's item stands for: through the source link, else by the
    /// unique name. Returns the link as stored too.
    async fn resolve(
        &self,
        source: &SourceConfig,
        kind: ResourceKind,
        site_id: &str,
        data: &Map<String, Value>,
    ) -> Result<(Option<Stored>, Option<(SourceLink, u64)>), InboundError> {
        let link = match self
            .store()
            .get(&source_link_key(&source.id, kind, site_id))
            .await
            .map_err(unavailable)?
        {
            Some(item) => serde_json::from_slice::<SourceLink>(&item.data)
                .ok()
                .map(|l| (l, item.version)),
            None => None,
        };
        if let Some(hub_id) = link.as_ref().and_then(|(l, _)| l.hub_id.as_deref()) {
            match self.directory.load(kind, hub_id).await {
                Ok(s) => return Ok((Some(s), link)),
                Err(DirectoryError::NotFound { .. }) => {}
                Err(e) => return Err(directory_error(e)),
            }
        }
        let (attr, name) = match kind {
            ResourceKind::User => (UniqueAttr::UserName, "userName"),
            ResourceKind::Group => (UniqueAttr::DisplayName, "displayName"),
        };
        let found = match data.get(name).and_then(Value::as_str) {
            Some(v) => self
                .directory
                .find_unique(kind, attr, v)
                .await
                .map_err(directory_error)?,
            None => None,
        };
        Ok((found, link))
    }

    /// The stamp of a hub resource, with its version.
    async fn stamp(
        &self,
        kind: ResourceKind,
        hub_id: &str,
    ) -> Result<Option<(String, u64)>, InboundError> {
        Ok(self
            .store()
            .get(&stamp_key(kind, hub_id))
            .await
            .map_err(unavailable)?
            .and_then(|i| {
                let v: Value = serde_json::from_slice(&i.data).ok()?;
                Some((v.get("occurred_at")?.as_str()?.to_string(), i.version))
            }))
    }

    /// The writes that record `at` as the last change of the item: the source link and
    /// the hub resource's stamp (both conditional on what was read: a concurrent writer
    /// makes this one retry).
    fn stamp_writes(
        source: &SourceConfig,
        kind: ResourceKind,
        site_id: &str,
        hub_id: Option<&str>,
        link: Option<&(SourceLink, u64)>,
        stamp: Option<&(String, u64)>,
        at: &str,
    ) -> Result<Vec<Write>, InboundError> {
        let lk = source_link_key(&source.id, kind, site_id);
        let data = serde_json::to_vec(&SourceLink {
            hub_id: hub_id.map(str::to_string),
            occurred_at: at.to_string(),
        })
        .map_err(unavailable)?;
        let cond = |v: Option<u64>| match v {
            Some(v) => Condition::VersionIs(v),
            None => Condition::NotExists,
        };
        let mut writes = vec![Write::Put {
            item: Item::new(lk.pk, lk.sk, data).with_version(link.map_or(1, |(_, v)| v + 1)),
            condition: cond(link.map(|(_, v)| *v)),
        }];
        if let Some(h) = hub_id {
            let sk = stamp_key(kind, h);
            writes.push(Write::Put {
                item: Item::new(
                    sk.pk,
                    sk.sk,
                    json!({"occurred_at": at}).to_string().into_bytes(),
                )
                .with_version(stamp.map_or(1, |(_, v)| v + 1)),
                condition: cond(stamp.map(|(_, v)| *v)),
            });
        }
        Ok(writes)
    }

    fn allowed(source: &SourceConfig, field: &str) -> bool {
        match &source.allowed_fields {
            Some(list) => list.iter().any(|f| f == field),
            None => DEFAULT_ALLOWED_FIELDS.contains(&field),
        }
    }

    pub(super) async fn upsert_scim(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        at: DateTime<Utc>,
        marker: Option<Write>,
    ) -> Result<Applied, InboundError> {
        let kind = Self::scim_kind(envelope.kind);
        let (data, site_id) = Self::scim_data(source, envelope)?;
        let (current, link) = self.resolve(source, kind, &site_id, data).await?;
        // Privilege escalation by webhook: a field outside the allowlist may only repeat
        // what the hub holds.
        for (k, v) in data {
            if STRUCTURAL.contains(&k.as_str()) || Self::allowed(source, k) {
                continue;
            }
            let same = current
                .as_ref()
                .and_then(|c| c.resource.get(k))
                .is_some_and(|held| held == v);
            if !same {
                return Err(InboundError::Forbidden(format!(
                    "field `{}` is not in this source's allowed_fields",
                    k.chars().take(64).collect::<String>()
                )));
            }
        }
        let hub_id = current.as_ref().map(|c| c.id().to_string());
        let stamp = match &hub_id {
            Some(h) => self.stamp(kind, h).await?,
            None => None,
        };
        let at_s = envelope.occurred_at.clone();
        let mut quiet: Vec<Write> = marker.iter().cloned().collect();
        if older(at, link.as_ref().map(|(l, _)| l.occurred_at.as_str()))
            || older(at, stamp.as_ref().map(|(s, _)| s.as_str()))
        {
            return self
                .commit_quiet(
                    source,
                    envelope.kind,
                    quiet,
                    Outcome {
                        applied: Applied::Stale,
                        op: op_for(envelope.kind),
                        resource_id: hub_id.unwrap_or_default(),
                        detail: "older than the change the hub holds".into(),
                    },
                )
                .await;
        }
        // Members: the site's ids, translated through its links; unknown ones are left out.
        let members = match (kind, data.get("members")) {
            (ResourceKind::Group, Some(Value::Array(ms))) => {
                let mut out = Vec::new();
                for m in ms {
                    let Some(site_member) = m.get("value").and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    }) else {
                        return Err(InboundError::Malformed(
                            "each member needs a `value` (the site's user id)".into(),
                        ));
                    };
                    let link = self
                        .store()
                        .get(&source_link_key(
                            &source.id,
                            ResourceKind::User,
                            &site_member,
                        ))
                        .await
                        .map_err(unavailable)?
                        .and_then(|i| serde_json::from_slice::<SourceLink>(&i.data).ok())
                        .and_then(|l| l.hub_id);
                    out.extend(link.map(|h| json!({"value": h, "type": "User"})));
                }
                Some(out)
            }
            _ => None,
        };
        let mut body = match &current {
            Some(c) => {
                let mut b = c.resource.clone();
                if let Some(o) = b.as_object_mut() {
                    o.remove("meta");
                    o.remove("groups");
                }
                b
            }
            None => json!({}),
        };
        let obj = body
            .as_object_mut()
            .ok_or_else(|| unavailable("stored resource is not an object"))?;
        for (k, v) in data {
            if STRUCTURAL.contains(&k.as_str()) || k == "members" {
                continue;
            }
            obj.insert(k.clone(), v.clone());
        }
        if !obj.contains_key("schemas") {
            obj.insert("schemas".into(), json!([kind.core_schema()]));
        }
        if kind == ResourceKind::Group {
            let members = match (members, &hub_id) {
                (Some(m), _) => m,
                (None, Some(h)) => self
                    .directory
                    .members_of(h)
                    .await
                    .map_err(directory_error)?
                    .into_iter()
                    .map(|m| json!({"value": m.value, "type": m.kind.unwrap_or_else(|| "User".into())}))
                    .collect(),
                (None, None) => vec![],
            };
            obj.insert("members".into(), Value::Array(members));
        }
        let new_id = hub_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut extra: Vec<Write> = marker.into_iter().collect();
        extra.extend(Self::stamp_writes(
            source,
            kind,
            &site_id,
            Some(&new_id),
            link.as_ref(),
            stamp.as_ref(),
            &at_s,
        )?);
        let (op, applied) = match current {
            Some(_) => (AuditOp::Update, Applied::Updated),
            None => (AuditOp::Create, Applied::Created),
        };
        let mut ctx = WriteContext {
            origin: Some(Origin::Webhook {
                source: source.id.clone(),
            }),
            extra: extra.clone(),
            new_id: Some(new_id.clone()),
        };
        self.audit_outcome(
            source,
            envelope.kind,
            Outcome {
                applied,
                op,
                resource_id: new_id.clone(),
                detail: String::new(),
            },
            Some(&mut ctx.extra),
        )
        .await;
        let written = match &current {
            Some(c) => self
                .directory
                .replace_in(kind, c.id(), &body, None, &ctx)
                .await
                .map(|saved| saved.stored.version != c.version),
            None => self
                .directory
                .create_in(kind, &body, &ctx)
                .await
                .map(|_| true),
        };
        match written {
            Ok(true) => Ok(applied),
            Ok(false) => {
                // Nothing changed (the echo of what the hub delivered): no event; the
                // link, the stamp and the delivery id are still recorded.
                quiet = extra;
                self.commit_quiet(
                    source,
                    envelope.kind,
                    quiet,
                    Outcome {
                        applied: Applied::Unchanged,
                        op,
                        resource_id: new_id,
                        detail: String::new(),
                    },
                )
                .await
            }
            Err(e) => Err(directory_error(e)),
        }
    }

    pub(super) async fn delete_scim(
        &self,
        source: &SourceConfig,
        envelope: &Envelope,
        at: DateTime<Utc>,
        marker: Option<Write>,
    ) -> Result<Applied, InboundError> {
        let kind = Self::scim_kind(envelope.kind);
        let (data, site_id) = Self::scim_data(source, envelope)?;
        let (current, link) = self.resolve(source, kind, &site_id, data).await?;
        let hub_id = current.as_ref().map(|c| c.id().to_string());
        let stamp = match &hub_id {
            Some(h) => self.stamp(kind, h).await?,
            None => None,
        };
        let mut extra: Vec<Write> = marker.into_iter().collect();
        if older(at, link.as_ref().map(|(l, _)| l.occurred_at.as_str()))
            || older(at, stamp.as_ref().map(|(s, _)| s.as_str()))
        {
            return self
                .commit_quiet(
                    source,
                    envelope.kind,
                    extra,
                    Outcome {
                        applied: Applied::Stale,
                        op: AuditOp::Delete,
                        resource_id: hub_id.unwrap_or_default(),
                        detail: "older than the change the hub holds".into(),
                    },
                )
                .await;
        }
        // The link stays as a tombstone with the delete's time; the stamp goes with the
        // resource.
        extra.extend(Self::stamp_writes(
            source,
            kind,
            &site_id,
            None,
            link.as_ref(),
            None,
            &envelope.occurred_at,
        )?);
        let Some(current) = current else {
            return self
                .commit_quiet(
                    source,
                    envelope.kind,
                    extra,
                    Outcome {
                        applied: Applied::Unchanged,
                        op: AuditOp::Delete,
                        resource_id: String::new(),
                        detail: "not in the hub".into(),
                    },
                )
                .await;
        };
        if stamp.is_some() {
            extra.push(Write::delete(stamp_key(kind, current.id())));
        }
        let mut ctx = WriteContext {
            origin: Some(Origin::Webhook {
                source: source.id.clone(),
            }),
            extra,
            new_id: None,
        };
        self.audit_outcome(
            source,
            envelope.kind,
            Outcome {
                applied: Applied::Deleted,
                op: AuditOp::Delete,
                resource_id: current.id().to_string(),
                detail: String::new(),
            },
            Some(&mut ctx.extra),
        )
        .await;
        match self
            .directory
            .delete_in(kind, current.id(), None, &ctx)
            .await
        {
            Ok(_) => Ok(Applied::Deleted),
            Err(e) => Err(directory_error(e)),
        }
    }

    // ---- entities and configuration -------------------------------------------------
}
