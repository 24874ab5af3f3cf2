//! The SCIM 2.0 surface at `/scim/v2` (RFC 7644).

use std::collections::HashMap;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::ScimState;
use super::auth::{RequireToken, Scope, require_token};
use super::scim_error::{method_not_allowed, no_such_endpoint, scim_error};
use super::scim_input::{BaseUrl, ScimBody, ScimId};
use provisync_core::directory::{SearchRequest, Stored, etag};
use provisync_scim::filter;
use provisync_scim::projection::{Projection, parse_attribute_list};
use provisync_scim::schema::{
    AttrPath, BULK_REQUEST, BULK_RESPONSE, LIST_RESPONSE, SEARCH_REQUEST,
};
use provisync_scim::{ResourceKind, ScimError, ScimType};

pub use super::scim_input::BASE_PATH;
/// Longest `attributes`/`excludedAttributes`/`sortBy` parameter accepted.
const MAX_PARAM_LEN: usize = 8 * 1024;

pub use provisync_scim::error::{SCIM_CONTENT_TYPE, scim_response};

/// The SCIM router, paths under `/scim/v2`.
pub fn router(state: ScimState) -> Router {
    let guard = RequireToken {
        auth: state.auth.clone(),
        scope: Scope::Scim,
        unauthorized: ScimError::unauthorized,
    };
    let protected = Router::new()
        .route("/Users", get(list_users).post(create_user))
        .route("/Users/.search", post(search_users))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(put_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/Groups", get(list_groups).post(create_group))
        .route("/Groups/.search", post(search_groups))
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(put_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route("/.search", post(search_root))
        .route("/Bulk", post(bulk))
        .route("/Me", axum::routing::any(me))
        .route_layer(from_fn_with_state(guard, require_token::<ScimError>));
    // Discovery describes the server, not its data, and IdPs probe it before they have
    // a token configured: it is open (RFC 7644 §4).
    let discovery = Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema));
    let scim = protected
        .merge(discovery)
        .fallback(|| async { no_such_endpoint(BASE_PATH) })
        .method_not_allowed_fallback(|| async { method_not_allowed() });
    Router::new().nest(BASE_PATH, scim).with_state(state)
}

// ---- helpers -----------------------------------------------------------------------

fn location(base: &str, kind: ResourceKind, id: &str) -> String {
    format!("{base}/{}/{id}", kind.endpoint())
}

/// A resource as the client sees it: `meta.location` filled in, projection applied.
fn render(
    state: &ScimState,
    base: &str,
    kind: ResourceKind,
    stored: &Stored,
    projection: &Projection,
) -> Value {
    let mut r = stored.resource.clone();
    if let Some(meta) = r.get_mut("meta").and_then(Value::as_object_mut) {
        meta.insert("location".into(), json!(location(base, kind, stored.id())));
    }
    // `$ref` of members and groups (RFC 7643 §4.1.2, §4.2) depend on the public URL, so
    // they are filled in here rather than stored.
    for (attr, default_kind) in [
        ("members", ResourceKind::User),
        ("groups", ResourceKind::Group),
    ] {
        for el in r
            .get_mut(attr)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let target = el
                .get("type")
                .and_then(Value::as_str)
                .and_then(ResourceKind::parse)
                .unwrap_or(default_kind);
            let target = if attr == "groups" {
                ResourceKind::Group
            } else {
                target
            };
            if let Some(id) = el.get("value").and_then(Value::as_str).map(str::to_string) {
                el["$ref"] = json!(location(base, target, &id));
            }
        }
    }
    projection.apply(&state.directory.schemas().view(kind), &r)
}

fn resource_response(
    status: StatusCode,
    base: &str,
    kind: ResourceKind,
    stored: &Stored,
    body: Value,
) -> Response {
    let mut resp = scim_response(status, &body);
    if let Ok(v) = HeaderValue::from_str(&stored.etag()) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&location(base, kind, stored.id()))
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Query parameters, names matched case-insensitively.
struct Params(HashMap<String, String>);

