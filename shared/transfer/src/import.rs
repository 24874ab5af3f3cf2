//! Writing checked rows through an [`ImportSink`]: creates in batches, existing users
//! rejected or (with `--update-existing`) merged and replaced a batch at a time.

use crate::TransferError;
use crate::rows::{Rejected, Row, add_extension_schemas, user_name};
use async_trait::async_trait;
use serde_json::Value;

/// How writing one user ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    Created,
    /// A user with this `userName` or `externalId` exists (not written).
    Exists,
    /// Refused, with the reason.
    Refused(String),
}

/// Why a sink could not look up or write a user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The hub (or the store) could not be reached, or answered out of protocol.
    #[error("hub: {0}")]
    Unreachable(String),
    /// The hub refused the token: nothing will succeed.
    #[error("hub refused the SCIM token ({0})")]
    Unauthorized(u16),
    /// This user was refused, in the hub's (or the directory's) words.
    #[error("{0}")]
    Refused(String),
}

/// Where imported users go.
#[async_trait]
pub trait ImportSink: Send + Sync {
    /// Creates users; one answer per user, in order.
    async fn create_many(&self, users: &[Value]) -> Vec<Written>;
    /// The existing user matching this one (`externalId`, then `userName`): its id and
    /// current resource.
    async fn find(&self, user: &Value) -> Result<Option<(String, Value)>, SinkError>;
    /// Replaces a user.
    async fn replace(&self, id: &str, user: &Value) -> Result<(), SinkError>;

    /// [`ImportSink::find`] for many users: one answer per user, in order. An `Err` means
    /// the whole lookup failed.
    async fn find_many(&self, users: &[Value]) -> Result<Vec<Option<(String, Value)>>, SinkError> {
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            out.push(self.find(u).await?);
        }
        Ok(out)
    }

    /// [`ImportSink::replace`] for many users (`(id, user)`): one answer per user, in order.
    async fn replace_many(&self, users: &[(String, Value)]) -> Vec<Result<(), SinkError>> {
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
            // The CSV `email` column names the primary address: the same address (any
            // `type`, or none) is no change, so an export imports back as a no-op.
            if k == "emails" && same_primary_email(o.get("emails"), v) {
                continue;
            }
            o.insert(k.clone(), v.clone());
        }
        add_extension_schemas(&mut out);
    }
    out
}

/// Is `incoming` the one address of a CSV `email` cell, and the primary (else the first)
/// address of `current`, compared case-insensitively?
fn same_primary_email(current: Option<&Value>, incoming: &Value) -> bool {
    let (Some(current), Some([one])) = (
        current.and_then(Value::as_array),
        incoming.as_array().map(Vec::as_slice),
    ) else {
        return false;
    };
    let primary = current
        .iter()
        .find(|e| e["primary"] == Value::Bool(true))
        .or(current.first());
    match (
        primary.and_then(|e| e["value"].as_str()),
        one["value"].as_str(),
    ) {
        (Some(a), Some(b)) => {
            a.eq_ignore_ascii_case(b) && one.get("type").is_none_or(|t| t == "work")
        }
        _ => false,
    }
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
                Err(e) => vec![Written::Refused(e.to_string()); batch.len()],
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
            let current: Result<Vec<Option<(String, Value)>>, SinkError> = match found.take() {
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
                    rejected.extend(existing.iter().map(|&i| reject(&batch[i], e.to_string())));
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
                        Err(e) => rejected.push(reject(&batch[*i], e.to_string())),
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
