use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::source::SourceConfig;
use crate::store::embedded::EmbeddedStore;
use crate::target::{TargetConfig, Targets};

fn target(v: Value) -> TargetConfig {
    serde_json::from_value(v).unwrap()
}

/// RFC 7396 Appendix A: every example, as the RFC gives it.
#[test]
fn merge_patch_rfc_7396_examples() {
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
        (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
        (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
    ];
    for (original, patch, result) in cases {
        let mut doc = original.clone();
        merge_patch(&mut doc, &patch);
        assert_eq!(doc, result, "{original} + {patch}");
    }
}

#[test]
fn the_placeholder_keeps_the_stored_secret_of_the_same_field() {
    let stored = target(json!({"id": "t", "kind": "scim", "base_url": "https://a.example/v2",
        "auth": {"basic": {"username": "svc", "password": "pw-1"}}}));
    let mut new = target(json!({"id": "t", "kind": "scim", "base_url": "https://a.example/v3",
        "auth": {"basic": {"username": "svc2", "password": "***"}}}));
    keep_stored_secrets(&mut new, Some(&stored)).unwrap();
    assert_eq!(new.secrets(), ["pw-1"]);
    // A bearer where a password was stored: nothing to keep for that field.
    let mut other = target(json!({"id": "t", "kind": "scim", "base_url": "https://a.example/v2",
        "auth": {"bearer": "***"}}));
    let e = keep_stored_secrets(&mut other, Some(&stored)).unwrap_err();
    assert_eq!(e.field, "auth.bearer");
    assert!(e.reason.contains("the stored target has none here"), "{e}");
    // Nothing stored: the placeholder is refused.
    let mut fresh = stored.redacted();
    let e = keep_stored_secrets(&mut fresh, None).unwrap_err();
    assert_eq!(e.field, "auth.basic.password");
    assert!(e.reason.contains("a new target has none"), "{e}");
    // A real secret is taken as is, whatever was stored.
    let mut given = stored.clone();
    keep_stored_secrets(&mut given, None).unwrap();
    assert_eq!(given, stored);
}

#[test]
fn kept_secrets_stay_with_their_origin() {
    let stored = target(json!({"id": "e", "kind": "entra", "tenant_id": "contoso.example",
        "client_id": "c", "client_secret": "s-1"}));
    let mut moved = stored.redacted();
    if let crate::target::TargetKind::Entra(e) = &mut moved.kind {
        e.login_url = Some("https://login.evil.example".into());
    }
    let e = keep_stored_secrets(&mut moved, Some(&stored)).unwrap_err();
    assert_eq!(e.field, "client_secret");
    assert!(e.reason.contains("https://login.evil.example"), "{e}");
    // The default written out is the same origin.
    let mut same = stored.redacted();
    if let crate::target::TargetKind::Entra(e) = &mut same.kind {
        e.login_url = Some("https://login.microsoftonline.com/".into());
    }
    keep_stored_secrets(&mut same, Some(&stored)).unwrap();
    // A source's webhook secrets go nowhere: a new pull URL keeps them, not the pull auth.
    let src: SourceConfig = serde_json::from_value(json!({"id": "s",
        "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "direction": "bidirectional",
        "pull": {"kind": "scim", "base_url": "https://idp.example", "auth": {"bearer": "b"}}}))
    .unwrap();
    let mut next = src.redacted();
    if let Some(p) = &mut next.pull {
        p.base_url = "https://other.example".into();
        p.auth = crate::target::HttpAuth::Bearer("b2".into());
    }
    keep_stored_secrets(&mut next, Some(&src)).unwrap();
    assert_eq!(next.secrets, src.secrets);
}

#[test]
fn absent_secret_fields_are_filled_from_the_stored_definition() {
    let stored = target(json!({"id": "o", "kind": "okta", "base_url": "https://x.example",
        "token": "tok"}));
    let mut body = json!({"kind": "okta", "base_url": "https://x.example"});
    fill_absent_secrets(&mut body, &stored);
    assert_eq!(body["token"], REDACTED);
    // Another kind: nothing carried over.
    let mut scim = json!({"kind": "scim", "base_url": "https://x.example"});
    fill_absent_secrets(&mut scim, &stored);
    assert!(scim.get("token").is_none() && scim.get("auth").is_none());
    // A source: `secrets`, and `pull.auth` only when `pull` is there.
    let src: SourceConfig = serde_json::from_value(json!({"id": "s",
        "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        "pull": {"kind": "scim", "base_url": "https://idp.example", "auth": {"bearer": "b"}}}))
    .unwrap();
    let mut with_pull = json!({"pull": {"kind": "scim", "base_url": "https://idp.example"}});
    fill_absent_secrets(&mut with_pull, &src);
    assert_eq!(with_pull["secrets"], json!(["***"]));
    assert_eq!(with_pull["pull"]["auth"], json!({"bearer": "***"}));
    let mut no_pull = json!({"user_sync": true});
    fill_absent_secrets(&mut no_pull, &src);
    assert!(no_pull.get("pull").is_none());
}

#[tokio::test]
async fn the_placeholder_is_never_stored_and_edits_do_not_lose_each_other() {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let targets = Targets::new(store.clone(), Arc::new(SecretBox::generate().0));
    let t = target(json!({"id": "o", "kind": "okta", "base_url": "https://x.example",
        "token": "tok"}));
    assert!(targets.put(&t).await.unwrap());
    let e = targets.put(&t.redacted()).await.unwrap_err();
    assert!(matches!(e, DefinitionError::Placeholder { ref field, .. } if field == "token"), "{e}");
    assert_eq!(targets.get("o").await.unwrap().unwrap().secrets(), ["tok"]);

    // Twenty concurrent partial edits, each adding one mapping rule: none is lost.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let targets = targets.clone();
        tasks.push(tokio::spawn(async move {
            targets
                .edit("o", |stored| {
                    let mut t = stored.cloned().ok_or("gone")?;
                    t.group_mapping.insert(format!("g{i}"), format!("t{i}"));
                    Ok::<_, &str>(t)
                })
                .await
                .map(|_| ())
        }));
    }
    let mut contended = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => {}
            Err(EditError::Store(DefinitionError::Contended { .. })) => contended += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let stored = targets.get("o").await.unwrap().unwrap();
    assert_eq!(stored.group_mapping.len() + contended, 20);
    assert_eq!(stored.secrets(), ["tok"]);
}
