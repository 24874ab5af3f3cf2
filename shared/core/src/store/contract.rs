//! The contract every [`Store`] adapter must pass: one suite, run against the embedded
//! store in unit tests and against DynamoDB (the moto emulator) in integration tests.
//!
//! Keys are prefixed with a fresh id so the suite can share a table with other tests.

use std::sync::Arc;

use super::{
    Condition, Cursor, Index, Item, Key, Query, Store, StoreError, Write, counter_value, now_epoch,
};

fn ns() -> String {
    format!("T{}", uuid::Uuid::new_v4().simple())
}

/// Runs every check; panics (test failure) with a message on the first broken rule.
pub async fn run_all(store: &dyn Store) {
    put_get_delete(store).await;
    conditions_are_all_or_nothing(store).await;
    version_condition(store).await;
    query_prefix_and_paging(store).await;
    gsi_follows_overwrites(store).await;
    expired_items_are_absent(store).await;
    invalid_transactions(store).await;
    get_many(store).await;
    counters(store).await;
    positions_need_not_be_items(store).await;
    unflushed_transactions_are_transactions(store).await;
}

/// The checks that need the store shared between concurrent tasks.
pub async fn run_concurrent(store: Arc<dyn Store>) {
    concurrent_adds_all_count(store.clone()).await;
    concurrent_versioned_puts_one_wins(store).await;
}

async fn put_get_delete(store: &dyn Store) {
    let p = ns();
    let item = Item::new(format!("{p}#A"), "S", br#"{"x":1}"#.to_vec()).with_version(3);
    store
        .transact(vec![Write::put(item.clone())])
        .await
        .unwrap();
    let got = store
        .get(&item.key())
        .await
        .unwrap()
        .expect("item just written");
    assert_eq!(got, item);
    store
        .transact(vec![Write::delete(item.key())])
        .await
        .unwrap();
    assert!(store.get(&item.key()).await.unwrap().is_none());
    // Deleting what is not there is fine without a condition.
    store
        .transact(vec![Write::delete(item.key())])
        .await
        .unwrap();
}

/// A transaction a retry redoes ([`Store::transact_unflushed`]) is a transaction all the
/// same: all or nothing, its conditions checked, visible at once, indexed.
async fn unflushed_transactions_are_transactions(store: &dyn Store) {
    let p = ns();
    let a = Item::new(format!("{p}#A"), "S", b"a".to_vec()).with_gsi1(format!("{p}#I"), "1");
    let b = Item::new(format!("{p}#B"), "S", b"b".to_vec());
    store
        .transact_unflushed(vec![Write::put_new(a.clone())])
        .await
        .unwrap();
    assert_eq!(
        store.get(&a.key()).await.unwrap().map(|i| i.data),
        Some(b"a".to_vec())
    );
    let page = store
        .query(&Query::new(Index::Gsi1, format!("{p}#I")))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "indexed");
    let err = store
        .transact_unflushed(vec![Write::put(b.clone()), Write::put_new(a.clone())])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ConditionFailed { index: 1 }),
        "got {err:?}"
    );
    assert!(
        store.get(&b.key()).await.unwrap().is_none(),
        "partial write applied"
    );
    // A durable transaction after it sees it (and, on a store that flushes, keeps it).
    store
        .transact(vec![
            Write::put(b.clone()),
            Write::Check {
                key: a.key(),
                condition: Condition::Exists,
            },
        ])
        .await
        .unwrap();
    assert!(store.get(&b.key()).await.unwrap().is_some());
}

async fn conditions_are_all_or_nothing(store: &dyn Store) {
    let p = ns();
    let a = Item::new(format!("{p}#A"), "S", b"a".to_vec());
    let b = Item::new(format!("{p}#B"), "S", b"b".to_vec());
    store
        .transact(vec![Write::put_new(a.clone())])
        .await
        .unwrap();
    // Second write's condition fails: the first must not be applied either.
    let c = Item::new(format!("{p}#C"), "S", b"c".to_vec());
    let err = store
        .transact(vec![
            Write::put_new(c.clone()),
            Write::put_new(a.clone()),
            Write::put(b.clone()),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ConditionFailed { index: 1 }),
        "got {err:?}"
    );
    assert!(
        store.get(&c.key()).await.unwrap().is_none(),
        "partial write applied"
    );
    assert!(
        store.get(&b.key()).await.unwrap().is_none(),
        "partial write applied"
    );
    // Check conditions.
    let err = store
        .transact(vec![
            Write::put(b.clone()),
            Write::Check {
                key: c.key(),
                condition: Condition::Exists,
            },
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ConditionFailed { index: 1 }),
        "got {err:?}"
    );
    store
        .transact(vec![
            Write::put(b.clone()),
            Write::Check {
                key: a.key(),
                condition: Condition::Exists,
            },
            Write::Delete {
                key: c.key(),
                condition: Condition::NotExists,
            },
        ])
        .await
        .unwrap();
    assert!(store.get(&b.key()).await.unwrap().is_some());
}

