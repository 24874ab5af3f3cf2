use super::*;
use crate::directory::keys::UniqueAttr;
use crate::event::EventSink;
use crate::event::{ChangeEvent, ChangeOp, Origin, RecordChange};
use crate::queue::Queue;
use crate::queue::store_queue::{StoreQueue, StoreQueueSettings};
use crate::records::ConfigData;
use crate::store::embedded::EmbeddedStore;
use crate::target::Targets;
use provisync_scim::SchemaRegistry;
use serde_json::json;

struct T {
    inbound: Inbound,
    queue: Arc<dyn Queue>,
    dir: Directory,
}

fn setup() -> T {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let queue: Arc<dyn Queue> = Arc::new(StoreQueue::new(
        store.clone(),
        "q",
        StoreQueueSettings::default(),
    ));
    let dir = Directory::new(store.clone(), SchemaRegistry::builtin()).with_events(EventSink {
        queue: queue.clone(),
        seal: None,
    });
    let targets = Targets::new(
        store.clone(),
        Arc::new(crate::crypto::SecretBox::generate().0),
    );
    T {
        inbound: Inbound::new(dir.clone(), Audit::new(store), targets),
        queue,
        dir,
    }
}

fn source(v: Value) -> SourceConfig {
    let mut base = json!({"id": "site-a", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]});
    for (k, x) in v.as_object().unwrap() {
        base[k] = x.clone();
    }
    serde_json::from_value(base).unwrap()
}

/// An envelope. Its `occurred_at`, written as a day in 2025 for readability, is moved to
/// the last few hours (by the same offset for every envelope, so their order holds):
/// webhooks older than the source's window are refused.
fn env(kind: &str, at: &str, data: Value) -> Envelope {
    let at = match parse_time(at) {
        Some(t) => (t + recent_offset()).to_rfc3339(),
        None => at.to_string(),
    };
    serde_json::from_value(json!({"type": kind, "occurred_at": at, "data": data})).unwrap()
}

/// From 2025-01-01T09:00:00Z to six hours ago.
fn recent_offset() -> chrono::Duration {
    static OFFSET: std::sync::OnceLock<chrono::Duration> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        let base = parse_time("2025-01-01T09:00:00Z").unwrap();
        (Utc::now() - chrono::Duration::hours(6)) - base
    })
}

/// Every queued event (FIFO groups release one message at a time: drain in rounds).
async fn events(q: &Arc<dyn Queue>) -> Vec<ChangeEvent> {
    let mut out = Vec::new();
    loop {
        let got = q.receive(100, std::time::Duration::ZERO).await.unwrap();
        if got.is_empty() {
            return out;
        }
        for d in &got {
            q.ack(&d.receipt).await.unwrap();
            out.push(ChangeEvent::from_body(&d.body).unwrap());
        }
    }
}

fn alice(given: &str) -> Value {
    json!({"externalId": "42", "userName": "alice", "name": {"givenName": given},
            "emails": [{"value": "alice@example.com", "primary": true}]})
}

