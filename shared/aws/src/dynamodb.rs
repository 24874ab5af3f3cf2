//! The DynamoDB [`Store`]: one table, the layout of `infra/template.yaml` (the key schema,
//! indexes and TTL attribute are the constants in [`crate::table`]).
//!
//! Attributes of every item:
//!
//! | attribute | type | meaning |
//! | --- | --- | --- |
//! | `pk`, `sk` | S | primary key |
//! | `gsi1pk`, `gsi1sk` | S | index `gsi1` key (both present or both absent) |
//! | `gsi2pk`, `gsi2sk` | S | index `gsi2` key |
//! | `v` | N | optimistic-concurrency version |
//! | `ttl` | N | expiry, epoch seconds (DynamoDB TTL attribute); absent = never |
//! | `data` | B | payload bytes (JSON for every record the hub writes). Binary, so any bytes round-trip; an `S` value is accepted on read as its UTF-8 bytes. |
//! | `n` | N | a counter's value (`Write::Add` is `ADD n :delta, v :1`); read back as the item's data, in decimal |
//!
//! DynamoDB deletes expired items late (moto never): reads filter them out and write
//! conditions treat an item whose `ttl` has passed as absent, exactly as the embedded store.
//!
//! Throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`,
//! `RequestLimitExceeded`, and the same reasons inside a cancelled transaction) is retried
//! with exponential backoff and full jitter on top of the SDK's own retries, then reported
//! as [`StoreError::Throttled`]. A transaction cancelled for a `TransactionConflict`
//! (another transaction held one of its items: a shared counter makes this common under
//! concurrent writes) applied nothing, so it is retried the same way before it is
//! reported as [`StoreError::Conflict`]. Every other failure is
//! [`StoreError::Unavailable`] (or [`StoreError::Invalid`] for a `ValidationException`).
//! Nothing here panics on a response.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put, TransactWriteItem, Update,
};

use crate::table::{
    ATTR_COUNTER, ATTR_DATA, ATTR_TTL, ATTR_VERSION, GSI1_NAME, GSI1_PK, GSI1_SK, GSI2_NAME,
    GSI2_PK, GSI2_SK, PK, SK,
};
use provisync_core::store::{
    Condition, Cursor, Index, Item, Key, Page, Query, Store, StoreError, Write, check_transaction,
    now_epoch,
};

type Attrs = HashMap<String, AttributeValue>;

/// `BatchGetItem` reads at most this many keys per call.
const BATCH_GET_MAX: usize = 100;
/// Attempts (first try included) for throttled calls and unprocessed batch keys.
const MAX_ATTEMPTS: u32 = 6;
const BACKOFF_BASE_MS: u64 = 25;
const BACKOFF_CAP_MS: u64 = 2_000;

const THROTTLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "Throttling",
];
/// Cancellation reason codes (inside `TransactionCanceledException`) that mean "slow down".
const THROTTLE_REASONS: &[&str] = &[
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
];

