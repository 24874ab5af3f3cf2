//! Users for the console's pickers, the mapping preview and the scope count.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::admin::{AdminError, AdminResult, json_body, nonempty, parse_limit, query_params};
use provisync_core::directory::keys::UniqueAttr;
use provisync_core::directory::{Directory, DirectoryError, SearchRequest, Stored};
use provisync_core::sync::provision;
use provisync_core::target::AttributeMapping;
use provisync_scim::ResourceKind;
use provisync_scim::filter::Filter;
use provisync_wire as wire;

/// A user as lists show it.
pub fn summary(s: &Stored) -> wire::UserSummary {
    let r = &s.resource;
    let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
    let email = r
        .get("emails")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|e| e.get("primary") == Some(&Value::Bool(true)))
                .or_else(|| a.first())
        })
        .and_then(|e| e.get("value"))
        .and_then(Value::as_str)
        .map(str::to_string);
    wire::UserSummary {
        id: s.id().to_string(),
        user_name: text("userName").unwrap_or_default(),
        display_name: text("displayName"),
        email,
        active: r.get("active").and_then(Value::as_bool).unwrap_or(true),
    }
}

fn directory_error(e: DirectoryError) -> AdminError {
    match e {
        DirectoryError::Scim(e) => AdminError::bad_request(format!("invalid filter: {}", e.detail)),
        e => {
            tracing::error!(error = %e, "directory read failed");
            AdminError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the directory is unavailable, retry later",
            )
        }
    }
}

/// The user a request names, by id or userName: 404 when there is none.
pub async fn find_user(directory: &Directory, key: &str) -> AdminResult<Stored> {
    let key = key.trim();
    if key.is_empty() || key.len() > 512 {
        return Err(AdminError::bad_request("give a user id or userName"));
    }
    match directory.load(ResourceKind::User, key).await {
        Ok(s) => return Ok(s),
        Err(DirectoryError::NotFound { .. }) => {}
        Err(e) => return Err(directory_error(e)),
    }
    directory
        .find_unique(ResourceKind::User, UniqueAttr::UserName, key)
        .await
        .map_err(directory_error)?
        .ok_or_else(|| {
            AdminError::not_found(format!(
                "no user with id or userName {:?}",
                key.chars().take(64).collect::<String>()
            ))
        })
}

/// A SCIM filter on users from the request (400 when it does not parse or names unknown
/// attributes).
fn user_filter(directory: &Directory, text: &str) -> AdminResult<Filter> {
    let parsed = provisync_scim::filter::parse(text)
        .map_err(|e| AdminError::bad_request(format!("invalid filter: {}", e.detail)))?;
    parsed
        .validate(&directory.schemas().view(ResourceKind::User))
        .map_err(|e| AdminError::bad_request(format!("invalid filter: {}", e.detail)))?;
    Ok(parsed)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    q: Option<String>,
    limit: Option<String>,
}

/// Pages a user search reads at most (each examines at most the directory's page budget,
/// 1,000 users): a prefix matching none of the first 20,000 users finds nothing.
const SEARCH_PAGES: usize = 20;

