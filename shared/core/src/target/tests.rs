use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::crypto::SecretBox;
use crate::store::Store;
use crate::store::embedded::EmbeddedStore;
use provisync_scim::SchemaRegistry;
use serde_json::json;

fn scim(v: Value) -> TargetConfig {
    let mut t: TargetConfig = serde_json::from_value(v).unwrap();
    if t.id.is_empty() {
        t.id = "crm".into();
    }
    t
}

fn valid() -> TargetConfig {
    scim(json!({
        "kind": "scim", "base_url": "https://scim.example.com/v2",
        "auth": {"bearer": "tok-123"}
    }))
}

fn reg() -> SchemaRegistry {
    SchemaRegistry::builtin()
}

fn err(t: &TargetConfig) -> String {
    t.validate(&reg()).unwrap_err().to_string()
}

/// The field a refusal is about (what a form highlights).
fn field(t: &TargetConfig) -> String {
    t.validate(&reg()).unwrap_err().field
}

#[test]
fn defaults_and_valid_definitions() {
    crate::net::allow_loopback_peers();
    let t = valid();
    assert_eq!(t.validate(&reg()), Ok(()));
    assert!(t.enabled);
    assert_eq!(t.operations.len(), 4);
    let t = scim(json!({
        "kind": "scim", "base_url": "http://127.0.0.5:9000/scim",
        "auth": {"basic": {"username": "svc", "password": "p:w d"}},
        "scope_filter": "active eq true and emails[type eq \"work\" and value ew \"@example.com\"]",
        "mapping": [
            {"target": "title", "source": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"},
            {"target": "userType", "value": "Employee"},
            {"target": "nickName", "source": "displayName", "default": "n/a"},
            {"target": "phoneNumbers", "drop": true}
        ],
        "group_mapping": {"Engineering": "eng"},
        "mode": "scheduled", "out_of_scope": "delete", "enabled": false,
        "operations": ["create", "update"]
    }));
    assert_eq!(t.validate(&reg()), Ok(()));
    for url in [
        "http://localhost:8080/",
        "http://[::1]:1/x",
        "http://127.1.2.3/",
    ] {
        let mut t = valid();
        if let TargetKind::Scim(s) = &mut t.kind {
            s.base_url = url.into();
        }
        assert_eq!(t.validate(&reg()), Ok(()), "{url}");
    }
}

#[test]
fn invalid_definitions_say_why() {
    crate::net::allow_loopback_peers();
    let mut t = valid();
    t.id = "bad id".into();
    assert!(err(&t).contains("target id"));
    t.id = "-x".into();
    assert!(err(&t).contains("target id"));
    t.id = "x".repeat(65);
    assert!(err(&t).contains("1 to 64"));

    let url = |u: &str| {
        let mut t = valid();
        if let TargetKind::Scim(s) = &mut t.kind {
            s.base_url = u.into();
        }
        err(&t)
    };
    assert!(url("http://example.com/scim").contains("https"));
    assert!(url("http://10.0.0.1/scim").contains("private-network"));
    assert!(url("https://169.254.169.254/").contains("metadata"));
    assert!(url("https://[::ffff:10.0.0.1]/").contains("PROVISYNC_ALLOW_PRIVATE_TARGETS"));
    assert!(url("http://128.0.0.1/scim").contains("https"));
    assert!(url("http://localhost.evil.com/").contains("https"));
    assert!(url("ftp://example.com/").contains("scheme"));
    assert!(url("not a url").contains("not a URL"));
    assert!(url("https://user:pw@example.com/").contains("credentials"));
    assert!(url("https://example.com/?a=b").contains("query"));

    let mut t = valid();
    t.scope_filter = Some("userName eq".into());
    assert!(err(&t).starts_with("scope_filter: "));
    t.scope_filter = Some("nosuchattr eq \"x\"".into());
    assert!(err(&t).starts_with("scope_filter: "), "{}", err(&t));
    assert_eq!(field(&t), "scope_filter");

    let mut t = valid();
    t.operations.clear();
    assert!(err(&t).contains("operations"));

    let mapping = |m: Value| {
        let mut t = valid();
        t.mapping = vec![serde_json::from_value(m).unwrap()];
        err(&t)
    };
    assert!(mapping(json!({"target": "a b", "value": 1})).contains("target"));
    assert!(mapping(json!({"target": "title", "source": "nope"})).contains("User attribute"));
    assert!(mapping(json!({"target": "title", "source": "a..b"})).contains("attribute path"));
    assert!(mapping(json!({"target": "title"})).contains("exactly one"));
    assert!(mapping(json!({"target": "title", "drop": true, "value": 1})).contains("drop"));
    assert!(
        mapping(json!({"target": "title", "source": "title", "value": 1})).contains("exactly one")
    );

    // A group attribute in a user rule: the message says how to write a group rule.
    let m = mapping(json!({"target": "title", "source": "members.display"}));
    assert!(m.contains("not a User attribute"), "{m}");
    assert!(m.contains("\"applies_to\": \"groups\""), "{m}");
    let m = mapping(json!({"applies_to": "groups", "target": "x", "source": "userName"}));
    assert!(m.contains("not a Group attribute"), "{m}");

    let mut t = valid();
    if let TargetKind::Scim(s) = &mut t.kind {
        s.auth = HttpAuth::Bearer("two words".into());
    }
    assert!(err(&t).contains("bearer"));
    assert_eq!(field(&t), "auth.bearer");
    assert!(!err(&t).contains("two words"), "never quote a secret");
    if let TargetKind::Scim(s) = &mut t.kind {
        s.auth = HttpAuth::Basic {
            username: "a:b".into(),
            password: "x".into(),
        };
    }
    assert!(err(&t).contains("username"));
    assert_eq!(field(&t), "auth.basic.username");
}

#[test]
fn unknown_kind_and_bad_types_fail_to_parse() {
    assert!(
        serde_json::from_value::<TargetConfig>(json!({"kind": "ldap", "base_url": "x"})).is_err()
    );
    assert!(
        serde_json::from_value::<TargetConfig>(json!({
            "kind": "scim", "base_url": "https://x", "auth": {"bearer": "t"}, "enabled": "yes"
        }))
        .is_err()
    );
}

#[test]
fn redaction_hides_every_secret() {
    let t = valid();
    assert_eq!(t.secrets(), ["tok-123"]);
    let r = t.redacted();
    let text = serde_json::to_string(&r).unwrap();
    assert!(!text.contains("tok-123"));
    assert!(text.contains(REDACTED));
    let t = scim(json!({
        "kind": "scim", "base_url": "https://x.example",
        "auth": {"basic": {"username": "svc", "password": "pw-secret"}}
    }));
    let text = serde_json::to_string(&t.redacted()).unwrap();
    assert!(!text.contains("pw-secret"));
    assert!(text.contains("svc"), "usernames are not secret");
}

#[test]
fn crowd_definitions() {
    let t = scim(json!({
        "kind": "crowd", "base_url": "https://crowd.example.com/crowd",
        "application": "provisync", "password": "app-secret-1"
    }));
    assert_eq!(t.validate(&reg()), Ok(()));
    assert_eq!(t.kind_name(), "crowd");
    for kind in [valid(), t.clone()] {
        let name = kind.kind_name();
        let (_, fields) = KIND_FIELDS.iter().find(|(k, _)| *k == name).unwrap();
        let v = serde_json::to_value(&kind).unwrap();
        for f in v.as_object().unwrap().keys() {
            let common = [
                "id",
                "kind",
                "operations",
                "mode",
                "out_of_scope",
                "orphans",
                "deprovision_guard",
                "enabled",
            ];
            assert!(
                common.contains(&f.as_str()) || fields.contains(&f.as_str()),
                "{name}: {f}"
            );
        }
    }
    assert_eq!(t.secrets(), ["app-secret-1"]);
    let shown = serde_json::to_string(&t.redacted()).unwrap();
    assert!(
        !shown.contains("app-secret-1") && shown.contains("provisync"),
        "{shown}"
    );
    assert!(!format!("{t:?}").contains("app-secret-1"), "Debug redacts");
    let bad = |patch: Value| {
        let mut v = serde_json::to_value(&t).unwrap();
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        let t: TargetConfig = serde_json::from_value(v).unwrap();
        err(&t)
    };
    assert!(bad(json!({"base_url": "http://crowd.example.com"})).contains("https"));
    assert!(bad(json!({"application": ""})).contains("application"));
    assert!(bad(json!({"application": "a:b"})).contains("application"));
    let e = bad(json!({"password": ""}));
    assert!(e.contains("password"), "{e}");
    assert!(
        serde_json::from_value::<TargetConfig>(
            json!({"kind": "crowd", "base_url": "https://x.example", "application": "a"})
        )
        .is_err(),
        "password is required"
    );
}

#[test]
fn entra_and_salesforce_definitions() {
    let entra = scim(json!({
        "kind": "entra", "tenant_id": "contoso.onmicrosoft.com",
        "client_id": "00000000-0000-0000-0000-000000000001", "client_secret": "entra-secret-1"
    }));
    let sf = scim(json!({
        "kind": "salesforce", "instance_url": "https://acme.my.salesforce.com",
        "client_id": "3MVG9", "client_secret": "sf-secret-1",
        "defaults": {"ProfileId": "00e000000000001", "TimeZoneSidKey": "America/Los_Angeles"}
    }));
    for (t, secret, name) in [
        (&entra, "entra-secret-1", "entra"),
        (&sf, "sf-secret-1", "salesforce"),
    ] {
        assert_eq!(t.validate(&reg()), Ok(()), "{name}");
        assert_eq!(t.kind_name(), name);
        assert_eq!(t.secrets(), [secret]);
        let shown = serde_json::to_string(&t.redacted()).unwrap();
        assert!(
            !shown.contains(secret) && shown.contains(REDACTED),
            "{shown}"
        );
        assert!(!format!("{t:?}").contains(secret), "Debug redacts");
        let (_, fields) = KIND_FIELDS.iter().find(|(k, _)| *k == name).unwrap();
        for f in serde_json::to_value(t).unwrap().as_object().unwrap().keys() {
            let common = COMMON_FIELDS;
            assert!(
                common.contains(&f.as_str()) || fields.contains(&f.as_str()),
                "{name}: {f}"
            );
        }
    }
    if let TargetKind::Salesforce(s) = &sf.kind {
        assert_eq!(s.api_version, "v60.0", "default API version");
    }
    let bad = |t: &TargetConfig, patch: Value| {
        let mut v = serde_json::to_value(t).unwrap();
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        err(&serde_json::from_value(v).unwrap())
    };
    assert!(bad(&entra, json!({"tenant_id": "a/b"})).contains("tenant_id"));
    assert!(bad(&entra, json!({"client_secret": ""})).contains("client_secret"));
    assert!(bad(&entra, json!({"graph_url": "http://graph.example"})).starts_with("graph_url"));
    assert!(bad(&sf, json!({"instance_url": "http://x.example"})).starts_with("instance_url"));
    assert!(bad(&sf, json!({"api_version": "60"})).contains("api_version"));
    assert!(bad(&sf, json!({"defaults": {"bad key": "x"}})).contains("defaults"));
    assert!(bad(&sf, json!({"defaults": {"ProfileId": {"a": 1}}})).contains("defaults"));
    let e = bad(&sf, json!({"client_id": ""}));
    assert!(e.contains("client_id") && !e.contains("sf-secret-1"), "{e}");
}

#[test]
fn cognito_and_okta_definitions() {
    crate::net::allow_loopback_peers();
    let fields_listed = |t: &TargetConfig| {
        let name = t.kind_name();
        let (_, fields) = KIND_FIELDS.iter().find(|(k, _)| *k == name).unwrap();
        let v = serde_json::to_value(t).unwrap();
        let common = COMMON_FIELDS;
        for f in v.as_object().unwrap().keys() {
            assert!(
                common.contains(&f.as_str()) || fields.contains(&f.as_str()),
                "{name}: {f}"
            );
        }
    };
    let c = scim(json!({
        "kind": "cognito", "user_pool_id": "eu-west-3_AbC123", "region": "eu-west-3",
        "endpoint_url": "http://127.0.0.1:5000", "email_verified": true
    }));
    assert_eq!(c.validate(&reg()), Ok(()));
    assert_eq!(c.kind_name(), "cognito");
    assert!(c.secrets().is_empty());
    fields_listed(&c);
    let bare = scim(json!({"kind": "cognito", "user_pool_id": "us-gov-west-1_x9"}));
    assert_eq!(bare.validate(&reg()), Ok(()));
    let TargetKind::Cognito(k) = &bare.kind else {
        panic!()
    };
    assert_eq!(k.region(), "us-gov-west-1");
    assert!(!k.email_verified);
    for (patch, want) in [
        (json!({"user_pool_id": "nope"}), "user_pool_id"),
        (json!({"user_pool_id": "us-east-1_"}), "user_pool_id"),
        (json!({"user_pool_id": "us-east-1_a\"b"}), "user_pool_id"),
        (json!({"region": "us-east-1"}), "does not match"),
        (json!({"region": "Mars"}), "region"),
        (json!({"endpoint_url": "http://moto.example.com"}), "https"),
    ] {
        let mut v = serde_json::to_value(&c).unwrap();
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        let t: TargetConfig = serde_json::from_value(v).unwrap();
        let e = err(&t);
        assert!(e.contains(want), "{patch}: {e}");
    }

    let o = scim(json!({
        "kind": "okta", "base_url": "https://dev-123.okta.com", "token": "00abcSSWS-token"
    }));
    assert_eq!(o.validate(&reg()), Ok(()));
    assert_eq!(o.kind_name(), "okta");
    fields_listed(&o);
    assert_eq!(o.secrets(), ["00abcSSWS-token"]);
    let shown = serde_json::to_string(&o.redacted()).unwrap();
    assert!(
        !shown.contains("00abcSSWS-token") && shown.contains("***"),
        "{shown}"
    );
    assert!(
        !format!("{o:?}").contains("00abcSSWS-token"),
        "Debug redacts"
    );
    for (patch, want) in [
        (json!({"token": ""}), "token"),
        (json!({"token": "a b"}), "token"),
        (json!({"base_url": "http://dev-123.okta.com"}), "https"),
    ] {
        let mut v = serde_json::to_value(&o).unwrap();
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        let t: TargetConfig = serde_json::from_value(v).unwrap();
        let e = err(&t);
        assert!(e.contains(want), "{patch}: {e}");
    }
}

fn repo() -> (Arc<dyn Store>, Targets) {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let (sb, _) = SecretBox::generate();
    (store.clone(), Targets::new(store, Arc::new(sb)))
}

#[tokio::test]
async fn stored_sealed_and_opened_on_read() {
    let (store, targets) = repo();
    let t = valid();
    assert!(targets.put(&t).await.unwrap());
    assert!(!targets.put(&t).await.unwrap(), "second put replaces");
    let item = store.get(&target_key("crm")).await.unwrap().unwrap();
    let raw = String::from_utf8_lossy(&item.data);
    assert!(!raw.contains("tok-123"), "{raw}");
    assert!(raw.contains("\"v1."));
    assert_eq!(targets.get("crm").await.unwrap(), Some(t.clone()));
    assert_eq!(targets.get("nope").await.unwrap(), None);
    assert_eq!(targets.get("../x").await.unwrap(), None);
    let mut b = valid();
    b.id = "aaa".into();
    b.enabled = false;
    targets.put(&b).await.unwrap();
    let ids: Vec<String> = targets
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["aaa", "crm"]);
    let enabled = targets.list_enabled().await.unwrap();
    assert_eq!(enabled.len(), 1);
    assert_eq!(enabled[0], t);
    assert!(targets.delete("crm").await.unwrap());
    assert!(!targets.delete("crm").await.unwrap());
    assert!(
        targets.list_enabled().await.unwrap().is_empty(),
        "cache invalidated"
    );
    // Another key cannot open what is stored.
    let (other, _) = SecretBox::generate();
    let foreign = Targets::new(store, Arc::new(other));
    assert!(matches!(
        foreign.get("aaa").await,
        Err(TargetError::Crypto { .. })
    ));
}

