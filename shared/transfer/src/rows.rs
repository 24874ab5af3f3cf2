//! Reading and checking: CSV (with an optional column mapping) or JSON into SCIM users,
//! every row checked before anything is written.

use crate::TransferError;
use provisync_core::sync::mapping::set_path;
use provisync_scim::schema::USER_SCHEMA;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

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

pub(crate) fn user_name(user: &Value) -> String {
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

pub(crate) fn add_extension_schemas(user: &mut Value) {
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
