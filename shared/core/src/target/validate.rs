//! Checking a target definition before it is stored.

use provisync_scim::schema::AttrPath;
use provisync_scim::{ResourceKind, SchemaRegistry};

use super::*;
use crate::validation::{ValidationError, invalid};

impl TargetConfig {
    /// Checks a definition; the error says what is wrong (shown to the operator, so it
    /// never quotes a secret).
    pub fn validate(&self, registry: &SchemaRegistry) -> Result<(), ValidationError> {
        check_target_id(&self.id)?;
        if let Some(r) = self.max_rate
            && !(r.is_finite() && (0.001..=10_000.0).contains(&r))
        {
            return Err(invalid(
                "max_rate",
                "max_rate must be a number of calls per second from 0.001 to 10000",
            ));
        }
        if let Some(m) = self.max_in_flight
            && !(1..=1024).contains(&m)
        {
            return Err(invalid(
                "max_in_flight",
                "max_in_flight must be from 1 to 1024",
            ));
        }
        match &self.kind {
            TargetKind::Scim(scim) => {
                check_target_url(&scim.base_url)?;
                check_auth(&scim.auth)?;
                if AttrPath::parse(&scim.matching_attribute).is_none() {
                    return Err(invalid(
                        "matching_attribute",
                        format!(
                            "matching_attribute {:?} is not an attribute path",
                            scim.matching_attribute
                        ),
                    ));
                }
            }
            TargetKind::Crowd(crowd) => {
                check_target_url(&crowd.base_url)?;
                // The application name is the user-id of HTTP Basic (RFC 7617 §2).
                let app = &crowd.application;
                if app.trim().is_empty()
                    || app.contains(':')
                    || app.chars().any(char::is_control)
                    || app.len() > 255
                {
                    return Err(invalid(
                        "application",
                        "application must be a Crowd application name: 1 to 255 characters, without ':' or control characters",
                    ));
                }
                if crowd.password.is_empty() {
                    return Err(invalid(
                        "password",
                        "password (the Crowd application's password) is required",
                    ));
                }
                if crowd.password.len() > MAX_SECRET_LEN
                    || crowd.password.chars().any(char::is_control)
                {
                    return Err(invalid(
                        "password",
                        "password must be at most 8 KiB, without control characters",
                    ));
                }
            }
            TargetKind::Entra(entra) => {
                let t = &entra.tenant_id;
                if t.is_empty()
                    || t.len() > 255
                    || !t
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                {
                    return Err(invalid(
                        "tenant_id",
                        "tenant_id must be the directory (tenant) id or a verified domain of the tenant",
                    ));
                }
                check_oauth_client(&entra.client_id, &entra.client_secret)?;
                check_optional_url("graph_url", entra.graph_url.as_deref())?;
                check_optional_url("login_url", entra.login_url.as_deref())?;
            }
            TargetKind::Salesforce(sf) => {
                check_optional_url("instance_url", Some(&sf.instance_url))?;
                check_optional_url("login_url", sf.login_url.as_deref())?;
                check_oauth_client(&sf.client_id, &sf.client_secret)?;
                let v = sf.api_version.strip_prefix('v').unwrap_or("");
                let ok_version = v.split_once('.').is_some_and(|(major, minor)| {
                    !major.is_empty()
                        && !minor.is_empty()
                        && major.len() <= 4
                        && minor.len() <= 2
                        && major
                            .chars()
                            .chain(minor.chars())
                            .all(|c| c.is_ascii_digit())
                });
                if !ok_version {
                    return Err(invalid(
                        "api_version",
                        "api_version must look like \"v60.0\"",
                    ));
                }
                for (field, value) in &sf.defaults {
                    let name_ok = field.len() <= 80
                        && field
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_alphabetic())
                        && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !name_ok {
                        return Err(invalid(
                            "defaults",
                            format!("defaults: {field:?} is not a Salesforce field name"),
                        ));
                    }
                    if value.is_object() || value.is_array() {
                        return Err(invalid(
                            "defaults",
                            format!("defaults.{field} must be a string, number, boolean or null"),
                        ));
                    }
                }
            }
            TargetKind::Webhook(w) => {
                check_target_url(&w.url).map_err(|e| e.for_field("url"))?;
                crate::webhook_sig::decode_standard_secret(&w.secret).map_err(|e| {
                    invalid(
                        "secret",
                        format!("secret is not a Standard Webhooks secret (whsec_ + base64): {e}"),
                    )
                })?;
                for (name, list) in [
                    ("entity_types", &w.entity_types),
                    ("config_prefixes", &w.config_prefixes),
                ] {
                    if list.len() > 200
                        || list.iter().any(|v| {
                            v.is_empty() || v.len() > 256 || v.chars().any(char::is_control)
                        })
                    {
                        return Err(invalid(
                            name,
                            format!("{name}: at most 200 entries of 1 to 256 characters"),
                        ));
                    }
                }
            }
            TargetKind::Cognito(cognito) => check_cognito(cognito)?,
            TargetKind::Okta(okta) => {
                check_target_url(&okta.base_url)?;
                let t = &okta.token;
                if t.trim().is_empty() {
                    return Err(invalid("token", "token (an Okta API token) is required"));
                }
                if t.len() > MAX_SECRET_LEN
                    || t.chars().any(|c| c.is_control() || c.is_whitespace())
                {
                    return Err(invalid(
                        "token",
                        "token must be one Okta API token, without spaces or control characters",
                    ));
                }
            }
        }
        if self.operations.is_empty() {
            return Err(invalid(
                "operations",
                "operations must name at least one operation",
            ));
        }
        let users = registry.view(ResourceKind::User);
        if let Some(g) = &self.deprovision_guard {
            g.validate()?;
        }
        if let Some(days) = self.deferred_delete_days()
            && !(1..=super::MAX_DEFERRED_DELETE_DAYS).contains(&days)
        {
            return Err(invalid(
                "delete_mode.deactivate_then_delete_after_days",
                format!(
                    "delete_mode.deactivate_then_delete_after_days must be 1 to {}",
                    super::MAX_DEFERRED_DELETE_DAYS
                ),
            ));
        }
        if let Some(f) = &self.scope_filter {
            let filter = provisync_scim::filter::parse(f)
                .map_err(|e| invalid("scope_filter", format!("scope_filter: {}", e.detail)))?;
            filter
                .validate(&users)
                .map_err(|e| invalid("scope_filter", format!("scope_filter: {}", e.detail)))?;
        }
        if self.mapping.len() > MAX_MAPPINGS {
            return Err(invalid(
                "mapping",
                format!("at most {MAX_MAPPINGS} mapping rules"),
            ));
        }
        for (i, m) in self.mapping.iter().enumerate() {
            let kind = m.applies_to.kind();
            if AttrPath::parse(&m.target).is_none() {
                return Err(invalid(
                    "mapping",
                    format!(
                        "mapping[{i}].target {:?} is not an attribute path",
                        m.target
                    ),
                ));
            }
            if let Some(src) = &m.source {
                let path = AttrPath::parse(src).ok_or_else(|| {
                    invalid(
                        "mapping",
                        format!("mapping[{i}].source {src:?} is not an attribute path"),
                    )
                })?;
                if registry.view(kind).resolve(&path).is_none() {
                    // A group attribute named by a user rule (or the reverse): say how.
                    let other = match m.applies_to {
                        AppliesTo::Users => AppliesTo::Groups,
                        AppliesTo::Groups => AppliesTo::Users,
                    };
                    let hint = if registry.view(other.kind()).resolve(&path).is_some() {
                        format!(
                            " (it is a {} attribute: give the rule \"applies_to\": \"{}\")",
                            other.kind().as_str(),
                            other.as_str()
                        )
                    } else {
                        String::new()
                    };
                    return Err(invalid(
                        "mapping",
                        format!(
                            "mapping[{i}].source {src:?} is not a {} attribute of this hub{hint}",
                            kind.as_str()
                        ),
                    ));
                }
            }
            let sources = usize::from(m.source.is_some()) + usize::from(m.value.is_some());
            if m.drop && (sources > 0 || m.default.is_some()) {
                return Err(invalid(
                    "mapping",
                    format!(
                        "mapping[{i}]: `drop` cannot be combined with source, value or default"
                    ),
                ));
            }
            if !m.drop && sources != 1 {
                return Err(invalid(
                    "mapping",
                    format!("mapping[{i}] needs exactly one of `source`, `value` or `drop`"),
                ));
            }
            if m.value.is_some() && m.default.is_some() {
                return Err(invalid(
                    "mapping",
                    format!("mapping[{i}]: `default` only applies to a `source`"),
                ));
            }
        }
        for (hub, target) in &self.group_mapping {
            if hub.trim().is_empty() || target.trim().is_empty() {
                return Err(invalid(
                    "group_mapping",
                    "group_mapping names must not be empty",
                ));
            }
        }
        Ok(())
    }
}