impl Params {
    fn parse(raw: Option<String>) -> Result<Self, ScimError> {
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
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

fn projection_from(
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
fn search_request(
    filter: Option<&str>,
    sort_by: Option<&str>,
    sort_order: Option<&str>,
    start_index: Option<i64>,
    count: Option<i64>,
    projection: Projection,
) -> Result<SearchRequest, ScimError> {
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
    })
}

fn list_query(params: &Params) -> Result<SearchRequest, ScimError> {
    let projection = projection_from(params.get("attributes"), params.get("excludedAttributes"))?;
    search_request(
        params.get("filter"),
        params.get("sortBy"),
        params.get("sortOrder"),
        parse_index("startIndex", params.get("startIndex"))?,
        parse_index("count", params.get("count"))?,
        projection,
    )
}

fn body_search(body: &Value) -> Result<SearchRequest, ScimError> {
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
        projection,
    )
}

fn list_response(total: usize, start_index: usize, resources: Vec<Value>) -> Response {
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

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

// ---- resource handlers -------------------------------------------------------------

async fn do_list(
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
    Ok(list_response(
        result.total_results,
        result.start_index,
        resources,
    ))
}

async fn do_get(
    state: ScimState,
    headers: HeaderMap,
    base: String,
    kind: ResourceKind,
    id: String,
    query: Option<String>,
) -> Result<Response, ScimError> {
    let params = Params::parse(query)?;
    let projection = projection_from(params.get("attributes"), params.get("excludedAttributes"))?;
    let stored = state
        .directory
        .get(kind, &id, &projection)
        .await
        .map_err(scim_error)?;
    // RFC 7644 §3.14 / RFC 7232: If-None-Match with the current tag -> 304.
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && provisync_core::directory::if_match_ok(inm, stored.version)
    {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&stored.etag()) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        return Ok(resp);
    }
    let body = render(&state, &base, kind, &stored, &projection);
    Ok(resource_response(
        StatusCode::OK,
        &base,
        kind,
        &stored,
        body,
    ))
}

/// What a write returns: the resource as stored, with computed attributes, projected.
async fn write_response(
    state: &ScimState,
    base: &str,
    status: StatusCode,
    kind: ResourceKind,
    stored: Stored,
    query: Option<String>,
) -> Result<Response, ScimError> {
    let params = Params::parse(query)?;
    let projection = projection_from(params.get("attributes"), params.get("excludedAttributes"))?;
    let mut stored = stored;
    let full = state.directory.get(kind, stored.id(), &projection).await;
    if let Ok(s) = full
        && s.version == stored.version
    {
        stored = s;
    }
    let body = render(state, base, kind, &stored, &projection);
    Ok(resource_response(status, base, kind, &stored, body))
}

