//! What a search checks on each resource ([`Matcher`]): used by the searches that scan
//! ([`super::search`]) and by the index walks ([`super::paged`]).

use super::lookup::filter_mentions;
use super::{Directory, DirectoryError, SearchRequest, Stored};
use provisync_scim::filter::Filter;
use provisync_scim::projection::Projection;
use provisync_scim::schema::AttrPath;
use provisync_scim::{ResourceKind, ResourceSchema};

/// What a search checks on each resource: the filter, with the computed attribute filled
/// in first when the filter names it.
pub(super) struct Matcher<'a> {
    pub(super) view: ResourceSchema<'a>,
    pub(super) filter: Option<&'a Filter>,
    pub(super) computed: Option<Projection>,
}

impl Directory {
    pub(super) fn matcher<'a>(&'a self, kind: ResourceKind, req: &'a SearchRequest) -> Matcher<'a> {
        let computed = match kind {
            ResourceKind::User => "groups",
            ResourceKind::Group => "members",
        };
        Matcher {
            view: self.schemas.view(kind),
            filter: req.filter.as_ref(),
            computed: req
                .filter
                .as_ref()
                .is_some_and(|f| filter_mentions(f, computed))
                .then(|| Projection {
                    attributes: vec![AttrPath::new(computed)],
                    excluded: vec![],
                }),
        }
    }

    /// Whether a resource matches, filling in the computed attribute if the filter needs it.
    pub(super) async fn matches(
        &self,
        kind: ResourceKind,
        m: &Matcher<'_>,
        s: &mut Stored,
    ) -> Result<bool, DirectoryError> {
        let Some(f) = m.filter else {
            return Ok(true);
        };
        if let Some(p) = &m.computed {
            self.expand(kind, s, p).await?;
        }
        Ok(f.matches(&m.view, &s.resource))
    }
}
