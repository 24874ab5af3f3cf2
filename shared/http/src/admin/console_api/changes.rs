//! Every definition change is audited with who made it: a layer over the admin routes
//! that, after a successful `PUT`, `PATCH` or `DELETE` of `/admin/targets/{id}` or
//! `/admin/sources/{id}`, writes a `configure` entry (target = the definition's id,
//! actor = the [`Principal`]). Definitions never reach the entry: only what was done.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;
use crate::auth::Principal;
use provisync_core::sync::audit::{AuditEntry, AuditOp, AuditStatus};

/// What a request does to a definition, if it changes one: (noun, id, verb).
fn change_of(
    method: &Method,
    path: &str,
    status: StatusCode,
) -> Option<(&'static str, String, &'static str)> {
    let path = path.strip_prefix(crate::admin::BASE_PATH).unwrap_or(path);
    let mut parts = path.trim_matches('/').split('/');
    let noun = match parts.next()? {
        "targets" => "target",
        "sources" => "source",
        _ => return None,
    };
    let id = parts.next()?;
    if parts.next().is_some() || id.is_empty() {
        return None;
    }
    let verb = match *method {
        Method::PUT | Method::PATCH if status == StatusCode::CREATED => "created",
        Method::PUT | Method::PATCH => "changed",
        Method::DELETE => "removed",
        _ => return None,
    };
    Some((noun, id.to_string(), verb))
}

pub async fn audit_changes(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let principal = req.extensions().get::<Principal>().cloned();
    let resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    if let Some((noun, id, verb)) = change_of(&method, &path, resp.status()) {
        let mut entry = AuditEntry::new(&id, AuditOp::Configure, AuditStatus::Delivered)
            .detail(format!("{noun} {id} {verb}"));
        if let Some(p) = principal {
            entry = entry.actor(p.to_string());
        }
        if let Err(e) = state.hub.audit.record(entry).await {
            tracing::warn!(error = %e, "audit entry for a definition change not written");
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_requests_change_a_definition() {
        let ok = StatusCode::OK;
        assert_eq!(
            change_of(&Method::PUT, "/targets/crm", StatusCode::CREATED),
            Some(("target", "crm".into(), "created"))
        );
        assert_eq!(
            change_of(
                &Method::DELETE,
                "/admin/sources/site",
                StatusCode::NO_CONTENT
            ),
            Some(("source", "site".into(), "removed"))
        );
        assert_eq!(
            change_of(&Method::PATCH, "/targets/crm", ok).unwrap().2,
            "changed"
        );
        assert_eq!(change_of(&Method::POST, "/targets/crm/test", ok), None);
        assert_eq!(change_of(&Method::GET, "/targets/crm", ok), None);
        assert_eq!(change_of(&Method::PUT, "/audit", ok), None);
    }
}
