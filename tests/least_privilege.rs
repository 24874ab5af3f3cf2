//! Least privilege, tied to what the code calls: each function's work runs on a store and
//! a queue that record every call (the partition key each names, mapped to the prefix of
//! `store::keyspace` it belongs to), and the rights its role has in `infra/template.yaml`
//! must be exactly those: every call allowed, and no prefix, index or queue action granted
//! that the code did not use.
//!
//! The work is each function's own surface, run through the same code the function runs:
//! the SCIM router (`scim-api`), signed webhooks (`webhook-ingest`), the admin router
//! (`admin-api`), `QueueDeliver` on SQS-shaped records (`queue-deliver`) and one scheduled
//! cycle (`scheduled-sync`). The mapping of store calls to DynamoDB actions is the one of
//! `shared/aws/src/dynamodb.rs` (get: GetItem, get_many: BatchGetItem, query: Query on the
//! table or index, transact: PutItem / DeleteItem / ConditionCheckItem per write), and of
//! queue calls to SQS actions the one of `shared/aws/src/sqs.rs` ([`sqs_actions`]).
//!
//! A new key prefix registered in `keyspace.rs` and used by a function makes this test
//! fail until that function's role lists it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsMessage;
use provisync_core::queue::store_queue::{StoreQueue, StoreQueueSettings};
use provisync_core::queue::{DeadLetter, Delivery, OutMessage, Queue, QueueError};
use provisync_core::store::embedded::EmbeddedStore;
use provisync_core::store::keyspace::{self, Space};
use provisync_core::store::{Index, Item, Key, Page, Query, Store, StoreError, Write};
use provisync_http::auth::{Scope, create_token};
use provisync_tests::peers::FaultyTarget;
use provisync_tests::site::{Site, post, signed_headers};
use provisync_tests::template::{self, Resource};
use provisync_tests::{GROUP_SCHEMA, Hub, PATCH_OP, USER_SCHEMA, q};
use reqwest::Method;
use serde_json::{Value, json};

/// Which part of the table a call reads or writes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Table,
    Index(&'static str),
}

/// One kind of DynamoDB call a function made: action, part, registered key pattern
/// (`USER#*`, or an exact key such as `TARGETS`).
type DynamoCall = (&'static str, Part, String);

#[derive(Default)]
struct Log {
    function: Option<&'static str>,
    dynamo: BTreeMap<&'static str, BTreeSet<DynamoCall>>,
    sqs: BTreeMap<&'static str, BTreeSet<(&'static str, &'static str)>>,
}

/// Who is working now, and what each function called.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Log>>);

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls from now on are `function`'s (`None`: setup, not recorded).
    fn working(&self, function: Option<&'static str>) {
        self.lock().function = function;
    }

    fn dynamo(&self, action: &'static str, part: Part, pk: &str) {
        let mut log = self.lock();
        let Some(f) = log.function else { return };
        let space = match part {
            Part::Table => Space::Pk,
            Part::Index("gsi1") => Space::Gsi1,
            Part::Index(_) => Space::Gsi2,
        };
        let pattern = pattern_of(space, pk);
        log.dynamo
            .entry(f)
            .or_default()
            .insert((action, part, pattern));
    }

    fn sqs(&self, method: &'static str) {
        let mut log = self.lock();
        let Some(f) = log.function else { return };
        for call in sqs_actions(method) {
            log.sqs.entry(f).or_default().insert(*call);
        }
    }
}

/// The `LeadingKeys` pattern of the registered prefix a key belongs to (the longest that
/// matches). A key of no registered prefix fails the test: it must be registered.
fn pattern_of(space: Space, pk: &str) -> String {
    keyspace::ALL
        .iter()
        .filter(|p| p.space == space)
        .filter(|p| {
            if p.exact {
                pk == p.prefix
            } else {
                pk.starts_with(p.prefix)
            }
        })
        .max_by_key(|p| p.prefix.len())
        .map(|p| {
            if p.exact {
                p.prefix.to_string()
            } else {
                format!("{}*", p.prefix)
            }
        })
        .unwrap_or_else(|| panic!("key {pk:?} ({space:?}) has no prefix in store::keyspace"))
}

/// The SQS actions (and on which queue) each `Queue` method of `SqsQueue` calls
/// (`shared/aws/src/sqs.rs`; the dead-letter queue's URL comes from `PROVISYNC_DLQ_URL`,
/// so no `GetQueueAttributes` on the delivery queue to find it).
fn sqs_actions(method: &str) -> &'static [(&'static str, &'static str)] {
    const Q: &str = "DeliveryQueue";
    const DLQ: &str = "DeadLetterQueue";
    match method {
        "send" => &[("SendMessage", Q)],
        "receive" => &[("ReceiveMessage", Q)],
        "ack" => &[("DeleteMessage", Q)],
        "retry_later" => &[("ChangeMessageVisibility", Q)],
        "dead_letters" => &[("ReceiveMessage", DLQ), ("ChangeMessageVisibility", DLQ)],
        "dead_letter_count" => &[("GetQueueAttributes", DLQ)],
        "redrive" | "redrive_one" => &[
            ("ReceiveMessage", DLQ),
            ("DeleteMessage", DLQ),
            ("SendMessage", Q),
        ],
        other => panic!("unknown queue method {other}"),
    }
}

