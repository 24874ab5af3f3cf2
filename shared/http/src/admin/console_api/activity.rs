//! `GET /admin/activity`: the audit log as the console's reporting dashboard shows it —
//! filtered by target, operation, status, account (id or userName) and time range, each
//! entry with the account's userName (a group's displayName), and as CSV.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::admin::wire_of::audit_entry;
use crate::admin::{AdminError, AdminResult, nonempty, parse_limit, query_params};
use provisync_core::directory::keys::UniqueAttr;
use provisync_core::sync::audit::{AuditEntry, AuditOp, AuditQuery, AuditStatus, MAX_LIMIT};
use provisync_scim::ResourceKind;
use provisync_wire as wire;

/// Audit pages one answer reads at most (each bounded by the audit's own read budget).
const MAX_ROUNDS: usize = 10;
/// Entries one CSV export holds at most, and the audit pages it reads at most.
const MAX_CSV_ROWS: usize = 10_000;
const MAX_CSV_ROUNDS: usize = 40;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityParams {
    target: Option<String>,
    op: Option<String>,
    status: Option<String>,
    /// A user's id or userName (or any resource id).
    account: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    /// `csv` for a download of the filtered view.
    format: Option<String>,
}

fn instant(name: &str, s: Option<String>) -> AdminResult<Option<DateTime<Utc>>> {
    match nonempty(s) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(&s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                AdminError::bad_request(format!(
                    "{name} must be an RFC 3339 timestamp (2025-01-31T00:00:00Z)"
                ))
            }),
    }
}

pub async fn activity(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> AdminResult<Response> {
    let hub = &state.hub;
    let p: ActivityParams = query_params(raw)?;
    let csv = match nonempty(p.format).as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(AdminError::bad_request("format must be json or csv")),
    };
    let op = match nonempty(p.op) {
        Some(o) => Some(
            AuditOp::parse(&o)
                .ok_or_else(|| AdminError::bad_request(format!("unknown op {o:?}")))?,
        ),
        None => None,
    };
    let status = match nonempty(p.status) {
        Some(s) => Some(
            AuditStatus::parse(&s)
                .ok_or_else(|| AdminError::bad_request(format!("unknown status {s:?}")))?,
        ),
        None => None,
    };
    let since = instant("since", p.since)?;
    let until = instant("until", p.until)?;
    let target = nonempty(p.target);
    let account = nonempty(p.account.map(|a| a.trim().to_string()));
    if target.as_ref().is_some_and(|t| t.len() > 512)
        || account.as_ref().is_some_and(|a| a.len() > 512)
    {
        return Err(AdminError::bad_request("target or account is too long"));
    }
    // An account given by userName: its entries are under the user's id.
    let resource = match account {
        Some(a) => Some(
            match hub
                .directory
                .find_unique(ResourceKind::User, UniqueAttr::UserName, &a)
                .await
            {
                Ok(Some(u)) => u.id().to_string(),
                _ => a,
            },
        ),
        None => None,
    };
    let limit = if csv {
        MAX_CSV_ROWS
    } else {
        parse_limit(p.limit.as_deref(), 50, MAX_LIMIT)?
    };
    let mut q = AuditQuery {
        target,
        resource,
        op,
        status,
        since,
        limit: 0,
        cursor: nonempty(p.cursor),
    };
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut rounds = 0;
    let next = loop {
        q.limit = (limit - entries.len()).min(MAX_LIMIT);
        let (page, next) = hub.audit.query(&q).await?;
        entries.extend(page.into_iter().filter(|e| {
            until.is_none_or(|u| {
                DateTime::parse_from_rfc3339(&e.at).is_ok_and(|at| at.with_timezone(&Utc) <= u)
            })
        }));
        rounds += 1;
        match next {
            Some(c)
                if entries.len() < limit
                    && rounds < if csv { MAX_CSV_ROUNDS } else { MAX_ROUNDS } =>
            {
                q.cursor = Some(c);
            }
            other => break other,
        }
    };
    let names = resource_names(&state, &entries).await;
    let rows: Vec<wire::ActivityEntry> = entries
        .iter()
        .map(|e| wire::ActivityEntry {
            entry: audit_entry(e),
            resource_name: names.get(&e.resource_id).cloned(),
        })
        .collect();
    if csv {
        return Ok(csv_response(&rows));
    }
    Ok(axum::Json(wire::ActivityPage {
        entries: rows,
        next_cursor: next,
    })
    .into_response())
}

/// userNames of the users and displayNames of the groups the entries name (two batched
/// reads; a resource deleted since keeps only its id).
async fn resource_names(state: &AppState, entries: &[AuditEntry]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (kind, attr) in [
        (ResourceKind::User, "userName"),
        (ResourceKind::Group, "displayName"),
    ] {
        let mut ids: Vec<String> = entries
            .iter()
            .filter(|e| e.resource_type == kind.as_str() && !e.resource_id.is_empty())
            .map(|e| e.resource_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            continue;
        }
        match state.hub.directory.load_existing(kind, &ids).await {
            Ok(found) => {
                for s in found {
                    if let Some(n) = s.resource.get(attr).and_then(Value::as_str) {
                        out.insert(s.id().to_string(), n.to_string());
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "names for the activity view not read"),
        }
    }
    out
}

/// One CSV field (RFC 4180), with a leading `'` where a spreadsheet would read a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv_response(rows: &[wire::ActivityEntry]) -> Response {
    let mut out = String::from(
        "time,target,operation,status,account,resource_type,resource_id,detail,actor,latency_ms,event_id\r\n",
    );
    for r in rows {
        let e = &r.entry;
        let fields = [
            e.at.as_str(),
            e.target.as_str(),
            e.op.as_str(),
            e.status.as_str(),
            r.resource_name.as_deref().unwrap_or_default(),
            e.resource_type.as_str(),
            e.resource_id.as_str(),
            e.detail.as_str(),
            e.actor.as_deref().unwrap_or_default(),
            &e.latency_ms.to_string(),
            e.event_id.as_str(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"provisync-activity.csv\"",
            ),
        ],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }
}