async fn version_condition(store: &dyn Store) {
    let p = ns();
    let a = Item::new(format!("{p}#V"), "S", b"1".to_vec()).with_version(1);
    store
        .transact(vec![Write::put_new(a.clone())])
        .await
        .unwrap();
    let a2 = Item {
        data: b"2".to_vec(),
        version: 2,
        ..a.clone()
    };
    store
        .transact(vec![Write::Put {
            item: a2.clone(),
            condition: Condition::VersionIs(1),
        }])
        .await
        .unwrap();
    let a3 = Item {
        data: b"3".to_vec(),
        version: 3,
        ..a.clone()
    };
    let err = store
        .transact(vec![Write::Put {
            item: a3,
            condition: Condition::VersionIs(1),
        }])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed { index: 0 }));
    assert_eq!(store.get(&a.key()).await.unwrap().unwrap().data, b"2");
    let err = store
        .transact(vec![Write::Delete {
            key: a.key(),
            condition: Condition::VersionIs(7),
        }])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed { index: 0 }));
    // A version condition on a missing item fails.
    let err = store
        .transact(vec![Write::Check {
            key: Key::new(format!("{p}#none"), "S"),
            condition: Condition::VersionIs(0),
        }])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed { index: 0 }));
}

async fn query_prefix_and_paging(store: &dyn Store) {
    let p = ns();
    let pk = format!("{p}#G");
    let mut writes = Vec::new();
    for i in 0..25 {
        writes.push(Write::put(
            Item::new(pk.clone(), format!("M#{i:03}"), vec![i as u8])
                .with_gsi1(format!("{p}#IDX"), format!("{:03}", 100 - i)),
        ));
    }
    writes.push(Write::put(Item::new(pk.clone(), "A#meta", b"m".to_vec())));
    store.transact(writes).await.unwrap();

    // Primary, prefix, pages of 10.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .query(
                &Query::new(Index::Primary, pk.clone())
                    .prefix("M#")
                    .limit(10)
                    .after(after),
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 10);
        seen.extend(page.items.iter().map(|i| i.sk.clone()));
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("M#{i:03}")).collect();
    assert_eq!(seen, expected);

    // Descending.
    let page = store
        .query(
            &Query::new(Index::Primary, pk.clone())
                .prefix("M#")
                .limit(3)
                .descending(),
        )
        .await
        .unwrap();
    let got: Vec<_> = page.items.iter().map(|i| i.sk.as_str()).collect();
    assert_eq!(got, ["M#024", "M#023", "M#022"]);
    let page = store
        .query(
            &Query::new(Index::Primary, pk.clone())
                .prefix("M#")
                .limit(3)
                .descending()
                .after(page.next),
        )
        .await
        .unwrap();
    let got: Vec<_> = page.items.iter().map(|i| i.sk.as_str()).collect();
    assert_eq!(got, ["M#021", "M#020", "M#019"]);

    // GSI, ordered by index sort key, paged.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .query(
                &Query::new(Index::Gsi1, format!("{p}#IDX"))
                    .limit(7)
                    .after(after),
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|i| i.sk.clone()));
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("M#{i:03}")).collect();
    assert_eq!(seen, expected);

    // Empty partition.
    let page = store
        .query(&Query::new(Index::Primary, format!("{p}#none")))
        .await
        .unwrap();
    assert!(page.items.is_empty() && page.next.is_none());
}

