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

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use provisync_client::{HubClient, Method};
use provisync_core::directory::keys::UniqueAttr;
use provisync_core::directory::{Directory, DirectoryError};
use provisync_core::event::Origin;
use provisync_core::sync::mapping::{get_path, set_path};
use provisync_scim::ResourceKind;
use provisync_scim::schema::USER_SCHEMA;

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

/// The file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    /// From a name (`csv`, `json`).
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// From a file name's extension.
    pub fn of_path(p: &std::path::Path) -> Option<Format> {
        Self::parse(p.extension()?.to_str()?)
    }
}

/// Columns written by export (and read by import without a mapping), in this order.
pub const EXPORT_COLUMNS: &[&str] = &[
    "userName",
    "externalId",
    "displayName",
    "name.givenName",
    "name.familyName",
    "email",
    "active",
    "title",
    "nickName",
    "preferredLanguage",
    "locale",
    "timezone",
    "userType",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
];

/// Attributes a file may not set.
const IGNORED: &[&str] = &["id", "meta", "groups", "password", "schemas"];

/// `cols.toml`: the file's column -> a SCIM path (or `email`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMap {
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

impl ColumnMap {
    pub fn parse_toml(text: &str) -> Result<ColumnMap, TransferError> {
        let m: ColumnMap =
            toml::from_str(text).map_err(|e| TransferError::Mapping(e.to_string()))?;
        for (col, path) in &m.columns {
            if path != "email" && provisync_scim::schema::AttrPath::parse(path).is_none() {
                return Err(TransferError::Mapping(format!(
                    "column {col:?}: {path:?} is not a SCIM attribute path"
                )));
            }
        }
        Ok(m)
    }

    fn target<'a>(&'a self, column: &'a str) -> &'a str {
        self.columns
            .get(column)
            .map(String::as_str)
            .unwrap_or(column)
    }
}

/// One user read from a file, with its line (CSV: the file line; JSON: the position, 1-based).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub line: usize,
    pub user: Value,
}

/// A row that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub line: usize,
    pub user_name: String,
    pub reason: String,
}

fn user_name(user: &Value) -> String {
    user.get("userName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn cell_value(path: &str, raw: &str) -> Value {
    let lower = path.to_ascii_lowercase();
    if lower == "active" {
        return match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" => Value::Bool(true),
            "false" | "0" | "no" | "n" => Value::Bool(false),
            _ => Value::String(raw.to_string()),
        };
    }
    Value::String(raw.to_string())
}

/// Reads a CSV file's rows (cells trimmed; empty cells leave the attribute out).
pub fn read_csv(
    data: impl std::io::Read,
    mapping: Option<&ColumnMap>,
) -> Result<Vec<Row>, TransferError> {
    let empty = ColumnMap::default();
    let mapping = mapping.unwrap_or(&empty);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(data);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| TransferError::Csv(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let targets: Vec<&str> = headers.iter().map(|h| mapping.target(h)).collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| TransferError::Csv(e.to_string()))?;
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        let mut user = json!({"schemas": [USER_SCHEMA]});
        for (i, cell) in record.iter().enumerate() {
            let Some(path) = targets.get(i) else { continue };
            if cell.is_empty() || IGNORED.iter().any(|x| x.eq_ignore_ascii_case(path)) {
                continue;
            }
            if path.eq_ignore_ascii_case("email") {
                user["emails"] = json!([{"value": cell, "type": "work", "primary": true}]);
            } else {
                set_path(&mut user, path, Some(cell_value(path, cell)));
            }
        }
        add_extension_schemas(&mut user);
        rows.push(Row { line, user });
    }
    Ok(rows)
}

fn add_extension_schemas(user: &mut Value) {
    let Some(o) = user.as_object_mut() else {
        return;
    };
    let mut schemas = vec![Value::String(USER_SCHEMA.into())];
    schemas.extend(
        o.keys()
            .filter(|k| k.starts_with("urn:"))
            .map(|k| Value::String(k.clone())),
    );
    o.insert("schemas".into(), Value::Array(schemas));
}

