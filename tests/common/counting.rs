//! A store that counts what it is asked to do, around any real store (embedded or
//! DynamoDB on moto): tests that bound the work of an operation read its counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use provisync_core::store::{Item, Key, Page, Query, Store, StoreError, Write};

/// Counts items read and written, and transactions.
pub struct Counting {
    inner: Arc<dyn Store>,
    /// Items in transactions (each `Write`).
    pub written: AtomicUsize,
    /// Transactions (calls to `transact`).
    pub transactions: AtomicUsize,
    /// Items asked for or returned by reads.
    pub read_items: AtomicUsize,
}

impl Counting {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            written: AtomicUsize::new(0),
            transactions: AtomicUsize::new(0),
            read_items: AtomicUsize::new(0),
        })
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        self.written.store(0, Ordering::Relaxed);
        self.transactions.store(0, Ordering::Relaxed);
        self.read_items.store(0, Ordering::Relaxed);
    }

    pub fn written(&self) -> usize {
        self.written.load(Ordering::Relaxed)
    }

    pub fn transactions(&self) -> usize {
        self.transactions.load(Ordering::Relaxed)
    }

    pub fn read_items(&self) -> usize {
        self.read_items.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Store for Counting {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.read_items.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        self.read_items.fetch_add(keys.len(), Ordering::Relaxed);
        self.inner.get_many(keys).await
    }
    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let page = self.inner.query(query).await?;
        self.read_items
            .fetch_add(page.items.len(), Ordering::Relaxed);
        Ok(page)
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.written.fetch_add(writes.len(), Ordering::Relaxed);
        self.inner.transact(writes).await
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}
