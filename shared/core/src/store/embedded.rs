//! The embedded [`Store`]: redb, an ACID embedded database in pure Rust. On disk for
//! `provisync serve` (data kept across restarts), in memory for tests.
//!
//! Layout mirrors the DynamoDB table: `items` keyed by `(pk, sk)`, and one table per
//! secondary index keyed by `(index pk, index sk, pk, sk)` so index queries are ordered
//! range scans, as in DynamoDB.
//!
//! **Group commit.** A redb write transaction ends in a flush (fsync), and the disk's flush
//! rate, not the CPU, bounded how many writes per second the store took. Transactions that
//! arrive together are therefore committed together: each caller enqueues its writes, and
//! one committer at a time (the caller that found nobody committing, on a blocking thread)
//! takes everything queued, applies each transaction in turn inside one redb write
//! transaction, and commits it with one flush. Each transaction still checks its own
//! conditions against the state left by the ones before it (the same serial order as
//! committing them one by one), a failed condition leaves nothing of that transaction and
//! fails none of its neighbours, and every caller is answered only after the flush that
//! made its writes durable. While one group flushes, the next one gathers.
//!
//! **Unflushed transactions** ([`Store::transact_unflushed`]: writes a retry redoes) join
//! groups as any other; a group of only those commits without a flush (redb's
//! `Durability::None`: visible at once, made durable by the next flushed group, lost by a
//! crash before it). A delivery's unconfirmed link, written between its target call and
//! its receipt, was one flush of the 1.6 each delivered change cost.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, TableError,
    backends::InMemoryBackend,
};
use tokio::sync::oneshot;

use super::{
    Condition, Cursor, Index, Item, Key, Page, Query, Store, StoreError, Write, check_transaction,
    counter_value, now_epoch,
};

const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");
const GSI1: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("gsi1");
const GSI2: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("gsi2");

/// Above every character a key can hold: the exclusive upper bound of a prefix range.
const KEY_MAX: &str = "\u{10FFFF}";

/// At most this many transactions in one group by default: bounds the latency of the
/// first one in it (a group of 512 transactions of up to 100 writes each is still one
/// short flush).
pub const MAX_GROUP: usize = 512;

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    commits: Arc<Commits>,
}

/// A transaction waiting for its group's flush.
struct Pending {
    writes: Vec<Write>,
    answer: oneshot::Sender<Result<(), StoreError>>,
    /// Answered only once on disk (else: a retry redoes it, [`Store::transact_unflushed`]).
    durable: bool,
}

/// The group-commit queue (see the module documentation).
struct Commits {
    /// Transactions per group at most ([`MAX_GROUP`]; 1 commits each alone).
    max_group: usize,
    queue: Mutex<CommitQueue>,
    /// Groups committed, those of them flushed, and transactions committed in them,
    /// since open.
    groups: AtomicU64,
    flushes: AtomicU64,
    transactions: AtomicU64,
}

#[derive(Default)]
struct CommitQueue {
    pending: Vec<Pending>,
    /// A committer is running: it will take what is queued before it stops.
    committing: bool,
}

impl Default for Commits {
    fn default() -> Self {
        Commits {
            max_group: MAX_GROUP,
            queue: Mutex::default(),
            groups: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
        }
    }
}

impl Commits {
    fn lock(&self) -> std::sync::MutexGuard<'_, CommitQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A caller's channel and what to tell it.
type Answer = (
    oneshot::Sender<Result<(), StoreError>>,
    Result<(), StoreError>,
);

fn send_answers(answers: Vec<Answer>) {
    for (to, result) in answers {
        // A caller that went away (cancelled) needs no answer.
        let _ = to.send(result);
    }
}

/// Hands the committer role back if the committer unwinds: the callers still queued are
/// answered (their senders dropped: "commit abandoned") and the next caller commits.
struct CommitterGuard(Arc<Commits>);

impl Drop for CommitterGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut q = self.0.lock();
            q.committing = false;
            q.pending.clear();
        }
    }
}

/// The write side of the three tables inside one redb write transaction.
struct Tables<'t> {
    items: Table<'t, (&'static str, &'static str), &'static [u8]>,
    gsi1: Table<'t, (&'static str, &'static str, &'static str, &'static str), ()>,
    gsi2: Table<'t, (&'static str, &'static str, &'static str, &'static str), ()>,
}

