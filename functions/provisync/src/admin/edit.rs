//! What `target add|update` and `source add|update` share: a definition (or a merge
//! patch) from a JSON file, `--set FIELD=VALUE` edits, and secrets read from the
//! environment or stdin, never from arguments.

use std::io::Read;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

/// A secret from the environment variable `env`, or the first line of stdin (`stdin`);
/// `None` when neither is asked for.
pub(super) fn read_secret(env: Option<&str>, stdin: bool) -> Result<Option<String>> {
    if let Some(var) = env {
        let v =
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        if v.is_empty() {
            bail!("environment variable {var} is empty");
        }
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

/// The JSON object in `path` (`-`: stdin); `what` names it in errors
/// ("a target definition").
pub(super) fn read_json_object(path: &std::path::Path, what: &str) -> Result<Map<String, Value>> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        ("stdin".to_string(), s)
    } else {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        (path.display().to_string(), text)
    };
    // serde_json's message gives the position only, never the text (which may hold a secret).
    match serde_json::from_str(&text).with_context(|| format!("{name} is not JSON"))? {
        Value::Object(m) => Ok(m),
        _ => bail!("{name}: {what} is a JSON object"),
    }
}

/// The fields `--set` may name in a definition.
pub(super) struct Fields<'a> {
    /// Every field of the definition.
    pub known: Vec<&'a str>,
    /// Fields (or dotted prefixes, `pull.auth`) that hold secrets: never from arguments.
    pub secrets: Vec<&'a str>,
    /// What the definition may hold, for error messages.
    pub help: String,
}

/// Applies one `--set FIELD=VALUE` (or `FIELD.KEY.…=VALUE`): VALUE as JSON when it
/// parses, else a string.
pub(super) fn apply_set(body: &mut Map<String, Value>, fields: &Fields, item: &str) -> Result<()> {
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
    if fields
        .secrets
        .iter()
        .any(|s| path == *s || path.starts_with(&format!("{s}.")) || field == *s)
    {
        bail!(
            "--set {field}: secrets are never taken from arguments (they show in `ps` and the \
             shell history); use --secret-env VAR, --secret-stdin or --file"
        );
    }
    if !fields.known.contains(&field) {
        bail!("--set {field}: no such field; {}", fields.help);
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
