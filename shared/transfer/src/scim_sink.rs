//! [`ImportSink`] into a running hub, through its SCIM API.

use crate::TransferError;
use crate::import::{ImportSink, SinkError, Written};
use async_trait::async_trait;
use provisync_client::{HubClient, Method};
use provisync_core::directory::keys::UniqueAttr;
use provisync_scim::paging::{PagePosition, offers_cursors};
use serde_json::{Value, json};
use std::collections::HashMap;

/// [`ImportSink`] over a hub's SCIM API (`/Bulk` in batches of [`BULK_OPERATIONS`]) with
/// a SCIM token; also reads users for export.
#[derive(Clone)]
pub struct ScimSink {
    client: HubClient,
}

impl std::fmt::Debug for ScimSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimSink")
            .field("base", &self.client.scim_root())
            .finish_non_exhaustive()
    }
}

/// Operations per `/Bulk` request.
pub const BULK_OPERATIONS: usize = 100;
/// Longest lookup filter sent, in bytes: below the hub's
/// [`provisync_scim::filter::MAX_FILTER_LEN`] (8 KiB) with room to spare; about 250 short
/// `userName`s.
pub const LOOKUP_FILTER_BYTES: usize = 6 * 1024;
const BULK_REQUEST: &str = provisync_scim::urn::BULK_REQUEST;
/// Users per page of an export.
pub const EXPORT_PAGE: usize = 500;

impl ScimSink {
    /// `base`: the SCIM root (`http://127.0.0.1:8787/scim/v2`).
    pub fn new(base: &str, token: &str) -> ScimSink {
        // Fails only when no TLS backend can be set up (as `reqwest::Client::new` would).
        let client = HubClient::for_scim_root(base, token).expect("an HTTP client");
        ScimSink { client }
    }

    /// Over a [`HubClient`] of the hub (with a SCIM token).
    pub fn from_client(client: HubClient) -> ScimSink {
        ScimSink { client }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), SinkError> {
        let (status, v) = self
            .client
            .scim(method, path, body)
            .await
            .map_err(|e| SinkError::Unreachable(e.to_string()))?;
        if status == 401 || status == 403 {
            return Err(SinkError::Unauthorized(status));
        }
        Ok((status, v))
    }

    fn detail(v: &Value, status: u16) -> SinkError {
        SinkError::Refused(
            v["detail"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("the hub answered {status}")),
        )
    }

    async fn find_by(&self, attr: &str, value: &str) -> Result<Option<(String, Value)>, SinkError> {
        let lit = serde_json::to_string(value).map_err(|e| SinkError::Refused(e.to_string()))?;
        let filter = format!("{attr} eq {lit}");
        let q = serde_urlencoded::to_string([("filter", filter.as_str())])
            .map_err(|e| SinkError::Refused(e.to_string()))?;
        let (status, v) = self.send(Method::GET, &format!("/Users?{q}"), None).await?;
        if status != 200 {
            return Err(Self::detail(&v, status));
        }
        Ok(v["Resources"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|u| u["id"].as_str().map(|id| (id.to_string(), u.clone()))))
    }