macro_rules! resource_handlers {
    ($kind:expr, $list:ident, $search:ident, $create:ident, $get:ident, $put:ident, $patch:ident, $delete:ident) => {
        async fn $list(
            State(state): State<ScimState>,
            BaseUrl(base): BaseUrl,
            RawQuery(q): RawQuery,
        ) -> Result<Response, ScimError> {
            let req = list_query(&Params::parse(q)?)?;
            do_list(state, base, $kind, req).await
        }
        async fn $search(
            State(state): State<ScimState>,
            BaseUrl(base): BaseUrl,
            ScimBody(body): ScimBody,
        ) -> Result<Response, ScimError> {
            let req = body_search(&body)?;
            do_list(state, base, $kind, req).await
        }
        async fn $create(
            State(state): State<ScimState>,
            BaseUrl(base): BaseUrl,
            RawQuery(q): RawQuery,
            ScimBody(body): ScimBody,
        ) -> Result<Response, ScimError> {
            let stored = state
                .directory
                .create($kind, &body)
                .await
                .map_err(scim_error)?
                .stored;
            write_response(&state, &base, StatusCode::CREATED, $kind, stored, q).await
        }
        async fn $get(
            State(state): State<ScimState>,
            headers: HeaderMap,
            BaseUrl(base): BaseUrl,
            ScimId(id): ScimId,
            RawQuery(q): RawQuery,
        ) -> Result<Response, ScimError> {
            do_get(state, headers, base, $kind, id, q).await
        }
        async fn $put(
            State(state): State<ScimState>,
            headers: HeaderMap,
            BaseUrl(base): BaseUrl,
            ScimId(id): ScimId,
            RawQuery(q): RawQuery,
            ScimBody(body): ScimBody,
        ) -> Result<Response, ScimError> {
            let stored = state
                .directory
                .replace($kind, &id, &body, if_match(&headers).as_deref())
                .await
                .map_err(scim_error)?
                .stored;
            write_response(&state, &base, StatusCode::OK, $kind, stored, q).await
        }
        async fn $patch(
            State(state): State<ScimState>,
            headers: HeaderMap,
            BaseUrl(base): BaseUrl,
            ScimId(id): ScimId,
            RawQuery(q): RawQuery,
            ScimBody(body): ScimBody,
        ) -> Result<Response, ScimError> {
            let stored = state
                .directory
                .patch($kind, &id, &body, if_match(&headers).as_deref())
                .await
                .map_err(scim_error)?
                .stored;
            write_response(&state, &base, StatusCode::OK, $kind, stored, q).await
        }
        async fn $delete(
            State(state): State<ScimState>,
            headers: HeaderMap,
            ScimId(id): ScimId,
        ) -> Result<Response, ScimError> {
            state
                .directory
                .delete($kind, &id, if_match(&headers).as_deref())
                .await
                .map_err(scim_error)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    };
}

resource_handlers!(
    ResourceKind::User,
    list_users,
    search_users,
    create_user,
    get_user,
    put_user,
    patch_user,
    delete_user
);
resource_handlers!(
    ResourceKind::Group,
    list_groups,
    search_groups,
    create_group,
    get_group,
    put_group,
    patch_group,
    delete_group
);

/// `POST /.search` on the root: all resource types (RFC 7644 §3.4.3). Results of every
/// type, users first; paging applies to the combined list.
async fn search_root(
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let req = body_search(&body)?;
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
        total += result.total_results.saturating_sub(result.resources.len());
    }
    if total == 0
        && let Some(f) = &req.filter
    {
        // Unknown everywhere: tell the client its filter is wrong.
        f.validate(&state.directory.schemas().view(ResourceKind::User))?;
    }
    Ok(list_response(total, start, out))
}

async fn me() -> ScimError {
    ScimError::not_implemented("/Me is not supported: Provisync has no end-user sessions")
}

// ---- discovery ---------------------------------------------------------------------

async fn service_provider_config(
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
) -> Response {
    scim_response(
        StatusCode::OK,
        &json!({
            "schemas": [provisync_scim::urn::SERVICE_PROVIDER_CONFIG],
            "documentationUri": "https://github.com/provisync/provisync#readme",
            "patch": {"supported": true},
            "bulk": {
                "supported": true,
                "maxOperations": state.config.max_bulk_operations,
                "maxPayloadSize": state.config.max_body_bytes,
            },
            "filter": {"supported": true, "maxResults": state.directory.max_results},
            "changePassword": {"supported": true},
            "sort": {"supported": true},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "Authentication with a bearer token (RFC 6750) issued by the Provisync operator.",
                "specUri": "https://www.rfc-editor.org/info/rfc6750",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{base}/ServiceProviderConfig"),
            },
        }),
    )
}

fn resource_type_json(base: &str, rt: &provisync_scim::schema::ResourceType) -> Value {
    let mut v = serde_json::to_value(rt).unwrap_or(Value::Null);
    v["schemas"] = json!([provisync_scim::urn::RESOURCE_TYPE]);
    v["meta"] = json!({"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", rt.id)});
    v
}

fn schema_json(base: &str, s: &provisync_scim::schema::Schema) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    v["schemas"] = json!([provisync_scim::urn::SCHEMA]);
    v["meta"] = json!({"resourceType": "Schema", "location": format!("{base}/Schemas/{}", s.id)});
    v
}

async fn resource_types(State(state): State<ScimState>, BaseUrl(base): BaseUrl) -> Response {
    let all: Vec<Value> = state
        .directory
        .schemas()
        .resource_types()
        .iter()
        .map(|rt| resource_type_json(&base, rt))
        .collect();
    list_response(all.len(), 1, all)
}

async fn resource_type(
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    ScimId(id): ScimId,
) -> Result<Response, ScimError> {
    let rt = state
        .directory
        .schemas()
        .resource_types()
        .iter()
        .find(|rt| rt.id.eq_ignore_ascii_case(&id))
        .ok_or_else(|| ScimError::not_found(format!("resource type {id} not found")))?;
    Ok(scim_response(
        StatusCode::OK,
        &resource_type_json(&base, rt),
    ))
}