/// [`Store`] on one DynamoDB table. Cheap to clone (the SDK client is shared).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store on `table` through an already built client (build clients once per process:
    /// see [`crate::AwsClients`]).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn put_single(&self, item: &Item, condition: &Condition) -> Result<(), StoreError> {
        let attrs = to_attrs(item);
        let cond = ConditionExpr::new(condition, now_epoch(), false);
        retrying(|| {
            let req = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(attrs.clone()))
                .set_condition_expression(cond.expr.clone())
                .set_expression_attribute_names(cond.names())
                .set_expression_attribute_values(cond.values());
            async move {
                req.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify("PutItem", e, true))
            }
        })
        .await
    }

    async fn delete_single(&self, key: &Key, condition: &Condition) -> Result<(), StoreError> {
        let cond = ConditionExpr::new(condition, now_epoch(), false);
        retrying(|| {
            let req = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key_attrs(key)))
                .set_condition_expression(cond.expr.clone())
                .set_expression_attribute_names(cond.names())
                .set_expression_attribute_values(cond.values());
            async move {
                req.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify("DeleteItem", e, true))
            }
        })
        .await
    }

    async fn add_single(
        &self,
        key: &Key,
        delta: i64,
        condition: &Condition,
    ) -> Result<(), StoreError> {
        let add = CounterAdd::new(delta, condition, now_epoch());
        retrying(|| {
            let req = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key_attrs(key)))
                .update_expression(CounterAdd::EXPR)
                .set_condition_expression(add.condition.clone())
                .set_expression_attribute_names(Some(add.names.clone()))
                .set_expression_attribute_values(Some(add.values.clone()));
            async move {
                req.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify("UpdateItem", e, true))
            }
        })
        .await
    }

    fn transact_item(&self, w: &Write, now: i64) -> Result<TransactWriteItem, StoreError> {
        let built = match w {
            Write::Put { item, condition } => {
                let c = ConditionExpr::new(condition, now, false);
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(to_attrs(item)))
                    .set_condition_expression(c.expr.clone())
                    .set_expression_attribute_names(c.names())
                    .set_expression_attribute_values(c.values())
                    .build()
                    .map(|p| TransactWriteItem::builder().put(p).build())
            }
            Write::Delete { key, condition } => {
                let c = ConditionExpr::new(condition, now, false);
                Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attrs(key)))
                    .set_condition_expression(c.expr.clone())
                    .set_expression_attribute_names(c.names())
                    .set_expression_attribute_values(c.values())
                    .build()
                    .map(|d| TransactWriteItem::builder().delete(d).build())
            }
            Write::Check { key, condition } => {
                // A ConditionCheck needs an expression even for "always true".
                let c = ConditionExpr::new(condition, now, true);
                ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attrs(key)))
                    .set_condition_expression(c.expr.clone())
                    .set_expression_attribute_names(c.names())
                    .set_expression_attribute_values(c.values())
                    .build()
                    .map(|c| TransactWriteItem::builder().condition_check(c).build())
            }
            Write::Add {
                key,
                delta,
                condition,
            } => {
                let add = CounterAdd::new(*delta, condition, now);
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attrs(key)))
                    .update_expression(CounterAdd::EXPR)
                    .set_condition_expression(add.condition)
                    .set_expression_attribute_names(Some(add.names))
                    .set_expression_attribute_values(Some(add.values))
                    .build()
                    .map(|u| TransactWriteItem::builder().update(u).build())
            }
        };
        built.map_err(|e| StoreError::Invalid(format!("transaction item: {e}")))
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = retrying(|| {
            let req = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key_attrs(key)))
                .consistent_read(true);
            async move { req.send().await.map_err(|e| classify("GetItem", e, false)) }
        })
        .await?;
        match out.item {
            Some(attrs) => {
                let item = from_attrs(attrs)?;
                Ok((!item.is_expired(now_epoch())).then_some(item))
            }
            None => Ok(None),
        }
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        // BatchGetItem refuses duplicate keys.
        let mut seen = HashSet::new();
        let unique: Vec<&Key> = keys.iter().filter(|k| seen.insert(*k)).collect();
        let now = now_epoch();
        let mut out = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let mut pending: Vec<Attrs> = chunk.iter().map(|k| key_attrs(k)).collect();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                if attempt > 0 {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(StoreError::Throttled);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                attempt += 1;
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Invalid(format!("BatchGetItem: {e}")))?;
                let resp = retrying(|| {
                    let req = self
                        .client
                        .batch_get_item()
                        .request_items(&self.table, request.clone());
                    async move {
                        req.send()
                            .await
                            .map_err(|e| classify("BatchGetItem", e, false))
                    }
                })
                .await?;
                if let Some(mut responses) = resp.responses {
                    for attrs in responses.remove(&self.table).unwrap_or_default() {
                        let item = from_attrs(attrs)?;
                        if !item.is_expired(now) {
                            out.push(item);
                        }
                    }
                }
                if let Some(ka) = resp
                    .unprocessed_keys
                    .and_then(|mut unprocessed| unprocessed.remove(&self.table))
                {
                    pending = ka.keys;
                }
            }
        }
        Ok(out)
    }

    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let (index_name, pk_attr, sk_attr) = match q.index {
            Index::Primary => (None, PK, SK),
            Index::Gsi1 => (Some(GSI1_NAME), GSI1_PK, GSI1_SK),
            Index::Gsi2 => (Some(GSI2_NAME), GSI2_PK, GSI2_SK),
        };
        let mut names = HashMap::from([("#pk".to_string(), pk_attr.to_string())]);
        let mut values = HashMap::from([(":pk".to_string(), AttributeValue::S(q.pk.clone()))]);
        let mut key_cond = "#pk = :pk".to_string();
        if let Some(prefix) = q.sk_prefix.as_deref().filter(|p| !p.is_empty()) {
            names.insert("#sk".into(), sk_attr.into());
            values.insert(":prefix".into(), AttributeValue::S(prefix.to_string()));
            key_cond.push_str(" AND begins_with(#sk, :prefix)");
        }
        let limit = q.limit.clamp(1, i32::MAX as usize);
        let mut start = q.after.as_ref().map(|c| cursor_to_key(q.index, &q.pk, c));
        let now = now_epoch();
        let mut items = Vec::new();
        let mut next = None;
        // Expired items are filtered here, so a DynamoDB page can come back short: keep
        // reading until the page is full or the partition is exhausted.
        loop {
            let want = (limit - items.len()) as i32;
            let resp = retrying(|| {
                let req = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .set_index_name(index_name.map(str::to_string))
                    .key_condition_expression(&key_cond)
                    .set_expression_attribute_names(Some(names.clone()))
                    .set_expression_attribute_values(Some(values.clone()))
                    .set_exclusive_start_key(start.clone())
                    .limit(want)
                    .scan_index_forward(!q.descending)
                    // Index reads cannot be strongly consistent.
                    .consistent_read(q.index == Index::Primary);
                async move { req.send().await.map_err(|e| classify("Query", e, false)) }
            })
            .await?;
            for attrs in resp.items.unwrap_or_default() {
                let item = from_attrs(attrs)?;
                if !item.is_expired(now) {
                    items.push(item);
                }
            }
            match resp.last_evaluated_key {
                Some(lek) if items.len() >= limit => {
                    next = Some(key_to_cursor(q.index, &lek)?);
                    break;
                }
                Some(lek) => start = Some(lek),
                None => break,
            }
        }
        Ok(Page { items, next })
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        check_transaction(&writes)?;
        if let [single] = writes.as_slice() {
            match single {
                Write::Put { item, condition } => return self.put_single(item, condition).await,
                Write::Delete { key, condition } => {
                    return self.delete_single(key, condition).await;
                }
                Write::Add {
                    key,
                    delta,
                    condition,
                } => return self.add_single(key, *delta, condition).await,
                Write::Check { .. } => {}
            }
        }
        let now = now_epoch();
        let items = writes
            .iter()
            .map(|w| self.transact_item(w, now))
            .collect::<Result<Vec<_>, _>>()?;
        retrying(|| {
            let req = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()));
            async move { req.send().await.map(|_| ()).map_err(classify_transaction) }
        })
        .await
    }

    fn backend(&self) -> &'static str {
        "dynamodb"
    }
}

