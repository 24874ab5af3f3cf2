//! Group membership: the member writes a change comes to, and the check that every
//! member exists.

use super::keys::{member_key, resource_key};
use super::{Directory, DirectoryError, MAX_KEY_VALUE_BYTES, MembershipDiff, keys, store_error};
use crate::store::Key;
use provisync_scim::ResourceKind;
use provisync_scim::patch::{MemberChange, MemberRef};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};

impl Directory {
    /// Turns membership changes into the member ids to add and to remove, reading the
    /// current members only when a change needs them (replace, remove all, remove by a
    /// filter other than `value eq`).
    pub(super) async fn resolve_member_changes(
        &self,
        group_id: &str,
        changes: &[MemberChange],
    ) -> Result<MembershipDiff, DirectoryError> {
        if changes.is_empty() {
            return Ok(MembershipDiff::default());
        }
        let needs_listing = changes.iter().any(|c| {
            matches!(
                c,
                MemberChange::Replace(_) | MemberChange::RemoveAll | MemberChange::RemoveWhere(_)
            )
        });
        // Simulate the changes in order on a view of the membership that only holds what
        // the changes touch (or everything, when one needs the full list).
        let mut present: Option<HashMap<String, MemberRef>> = None;
        if needs_listing {
            present = Some(
                self.members_of(group_id)
                    .await?
                    .into_iter()
                    .map(|m| (m.value.clone(), m))
                    .collect(),
            );
        }
        let before: BTreeSet<String> = present
            .as_ref()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut added: HashMap<String, MemberRef> = HashMap::new();
        let mut removed: BTreeSet<String> = BTreeSet::new();
        let group_attr = self
            .schemas
            .view(ResourceKind::Group)
            .core
            .attribute("members")
            .cloned();
        for change in changes {
            match change {
                MemberChange::Add(ms) => {
                    for m in ms {
                        removed.remove(&m.value);
                        added.insert(m.value.clone(), m.clone());
                        if let Some(p) = present.as_mut() {
                            p.insert(m.value.clone(), m.clone());
                        }
                    }
                }
                MemberChange::Remove(ids) => {
                    for id in ids {
                        added.remove(id);
                        removed.insert(id.clone());
                        if let Some(p) = present.as_mut() {
                            p.remove(id);
                        }
                    }
                }
                MemberChange::RemoveAll
                | MemberChange::Replace(_)
                | MemberChange::RemoveWhere(_) => {
                    let p = present.get_or_insert_with(HashMap::new);
                    let drop: Vec<String> = match change {
                        MemberChange::RemoveWhere(f) => p
                            .values()
                            .filter(|m| {
                                let el = json!({"value": m.value, "type": m.kind.as_deref().unwrap_or("User")});
                                group_attr.as_ref().is_some_and(|a| f.matches_element(a, &el))
                            })
                            .map(|m| m.value.clone())
                            .collect(),
                        _ => p.keys().cloned().collect(),
                    };
                    for id in drop {
                        p.remove(&id);
                        added.remove(&id);
                        removed.insert(id);
                    }
                    if let MemberChange::Replace(ms) = change {
                        for m in ms {
                            removed.remove(&m.value);
                            added.insert(m.value.clone(), m.clone());
                            p.insert(m.value.clone(), m.clone());
                        }
                    }
                }
            }
        }
        // Only real differences are written: without a full listing, look up just the
        // memberships these changes touch (O(changes), not O(group size)).
        let before = if needs_listing {
            before
        } else {
            let keys: Vec<Key> = added
                .keys()
                .chain(removed.iter())
                .map(|m| member_key(group_id, m))
                .collect();
            let mut present = BTreeSet::new();
            for chunk in keys.chunks(100) {
                for item in self.store.get_many(chunk).await.map_err(store_error)? {
                    present.insert(
                        item.sk
                            .trim_start_matches(keys::MEMBER_SK_PREFIX)
                            .to_string(),
                    );
                }
            }
            present
        };
        let adds: Vec<MemberRef> = added
            .into_values()
            .filter(|m| !before.contains(&m.value))
            .collect();
        let removes: Vec<String> = removed
            .into_iter()
            .filter(|id| before.contains(id))
            .collect();
        Ok(MembershipDiff { adds, removes })
    }

    pub(super) async fn check_members_exist(
        &self,
        members: &[MemberRef],
    ) -> Result<(), DirectoryError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut wanted: HashMap<Key, &str> = HashMap::new();
        for m in members {
            if m.value.is_empty() || m.value.len() > MAX_KEY_VALUE_BYTES {
                return Err(DirectoryError::InvalidMemberId {
                    value: m.value.clone(),
                });
            }
            let kind = match m.kind.as_deref() {
                None => None,
                Some(k) => Some(ResourceKind::parse(k).ok_or_else(|| {
                    DirectoryError::InvalidMemberType {
                        member_type: k.to_string(),
                    }
                })?),
            };
            // Untyped members may be users or groups: look for both.
            for k in kind
                .map(|k| vec![k])
                .unwrap_or_else(|| vec![ResourceKind::User, ResourceKind::Group])
            {
                wanted.insert(resource_key(k, &m.value), m.value.as_str());
            }
        }
        let keys: Vec<Key> = wanted.keys().cloned().collect();
        let mut found: BTreeSet<String> = BTreeSet::new();
        for chunk in keys.chunks(100) {
            for item in self.store.get_many(chunk).await.map_err(store_error)? {
                if let Some(v) = wanted.get(&item.key()) {
                    found.insert(v.to_string());
                }
            }
        }
        if let Some(missing) = members.iter().find(|m| !found.contains(&m.value)) {
            return Err(DirectoryError::MissingMember {
                value: missing.value.clone(),
            });
        }
        Ok(())
    }
}