    /// The users holding any of `values` of `attr` (`userName` or `externalId`): one
    /// `filter=attr eq "a" or attr eq "b" …` per [`LOOKUP_FILTER_BYTES`] of filter (the
    /// hub answers such a filter with point reads, not a scan), keyed by the normalised
    /// value (`userName` is case-insensitive, RFC 7643 §4.1.1).
    async fn find_all_by(
        &self,
        attr: UniqueAttr,
        values: &[&str],
    ) -> Result<HashMap<String, (String, Value)>, SinkError> {
        let name = attr.attr_name();
        let mut out = HashMap::new();
        let mut i = 0;
        while i < values.len() {
            let mut filter = String::new();
            let mut n = 0;
            while let Some(v) = values.get(i) {
                let term = format!(
                    "{name} eq {}",
                    serde_json::to_string(v).map_err(|e| SinkError::Refused(e.to_string()))?
                );
                if n > 0 && filter.len() + 4 + term.len() > LOOKUP_FILTER_BYTES {
                    break;
                }
                if n > 0 {
                    filter.push_str(" or ");
                }
                filter.push_str(&term);
                n += 1;
                i += 1;
            }
            let mut start = 1usize;
            loop {
                // `groups` is computed per user by the hub (a read each) and not needed
                // here: `merged` drops it.
                let q = serde_urlencoded::to_string([
                    ("filter", filter.as_str()),
                    ("excludedAttributes", "groups"),
                    ("startIndex", &start.to_string()),
                    ("count", &n.to_string()),
                ])
                .map_err(|e| SinkError::Refused(e.to_string()))?;
                let (status, v) = self.send(Method::GET, &format!("/Users?{q}"), None).await?;
                if status != 200 {
                    return Err(Self::detail(&v, status));
                }
                let page = v["Resources"].as_array().cloned().unwrap_or_default();
                for u in &page {
                    if let (Some(id), Some(value)) = (u["id"].as_str(), u[name].as_str()) {
                        out.insert(attr.normalise(value), (id.to_string(), u.clone()));
                    }
                }
                start += page.len();
                let total = v["totalResults"].as_u64().unwrap_or(0) as usize;
                if page.is_empty() || start > total {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every user matching `filter` (all when `None`), a page of [`EXPORT_PAGE`] at a time:
    /// by cursor (RFC 9865) when the hub's `/ServiceProviderConfig` announces cursors (each
    /// page then reads one page of the directory), by `startIndex` otherwise.
    pub async fn each_user(
        &self,
        filter: Option<&str>,
        mut f: impl FnMut(&Value) -> Result<(), TransferError>,
    ) -> Result<usize, SinkError> {
        let (status, spc) = self
            .send(Method::GET, "/ServiceProviderConfig", None)
            .await?;
        let mut position = PagePosition::first(status == 200 && offers_cursors(&spc));
        let mut n = 0;
        loop {
            // `groups` is computed per user by the hub and not exported.
            let mut params = vec![("excludedAttributes", "groups".to_string())];
            params.extend(position.query(EXPORT_PAGE));
            if let Some(fl) = filter {
                params.push(("filter", fl.to_string()));
            }
            let q = serde_urlencoded::to_string(&params)
                .map_err(|e| SinkError::Refused(e.to_string()))?;
            let (status, v) = self.send(Method::GET, &format!("/Users?{q}"), None).await?;
            if status != 200 {
                return Err(Self::detail(&v, status));
            }
            for u in v["Resources"].as_array().into_iter().flatten() {
                f(u).map_err(|e| SinkError::Refused(e.to_string()))?;
                n += 1;
            }
            match position.next(&v, EXPORT_PAGE) {
                Some(p) => position = p,
                None => return Ok(n),
            }
        }
    }
}

/// The status of one operation of a bulk response (a string per RFC 7644 §3.7.3; some
/// servers send a number); 0 when missing.
fn bulk_status(op: &Value) -> u16 {
    match &op["status"] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()).unwrap_or(0),
        _ => 0,
    }
}

#[async_trait]
impl ImportSink for ScimSink {
    async fn create_many(&self, users: &[Value]) -> Vec<Written> {
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(BULK_OPERATIONS) {
            let ops: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, u)| json!({"method": "POST", "path": "/Users", "bulkId": format!("r{i}"), "data": u}))
                .collect();
            let body = json!({"schemas": [BULK_REQUEST], "Operations": ops});
            let answers = match self.send(Method::POST, "/Bulk", Some(&body)).await {
                Ok((200, v)) => {
                    let mut by_id: HashMap<String, Written> = HashMap::new();
                    for op in v["Operations"].as_array().cloned().unwrap_or_default() {
                        let w = match bulk_status(&op) {
                            200..=299 => Written::Created,
                            409 => Written::Exists,
                            s => Written::Refused(Self::detail(&op["response"], s).to_string()),
                        };
                        if let Some(b) = op["bulkId"].as_str() {
                            by_id.insert(b.to_string(), w);
                        }
                    }
                    (0..chunk.len())
                        .map(|i| {
                            by_id.remove(&format!("r{i}")).unwrap_or_else(|| {
                                Written::Refused("no answer in the bulk response".into())
                            })
                        })
                        .collect()
                }
                Ok((status, v)) => {
                    vec![Written::Refused(Self::detail(&v, status).to_string()); chunk.len()]
                }
                Err(e) => vec![Written::Refused(e.to_string()); chunk.len()],
            };
            out.extend(answers);
        }
        out
    }

