//! Operator commands over the admin API of a running hub (`/admin/...`).
//!
//! The hub is `--url` / `PROVISYNC_URL` (default `http://127.0.0.1:8787`); the token is
//! `--token` / `PROVISYNC_ADMIN_TOKEN`, else the `admin-token` file `provisync serve`
//! writes into the data folder (`PROVISYNC_DATA_DIR`, default `./.provisync`).
//! Secrets for `target add` can come from an environment variable or stdin to keep
//! them out of shell history.

use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use provisync_core::target::{COMMON_FIELDS, KIND_FIELDS};
use serde_json::{Map, Value, json};

#[derive(Args, Debug)]
pub struct Remote {
    /// Base URL of the hub (for the operator commands).
    #[arg(
        long,
        global = true,
        env = "PROVISYNC_URL",
        default_value = "http://127.0.0.1:8787"
    )]
    pub(crate) url: String,
    /// Admin token (default: PROVISYNC_ADMIN_TOKEN, else the local `.provisync/admin-token`).
    #[arg(
        long,
        global = true,
        env = "PROVISYNC_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TargetCommand {
    /// Create or replace a target.
    Add(Box<AddArgs>),
    /// List targets (secrets are never shown).
    List,
    /// Show one target as JSON (secrets redacted).
    Show { id: String },
    /// Check a target's credentials and reachability (recorded in the audit log).
    Test { id: String },
    /// Remove a target.
    Remove { id: String },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Target id (letters, digits, `-`, `_`).
    id: String,
    /// Kind of target system: scim, crowd, cognito, okta, entra, salesforce (default: the
    /// `kind` of --file, else scim).
    #[arg(long)]
    kind: Option<String>,
    /// The whole definition from a JSON file (`-`: stdin); the other options override its fields.
    #[arg(long, value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    /// Base URL of the target's API (scim, crowd, okta; https, http only on loopback).
    #[arg(long)]
    base_url: Option<String>,
    /// A field of the kind, `FIELD=VALUE` (repeatable): VALUE as JSON when it parses, else a
    /// string; `FIELD.KEY=VALUE` sets a key of an object field. Not for secrets.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
    /// scim: bearer token (prefer --secret-env / --secret-stdin: arguments show in `ps` and history).
    #[arg(long, conflicts_with = "basic")]
    bearer: Option<String>,
    /// scim: HTTP Basic credentials `USER:PASS`, or `USER` with the password from --secret-env / --secret-stdin.
    #[arg(long)]
    basic: Option<String>,
    /// Read the kind's secret from this environment variable (scim: bearer token or Basic
    /// password; crowd: password; okta: token; entra, salesforce: client_secret).
    #[arg(
        long,
        visible_aliases = ["token-env", "password-env", "client-secret-env"],
        value_name = "VAR",
        conflicts_with = "secret_stdin"
    )]
    secret_env: Option<String>,
    /// Read the kind's secret (as for --secret-env) from the first line of stdin.
    #[arg(long)]
    secret_stdin: bool,
    /// SCIM filter: only matching users go to this target.
    #[arg(long = "scope")]
    scope: Option<String>,
    /// realtime | scheduled | manual.
    #[arg(long)]
    mode: Option<String>,
    /// Comma-separated: create,update,deactivate,delete.
    #[arg(long, value_delimiter = ',')]
    operations: Option<Vec<String>>,
    /// deactivate | delete | leave (users leaving the scope).
    #[arg(long)]
    out_of_scope: Option<String>,
    /// patch | put (how the SCIM target takes updates).
    #[arg(long)]
    update_style: Option<String>,
    /// Attribute that finds existing accounts on the target (default userName).
    #[arg(long)]
    matching_attribute: Option<String>,
    /// A JSON file with the attribute mapping rules (an array).
    #[arg(long)]
    mapping_file: Option<std::path::PathBuf>,
    /// Save the target disabled.
    #[arg(long)]
    disabled: bool,
}

#[derive(Subcommand, Debug)]
pub enum SourceCommand {
    /// Create or replace a source (a site that sends signed webhooks).
    Add(Box<SourceArgs>),
    /// List sources (secrets are never shown).
    List,
    /// Show one source as JSON (secrets redacted).
    Show { id: String },
    /// Remove a source.
    Remove { id: String },
}

#[derive(Args, Debug)]
pub struct SourceArgs {
    /// Source id (letters, digits, `-`, `_`, `.`): the webhook URL is /webhooks/{id}.
    /// A bidirectional site uses the same id as its webhook target.
    id: String,
    /// Read the webhook secret (`whsec_…`; several, space-separated, for rotation) from
    /// this environment variable.
    #[arg(long, conflicts_with = "secret_stdin")]
    secret_env: Option<String>,
    /// Read the webhook secret(s) from the first line of stdin.
    #[arg(long)]
    secret_stdin: bool,
    /// standard (Standard Webhooks) | github (X-Hub-Signature-256).
    #[arg(long)]
    scheme: Option<String>,
    /// push | pull | bidirectional.
    #[arg(long)]
    direction: Option<String>,
    /// Accept users and groups from this source.
    #[arg(long)]
    user_sync: bool,
    /// Comma-separated entity types accepted (node,taxonomy_term).
    #[arg(long, value_delimiter = ',')]
    entity_types: Option<Vec<String>>,
    /// Comma-separated configuration name prefixes accepted (system.site,shared.).
    #[arg(long, value_delimiter = ',')]
    config_prefixes: Option<Vec<String>>,
    /// Comma-separated user/group attributes the source may set (default: a safe set
    /// without roles, active or password).
    #[arg(long, value_delimiter = ',')]
    allowed_fields: Option<Vec<String>>,
    /// Save the source disabled.
    #[arg(long)]
    disabled: bool,
}

