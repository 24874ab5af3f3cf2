//! `POST /admin/sources/{id}/test`: the source form's **Test connection**.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::AdminResult;
use super::definitions::{no_source, record_test};
use crate::AppState;
use crate::auth::Principal;
use provisync_core::sync::insight;
use provisync_core::sync::pull::test_pull;
use provisync_wire as wire;

/// A pull source: its pull URL reached with its auth (as a pull starts: nothing
/// applied). A source that only sends webhooks: push-only, and when its last signed
/// delivery was accepted. Audited as a connection test, like a target's.
pub(super) async fn test_source(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AdminResult<Response> {
    let adm = &state.hub;
    let mut source = adm.sources.get(&id).await?.ok_or_else(|| no_source(&id))?;
    let started = Instant::now();
    let last_delivery = match source.accepts_webhooks() {
        true => insight::last_signed_delivery(&adm.audit, &id).await?,
        false => None,
    };
    let delivered = match &last_delivery {
        Some(at) => format!("last signed delivery accepted at {at}"),
        None => "no signed delivery accepted yet".to_string(),
    };
    let push_only = source.pull.is_none();
    let (ok, detail) = match &source.pull {
        Some(pull) => {
            let reached = match (adm.http)() {
                Ok(http) => test_pull(pull, http).await,
                Err(e) => Err(e.to_string()),
            };
            match reached {
                Ok(d) if source.accepts_webhooks() => (true, format!("{d}; webhooks: {delivered}")),
                Ok(d) => (true, d),
                Err(e) => (false, e),
            }
        }
        None => (
            true,
            format!(
                "push-only: the hub does not call this source, it receives its webhooks; {delivered}"
            ),
        ),
    };
    let mut secrets = Vec::new();
    let _ = source.try_map_secrets::<()>(&mut |_, s| {
        secrets.push(s.to_string());
        Ok(s.to_string())
    });
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let detail = record_test(adm, &id, ok, detail, &secrets, latency_ms, &principal).await;
    Ok(axum::Json(wire::SourceTest {
        source: id,
        ok,
        push_only,
        detail,
        last_delivery,
        latency_ms,
    })
    .into_response())
}
