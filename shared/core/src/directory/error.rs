//! Why a directory operation failed, in the directory's own terms. The SCIM edge
//! (`provisync-http`) maps each reason to a status and `scimType`; other callers (inbound
//! webhooks, imports, reconciliation) match on the reason. The `Display` text of each
//! variant is the detail a client is shown: it never carries secrets.

use provisync_scim::{ResourceKind, ScimError};

use super::cursor::CursorError;
use super::keys::UniqueAttr;
use super::{MAX_KEY_VALUE_BYTES, etag};
use crate::store::StoreError;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// No such resource (or an id that cannot be one).
    #[error("{} {id} not found", kind.as_str())]
    NotFound { kind: ResourceKind, id: String },
    /// `If-Match` names another version than the stored one.
    #[error("If-Match does not match the current version {}", etag(*current))]
    PreconditionFailed { current: u64 },
    /// A write conditional on the version read (with `If-Match`) lost to a concurrent one.
    #[error("the resource was modified (version mismatch)")]
    VersionConflict,
    /// A write lost an optimistic-concurrency race (or the store saw a conflicting
    /// transaction): retrying may succeed.
    #[error("concurrent modification, retry")]
    Conflict,
    /// A uniquely keyed attribute's value is held by another resource, or (`in_batch`)
    /// appears twice in one batch create.
    #[error(
        "{} with {} '{value}' {}",
        kind.as_str(),
        attribute.attr_name(),
        if *in_batch { "appears twice" } else { "already exists" }
    )]
    Uniqueness {
        kind: ResourceKind,
        attribute: UniqueAttr,
        value: String,
        in_batch: bool,
    },
    /// A value of a uniquely keyed attribute too long to be a key.
    #[error("{} is longer than {MAX_KEY_VALUE_BYTES} bytes", attribute.attr_name())]
    KeyTooLong { attribute: UniqueAttr },
    /// A member whose `value` cannot be an id.
    #[error("member '{value}' is not a valid id")]
    InvalidMemberId { value: String },
    /// A member whose `type` is neither `User` nor `Group`.
    #[error("member type '{member_type}' is not User or Group")]
    InvalidMemberType { member_type: String },
    /// A member that is neither a user nor a group of the hub.
    #[error("member '{value}' does not exist")]
    MissingMember { value: String },
    /// A `members` element without a string `value`.
    #[error("each member needs a string 'value'")]
    MemberWithoutValue,
    /// A batch create (an import) with `members`.
    #[error("members cannot be given in a batch create")]
    MembersInBatch,
    /// The body is not a JSON object.
    #[error("a resource must be a JSON object")]
    NotAnObject,
    /// What the SCIM layer refused (schema validation, filter, PATCH, mutability).
    #[error("{}", .0.detail)]
    Scim(ScimError),
    /// A cursor that cannot be used (RFC 9865 §2.1).
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// The store refused the write as invalid (too large, a malformed key).
    #[error("{0}")]
    StoreRejected(String),
    /// The store is throttling: retry later.
    #[error("the directory is busy, retry later")]
    Busy,
    /// The store cannot be reached (the cause is logged, not shown).
    #[error("the directory store is unavailable")]
    Unavailable,
    /// A bug or corrupt data (a stored item that is not JSON, an event that cannot be
    /// serialised).
    #[error("{0}")]
    Internal(String),
}

impl From<ScimError> for DirectoryError {
    fn from(e: ScimError) -> Self {
        DirectoryError::Scim(e)
    }
}

impl From<StoreError> for DirectoryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(d) => DirectoryError::StoreRejected(d),
            StoreError::Throttled => DirectoryError::Busy,
            StoreError::Conflict | StoreError::ConditionFailed { .. } => DirectoryError::Conflict,
            StoreError::Unavailable(d) => {
                tracing::error!(error = %d, "store unavailable");
                DirectoryError::Unavailable
            }
        }
    }
}