fn read_secret_from(env: Option<&str>, stdin: bool) -> Result<Option<String>> {
    if let Some(var) = env {
        let v =
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        return Ok(Some(v));
    }
    if stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        let line = s
            .lines()
            .next()
            .unwrap_or("")
            .trim_end_matches('\r')
            .to_string();
        if line.is_empty() {
            bail!("--secret-stdin: nothing on stdin");
        }
        return Ok(Some(line));
    }
    Ok(None)
}

fn source_body(args: &SourceArgs) -> Result<Value> {
    let mut body = Map::new();
    if let Some(secret) = read_secret_from(args.secret_env.as_deref(), args.secret_stdin)? {
        let secrets: Vec<&str> = secret.split_whitespace().collect();
        body.insert("secrets".into(), json!(secrets));
    }
    for (k, v) in [("scheme", &args.scheme), ("direction", &args.direction)] {
        if let Some(v) = v {
            body.insert(k.into(), json!(v));
        }
    }
    for (k, v) in [
        ("entity_types", &args.entity_types),
        ("config_prefixes", &args.config_prefixes),
        ("allowed_fields", &args.allowed_fields),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), json!(v));
        }
    }
    if args.user_sync {
        body.insert("user_sync".into(), json!(true));
    }
    if args.disabled {
        body.insert("enabled".into(), json!(false));
    }
    Ok(Value::Object(body))
}

pub async fn source(remote: &Remote, cmd: SourceCommand) -> Result<()> {
    let admin = Admin::new(remote)?;
    use reqwest::Method;
    match cmd {
        SourceCommand::Add(args) => {
            let body = source_body(&args)?;
            let v = admin
                .call(
                    Method::PUT,
                    &format!("/sources/{}", seg(&args.id)),
                    &[],
                    Some(&body),
                )
                .await?;
            println!(
                "source {} saved: webhooks go to POST /webhooks/{}",
                s(&v, "id"),
                s(&v, "id")
            );
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        SourceCommand::List => {
            let v = admin.call(Method::GET, "/sources", &[], None).await?;
            let list = v["sources"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no sources (add one with `provisync source add`)");
                return Ok(());
            }
            let join = |x: &Value| {
                x.as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default()
            };
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|x| {
                    vec![
                        s(x, "id"),
                        s(x, "scheme"),
                        s(x, "direction"),
                        if x["enabled"].as_bool().unwrap_or(true) {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                        if x["user_sync"].as_bool().unwrap_or(false) {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                        short(&join(&x["entity_types"]), 40),
                        short(&join(&x["config_prefixes"]), 40),
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "SCHEME",
                    "DIRECTION",
                    "ENABLED",
                    "USERS",
                    "ENTITY TYPES",
                    "CONFIG PREFIXES",
                ],
                &rows,
            );
        }
        SourceCommand::Show { id } => {
            let v = admin
                .call(Method::GET, &format!("/sources/{}", seg(&id)), &[], None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        SourceCommand::Remove { id } => {
            admin
                .call(Method::DELETE, &format!("/sources/{}", seg(&id)), &[], None)
                .await?;
            println!("source {id} removed");
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[arg(long)]
    target: Option<String>,
    /// A user or group id.
    #[arg(long)]
    resource: Option<String>,
    /// create, update, password, deactivate, delete, add_members, remove_members, test, sync, ...
    #[arg(long)]
    op: Option<String>,
    /// delivered, skipped, retry, failed, dead, refused, linked, queued.
    #[arg(long)]
    status: Option<String>,
    /// RFC 3339 timestamp.
    #[arg(long)]
    since: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Continue after a previous page.
    #[arg(long)]
    cursor: Option<String>,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    #[arg(long)]
    target: String,
    /// SCIM filter on users (default: every user).
    #[arg(long, conflicts_with = "user")]
    filter: Option<String>,
    /// One user's id: pushed to the target at once.
    #[arg(long, conflicts_with = "reconcile")]
    user: Option<String>,
    /// Reconcile the target now: compare what it holds with the hub, fix only what differs.
    #[arg(long, conflicts_with = "filter")]
    reconcile: bool,
}

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// Seconds the cycle may take at most (1 to 240; a large reconcile continues next cycle).
    #[arg(long, default_value_t = 25)]
    budget: u64,
    /// Print the raw JSON report.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct DeadLetterArgs {
    /// Send them back to the delivery queue instead of listing them.
    #[arg(long)]
    redrive: bool,
    #[arg(long)]
    limit: Option<usize>,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
}

/// A client for one hub's admin API.
struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    fn new(remote: &Remote) -> Result<Self> {
        let token = match remote.token.as_ref().filter(|t| !t.is_empty()) {
            Some(t) => t.clone(),
            None => {
                let file = provisync_aws::data_dir_from_env().join("admin-token");
                std::fs::read_to_string(&file)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        anyhow!(
                            "no admin token: pass --token, set PROVISYNC_ADMIN_TOKEN, or run `provisync serve` here first (it writes {})",
                            file.display()
                        )
                    })?
            }
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()?;
        Ok(Admin {
            http,
            base: format!("{}/admin", remote.url.trim_end_matches('/')),
            token,
        })
    }

    /// Sends a request; a non-2xx answer becomes an error with the hub's message.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the hub at {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        if !status.is_success() {
            let msg = json
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| text.chars().take(500).collect());
            bail!("{} {}", status.as_u16(), msg);
        }
        Ok(json)
    }
}

fn seg(id: &str) -> String {
    // Ids are validated by the hub; encode anything that would change the path.
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn read_secret(args: &AddArgs) -> Result<Option<String>> {
    if let Some(var) = &args.secret_env {
        let v =
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        if v.is_empty() {
            bail!("environment variable {var} is empty");
        }
        return Ok(Some(v));
    }
    if args.secret_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        let line = s
            .lines()
            .next()
            .unwrap_or("")
            .trim_end_matches('\r')
            .to_string();
        if line.is_empty() {
            bail!("--secret-stdin: nothing on stdin");
        }
        return Ok(Some(line));
    }
    Ok(None)
}

/// The `auth` of a scim target from --bearer / --basic / the secret; `None` when none of
/// them is given.
fn auth_of(args: &AddArgs, secret: Option<String>) -> Result<Option<Value>> {
    match (&args.bearer, &args.basic, secret) {
        (Some(_), _, Some(_)) => bail!(
            "give the bearer token with --bearer or with --secret-env/--secret-stdin, not both"
        ),
        (Some(t), None, None) => Ok(Some(json!({"bearer": t}))),
        (None, Some(b), secret) => {
            let (user, pass) = match (b.split_once(':'), secret) {
                (Some(_), Some(_)) => bail!(
                    "--basic USER:PASS already has a password; drop --secret-env/--secret-stdin"
                ),
                (Some((u, p)), None) => (u.to_string(), p.to_string()),
                (None, Some(p)) => (b.clone(), p),
                (None, None) => bail!(
                    "--basic USER needs a password: USER:PASS, --secret-env VAR or --secret-stdin"
                ),
            };
            Ok(Some(json!({"basic": {"username": user, "password": pass}})))
        }
        (None, None, Some(t)) => Ok(Some(json!({"bearer": t}))),
        (None, None, None) => Ok(None),
        (Some(_), Some(_), _) => bail!("--bearer and --basic exclude each other"),
    }
}

/// The field holding a kind's secret (`None`: the kind stores none). A unit test checks
/// these against the hub's own redaction.
fn secret_field(kind: &str) -> Option<&'static str> {
    match kind {
        "scim" => Some("auth"),
        "crowd" => Some("password"),
        "okta" => Some("token"),
        "entra" | "salesforce" => Some("client_secret"),
        "webhook" => Some("secret"),
        _ => None,
    }
}