async fn gsi_follows_overwrites(store: &dyn Store) {
    let p = ns();
    let item =
        Item::new(format!("{p}#U"), "U", b"1".to_vec()).with_gsi1(format!("{p}#NAME"), "alice");
    store
        .transact(vec![Write::put(item.clone())])
        .await
        .unwrap();
    let renamed = item.clone().with_gsi1(format!("{p}#NAME"), "bob");
    store.transact(vec![Write::put(renamed)]).await.unwrap();
    let page = store
        .query(&Query::new(Index::Gsi1, format!("{p}#NAME")))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "stale index entry after overwrite");
    assert_eq!(page.items[0].gsi1.as_ref().unwrap().1, "bob");
    let page = store
        .query(&Query::new(Index::Gsi1, format!("{p}#NAME")).prefix("ali"))
        .await
        .unwrap();
    assert!(page.items.is_empty());
    store
        .transact(vec![Write::delete(item.key())])
        .await
        .unwrap();
    let page = store
        .query(&Query::new(Index::Gsi1, format!("{p}#NAME")))
        .await
        .unwrap();
    assert!(page.items.is_empty(), "index entry left after delete");
}

async fn expired_items_are_absent(store: &dyn Store) {
    let p = ns();
    let past = Item::new(format!("{p}#E"), "old", b"x".to_vec()).with_expiry(now_epoch() - 10);
    let future = Item::new(format!("{p}#E"), "new", b"y".to_vec()).with_expiry(now_epoch() + 3600);
    store
        .transact(vec![Write::put(past.clone()), Write::put(future.clone())])
        .await
        .unwrap();
    assert!(store.get(&past.key()).await.unwrap().is_none());
    assert!(store.get(&future.key()).await.unwrap().is_some());
    let page = store
        .query(&Query::new(Index::Primary, format!("{p}#E")))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    // An expired item counts as absent for conditions (replay keys rely on this).
    store
        .transact(vec![Write::put_new(
            past.clone().with_expiry(now_epoch() + 60),
        )])
        .await
        .unwrap();
}

async fn invalid_transactions(store: &dyn Store) {
    let p = ns();
    let err = store.transact(vec![]).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    let a = Item::new(format!("{p}#D"), "S", b"a".to_vec());
    let err = store
        .transact(vec![Write::put(a.clone()), Write::delete(a.key())])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    let writes = (0..101)
        .map(|i| Write::put(Item::new(format!("{p}#D"), format!("{i}"), vec![])))
        .collect();
    let err = store.transact(writes).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    let big = Item::new(
        format!("{p}#D"),
        "big",
        vec![b'x'; super::MAX_ITEM_DATA_BYTES + 1],
    );
    let err = store.transact(vec![Write::put(big)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
}

async fn get_many(store: &dyn Store) {
    let p = ns();
    let writes: Vec<_> = (0..30)
        .map(|i| Write::put(Item::new(format!("{p}#M{i}"), "S", vec![i as u8])))
        .collect();
    store.transact(writes).await.unwrap();
    let mut keys: Vec<Key> = (0..30)
        .map(|i| Key::new(format!("{p}#M{i}"), "S"))
        .collect();
    keys.push(Key::new(format!("{p}#missing"), "S"));
    let mut got = store.get_many(&keys).await.unwrap();
    got.sort_by_key(|i| i.data[0]);
    assert_eq!(got.len(), 30);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, it)| it.data == vec![i as u8])
    );
}

async fn counters(store: &dyn Store) {
    let p = ns();
    let key = Key::new(format!("{p}#N"), "N");
    // An absent counter counts from 0; every add bumps the version.
    store
        .transact(vec![Write::add(key.clone(), 5)])
        .await
        .unwrap();
    store
        .transact(vec![Write::add(key.clone(), -2)])
        .await
        .unwrap();
    let c = store.get(&key).await.unwrap().expect("counter");
    assert_eq!(counter_value(&c), 3);
    assert_eq!(c.version, 2);
    // In a transaction, the add is all or nothing with the rest.
    let err = store
        .transact(vec![
            Write::add(key.clone(), 10),
            Write::Check {
                key: Key::new(format!("{p}#missing"), "S"),
                condition: Condition::Exists,
            },
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed { index: 1 }));
    let item = Item::new(format!("{p}#R"), "S", b"r".to_vec());
    store
        .transact(vec![
            Write::put_new(item.clone()),
            Write::add(key.clone(), 10),
        ])
        .await
        .unwrap();
    let c = store.get(&key).await.unwrap().unwrap();
    assert_eq!((counter_value(&c), c.version), (13, 3));
    // A conditional add: on the version read, as a recount does.
    let err = store
        .transact(vec![Write::Add {
            key: key.clone(),
            delta: 1,
            condition: Condition::VersionIs(2),
        }])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed { index: 0 }));
    store
        .transact(vec![Write::Add {
            key: key.clone(),
            delta: -13,
            condition: Condition::VersionIs(3),
        }])
        .await
        .unwrap();
    let c = store.get(&key).await.unwrap().unwrap();
    assert_eq!((counter_value(&c), c.version), (0, 4));
    // Counters are read like any item.
    let many = store.get_many(std::slice::from_ref(&key)).await.unwrap();
    assert_eq!(many.len(), 1);
    assert_eq!(counter_value(&many[0]), 0);
}

