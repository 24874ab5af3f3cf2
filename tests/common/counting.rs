//! A [`Store`] wrapper around any real store (embedded or DynamoDB on moto) that counts
//! what the hub asks of it: items returned by `get`, `get_many` and `query` and the calls
//! made; items written and transactions. Benchmarks report "store items read per page"
//! from it; tests bound the work of one operation with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use provisync_core::store::{Item, Key, Page, Query, Store, StoreError, Write};

/// Reads seen since the last [`CountingStore::reset`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    /// Items handed back by the store.
    pub items: u64,
    /// Calls to `get`, `get_many` and `query`.
    pub calls: u64,
}

/// Counts the reads and writes of the store it wraps. Clones share the counters.
#[derive(Clone)]
pub struct CountingStore {
    inner: Arc<dyn Store>,
    items: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    transactions: Arc<AtomicU64>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> CountingStore {
        CountingStore {
            inner,
            items: Arc::default(),
            calls: Arc::default(),
            written: Arc::default(),
            transactions: Arc::default(),
        }
    }

    /// The reads since the last reset; every counter starts again from zero.
    pub fn reset(&self) -> Reads {
        self.written.store(0, Ordering::SeqCst);
        self.transactions.store(0, Ordering::SeqCst);
        Reads {
            items: self.items.swap(0, Ordering::SeqCst),
            calls: self.calls.swap(0, Ordering::SeqCst),
        }
    }

    /// The reads since the last reset.
    pub fn reads(&self) -> Reads {
        Reads {
            items: self.items.load(Ordering::SeqCst),
            calls: self.calls.load(Ordering::SeqCst),
        }
    }

    /// Items read since the last reset.
    pub fn read_items(&self) -> u64 {
        self.items.load(Ordering::SeqCst)
    }

    /// Items written (each `Write` of a transaction) since the last reset.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Transactions (calls to `transact`) since the last reset.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::SeqCst)
    }

    fn saw(&self, items: usize) {
        self.items.fetch_add(items as u64, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let r = self.inner.get(key).await?;
        self.saw(usize::from(r.is_some()));
        Ok(r)
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        let r = self.inner.get_many(keys).await?;
        self.saw(r.len());
        Ok(r)
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let r = self.inner.query(query).await?;
        self.saw(r.items.len());
        Ok(r)
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.transactions.fetch_add(1, Ordering::SeqCst);
        self.written
            .fetch_add(writes.len() as u64, Ordering::SeqCst);
        self.inner.transact(writes).await
    }

    async fn transact_unflushed(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.transactions.fetch_add(1, Ordering::SeqCst);
        self.written
            .fetch_add(writes.len() as u64, Ordering::SeqCst);
        self.inner.transact_unflushed(writes).await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}