/// The kind's own fields, from the hub's list; an unknown kind is an error naming the known.
fn kind_fields(kind: &str) -> Result<&'static [&'static str]> {
    KIND_FIELDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            let known: Vec<&str> = KIND_FIELDS.iter().map(|(k, _)| *k).collect();
            anyhow!("unknown target kind {kind:?} (known: {})", known.join(", "))
        })
}

/// What a kind's definition may hold, for error messages.
fn fields_help(kind: &str, fields: &[&str]) -> String {
    let common: Vec<&str> = COMMON_FIELDS
        .iter()
        .copied()
        .filter(|f| !matches!(*f, "id" | "kind"))
        .collect();
    format!(
        "{kind} targets have: {}; every kind also has: {}",
        fields.join(", "),
        common.join(", ")
    )
}

/// The definition in --file (`-`: stdin), a JSON object.
fn read_definition(path: &std::path::Path) -> Result<Map<String, Value>> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the definition from stdin")?;
        ("stdin".to_string(), s)
    } else {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        (path.display().to_string(), text)
    };
    // serde_json's message gives the position only, never the text (which may hold a secret).
    match serde_json::from_str(&text).with_context(|| format!("{name} is not JSON"))? {
        Value::Object(m) => Ok(m),
        _ => bail!("{name}: a target definition is a JSON object"),
    }
}

/// Applies one `--set FIELD=VALUE` (or `FIELD.KEY.…=VALUE`).
fn apply_set(body: &mut Map<String, Value>, kind: &str, fields: &[&str], item: &str) -> Result<()> {
    let Some((path, raw)) = item.split_once('=') else {
        bail!("--set wants FIELD=VALUE, got {item:?}");
    };
    let mut keys = path.split('.');
    let field = keys.next().unwrap_or_default();
    if keys.clone().any(str::is_empty) || field.is_empty() {
        bail!("--set {path:?}: empty field or key");
    }
    match field {
        "id" => bail!("--set id: the id is the first argument"),
        "kind" => bail!("--set kind: use --kind"),
        _ => {}
    }
    if Some(field) == secret_field(kind) {
        bail!(
            "--set {field}: secrets are never taken from arguments (they show in `ps` and the \
             shell history); use --secret-env VAR, --secret-stdin or --file"
        );
    }
    if !fields.contains(&field) && !COMMON_FIELDS.contains(&field) {
        bail!(
            "--set {field}: no such field; {}",
            fields_help(kind, fields)
        );
    }
    let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    let mut slot = body.entry(field.to_string()).or_insert(Value::Null);
    for key in keys {
        if slot.is_null() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(m) = slot else {
            bail!("--set {path}: {field} is not an object");
        };
        slot = m.entry(key.to_string()).or_insert(Value::Null);
    }
    *slot = value;
    Ok(())
}