/// Reads a JSON file: an array of users, or an object with `Resources`.
pub fn read_json(data: &[u8]) -> Result<Vec<Row>, TransferError> {
    let v: Value = serde_json::from_slice(data).map_err(|e| TransferError::Json(e.to_string()))?;
    let list = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("Resources") {
            Some(Value::Array(a)) => a,
            _ => {
                return Err(TransferError::Json(
                    "expected an array of users or an object with \"Resources\"".into(),
                ));
            }
        },
        _ => return Err(TransferError::Json("expected an array of users".into())),
    };
    Ok(list
        .into_iter()
        .enumerate()
        .map(|(i, mut user)| {
            if let Some(o) = user.as_object_mut() {
                for k in IGNORED {
                    o.remove(*k);
                }
            }
            add_extension_schemas(&mut user);
            Row { line: i + 1, user }
        })
        .collect())
}

/// A plausible e-mail address: `local@domain.tld`, no spaces, one `@`.
pub fn email_ok(s: &str) -> bool {
    let mut parts = s.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Checks rows: `userName` present, e-mails plausible, no `userName` (case-insensitive)
/// or `externalId` twice in the file (the first one wins). Returns the good rows and the
/// rejected ones.
pub fn check_rows(rows: Vec<Row>) -> (Vec<Row>, Vec<Rejected>) {
    let mut good = Vec::with_capacity(rows.len());
    let mut bad = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut external: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let name = user_name(&row.user);
        let reject = |reason: String| Rejected {
            line: row.line,
            user_name: name.clone(),
            reason,
        };
        if name.trim().is_empty() {
            bad.push(reject("missing userName".into()));
            continue;
        }
        let emails = row.user.get("emails").and_then(Value::as_array);
        if let Some(badmail) = emails.and_then(|a| {
            a.iter()
                .filter_map(|e| e.get("value").and_then(Value::as_str))
                .find(|v| !email_ok(v))
        }) {
            bad.push(reject(format!("bad email {badmail:?}")));
            continue;
        }
        if let Some(first) = names.get(&name.to_lowercase()) {
            bad.push(reject(format!(
                "duplicate userName in the file (first on line {first})"
            )));
            continue;
        }
        if let Some(ext) = row.user.get("externalId").and_then(Value::as_str) {
            if let Some(first) = external.get(ext) {
                bad.push(reject(format!(
                    "duplicate externalId in the file (first on line {first})"
                )));
                continue;
            }
            external.insert(ext.to_string(), row.line);
        }
        names.insert(name.to_lowercase(), row.line);
        good.push(row);
    }
    (good, bad)
}

/// How writing one user ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    Created,
    /// A user with this `userName` or `externalId` exists (not written).
    Exists,
    /// Refused, with the reason.
    Refused(String),
}

/// Where imported users go.
#[async_trait]
pub trait ImportSink: Send + Sync {
    /// Creates users; one answer per user, in order.
    async fn create_many(&self, users: &[Value]) -> Vec<Written>;
    /// The existing user matching this one (`externalId`, then `userName`): its id and
    /// current resource.
    async fn find(&self, user: &Value) -> Result<Option<(String, Value)>, String>;
    /// Replaces a user.
    async fn replace(&self, id: &str, user: &Value) -> Result<(), String>;

    /// [`ImportSink::find`] for many users: one answer per user, in order. An `Err` means
    /// the whole lookup failed.
    async fn find_many(&self, users: &[Value]) -> Result<Vec<Option<(String, Value)>>, String> {
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            out.push(self.find(u).await?);
        }
        Ok(out)
    }

    /// [`ImportSink::replace`] for many users (`(id, user)`): one answer per user, in order.
    async fn replace_many(&self, users: &[(String, Value)]) -> Vec<Result<(), String>> {
        let mut out = Vec::with_capacity(users.len());
        for (id, u) in users {
            out.push(self.replace(id, u).await);
        }
        out
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    pub rows: usize,
    pub created: usize,
    pub updated: usize,
    /// Existing users whose file row changes nothing.
    pub unchanged: usize,
    pub rejected: usize,
    pub dry_run: bool,
}

