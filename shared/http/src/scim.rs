//! The SCIM 2.0 surface at `/scim/v2` (RFC 7644).

mod bulk;
mod list;

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
use list::{Params, body_search, do_list, list_query, list_response, projection_from};
use provisync_core::directory::Stored;
use provisync_scim::projection::Projection;
use provisync_scim::{ResourceKind, ScimError};

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
        .route("/.search", post(list::search_root))
        .route("/Bulk", post(bulk::bulk))
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

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

// ---- resource handlers -------------------------------------------------------------

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
    // The stored resource lacks what is computed from membership items: a user's
    // `groups`, a group's `members`. A user just created is in no group (its id was
    // unknown until now): nothing to read.
    let computed = !(status == StatusCode::CREATED && kind == ResourceKind::User);
    if computed
        && let Ok(s) = state.directory.get(kind, stored.id(), &projection).await
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
            // RFC 9865 §4. Index paging stays the default for the clients that expect it
            // (§2.4); either method reads one page of the directory per request.
            "pagination": {
                "cursor": true,
                "index": true,
                "defaultPaginationMethod": "index",
                "defaultPageSize": state.directory.max_results,
                "maxPageSize": state.directory.max_results,
                "cursorTimeout": state.directory.cursor_timeout().as_secs().max(1),
            },
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