fn target_body(args: &AddArgs) -> Result<Value> {
    let from_stdin = args.file.as_deref().is_some_and(|f| f.as_os_str() == "-");
    if from_stdin && args.secret_stdin {
        bail!(
            "--file - and --secret-stdin both read stdin: put the secret in the definition, or use --secret-env"
        );
    }
    let mut body = match &args.file {
        Some(f) => read_definition(f)?,
        None => Map::new(),
    };
    match body.get("id") {
        Some(Value::String(id)) if *id != args.id => {
            bail!(
                "the definition's id {id:?} is not the target id {:?}",
                args.id
            )
        }
        _ => {}
    }
    let kind = match (&args.kind, body.get("kind")) {
        (Some(k), Some(Value::String(f))) if k != f => {
            bail!("--kind {k}, but the definition's kind is {f}")
        }
        (Some(k), _) => k.clone(),
        (None, Some(Value::String(f))) => f.clone(),
        (None, Some(_)) => bail!("the definition's `kind` must be a string"),
        (None, None) => "scim".to_string(),
    };
    let fields = kind_fields(&kind)?;
    body.insert("kind".into(), json!(kind));
    if let Some(u) = &args.base_url {
        if !fields.contains(&"base_url") {
            bail!(
                "--base-url: {kind} targets have no base_url; {} (set them with --set FIELD=VALUE)",
                fields_help(&kind, fields)
            );
        }
        body.insert("base_url".into(), json!(u));
    }
    for item in &args.set {
        apply_set(&mut body, &kind, fields, item)?;
    }
    let secret = read_secret(args)?;
    if kind == "scim" {
        match auth_of(args, secret)? {
            Some(auth) => {
                body.insert("auth".into(), auth);
            }
            None if body.contains_key("auth") => {}
            None => {
                bail!("credentials needed: --bearer, --basic, --secret-env or --secret-stdin")
            }
        }
    } else {
        if args.bearer.is_some() || args.basic.is_some() {
            bail!(
                "--bearer and --basic are for scim targets; {}",
                match secret_field(&kind) {
                    Some(f) => format!(
                        "the {f} of {kind} targets comes from --secret-env VAR or --secret-stdin"
                    ),
                    None => format!("{kind} targets store no secret"),
                }
            );
        }
        match (secret_field(&kind), secret) {
            (Some(f), Some(v)) => {
                body.insert(f.into(), json!(v));
            }
            (Some(f), None) if !body.contains_key(f) => bail!(
                "{kind} targets need their {f}: --secret-env VAR (or --token-env VAR), or --secret-stdin"
            ),
            (None, Some(_)) => bail!(
                "{kind} targets store no secret (cognito uses the hub's own AWS credentials): drop --secret-env/--secret-stdin"
            ),
            _ => {}
        }
    }
    if let Some(s) = &args.scope {
        body.insert("scope_filter".into(), json!(s));
    }
    if let Some(m) = &args.mode {
        body.insert("mode".into(), json!(m));
    }
    if let Some(ops) = &args.operations {
        body.insert("operations".into(), json!(ops));
    }
    if let Some(o) = &args.out_of_scope {
        body.insert("out_of_scope".into(), json!(o));
    }
    if let Some(u) = &args.update_style {
        body.insert("update_style".into(), json!(u));
    }
    if let Some(m) = &args.matching_attribute {
        body.insert("matching_attribute".into(), json!(m));
    }
    if let Some(f) = &args.mapping_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let mapping: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", f.display()))?;
        if !mapping.is_array() {
            bail!("{}: the mapping must be a JSON array of rules", f.display());
        }
        body.insert("mapping".into(), mapping);
    }
    if args.disabled {
        body.insert("enabled".into(), json!(false));
    }
    let mut unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !fields.contains(k) && !COMMON_FIELDS.contains(k))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        bail!(
            "unknown field{} for kind {kind}: {}; {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", "),
            fields_help(&kind, fields)
        );
    }
    Ok(Value::Object(body))
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Prints rows as aligned columns (the last column is not padded).
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(&c);
            } else {
                let pad = widths[i] - c.chars().count();
                out.push_str(&c);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn short(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut t: String = one_line.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

pub async fn target(remote: &Remote, cmd: TargetCommand) -> Result<()> {
    let admin = Admin::new(remote)?;
    use reqwest::Method;
    match cmd {
        TargetCommand::Add(args) => {
            let body = target_body(&args)?;
            let t = admin
                .call(
                    Method::PUT,
                    &format!("/targets/{}", seg(&args.id)),
                    &[],
                    Some(&body),
                )
                .await?;
            println!("target {} saved", s(&t, "id"));
            println!("{}", serde_json::to_string_pretty(&t)?);
        }
        TargetCommand::List => {
            let v = admin.call(Method::GET, "/targets", &[], None).await?;
            let list = v["targets"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no targets (add one with `provisync target add`)");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|t| {
                    vec![
                        s(t, "id"),
                        s(t, "kind"),
                        if t["enabled"].as_bool().unwrap_or(true) {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                        s(t, "mode"),
                        s(t, "base_url"),
                        short(&s(t, "scope_filter"), 60),
                    ]
                })
                .collect();
            table(
                &["ID", "KIND", "ENABLED", "MODE", "BASE URL", "SCOPE"],
                &rows,
            );
        }
        TargetCommand::Show { id } => {
            let t = admin
                .call(Method::GET, &format!("/targets/{}", seg(&id)), &[], None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&t)?);
        }
        TargetCommand::Test { id } => {
            let r = admin
                .call(
                    Method::POST,
                    &format!("/targets/{}/test", seg(&id)),
                    &[],
                    None,
                )
                .await?;
            let ok = r["ok"].as_bool().unwrap_or(false);
            println!(
                "{} {} ({} ms): {}",
                if ok { "OK" } else { "FAILED" },
                id,
                s(&r, "latency_ms"),
                s(&r, "detail")
            );
            if !ok {
                bail!("connection test of {id} failed");
            }
        }
        TargetCommand::Remove { id } => {
            admin
                .call(Method::DELETE, &format!("/targets/{}", seg(&id)), &[], None)
                .await?;
            println!("target {id} removed");
        }
    }
    Ok(())
}

pub async fn audit(remote: &Remote, args: AuditArgs) -> Result<()> {
    let admin = Admin::new(remote)?;
    let mut q: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    for (k, v) in [
        ("target", args.target),
        ("resource", args.resource),
        ("op", args.op),
        ("status", args.status),
        ("since", args.since),
        ("cursor", args.cursor),
    ] {
        if let Some(v) = v {
            q.push((k, v));
        }
    }
    let v = admin.call(reqwest::Method::GET, "/audit", &q, None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let entries = v["entries"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        println!("no audit entries");
    } else {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                let res = match (s(e, "resource_type"), s(e, "resource_id")) {
                    (_, id) if id.is_empty() => String::new(),
                    (t, id) if t.is_empty() => id,
                    (t, id) => format!("{t}/{id}"),
                };
                vec![
                    s(e, "at"),
                    s(e, "target"),
                    s(e, "op"),
                    s(e, "status"),
                    res,
                    format!("{} ms", s(e, "latency_ms")),
                    short(&s(e, "detail"), 80),
                ]
            })
            .collect();
        table(
            &[
                "AT", "TARGET", "OP", "STATUS", "RESOURCE", "LATENCY", "DETAIL",
            ],
            &rows,
        );
    }
    if let Some(c) = v["next_cursor"].as_str() {
        println!("more: provisync audit --cursor {c} (same filters)");
    }
    Ok(())
}

