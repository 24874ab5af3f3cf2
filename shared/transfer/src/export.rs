//! Export: the same CSV columns, or SCIM users as JSON, never a password.

use crate::TransferError;
use crate::rows::EXPORT_COLUMNS;
use provisync_core::sync::mapping::get_path;
use serde_json::Value;

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
