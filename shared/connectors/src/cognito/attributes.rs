//! The Cognito attributes of a SCIM user and back (the mapping the parent module's
//! documentation lists).

use std::collections::BTreeMap;

use aws_sdk_cognitoidentityprovider::types::{AttributeType, UserType};
use serde_json::Value;

use provisync_core::connector::{ConnectorError, refused, str_at, typed_value};

use super::STANDARD_ATTRIBUTES;

pub(super) fn attribute_list(
    attrs: &BTreeMap<String, String>,
) -> Result<Vec<AttributeType>, ConnectorError> {
    attrs
        .iter()
        .map(|(k, v)| {
            AttributeType::builder()
                .name(k)
                .value(v)
                .build()
                .map_err(|e| refused(format!("attribute {k}: {e}")))
        })
        .collect()
}

pub(super) fn attribute_of<'a>(attrs: &'a [AttributeType], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.name() == name)
        .and_then(AttributeType::value)
}

/// The user name a payload maps to (`userName`).
pub(super) fn user_name(user: &Value) -> Result<&str, ConnectorError> {
    str_at(user, &["userName"]).ok_or_else(|| refused("the user has no userName for Cognito"))
}

/// A phone number in E.164 (`+` and 4 to 15 digits) once spaces, dots, dashes and
/// parentheses are removed; `None` for anything else (Cognito accepts only E.164).
pub fn e164(phone: &str) -> Option<String> {
    let cleaned: String = phone
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = cleaned.strip_prefix('+')?;
    (digits.len() >= 4 && digits.len() <= 15 && digits.chars().all(|c| c.is_ascii_digit()))
        .then_some(cleaned)
}

pub(super) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The Cognito attributes of a mapped SCIM payload (without `email_verified`, which the
/// target's setting decides).
pub fn cognito_attributes(user: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            out.insert(k.to_string(), v.to_string());
        }
    };
    put("email", typed_value(user, "emails", None));
    put("given_name", str_at(user, &["name", "givenName"]));
    put("family_name", str_at(user, &["name", "familyName"]));
    put("middle_name", str_at(user, &["name", "middleName"]));
    let given = str_at(user, &["name", "givenName"]);
    let family = str_at(user, &["name", "familyName"]);
    let joined = match (given, family) {
        (Some(g), Some(f)) => Some(format!("{g} {f}")),
        (Some(x), None) | (None, Some(x)) => Some(x.to_string()),
        (None, None) => None,
    };
    let name = str_at(user, &["displayName"])
        .or_else(|| str_at(user, &["name", "formatted"]))
        .map(str::to_string)
        .or(joined);
    put("name", name.as_deref());
    put("nickname", str_at(user, &["nickName"]));
    put("locale", str_at(user, &["locale"]));
    put("zoneinfo", str_at(user, &["timezone"]));
    put("profile", str_at(user, &["profileUrl"]));
    let phone = typed_value(user, "phoneNumbers", None).and_then(e164);
    put("phone_number", phone.as_deref());
    if let Some(extra) = user.get("attributes").and_then(Value::as_object) {
        for (k, v) in extra {
            let Some(v) = scalar(v) else { continue };
            let key = k.trim();
            if key.is_empty() {
                continue;
            }
            let name = if STANDARD_ATTRIBUTES.contains(&key) || key.starts_with("custom:") {
                key.to_string()
            } else {
                format!("custom:{key}")
            };
            out.insert(name, v);
        }
    }
    out
}

/// Cognito attributes read back as the SCIM attributes [`cognito_attributes`] takes them
/// from (the inverse of that function on what it writes): `custom:x` and standard
/// attributes it does not fill from SCIM go to `attributes`. `sub` and `email_verified`
/// are left out (the id, and a setting of the target).
pub fn scim_of_attributes(attrs: &BTreeMap<String, String>) -> Value {
    let mut u = serde_json::Map::new();
    let text = |k: &str| {
        attrs
            .get(k)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(|v| Value::String(v.to_string()))
    };
    let mut name = serde_json::Map::new();
    for (c, s) in [
        ("given_name", "givenName"),
        ("family_name", "familyName"),
        ("middle_name", "middleName"),
    ] {
        if let Some(v) = text(c) {
            name.insert(s.into(), v);
        }
    }
    if !name.is_empty() {
        u.insert("name".into(), Value::Object(name));
    }
    for (c, s) in [
        ("name", "displayName"),
        ("nickname", "nickName"),
        ("locale", "locale"),
        ("zoneinfo", "timezone"),
        ("profile", "profileUrl"),
    ] {
        if let Some(v) = text(c) {
            u.insert(s.into(), v);
        }
    }
    if let Some(v) = text("email") {
        u.insert(
            "emails".into(),
            serde_json::json!([{"value": v, "primary": true}]),
        );
    }
    if let Some(v) = text("phone_number") {
        u.insert(
            "phoneNumbers".into(),
            serde_json::json!([{"value": v, "primary": true}]),
        );
    }
    const FROM_SCIM: [&str; 11] = [
        "sub",
        "email",
        "email_verified",
        "given_name",
        "family_name",
        "middle_name",
        "name",
        "nickname",
        "locale",
        "zoneinfo",
        "profile",
    ];
    let mut extra = serde_json::Map::new();
    for (k, v) in attrs {
        if FROM_SCIM.contains(&k.as_str()) || k == "phone_number" {
            continue;
        }
        let key = k.strip_prefix("custom:").unwrap_or(k);
        extra.insert(key.to_string(), Value::String(v.clone()));
    }
    if !extra.is_empty() {
        u.insert("attributes".into(), Value::Object(extra));
    }
    Value::Object(u)
}

/// A Cognito user as the SCIM user reconcile compares; `None` without a `sub`.
pub(super) fn scim_of_user(user: &UserType) -> Option<Value> {
    let attrs: BTreeMap<String, String> = user
        .attributes()
        .iter()
        .filter_map(|a| a.value().map(|v| (a.name().to_string(), v.to_string())))
        .collect();
    let sub = attrs.get("sub")?.clone();
    let mut u = scim_of_attributes(&attrs);
    // Pools that sign in with an address name their users by `sub`: the address is what
    // the hub sent as `userName`.
    let user_name = match user.username() {
        Some(n) if n != sub => Some(n.to_string()),
        _ => attrs
            .get("email")
            .or_else(|| attrs.get("phone_number"))
            .cloned(),
    };
    if let Some(o) = u.as_object_mut() {
        o.insert("id".into(), Value::String(sub));
        if let Some(n) = user_name {
            o.insert("userName".into(), Value::String(n));
        }
        o.insert("active".into(), Value::Bool(user.enabled()));
    }
    Some(u)
}
