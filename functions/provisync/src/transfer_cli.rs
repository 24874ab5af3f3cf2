//! `provisync import` and `provisync export`: users from and to CSV / JSON files, against a
//! running hub (its SCIM API: `--url`, `--scim-token` / `PROVISYNC_SCIM_TOKEN`, else the
//! `scim-token` file `serve` writes) or straight into the local store (`--data-dir`, with
//! no server running on it). The work itself is `provisync_transfer`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use provisync_transfer::{
    self, ColumnMap, CsvExport, DirectorySink, Format, ImportOptions, ImportSink, JsonExport,
    ScimSink,
};

use crate::admin::Remote;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The file: `.csv` (header row of SCIM paths, or see --mapping) or `.json` (an array of users).
    file: PathBuf,
    /// TOML file renaming the CSV's columns: `[columns]` then `"E-Mail" = "email"`, `Login = "userName"`.
    #[arg(long)]
    mapping: Option<PathBuf>,
    /// Check everything and say what would happen; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Update users that exist (same userName or externalId) instead of rejecting them.
    #[arg(long)]
    update_existing: bool,
    /// csv | json (default: from the file name).
    #[arg(long)]
    format: Option<String>,
    /// Where rejected rows are listed with the reason (default: FILE.rejected.csv).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Users per write batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    #[command(flatten)]
    target: HubArgs,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// csv | json.
    #[arg(long, default_value = "csv")]
    format: String,
    /// A SCIM filter on users (e.g. `active eq true`).
    #[arg(long)]
    filter: Option<String>,
    /// Output file (default: standard output).
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    target: HubArgs,
}

#[derive(Args, Debug)]
pub struct HubArgs {
    /// Work on the local store in this folder directly (no server may run on it).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// SCIM token of the running hub (default: PROVISYNC_SCIM_TOKEN, else `.provisync/scim-token`).
    #[arg(long, env = "PROVISYNC_SCIM_TOKEN", hide_env_values = true)]
    scim_token: Option<String>,
}

fn scim_sink(remote: &Remote, args: &HubArgs) -> Result<ScimSink> {
    let token = match &args.scim_token {
        Some(t) => t.clone(),
        None => {
            let file = provisync_aws::data_dir_from_env().join("scim-token");
            std::fs::read_to_string(&file)
                .map(|t| t.trim().to_string())
                .with_context(|| {
                    format!(
                        "no SCIM token: give --scim-token or PROVISYNC_SCIM_TOKEN (or run from the folder where `provisync serve` wrote {})",
                        file.display()
                    )
                })?
        }
    };
    let client = provisync_client::HubClient::new(&remote.url, &token)?;
    Ok(ScimSink::from_client(client))
}

/// The local hub's directory with change events on (as `serve` builds it).
fn local_directory(dir: &Path) -> Result<provisync_core::directory::Directory> {
    use provisync_core::queue::store_queue::{StoreQueue, StoreQueueSettings};
    let store: Arc<dyn provisync_core::store::Store> = Arc::new(
        provisync_core::store::embedded::EmbeddedStore::open(dir).with_context(|| {
            format!(
                "opening the store in {} (is `serve` running on it?)",
                dir.display()
            )
        })?,
    );
    let queue = Arc::new(StoreQueue::new(
        store.clone(),
        "deliver",
        StoreQueueSettings::default(),
    ));
    let secrets = provisync_core::config::local_secret_box(dir)?;
    let schemas =
        provisync_core::config::load_schemas(provisync_core::config::schema_dir().as_deref())?;
    // The directory of the hub, so imported users' change events reach the targets.
    let hub = provisync_core::hub::Hub::new(provisync_core::hub::HubParts {
        store,
        queue,
        schemas,
        secrets,
        connectors: provisync_connectors::connectors_for,
        http: provisync_connectors::http::http_port,
    });
    Ok(hub.directory)
}

