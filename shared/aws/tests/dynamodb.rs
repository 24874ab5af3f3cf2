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

/// moto's server answers each request on its own thread: a conditional write reads the
/// item, checks its condition, then stores, and without `scripts/moto_server.py`'s lock
/// another request could store in between, so two writers conditioned on the same
/// version both won (a lost update, which DynamoDB never allows; the deprovision guard
/// then let one deactivation more through than its `max`). Here a moto started through
/// that script, with a pause the test slips in between the read and the condition check
/// of each versioned `PutItem`, must still let exactly one versioned writer win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_stay_atomic_on_a_slow_moto() {
    let Some(venv) = std::env::var_os("PROVISYNC_TEST_VENV").filter(|v| !v.is_empty()) else {
        if std::env::var_os("PROVISYNC_REQUIRE_PEERS").is_some() {
            panic!(
                "PROVISYNC_TEST_VENV is not set but PROVISYNC_REQUIRE_PEERS is: run through scripts/test-env.sh"
            );
        }
        eprintln!("skipped: PROVISYNC_TEST_VENV not set (run through scripts/test-env.sh)");
        return;
    };
    let Some((_moto, clients)) = SlowMoto::start(std::path::Path::new(&venv)).await else {
        panic!("moto_server.py with a pause did not start");
    };
    let table = format!("provisync-test-{}", uuid::Uuid::new_v4().simple());
    aws_init_with(&clients, &AwsInitConfig::new(table.clone(), None))
        .await
        .expect("aws-init on the slow moto");
    let store = DynamoStore::new(clients.dynamodb, table);
    contract::run_concurrent(std::sync::Arc::new(store)).await;
}

/// `scripts/moto_server.py` on a free loopback port, with a 50 ms pause inside the
/// condition check of every `PutItem` conditioned on a version (`#v`). Killed on drop.
struct SlowMoto {
    child: std::process::Child,
}

/// Imports the script (its patches apply on import), then widens the window between
/// moto reading the current item and storing the new one.
const SLOW_MOTO: &str = r##"
import sys, time
sys.path.insert(0, sys.argv[1])
import moto_server
from moto.dynamodb.models import table
check = table.get_filter_expression
def paused(expr, *a, **kw):
    if expr and "#v" in expr:
        time.sleep(0.05)
    return check(expr, *a, **kw)
table.get_filter_expression = paused
sys.argv = ["moto_server", "-H", "127.0.0.1", "-p", sys.argv[2]]
sys.exit(moto_server.main())
"##;

impl SlowMoto {
    /// Started and answering DynamoDB requests, or `None` after three tries.
    async fn start(venv: &std::path::Path) -> Option<(SlowMoto, AwsClients)> {
        let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts");
        for _attempt in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let child = std::process::Command::new(venv.join("bin").join("python"))
                .args(["-c", SLOW_MOTO, scripts, &port.to_string()])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn python");
            let mut moto = SlowMoto { child };
            let clients = AwsClients::for_endpoint(&format!("http://127.0.0.1:{port}")).await;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if moto.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if clients.dynamodb.list_tables().send().await.is_ok() {
                    return Some((moto, clients));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        None
    }
}

impl Drop for SlowMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