    async fn find(&self, user: &Value) -> Result<Option<(String, Value)>, SinkError> {
        for attr in ["externalId", "userName"] {
            if let Some(v) = user.get(attr).and_then(Value::as_str)
                && let Some(found) = self.find_by(attr, v).await?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Two batched lookups (by `externalId`, by `userName`) instead of one or two requests
    /// per user; `externalId` wins, as in [`ImportSink::find`].
    async fn find_many(&self, users: &[Value]) -> Result<Vec<Option<(String, Value)>>, SinkError> {
        // A value longer than a uniqueness key can hold is in no hub user (and would not
        // fit in a filter).
        let values = |attr: UniqueAttr| -> Vec<&str> {
            let mut v: Vec<&str> = users
                .iter()
                .filter_map(|u| u.get(attr.attr_name()).and_then(Value::as_str))
                .filter(|v| v.len() <= provisync_core::directory::MAX_KEY_VALUE_BYTES)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let by_external = self
            .find_all_by(UniqueAttr::ExternalId, &values(UniqueAttr::ExternalId))
            .await?;
        let by_name = self
            .find_all_by(UniqueAttr::UserName, &values(UniqueAttr::UserName))
            .await?;
        Ok(users
            .iter()
            .map(|u| {
                let hit = |attr: UniqueAttr, map: &HashMap<String, (String, Value)>| {
                    u.get(attr.attr_name())
                        .and_then(Value::as_str)
                        .and_then(|v| map.get(&attr.normalise(v)).cloned())
                };
                hit(UniqueAttr::ExternalId, &by_external)
                    .or_else(|| hit(UniqueAttr::UserName, &by_name))
            })
            .collect())
    }

    /// `/Bulk` `PUT`s, [`BULK_OPERATIONS`] a request.
    async fn replace_many(&self, users: &[(String, Value)]) -> Vec<Result<(), SinkError>> {
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(BULK_OPERATIONS) {
            let ops: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, (id, u))| {
                    let seg: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
                    json!({"method": "PUT", "path": format!("/Users/{seg}"),
                        "bulkId": format!("r{i}"), "data": u})
                })
                .collect();
            let body = json!({"schemas": [BULK_REQUEST], "Operations": ops});
            let answers: Vec<Result<(), SinkError>> =
                match self.send(Method::POST, "/Bulk", Some(&body)).await {
                    Ok((200, v)) => {
                        let ops = v["Operations"].as_array().cloned().unwrap_or_default();
                        let mut by_id: HashMap<String, Result<(), SinkError>> = HashMap::new();
                        for (i, op) in ops.iter().enumerate() {
                            let status = bulk_status(op);
                            let r = match status {
                                200..=299 => Ok(()),
                                s => Err(Self::detail(&op["response"], s)),
                            };
                            // RFC 7644 §3.7.3: bulkId is echoed for POST; other methods
                            // answer in order.
                            let key = op["bulkId"]
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| format!("r{i}"));
                            by_id.insert(key, r);
                        }
                        (0..chunk.len())
                            .map(|i| {
                                by_id.remove(&format!("r{i}")).unwrap_or_else(|| {
                                    Err(SinkError::Unreachable(
                                        "no answer in the bulk response".into(),
                                    ))
                                })
                            })
                            .collect()
                    }
                    Ok((status, v)) => vec![Err(Self::detail(&v, status)); chunk.len()],
                    Err(e) => vec![Err(e); chunk.len()],
                };
            out.extend(answers);
        }
        out
    }

    async fn replace(&self, id: &str, user: &Value) -> Result<(), SinkError> {
        let seg: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        let (status, v) = self
            .send(Method::PUT, &format!("/Users/{seg}"), Some(user))
            .await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(Self::detail(&v, status))
        }
    }
}