/// A condition as a DynamoDB expression. `ttl <= now` means expired, as in
/// [`Item::is_expired`], and an expired item counts as absent.
struct ConditionExpr {
    expr: Option<String>,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl ConditionExpr {
    fn new(c: &Condition, now: i64, needs_expr: bool) -> Self {
        let live = "(attribute_not_exists(#ttl) OR #ttl > :now)";
        let now_v = (":now", AttributeValue::N(now.to_string()));
        match c {
            Condition::None if needs_expr => ConditionExpr {
                expr: Some("attribute_exists(#pk) OR attribute_not_exists(#pk)".into()),
                names: vec![("#pk", PK)],
                values: vec![],
            },
            Condition::None => ConditionExpr {
                expr: None,
                names: vec![],
                values: vec![],
            },
            Condition::NotExists => ConditionExpr {
                expr: Some("attribute_not_exists(#pk) OR #ttl <= :now".into()),
                names: vec![("#pk", PK), ("#ttl", ATTR_TTL)],
                values: vec![now_v],
            },
            Condition::Exists => ConditionExpr {
                expr: Some(format!("attribute_exists(#pk) AND {live}")),
                names: vec![("#pk", PK), ("#ttl", ATTR_TTL)],
                values: vec![now_v],
            },
            Condition::VersionIs(v) => ConditionExpr {
                expr: Some(format!("#v = :v AND {live}")),
                names: vec![("#v", ATTR_VERSION), ("#ttl", ATTR_TTL)],
                values: vec![now_v, (":v", AttributeValue::N(v.to_string()))],
            },
        }
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| {
            self.names
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
    }

    fn values(&self) -> Option<Attrs> {
        (!self.values.is_empty()).then(|| {
            self.values
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        })
    }
}

/// `ADD n :delta, v :one` with the write's condition: the counter and its version in one
/// atomic update (an absent item counts from 0).
struct CounterAdd {
    condition: Option<String>,
    names: HashMap<String, String>,
    values: Attrs,
}

impl CounterAdd {
    const EXPR: &'static str = "ADD #n :delta, #v :one";

    fn new(delta: i64, condition: &Condition, now: i64) -> Self {
        let c = ConditionExpr::new(condition, now, false);
        let mut names = c.names().unwrap_or_default();
        names.insert("#n".into(), ATTR_COUNTER.into());
        names.insert("#v".into(), ATTR_VERSION.into());
        let mut values = c.values().unwrap_or_default();
        values.insert(":delta".into(), AttributeValue::N(delta.to_string()));
        values.insert(":one".into(), AttributeValue::N("1".into()));
        CounterAdd {
            condition: c.expr,
            names,
            values,
        }
    }
}

fn key_attrs(key: &Key) -> Attrs {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(key.pk.clone())),
        (SK.to_string(), AttributeValue::S(key.sk.clone())),
    ])
}