async fn schemas(State(state): State<ScimState>, BaseUrl(base): BaseUrl) -> Response {
    let all: Vec<Value> = state
        .directory
        .schemas()
        .schemas()
        .iter()
        .map(|s| schema_json(&base, s))
        .collect();
    list_response(all.len(), 1, all)
}

async fn schema(
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    ScimId(id): ScimId,
) -> Result<Response, ScimError> {
    let s = state
        .directory
        .schemas()
        .schema(&id)
        .ok_or_else(|| ScimError::not_found(format!("schema {id} not found")))?;
    Ok(scim_response(StatusCode::OK, &schema_json(&base, s)))
}

// ---- bulk (RFC 7644 §3.7) ------------------------------------------------------------

async fn bulk(
    State(state): State<ScimState>,
    BaseUrl(base): BaseUrl,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a BulkRequest must be a JSON object"))?;
    let schemas_ok = obj
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(BULK_REQUEST))
            })
        });
    if !schemas_ok {
        return Err(ScimError::invalid_syntax(format!(
            "schemas must contain {BULK_REQUEST}"
        )));
    }
    let ops = obj
        .get("Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("Operations must be an array"))?;
    if ops.len() > state.config.max_bulk_operations {
        return Err(ScimError::new(
            413,
            Some(ScimType::TooMany),
            format!(
                "{} operations exceed maxOperations {}",
                ops.len(),
                state.config.max_bulk_operations
            ),
        ));
    }
    let fail_on_errors =
        match obj.get("failOnErrors") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                ScimError::invalid_value("failOnErrors must be a positive integer")
            })?),
        };
    let mut results: Vec<Option<Value>> = vec![None; ops.len()];
    let mut bulk_ids: HashMap<String, String> = HashMap::new();
    let mut errors = 0u64;
    let mut pending: Vec<usize> = (0..ops.len()).collect();
    // Operations run in order; one that refers to a bulkId not created yet waits for a
    // later pass (RFC 7644 §3.7.1 lets the server resolve references in any order).
    'passes: loop {
        let mut progressed = false;
        let mut still = Vec::new();
        for &i in &pending {
            if fail_on_errors.is_some_and(|n| errors >= n) {
                break 'passes;
            }
            let op = &ops[i];
            let unresolved = bulk_refs(op.get("data").unwrap_or(&Value::Null))
                .into_iter()
                .chain(
                    op.get("path")
                        .and_then(Value::as_str)
                        .and_then(path_bulk_ref),
                )
                .any(|r| !bulk_ids.contains_key(&r));
            if unresolved {
                still.push(i);
                continue;
            }
            progressed = true;
            let outcome = bulk_op(&state, &base, op, &bulk_ids).await;
            let entry = match outcome {
                Ok(done) => {
                    if let (Some(b), Some(id)) =
                        (op.get("bulkId").and_then(Value::as_str), &done.id)
                    {
                        bulk_ids.insert(b.to_string(), id.clone());
                    }
                    done.entry
                }
                Err((method, e)) => {
                    errors += 1;
                    let mut v = json!({"method": method, "status": e.status.to_string(), "response": e.to_json()});
                    if let Some(b) = op.get("bulkId") {
                        v["bulkId"] = b.clone();
                    }
                    v
                }
            };
            results[i] = Some(entry);
        }
        pending = still;
        if pending.is_empty() || !progressed {
            break;
        }
    }
    // Whatever is left refers to a bulkId that no operation created.
    for i in pending {
        if fail_on_errors.is_some_and(|n| errors >= n) {
            break;
        }
        errors += 1;
        let op = &ops[i];
        let e = ScimError::invalid_value("unresolved bulkId reference");
        let mut v = json!({
            "method": op.get("method").cloned().unwrap_or(Value::Null),
            "status": "409",
            "response": ScimError { status: 409, ..e }.to_json(),
        });
        if let Some(b) = op.get("bulkId") {
            v["bulkId"] = b.clone();
        }
        results[i] = Some(v);
    }
    let operations: Vec<Value> = results.into_iter().flatten().collect();
    Ok(scim_response(
        StatusCode::OK,
        &json!({"schemas": [BULK_RESPONSE], "Operations": operations}),
    ))
}