/// How many groups and transactions the store committed since it was opened, and how
/// many of the groups were flushed (the others held only unflushed transactions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub groups: u64,
    pub flushes: u64,
    pub transactions: u64,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the database file `dir/provisync.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let db = Database::create(dir.join("provisync.redb")).map_err(unavailable)?;
        Self::init(db)
    }

    /// A store that lives in memory only (tests).
    pub fn in_memory() -> Self {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .unwrap_or_else(|e| unreachable!("in-memory redb cannot fail to open: {e}"));
        Self::init(db).unwrap_or_else(|e| unreachable!("in-memory redb cannot fail: {e}"))
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        let tx = db.begin_write().map_err(unavailable)?;
        tx.open_table(ITEMS).map_err(unavailable)?;
        tx.open_table(GSI1).map_err(unavailable)?;
        tx.open_table(GSI2).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            commits: Arc::default(),
        })
    }

    /// The same store committing at most `n` transactions per flush (`1`: one flush per
    /// transaction, as before group commit; the bench compares the two).
    pub fn with_max_group(self, n: usize) -> Self {
        EmbeddedStore {
            db: self.db,
            commits: Arc::new(Commits {
                max_group: n.max(1),
                ..Commits::default()
            }),
        }
    }

    /// Groups, flushes and transactions committed since open (the bench reports
    /// transactions per flush).
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            groups: self.commits.groups.load(Ordering::Relaxed),
            flushes: self.commits.flushes.load(Ordering::Relaxed),
            transactions: self.commits.transactions.load(Ordering::Relaxed),
        }
    }

    fn read_item(
        table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
        pk: &str,
        sk: &str,
        now: i64,
    ) -> Result<Option<Item>, StoreError> {
        let Some(v) = table.get((pk, sk)).map_err(unavailable)? else {
            return Ok(None);
        };
        let item = decode(pk, sk, v.value())?;
        Ok((!item.is_expired(now)).then_some(item))
    }

    fn query_sync(&self, q: &Query) -> Result<Page, StoreError> {
        let now = now_epoch();
        let tx = self.db.begin_read().map_err(unavailable)?;
        let items = tx.open_table(ITEMS).map_err(unavailable)?;
        let prefix = q.sk_prefix.as_deref().unwrap_or("");
        let prefix_end = format!("{prefix}{KEY_MAX}");
        let limit = q.limit.max(1);
        let mut out = Vec::new();
        let mut next = None;
        match q.index {
            Index::Primary => {
                let after_sk = q.after.as_ref().map(|c| c.sk.as_str());
                let iter: Box<dyn Iterator<Item = _>> = if q.descending {
                    let hi = after_sk.unwrap_or(&prefix_end);
                    Box::new(
                        items
                            .range((q.pk.as_str(), prefix)..(q.pk.as_str(), hi))
                            .map_err(unavailable)?
                            .rev(),
                    )
                } else {
                    // A continuation starts the range at the last item returned (skipped
                    // below), not at the partition's start: a page costs the same
                    // wherever it is in the partition.
                    let lo = match after_sk {
                        Some(a) if a > prefix => a,
                        _ => prefix,
                    };
                    let r = items
                        .range((q.pk.as_str(), lo)..(q.pk.as_str(), prefix_end.as_str()))
                        .map_err(unavailable)?;
                    Box::new(r)
                };
                for entry in iter {
                    let (k, v) = entry.map_err(unavailable)?;
                    let (pk, sk) = k.value();
                    if let (Some(a), false) = (after_sk, q.descending)
                        && sk <= a
                    {
                        continue;
                    }
                    let item = decode(pk, sk, v.value())?;
                    if item.is_expired(now) {
                        continue;
                    }
                    if out.len() == limit {
                        next = out.last().map(|i: &Item| Cursor {
                            index_sk: i.sk.clone(),
                            pk: i.pk.clone(),
                            sk: i.sk.clone(),
                        });
                        break;
                    }
                    out.push(item);
                }
            }
            Index::Gsi1 | Index::Gsi2 => {
                let table = tx
                    .open_table(if q.index == Index::Gsi1 { GSI1 } else { GSI2 })
                    .map_err(unavailable)?;
                let after = q.after.as_ref();
                let lo = (q.pk.as_str(), prefix, "", "");
                let hi_default = (q.pk.as_str(), prefix_end.as_str(), "", "");
                let iter: Box<dyn Iterator<Item = _>> = if q.descending {
                    let hi = match after {
                        Some(c) => (
                            q.pk.as_str(),
                            c.index_sk.as_str(),
                            c.pk.as_str(),
                            c.sk.as_str(),
                        ),
                        None => hi_default,
                    };
                    Box::new(table.range(lo..hi).map_err(unavailable)?.rev())
                } else {
                    // As above: from the continuation's entry, not the partition's start.
                    let from = match after {
                        Some(c)
                            if (c.index_sk.as_str(), c.pk.as_str(), c.sk.as_str())
                                > (prefix, "", "") =>
                        {
                            (
                                q.pk.as_str(),
                                c.index_sk.as_str(),
                                c.pk.as_str(),
                                c.sk.as_str(),
                            )
                        }
                        _ => lo,
                    };
                    Box::new(table.range(from..hi_default).map_err(unavailable)?)
                };
                for entry in iter {
                    let (k, _) = entry.map_err(unavailable)?;
                    let (_, isk, pk, sk) = k.value();
                    if let (Some(c), false) = (after, q.descending)
                        && (isk, pk, sk) <= (c.index_sk.as_str(), c.pk.as_str(), c.sk.as_str())
                    {
                        continue;
                    }
                    let Some(item) = Self::read_item(&items, pk, sk, now)? else {
                        continue;
                    };
                    if out.len() == limit {
                        next = out.last().map(|i: &Item| {
                            let isk = match q.index {
                                Index::Gsi1 => i.gsi1.as_ref(),
                                _ => i.gsi2.as_ref(),
                            }
                            .map(|(_, s)| s.clone())
                            .unwrap_or_default();
                            Cursor {
                                index_sk: isk,
                                pk: i.pk.clone(),
                                sk: i.sk.clone(),
                            }
                        });
                        break;
                    }
                    out.push(item);
                }
            }
        }
        Ok(Page { items: out, next })
    }

    /// The committer: takes every queued transaction (up to `max_group`) and commits
    /// them as one group, until the queue is empty. Runs on a blocking thread.
    ///
    /// It holds a handle on the database while it runs, so the last group is answered
    /// only after that handle is dropped: a caller that closes the store once answered
    /// (and opens the file again) never finds it still open.
    fn commit_queued(self) {
        let _guard = CommitterGuard(self.commits.clone());
        let mut answered: Vec<Answer> = Vec::new();
        loop {
            let group: Vec<Pending> = {
                let mut q = self.commits.lock();
                if q.pending.is_empty() {
                    q.committing = false;
                    break;
                }
                let n = q.pending.len().min(self.commits.max_group);
                q.pending.drain(..n).collect()
            };
            send_answers(std::mem::take(&mut answered));
            answered = self.commit_group(group);
        }
        drop(self);
        send_answers(answered);
    }

    /// One redb write transaction and one flush for `group`; returns each caller's
    /// answer, to be sent after it.
    fn commit_group(&self, group: Vec<Pending>) -> Vec<Answer> {
        let now = now_epoch();
        let flush = group.iter().any(|p| p.durable);
        let (answers, writes): (Vec<_>, Vec<_>) =
            group.into_iter().map(|p| (p.answer, p.writes)).unzip();
        let outcome = (|| {
            let mut tx = self.db.begin_write().map_err(unavailable)?;
            if !flush {
                // Only writes a retry redoes: committed without a flush. (Refused only
                // while a persistent savepoint changes, which this store never makes:
                // then it flushes.)
                let _ = tx.set_durability(Durability::None);
            }
            let results = {
                let mut t = Tables {
                    items: tx.open_table(ITEMS).map_err(unavailable)?,
                    gsi1: tx.open_table(GSI1).map_err(unavailable)?,
                    gsi2: tx.open_table(GSI2).map_err(unavailable)?,
                };
                let mut results = Vec::with_capacity(writes.len());
                for w in writes {
                    match Self::apply(&mut t, w, now) {
                        // Checked before anything of it was written: nothing to undo.
                        Err(e @ StoreError::ConditionFailed { .. }) => results.push(Err(e)),
                        Ok(()) => results.push(Ok(())),
                        // A storage error may have left part of this transaction in the
                        // group: the whole group is dropped (not committed).
                        Err(e) => return Err(e),
                    }
                }
                results
            };
            tx.commit().map_err(unavailable)?;
            Ok(results)
        })();
        match outcome {
            Ok(results) => {
                self.commits.groups.fetch_add(1, Ordering::Relaxed);
                if flush {
                    self.commits.flushes.fetch_add(1, Ordering::Relaxed);
                }
                self.commits
                    .transactions
                    .fetch_add(results.len() as u64, Ordering::Relaxed);
                answers.into_iter().zip(results).collect()
            }
            Err(e) => {
                let detail = e.to_string();
                answers
                    .into_iter()
                    .map(|a| (a, Err(StoreError::Unavailable(detail.clone()))))
                    .collect()
            }
        }
    }

    /// Applies one transaction inside the group's redb transaction if every condition
    /// holds (checked first: a failed one writes nothing).
    fn apply(t: &mut Tables<'_>, writes: Vec<Write>, now: i64) -> Result<(), StoreError> {
        let Tables { items, gsi1, gsi2 } = t;
        {
            // Check every condition first: all or nothing.
            let mut current = Vec::with_capacity(writes.len());
            for (index, w) in writes.iter().enumerate() {
                let (key, cond) = (w.key(), w.condition());
                // Read once: an expired item fails `Exists` as an absent one does, and
                // still has index entries to clean up.
                let raw = match items
                    .get((key.pk.as_str(), key.sk.as_str()))
                    .map_err(unavailable)?
                {
                    Some(v) => Some(decode(&key.pk, &key.sk, v.value())?),
                    None => None,
                };
                let existing = raw.as_ref().filter(|i| !i.is_expired(now));
                let ok = match cond {
                    Condition::None => true,
                    Condition::NotExists => existing.is_none(),
                    Condition::Exists => existing.is_some(),
                    Condition::VersionIs(v) => existing.is_some_and(|i| i.version == *v),
                };
                if !ok {
                    return Err(StoreError::ConditionFailed { index });
                }
                current.push(raw);
            }
            for (w, old) in writes.into_iter().zip(current) {
                if let Some(old) = &old
                    && matches!(w, Write::Put { .. } | Write::Delete { .. })
                {
                    if let Some((a, b)) = &old.gsi1 {
                        gsi1.remove((a.as_str(), b.as_str(), old.pk.as_str(), old.sk.as_str()))
                            .map_err(unavailable)?;
                    }
                    if let Some((a, b)) = &old.gsi2 {
                        gsi2.remove((a.as_str(), b.as_str(), old.pk.as_str(), old.sk.as_str()))
                            .map_err(unavailable)?;
                    }
                }
                match w {
                    Write::Put { item, .. } => {
                        items
                            .insert(
                                (item.pk.as_str(), item.sk.as_str()),
                                encode(&item).as_slice(),
                            )
                            .map_err(unavailable)?;
                        if let Some((a, b)) = &item.gsi1 {
                            gsi1.insert(
                                (a.as_str(), b.as_str(), item.pk.as_str(), item.sk.as_str()),
                                (),
                            )
                            .map_err(unavailable)?;
                        }
                        if let Some((a, b)) = &item.gsi2 {
                            gsi2.insert(
                                (a.as_str(), b.as_str(), item.pk.as_str(), item.sk.as_str()),
                                (),
                            )
                            .map_err(unavailable)?;
                        }
                    }
                    Write::Delete { key, .. } => {
                        items
                            .remove((key.pk.as_str(), key.sk.as_str()))
                            .map_err(unavailable)?;
                    }
                    Write::Check { .. } => {}
                    Write::Add { key, delta, .. } => {
                        // A counter counts from 0 when absent (or expired).
                        let (value, version) = match old.filter(|o| !o.is_expired(now)) {
                            Some(o) => (counter_value(&o), o.version),
                            None => (0, 0),
                        };
                        let item = Item::new(
                            key.pk,
                            key.sk,
                            value.saturating_add(delta).to_string().into_bytes(),
                        )
                        .with_version(version + 1);
                        items
                            .insert(
                                (item.pk.as_str(), item.sk.as_str()),
                                encode(&item).as_slice(),
                            )
                            .map_err(unavailable)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let tx = self.db.begin_read().map_err(unavailable)?;
        let table = match tx.open_table(ITEMS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        Self::read_item(&table, &key.pk, &key.sk, now_epoch())
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        let tx = self.db.begin_read().map_err(unavailable)?;
        let table = tx.open_table(ITEMS).map_err(unavailable)?;
        let now = now_epoch();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(i) = Self::read_item(&table, &k.pk, &k.sk, now)? {
                out.push(i);
            }
        }
        Ok(out)
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        self.query_sync(query)
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.enqueue(writes, true).await
    }

    async fn transact_unflushed(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.enqueue(writes, false).await
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}

impl EmbeddedStore {
    /// Queues a transaction for the next group (see the module documentation) and waits
    /// for its answer; `durable`: answered only once its group is flushed.
    async fn enqueue(&self, writes: Vec<Write>, durable: bool) -> Result<(), StoreError> {
        check_transaction(&writes)?;
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut q = self.commits.lock();
            q.pending.push(Pending {
                writes,
                answer,
                durable,
            });
            !std::mem::replace(&mut q.committing, true)
        };
        if lead {
            let this = self.clone();
            // A commit fsyncs: keep it off the async worker threads.
            tokio::task::spawn_blocking(move || this.commit_queued());
        }
        answered
            .await
            .map_err(|_| StoreError::Unavailable("commit abandoned".into()))?
    }
}

// Value encoding: version u64 | expires i64 (i64::MIN = none) | gsi1 | gsi2 | data, where
// each gsi is a flag byte and two length-prefixed strings.
fn encode(item: &Item) -> Vec<u8> {
    let mut out = Vec::with_capacity(item.data.len() + 64);
    out.extend_from_slice(&item.version.to_le_bytes());
    out.extend_from_slice(&item.expires_at.unwrap_or(i64::MIN).to_le_bytes());
    for g in [&item.gsi1, &item.gsi2] {
        match g {
            None => out.push(0),
            Some((a, b)) => {
                out.push(1);
                for s in [a, b] {
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
    }
    out.extend_from_slice(&item.data);
    out
}

fn decode(pk: &str, sk: &str, raw: &[u8]) -> Result<Item, StoreError> {
    let corrupt = || StoreError::Unavailable(format!("corrupt item {pk}/{sk}"));
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8], StoreError> {
        let s = raw.get(pos..pos + n).ok_or_else(corrupt)?;
        pos += n;
        Ok(s)
    };
    let version = u64::from_le_bytes(take(8)?.try_into().map_err(|_| corrupt())?);
    let expires = i64::from_le_bytes(take(8)?.try_into().map_err(|_| corrupt())?);
    let mut gsis = [None, None];
    for g in gsis.iter_mut() {
        if take(1)?[0] == 1 {
            let mut parts = [String::new(), String::new()];
            for p in parts.iter_mut() {
                let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt())?) as usize;
                *p = String::from_utf8(take(len)?.to_vec()).map_err(|_| corrupt())?;
            }
            let [a, b] = parts;
            *g = Some((a, b));
        }
    }
    let data = raw.get(pos..).ok_or_else(corrupt)?.to_vec();
    let [gsi1, gsi2] = gsis;
    Ok(Item {
        pk: pk.to_string(),
        sk: sk.to_string(),
        gsi1,
        gsi2,
        version,
        expires_at: (expires != i64::MIN).then_some(expires),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contract_in_memory() {
        super::super::contract::run_all(&EmbeddedStore::in_memory()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_contract_in_memory() {
        super::super::contract::run_concurrent(std::sync::Arc::new(EmbeddedStore::in_memory()))
            .await;
    }

    /// Many concurrent single-item creates on disk: every one is answered Ok and present
    /// after reopening, and they were committed in fewer flushes than transactions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let n = 200;
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let s = s.clone();
                    tokio::spawn(async move {
                        s.transact(vec![Write::put_new(Item::new(
                            "U",
                            format!("{i:04}"),
                            b"x".to_vec(),
                        ))])
                        .await
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            let stats = s.commit_stats();
            assert_eq!(stats.transactions, n as u64);
            assert!(
                stats.groups < n as u64,
                "{n} concurrent transactions took {} flushes",
                stats.groups
            );
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let page = s
            .query(&Query::new(Index::Primary, "U").limit(1000))
            .await
            .unwrap();
        assert_eq!(page.items.len(), n);
    }

    /// In one group, a transaction whose condition fails writes nothing and fails none of
    /// its neighbours; a later one sees the earlier ones' writes (serial order).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_condition_fails_only_its_own_transaction() {
        let s = EmbeddedStore::in_memory();
        s.transact(vec![Write::put(Item::new("K", "taken", b"0".to_vec()))])
            .await
            .unwrap();
        // Hold the committer role so the next transactions queue up into one group.
        s.commits.lock().committing = true;
        // Each queued before the next starts: the order decides which of `first` and
        // `same_key` takes "a". (It hands back the running task, awaited later.)
        #[allow(clippy::async_yields_async)]
        let spawn = async |writes: Vec<Write>| {
            let queued = s.commits.lock().pending.len();
            let task = {
                let s = s.clone();
                tokio::spawn(async move { s.transact(writes).await })
            };
            while s.commits.lock().pending.len() == queued {
                tokio::task::yield_now().await;
            }
            task
        };
        let first = spawn(vec![
            Write::put_new(Item::new("K", "a", b"1".to_vec())),
            Write::add(Key::new("K", "count"), 1),
        ])
        .await;
        let failing = spawn(vec![
            Write::put_new(Item::new("K", "b", b"2".to_vec())),
            Write::add(Key::new("K", "count"), 1),
            Write::put_new(Item::new("K", "taken", b"3".to_vec())),
        ])
        .await;
        let same_key = spawn(vec![Write::put_new(Item::new("K", "a", b"4".to_vec()))]).await;
        let last = spawn(vec![
            Write::put_new(Item::new("K", "c", b"5".to_vec())),
            Write::add(Key::new("K", "count"), 1),
        ])
        .await;
        while s.commits.lock().pending.len() < 4 {
            tokio::task::yield_now().await;
        }
        let runner = s.clone();
        tokio::task::spawn_blocking(move || runner.commit_queued())
            .await
            .unwrap();
        assert_eq!(s.commit_stats().groups, 2, "the four were one group");
        first.await.unwrap().unwrap();
        assert!(matches!(
            failing.await.unwrap(),
            Err(StoreError::ConditionFailed { index: 2 })
        ));
        assert!(matches!(
            same_key.await.unwrap(),
            Err(StoreError::ConditionFailed { index: 0 })
        ));
        last.await.unwrap().unwrap();
        assert!(s.get(&Key::new("K", "b")).await.unwrap().is_none());
        assert_eq!(
            s.get(&Key::new("K", "a")).await.unwrap().unwrap().data,
            b"1"
        );
        assert_eq!(
            s.get(&Key::new("K", "c")).await.unwrap().unwrap().data,
            b"5"
        );
        let count = s.get(&Key::new("K", "count")).await.unwrap().unwrap();
        assert_eq!(counter_value(&count), 2);
        // The committer role was handed back: the next write commits on its own.
        s.transact(vec![Write::put(Item::new("K", "d", b"6".to_vec()))])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn unflushed_groups_are_not_flushed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            let before = s.commit_stats();
            s.transact_unflushed(vec![Write::put(Item::new("u", "1", b"one".to_vec()))])
                .await
                .unwrap();
            let after = s.commit_stats();
            assert_eq!(after.groups, before.groups + 1);
            assert_eq!(after.flushes, before.flushes, "committed without a flush");
            // Visible at once; the next durable transaction flushes it with its own.
            assert!(s.get(&Key::new("u", "1")).await.unwrap().is_some());
            s.transact(vec![Write::put(Item::new("d", "1", b"two".to_vec()))])
                .await
                .unwrap();
            assert_eq!(s.commit_stats().flushes, before.flushes + 1);
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        assert!(s.get(&Key::new("u", "1")).await.unwrap().is_some());
        assert!(s.get(&Key::new("d", "1")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            s.transact(vec![Write::put(
                Item::new("a", "b", b"hello".to_vec()).with_gsi1("x", "y"),
            )])
            .await
            .unwrap();
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let got = s.get(&Key::new("a", "b")).await.unwrap().unwrap();
        assert_eq!(got.data, b"hello");
        assert_eq!(got.gsi1, Some(("x".into(), "y".into())));
    }
}
