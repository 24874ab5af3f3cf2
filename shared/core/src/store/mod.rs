//! The `Store` port: a single-table item store with DynamoDB's semantics.
//!
//! Every record the hub keeps (users, groups, one item per group membership, uniqueness
//! keys, links, cursors, audit entries, idempotency keys, outbox records, tokens) is an
//! [`Item`] addressed by a partition key and a sort key, optionally projected into two
//! secondary indexes. Multi-item writes are one atomic, conditional [`Store::transact`].
//! The record layouts live once, in the repositories built on this port
//! ([`crate::directory`]); the adapters only move items:
//!
//! - [`embedded::EmbeddedStore`]: redb, on disk for `provisync serve`, in memory for tests;
//! - `dynamodb::DynamoStore`: one DynamoDB table (`pk`, `sk`, GSIs `gsi1`, `gsi2`, TTL
//!   attribute `ttl`), the same layout as `infra/template.yaml`.
//!
//! Both pass the one contract suite in [`contract`].

use async_trait::async_trait;

pub mod contract;
#[cfg(any(test, feature = "embedded"))]
pub mod embedded;
pub mod keyspace;

/// DynamoDB's limit on items in one `TransactWriteItems`; the embedded store enforces it
/// too so code that works locally works in AWS.
pub const MAX_TRANSACT_ITEMS: usize = 100;
/// DynamoDB's item size limit is 400 KB; we keep a margin for keys and attributes.
pub const MAX_ITEM_DATA_BYTES: usize = 350 * 1024;

/// One record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    /// Secondary index 1 key (partition, sort), if the item is in that index.
    pub gsi1: Option<(String, String)>,
    /// Secondary index 2 key (partition, sort), if the item is in that index.
    pub gsi2: Option<(String, String)>,
    /// Optimistic-concurrency version, compared by [`Condition::VersionIs`].
    pub version: u64,
    /// Expiry, epoch seconds. An expired item reads as absent (DynamoDB deletes expired
    /// items late, and moto never: both adapters filter on read).
    pub expires_at: Option<i64>,
    /// The payload (JSON for every record type the hub writes).
    pub data: Vec<u8>,
}

impl Item {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>, data: Vec<u8>) -> Self {
        Item {
            pk: pk.into(),
            sk: sk.into(),
            gsi1: None,
            gsi2: None,
            version: 0,
            expires_at: None,
            data,
        }
    }

    pub fn with_gsi1(mut self, pk: impl Into<String>, sk: impl Into<String>) -> Self {
        self.gsi1 = Some((pk.into(), sk.into()));
        self
    }

    pub fn with_gsi2(mut self, pk: impl Into<String>, sk: impl Into<String>) -> Self {
        self.gsi2 = Some((pk.into(), sk.into()));
        self
    }

    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    pub fn with_expiry(mut self, expires_at: i64) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    pub fn key(&self) -> Key {
        Key::new(self.pk.clone(), self.sk.clone())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// A condition on the current state of one item (an expired item counts as absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Always true.
    None,
    /// The item must not exist (`attribute_not_exists(pk)`).
    NotExists,
    /// The item must exist (`attribute_exists(pk)`).
    Exists,
    /// The item must exist with this version (`v = :v`).
    VersionIs(u64),
}

/// One operation of an atomic write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Put {
        item: Item,
        condition: Condition,
    },
    Delete {
        key: Key,
        condition: Condition,
    },
    /// Only checks the condition (DynamoDB `ConditionCheck`).
    Check {
        key: Key,
        condition: Condition,
    },
    /// Adds `delta` to the counter at `key` (DynamoDB `UpdateItem` with `ADD`): an absent
    /// counter counts from 0, and every add bumps the item's version by one. A counter
    /// reads back as an [`Item`] whose `data` is its value in decimal ASCII
    /// ([`counter_value`]). A key holds a counter or a record, never both: a counter is
    /// only ever written by `Add` (and may be deleted).
    Add {
        key: Key,
        delta: i64,
        condition: Condition,
    },
}