#[tokio::test]
async fn user_upsert_echo_stale_replay_delete() {
    let t = setup();
    let src = source(json!({"user_sync": true}));
    let a = |at, given| env("user.upsert", at, alice(given));
    assert_eq!(
        t.inbound
            .apply(&src, &a("2025-01-01T10:00:00Z", "Alice"), Some("d1"))
            .await,
        Ok(Applied::Created)
    );
    let ev = events(&t.queue).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].op, ChangeOp::Create);
    assert_eq!(
        ev[0].origin,
        Origin::Webhook {
            source: "site-a".into()
        }
    );
    let user = t
        .dir
        .find_unique(ResourceKind::User, UniqueAttr::UserName, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.resource["name"]["givenName"], "Alice");
    // The site's id is a link, not the hub's externalId.
    assert!(user.resource.get("externalId").is_none());
    // Replay: acknowledged, not applied again.
    assert_eq!(
        t.inbound
            .apply(&src, &a("2025-01-01T10:00:00Z", "Alice"), Some("d1"))
            .await,
        Ok(Applied::Replay)
    );
    // The same content again (an echo): no event.
    assert_eq!(
        t.inbound
            .apply(&src, &a("2025-01-01T10:00:05Z", "Alice"), Some("d2"))
            .await,
        Ok(Applied::Unchanged)
    );
    assert!(events(&t.queue).await.is_empty());
    // Newer change applies; an older one is stale and leaves it alone.
    assert_eq!(
        t.inbound
            .apply(&src, &a("2025-01-01T11:00:00Z", "Alicia"), Some("d3"))
            .await,
        Ok(Applied::Updated)
    );
    assert_eq!(
        t.inbound
            .apply(&src, &a("2025-01-01T10:30:00Z", "Old"), Some("d4"))
            .await,
        Ok(Applied::Stale)
    );
    let now = t.dir.load(ResourceKind::User, user.id()).await.unwrap();
    assert_eq!(now.resource["name"]["givenName"], "Alicia");
    assert_eq!(events(&t.queue).await.len(), 1);
    // Delete through the link.
    assert_eq!(
        t.inbound
            .apply(
                &src,
                &env(
                    "user.delete",
                    "2025-01-01T12:00:00Z",
                    json!({"externalId": "42"})
                ),
                Some("d5")
            )
            .await,
        Ok(Applied::Deleted)
    );
    assert!(t.dir.load(ResourceKind::User, user.id()).await.is_err());
    // An upsert older than the delete does not bring it back.
    assert_eq!(
        t.inbound
            .apply(&src, &a("2025-01-01T11:30:00Z", "Back"), Some("d6"))
            .await,
        Ok(Applied::Stale)
    );
}

#[tokio::test]
async fn policy_refusals_store_nothing() {
    let t = setup();
    let off = source(json!({}));
    let at = "2025-01-01T10:00:00Z";
    assert!(matches!(
        t.inbound.apply(&off, &env("user.upsert", at, alice("A")), Some("x1")).await,
        Err(InboundError::Forbidden(m)) if m.contains("user_sync")
    ));
    let on = source(json!({"user_sync": true}));
    for (field, value) in [
        ("active", json!(false)),
        ("roles", json!([{"value": "admin"}])),
        ("password", json!("pw")),
    ] {
        let mut d = alice("A");
        d[field] = value;
        let r = t
            .inbound
            .apply(&on, &env("user.upsert", at, d), Some("x2"))
            .await;
        assert!(
            matches!(&r, Err(InboundError::Forbidden(m)) if m.contains(field)),
            "{r:?}"
        );
    }
    // Explicitly allowed: accepted.
    let allow = source(
        json!({"user_sync": true, "allowed_fields": ["userName", "name", "emails", "active"]}),
    );
    let mut d = alice("A");
    d["active"] = json!(true);
    assert_eq!(
        t.inbound
            .apply(&allow, &env("user.upsert", at, d), Some("x3"))
            .await,
        Ok(Applied::Created)
    );
    // Entities and configuration outside the allowlists.
    let ent = env(
        "entity.upsert",
        at,
        json!({"entity_type": "node", "uuid": "u1", "fields": {"title": "T"}}),
    );
    assert!(matches!(
        t.inbound.apply(&on, &ent, None).await,
        Err(InboundError::Forbidden(_))
    ));
    let cfg = env(
        "config.set",
        at,
        json!({"name": "system.site", "value": {"name": "X"}}),
    );
    let some = source(json!({"config_prefixes": ["shared."]}));
    assert!(matches!(
        t.inbound.apply(&some, &cfg, None).await,
        Err(InboundError::Forbidden(_))
    ));
    assert!(
        t.inbound
            .records()
            .get::<ConfigData>(&Key::new("CONFIG#system.site", "CONFIG"))
            .await
            .unwrap()
            .is_none()
    );
    // Malformed.
    assert!(matches!(
        t.inbound
            .apply(&on, &env("user.upsert", "yesterday", alice("A")), None)
            .await,
        Err(InboundError::Malformed(_))
    ));
    assert!(matches!(
        t.inbound
            .apply(
                &on,
                &env("user.upsert", at, json!({"userName": "no-id"})),
                None
            )
            .await,
        Err(InboundError::Malformed(_))
    ));
    // The refusals are audited with their reason.
    let (entries, _) = t.inbound.audit.query(&Default::default()).await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.status == AuditStatus::Refused && e.detail.contains("allowed_fields"))
    );
}