/// `GET /admin/users?q=&limit=` (default 10, at most 50).
pub async fn search(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> AdminResult<Response> {
    let p: SearchParams = query_params(raw)?;
    let limit = parse_limit(p.limit.as_deref(), 10, 50)?;
    let directory = &state.hub.directory;
    let filter = match nonempty(p.q.map(|q| q.trim().to_string())) {
        Some(q) if q.len() > 256 => return Err(AdminError::bad_request("q is too long")),
        Some(q) => {
            // A JSON string is a SCIM filter's string literal (RFC 7644 §3.4.2.2).
            let lit = serde_json::to_string(&q).unwrap_or_default();
            Some(user_filter(
                directory,
                &format!("userName sw {lit} or displayName sw {lit} or emails.value sw {lit}"),
            )?)
        }
        None => None,
    };
    let Some(filter) = filter else {
        // The first users, and how many there are (kept counted: one read of the counts).
        let found = directory
            .search(
                ResourceKind::User,
                &SearchRequest {
                    start_index: 1,
                    count: Some(limit),
                    ..SearchRequest::default()
                },
            )
            .await
            .map_err(directory_error)?;
        return Ok(axum::Json(wire::UserList {
            users: found.resources.iter().map(summary).collect(),
            total: found.total_results,
            complete: true,
        })
        .into_response());
    };
    // A prefix no index answers: read by cursor, each page examining at most the
    // directory's page budget, until `limit` are found or [`SEARCH_PAGES`] pages were read.
    // (By index it counted every match of the whole directory on every keystroke.)
    let mut users = Vec::new();
    let mut cursor = String::new();
    let mut complete = false;
    for _ in 0..SEARCH_PAGES {
        let found = directory
            .search(
                ResourceKind::User,
                &SearchRequest {
                    filter: Some(filter.clone()),
                    start_index: 1,
                    // The same count on every page: a cursor belongs to its page size.
                    count: Some(limit),
                    cursor: Some(cursor),
                    ..SearchRequest::default()
                },
            )
            .await
            .map_err(directory_error)?;
        users.extend(found.resources.iter().map(summary));
        users.truncate(limit);
        match found.next_cursor {
            Some(next) if users.len() < limit => cursor = next,
            Some(_) => break,
            None => {
                complete = true;
                break;
            }
        }
    }
    Ok(axum::Json(wire::UserList {
        users,
        total: None,
        complete,
    })
    .into_response())
}

/// `POST /admin/preview`.
pub async fn preview(State(state): State<AppState>, req: Request) -> AdminResult<Response> {
    let body = json_body(&state, req).await?;
    let r: wire::PreviewRequest = serde_json::from_value(body)
        .map_err(|e| AdminError::bad_request(format!("invalid preview request: {e}")))?;
    let mapping: Vec<AttributeMapping> = serde_json::from_value(Value::Array(r.mapping))
        .map_err(|e| AdminError::bad_request(format!("invalid mapping: {e}")))?;
    let group_mapping: BTreeMap<String, String> =
        serde_json::from_value(Value::Object(r.group_mapping))
            .map_err(|e| AdminError::bad_request(format!("invalid group_mapping: {e}")))?;
    let directory = &state.hub.directory;
    let user = find_user(directory, &r.user).await?;
    let scope = nonempty(r.scope_filter);
    let (in_scope, payload) = provision::preview(
        directory.schemas(),
        &user,
        &mapping,
        &group_mapping,
        scope.as_deref(),
    )
    .map_err(|e| AdminError::bad_request(e.to_string()))?;
    Ok(axum::Json(wire::Preview {
        user: summary(&user),
        in_scope,
        payload,
    })
    .into_response())
}

async fn count(directory: &Directory, filter: Option<Filter>) -> AdminResult<usize> {
    Ok(directory
        .search(
            ResourceKind::User,
            &SearchRequest {
                filter,
                start_index: 1,
                count: Some(0),
                ..SearchRequest::default()
            },
        )
        .await
        .map_err(directory_error)?
        .total_results
        // Index paging (no cursor) always counts.
        .unwrap_or_default())
}

/// `POST /admin/preview/scope`.
pub async fn scope_count(State(state): State<AppState>, req: Request) -> AdminResult<Response> {
    let body = json_body(&state, req).await?;
    let r: wire::ScopeRequest = serde_json::from_value(body)
        .map_err(|e| AdminError::bad_request(format!("invalid scope request: {e}")))?;
    let directory = &state.hub.directory;
    let total = count(directory, None).await?;
    let selected = match nonempty(r.scope_filter) {
        Some(f) => count(directory, Some(user_filter(directory, &f)?)).await?,
        None => total,
    };
    Ok(axum::Json(wire::ScopeCount { selected, total }).into_response())
}