#[tokio::test]
async fn list_enabled_is_cached_for_the_ttl() {
    let (_, targets) = repo();
    targets.put(&valid()).await.unwrap();
    assert_eq!(targets.list_enabled().await.unwrap().len(), 1);
    // A write by another process (another Targets on the same store) is not seen
    // until the TTL passes.
    let other = Targets {
        defs: targets.defs.clone(),
        cache: Arc::new(Mutex::new(None)),
        ttl: TARGET_CACHE_TTL,
    };
    other.delete("crm").await.unwrap();
    assert_eq!(targets.list_enabled().await.unwrap().len(), 1);
    let uncached = targets.clone().with_cache_ttl(Duration::ZERO);
    assert_eq!(uncached.list_enabled().await.unwrap().len(), 0);
}

/// Rules say what they apply to: users unless stated (a definition saved before rules
/// said so keeps meaning users), groups apart; every form that shows a rule names it.
#[test]
fn mapping_rules_say_what_they_apply_to() {
    // Stored before `applies_to` existed.
    let old = scim(json!({
        "kind": "scim", "base_url": "https://scim.example.com/v2", "auth": {"bearer": "t"},
        "mapping": [{"target": "userType", "value": "Employee"}]
    }));
    assert_eq!(old.mapping[0].applies_to, AppliesTo::Users);
    assert_eq!(old.validate(&reg()), Ok(()));
    let shown = serde_json::to_value(old.redacted()).unwrap();
    assert_eq!(shown["mapping"][0]["applies_to"], "users", "{shown}");
    let t = scim(json!({
        "kind": "scim", "base_url": "https://scim.example.com/v2", "auth": {"bearer": "t"},
        "mapping": [{"applies_to": "groups", "target": "externalId", "source": "displayName"},
                    {"applies_to": "group", "target": "x", "drop": true}]
    }));
    assert_eq!(t.validate(&reg()), Ok(()));
    assert_eq!(t.mapping[0].applies_to, AppliesTo::Groups);
    assert_eq!(t.mapping[1].applies_to, AppliesTo::Groups);
    assert!(
        serde_json::from_value::<TargetConfig>(json!({
            "kind": "scim", "base_url": "https://scim.example.com/v2", "auth": {"bearer": "t"},
            "mapping": [{"applies_to": "entities", "target": "x", "drop": true}]
        }))
        .is_err()
    );
}
