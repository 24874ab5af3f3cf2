//! `provisync target add`: the definition sent to the hub, from flags, a file and a
//! secret read from the environment or stdin (never from arguments).

use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use provisync_core::target::{COMMON_FIELDS, KIND_FIELDS};
use serde_json::{Map, Value, json};

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Target id (letters, digits, `-`, `_`).
    pub(super) id: String,
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

pub(super) fn target_body(args: &AddArgs) -> Result<Value> {
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
}
