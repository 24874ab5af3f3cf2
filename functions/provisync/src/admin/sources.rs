//! `provisync source …`: webhook and pull sources on the running hub.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use provisync_core::source::SOURCE_FIELDS;
use serde_json::{Map, Value, json};

use super::edit::{Fields, apply_set, read_json_object, read_secret};
use super::{Remote, admin_client, s, short, table};

#[derive(Subcommand, Debug)]
pub enum SourceCommand {
    /// Create or replace a source (a site that sends signed webhooks, or that the hub
    /// reads); secrets left out, or "***" as `show` prints them, keep the stored ones.
    Add(Box<SourceArgs>),
    /// Change some fields of a source (PATCH with a JSON merge patch): the options given,
    /// or --file PATCH.json; the rest, secrets included, stays as stored.
    Update(Box<SourceArgs>),
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
    /// The whole definition from a JSON file (`-`: stdin), e.g. what `source show`
    /// printed; with `update`, a JSON merge patch (RFC 7396). Options override its fields.
    #[arg(long, value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    /// Read the webhook secret (`whsec_…`; several, space-separated, for rotation) from
    /// this environment variable; it replaces the stored secrets.
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
    /// Let the source adopt hub users and groups it did not create, found by userName /
    /// displayName (off: such a collision is refused). Adopted ones are updated within the
    /// allowed fields and never deleted by this source (its delete only unlinks).
    #[arg(long)]
    adopt_existing: bool,
    /// Refuse webhooks whose occurred_at is older than this many seconds (300 to 604800;
    /// default 259200, three days).
    #[arg(long)]
    max_event_age_secs: Option<u64>,
    /// A field of the source, `FIELD=VALUE` (repeatable; `pull.base_url=…`,
    /// `user_sync=false`): VALUE as JSON when it parses, else a string. Not for secrets.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
    /// Pull sources: read the bearer token of the pull URL (`pull.auth`) from this
    /// environment variable (with `--set pull.kind=scim|jsonapi --set pull.base_url=…`).
    #[arg(long, value_name = "VAR")]
    pull_bearer_env: Option<String>,
    /// Save the source disabled.
    #[arg(long, conflicts_with = "enabled")]
    disabled: bool,
    /// Save the source enabled (`update` of a disabled source).
    #[arg(long)]
    enabled: bool,
}