impl Write {
    pub fn put(item: Item) -> Self {
        Write::Put {
            item,
            condition: Condition::None,
        }
    }
    pub fn put_new(item: Item) -> Self {
        Write::Put {
            item,
            condition: Condition::NotExists,
        }
    }
    pub fn delete(key: Key) -> Self {
        Write::Delete {
            key,
            condition: Condition::None,
        }
    }
    /// Adds `delta` to the counter at `key`, unconditionally.
    pub fn add(key: Key, delta: i64) -> Self {
        Write::Add {
            key,
            delta,
            condition: Condition::None,
        }
    }
    pub fn key(&self) -> Key {
        match self {
            Write::Put { item, .. } => item.key(),
            Write::Delete { key, .. } | Write::Check { key, .. } | Write::Add { key, .. } => {
                key.clone()
            }
        }
    }
    pub fn condition(&self) -> &Condition {
        match self {
            Write::Put { condition, .. }
            | Write::Delete { condition, .. }
            | Write::Check { condition, .. }
            | Write::Add { condition, .. } => condition,
        }
    }
}

/// The value of a counter item (written by [`Write::Add`]); 0 for anything unreadable.
pub fn counter_value(item: &Item) -> i64 {
    std::str::from_utf8(&item.data)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Which key a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Index {
    Primary,
    Gsi1,
    Gsi2,
}

/// A query: all items whose (index) partition key is `pk`, sort keys ascending or
/// descending, optionally restricted to a sort-key prefix, starting after a cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub index: Index,
    pub pk: String,
    pub sk_prefix: Option<String>,
    /// Resume after this position (a [`Page::next`] from a previous call).
    pub after: Option<Cursor>,
    /// At most this many items (the adapter may return fewer and a `next` cursor).
    pub limit: usize,
    pub descending: bool,
}

impl Query {
    pub fn new(index: Index, pk: impl Into<String>) -> Self {
        Query {
            index,
            pk: pk.into(),
            sk_prefix: None,
            after: None,
            limit: 1000,
            descending: false,
        }
    }
    pub fn prefix(mut self, p: impl Into<String>) -> Self {
        self.sk_prefix = Some(p.into());
        self
    }
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }
    pub fn after(mut self, c: Option<Cursor>) -> Self {
        self.after = c;
        self
    }
    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }
}

/// Where a query stopped: the last item's keys (index sort key plus primary key, the
/// shape of DynamoDB's `LastEvaluatedKey`).
///
/// A cursor is a position, not a reference: it need not name an item that exists. A query
/// after it returns the items whose `(index sort key, pk, sk)` come after it (before it,
/// descending), so a caller may start from a position it built itself (an index sort key
/// with any non-empty `pk` and `sk`), as DynamoDB's `ExclusiveStartKey` allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub index_sk: String,
    pub pk: String,
    pub sk: String,
}

impl Cursor {
    /// A position in an index at sort key `index_sk`: ahead of every item whose index sort
    /// key is `index_sk` with a longer tail, after every item whose key sorts before it.
    /// (`pk`/`sk` only break ties with an item whose index sort key is exactly `index_sk`;
    /// they are non-empty because DynamoDB refuses empty key attributes.)
    pub fn at(index_sk: impl Into<String>, pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Cursor {
            index_sk: index_sk.into(),
            pk: pk.into(),
            sk: sk.into(),
        }
    }