struct BulkDone {
    id: Option<String>,
    entry: Value,
}

fn path_bulk_ref(path: &str) -> Option<String> {
    path.rsplit('/')
        .next()
        .and_then(|s| s.strip_prefix("bulkId:"))
        .map(str::to_string)
}

/// Every `bulkId:x` string in a value.
fn bulk_refs(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => {
                if let Some(r) = s.strip_prefix("bulkId:") {
                    out.push(r.to_string());
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

fn resolve_bulk_refs(v: &Value, ids: &HashMap<String, String>) -> Value {
    match v {
        Value::String(s) => match s.strip_prefix("bulkId:").and_then(|r| ids.get(r)) {
            Some(id) => Value::String(id.clone()),
            None => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| resolve_bulk_refs(x, ids)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), resolve_bulk_refs(x, ids)))
                .collect(),
        ),
        _ => v.clone(),
    }
}

async fn bulk_op(
    state: &ScimState,
    base: &str,
    op: &Value,
    bulk_ids: &HashMap<String, String>,
) -> Result<BulkDone, (Value, ScimError)> {
    let method_v = op.get("method").cloned().unwrap_or(Value::Null);
    let fail = |e: ScimError| (method_v.clone(), e);
    let failed = |e| fail(scim_error(e));
    let method = op
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| fail(ScimError::invalid_syntax("each operation needs a method")))?
        .to_ascii_uppercase();
    let path = op
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| fail(ScimError::invalid_syntax("each operation needs a path")))?;
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let kind = segments
        .next()
        .and_then(|s| match s {
            "Users" => Some(ResourceKind::User),
            "Groups" => Some(ResourceKind::Group),
            _ => None,
        })
        .ok_or_else(|| fail(ScimError::invalid_path(format!("unknown bulk path {path}"))))?;
    let id =
        segments.next().map(
            |s| match s.strip_prefix("bulkId:").and_then(|r| bulk_ids.get(r)) {
                Some(id) => id.clone(),
                None => s.to_string(),
            },
        );
    let data = resolve_bulk_refs(op.get("data").unwrap_or(&Value::Null), bulk_ids);
    let version = op.get("version").and_then(Value::as_str);
    let dir = &state.directory;
    let entry = |status: u16, stored: Option<&Stored>| {
        let mut v = json!({"method": method, "status": status.to_string()});
        if let Some(b) = op.get("bulkId") {
            v["bulkId"] = b.clone();
        }
        if let Some(s) = stored {
            v["location"] = json!(location(base, kind, s.id()));
            v["version"] = json!(etag(s.version));
        }
        v
    };
    let need_id = || {
        id.clone().ok_or_else(|| {
            fail(ScimError::invalid_path(format!(
                "{method} needs a resource id in the path"
            )))
        })
    };
    match method.as_str() {
        "POST" => {
            if id.is_some() {
                return Err(fail(ScimError::invalid_path(
                    "POST goes to a resource type endpoint",
                )));
            }
            let s = dir.create(kind, &data).await.map_err(failed)?.stored;
            Ok(BulkDone {
                id: Some(s.id().to_string()),
                entry: entry(201, Some(&s)),
            })
        }
        "PUT" => {
            let s = dir
                .replace(kind, &need_id()?, &data, version)
                .await
                .map_err(failed)?
                .stored;
            Ok(BulkDone {
                id: Some(s.id().to_string()),
                entry: entry(200, Some(&s)),
            })
        }
        "PATCH" => {
            let s = dir
                .patch(kind, &need_id()?, &data, version)
                .await
                .map_err(failed)?
                .stored;
            Ok(BulkDone {
                id: Some(s.id().to_string()),
                entry: entry(200, Some(&s)),
            })
        }
        "DELETE" => {
            let id = need_id()?;
            dir.delete(kind, &id, version).await.map_err(failed)?;
            let mut e = entry(204, None);
            e["location"] = json!(location(base, kind, &id));
            Ok(BulkDone {
                id: Some(id),
                entry: e,
            })
        }
        other => Err(fail(ScimError::invalid_syntax(format!(
            "unsupported bulk method {other}"
        )))),
    }
}