pub async fn sync(remote: &Remote, args: SyncArgs) -> Result<()> {
    let admin = Admin::new(remote)?;
    if args.reconcile {
        let body = json!({"target": args.target, "reconcile": true});
        let v = admin
            .call(reqwest::Method::POST, "/sync", &[], Some(&body))
            .await?;
        print_reconcile(&v["reconcile"]);
        return Ok(());
    }
    let mut body = json!({"target": args.target});
    if let Some(f) = args.filter {
        body["filter"] = json!(f);
    }
    if let Some(u) = args.user {
        body["user"] = json!(u);
    }
    let v = admin
        .call(reqwest::Method::POST, "/sync", &[], Some(&body))
        .await?;
    println!("{} change(s) queued for {}", s(&v, "queued"), args.target);
    Ok(())
}

fn print_reconcile(r: &Value) {
    let c = &r["counts"];
    println!(
        "reconcile {}: {}{}",
        s(r, "target"),
        s(r, "state"),
        if r["resumed"].as_bool() == Some(true) {
            " (resumed)"
        } else {
            ""
        }
    );
    println!(
        "  checked {}  created {}  updated {}  deactivated {}  deleted {}  orphaned {}  unchanged {}  failed {}",
        s(c, "checked"),
        s(c, "created"),
        s(c, "updated"),
        s(c, "deactivated"),
        s(c, "deleted"),
        s(c, "orphaned"),
        s(c, "unchanged"),
        s(c, "failed")
    );
    // A hub from before groups were reconciled answers without `groups`.
    let g = &c["groups"];
    if g["unsupported"].as_bool() == Some(true) {
        println!("  groups: not supported (this kind of target cannot list groups)");
    } else if g.is_object() {
        println!(
            "  groups: checked {}  created {}  updated {}  deleted {}  orphaned {}  unchanged {}  failed {}  members +{} -{}",
            s(g, "checked"),
            s(g, "created"),
            s(g, "updated"),
            s(g, "deleted"),
            s(g, "orphaned"),
            s(g, "unchanged"),
            s(g, "failed"),
            s(g, "members_added"),
            s(g, "members_removed")
        );
    }
    if let Some(e) = r["error"].as_str() {
        println!("  error: {e}");
    }
}