    /// An opaque string form for APIs (base64url of the three keys).
    pub fn encode(&self) -> String {
        use base64::Engine;
        let raw = serde_json::json!([self.index_sk, self.pk, self.sk]).to_string();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(s: &str) -> Option<Self> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        let (index_sk, pk, sk): (String, String, String) = serde_json::from_slice(&raw).ok()?;
        Some(Cursor { index_sk, pk, sk })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Item>,
    pub next: Option<Cursor>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The condition of write number `index` in the transaction did not hold; nothing was
    /// written.
    #[error("condition of write {index} failed")]
    ConditionFailed { index: usize },
    /// A concurrent transaction touched the same items (DynamoDB
    /// `TransactionConflict`); safe to retry.
    #[error("transaction conflict")]
    Conflict,
    /// The backend asked us to slow down, after the adapter's own retries.
    #[error("store throttled")]
    Throttled,
    /// Bad request from our side (too many items, item too large, same key twice).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Anything else: the backend is unavailable or broken.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The port. Adapters: [`embedded::EmbeddedStore`], `dynamodb::DynamoStore`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one item by primary key (strongly consistent). Expired items read as `None`.
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;

    /// Reads several items by primary key (DynamoDB `BatchGetItem`); missing ones are
    /// left out, order is not guaranteed.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError>;

    /// One page of a query. Expired items are left out.
    async fn query(&self, query: &Query) -> Result<Page, StoreError>;

    /// Applies all writes atomically if every condition holds, else none
    /// ([`StoreError::ConditionFailed`] names the first failing write). At most
    /// [`MAX_TRANSACT_ITEMS`] writes, each key at most once.
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError>;

    /// [`Store::transact`] for writes a crash may lose without harm, because whatever
    /// wrote them writes them again when it is retried (a delivery's unconfirmed link,
    /// stored before the account joins its groups): the store may answer before they
    /// reach the disk. They are as atomic, isolated and at once visible to every reader
    /// as any transaction's, and the next durable transaction makes them durable with
    /// it. A store whose every write is durable anyway (DynamoDB) just transacts.
    async fn transact_unflushed(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.transact(writes).await
    }

    /// A short name for logs and health checks (`embedded`, `dynamodb`).
    fn backend(&self) -> &'static str;
}

/// Checks the rules every adapter enforces the same way before touching storage.
pub fn check_transaction(writes: &[Write]) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Err(StoreError::Invalid("empty transaction".into()));
    }
    if writes.len() > MAX_TRANSACT_ITEMS {
        return Err(StoreError::Invalid(format!(
            "{} writes in one transaction (max {MAX_TRANSACT_ITEMS})",
            writes.len()
        )));
    }
    let mut keys: Vec<Key> = writes.iter().map(Write::key).collect();
    keys.sort();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(StoreError::Invalid(
            "same key twice in one transaction".into(),
        ));
    }
    for w in writes {
        if let Write::Put { item, .. } = w {
            if item.data.len() > MAX_ITEM_DATA_BYTES {
                return Err(StoreError::Invalid(format!(
                    "item {}/{} is {} bytes (max {MAX_ITEM_DATA_BYTES})",
                    item.pk,
                    item.sk,
                    item.data.len()
                )));
            }
            if item.pk.is_empty() || item.sk.is_empty() {
                return Err(StoreError::Invalid("empty key".into()));
            }
        }
    }
    Ok(())
}

/// Seconds since the epoch (for TTL checks).
pub fn now_epoch() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Every item a query reads, page after page, up to `max` items (the query's `limit` is
/// the page size).
pub async fn query_all(
    store: &dyn Store,
    mut query: Query,
    max: usize,
) -> Result<Vec<Item>, StoreError> {
    let mut out = Vec::new();
    loop {
        let page = store.query(&query).await?;
        out.extend(page.items);
        match page.next {
            Some(c) if out.len() < max => query.after = Some(c),
            _ => return Ok(out),
        }
    }
}

/// At most `cap` items a query reads ([`query_all`]), and whether there are more.
pub async fn query_capped(
    store: &dyn Store,
    query: Query,
    cap: usize,
) -> Result<(Vec<Item>, bool), StoreError> {
    let mut items = query_all(store, query, cap.saturating_add(1)).await?;
    let more = items.len() > cap;
    items.truncate(cap);
    Ok((items, more))
}
