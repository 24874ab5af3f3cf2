//! A pull source's connection test: the pull URL reached with the source's auth, as a
//! pull would start, and nothing applied.

use std::sync::Arc;

use super::{PullError, Reader};
use crate::connector::ConnectorError;
use crate::connector::http::HttpPort;
use crate::source::{PullConfig, PullKind};
use url::Url;

const SCIM_JSON: &str = "application/scim+json";

/// Reaches the source: SCIM, its `/ServiceProviderConfig` and one user of `/Users`;
/// Drupal JSON:API, one user of `/jsonapi/user/user`. What it found, or why it failed
/// (the status, or the network error; never the credentials).
pub async fn test_pull(pull: &PullConfig, http: Arc<dyn HttpPort>) -> Result<String, String> {
    reach(pull, http).await.map_err(|e| match e {
        PullError::Remote(ConnectorError::Refused { status, reason }) => match status {
            Some(s) => format!("the source answered {s}: {reason}"),
            None => format!("the source refused: {reason}"),
        },
        PullError::Remote(ConnectorError::Retryable { detail, .. }) => {
            format!("the source is unreachable or unavailable: {detail}")
        }
        other => other.to_string(),
    })
}

async fn reach(pull: &PullConfig, http: Arc<dyn HttpPort>) -> Result<String, PullError> {
    let mut reader = Reader::new(pull, http)?;
    match pull.kind {
        PullKind::Scim => {
            let filtering = reader.scim_config().await?;
            let mut url = reader.url(&["Users"])?;
            url.query_pairs_mut().append_pair("count", "1");
            let page = reader.get(url, SCIM_JSON).await?;
            let total = match page["totalResults"].as_u64() {
                Some(1) => "1 user".to_string(),
                Some(n) => format!("{n} users"),
                None => "its users".to_string(),
            };
            Ok(format!(
                "reached {}: /Users lists {total}; {}",
                shown(&reader.base),
                if filtering {
                    "incremental pulls (filtering on meta.lastModified)"
                } else {
                    "no filtering: every pull reads the whole listing"
                }
            ))
        }
        PullKind::Jsonapi => {
            let mut url = reader.url(&["jsonapi", "user", "user"])?;
            url.query_pairs_mut().append_pair("page[limit]", "1");
            let page = reader.get(url, "application/vnd.api+json").await?;
            let Some(first) = page["data"].as_array() else {
                return Err(PullError::Setup(
                    "the answer is not a JSON:API list (no `data` array)".into(),
                ));
            };
            Ok(format!(
                "reached {}: /jsonapi/user/user answered ({} on the first page of 1)",
                shown(&reader.base),
                if first.is_empty() {
                    "no user"
                } else {
                    "a user"
                }
            ))
        }
    }
}

/// The base URL as shown to operators (it never holds credentials: refused when saved).
fn shown(base: &Url) -> String {
    base.as_str().trim_end_matches('/').to_string()
}