fn to_attrs(item: &Item) -> Attrs {
    let mut m = key_attrs(&item.key());
    if let Some((a, b)) = &item.gsi1 {
        m.insert(GSI1_PK.into(), AttributeValue::S(a.clone()));
        m.insert(GSI1_SK.into(), AttributeValue::S(b.clone()));
    }
    if let Some((a, b)) = &item.gsi2 {
        m.insert(GSI2_PK.into(), AttributeValue::S(a.clone()));
        m.insert(GSI2_SK.into(), AttributeValue::S(b.clone()));
    }
    m.insert(
        ATTR_VERSION.into(),
        AttributeValue::N(item.version.to_string()),
    );
    if let Some(t) = item.expires_at {
        m.insert(ATTR_TTL.into(), AttributeValue::N(t.to_string()));
    }
    m.insert(
        ATTR_DATA.into(),
        AttributeValue::B(Blob::new(item.data.clone())),
    );
    m
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("malformed item from DynamoDB: {what}"))
}

fn take_s(m: &mut Attrs, name: &str) -> Result<Option<String>, StoreError> {
    match m.remove(name) {
        None => Ok(None),
        Some(AttributeValue::S(s)) => Ok(Some(s)),
        Some(_) => Err(corrupt(name)),
    }
}

fn take_n<T: std::str::FromStr>(m: &mut Attrs, name: &str) -> Result<Option<T>, StoreError> {
    match m.remove(name) {
        None => Ok(None),
        Some(AttributeValue::N(n)) => n.parse().map(Some).map_err(|_| corrupt(name)),
        Some(_) => Err(corrupt(name)),
    }
}

fn take_pair(m: &mut Attrs, a: &str, b: &str) -> Result<Option<(String, String)>, StoreError> {
    Ok(match (take_s(m, a)?, take_s(m, b)?) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    })
}

fn from_attrs(mut m: Attrs) -> Result<Item, StoreError> {
    let pk = take_s(&mut m, PK)?.ok_or_else(|| corrupt(PK))?;
    let sk = take_s(&mut m, SK)?.ok_or_else(|| corrupt(SK))?;
    let data = match (m.remove(ATTR_DATA), m.remove(ATTR_COUNTER)) {
        (Some(AttributeValue::B(b)), _) => b.into_inner(),
        (Some(AttributeValue::S(s)), _) => s.into_bytes(),
        // A counter (`Write::Add`): its value, as the embedded store keeps it.
        (None, Some(AttributeValue::N(n))) => n.into_bytes(),
        (None, None) => Vec::new(),
        (Some(_), _) => return Err(corrupt(ATTR_DATA)),
        (None, Some(_)) => return Err(corrupt(ATTR_COUNTER)),
    };
    Ok(Item {
        gsi1: take_pair(&mut m, GSI1_PK, GSI1_SK)?,
        gsi2: take_pair(&mut m, GSI2_PK, GSI2_SK)?,
        version: take_n(&mut m, ATTR_VERSION)?.unwrap_or(0),
        expires_at: take_n(&mut m, ATTR_TTL)?,
        data,
        pk,
        sk,
    })
}