pub async fn run_schedule(remote: &Remote, args: ScheduleArgs) -> Result<()> {
    let admin = Admin::new(remote)?;
    let q = [("budget", args.budget.to_string())];
    let v = admin
        .call(reqwest::Method::POST, "/schedule/run", &q, None)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let pulled = v["pulled"].as_array().cloned().unwrap_or_default();
    for p in &pulled {
        println!(
            "pull {}: fetched {}  created {}  updated {}  unchanged {}  failed {}{}{}",
            s(p, "source"),
            s(p, "fetched"),
            s(p, "created"),
            s(p, "updated"),
            s(p, "unchanged"),
            s(p, "failed"),
            if p["complete"].as_bool() == Some(false) {
                "  (continues next cycle)"
            } else {
                ""
            },
            p["error"]
                .as_str()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default()
        );
        let g = &p["groups"];
        if g["fetched"].as_u64().unwrap_or(0) > 0 {
            println!(
                "  groups: fetched {}  created {}  updated {}  unchanged {}  failed {}",
                s(g, "fetched"),
                s(g, "created"),
                s(g, "updated"),
                s(g, "unchanged"),
                s(g, "failed"),
            );
        }
    }
    let reconciled = v["reconciled"].as_array().cloned().unwrap_or_default();
    for r in &reconciled {
        print_reconcile(r);
    }
    if pulled.is_empty() && reconciled.is_empty() {
        println!("no pull sources and no scheduled targets");
    }
    println!(
        "outbox: {} resent{}; dead letters: {}",
        s(&v, "outbox_resent"),
        if v["outbox_complete"].as_bool() == Some(false) {
            " (more next cycle)"
        } else {
            ""
        },
        s(&v, "dead_letters")
    );
    Ok(())
}

