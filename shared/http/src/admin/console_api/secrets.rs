//! Write-only secrets in a definition sent back: a secret given as `"***"` (the form the
//! API shows) keeps the stored one, so a form can send back the definition it read with
//! only the fields the operator changed. A `"***"` with nothing stored to keep (a new
//! definition, another kind, another way of signing in) is refused.

use crate::admin::{AdminError, AdminResult};
use provisync_core::hub::Hub;
use provisync_core::source::SourceConfig;
use provisync_core::target::{HttpAuth, REDACTED, TargetConfig, TargetKind};

fn keep(stored: Vec<String>, new: &mut Vec<&mut String>) -> AdminResult<()> {
    if stored.len() != new.len() {
        return Err(nothing_to_keep());
    }
    for (s, n) in stored.into_iter().zip(new.iter_mut()) {
        if **n == REDACTED {
            **n = s;
        }
    }
    Ok(())
}

fn nothing_to_keep() -> AdminError {
    AdminError::bad_request(
        "\"***\" keeps the stored secret, and there is none to keep here: give the secret",
    )
}

fn same_auth(a: &HttpAuth, b: &HttpAuth) -> bool {
    matches!(
        (a, b),
        (HttpAuth::Bearer(_), HttpAuth::Bearer(_))
            | (HttpAuth::Basic { .. }, HttpAuth::Basic { .. })
    )
}

/// Replaces each `"***"` secret of `t` by the stored target's.
pub async fn keep_target_secrets(hub: &Hub, t: &mut TargetConfig) -> AdminResult<()> {
    if !t.secrets().iter().any(|s| s == REDACTED) {
        return Ok(());
    }
    let Some(old) = hub.targets.get(&t.id).await? else {
        return Err(nothing_to_keep());
    };
    let comparable = match (&old.kind, &t.kind) {
        (TargetKind::Scim(a), TargetKind::Scim(b)) => same_auth(&a.auth, &b.auth),
        _ => old.kind_name() == t.kind_name(),
    };
    if !comparable {
        return Err(nothing_to_keep());
    }
    let stored = old.secrets();
    let mut slots: Vec<String> = t.secrets();
    let mut refs: Vec<&mut String> = slots.iter_mut().collect();
    keep(stored, &mut refs)?;
    let mut it = slots.into_iter();
    let _ = t.try_map_secrets(|_| Ok::<_, std::convert::Infallible>(it.next().unwrap_or_default()));
    Ok(())
}

/// Replaces each `"***"` secret of `s` by the stored source's.
pub async fn keep_source_secrets(hub: &Hub, s: &mut SourceConfig) -> AdminResult<()> {
    let mut given = Vec::new();
    let _ = s.clone().try_map_secrets(|x| {
        given.push(x.to_string());
        Ok::<_, std::convert::Infallible>(x.to_string())
    });
    if !given.iter().any(|x| x == REDACTED) {
        return Ok(());
    }
    let Some(old) = hub.sources.get(&s.id).await? else {
        return Err(nothing_to_keep());
    };
    let comparable = match (&old.pull, &s.pull) {
        (Some(a), Some(b)) => same_auth(&a.auth, &b.auth),
        (None, None) => true,
        _ => false,
    } && old.secrets.len() == s.secrets.len();
    if !comparable {
        return Err(nothing_to_keep());
    }
    let mut stored = Vec::new();
    let _ = old.clone().try_map_secrets(|x| {
        stored.push(x.to_string());
        Ok::<_, std::convert::Infallible>(x.to_string())
    });
    let mut refs: Vec<&mut String> = given.iter_mut().collect();
    keep(stored, &mut refs)?;
    let mut it = given.into_iter();
    let _ = s.try_map_secrets(|_| Ok::<_, std::convert::Infallible>(it.next().unwrap_or_default()));
    Ok(())
}