/// What Lambda's SQS event source mapping needs of the function's role
/// (<https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html>, execution role).
const EVENT_SOURCE: &[(&str, &str)] = &[
    ("ReceiveMessage", "DeliveryQueue"),
    ("DeleteMessage", "DeliveryQueue"),
    ("GetQueueAttributes", "DeliveryQueue"),
];

struct RecordingStore {
    inner: EmbeddedStore,
    rec: Recorder,
}

#[async_trait]
impl Store for RecordingStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.rec.dynamo("GetItem", Part::Table, &key.pk);
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        for k in keys {
            self.rec.dynamo("BatchGetItem", Part::Table, &k.pk);
        }
        self.inner.get_many(keys).await
    }
    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let part = match query.index {
            Index::Primary => Part::Table,
            Index::Gsi1 => Part::Index("gsi1"),
            Index::Gsi2 => Part::Index("gsi2"),
        };
        self.rec.dynamo("Query", part, &query.pk);
        self.inner.query(query).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        for w in &writes {
            let (action, pk) = match w {
                Write::Put { item, .. } => ("PutItem", &item.pk),
                Write::Delete { key, .. } => ("DeleteItem", &key.pk),
                Write::Check { key, .. } => ("ConditionCheckItem", &key.pk),
                Write::Add { key, .. } => ("UpdateItem", &key.pk),
            };
            self.rec.dynamo(action, Part::Table, pk);
        }
        self.inner.transact(writes).await
    }
    fn backend(&self) -> &'static str {
        "recording"
    }
}

struct RecordingQueue {
    inner: Arc<StoreQueue>,
    rec: Recorder,
}

#[async_trait]
impl Queue for RecordingQueue {
    async fn send(&self, m: Vec<OutMessage>) -> Result<(), QueueError> {
        self.rec.sqs("send");
        self.inner.send(m).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.rec.sqs("receive");
        self.inner.receive(max, wait).await
    }
    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.rec.sqs("ack");
        self.inner.ack(receipt).await
    }
    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.rec.sqs("retry_later");
        self.inner.retry_later(receipt, delay).await
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.rec.sqs("dead_letters");
        self.inner.dead_letters(limit).await
    }
    async fn dead_letter_count(&self) -> Result<usize, QueueError> {
        self.rec.sqs("dead_letter_count");
        self.inner.dead_letter_count().await
    }
    async fn redrive(&self, limit: usize) -> Result<usize, QueueError> {
        self.rec.sqs("redrive");
        self.inner.redrive(limit).await
    }
    async fn redrive_one(&self, dedup_id: &str) -> Result<bool, QueueError> {
        self.rec.sqs("redrive_one");
        self.inner.redrive_one(dedup_id).await
    }
    fn backend(&self) -> &'static str {
        "recording"
    }
}

/// The recorded hub: the store and queue record, the queue's own items live in a store
/// of their own (SQS is not in the table).
struct Setup {
    hub: Hub,
    rec: Recorder,
    /// The queue without recording: what Lambda's event source mapping does.
    raw_queue: Arc<StoreQueue>,
    scim_token: String,
    admin_token: String,
}

async fn setup() -> Setup {
    let rec = Recorder::default();
    let store: Arc<dyn Store> = Arc::new(RecordingStore {
        inner: EmbeddedStore::in_memory(),
        rec: rec.clone(),
    });
    let raw_queue = Arc::new(StoreQueue::new(
        Arc::new(EmbeddedStore::in_memory()),
        "deliver",
        StoreQueueSettings {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 3,
        },
    ));
    let queue = Arc::new(RecordingQueue {
        inner: raw_queue.clone(),
        rec: rec.clone(),
    });
    let hub = Hub::start_parts(
        store.clone(),
        queue,
        provisync_connectors::connectors_for,
        |_| {},
    )
    .await;
    let scim_token = create_token(store.as_ref(), Scope::Scim, "idp")
        .await
        .unwrap();
    let admin_token = create_token(store.as_ref(), Scope::Admin, "ops")
        .await
        .unwrap();
    Setup {
        hub,
        rec,
        raw_queue,
        scim_token,
        admin_token,
    }
}

