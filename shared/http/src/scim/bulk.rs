//! `POST /Bulk` (RFC 7644 §3.7): operations in order, `bulkId` references resolved as the
//! operations that create them succeed, `failOnErrors` honoured.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{location, scim_response};
use crate::ScimState;
use crate::scim_error::scim_error;
use crate::scim_input::{BaseUrl, ScimBody};
use provisync_core::directory::{Stored, etag};
use provisync_scim::schema::{BULK_REQUEST, BULK_RESPONSE};
use provisync_scim::{ResourceKind, ScimError, ScimType};

pub(super) async fn bulk(
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