/// Target ids: 1 to 64 of `A-Z a-z 0-9 - _`, starting with a letter or digit (they appear
/// in URLs, keys and audit entries).
pub fn check_target_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > MAX_TARGET_ID_LEN {
        return Err(invalid(
            "id",
            format!("target id must be 1 to {MAX_TARGET_ID_LEN} characters"),
        ));
    }
    let ok_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let ok_start = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok_chars || !ok_start {
        return Err(invalid(
            "id",
            "target id may contain only letters, digits, '-' and '_', and starts with a letter or digit",
        ));
    }
    Ok(())
}

/// A target base URL: `https://…`, or `http://…` on loopback only (127.0.0.0/8, ::1,
/// localhost). No credentials, query or fragment in the URL (credentials go in `auth`).
pub(crate) fn check_target_url(raw: &str) -> Result<(), ValidationError> {
    crate::net::check_target_url(raw)
        .map(|_| ())
        .map_err(|e| invalid("base_url", format!("base_url: {e}")))
}

/// A Cognito target: a pool id as AWS writes them (`{region}_{id}`, at most 55
/// characters), a region name, an optional loopback-or-https endpoint.
fn check_cognito(c: &CognitoTarget) -> Result<(), ValidationError> {
    let pool = &c.user_pool_id;
    let (prefix, rest) = pool.split_once('_').unwrap_or_default();
    if pool.len() > 55
        || !is_region(prefix)
        || rest.is_empty()
        || !rest.chars().all(|ch| ch.is_ascii_alphanumeric())
    {
        return Err(invalid(
            "user_pool_id",
            "user_pool_id must be a Cognito user pool id such as \"us-east-1_AbCdEfGhI\"",
        ));
    }
    if let Some(r) = &c.region {
        if !is_region(r) {
            return Err(invalid(
                "region",
                format!("region {r:?} is not an AWS region name"),
            ));
        }
        if r != prefix {
            return Err(invalid(
                "region",
                format!("region {r:?} does not match the user pool's region {prefix:?}"),
            ));
        }
    }
    if let Some(e) = &c.endpoint_url {
        check_target_url(e).map_err(|m| m.for_field("endpoint_url"))?;
    }
    Ok(())
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`: letters in dashed parts,
/// ending in a number.
fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    r.len() <= 32
        && parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

pub(crate) fn check_auth(auth: &HttpAuth) -> Result<(), ValidationError> {
    let bad_chars = |s: &str| s.chars().any(|c| c.is_control());
    match auth {
        HttpAuth::Bearer(t) => {
            if t.trim().is_empty() {
                return Err(invalid("auth.bearer", "auth.bearer must not be empty"));
            }
            if t.len() > MAX_SECRET_LEN || bad_chars(t) || t.contains(' ') {
                return Err(invalid(
                    "auth.bearer",
                    "auth.bearer must be one token without spaces or control characters",
                ));
            }
        }
        HttpAuth::Basic { username, password } => {
            if username.is_empty() || username.contains(':') || bad_chars(username) {
                return Err(invalid(
                    "auth.basic.username",
                    "auth.basic.username must be non-empty, without ':' or control characters",
                ));
            }
            if username.len() > MAX_SECRET_LEN || password.len() > MAX_SECRET_LEN {
                return Err(invalid("auth.basic", "auth.basic values are too long"));
            }
            if bad_chars(password) {
                return Err(invalid(
                    "auth.basic.password",
                    "auth.basic.password must not contain control characters",
                ));
            }
        }
    }
    Ok(())
}

/// An OAuth client of a target: its id and secret (never quoted in the error).
fn check_oauth_client(client_id: &str, secret: &str) -> Result<(), ValidationError> {
    if client_id.trim().is_empty()
        || client_id.len() > 512
        || client_id.chars().any(char::is_control)
    {
        return Err(invalid(
            "client_id",
            "client_id must be 1 to 512 characters, without control characters",
        ));
    }
    if secret.is_empty() {
        return Err(invalid("client_secret", "client_secret is required"));
    }
    if secret.len() > MAX_SECRET_LEN || secret.chars().any(char::is_control) {
        return Err(invalid(
            "client_secret",
            "client_secret must be at most 8 KiB, without control characters",
        ));
    }
    Ok(())
}

/// An optional root URL of a target API, named by its field.
fn check_optional_url(field: &str, url: Option<&str>) -> Result<(), ValidationError> {
    match url {
        None => Ok(()),
        Some(u) => crate::net::check_target_url(u)
            .map(|_| ())
            .map_err(|e| invalid(field, format!("{field}: {e}"))),
    }
}