/// Import options.
#[derive(Clone, Copy, Debug)]
pub struct ImportOptions {
    pub update_existing: bool,
    pub dry_run: bool,
    /// Users per write batch.
    pub batch: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            update_existing: false,
            dry_run: false,
            batch: 500,
        }
    }
}

/// The file's attributes over the hub's: what `--update-existing` writes.
pub fn merged(current: &Value, incoming: &Value) -> Value {
    let mut out = current.clone();
    if let (Some(o), Some(i)) = (out.as_object_mut(), incoming.as_object()) {
        for k in ["meta", "groups"] {
            o.remove(k);
        }
        for (k, v) in i {
            if k == "schemas" {
                continue;
            }
            o.insert(k.clone(), v.clone());
        }
        add_extension_schemas(&mut out);
    }
    out
}

/// Writes checked rows through `sink` in batches; `progress(done)` after each batch.
/// Returns the summary and the rows rejected while writing (existing users without
/// `update_existing`, refusals of the hub).
pub async fn import_rows(
    sink: &dyn ImportSink,
    rows: &[Row],
    opts: ImportOptions,
    mut progress: impl FnMut(usize),
) -> (ImportSummary, Vec<Rejected>) {
    let mut summary = ImportSummary {
        rows: rows.len(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut rejected = Vec::new();
    let reject = |row: &Row, reason: String| Rejected {
        line: row.line,
        user_name: user_name(&row.user),
        reason,
    };
    let mut done = 0;
    for batch in rows.chunks(opts.batch.max(1)) {
        let users: Vec<Value> = batch.iter().map(|r| r.user.clone()).collect();
        // A dry run looks the whole batch up at once; the lookup is kept for the
        // existing users below.
        let mut found: Option<Vec<Option<(String, Value)>>> = None;
        let answers: Vec<Written> = if opts.dry_run {
            match sink.find_many(&users).await {
                Ok(f) => {
                    let answers = f
                        .iter()
                        .map(|x| match x {
                            Some(_) => Written::Exists,
                            None => Written::Created,
                        })
                        .collect();
                    found = Some(f);
                    answers
                }
                Err(e) => vec![Written::Refused(e); batch.len()],
            }
        } else {
            sink.create_many(&users).await
        };
        // Existing users: looked up together, then replaced together.
        let mut existing: Vec<usize> = Vec::new();
        for (i, (row, answer)) in batch.iter().zip(answers).enumerate() {
            match answer {
                Written::Created => summary.created += 1,
                Written::Refused(why) => rejected.push(reject(row, why)),
                Written::Exists if !opts.update_existing => rejected.push(reject(
                    row,
                    "exists in the hub (same userName or externalId): use --update-existing".into(),
                )),
                Written::Exists => existing.push(i),
            }
        }
        if !existing.is_empty() {
            let current: Result<Vec<Option<(String, Value)>>, String> = match found.take() {
                Some(mut f) => Ok(existing.iter().map(|&i| f[i].take()).collect()),
                None => {
                    let wanted: Vec<Value> =
                        existing.iter().map(|&i| batch[i].user.clone()).collect();
                    sink.find_many(&wanted).await
                }
            };
            let current = match current {
                Ok(c) => c,
                Err(e) => {
                    rejected.extend(existing.iter().map(|&i| reject(&batch[i], e.clone())));
                    vec![]
                }
            };
            let mut replace: Vec<(usize, (String, Value))> = Vec::new();
            for (&i, cur) in existing.iter().zip(current) {
                let row = &batch[i];
                let Some((id, cur)) = cur else {
                    rejected.push(reject(row, "exists, but was not found again".into()));
                    continue;
                };
                let new = merged(&cur, &row.user);
                let same = new.as_object().is_some_and(|n| {
                    n.iter()
                        .filter(|(k, _)| *k != "schemas")
                        .all(|(k, v)| cur.get(k) == Some(v))
                });
                if same {
                    summary.unchanged += 1;
                } else if opts.dry_run {
                    summary.updated += 1;
                } else {
                    replace.push((i, (id, new)));
                }
            }
            if !replace.is_empty() {
                let writes: Vec<(String, Value)> = replace.iter().map(|(_, w)| w.clone()).collect();
                let results = sink.replace_many(&writes).await;
                for ((i, _), r) in replace.iter().zip(results) {
                    match r {
                        Ok(()) => summary.updated += 1,
                        Err(e) => rejected.push(reject(&batch[*i], e)),
                    }
                }
            }
        }
        done += batch.len();
        progress(done);
    }
    rejected.sort_by_key(|r| r.line);
    summary.rejected = rejected.len();
    (summary, rejected)
}

/// The report file of rejected rows: CSV `line,userName,reason`.
pub fn write_report(w: impl std::io::Write, rejected: &[Rejected]) -> Result<(), TransferError> {
    let mut out = csv::Writer::from_writer(w);
    let csv_err = |e: csv::Error| TransferError::Csv(e.to_string());
    out.write_record(["line", "userName", "reason"])
        .map_err(csv_err)?;
    let mut sorted: Vec<&Rejected> = rejected.iter().collect();
    sorted.sort_by_key(|r| r.line);
    for r in sorted {
        out.write_record([r.line.to_string().as_str(), &r.user_name, &r.reason])
            .map_err(csv_err)?;
    }
    out.flush()?;
    Ok(())
}

// ---- export -----------------------------------------------------------------------

/// A user as exported: no `meta`, no computed `groups`, never a password.
pub fn exported(user: &Value) -> Value {
    let mut u = user.clone();
    if let Some(o) = u.as_object_mut() {
        for k in ["meta", "groups", "password"] {
            o.remove(k);
        }
    }
    u
}

fn csv_cell(user: &Value, column: &str) -> String {
    let v = if column == "email" {
        get_path(user, "emails.value")
    } else {
        get_path(user, column)
    };
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Writes users as CSV ([`EXPORT_COLUMNS`]).
pub struct CsvExport<W: std::io::Write> {
    out: csv::Writer<W>,
}

impl<W: std::io::Write> CsvExport<W> {
    pub fn new(w: W) -> Result<Self, TransferError> {
        let mut out = csv::Writer::from_writer(w);
        out.write_record(EXPORT_COLUMNS)
            .map_err(|e| TransferError::Csv(e.to_string()))?;
        Ok(CsvExport { out })
    }

    pub fn user(&mut self, user: &Value) -> Result<(), TransferError> {
        let cells: Vec<String> = EXPORT_COLUMNS.iter().map(|c| csv_cell(user, c)).collect();
        self.out
            .write_record(&cells)
            .map_err(|e| TransferError::Csv(e.to_string()))
    }

    pub fn finish(mut self) -> Result<(), TransferError> {
        self.out.flush()?;
        Ok(())
    }
}

/// Writes users as a JSON array, one user per line.
pub struct JsonExport<W: std::io::Write> {
    out: W,
    first: bool,
}

impl<W: std::io::Write> JsonExport<W> {
    pub fn new(mut out: W) -> Result<Self, TransferError> {
        out.write_all(b"[")?;
        Ok(JsonExport { out, first: true })
    }

    pub fn user(&mut self, user: &Value) -> Result<(), TransferError> {
        let sep: &[u8] = if self.first { b"\n" } else { b",\n" };
        self.first = false;
        self.out.write_all(sep)?;
        serde_json::to_writer(&mut self.out, &exported(user))
            .map_err(|e| TransferError::Json(e.to_string()))?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), TransferError> {
        self.out.write_all(b"\n]\n")?;
        self.out.flush()?;
        Ok(())
    }
}

// ---- the local store --------------------------------------------------------------

/// [`ImportSink`] straight into the store: batched creates with change events
/// (`Origin::Import`), so targets receive the users (at once, or when the hub runs:
/// [`DirectorySink::leaving_events_in_outbox`]).
#[derive(Clone)]
pub struct DirectorySink {
    directory: Directory,
    publish: bool,
}

impl DirectorySink {
    pub fn new(directory: Directory) -> Self {
        DirectorySink {
            directory,
            publish: true,
        }
    }

    /// Leaves the change events in the outbox instead of queuing them now: for a store
    /// no server is running on (`serve` sends them when it starts).
    pub fn leaving_events_in_outbox(mut self) -> Self {
        self.publish = false;
        self
    }
}

#[async_trait]
impl ImportSink for DirectorySink {
    async fn create_many(&self, users: &[Value]) -> Vec<Written> {
        self.directory
            .create_batch(ResourceKind::User, users, Origin::Import, self.publish)
            .await
            .into_iter()
            .map(|r| match r {
                Ok(_) => Written::Created,
                // Taken (in the hub or earlier in the file), or lost a race to a concurrent
                // write of the same user.
                Err(DirectoryError::Uniqueness { .. } | DirectoryError::Conflict) => {
                    Written::Exists
                }
                Err(e) => Written::Refused(e.to_string()),
            })
            .collect()
    }

    async fn find(&self, user: &Value) -> Result<Option<(String, Value)>, String> {
        let kind = ResourceKind::User;
        for attr in [UniqueAttr::ExternalId, UniqueAttr::UserName] {
            if let Some(v) = user.get(attr.attr_name()).and_then(Value::as_str)
                && let Some(s) = self
                    .directory
                    .find_unique(kind, attr, v)
                    .await
                    .map_err(|e| e.to_string())?
            {
                return Ok(Some((s.id().to_string(), s.resource)));
            }
        }
        Ok(None)
    }

    async fn replace(&self, id: &str, user: &Value) -> Result<(), String> {
        self.directory
            .replace(ResourceKind::User, id, user, None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

// ---- a running hub ----------------------------------------------------------------

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
    ) -> Result<(u16, Value), String> {
        let (status, v) = self
            .client
            .scim(method, path, body)
            .await
            .map_err(|e| format!("hub: {e}"))?;
        if status == 401 || status == 403 {
            return Err(format!("hub refused the SCIM token ({status})"));
        }
        Ok((status, v))
    }

    fn detail(v: &Value, status: u16) -> String {
        v["detail"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the hub answered {status}"))
    }

    async fn find_by(&self, attr: &str, value: &str) -> Result<Option<(String, Value)>, String> {
        let lit = serde_json::to_string(value).map_err(|e| e.to_string())?;
        let filter = format!("{attr} eq {lit}");
        let q = serde_urlencoded::to_string([("filter", filter.as_str())])
            .map_err(|e| e.to_string())?;
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
    ) -> Result<HashMap<String, (String, Value)>, String> {
        let name = attr.attr_name();
        let mut out = HashMap::new();
        let mut i = 0;
        while i < values.len() {
            let mut filter = String::new();
            let mut n = 0;
            while let Some(v) = values.get(i) {
                let term = format!(
                    "{name} eq {}",
                    serde_json::to_string(v).map_err(|e| e.to_string())?
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
                .map_err(|e| e.to_string())?;
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

    /// Every user matching `filter` (all when `None`), a page of 500 at a time.
    pub async fn each_user(
        &self,
        filter: Option<&str>,
        mut f: impl FnMut(&Value) -> Result<(), TransferError>,
    ) -> Result<usize, String> {
        let mut start = 1usize;
        let mut n = 0;
        loop {
            let mut params = vec![
                ("startIndex", start.to_string()),
                ("count", "500".to_string()),
            ];
            if let Some(fl) = filter {
                params.push(("filter", fl.to_string()));
            }
            let q = serde_urlencoded::to_string(&params).map_err(|e| e.to_string())?;
            let (status, v) = self.send(Method::GET, &format!("/Users?{q}"), None).await?;
            if status != 200 {
                return Err(Self::detail(&v, status));
            }
            let page = v["Resources"].as_array().cloned().unwrap_or_default();
            for u in &page {
                f(u).map_err(|e| e.to_string())?;
            }
            n += page.len();
            start += page.len();
            let total = v["totalResults"].as_u64().unwrap_or(0) as usize;
            if page.is_empty() || start > total {
                return Ok(n);
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
                            s => Written::Refused(Self::detail(&op["response"], s)),
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
                    vec![Written::Refused(Self::detail(&v, status)); chunk.len()]
                }
                Err(e) => vec![Written::Refused(e); chunk.len()],
            };
            out.extend(answers);
        }
        out
    }

    async fn find(&self, user: &Value) -> Result<Option<(String, Value)>, String> {
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
    async fn find_many(&self, users: &[Value]) -> Result<Vec<Option<(String, Value)>>, String> {
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
    async fn replace_many(&self, users: &[(String, Value)]) -> Vec<Result<(), String>> {
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
            let answers: Vec<Result<(), String>> =
                match self.send(Method::POST, "/Bulk", Some(&body)).await {
                    Ok((200, v)) => {
                        let ops = v["Operations"].as_array().cloned().unwrap_or_default();
                        let mut by_id: HashMap<String, Result<(), String>> = HashMap::new();
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
                                by_id
                                    .remove(&format!("r{i}"))
                                    .unwrap_or_else(|| Err("no answer in the bulk response".into()))
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

    async fn replace(&self, id: &str, user: &Value) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_with_mapping_and_checks() {
        let csv = "Login,E-Mail,First,Last,active,department\n\
                   alice,alice@example.org,Alice,A,true,Sales\n\
                   ,nobody@example.org,,,,\n\
                   bob,not-an-email,Bob,B,false,\n\
                   ALICE,alice2@example.org,,,,\n\
                   carol,carol@example.org,Carol,C,no,\n";
        let map = ColumnMap::parse_toml(
            r#"[columns]
Login = "userName"
"E-Mail" = "email"
First = "name.givenName"
Last = "name.familyName"
department = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
"#,
        )
        .unwrap();
        let rows = read_csv(csv.as_bytes(), Some(&map)).unwrap();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].user["name"]["givenName"], "Alice");
        assert_eq!(rows[0].user["active"], true);
        assert_eq!(
            rows[0].user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
            "Sales"
        );
        let (good, bad) = check_rows(rows);
        assert_eq!(
            good.iter().map(|r| user_name(&r.user)).collect::<Vec<_>>(),
            ["alice", "carol"]
        );
        let reasons: Vec<(usize, &str)> = bad.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(reasons[0], (3, "missing userName"));
        assert_eq!(reasons[1], (4, "bad email \"not-an-email\""));
        assert_eq!(
            reasons[2],
            (5, "duplicate userName in the file (first on line 2)")
        );
        assert!(ColumnMap::parse_toml("[columns]\nx = \"not a path!\"").is_err());
    }

    #[test]
    fn export_then_read_back() {
        let user = json!({"schemas": [USER_SCHEMA], "id": "1", "userName": "a",
            "name": {"givenName": "A", "familyName": "Z"}, "active": false,
            "emails": [{"value": "a@x.org", "type": "work", "primary": true}],
            "meta": {"version": "W/\"1\""}});
        let mut buf = Vec::new();
        let mut w = CsvExport::new(&mut buf).unwrap();
        w.user(&user).unwrap();
        w.finish().unwrap();
        let rows = read_csv(buf.as_slice(), None).unwrap();
        assert_eq!(rows[0].user["userName"], "a");
        assert_eq!(rows[0].user["active"], false);
        assert_eq!(rows[0].user["emails"], user["emails"]);
        assert_eq!(rows[0].user["name"], user["name"]);
        let mut buf = Vec::new();
        let mut w = JsonExport::new(&mut buf).unwrap();
        w.user(&user).unwrap();
        w.finish().unwrap();
        let rows = read_json(&buf).unwrap();
        assert!(rows[0].user.get("id").is_none() && rows[0].user.get("meta").is_none());
        assert_eq!(rows[0].user["name"], user["name"]);
    }

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@example.org"] {
            assert!(email_ok(ok), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a@@b.co", "a b@c.co", "a@b.co.", "a@.co",
        ] {
            assert!(!email_ok(bad), "{bad}");
        }
    }
}