fn cursor_to_key(index: Index, query_pk: &str, c: &Cursor) -> Attrs {
    let mut m = key_attrs(&Key::new(c.pk.clone(), c.sk.clone()));
    let (ipk, isk) = match index {
        Index::Primary => return m,
        Index::Gsi1 => (GSI1_PK, GSI1_SK),
        Index::Gsi2 => (GSI2_PK, GSI2_SK),
    };
    m.insert(ipk.into(), AttributeValue::S(query_pk.to_string()));
    m.insert(isk.into(), AttributeValue::S(c.index_sk.clone()));
    m
}

fn key_to_cursor(index: Index, lek: &Attrs) -> Result<Cursor, StoreError> {
    let s = |name: &str| match lek.get(name) {
        Some(AttributeValue::S(s)) => Ok(s.clone()),
        _ => Err(corrupt("LastEvaluatedKey")),
    };
    let pk = s(PK)?;
    let sk = s(SK)?;
    let index_sk = match index {
        Index::Primary => sk.clone(),
        Index::Gsi1 => s(GSI1_SK)?,
        Index::Gsi2 => s(GSI2_SK)?,
    };
    Ok(Cursor { index_sk, pk, sk })
}

/// How one attempt failed: worth another try (throttled) or final.
enum Failure {
    Retry(StoreError),
    Fatal(StoreError),
}

/// Full-jitter exponential backoff: a random delay in `[0, min(cap, base * 2^attempt)]`.
fn backoff(attempt: u32) -> Duration {
    use rand::Rng;
    let ceiling = BACKOFF_BASE_MS
        .saturating_mul(1u64 << attempt.min(16))
        .min(BACKOFF_CAP_MS);
    Duration::from_millis(rand::rng().random_range(0..=ceiling))
}

