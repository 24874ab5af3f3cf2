//! What a site (a webhook target) receives for a change event: the same envelope sites
//! send the hub (`{"type","occurred_at","data"}`, see [`crate::sync::inbound`]). The
//! delivery engine builds it here and hands it to the target's connector
//! ([`crate::connector::Connector::relay`]), which signs and sends it.

use serde_json::{Value, json};

use crate::event::{ChangeEvent, ChangeOp, RecordChange};
use crate::target::WebhookTarget;

/// The envelope of a change event, `None` when the event is not for this site (its
/// `user_sync`, `entity_types` and `config_prefixes` filters).
pub fn envelope_for(target: &WebhookTarget, event: &ChangeEvent) -> Option<Value> {
    let delete = event.op == ChangeOp::Delete;
    let (kind, data) = match &event.record {
        None => {
            if !target.user_sync {
                return None;
            }
            let base = event.resource_type.as_str().to_ascii_lowercase();
            let kind = format!("{base}.{}", if delete { "delete" } else { "upsert" });
            let mut data = event.resource.clone().unwrap_or(Value::Null);
            // Membership changes of this write, by hub id (the `id` of the users the
            // site received).
            if let Some(obj) = data.as_object_mut() {
                for (key, ids) in [
                    ("members_added", &event.members_added),
                    ("members_removed", &event.members_removed),
                ] {
                    if !ids.is_empty() {
                        let v: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
                        obj.insert(key.into(), Value::Array(v));
                    }
                }
            }
            (kind, data)
        }
        Some(RecordChange::Entity(e)) => {
            if !target.entity_types.iter().any(|t| t == &e.entity_type) {
                return None;
            }
            let kind = if delete {
                "entity.delete"
            } else {
                "entity.upsert"
            };
            (kind.to_string(), serde_json::to_value(e).ok()?)
        }
        Some(RecordChange::Config(c)) => {
            if !target
                .config_prefixes
                .iter()
                .any(|p| c.name.starts_with(p.as_str()))
            {
                return None;
            }
            let kind = if delete {
                "config.delete"
            } else {
                "config.set"
            };
            (kind.to_string(), serde_json::to_value(c).ok()?)
        }
    };
    Some(json!({"type": kind, "occurred_at": event.occurred_at, "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    use crate::event::{ConfigData, EntityData, Origin};
    use provisync_scim::ResourceKind;

    fn target(v: Value) -> WebhookTarget {
        let mut base = json!({"url": "https://site.example/hook", "secret": SECRET});
        for (k, x) in v.as_object().unwrap() {
            base[k] = x.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn envelopes_follow_the_site_filters() {
        let mut user = ChangeEvent::new(ResourceKind::User, "u1", ChangeOp::Update, Origin::Scim);
        user.resource = Some(json!({"id": "u1", "userName": "a"}));
        let mut group = ChangeEvent::new(ResourceKind::Group, "g1", ChangeOp::Update, Origin::Scim);
        group.resource = Some(json!({"id": "g1", "displayName": "Staff"}));
        group.members_added = vec!["u1".into()];
        let node = ChangeEvent::for_record(
            "ENTITY#node#n1",
            ChangeOp::Create,
            Origin::Scim,
            RecordChange::Entity(EntityData {
                entity_type: "node".into(),
                uuid: "n1".into(),
                langcode: None,
                fields: json!({"title": "T"}),
                changed: None,
            }),
        );
        let cfg = ChangeEvent::for_record(
            "CONFIG#shared.x",
            ChangeOp::Delete,
            Origin::Scim,
            RecordChange::Config(ConfigData {
                name: "shared.x".into(),
                value: json!(1),
            }),
        );
        let none = target(json!({}));
        assert!(envelope_for(&none, &user).is_none());
        assert!(envelope_for(&none, &node).is_none());
        assert!(envelope_for(&none, &cfg).is_none());
        let all = target(
            json!({"user_sync": true, "entity_types": ["node"], "config_prefixes": ["shared."]}),
        );
        let e = envelope_for(&all, &user).unwrap();
        assert_eq!(e["type"], "user.upsert");
        assert_eq!(e["data"]["userName"], "a");
        assert_eq!(e["occurred_at"], user.occurred_at.as_str());
        let e = envelope_for(&all, &group).unwrap();
        assert_eq!(e["type"], "group.upsert");
        assert_eq!(e["data"]["members_added"], json!([{"value": "u1"}]));
        assert!(e["data"].get("members_removed").is_none());
        let e = envelope_for(&all, &node).unwrap();
        assert_eq!(e["type"], "entity.upsert");
        assert_eq!(
            e["data"],
            json!({"entity_type": "node", "uuid": "n1", "fields": {"title": "T"}})
        );
        let e = envelope_for(&all, &cfg).unwrap();
        assert_eq!(e["type"], "config.delete");
        assert_eq!(e["data"]["name"], "shared.x");
        let other =
            target(json!({"entity_types": ["taxonomy_term"], "config_prefixes": ["system."]}));
        assert!(envelope_for(&other, &node).is_none() && envelope_for(&other, &cfg).is_none());
    }
}
