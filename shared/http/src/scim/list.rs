//! Lists and searches: `GET /Users`, `GET /Groups` and `POST …/.search` (RFC 7644
//! §3.4.2, §3.4.3), paged by `startIndex` (the default) or by cursor (RFC 9865: `cursor`
//! empty for the first page, then each page's `nextCursor` or `previousCursor`).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{MAX_PARAM_LEN, render, scim_response};
use crate::ScimState;
use crate::scim_error::scim_error;
use crate::scim_input::{BaseUrl, ScimBody};
use provisync_core::directory::{SearchRequest, SearchResult};
use provisync_scim::filter;
use provisync_scim::projection::{Projection, parse_attribute_list};
use provisync_scim::schema::{AttrPath, LIST_RESPONSE, SEARCH_REQUEST};
use provisync_scim::{ResourceKind, ScimError};

/// Query parameters, names matched case-insensitively.
pub(super) struct Params(HashMap<String, String>);

impl Params {
    pub(super) fn parse(raw: Option<String>) -> Result<Self, ScimError> {
        let raw = raw.unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&raw)
            .map_err(|e| ScimError::invalid_value(format!("malformed query string: {e}")))?;
        Ok(Params(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        ))
    }
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

pub(super) fn projection_from(
    attributes: Option<&str>,
    excluded: Option<&str>,
) -> Result<Projection, ScimError> {
    let list = |s: Option<&str>| -> Result<Vec<AttrPath>, ScimError> {
        match s {
            None => Ok(vec![]),
            Some(s) if s.len() > MAX_PARAM_LEN => {
                Err(ScimError::invalid_value("attribute list too long"))
            }
            Some(s) => parse_attribute_list(s),
        }
    };
    Ok(Projection {
        attributes: list(attributes)?,
        excluded: list(excluded)?,
    })
}

fn parse_index(name: &str, v: Option<&str>) -> Result<Option<i64>, ScimError> {
    match v {
        None => Ok(None),
        Some(s) => {
            s.trim().parse::<i64>().map(Some).map_err(|_| {
                ScimError::invalid_value(format!("{name} must be an integer, got '{s}'"))
            })
        }
    }
}

/// Builds a search from list parameters (GET) or a SearchRequest body (POST .search).
#[allow(clippy::too_many_arguments)]
fn search_request(
    filter: Option<&str>,
    sort_by: Option<&str>,
    sort_order: Option<&str>,
    start_index: Option<i64>,
    count: Option<i64>,
    cursor: Option<&str>,
    projection: Projection,
) -> Result<SearchRequest, ScimError> {
    // RFC 9865 §2.4: `startIndex` asks for index paging, `cursor` for cursor paging.
    if start_index.is_some() && cursor.is_some() {
        return Err(ScimError::invalid_value(
            "startIndex and cursor ask for different paging methods: send one of them",
        ));
    }
    if let Some(c) = cursor
        && c.len() > MAX_PARAM_LEN
    {
        return Err(ScimError::bad_request(
            provisync_scim::ScimType::InvalidCursor,
            "the cursor is invalid: too long",
        ));
    }
    let filter = match filter {
        Some(f) if !f.trim().is_empty() => Some(filter::parse(f)?),
        _ => None,
    };
    let sort_by = match sort_by {
        Some(s) if !s.trim().is_empty() => Some(AttrPath::parse(s.trim()).ok_or_else(|| {
            ScimError::invalid_value(format!("sortBy '{s}' is not an attribute path"))
        })?),
        _ => None,
    };
    let descending = match sort_order.map(str::to_ascii_lowercase).as_deref() {
        None | Some("ascending") => false,
        Some("descending") => true,
        Some(o) => {
            return Err(ScimError::invalid_value(format!(
                "sortOrder must be ascending or descending, got '{o}'"
            )));
        }
    };
    // RFC 7644 §3.4.2.4: startIndex < 1 is 1; a negative count is 0.
    let start_index = start_index.unwrap_or(1).max(1);
    let start_index = usize::try_from(start_index).unwrap_or(usize::MAX);
    let count = count.map(|c| usize::try_from(c.max(0)).unwrap_or(usize::MAX));
    Ok(SearchRequest {
        filter,
        sort_by,
        descending,
        start_index,
        count,
        projection,
        cursor: cursor.map(str::to_string),
    })
}

pub(super) fn list_query(params: &Params) -> Result<SearchRequest, ScimError> {
    let projection = projection_from(params.get("attributes"), params.get("excludedAttributes"))?;
    search_request(
        params.get("filter"),
        params.get("sortBy"),
        params.get("sortOrder"),
        parse_index("startIndex", params.get("startIndex"))?,
        parse_index("count", params.get("count"))?,
        params.get("cursor"),
        projection,
    )
}