async fn retrying<T, F, Fut>(mut attempt_fn: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut attempt = 0;
    loop {
        match attempt_fn().await {
            Ok(v) => return Ok(v),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(e)) => {
                attempt += 1;
                if attempt >= MAX_ATTEMPTS {
                    return Err(e);
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
}

fn classify<E, R>(op: &str, e: SdkError<E, R>, conditional: bool) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.code() {
        Some(c) if THROTTLE_CODES.contains(&c) => Failure::Retry(StoreError::Throttled),
        Some("ConditionalCheckFailedException") if conditional => {
            Failure::Fatal(StoreError::ConditionFailed { index: 0 })
        }
        Some("TransactionConflictException") => Failure::Retry(StoreError::Conflict),
        Some("ValidationException") => Failure::Fatal(StoreError::Invalid(format!(
            "{op}: {}",
            e.message().unwrap_or("validation error")
        ))),
        _ => Failure::Fatal(StoreError::Unavailable(format!(
            "{op}: {}",
            DisplayErrorContext(&e)
        ))),
    }
}

fn classify_transaction<R: std::fmt::Debug>(
    e: SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
) -> Failure {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    if let Some(E::TransactionCanceledException(tc)) = e.as_service_error() {
        let codes: Vec<&str> = tc
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("None"))
            .collect();
        return cancellation_failure(&codes);
    }
    if let Some(E::TransactionInProgressException(_)) = e.as_service_error() {
        return Failure::Retry(StoreError::Conflict);
    }
    classify("TransactWriteItems", e, false)
}

/// Maps the per-item reason codes of a cancelled transaction.
fn cancellation_failure(codes: &[&str]) -> Failure {
    if let Some(index) = codes.iter().position(|c| *c == "ConditionalCheckFailed") {
        return Failure::Fatal(StoreError::ConditionFailed { index });
    }
    // Nothing of a cancelled transaction was applied: another try is safe.
    if codes.contains(&"TransactionConflict") {
        return Failure::Retry(StoreError::Conflict);
    }
    if codes.iter().any(|c| THROTTLE_REASONS.contains(c)) {
        return Failure::Retry(StoreError::Throttled);
    }
    if codes.contains(&"ValidationError") {
        return Failure::Fatal(StoreError::Invalid(
            "transaction cancelled: validation error".into(),
        ));
    }
    Failure::Fatal(StoreError::Unavailable(format!(
        "transaction cancelled: {}",
        codes.join(",")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_round_trips_through_attributes() {
        let item = Item::new("p", "s", vec![0, 159, 146, 150])
            .with_gsi1("a", "b")
            .with_gsi2("c", "d")
            .with_version(9)
            .with_expiry(1_700_000_000);
        assert_eq!(from_attrs(to_attrs(&item)).unwrap(), item);
        let plain = Item::new("p", "s", b"{}".to_vec());
        let attrs = to_attrs(&plain);
        assert!(!attrs.contains_key(ATTR_TTL) && !attrs.contains_key(GSI1_PK));
        assert_eq!(from_attrs(attrs).unwrap(), plain);
    }

    #[test]
    fn string_data_is_accepted() {
        let mut attrs = to_attrs(&Item::new("p", "s", vec![]));
        attrs.insert(ATTR_DATA.into(), AttributeValue::S("{\"a\":1}".into()));
        assert_eq!(from_attrs(attrs).unwrap().data, b"{\"a\":1}");
    }

    #[test]
    fn malformed_items_are_errors_not_panics() {
        let mut attrs = to_attrs(&Item::new("p", "s", vec![]));
        attrs.insert(ATTR_VERSION.into(), AttributeValue::S("x".into()));
        assert!(matches!(from_attrs(attrs), Err(StoreError::Unavailable(_))));
        assert!(from_attrs(HashMap::new()).is_err());
        assert!(key_to_cursor(Index::Gsi1, &key_attrs(&Key::new("a", "b"))).is_err());
    }

    #[test]
    fn cursor_keys_round_trip() {
        let c = Cursor {
            index_sk: "i".into(),
            pk: "p".into(),
            sk: "s".into(),
        };
        let k = cursor_to_key(Index::Gsi2, "q", &c);
        assert_eq!(k.get(GSI2_PK), Some(&AttributeValue::S("q".into())));
        assert_eq!(key_to_cursor(Index::Gsi2, &k).unwrap(), c);
        let k = cursor_to_key(Index::Primary, "p", &c);
        assert_eq!(k.len(), 2);
    }

    #[test]
    fn cancellation_reasons_map_to_store_errors() {
        let f = cancellation_failure(&["None", "ConditionalCheckFailed", "ConditionalCheckFailed"]);
        assert!(matches!(
            f,
            Failure::Fatal(StoreError::ConditionFailed { index: 1 })
        ));
        assert!(matches!(
            cancellation_failure(&["None", "TransactionConflict"]),
            Failure::Retry(StoreError::Conflict)
        ));
        assert!(matches!(
            cancellation_failure(&["ThrottlingError", "None"]),
            Failure::Retry(StoreError::Throttled)
        ));
        assert!(matches!(
            cancellation_failure(&["ItemCollectionSizeLimitExceeded"]),
            Failure::Fatal(StoreError::Unavailable(_))
        ));
    }

    #[test]
    fn conditions_treat_expired_as_absent() {
        let c = ConditionExpr::new(&Condition::NotExists, 5, false);
        assert_eq!(
            c.expr.as_deref(),
            Some("attribute_not_exists(#pk) OR #ttl <= :now")
        );
        assert!(
            ConditionExpr::new(&Condition::None, 5, false)
                .expr
                .is_none()
        );
        assert!(ConditionExpr::new(&Condition::None, 5, true).expr.is_some());
        let v = ConditionExpr::new(&Condition::VersionIs(3), 5, false);
        assert!(v.values().unwrap().contains_key(":v"));
    }

    #[tokio::test]
    async fn retrying_gives_up_with_throttled() {
        let mut calls = 0;
        let r: Result<(), _> = retrying(|| {
            calls += 1;
            async { Err(Failure::Retry(StoreError::Throttled)) }
        })
        .await;
        assert!(matches!(r, Err(StoreError::Throttled)));
        assert_eq!(calls, MAX_ATTEMPTS);
    }
}
