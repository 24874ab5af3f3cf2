use super::lookup::{Lookup, indexed_lookup};
use super::*;
use crate::queue::store_queue::{StoreQueue, StoreQueueSettings};
use crate::store::embedded::EmbeddedStore;
use provisync_scim::filter::parse;

#[test]
fn or_of_keyed_equalities_is_a_lookup() {
    let f = parse(r#"userName eq "a" or externalId eq "x" or id eq "i""#).unwrap();
    match indexed_lookup(ResourceKind::User, &f) {
        Some(Lookup::AnyOf(keys)) => assert_eq!(
            keys,
            vec![
                (Some(UniqueAttr::UserName), "a".to_string()),
                (Some(UniqueAttr::ExternalId), "x".to_string()),
                (None, "i".to_string()),
            ]
        ),
        _ => panic!("not a keyed lookup"),
    }
    // One branch that is not a keyed equality: a scan.
    let f = parse(r#"userName eq "a" or title eq "x""#).unwrap();
    assert!(indexed_lookup(ResourceKind::User, &f).is_none());
    let f = parse(r#"userName eq "a" or userName sw "b""#).unwrap();
    assert!(indexed_lookup(ResourceKind::User, &f).is_none());
}

#[tokio::test]
async fn search_by_or_of_user_names_finds_each_once() {
    let dir = Directory::new(
        Arc::new(EmbeddedStore::in_memory()),
        SchemaRegistry::builtin(),
    );
    for (name, ext) in [("ann", "e-1"), ("ben", "e-2"), ("cat", "e-3")] {
        dir.create(
                ResourceKind::User,
                &json!({"schemas": [provisync_scim::schema::USER_SCHEMA], "userName": name, "externalId": ext}),
            )
            .await
            .unwrap();
    }
    // Case-insensitive userName, case-exact externalId, a user named twice, one
    // that does not exist.
    let filter = parse(
            r#"userName eq "ANN" or externalId eq "e-1" or externalId eq "E-2" or userName eq "cat" or userName eq "nobody""#,
        )
        .unwrap();
    let r = dir
        .search(
            ResourceKind::User,
            &SearchRequest {
                filter: Some(filter),
                start_index: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut names: Vec<&str> = r
        .resources
        .iter()
        .filter_map(|s| s.resource["userName"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["ann", "cat"]);
    assert_eq!(r.total_results, Some(2));
}

#[test]
fn small_bodies_are_counted_within_a_budget() {
    use super::json_nodes_within;
    let user = json!({"schemas": [provisync_scim::schema::USER_SCHEMA], "userName": "a@example.org",
                      "name": {"givenName": "A", "familyName": "B"},
                      "emails": [{"value": "a@example.org", "primary": true}]});
    assert!(json_nodes_within(&user, 256));
    assert!(!json_nodes_within(&user, 5));
    let members: Vec<Value> = (0..300).map(|i| json!({"value": i.to_string()})).collect();
    assert!(!json_nodes_within(&json!({"members": members}), 256));
    // A long string weighs by its length.
    assert!(!json_nodes_within(
        &json!({"displayName": "x".repeat(64 * 300)}),
        256
    ));
}

/// A directory with change events into a store queue on its own store.
fn with_store_queue(store: &Arc<dyn Store>) -> (Directory, Arc<StoreQueue>) {
    let queue = Arc::new(StoreQueue::new(
        store.clone(),
        "deliver",
        StoreQueueSettings::default(),
    ));
    let dir = Directory::new(store.clone(), SchemaRegistry::builtin()).with_events(
        crate::event::EventSink {
            queue: queue.clone(),
            seal: None,
        },
    );
    (dir, queue)
}

fn user(name: &str) -> Value {
    json!({"schemas": [provisync_scim::schema::USER_SCHEMA], "userName": name})
}

/// With the queue in the directory's own store, a create's change event is its first
/// message in the queue, committed in the create's one transaction: no outbox item to
/// write and remove. A create that fails leaves no message; with the queue in another
/// store the outbox carries the event as before.
#[tokio::test]
async fn a_create_sends_its_event_in_its_own_transaction_when_the_queue_shares_the_store() {
    use crate::event::{ChangeEvent, ChangeOp};
    use crate::queue::Queue;
    use crate::store::{Index, Query};
    let embedded = EmbeddedStore::in_memory();
    let store: Arc<dyn Store> = Arc::new(embedded.clone());
    let (dir, queue) = with_store_queue(&store);
    let outbox = || async {
        store
            .query(&Query::new(
                Index::Gsi1,
                crate::store::keyspace::OUTBOX_BY_AGE,
            ))
            .await
            .unwrap()
            .items
            .len()
    };

    let before = embedded.commit_stats().transactions;
    let ann = dir.create(ResourceKind::User, &user("ann")).await.unwrap();
    assert_eq!(embedded.commit_stats().transactions - before, 1);
    assert_eq!(outbox().await, 0);
    // Taken: refused, and nothing is queued for it.
    assert!(dir.create(ResourceKind::User, &user("ANN")).await.is_err());
    let bodies: Vec<Value> = ["ben", "cat"].iter().map(|n| user(n)).collect();
    let batch = dir
        .create_batch(ResourceKind::User, &bodies, Origin::Import, false)
        .await;
    assert!(batch.iter().all(Result::is_ok));
    assert_eq!(outbox().await, 0);

    let mut got = Vec::new();
    loop {
        let ds = queue.receive(10, std::time::Duration::ZERO).await.unwrap();
        if ds.is_empty() {
            break;
        }
        for d in ds {
            let e = ChangeEvent::from_body(&d.body).unwrap();
            assert_eq!(e.op, ChangeOp::Create);
            assert_eq!(d.group_id, e.resource_id);
            got.push(
                e.resource.unwrap()["userName"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
            queue.ack(&d.receipt).await.unwrap();
        }
    }
    got.sort();
    assert_eq!(got, ["ann", "ben", "cat"]);
    // A later change of the user too, in one transaction; and a delete queued behind it
    // while the update is still in the queue.
    let before = embedded.commit_stats().transactions;
    let patched = dir
        .replace(ResourceKind::User, ann.stored.id(), &user("ann2"), None)
        .await;
    assert!(patched.is_ok(), "{patched:?}");
    dir.delete(ResourceKind::User, ann.stored.id(), None)
        .await
        .unwrap();
    assert_eq!(embedded.commit_stats().transactions - before, 2);
    assert_eq!(outbox().await, 0);
    let mut ops = Vec::new();
    for _ in 0..2 {
        let ds = queue.receive(10, std::time::Duration::ZERO).await.unwrap();
        assert_eq!(ds.len(), 1, "one message of a group at a time");
        ops.push(ChangeEvent::from_body(&ds[0].body).unwrap().op);
        queue.ack(&ds[0].receipt).await.unwrap();
    }
    assert_eq!(ops, [ChangeOp::Update, ChangeOp::Delete]);

    // The queue in another store: the outbox.
    let other: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let elsewhere =
        Directory::new(store.clone(), SchemaRegistry::builtin()).with_events(EventSink {
            queue: Arc::new(StoreQueue::new(
                other,
                "deliver",
                StoreQueueSettings::default(),
            )),
            seal: None,
        });
    let before = embedded.commit_stats().transactions;
    elsewhere
        .create(ResourceKind::User, &user("dan"))
        .await
        .unwrap();
    // The user with its outbox item, then the outbox item's removal once sent.
    assert_eq!(embedded.commit_stats().transactions - before, 2);
}

/// A store that, once, sends a message to the group of the resource being changed just
/// before the change's own transaction (as a concurrent request's publish would).
struct RacingStore {
    inner: Arc<dyn Store>,
    race: std::sync::Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl Store for RacingStore {
    async fn get(&self, key: &crate::store::Key) -> Result<Option<crate::store::Item>, StoreError> {
        self.inner.get(key).await
    }
    async fn get_many(
        &self,
        keys: &[crate::store::Key],
    ) -> Result<Vec<crate::store::Item>, StoreError> {
        self.inner.get_many(keys).await
    }
    async fn query(&self, q: &crate::store::Query) -> Result<crate::store::Page, StoreError> {
        self.inner.query(q).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let group = self.race.lock().unwrap().take();
        if let Some(group) = group {
            use crate::queue::Queue;
            let q = crate::queue::store_queue::StoreQueue::new(
                self.inner.clone(),
                "deliver",
                Default::default(),
            );
            q.send(vec![crate::queue::OutMessage::new(group, "racer", "{}")])
                .await
                .unwrap();
        }
        self.inner.transact(writes).await
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

/// The queue's state of the resource moves between reading it and committing the change
/// (a concurrent send): the change is committed anyway, with its event through the outbox,
/// and it arrives behind the other message.
#[tokio::test]
async fn a_change_that_loses_the_race_on_its_queue_group_goes_through_the_outbox() {
    use crate::event::{ChangeEvent, ChangeOp};
    use crate::queue::Queue;
    let inner: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let racing = Arc::new(RacingStore {
        inner: inner.clone(),
        race: std::sync::Mutex::new(None),
    });
    let store: Arc<dyn Store> = racing.clone();
    let (dir, queue) = with_store_queue(&store);
    let ann = dir.create(ResourceKind::User, &user("ann")).await.unwrap();
    let id = ann.stored.id().to_string();
    let ds = queue.receive(10, std::time::Duration::ZERO).await.unwrap();
    queue.ack(&ds[0].receipt).await.unwrap();

    *racing.race.lock().unwrap() = Some(id.clone());
    let updated = dir
        .replace(ResourceKind::User, &id, &user("ann2"), None)
        .await
        .unwrap();
    assert_eq!(updated.stored.version, 2);
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let ds = queue.receive(10, std::time::Duration::ZERO).await.unwrap();
        assert_eq!(ds.len(), 1);
        bodies.push(ds[0].body.clone());
        queue.ack(&ds[0].receipt).await.unwrap();
    }
    assert_eq!(bodies[0], "{}");
    let e = ChangeEvent::from_body(&bodies[1]).unwrap();
    assert_eq!((e.op, e.version), (ChangeOp::Update, 2));
    // Sent and cleared: nothing is left in the outbox.
    let outbox = inner
        .query(&crate::store::Query::new(
            crate::store::Index::Gsi1,
            crate::store::keyspace::OUTBOX_BY_AGE,
        ))
        .await
        .unwrap();
    assert!(outbox.items.is_empty());
}
