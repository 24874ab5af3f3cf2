//! Reading a SCIM source's `/Users` and `/Groups` a page at a time: by cursor (RFC 9865)
//! when its `/ServiceProviderConfig` announces cursors, by `startIndex` otherwise. The
//! pass keeps the position as a token ([`PagePosition::to_token`]): a bare number is a
//! start index, as this version's predecessors kept it, so a pass they left half-way
//! continues. A cursor the source refuses (expired while the schedule was stopped) starts
//! the pass over from its first page: pulled changes apply idempotently.

use provisync_scim::paging::{PagePosition, cursor_refused, offers_cursors};
use serde_json::Value;

use super::{PullError, PullPhase, PulledPage, Reader, SCIM_PAGE, scim_group, scim_user};
use crate::connector::ConnectorError;

const SCIM_JSON: &str = "application/scim+json";

impl Reader {
    /// Reads the source's configuration (RFC 7644 §5): notes whether it pages by cursor
    /// and returns whether it filters.
    pub(super) async fn scim_config(&mut self) -> Result<bool, PullError> {
        let spc = self
            .get(self.url(&["ServiceProviderConfig"])?, SCIM_JSON)
            .await?;
        self.cursors = offers_cursors(&spc);
        Ok(spc["filter"]["supported"].as_bool().unwrap_or(false))
    }

    /// One page of `/Users` or `/Groups` (`phase`), each resource as the hub takes it.
    pub(super) async fn scim_page(
        &self,
        phase: PullPhase,
        since: Option<&str>,
        next: Option<&str>,
    ) -> Result<PulledPage, PullError> {
        let (segment, take): (&str, fn(&Value) -> Option<Value>) = match phase {
            PullPhase::Users => ("Users", scim_user),
            PullPhase::Groups => ("Groups", scim_group),
        };
        let mut position = match next {
            None => PagePosition::first(self.cursors),
            Some(token) => PagePosition::from_token(token).map_err(|e| {
                PullError::Remote(ConnectorError::Refused {
                    status: None,
                    reason: e.to_string(),
                })
            })?,
        };
        let list = loop {
            let mut url = self.url(&[segment])?;
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = since {
                    let lit = serde_json::to_string(s).unwrap_or_default();
                    q.append_pair("filter", &format!("meta.lastModified gt {lit}"));
                }
                q.extend_pairs(position.query(SCIM_PAGE));
            }
            let resp = self.get_raw(url, SCIM_JSON).await?;
            if position.by_cursor()
                && position != PagePosition::FirstCursor
                && cursor_refused(resp.status.as_u16(), &resp.json().unwrap_or_default())
            {
                tracing::info!(
                    listing = segment,
                    "the source refused the pull's cursor: the pass starts over"
                );
                position = PagePosition::first(self.cursors);
                continue;
            }
            break resp.ok(Some(&self.creds))?.json()?;
        };
        let items = list["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let modified = r["meta"]["lastModified"].as_str().unwrap_or("").to_string();
                take(r).map(|u| (u, modified))
            })
            .collect();
        Ok(PulledPage {
            items,
            next: position.next(&list, SCIM_PAGE).map(|p| p.to_token()),
        })
    }
}
