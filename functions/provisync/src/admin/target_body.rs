//! `provisync target add` and `target update`: the definition (or the merge patch) sent
//! to the hub, from flags, a file and a secret read from the environment or stdin (never
//! from arguments).

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use provisync_core::target::{COMMON_FIELDS, KIND_FIELDS, TargetConfig};
use serde_json::{Map, Value, json};

use super::edit::{Fields, apply_set, read_json_object, read_secret};

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Target id (letters, digits, `-`, `_`).
    pub(super) id: String,
    /// Kind of target system: scim, crowd, cognito, okta, entra, salesforce, webhook
    /// (default: the `kind` of --file, else scim; `update`: the stored kind).
    #[arg(long)]
    kind: Option<String>,
    /// The whole definition from a JSON file (`-`: stdin), e.g. what `target show` printed:
    /// secrets shown as "***" keep the stored ones. With `update`: a JSON merge patch
    /// (RFC 7396). The other options override its fields.
    #[arg(long, value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    /// Base URL of the target's API (scim, crowd, okta; https; http only where
    /// PROVISYNC_ALLOW_PRIVATE_TARGETS allows).
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
    /// password; crowd: password; okta: token; entra, salesforce: client_secret; webhook:
    /// secret). Without it, replacing an existing target keeps its stored secret.
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
    /// At most this many calls to the target per second (its documented rate limit).
    #[arg(long)]
    max_rate: Option<f64>,
    /// At most this many calls to the target at once (default 32; past 4 the hub adds
    /// calls only while the target's latency shows no queue).
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// A JSON file with the attribute mapping rules (an array).
    #[arg(long)]
    mapping_file: Option<std::path::PathBuf>,
    /// Save the target disabled.
    #[arg(long, conflicts_with = "enabled")]
    disabled: bool,
    /// Save the target enabled (`update` of a disabled target).
    #[arg(long)]
    enabled: bool,
}

/// The `auth` of a scim target from --bearer / --basic / the secret; `None` when none of
/// them is given. In a merge patch the other form is removed (`null`).
fn auth_of(args: &AddArgs, secret: Option<String>, patch: bool) -> Result<Option<Value>> {
    let (bearer, basic) = match (&args.bearer, &args.basic, secret) {
        (Some(_), _, Some(_)) => bail!(
            "give the bearer token with --bearer or with --secret-env/--secret-stdin, not both"
        ),
        (Some(t), None, None) => (json!(t), None),
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
            (
                Value::Null,
                Some(json!({"username": user, "password": pass})),
            )
        }
        (None, None, Some(t)) => (json!(t), None),
        (None, None, None) => return Ok(None),
        (Some(_), Some(_), _) => bail!("--bearer and --basic exclude each other"),
    };
    Ok(Some(match (basic, patch) {
        (Some(basic), true) => json!({"basic": basic, "bearer": null}),
        (Some(basic), false) => json!({"basic": basic}),
        (None, true) => json!({"bearer": bearer, "basic": null}),
        (None, false) => json!({"bearer": bearer}),
    }))
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

/// `PUT /admin/targets/{id}`: the whole definition.
pub(super) fn target_body(args: &AddArgs) -> Result<Value> {
    build(args, None)
}

/// `PATCH /admin/targets/{id}`: a merge patch on a target of kind `stored_kind`.
pub(super) fn target_patch(args: &AddArgs, stored_kind: &str) -> Result<Value> {
    build(args, Some(stored_kind))
}