#[tokio::test]
async fn entities_and_config_last_writer_wins() {
    let t = setup();
    let src = source(json!({"entity_types": ["node"], "config_prefixes": ["shared."]}));
    let node = |at, title| {
        env(
            "entity.upsert",
            at,
            json!({"entity_type": "node", "uuid": "n1", "langcode": "en", "fields": {"title": title}}),
        )
    };
    assert_eq!(
        t.inbound
            .apply(&src, &node("2025-01-01T10:00:00Z", "One"), Some("e1"))
            .await,
        Ok(Applied::Created)
    );
    assert_eq!(
        t.inbound
            .apply(&src, &node("2025-01-01T10:01:00Z", "One"), Some("e2"))
            .await,
        Ok(Applied::Unchanged)
    );
    assert_eq!(
        t.inbound
            .apply(&src, &node("2025-01-01T09:00:00Z", "Zero"), Some("e3"))
            .await,
        Ok(Applied::Stale)
    );
    let ev = events(&t.queue).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].resource_id, "ENTITY#node#n1#en");
    assert!(matches!(&ev[0].record, Some(RecordChange::Entity(e)) if e.fields["title"] == "One"));
    let set = |at, v| {
        env(
            "config.set",
            at,
            json!({"name": "shared.colors", "value": v}),
        )
    };
    assert_eq!(
        t.inbound
            .apply(&src, &set("2025-01-01T10:00:00Z", json!({"a": 1})), None)
            .await,
        Ok(Applied::Created)
    );
    assert_eq!(
        t.inbound
            .apply(
                &src,
                &env(
                    "config.delete",
                    "2025-01-01T10:05:00Z",
                    json!({"name": "shared.colors"})
                ),
                None
            )
            .await,
        Ok(Applied::Deleted)
    );
    assert_eq!(
        t.inbound
            .apply(&src, &set("2025-01-01T10:03:00Z", json!({"a": 2})), None)
            .await,
        Ok(Applied::Stale)
    );
    let export = t
        .inbound
        .records()
        .export_entities(None, None, 100)
        .await
        .unwrap();
    assert_eq!(export.records.len(), 1);
    assert!(
        t.inbound
            .records()
            .export_config(None, None, 100)
            .await
            .unwrap()
            .records
            .is_empty()
    );
    let ev = events(&t.queue).await;
    assert_eq!(
        ev.iter().map(|e| e.op).collect::<Vec<_>>(),
        vec![ChangeOp::Create, ChangeOp::Delete]
    );
}

