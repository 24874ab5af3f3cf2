//! Import and export of users as CSV or JSON files (`provisync import` / `export`).
//!
//! - **Reading**: CSV with a header row (column names are SCIM attribute paths —
//!   `userName`, `name.givenName`, `urn:…:enterprise:2.0:User:department` — plus the
//!   shortcut `email` for the primary work e-mail; a `--mapping cols.toml` renames the
//!   file's own columns: `[columns]` `"E-Mail" = "email"`), or JSON (an array of SCIM
//!   users, or a list response with `Resources`). `id`, `meta`, `groups` and `password`
//!   in a file are ignored.
//! - **Checking**: every row is checked before anything is written; a bad row is
//!   rejected with its reason (missing `userName`, bad e-mail, duplicate in the file) and
//!   never stops the good ones.
//! - **Writing** goes through an [`ImportSink`]: the local store ([`DirectorySink`], in
//!   batches of many users per transaction) or a running hub's SCIM API ([`ScimSink`]:
//!   `/Bulk`, in the CLI). Users that exist already (same `userName` or `externalId`) are
//!   rejected, or updated with `--update-existing` (the file's attributes replace the
//!   hub's, the rest stays). Existing users are looked up a batch at a time
//!   ([`ImportSink::find_many`]: against a hub, `filter=userName eq "a" or userName eq "b"
//!   …`, which the hub answers with point reads) and replaced a batch at a time
//!   ([`ImportSink::replace_many`]: `/Bulk` `PUT`s), for `--dry-run` too.
//! - **Export** writes the same columns (CSV) or the SCIM users (JSON) without any
//!   password (the hub never stores one), so an export imports back unchanged.

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("CSV: {0}")]
    Csv(String),
    #[error("JSON: {0}")]
    Json(String),
    #[error("mapping file: {0}")]
    Mapping(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

mod directory_sink;
mod export;
mod import;
mod rows;
mod scim_sink;

pub use directory_sink::DirectorySink;
pub use export::{CsvExport, JsonExport, exported};
pub use import::{
    ImportOptions, ImportSink, ImportSummary, SinkError, Written, import_rows, merged, write_report,
};
pub use rows::{
    ColumnMap, EXPORT_COLUMNS, Format, Rejected, Row, check_rows, email_ok, read_csv, read_json,
};
pub use scim_sink::ScimSink;

#[cfg(test)]
mod tests;
