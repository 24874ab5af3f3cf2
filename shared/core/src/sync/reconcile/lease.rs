//! The run lease: one cycle at a time reconciles a target.

use crate::store::keyspace;
use std::time::Duration;

use crate::store::{Condition, Item, Key, Store, StoreError, Write, now_epoch};

// ---- leases ---------------------------------------------------------------------------

fn lease_key(target: &str) -> Key {
    Key::new(format!("{}{target}", keyspace::LEASE), "LEASE")
}

/// A held lease on one target; released with [`Lease::release`] (or it expires).
#[derive(Debug)]
pub struct Lease {
    key: Key,
    token: u64,
}

impl Lease {
    /// Takes the lease for `ttl` if nobody holds it (absent or expired: the store's
    /// `NotExists` condition treats an expired item as absent). `None`: held elsewhere.
    pub async fn acquire(
        store: &dyn Store,
        target: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let key = lease_key(target);
        // A random version identifies the holder: only it can release the lease.
        let token = rand::random::<u64>() | 1;
        let data = serde_json::to_vec(&serde_json::json!({
            "holder": uuid::Uuid::new_v4().to_string(),
            "taken_at": chrono::Utc::now().to_rfc3339(),
        }))
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let item = Item::new(key.pk.clone(), key.sk.clone(), data)
            .with_version(token)
            .with_expiry(now_epoch() + ttl.as_secs().max(1) as i64);
        match store.transact(vec![Write::put_new(item)]).await {
            Ok(()) => Ok(Some(Lease { key, token })),
            Err(StoreError::ConditionFailed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease back (only if still ours).
    pub async fn release(self, store: &dyn Store) -> Result<(), StoreError> {
        match store
            .transact(vec![Write::Delete {
                key: self.key,
                condition: Condition::VersionIs(self.token),
            }])
            .await
        {
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn a_lease_is_exclusive_until_released_or_expired() {
        let store = EmbeddedStore::in_memory();
        let a = Lease::acquire(&store, "crm", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("first");
        assert!(
            Lease::acquire(&store, "crm", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
        // Another target is independent.
        assert!(
            Lease::acquire(&store, "hr", Duration::from_secs(60))
                .await
                .unwrap()
                .is_some()
        );
        a.release(&store).await.unwrap();
        let b = Lease::acquire(&store, "crm", Duration::from_secs(1))
            .await
            .unwrap()
            .expect("after release");
        // An expired lease counts as absent.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let c = Lease::acquire(&store, "crm", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("after expiry");
        // The old holder's release does not drop the new holder's lease.
        b.release(&store).await.unwrap();
        assert!(
            Lease::acquire(&store, "crm", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
        c.release(&store).await.unwrap();
    }
}