/// The definition (`stored_kind` `None`) or the merge patch (on a target of that kind).
fn build(args: &AddArgs, stored_kind: Option<&str>) -> Result<Value> {
    let patch = stored_kind.is_some();
    let from_stdin = args.file.as_deref().is_some_and(|f| f.as_os_str() == "-");
    if from_stdin && args.secret_stdin {
        bail!(
            "--file - and --secret-stdin both read stdin: put the secret in the definition, or use --secret-env"
        );
    }
    let what = if patch {
        "a merge patch"
    } else {
        "a target definition"
    };
    let mut body = match &args.file {
        Some(f) => read_json_object(f, what)?,
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
    let kind = match (&args.kind, body.get("kind"), stored_kind) {
        (Some(k), _, Some(s)) | (None, Some(Value::String(k)), Some(s)) if k != s => {
            bail!(
                "target {} is a {s} target: its kind cannot change with `update` (use `add`)",
                args.id
            )
        }
        (_, _, Some(s)) => s.to_string(),
        (Some(k), Some(Value::String(f)), None) if k != f => {
            bail!("--kind {k}, but the definition's kind is {f}")
        }
        (Some(k), _, None) => k.clone(),
        (None, Some(Value::String(f)), None) => f.clone(),
        (None, Some(_), None) => bail!("the definition's `kind` must be a string"),
        (None, None, None) => "scim".to_string(),
    };
    let fields = kind_fields(&kind)?;
    if !patch {
        body.insert("kind".into(), json!(kind));
    }
    if let Some(u) = &args.base_url {
        if !fields.contains(&"base_url") {
            bail!(
                "--base-url: {kind} targets have no base_url; {} (set them with --set FIELD=VALUE)",
                fields_help(&kind, fields)
            );
        }
        body.insert("base_url".into(), json!(u));
    }
    let rules = Fields {
        known: fields.iter().chain(COMMON_FIELDS).copied().collect(),
        secrets: TargetConfig::secret_field(&kind).into_iter().collect(),
        help: fields_help(&kind, fields),
    };
    for item in &args.set {
        apply_set(&mut body, &rules, item)?;
    }
    let secret = read_secret(args.secret_env.as_deref(), args.secret_stdin)?;
    if kind == "scim" {
        if let Some(auth) = auth_of(args, secret, patch)? {
            body.insert("auth".into(), auth);
        }
    } else {
        if args.bearer.is_some() || args.basic.is_some() {
            bail!(
                "--bearer and --basic are for scim targets; {}",
                match TargetConfig::secret_field(&kind) {
                    Some(f) => format!(
                        "the {f} of {kind} targets comes from --secret-env VAR or --secret-stdin"
                    ),
                    None => format!("{kind} targets store no secret"),
                }
            );
        }
        // Without a secret, the hub keeps the stored one (and refuses a new target).
        match (TargetConfig::secret_field(&kind), secret) {
            (Some(f), Some(v)) => {
                body.insert(f.into(), json!(v));
            }
            (None, Some(_)) => bail!(
                "{kind} targets store no secret (cognito uses the hub's own AWS credentials): drop --secret-env/--secret-stdin"
            ),
            _ => {}
        }
    }
    for (field, value) in [
        ("scope_filter", &args.scope),
        ("mode", &args.mode),
        ("out_of_scope", &args.out_of_scope),
        ("update_style", &args.update_style),
        ("matching_attribute", &args.matching_attribute),
    ] {
        if let Some(v) = value {
            body.insert(field.into(), json!(v));
        }
    }
    if let Some(ops) = &args.operations {
        body.insert("operations".into(), json!(ops));
    }
    if let Some(r) = args.max_rate {
        body.insert("max_rate".into(), json!(r));
    }
    if let Some(m) = args.max_in_flight {
        body.insert("max_in_flight".into(), json!(m));
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
    if args.disabled || args.enabled {
        body.insert("enabled".into(), json!(args.enabled));
    }
    let mut unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !rules.known.contains(k))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        bail!(
            "unknown field{} for kind {kind}: {}; {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", "),
            rules.help
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
        // No credentials: the hub keeps the stored ones (and refuses a new target).
        let b = add(&["crm", "--base-url", "https://x"]).unwrap();
        assert!(b.get("auth").is_none(), "{b}");
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
            let config: TargetConfig =
                serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(config.kind_name(), kind);
            let shown = serde_json::to_value(config.redacted()).unwrap();
            assert!(
                !shown.to_string().contains("s3cret-value"),
                "{kind}: {shown}"
            );
            match TargetConfig::secret_field(kind) {
                Some("auth") => assert_eq!(shown["auth"]["bearer"], "***"),
                Some(f) => assert_eq!(shown[f], "***", "{kind}"),
                None => assert_eq!(serde_json::to_value(&config).unwrap(), shown, "{kind}"),
            }
        }
    }

    fn patch(args: &[&str], kind: &str) -> Result<Value> {
        let mut v = vec!["x"];
        v.extend_from_slice(args);
        let t = T::try_parse_from(v).map_err(|e| anyhow!(e.to_string()))?;
        target_patch(&t.a, kind)
    }

    /// `target update`: only what the flags name, with `null` removing the other form of
    /// a scim target's credentials; the kind cannot change.
    #[test]
    fn merge_patches() {
        assert_eq!(
            patch(
                &["crm", "--mode", "scheduled", "--set", "orphans=report"],
                "scim"
            )
            .unwrap(),
            json!({"orphans": "report", "mode": "scheduled"})
        );
        assert_eq!(
            patch(&["crm", "--basic", "svc:pw"], "scim").unwrap(),
            json!({"auth": {"basic": {"username": "svc", "password": "pw"}, "bearer": null}})
        );
        // SAFETY: single-threaded test; the variable is unique to it.
        unsafe { std::env::set_var("PSY_TEST_SECRET_5", "new-token") };
        assert_eq!(
            patch(
                &["o", "--token-env", "PSY_TEST_SECRET_5", "--enabled"],
                "okta"
            )
            .unwrap(),
            json!({"token": "new-token", "enabled": true})
        );
        let e = patch(&["o", "--kind", "scim"], "okta")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kind cannot change"), "{e}");
        let e = patch(&["o", "--set", "token=x"], "okta")
            .unwrap_err()
            .to_string();
        assert!(e.contains("never taken from arguments"), "{e}");
        let e = patch(&["o", "--set", "tenant_id=x"], "okta")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such field"), "{e}");
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
        // Without a secret the hub keeps the stored one (a new target is refused there).
        let b = add(&with(&[])).unwrap();
        assert!(b.get("token").is_none(), "{b}");
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