pub(super) fn body_search(body: &Value) -> Result<SearchRequest, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a SearchRequest must be a JSON object"))?;
    if let Some(schemas) = obj.get("schemas") {
        let ok = schemas.as_array().is_some_and(|a| {
            a.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(SEARCH_REQUEST))
            })
        });
        if !ok {
            return Err(ScimError::invalid_syntax(format!(
                "schemas must contain {SEARCH_REQUEST}"
            )));
        }
    }
    let str_field = |name: &str| -> Result<Option<String>, ScimError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Array(a)) if name.ends_with("ttributes") => {
                let parts: Option<Vec<&str>> = a.iter().map(Value::as_str).collect();
                parts.map(|p| Some(p.join(","))).ok_or_else(|| {
                    ScimError::invalid_value(format!("{name} must be a list of strings"))
                })
            }
            Some(_) => Err(ScimError::invalid_value(format!(
                "{name} has the wrong type"
            ))),
        }
    };
    let int_field = |name: &str| -> Result<Option<i64>, ScimError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| ScimError::invalid_value(format!("{name} must be an integer"))),
            Some(Value::String(s)) => parse_index(name, Some(s)),
            Some(_) => Err(ScimError::invalid_value(format!(
                "{name} must be an integer"
            ))),
        }
    };
    let projection = projection_from(
        str_field("attributes")?.as_deref(),
        str_field("excludedAttributes")?.as_deref(),
    )?;
    search_request(
        str_field("filter")?.as_deref(),
        str_field("sortBy")?.as_deref(),
        str_field("sortOrder")?.as_deref(),
        int_field("startIndex")?,
        int_field("count")?,
        str_field("cursor")?.as_deref(),
        projection,
    )
}

/// A list response of index paging (RFC 7644 §3.4.2).
pub(super) fn list_response(total: usize, start_index: usize, resources: Vec<Value>) -> Response {
    scim_response(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": total,
            "itemsPerPage": resources.len(),
            "startIndex": start_index,
            "Resources": resources,
        }),
    )
}

/// The list response of a search: index paging, or cursor paging (RFC 9865 §2:
/// `nextCursor` unless this is the last page, `previousCursor` unless the first,
/// `totalResults` when known, no `startIndex`).
fn search_response(result: &SearchResult, cursor_paging: bool, resources: Vec<Value>) -> Response {
    if !cursor_paging {
        return list_response(
            result.total_results.unwrap_or(resources.len()),
            result.start_index,
            resources,
        );
    }
    let mut body = json!({"schemas": [LIST_RESPONSE]});
    if let Some(t) = result.total_results {
        body["totalResults"] = json!(t);
    }
    body["itemsPerPage"] = json!(resources.len());
    if let Some(c) = &result.next_cursor {
        body["nextCursor"] = json!(c);
    }
    if let Some(c) = &result.previous_cursor {
        body["previousCursor"] = json!(c);
    }
    body["Resources"] = Value::Array(resources);
    scim_response(StatusCode::OK, &body)
}

pub(super) async fn do_list(
    state: ScimState,
    base: String,
    kind: ResourceKind,
    req: SearchRequest,
) -> Result<Response, ScimError> {
    let result = state
        .directory
        .search(kind, &req)
        .await
        .map_err(scim_error)?;
    let resources = result
        .resources
        .iter()
        .map(|s| render(&state, &base, kind, s, &req.projection))
        .collect();
    Ok(search_response(&result, req.cursor.is_some(), resources))
}

/// `POST /.search` on the root: all resource types (RFC 7644 §3.4.3). Results of every
/// type, users first; paging applies to the combined list.
pub(super) async fn search_root(
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let req = body_search(&body)?;
    if req.cursor.is_some() {
        return Err(ScimError::invalid_value(
            "cursor paging is per resource type: POST /Users/.search or /Groups/.search",
        ));
    }
    let start = req.start_index.max(1);
    let count = req
        .count
        .unwrap_or(state.directory.max_results)
        .min(state.directory.max_results);
    let mut total = 0;
    let mut out = Vec::new();
    for kind in [ResourceKind::User, ResourceKind::Group] {
        // A filter naming an attribute only one type has is simply false for the other.
        if let Some(f) = &req.filter
            && f.validate(&state.directory.schemas().view(kind)).is_err()
        {
            continue;
        }
        let sub = SearchRequest {
            start_index: 1,
            count: Some(state.directory.max_results),
            ..req.clone()
        };
        let result = state
            .directory
            .search(kind, &sub)
            .await
            .map_err(scim_error)?;
        for s in &result.resources {
            total += 1;
            if total >= start && out.len() < count {
                out.push(render(&state, &base, kind, s, &req.projection));
            }
        }
        total += result
            .total_results
            .unwrap_or(result.resources.len())
            .saturating_sub(result.resources.len());
    }
    if total == 0
        && let Some(f) = &req.filter
    {
        // Unknown everywhere: tell the client its filter is wrong.
        f.validate(&state.directory.schemas().view(ResourceKind::User))?;
    }
    Ok(list_response(total, start, out))
}