/// The definition (`PUT`) or the merge patch (`PATCH`) the options make.
fn source_body(args: &SourceArgs, patch: bool) -> Result<Value> {
    if args.file.as_deref().is_some_and(|f| f.as_os_str() == "-") && args.secret_stdin {
        bail!("--file - and --secret-stdin both read stdin: use --secret-env");
    }
    let mut body = match &args.file {
        Some(f) => read_json_object(
            f,
            if patch {
                "a merge patch"
            } else {
                "a source definition"
            },
        )?,
        None => Map::new(),
    };
    match body.get("id") {
        Some(Value::String(id)) if *id != args.id => {
            bail!(
                "the definition's id {id:?} is not the source id {:?}",
                args.id
            )
        }
        _ => {}
    }
    let rules = Fields {
        known: SOURCE_FIELDS.to_vec(),
        secrets: vec!["secret", "secrets", "pull.auth"],
        help: format!("sources have: {}", SOURCE_FIELDS.join(", ")),
    };
    for item in &args.set {
        apply_set(&mut body, &rules, item)?;
    }
    if let Some(secret) = read_secret(args.secret_env.as_deref(), args.secret_stdin)? {
        let secrets: Vec<&str> = secret.split_whitespace().collect();
        body.remove("secret");
        body.insert("secrets".into(), json!(secrets));
    }
    if let Some(token) = read_secret(args.pull_bearer_env.as_deref(), false)? {
        let pull = body
            .entry("pull")
            .or_insert_with(|| Value::Object(Map::new()));
        match pull.as_object_mut() {
            Some(pull) => {
                pull.insert("auth".into(), json!({ "bearer": token }));
            }
            None => bail!("`pull` must be an object to take --pull-bearer-env"),
        }
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
    if args.adopt_existing {
        body.insert("adopt_existing".into(), json!(true));
    }
    if let Some(age) = args.max_event_age_secs {
        body.insert("max_event_age_secs".into(), json!(age));
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
        bail!("unknown field(s): {}; {}", unknown.join(", "), rules.help);
    }
    Ok(Value::Object(body))
}

pub async fn source(remote: &Remote, cmd: SourceCommand) -> Result<()> {
    let admin = admin_client(remote)?;
    match cmd {
        SourceCommand::Update(args) => {
            let body = source_body(&args, true)?;
            let v = admin.patch_source(&args.id, &body).await?;
            println!("source {} updated", s(&v, "id"));
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        SourceCommand::Add(args) => {
            let body = source_body(&args, false)?;
            let v = admin.put_source(&args.id, &body).await?;
            println!(
                "source {} saved: webhooks go to POST /webhooks/{}",
                s(&v, "id"),
                s(&v, "id")
            );
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        SourceCommand::List => {
            let list = admin.sources().await?.sources;
            if list.is_empty() {
                println!("no sources (add one with `provisync source add`)");
                return Ok(());
            }
            let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|x| {
                    vec![
                        x.id.clone(),
                        x.scheme.clone().unwrap_or_default(),
                        x.direction.clone().unwrap_or_default(),
                        yes_no(x.enabled),
                        yes_no(x.user_sync),
                        yes_no(x.adopt_existing),
                        short(&x.entity_types.join(","), 40),
                        short(&x.config_prefixes.join(","), 40),
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
                    "ADOPTS",
                    "ENTITY TYPES",
                    "CONFIG PREFIXES",
                ],
                &rows,
            );
        }
        SourceCommand::Show { id } => {
            let v = admin.source(&id).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        SourceCommand::Remove { id } => {
            admin.delete_source(&id).await?;
            println!("source {id} removed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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
            "--adopt-existing",
            "--max-event-age-secs",
            "86400",
            "--entity-types",
            "node,taxonomy_term",
            "--config-prefixes",
            "shared.",
        ])
        .unwrap();
        let b = source_body(&args.a, false).unwrap();
        assert_eq!(
            b,
            json!({"secrets": ["whsec_a", "whsec_b"], "direction": "bidirectional",
                "user_sync": true, "adopt_existing": true, "max_event_age_secs": 86400,
                "entity_types": ["node", "taxonomy_term"], "config_prefixes": ["shared."]})
        );
        let missing = S::try_parse_from(["x", "a", "--secret-env", "PSY_TEST_NOT_SET_X"]).unwrap();
        assert!(source_body(&missing.a, false).is_err());
        let upd = S::try_parse_from([
            "x",
            "a",
            "--set",
            "user_sync=false",
            "--set",
            "pull.base_url=https://idp.example/scim/v2",
        ])
        .unwrap();
        assert_eq!(
            source_body(&upd.a, true).unwrap(),
            json!({"user_sync": false, "pull": {"base_url": "https://idp.example/scim/v2"}})
        );
        // #20 item 6: a pull source with its auth, from the CLI alone.
        // SAFETY: a variable of this test alone.
        unsafe { std::env::set_var("PSY_TEST_PULL_TOKEN_Q", "tok") };
        let pull = S::try_parse_from([
            "x",
            "idp",
            "--direction",
            "pull",
            "--user-sync",
            "--set",
            "pull.kind=scim",
            "--set",
            "pull.base_url=https://idp.example/scim/v2",
            "--pull-bearer-env",
            "PSY_TEST_PULL_TOKEN_Q",
        ])
        .unwrap();
        assert_eq!(
            source_body(&pull.a, false).unwrap(),
            json!({"pull": {"kind": "scim", "base_url": "https://idp.example/scim/v2",
                "auth": {"bearer": "tok"}}, "direction": "pull", "user_sync": true})
        );
        let secret = S::try_parse_from(["x", "a", "--set", "pull.auth.bearer=t"]).unwrap();
        let e = source_body(&secret.a, true).unwrap_err().to_string();
        assert!(e.contains("never taken from arguments"), "{e}");
    }
}
