//! SCIM 2.0 domain (RFC 7643 / RFC 7644): schemas, filters, PATCH, projection, errors.
//! Pure: no I/O.

pub mod error;
pub mod filter;
pub mod limits;
pub mod paging;
pub mod patch;
pub mod path;
pub mod projection;
pub mod resource;
pub mod schema;
pub mod sort;
pub mod urn;

pub use error::{ScimError, ScimType};
pub use schema::{AttrPath, ResourceKind, ResourceSchema, SchemaRegistry};