pub async fn dead_letters(remote: &Remote, args: DeadLetterArgs) -> Result<()> {
    let admin = Admin::new(remote)?;
    let q: Vec<(&str, String)> = args
        .limit
        .map(|l| vec![("limit", l.to_string())])
        .unwrap_or_default();
    if args.redrive {
        let v = admin
            .call(reqwest::Method::POST, "/deadletters/redrive", &q, None)
            .await?;
        println!(
            "{} dead letter(s) sent back to the queue",
            s(&v, "redriven")
        );
        return Ok(());
    }
    let v = admin
        .call(reqwest::Method::GET, "/deadletters", &q, None)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let list = v["dead_letters"].as_array().cloned().unwrap_or_default();
    println!("{} dead letter(s)", s(&v, "count"));
    if !list.is_empty() {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|d| {
                vec![
                    s(d, "group_id"),
                    s(d, "dedup_id"),
                    s(d, "receive_count"),
                    short(&d["body"].to_string(), 80),
                ]
            })
            .collect();
        table(&["GROUP", "EVENT", "RECEIVES", "BODY"], &rows);
        println!("send them back with: provisync deadletters --redrive");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: AddArgs,
    }

    fn add(args: &[&str]) -> Result<Value> {
        let mut v = vec!["x"];
        v.extend_from_slice(args);
        let t = T::try_parse_from(v).map_err(|e| anyhow!(e.to_string()))?;
        target_body(&t.a)
    }

    #[test]
    fn target_bodies() {
        let b = add(&[
            "crm",
            "--base-url",
            "https://x",
            "--bearer",
            "tok",
            "--operations",
            "create,update",
            "--scope",
            "active eq true",
        ])
        .unwrap();
        assert_eq!(b["auth"], json!({"bearer": "tok"}));
        assert_eq!(b["operations"], json!(["create", "update"]));
        assert_eq!(b["scope_filter"], "active eq true");
        let b = add(&["crm", "--base-url", "https://x", "--basic", "u:p:q"]).unwrap();
        assert_eq!(
            b["auth"],
            json!({"basic": {"username": "u", "password": "p:q"}})
        );
        // SAFETY: single-threaded test; the variable is unique to it.
        unsafe { std::env::set_var("PSY_TEST_SECRET_1", "from-env") };
        let b = add(&[
            "crm",
            "--base-url",
            "https://x",
            "--basic",
            "u",
            "--secret-env",
            "PSY_TEST_SECRET_1",
        ])
        .unwrap();
        assert_eq!(b["auth"]["basic"]["password"], "from-env");
        let b = add(&[
            "crm",
            "--base-url",
            "https://x",
            "--secret-env",
            "PSY_TEST_SECRET_1",
            "--disabled",
        ])
        .unwrap();
        assert_eq!(b["auth"], json!({"bearer": "from-env"}));
        assert_eq!(b["enabled"], false);
        assert!(add(&["crm", "--base-url", "https://x"]).is_err());
        assert!(add(&["crm", "--base-url", "https://x", "--basic", "u"]).is_err());
        assert!(
            add(&[
                "crm",
                "--base-url",
                "https://x",
                "--bearer",
                "a",
                "--basic",
                "u:p"
            ])
            .is_err()
        );
    }

    #[derive(Parser)]
    struct S {
        #[command(flatten)]
        a: SourceArgs,
    }

    #[test]
    fn source_bodies() {
        // SAFETY: single-threaded test; the variable is unique to it.
        unsafe { std::env::set_var("PSY_TEST_WHSEC", "whsec_a whsec_b") };
        let args = S::try_parse_from([
            "x",
            "site-a",
            "--secret-env",
            "PSY_TEST_WHSEC",
            "--direction",
            "bidirectional",
            "--user-sync",
            "--entity-types",
            "node,taxonomy_term",
            "--config-prefixes",
            "shared.",
        ])
        .unwrap();
        let b = source_body(&args.a).unwrap();
        assert_eq!(
            b,
            json!({"secrets": ["whsec_a", "whsec_b"], "direction": "bidirectional",
                "user_sync": true, "entity_types": ["node", "taxonomy_term"],
                "config_prefixes": ["shared."]})
        );
        let missing = S::try_parse_from(["x", "a", "--secret-env", "PSY_TEST_NOT_SET_X"]).unwrap();
        assert!(source_body(&missing.a).is_err());
    }

    /// Every kind, built from flags: the exact body, which the hub's own types accept and
    /// whose secret (from the environment) is the field the hub redacts.
    #[test]
    fn bodies_for_every_kind() {
        // SAFETY: single-threaded test; the variable is unique to it.
        unsafe { std::env::set_var("PSY_TEST_SECRET_2", "s3cret-value") };
        let cases: Vec<(&str, Vec<&str>, Value)> = vec![
            (
                "scim",
                vec![
                    "--base-url",
                    "https://crm.example.com/scim/v2",
                    "--secret-env",
                    "PSY_TEST_SECRET_2",
                ],
                json!({"kind": "scim", "base_url": "https://crm.example.com/scim/v2",
                       "auth": {"bearer": "s3cret-value"}}),
            ),
            (
                "crowd",
                vec![
                    "--kind",
                    "crowd",
                    "--base-url",
                    "https://crowd.example.com/crowd",
                    "--set",
                    "application=provisync",
                    "--password-env",
                    "PSY_TEST_SECRET_2",
                ],
                json!({"kind": "crowd", "base_url": "https://crowd.example.com/crowd",
                       "application": "provisync", "password": "s3cret-value"}),
            ),
            (
                "okta",
                vec![
                    "--kind",
                    "okta",
                    "--base-url",
                    "https://dev-1.okta.com",
                    "--token-env",
                    "PSY_TEST_SECRET_2",
                    "--operations",
                    "create,update,deactivate",
                ],
                json!({"kind": "okta", "base_url": "https://dev-1.okta.com", "token": "s3cret-value",
                       "operations": ["create", "update", "deactivate"]}),
            ),
            (
                "entra",
                vec![
                    "--kind",
                    "entra",
                    "--set",
                    "tenant_id=contoso.onmicrosoft.com",
                    "--set",
                    "client_id=\"0a1b2c3d-0000-4000-8000-000000000001\"",
                    "--set",
                    "graph_url=https://graph.microsoft.us",
                    "--client-secret-env",
                    "PSY_TEST_SECRET_2",
                ],
                json!({"kind": "entra", "tenant_id": "contoso.onmicrosoft.com",
                       "client_id": "0a1b2c3d-0000-4000-8000-000000000001",
                       "graph_url": "https://graph.microsoft.us", "client_secret": "s3cret-value"}),
            ),
            (
                "salesforce",
                vec![
                    "--kind",
                    "salesforce",
                    "--set",
                    "instance_url=https://acme.my.salesforce.com",
                    "--set",
                    "client_id=3MVG9abc",
                    "--secret-env",
                    "PSY_TEST_SECRET_2",
                    "--set",
                    "defaults.ProfileId=00e000000000001",
                    "--set",
                    "defaults.TimeZoneSidKey=America/Los_Angeles",
                    "--set",
                    "defaults={\"LocaleSidKey\": \"en_US\"}",
                    "--set",
                    "defaults.EmailEncodingKey=UTF-8",
                ],
                json!({"kind": "salesforce", "instance_url": "https://acme.my.salesforce.com",
                       "client_id": "3MVG9abc", "client_secret": "s3cret-value",
                       "defaults": {"LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8"}}),
            ),
            (
                "cognito",
                vec![
                    "--kind",
                    "cognito",
                    "--set",
                    "user_pool_id=us-east-1_AbCdEfGhI",
                    "--set",
                    "region=us-east-1",
                    "--set",
                    "email_verified=true",
                    "--set",
                    "group_mapping.Engineering=engineers",
                    "--mode",
                    "scheduled",
                ],
                json!({"kind": "cognito", "user_pool_id": "us-east-1_AbCdEfGhI",
                       "region": "us-east-1", "email_verified": true,
                       "group_mapping": {"Engineering": "engineers"}, "mode": "scheduled"}),
            ),
            (
                "webhook",
                vec![
                    "--kind",
                    "webhook",
                    "--set",
                    "url=https://site-b.example/provisync/webhook",
                    "--secret-env",
                    "PSY_TEST_SECRET_2",
                    "--set",
                    "user_sync=true",
                    "--set",
                    "config_prefixes=[\"shared.\"]",
                ],
                json!({"kind": "webhook", "url": "https://site-b.example/provisync/webhook",
                       "secret": "s3cret-value", "user_sync": true,
                       "config_prefixes": ["shared."]}),
            ),
        ];
        for (kind, _) in KIND_FIELDS {
            assert!(
                cases.iter().any(|(k, _, _)| k == kind),
                "no case for {kind}"
            );
        }
        for (kind, flags, expected) in cases {
            let mut argv = vec!["t1"];
            argv.extend(flags);
            let body = add(&argv).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(body, expected, "{kind}");
            let config: provisync_core::target::TargetConfig =
                serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(config.kind_name(), kind);
            let shown = serde_json::to_value(config.redacted()).unwrap();
            assert!(
                !shown.to_string().contains("s3cret-value"),
                "{kind}: {shown}"
            );
            match secret_field(kind) {
                Some("auth") => assert_eq!(shown["auth"]["bearer"], "***"),
                Some(f) => assert_eq!(shown[f], "***", "{kind}"),
                None => assert_eq!(serde_json::to_value(&config).unwrap(), shown, "{kind}"),
            }
        }
    }

    fn add_err(args: &[&str]) -> String {
        match add(args) {
            Ok(b) => panic!("{args:?} should fail, built {b}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn local_validation() {
        // SAFETY: single-threaded test; the variable is unique to it.
        unsafe { std::env::set_var("PSY_TEST_SECRET_3", "tok-3") };
        let okta = [
            "t",
            "--kind",
            "okta",
            "--base-url",
            "https://dev-1.okta.com",
        ];
        let with = |extra: &[&'static str]| -> Vec<&str> {
            okta.iter().chain(extra.iter()).copied().collect()
        };
        let e = add_err(&with(&[
            "--token-env",
            "PSY_TEST_SECRET_3",
            "--set",
            "tokn=x",
        ]));
        assert!(
            e.contains("tokn") && e.contains("okta targets have: base_url, token"),
            "{e}"
        );
        let e = add_err(&with(&["--set", "token=abc"]));
        assert!(
            e.contains("never taken from arguments") && !e.contains("abc"),
            "{e}"
        );
        let e = add_err(&with(&[]));
        assert!(e.contains("need their token"), "{e}");
        let e = add_err(&with(&["--bearer", "abc"]));
        assert!(e.contains("for scim targets"), "{e}");
        let e = add_err(&with(&[
            "--token-env",
            "PSY_TEST_SECRET_3",
            "--update-style",
            "put",
        ]));
        assert!(
            e.contains("unknown field for kind okta: update_style"),
            "{e}"
        );
        let e = add_err(&[
            "t",
            "--kind",
            "okta",
            "--base-url",
            "https://x",
            "--token-env",
            "PSY_UNSET_VAR_XYZ",
        ]);
        assert!(e.contains("PSY_UNSET_VAR_XYZ is not set"), "{e}");
        let e = add_err(&["t", "--kind", "entra", "--base-url", "https://x"]);
        assert!(
            e.contains("no base_url") && e.contains("tenant_id, client_id"),
            "{e}"
        );
        let e = add_err(&[
            "t",
            "--kind",
            "cognito",
            "--set",
            "user_pool_id=p",
            "--secret-env",
            "PSY_TEST_SECRET_3",
        ]);
        assert!(e.contains("store no secret"), "{e}");
        let e = add_err(&["t", "--kind", "ldap"]);
        assert!(
            e.contains("known: scim, crowd, entra, salesforce, cognito, okta"),
            "{e}"
        );
        let e = add_err(&[
            "t",
            "--kind",
            "scim",
            "--base-url",
            "https://x",
            "--bearer",
            "b",
            "--set",
            "auth.bearer=zz",
        ]);
        assert!(e.contains("never taken from arguments"), "{e}");
        let e = add_err(&["t", "--kind", "cognito", "--set", "user_pool_id"]);
        assert!(e.contains("FIELD=VALUE"), "{e}");
        let e = add_err(&[
            "t",
            "--kind",
            "cognito",
            "--set",
            "region=x",
            "--set",
            "region.a=b",
        ]);
        assert!(e.contains("region is not an object"), "{e}");
        let e = add_err(&["t", "--file", "-", "--secret-stdin"]);
        assert!(e.contains("both read stdin"), "{e}");
    }

    #[test]
    fn definition_from_a_file() {
        let dir = std::env::temp_dir().join(format!("psy-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("okta.json");
        std::fs::write(
            &file,
            r#"{"kind": "okta", "base_url": "https://dev-1.okta.com", "token": "from-file",
                "mapping": [{"target": "attributes.costCenter", "value": "CC-1"}]}"#,
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let b = add(&["t", "--file", f, "--disabled"]).unwrap();
        assert_eq!(b["token"], "from-file");
        assert_eq!(b["mapping"][0]["value"], "CC-1");
        assert_eq!(b["enabled"], false);
        // Options override the file's fields.
        // SAFETY: single-threaded test; the variable is unique to it.
        unsafe { std::env::set_var("PSY_TEST_SECRET_4", "from-env") };
        let b = add(&[
            "t",
            "--file",
            f,
            "--kind",
            "okta",
            "--token-env",
            "PSY_TEST_SECRET_4",
            "--base-url",
            "https://dev-2.okta.com",
        ])
        .unwrap();
        assert_eq!(b["token"], "from-env");
        assert_eq!(b["base_url"], "https://dev-2.okta.com");
        let e = add_err(&["t", "--file", f, "--kind", "entra"]);
        assert!(
            e.contains("--kind entra, but the definition's kind is okta"),
            "{e}"
        );
        std::fs::write(
            &file,
            r#"{"kind": "okta", "base_url": "https://x", "token": "t", "tenant_id": "x"}"#,
        )
        .unwrap();
        let e = add_err(&["t", "--file", f]);
        assert!(e.contains("unknown field for kind okta: tenant_id"), "{e}");
        std::fs::write(&file, r#"{"kind": "okta", "token": "very-secret"#).unwrap();
        let e = format!("{:#}", add(&["t", "--file", f]).unwrap_err());
        assert!(
            e.contains("is not JSON") && !e.contains("very-secret"),
            "{e}"
        );
        std::fs::write(&file, r#"{"id": "other", "kind": "okta"}"#).unwrap();
        let e = add_err(&["t", "--file", f]);
        assert!(e.contains("\"other\" is not the target id"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("crm-1_a"), "crm-1_a");
        assert_eq!(seg("a/b?c"), "a%2Fb%3Fc");
    }
}