#[tokio::test]
async fn unlinked_users_are_those_without_a_live_link() {
    let t = setup();
    let src = source(json!({"user_sync": true}));
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        t.inbound
            .unlinked_users(&src.id, &ids(&["42", "43"]))
            .await
            .unwrap(),
        ids(&["42", "43"])
    );
    t.inbound
        .apply(
            &src,
            &env("user.upsert", "2025-01-01T10:00:00Z", alice("A")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        t.inbound
            .unlinked_users(&src.id, &ids(&["42", "43"]))
            .await
            .unwrap(),
        ids(&["43"])
    );
    // Another source's link does not count.
    assert_eq!(
        t.inbound
            .unlinked_users("site-b", &ids(&["42"]))
            .await
            .unwrap(),
        ids(&["42"])
    );
    // After a delete the link is a tombstone: unlinked again.
    t.inbound
        .apply(
            &src,
            &env(
                "user.delete",
                "2025-01-01T11:00:00Z",
                json!({"externalId": "42"}),
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        t.inbound
            .unlinked_users(&src.id, &ids(&["42"]))
            .await
            .unwrap(),
        ids(&["42"])
    );
}

#[tokio::test]
async fn links_written_before_ownership_was_recorded_only_unlink() {
    let t = setup();
    let src = source(json!({"user_sync": true}));
    let created = t
        .dir
        .create(
            ResourceKind::User,
            &json!({"schemas": [ResourceKind::User.core_schema()], "userName": "old"}),
        )
        .await
        .unwrap();
    let id = created.stored.id().to_string();
    // A link as the hub stored them before: no `ownership`.
    let key = ownership::source_link_key("site-a", ResourceKind::User, "9");
    let legacy = json!({"hub_id": id, "occurred_at": "2025-01-01T09:00:00Z"});
    t.inbound
        .store()
        .transact(vec![Write::put_new(Item::new(
            key.pk,
            key.sk,
            legacy.to_string().into_bytes(),
        ))])
        .await
        .unwrap();
    // Its source still updates the user through it...
    let upsert = env(
        "user.upsert",
        "2025-01-01T10:00:00Z",
        json!({"externalId": "9", "userName": "old", "nickName": "o"}),
    );
    assert_eq!(
        t.inbound.apply(&src, &upsert, Some("l1")).await,
        Ok(Applied::Updated)
    );
    // ... but its delete only unlinks (who created the user is unknown).
    let delete = env(
        "user.delete",
        "2025-01-01T11:00:00Z",
        json!({"externalId": "9"}),
    );
    assert_eq!(
        t.inbound.apply(&src, &delete, Some("l2")).await,
        Ok(Applied::Unlinked)
    );
    assert!(t.dir.load(ResourceKind::User, &id).await.is_ok());
    let (entries, _) = t.inbound.audit.query(&Default::default()).await.unwrap();
    assert!(
        entries.iter().any(|e| e.status == AuditStatus::Unlinked
            && e.resource_id == id
            && e.actor.as_deref() == Some("source:site-a")),
        "{entries:?}"
    );
}

#[tokio::test]
async fn repeated_refusals_are_counted_into_the_next_entry() {
    let mut t = setup();
    t.inbound = t
        .inbound
        .with_refusal_window(std::time::Duration::from_millis(200));
    for _ in 0..5 {
        t.inbound
            .record_refusal("site-a", None, "signature: no signature matches")
            .await;
    }
    let refused = |t: &T| {
        let audit = t.inbound.audit.clone();
        async move {
            let (entries, _) = audit.query(&Default::default()).await.unwrap();
            entries
                .into_iter()
                .filter(|e| e.status == AuditStatus::Refused)
                .map(|e| e.detail)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(refused(&t).await.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    t.inbound
        .record_refusal("site-a", None, "signature: no signature matches")
        .await;
    let details = refused(&t).await;
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details.iter().any(|d| d.contains("and 4 more like it")),
        "{details:?}"
    );
}

#[test]
fn the_window_of_accepted_occurred_at() {
    let now = parse_time("2025-06-01T12:00:00Z").unwrap();
    let src = source(json!({}));
    let short = source(json!({"max_event_age_secs": 600}));
    let at = |s: i64| now + chrono::Duration::seconds(s);
    assert!(check_window(&src, at(-3 * 24 * 3600), now).is_ok());
    assert!(check_window(&src, at(-3 * 24 * 3600 - 1), now).is_err());
    assert!(check_window(&short, at(-600), now).is_ok());
    assert!(check_window(&short, at(-601), now).is_err());
    assert!(check_window(&src, at(FUTURE_SKEW_SECS), now).is_ok());
    let ahead = check_window(&src, at(FUTURE_SKEW_SECS + 1), now).unwrap_err();
    assert!(ahead.to_string().contains("ahead"), "{ahead}");
    // Replay markers outlive the window.
    assert!(replay_ttl_secs(&short) > 600);
}

#[tokio::test]
async fn a_record_change_no_newer_than_its_delete_is_stale() {
    let t = setup();
    let src = source(json!({"config_prefixes": ["shared."]}));
    let at = "2025-01-01T10:00:00Z";
    let set = |v| env("config.set", at, json!({"name": "shared.x", "value": v}));
    assert_eq!(
        t.inbound.apply(&src, &set(json!(1)), None).await,
        Ok(Applied::Created)
    );
    let del = env("config.delete", at, json!({"name": "shared.x"}));
    assert_eq!(
        t.inbound.apply(&src, &del, None).await,
        Ok(Applied::Deleted)
    );
    assert_eq!(
        t.inbound.apply(&src, &set(json!(2)), None).await,
        Ok(Applied::Stale)
    );
}