async fn positions_need_not_be_items(store: &dyn Store) {
    let p = ns();
    let pk = format!("{p}#P");
    let idx = format!("{p}#PI");
    let writes = (0..10)
        .map(|i| {
            Write::put(
                Item::new(pk.clone(), format!("S#{:02}", i * 10), vec![])
                    .with_gsi1(idx.clone(), format!("{:02}#x", i * 10)),
            )
        })
        .collect();
    store.transact(writes).await.unwrap();
    let sks = |page: &super::Page| page.items.iter().map(|i| i.sk.clone()).collect::<Vec<_>>();
    // Between two index sort keys, ascending and descending.
    let at = Some(Cursor::at("35", "Z", "Z"));
    let page = store
        .query(
            &Query::new(Index::Gsi1, idx.clone())
                .limit(2)
                .after(at.clone()),
        )
        .await
        .unwrap();
    assert_eq!(sks(&page), ["S#40", "S#50"]);
    let page = store
        .query(
            &Query::new(Index::Gsi1, idx.clone())
                .limit(2)
                .descending()
                .after(at),
        )
        .await
        .unwrap();
    assert_eq!(sks(&page), ["S#30", "S#20"]);
    // A bare prefix of an index sort key comes before every key it starts.
    let page = store
        .query(
            &Query::new(Index::Gsi1, idx.clone())
                .limit(3)
                .after(Some(Cursor::at("50", "A", "A"))),
        )
        .await
        .unwrap();
    assert_eq!(sks(&page), ["S#50", "S#60", "S#70"]);
    // In the table's own sort key.
    let page = store
        .query(
            &Query::new(Index::Primary, pk.clone())
                .limit(2)
                .after(Some(Cursor::at("S#55", pk.clone(), "S#55"))),
        )
        .await
        .unwrap();
    assert_eq!(sks(&page), ["S#60", "S#70"]);
    // Past the end: nothing, and no next.
    let page = store
        .query(
            &Query::new(Index::Gsi1, idx)
                .limit(2)
                .after(Some(Cursor::at("99", "Z", "Z"))),
        )
        .await
        .unwrap();
    assert!(page.items.is_empty() && page.next.is_none());
}

/// Many writers that read the same version and put with `VersionIs` it (optimistic
/// concurrency, as the deprovision guard's window counts): exactly one wins each round.
async fn concurrent_versioned_puts_one_wins(store: Arc<dyn Store>) {
    let p = ns();
    let key = Key::new(format!("{p}#V"), "V");
    store
        .transact(vec![Write::put(
            Item::new(key.pk.clone(), key.sk.clone(), vec![]).with_version(0),
        )])
        .await
        .unwrap();
    for round in 0..8u64 {
        let current = store.get(&key).await.unwrap().expect("item").version;
        assert_eq!(current, round);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let item =
                    Item::new(key.pk.clone(), key.sk.clone(), vec![]).with_version(current + 1);
                store
                    .transact(vec![Write::Put {
                        item,
                        condition: Condition::VersionIs(current),
                    }])
                    .await
                    .is_ok()
            }));
        }
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.expect("task"));
        }
        assert_eq!(
            won, 1,
            "round {round}: {won} writers passed the same version check"
        );
    }
}

async fn concurrent_adds_all_count(store: Arc<dyn Store>) {
    let p = ns();
    let key = Key::new(format!("{p}#C"), "C");
    // Each task adds once alone and once inside a two-item transaction, as a create does.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        let key = key.clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            store.transact(vec![Write::add(key.clone(), 1)]).await?;
            store
                .transact(vec![
                    Write::put_new(Item::new(format!("{p}#I{i}"), "S", vec![])),
                    Write::add(key, 1),
                ])
                .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("add");
    }
    let c = store.get(&key).await.unwrap().expect("counter");
    assert_eq!(counter_value(&c), 32);
    assert_eq!(c.version, 32);
}