pub async fn import(remote: &Remote, args: ImportArgs) -> Result<()> {
    let format = match &args.format {
        Some(f) => Format::parse(f).context("--format must be csv or json")?,
        None => Format::of_path(&args.file)
            .context("cannot tell the format from the file name: give --format csv|json")?,
    };
    let mapping = match &args.mapping {
        Some(p) => Some(ColumnMap::parse_toml(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?),
        None => None,
    };
    if mapping.is_some() && format == Format::Json {
        bail!("--mapping applies to CSV files only");
    }
    let started = Instant::now();
    let data =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let rows = match format {
        Format::Csv => provisync_transfer::read_csv(data.as_slice(), mapping.as_ref())?,
        Format::Json => provisync_transfer::read_json(&data)?,
    };
    drop(data);
    let total = rows.len();
    let (good, mut rejected) = provisync_transfer::check_rows(rows);
    let sink: Box<dyn ImportSink> = match &args.target.data_dir {
        // No server runs on this store: the change events wait in its queue (committed
        // with the users), which `serve` delivers when it starts.
        Some(dir) => Box::new(DirectorySink::new(local_directory(dir)?).leaving_events_in_outbox()),
        None => Box::new(scim_sink(remote, &args.target)?),
    };
    let bar = ProgressBar::new(good.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} users ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let opts = ImportOptions {
        update_existing: args.update_existing,
        dry_run: args.dry_run,
        batch: args.batch.max(1),
    };
    let (summary, more) = provisync_transfer::import_rows(sink.as_ref(), &good, opts, |done| {
        bar.set_position(done as u64)
    })
    .await;
    bar.finish_and_clear();
    rejected.extend(more);
    let secs = started.elapsed().as_secs_f64();
    let report = args.report.clone().unwrap_or_else(|| {
        let mut p = args.file.clone().into_os_string();
        p.push(".rejected.csv");
        PathBuf::from(p)
    });
    let verb = if args.dry_run { "would be " } else { "" };
    println!(
        "{total} rows read: {} {verb}created, {} {verb}updated, {} unchanged, {} rejected ({:.1} s, {:.0} rows/s){}",
        summary.created,
        summary.updated,
        summary.unchanged,
        rejected.len(),
        secs,
        total as f64 / secs.max(1e-9),
        if args.dry_run {
            " — dry run, nothing written"
        } else {
            ""
        }
    );
    if rejected.is_empty() {
        if report.exists() {
            // An old report would mislead: this run rejected nothing.
            std::fs::remove_file(&report).ok();
        }
    } else {
        let f = std::fs::File::create(&report)
            .with_context(|| format!("writing {}", report.display()))?;
        provisync_transfer::write_report(std::io::BufWriter::new(f), &rejected)?;
        println!("rejected rows and reasons: {}", report.display());
        // Rows that were not written are a failure of the command, dry run or not: a
        // script must not take a partial import for a whole one.
        bail!(
            "{} of {total} rows {}rejected (see {})",
            rejected.len(),
            if args.dry_run { "would be " } else { "" },
            report.display()
        );
    }
    Ok(())
}

pub async fn export(remote: &Remote, args: ExportArgs) -> Result<()> {
    let format = Format::parse(&args.format).context("--format must be csv or json")?;
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("writing {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    enum Out {
        Csv(Box<CsvExport<Box<dyn Write>>>),
        Json(JsonExport<Box<dyn Write>>),
    }
    let mut w = match format {
        Format::Csv => Out::Csv(Box::new(CsvExport::new(out)?)),
        Format::Json => Out::Json(JsonExport::new(out)?),
    };
    let mut write = |u: &serde_json::Value| match &mut w {
        Out::Csv(c) => c.user(u),
        Out::Json(j) => j.user(u),
    };
    let n = match &args.target.data_dir {
        Some(dir) => {
            let directory = local_directory(dir)?;
            let view = directory.schemas().view(provisync_scim::ResourceKind::User);
            let filter = match &args.filter {
                Some(f) => {
                    let parsed = provisync_scim::filter::parse(f)
                        .map_err(|e| anyhow::anyhow!("--filter: {}", e.detail))?;
                    parsed
                        .validate(&view)
                        .map_err(|e| anyhow::anyhow!("--filter: {}", e.detail))?;
                    Some(parsed)
                }
                None => None,
            };
            let mut n = 0;
            let mut failed = None;
            directory
                .scan(provisync_scim::ResourceKind::User, |s| {
                    if failed.is_none()
                        && filter
                            .as_ref()
                            .is_none_or(|f| f.matches(&view, &s.resource))
                    {
                        match write(&s.resource) {
                            Ok(()) => n += 1,
                            Err(e) => failed = Some(e),
                        }
                    }
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            n
        }
        None => scim_sink(remote, &args.target)?
            .each_user(args.filter.as_deref(), &mut write)
            .await
            .map_err(|e| anyhow::anyhow!(e))?,
    };
    match w {
        Out::Csv(c) => c.finish()?,
        Out::Json(j) => j.finish()?,
    }
    eprintln!("{n} users exported");
    Ok(())
}
