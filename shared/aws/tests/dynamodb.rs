//! The store contract against DynamoDB, on the moto emulator started by
//! `scripts/test-env.sh` (`PROVISYNC_TEST_MOTO`). Without it the tests skip, unless
//! `PROVISYNC_REQUIRE_PEERS` is set (`make test`), where a missing peer is a failure.

use provisync_aws::dynamodb::DynamoStore;
use provisync_aws::{AwsClients, AwsInitConfig, aws_init_with};
use provisync_core::store::{
    Condition, Index, Item, MAX_TRANSACT_ITEMS, Query, Store, StoreError, Write, contract,
    now_epoch,
};

async fn moto_store() -> Option<DynamoStore> {
    let Some(endpoint) = std::env::var("PROVISYNC_TEST_MOTO")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        if std::env::var_os("PROVISYNC_REQUIRE_PEERS").is_some() {
            panic!(
                "PROVISYNC_TEST_MOTO is not set but PROVISYNC_REQUIRE_PEERS is: run through scripts/test-env.sh"
            );
        }
        eprintln!("skipped: PROVISYNC_TEST_MOTO not set (run through scripts/test-env.sh)");
        return None;
    };
    let clients = AwsClients::for_endpoint(&endpoint).await;
    let table = format!("provisync-test-{}", uuid::Uuid::new_v4().simple());
    let report = aws_init_with(&clients, &AwsInitConfig::new(table.clone(), None))
        .await
        .expect("aws-init on moto");
    assert!(report.table_created);
    // Idempotent: a second run finds everything in place.
    let again = aws_init_with(&clients, &AwsInitConfig::new(table.clone(), None))
        .await
        .unwrap();
    assert!(!again.table_created && !again.ttl_enabled_now);
    Some(DynamoStore::new(clients.dynamodb, table))
}

#[tokio::test]
async fn contract_on_moto() {
    let Some(store) = moto_store().await else {
        return;
    };
    contract::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_contract_on_moto() {
    let Some(store) = moto_store().await else {
        return;
    };
    contract::run_concurrent(std::sync::Arc::new(store)).await;
}

#[tokio::test]
async fn transaction_size_limit() {
    let Some(store) = moto_store().await else {
        return;
    };
    let writes = |n: usize, p: &str| -> Vec<Write> {
        (0..n)
            .map(|i| {
                Write::put_new(
                    Item::new(p, format!("{i:03}"), vec![1]).with_gsi1(p, format!("{i:03}")),
                )
            })
            .collect()
    };
    store
        .transact(writes(MAX_TRANSACT_ITEMS, "full"))
        .await
        .unwrap();
    let page = store
        .query(&Query::new(Index::Primary, "full").limit(1000))
        .await
        .unwrap();
    assert_eq!(page.items.len(), MAX_TRANSACT_ITEMS);
    let err = store
        .transact(writes(MAX_TRANSACT_ITEMS + 1, "over"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "got {err:?}");
    // A 100-item transaction with one failing condition applies nothing.
    let mut w = writes(MAX_TRANSACT_ITEMS - 1, "mixed");
    w.push(Write::Check {
        key: provisync_core::store::Key::new("full", "050"),
        condition: Condition::NotExists,
    });
    let err = store.transact(w).await.unwrap_err();
    assert!(
        matches!(err, StoreError::ConditionFailed { index: 99 }),
        "got {err:?}"
    );
    let page = store
        .query(&Query::new(Index::Primary, "mixed"))
        .await
        .unwrap();
    assert!(page.items.is_empty());
}

#[tokio::test]
async fn expired_items_read_as_absent() {
    let Some(store) = moto_store().await else {
        return;
    };
    let now = now_epoch();
    let gone = Item::new("ttl", "gone", b"x".to_vec())
        .with_gsi2("ttl-idx", "a")
        .with_expiry(now - 1);
    let live = Item::new("ttl", "live", b"y".to_vec())
        .with_gsi2("ttl-idx", "b")
        .with_expiry(now + 600);
    store
        .transact(vec![Write::put(gone.clone()), Write::put(live.clone())])
        .await
        .unwrap();
    assert!(store.get(&gone.key()).await.unwrap().is_none());
    assert_eq!(store.get(&live.key()).await.unwrap(), Some(live.clone()));
    let many = store.get_many(&[gone.key(), live.key()]).await.unwrap();
    assert_eq!(many, vec![live.clone()]);
    let page = store
        .query(&Query::new(Index::Gsi2, "ttl-idx"))
        .await
        .unwrap();
    assert_eq!(page.items, vec![live.clone()]);
    // Conditions: the expired one is absent, the live one present.
    for (cond, ok) in [
        (Condition::Exists, false),
        (Condition::VersionIs(0), false),
        (Condition::NotExists, true),
    ] {
        let r = store
            .transact(vec![
                Write::Check {
                    key: gone.key(),
                    condition: cond.clone(),
                },
                Write::put(Item::new("ttl", "other", vec![])),
            ])
            .await;
        assert_eq!(r.is_ok(), ok, "{cond:?}: {r:?}");
    }
    store
        .transact(vec![Write::Delete {
            key: live.key(),
            condition: Condition::Exists,
        }])
        .await
        .unwrap();
    // A short page from filtering still pages to the end.
    let mut writes = Vec::new();
    for i in 0..12 {
        let exp = if i % 3 == 0 { now + 600 } else { now - 5 };
        writes.push(Write::put(
            Item::new("ttl-page", format!("{i:02}"), vec![]).with_expiry(exp),
        ));
    }
    store.transact(writes).await.unwrap();
    let page = store
        .query(&Query::new(Index::Primary, "ttl-page").limit(3))
        .await
        .unwrap();
    let sks: Vec<_> = page.items.iter().map(|i| i.sk.as_str()).collect();
    assert_eq!(sks, ["00", "03", "06"]);
    let page = store
        .query(
            &Query::new(Index::Primary, "ttl-page")
                .limit(3)
                .after(page.next),
        )
        .await
        .unwrap();
    let sks: Vec<_> = page.items.iter().map(|i| i.sk.as_str()).collect();
    assert_eq!(sks, ["09"]);
}

#[tokio::test]
async fn get_many_over_one_batch() {
    let Some(store) = moto_store().await else {
        return;
    };
    let mut keys = Vec::new();
    for chunk in 0..3 {
        let writes: Vec<_> = (0..90)
            .map(|i| {
                Write::put(Item::new(
                    format!("bulk{chunk}"),
                    format!("{i:03}"),
                    vec![chunk as u8],
                ))
            })
            .collect();
        keys.extend(writes.iter().map(Write::key));
        store.transact(writes).await.unwrap();
    }
    keys.push(keys[0].clone()); // duplicates are fine
    let got = store.get_many(&keys).await.unwrap();
    assert_eq!(got.len(), 270);
}
