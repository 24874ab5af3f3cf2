//! The directory's errors as SCIM errors (RFC 7644 §3.12): the one place a reason becomes
//! a status and a `scimType`. The detail is the error's own text.

use provisync_core::directory::{CursorError, DirectoryError};
use provisync_scim::{ScimError, ScimType};

/// The SCIM answer to a directory error.
pub fn scim_error(e: DirectoryError) -> ScimError {
    let detail = e.to_string();
    match e {
        DirectoryError::Scim(e) => e,
        DirectoryError::Cursor(c) => match c {
            CursorError::Invalid(_) => ScimError::bad_request(ScimType::InvalidCursor, detail),
            CursorError::Expired => ScimError::bad_request(ScimType::ExpiredCursor, detail),
            CursorError::Count { .. } => ScimError::bad_request(ScimType::InvalidCount, detail),
        },
        DirectoryError::NotFound { .. } => ScimError::not_found(detail),
        DirectoryError::PreconditionFailed { .. } | DirectoryError::VersionConflict => {
            ScimError::precondition_failed(detail)
        }
        DirectoryError::Conflict => ScimError::new(409, None, detail),
        DirectoryError::Uniqueness { .. } => ScimError::uniqueness(detail),
        DirectoryError::KeyTooLong { .. }
        | DirectoryError::InvalidMemberId { .. }
        | DirectoryError::InvalidMemberType { .. }
        | DirectoryError::MissingMember { .. }
        | DirectoryError::MemberWithoutValue
        | DirectoryError::MembersInBatch
        | DirectoryError::StoreRejected(_) => ScimError::invalid_value(detail),
        DirectoryError::NotAnObject => ScimError::bad_request(ScimType::InvalidSyntax, detail),
        DirectoryError::Busy | DirectoryError::Unavailable => ScimError::unavailable(detail),
        DirectoryError::Internal(_) => ScimError::internal(detail),
    }
}

/// A path under the SCIM base (`base`, `/scim/v2`) that is no endpoint (the base itself
/// included).
pub fn no_such_endpoint(base: &str) -> ScimError {
    ScimError::not_found(format!(
        "no such SCIM endpoint: the resources are {base}/Users and {base}/Groups, discovery {base}/ServiceProviderConfig"
    ))
}

pub fn method_not_allowed() -> ScimError {
    ScimError::new(405, None, "method not allowed on this endpoint")
}