impl Setup {
    async fn call(
        &self,
        token: &str,
        method: Method,
        url: String,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.hub.client.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            r = r
                .header("Content-Type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn scim(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(&self.scim_token, method, self.hub.url(path), body)
            .await
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(&self.admin_token, method, self.hub.admin_url(path), body)
            .await
    }

    /// The queued change events as SQS records, in order, as the event source mapping hands
    /// them to `queue-deliver` (taken off the queue without recording).
    async fn records(&self) -> Vec<SqsMessage> {
        let mut out = Vec::new();
        loop {
            let got = self.raw_queue.receive(10, Duration::ZERO).await.unwrap();
            if got.is_empty() {
                return out;
            }
            for d in got {
                // Acked at once: the queue hands out a group's next message only after the
                // one before is done (as SQS FIFO does).
                self.raw_queue.ack(&d.receipt).await.unwrap();
                let mut m = SqsMessage::default();
                m.message_id = Some(uuid::Uuid::new_v4().to_string());
                m.receipt_handle = Some(d.receipt.clone());
                m.body = Some(d.body.clone());
                m.attributes
                    .insert("MessageGroupId".into(), d.group_id.clone());
                m.attributes
                    .insert("MessageDeduplicationId".into(), d.dedup_id.clone());
                m.attributes.insert(
                    "ApproximateReceiveCount".into(),
                    d.receive_count.to_string(),
                );
                out.push(m);
            }
        }
    }
}

fn ok(what: &str, (status, body): (u16, Value)) -> Value {
    assert!((200..300).contains(&status), "{what}: {status} {body}");
    body
}

/// `scim-api`: users and groups through the SCIM router, as an identity provider does.
async fn scim_work(s: &Setup) {
    let user = |name: &str| {
        json!({"schemas": [USER_SCHEMA], "userName": name, "password": "S3cret!pass",
        "emails": [{"value": format!("{name}@example.org"), "primary": true}], "externalId": format!("ext-{name}")})
    };
    let ann = ok(
        "create",
        s.scim(Method::POST, "/Users", Some(user("ann"))).await,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bob = ok(
        "create",
        s.scim(Method::POST, "/Users", Some(user("bob"))).await,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A taken userName: refused by its uniqueness key.
    assert_eq!(
        s.scim(Method::POST, "/Users", Some(user("ann"))).await.0,
        409
    );
    ok(
        "get",
        s.scim(Method::GET, &format!("/Users/{ann}"), None).await,
    );
    ok(
        "by userName",
        s.scim(
            Method::GET,
            &format!("/Users?filter={}", q("userName eq \"ann\"")),
            None,
        )
        .await,
    );
    ok(
        "by externalId",
        s.scim(
            Method::GET,
            &format!("/Users?filter={}", q("externalId eq \"ext-bob\"")),
            None,
        )
        .await,
    );
    ok(
        "scan",
        s.scim(
            Method::GET,
            &format!("/Users?filter={}&count=5", q("emails.value co \"example\"")),
            None,
        )
        .await,
    );
    ok(
        "list",
        s.scim(Method::GET, "/Users?startIndex=1&count=1", None)
            .await,
    );
    ok(
        "patch",
        s.scim(
            Method::PATCH,
            &format!("/Users/{ann}"),
            Some(json!({"schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "active", "value": false}]})),
        )
        .await,
    );
    ok(
        "put",
        s.scim(Method::PUT, &format!("/Users/{bob}"), Some(user("bobby")))
            .await,
    );
    let group = ok(
        "group",
        s.scim(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP_SCHEMA],
        "displayName": "Ops", "members": [{"value": ann}]})),
        )
        .await,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        "members",
        s.scim(
            Method::PATCH,
            &format!("/Groups/{group}"),
            Some(json!({"schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": bob}]},
                       {"op": "remove", "path": format!("members[value eq \"{ann}\"]")}]})),
        )
        .await,
    );
    ok(
        "group get",
        s.scim(Method::GET, &format!("/Groups/{group}"), None).await,
    );
    ok(
        "groups of a user",
        s.scim(Method::GET, &format!("/Users/{bob}"), None).await,
    );
    ok(
        "group by name",
        s.scim(
            Method::GET,
            &format!("/Groups?filter={}", q("displayName eq \"Ops\"")),
            None,
        )
        .await,
    );
    ok(
        "bulk",
        s.scim(
            Method::POST,
            "/Bulk",
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [{"method": "POST", "path": "/Users", "bulkId": "c", "data": user("cat")}]}),
            ),
        )
        .await,
    );
    ok(
        "discovery",
        s.scim(Method::GET, "/ServiceProviderConfig", None).await,
    );
    assert_eq!(
        s.scim(Method::DELETE, &format!("/Groups/{group}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        s.scim(Method::DELETE, &format!("/Users/{ann}"), None)
            .await
            .0,
        204
    );
}

fn accepted((status, body): &(u16, Value)) {
    assert!(
        (200..300).contains(status),
        "webhook answered {status}: {body}"
    );
}

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `webhook-ingest`: a source's signed webhooks (users, groups, entities, configuration),
/// a replay and a bad signature.
async fn webhook_work(s: &Setup) {
    let url = format!("http://{}/webhooks/site", s.hub.addr);
    let send = |env: Value, id: String| {
        let url = url.clone();
        async move {
            let body = env.to_string().into_bytes();
            post(
                &s.hub.client,
                &url,
                &signed_headers(WHSEC, &id, &body),
                body,
            )
            .await
        }
    };
    let env = |kind: &str, data: Value| json!({"type": kind, "occurred_at": chrono::Utc::now().to_rfc3339(), "data": data});
    let user = env(
        "user.upsert",
        json!({"externalId": "s1", "userName": "site-user", "emails": [{"value": "su@example.org"}]}),
    );
    accepted(&send(user.clone(), "m1".into()).await);
    // A replay of the same delivery: acknowledged, not applied.
    accepted(&send(user, "m1".into()).await);
    accepted(
        &send(
            env(
                "user.upsert",
                json!({"externalId": "s2", "userName": "site-user-2"}),
            ),
            "m2".into(),
        )
        .await,
    );
    accepted(&send(env("group.upsert", json!({"externalId": "g1", "displayName": "Site group", "members": [{"value": "s1"}]})), "m3".into()).await);
    accepted(
        &send(
            env(
                "entity.upsert",
                json!({"entity_type": "node", "uuid": "n1", "fields": {"title": "T"}}),
            ),
            "m4".into(),
        )
        .await,
    );
    accepted(
        &send(
            env(
                "config.set",
                json!({"name": "shared.colors", "value": {"primary": "teal"}}),
            ),
            "m5".into(),
        )
        .await,
    );
    accepted(
        &send(
            env(
                "entity.delete",
                json!({"entity_type": "node", "uuid": "n1"}),
            ),
            "m6".into(),
        )
        .await,
    );
    accepted(
        &send(
            env("config.delete", json!({"name": "shared.colors"})),
            "m7".into(),
        )
        .await,
    );
    accepted(
        &send(
            env("group.delete", json!({"externalId": "g1"})),
            "m8".into(),
        )
        .await,
    );
    accepted(&send(env("user.delete", json!({"externalId": "s2"})), "m9".into()).await);
    // A wrong signature: refused (and audited).
    let body = b"{}".to_vec();
    let mut headers = signed_headers(WHSEC, "m10", &body);
    headers.retain(|(k, _)| *k != "webhook-signature");
    headers.push(("webhook-signature", "v1,AAAA".into()));
    assert_eq!(post(&s.hub.client, &url, &headers, body).await.0, 401);
}

/// `queue-deliver`: the change events so far delivered to a SCIM target, a webhook
/// target and one that is gone (disabled); then one to a target that is down (retried).
/// Hands what is queued to `queue-deliver` (recorded as its calls) and returns its answer.
async fn deliver_queued(
    s: &Setup,
    deliver: &provisync_aws::lambda::QueueDeliver,
) -> aws_lambda_events::event::sqs::SqsBatchResponse {
    s.rec.working(None);
    let messages = s.records().await;
    s.rec.working(Some("queue-deliver"));
    let resp = deliver
        .handle(
            messages,
            Some(tokio::time::Instant::now() + Duration::from_secs(120)),
        )
        .await;
    s.rec.working(None);
    resp
}

/// Creates a user over SCIM (recorded as nobody's); its id.
async fn scim_user(s: &Setup, name: &str) -> String {
    s.rec.working(None);
    let (status, u) = s
        .scim(
            Method::POST,
            "/Users",
            Some(json!({"schemas": [USER_SCHEMA], "userName": name})),
        )
        .await;
    assert_eq!(status, 201, "{u}");
    u["id"].as_str().unwrap_or_default().to_string()
}

async fn deliver_work(s: &Setup) {
    use provisync_aws::lambda::QueueDeliver;
    let deliver = QueueDeliver::new(s.hub.deliverer.clone(), s.hub.queue.clone(), 3);
    let resp = deliver_queued(s, &deliver).await;
    assert!(
        resp.batch_item_failures.is_empty(),
        "{:?}",
        resp.batch_item_failures
    );
    // A new user in two groups on the targets, with no time for member calls: it joins
    // one, and leaves the other to a follow-up event (the outbox, then the queue), which
    // the next invocation delivers.
    let mut groups = Vec::new();
    for name in ["crew-a", "crew-b"] {
        let (status, g) = s
            .scim(
                Method::POST,
                "/Groups",
                Some(json!({"schemas": [GROUP_SCHEMA], "displayName": name})),
            )
            .await;
        assert_eq!(status, 201, "{g}");
        groups.push(g["id"].as_str().unwrap_or_default().to_string());
    }
    assert!(
        deliver_queued(s, &deliver)
            .await
            .batch_item_failures
            .is_empty()
    );
    let joy = scim_user(s, "joy").await;
    for g in &groups {
        let (status, body) = s
            .scim(
                Method::PATCH,
                &format!("/Groups/{g}"),
                Some(json!({"schemas": [PATCH_OP], "Operations": [
                    {"op": "add", "path": "members", "value": [{"value": joy}]}]})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    s.hub.deliverer.set_member_work(Duration::ZERO);
    assert!(
        deliver_queued(s, &deliver)
            .await
            .batch_item_failures
            .is_empty()
    );
    s.hub
        .deliverer
        .set_member_work(provisync_core::sync::deliver::MEMBER_WORK);
    let follow_ups = s.records().await;
    assert!(
        follow_ups.iter().any(|r| r
            .body
            .as_deref()
            .is_some_and(|b| b.contains("\"only_targets\""))),
        "no follow-up event queued"
    );
    s.rec.working(Some("queue-deliver"));
    let resp = deliver
        .handle(
            follow_ups,
            Some(tokio::time::Instant::now() + Duration::from_secs(120)),
        )
        .await;
    s.rec.working(None);
    assert!(resp.batch_item_failures.is_empty());
    // A deprovision: the target's guard and the journal of what the account was there;
    // then two more within the hour, past the guard's `max` of 1 on `peer`: held.
    for batch in [vec!["eve"], vec!["fay", "gus"]] {
        let mut ids = Vec::new();
        for name in batch {
            ids.push(scim_user(s, name).await);
        }
        assert!(
            deliver_queued(s, &deliver)
                .await
                .batch_item_failures
                .is_empty()
        );
        for id in &ids {
            assert_eq!(
                s.scim(Method::DELETE, &format!("/Users/{id}"), None)
                    .await
                    .0,
                204
            );
        }
        assert!(
            deliver_queued(s, &deliver)
                .await
                .batch_item_failures
                .is_empty()
        );
    }
    // A target that is down: the delivery is retried later.
    ok(
        "down",
        s.admin(
            Method::PUT,
            "/targets/down",
            Some(json!({"kind": "scim",
        "base_url": "http://127.0.0.1:9/scim/v2", "auth": {"bearer": "t"}})),
        )
        .await,
    );
    scim_user(s, "dan").await;
    let resp = deliver_queued(s, &deliver).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    // An invocation with no time left, for a record at the dead-letter threshold: not
    // tried, sent again.
    scim_user(s, "eve").await;
    let mut messages = s.records().await;
    messages[0]
        .attributes
        .insert("ApproximateReceiveCount".into(), "3".into());
    s.rec.working(Some("queue-deliver"));
    let resp = deliver
        .handle(messages, Some(tokio::time::Instant::now()))
        .await;
    assert!(resp.batch_item_failures.is_empty());
    s.rec.working(None);
}

async fn add_targets(s: &Setup, peer: &FaultyTarget, gone: &FaultyTarget, site: &Site) {
    let scim = |base: &str, token: &str, mode: &str| {
        json!({"kind": "scim", "base_url": base,
        "auth": {"bearer": token}, "mode": mode, "operations": ["create", "update", "deactivate", "delete"],
        "deprovision_guard": {"max": 1, "window_minutes": 60}})
    };
    // Deletions there are deferred: deactivated, a pending deletion kept (`DEFER#`).
    let mut deferring = scim(&peer.base, &peer.token, "realtime");
    deferring["delete_mode"] = json!({"deactivate_then_delete_after_days": 30});
    ok(
        "peer",
        s.admin(Method::PUT, "/targets/peer", Some(deferring)).await,
    );
    ok(
        "gone",
        s.admin(
            Method::PUT,
            "/targets/gone",
            Some(scim(&gone.base, &gone.token, "realtime")),
        )
        .await,
    );
    ok(
        "mirror",
        s.admin(
            Method::PUT,
            "/targets/mirror",
            Some(
                json!({"kind": "webhook", "url": site.url(), "secret": WHSEC,
        "user_sync": true, "entity_types": ["node"], "config_prefixes": ["shared."]}),
            ),
        )
        .await,
    );
    gone.fail(
        provisync_tests::peers::Route::any(),
        provisync_tests::peers::Fault::Status(410, Value::Null),
        1000,
    );
}

/// Per part of the table and kind of call (`read`, `write`), the key patterns.
type Patterns = BTreeMap<(Part, &'static str), BTreeSet<String>>;

fn kind(action: &str) -> &'static str {
    match action {
        "GetItem" | "BatchGetItem" | "Query" => "read",
        // UpdateItem: the sharded counters (`Write::Add`).
        "PutItem" | "DeleteItem" | "ConditionCheckItem" | "UpdateItem" => "write",
        other => panic!("unexpected action {other}"),
    }
}

fn observed(log: &Log, function: &str) -> Patterns {
    let mut out = Patterns::new();
    for (action, part, pattern) in log.dynamo.get(function).into_iter().flatten() {
        out.entry((part.clone(), kind(action)))
            .or_default()
            .insert(pattern.clone());
    }
    out
}

fn union(a: &Patterns, b: &Patterns) -> Patterns {
    let mut out = a.clone();
    for (k, v) in b {
        out.entry(k.clone()).or_default().extend(v.iter().cloned());
    }
    out
}

/// What a role may grant at most. For most functions, exactly what its code was seen to
/// call. `scheduled-sync` pulls sources through the same inbound engine as
/// `webhook-ingest` (what a pull writes depends on what the source holds), so it may also
/// have what the webhooks were seen to use; `admin-api` runs the scheduled cycle on demand
/// (`POST /admin/schedule/run`), so it may have what `scheduled-sync` may.
fn upper_bounds(log: &Log) -> BTreeMap<&'static str, Patterns> {
    let mut out = BTreeMap::new();
    for f in ["scim-api", "webhook-ingest", "queue-deliver"] {
        out.insert(f, observed(log, f));
    }
    let schedule = union(
        &observed(log, "scheduled-sync"),
        &observed(log, "webhook-ingest"),
    );
    out.insert("admin-api", union(&observed(log, "admin-api"), &schedule));
    out.insert("scheduled-sync", schedule);
    out
}

/// The DynamoDB rights of a role: per part and kind, the `LeadingKeys` patterns.
fn granted(function: &str, statements: &[template::Statement]) -> Patterns {
    let mut out = Patterns::new();
    for st in statements
        .iter()
        .filter(|st| st.actions.iter().any(|a| a.starts_with("dynamodb:")))
    {
        let part = match &st.resource {
            Resource::Table => Part::Table,
            Resource::Index(i) if i == "gsi1" => Part::Index("gsi1"),
            Resource::Index(i) if i == "gsi2" => Part::Index("gsi2"),
            other => panic!("{function}: DynamoDB rights on {other:?}"),
        };
        assert!(
            !st.leading_keys.is_empty(),
            "{function}: {} has no LeadingKeys condition",
            st.sid
        );
        let actions: BTreeSet<&str> = st
            .actions
            .iter()
            .map(|a| a.trim_start_matches("dynamodb:"))
            .collect();
        let kinds: BTreeSet<&str> = actions.iter().map(|a| kind(a)).collect();
        assert_eq!(
            kinds.len(),
            1,
            "{function}: {} mixes reads and writes",
            st.sid
        );
        let k = *kinds.iter().next().unwrap();
        let expected: BTreeSet<&str> = match (&part, k) {
            (Part::Table, "read") => ["GetItem", "BatchGetItem", "Query"].into(),
            (Part::Table, _) => {
                ["PutItem", "DeleteItem", "ConditionCheckItem", "UpdateItem"].into()
            }
            (Part::Index(_), _) => ["Query"].into(),
        };
        assert_eq!(actions, expected, "{function}: {}", st.sid);
        out.entry((part, k))
            .or_default()
            .extend(st.leading_keys.iter().cloned());
    }
    out
}

/// The functions' recorded calls against the rights their roles grant.
fn check(s: &Setup) {
    let t = template::template();
    let log = s.rec.lock();
    let bounds = upper_bounds(&log);
    let mut problems = Vec::new();
    for (function, binary) in template::functions(&t) {
        let binary = binary.as_str();
        let statements = template::statements(&t, &template::role_of(&t, &function));
        let seen = observed(&log, binary);
        let have = granted(&function, &statements);
        eprintln!("{binary} used: {seen:?}");
        for (key, patterns) in &seen {
            let granted = have.get(key).cloned().unwrap_or_default();
            let missing: Vec<&String> = patterns.difference(&granted).collect();
            if !missing.is_empty() {
                problems.push(format!("{function}: needs {key:?} on {missing:?}"));
            }
        }
        let bound = bounds.get(binary).cloned().unwrap_or_default();
        for (key, patterns) in &have {
            let allowed = bound.get(key).cloned().unwrap_or_default();
            let excess: Vec<&String> = patterns.iter().filter(|p| !allowed.contains(*p)).collect();
            if !excess.is_empty() {
                problems.push(format!(
                    "{function}: grants {key:?} on {excess:?}, which its code does not use"
                ));
            }
        }
        // SQS.
        let mut want_sqs: BTreeSet<(&str, &str)> = log.sqs.get(binary).cloned().unwrap_or_default();
        if binary == "queue-deliver" {
            want_sqs.extend(EVENT_SOURCE.iter().copied());
        }
        let granted_sqs: BTreeSet<(String, String)> = statements
            .iter()
            .flat_map(|st| {
                st.actions.iter().filter_map(move |a| {
                    let q = match &st.resource {
                        Resource::Named(q) => q.clone(),
                        _ => return None,
                    };
                    a.strip_prefix("sqs:").map(|a| (a.to_string(), q))
                })
            })
            .collect();
        let want_sqs: BTreeSet<(String, String)> = want_sqs
            .iter()
            .map(|(a, q)| (a.to_string(), q.to_string()))
            .collect();
        if granted_sqs != want_sqs {
            problems.push(format!(
                "{function}: SQS rights {granted_sqs:?}, the code calls {want_sqs:?}"
            ));
        }
        // Anything else a role grants is one of: its own logs, X-Ray, the operator key.
        for st in &statements {
            for a in &st.actions {
                let fine = a.starts_with("dynamodb:")
                    || a.starts_with("sqs:")
                    || (a.starts_with("logs:")
                        && st.resource
                            == Resource::Named(format!(
                                "{}Logs",
                                function.trim_end_matches("Function")
                            )))
                    || (a.starts_with("xray:Put") && st.resource == Resource::Any)
                    || (a == "secretsmanager:GetSecretValue"
                        && st.resource == Resource::Named("OperatorKeySecretArn".into()));
                if !fine {
                    problems.push(format!(
                        "{function}: unexpected right {a} on {:?}",
                        st.resource
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "rights differ from what the code calls:\n{}",
        problems.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_function_has_exactly_the_rights_its_code_uses() {
    let s = setup().await;
    let peer = FaultyTarget::start().await;
    let gone = FaultyTarget::start().await;
    let site = Site::start(WHSEC).await;
    let source_peer = FaultyTarget::start().await;
    let scheduled_peer = FaultyTarget::start().await;

    // Setup that an operator does with the admin API (recorded as admin-api's).
    s.rec.working(Some("admin-api"));
    add_targets(&s, &peer, &gone, &site).await;
    ok(
        "source",
        s.admin(
            Method::PUT,
            "/sources/site",
            Some(json!({"secret": WHSEC, "user_sync": true,
        "allowed_fields": ["userName", "emails", "displayName", "members"],
        "entity_types": ["node"], "config_prefixes": ["shared."]})),
        )
        .await,
    );

    s.rec.working(Some("scim-api"));
    scim_work(&s).await;
    s.rec.working(Some("webhook-ingest"));
    webhook_work(&s).await;
    s.rec.working(Some("queue-deliver"));
    deliver_work(&s).await;

    // scheduled-sync: a pull source, a scheduled target, an outbox record left behind.
    s.rec.working(Some("admin-api"));
    s.rec.working(None);
    for name in ["pulled-1", "pulled-2"] {
        let r = s
            .hub
            .client
            .post(format!("{}/Users", source_peer.base))
            .bearer_auth(&source_peer.token)
            .header("Content-Type", "application/scim+json")
            .body(json!({"schemas": [USER_SCHEMA], "userName": name}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = s
        .hub
        .client
        .post(format!("{}/Groups", source_peer.base))
        .bearer_auth(&source_peer.token)
        .header("Content-Type", "application/scim+json")
        .body(json!({"schemas": [GROUP_SCHEMA], "displayName": "Pulled"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Two accounts the hub does not know on the scheduled target: orphans. Its guard
    // allows one deprovision (sent, counted in the window, journaled) and holds the other.
    for name in ["bobby", "ghost"] {
        let r = s
            .hub
            .client
            .post(format!("{}/Users", scheduled_peer.base))
            .bearer_auth(&scheduled_peer.token)
            .header("Content-Type", "application/scim+json")
            .body(json!({"schemas": [USER_SCHEMA], "userName": name}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    s.rec.working(Some("admin-api"));
    ok("pull source", s.admin(Method::PUT, "/sources/idp", Some(json!({"direction": "pull", "user_sync": true,
        "pull": {"kind": "scim", "base_url": source_peer.base, "auth": {"bearer": source_peer.token}}}))).await);
    ok(
        "scheduled target",
        s.admin(
            Method::PUT,
            "/targets/nightly",
            Some(json!({"kind": "scim", "base_url": scheduled_peer.base,
        "auth": {"bearer": scheduled_peer.token}, "mode": "scheduled", "orphans": "deactivate",
        "deprovision_guard": {"max": 1}})),
        )
        .await,
    );
    s.rec.working(None);
    {
        // A deferred deletion that is due: the cycle deletes it (through the guard,
        // journaled).
        use provisync_core::sync::deferred::{Deferred, PendingDelete};
        let mut p = PendingDelete::new(
            "peer",
            "u-deleted",
            "no-such-account",
            1,
            chrono::Utc::now().timestamp() - 2 * 86_400,
        );
        p.name = "old".into();
        Deferred::new(s.hub.store.clone()).put(&p).await.unwrap();
    }
    {
        use provisync_core::event::{ChangeEvent, ChangeOp, Origin, outbox_write};
        let mut e = ChangeEvent::new(
            provisync_scim::ResourceKind::User,
            "u-old",
            ChangeOp::Create,
            Origin::Scim,
        );
        e.occurred_at = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
        s.hub
            .store
            .transact(vec![outbox_write(&e).unwrap()])
            .await
            .unwrap();
    }
    s.rec.working(Some("scheduled-sync"));
    provisync_core::sync::schedule::run_schedule(&s.hub.schedule, Duration::from_secs(60))
        .await
        .expect("cycle");

    // admin-api: everything an operator does.
    s.rec.working(Some("admin-api"));
    admin_work(&s).await;
    s.rec.working(None);
    check(&s);
}

/// `admin-api`: every endpoint an operator uses.
async fn admin_work(s: &Setup) {
    for path in [
        "/targets",
        "/targets/peer",
        "/sources",
        "/sources/site",
        "/entities",
        "/config",
        "/audit",
        "/audit?target=peer",
        "/audit?resource=u-old",
        "/audit?status=refused",
        "/deadletters",
    ] {
        ok(path, s.admin(Method::GET, path, None).await);
    }
    ok(
        "test",
        s.admin(Method::POST, "/targets/peer/test", None).await,
    );
    ok(
        "sync",
        s.admin(Method::POST, "/sync", Some(json!({"target": "peer"})))
            .await,
    );
    s.rec.working(None);
    let (_, users) = s.scim(Method::GET, "/Users?count=1", None).await;
    let user = users["Resources"][0]["id"].as_str().unwrap().to_string();
    s.rec.working(Some("admin-api"));
    ok(
        "sync one",
        s.admin(
            Method::POST,
            "/sync",
            Some(json!({"target": "peer", "user": user})),
        )
        .await,
    );
    ok(
        "sync some",
        s.admin(
            Method::POST,
            "/sync",
            Some(json!({"target": "peer", "filter": "userName sw \"b\""})),
        )
        .await,
    );
    ok(
        "reconcile",
        s.admin(
            Method::POST,
            "/sync",
            Some(json!({"target": "peer", "reconcile": true})),
        )
        .await,
    );
    ok(
        "schedule",
        s.admin(Method::POST, "/schedule/run?budget=20", None).await,
    );
    ok(
        "redrive",
        s.admin(Method::POST, "/deadletters/redrive", None).await,
    );
    // Plans: what a reconcile and a definition change would send, nothing sent.
    ok(
        "reconcile plan",
        s.admin(
            Method::POST,
            "/sync",
            Some(json!({"target": "peer", "reconcile": true, "plan": true})),
        )
        .await,
    );
    ok(
        "sync plan",
        s.admin(
            Method::POST,
            "/sync",
            Some(json!({"target": "peer", "filter": "userName sw \"b\"", "plan": true})),
        )
        .await,
    );
    let (_, peer_def) = s.admin(Method::GET, "/targets/peer", None).await;
    let mut scoped = peer_def.clone();
    scoped["scope_filter"] = json!("userName eq \"nobody\"");
    ok(
        "definition plan",
        s.admin(Method::PUT, "/targets/peer?plan=true", Some(scoped))
            .await,
    );
    // A source's connection test (the pull source's peer).
    let (status, body) = s.admin(Method::POST, "/sources/idp/test", None).await;
    assert!(status < 500, "source test: {status} {body}");
    // The deprovisions the guard held on `peer` (deliver_work): listed, then released.
    let (_, held) = s.admin(Method::GET, "/targets/peer/held", None).await;
    assert!(
        held["held"].as_array().is_some_and(|h| !h.is_empty()),
        "nothing held: {held}"
    );
    ok(
        "release",
        s.admin(Method::POST, "/targets/peer/held/release", Some(json!({})))
            .await,
    );
    // The console: a session opened with the token, then used by its cookie (a read and
    // a change with its CSRF token), the overview and the operations chart; a target's
    // pace and an undo plan.
    let resp = s
        .hub
        .client
        .post(format!("http://{}/console/session", s.hub.addr))
        .header("Content-Type", "application/json")
        .body(json!({"token": s.admin_token}).to_string())
        .send()
        .await
        .expect("sign in");
    assert!(resp.status().is_success(), "sign in: {}", resp.status());
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()
                .filter(|c| c.starts_with("provisync_session="))
        })
        .expect("session cookie")
        .to_string();
    let session: Value = resp.json().await.expect("session");
    let csrf = session["csrf"].as_str().expect("csrf").to_string();
    let r = s
        .hub
        .client
        .get(s.hub.admin_url("/overview"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("overview by cookie");
    assert_eq!(r.status(), 200, "overview by cookie");
    let r = s
        .hub
        .client
        .delete(format!("http://{}/console/session", s.hub.addr))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .expect("sign out");
    assert_eq!(r.status(), 204, "sign out");
    for path in ["/overview", "/stats/operations", "/targets/peer/pace"] {
        ok(path, s.admin(Method::GET, path, None).await);
    }
    ok(
        "undo plan",
        s.admin(
            Method::POST,
            "/targets/peer/undo",
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        )
        .await,
    );
    assert_eq!(s.admin(Method::DELETE, "/targets/down", None).await.0, 204);
    assert_eq!(s.admin(Method::DELETE, "/sources/idp", None).await.0, 204);
}
