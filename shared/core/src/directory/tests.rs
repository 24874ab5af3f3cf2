use super::lookup::{Lookup, indexed_lookup};
use super::*;
use crate::store::embedded::EmbeddedStore;
use provisync_scim::filter::parse;

#[test]
fn or_of_keyed_equalities_is_a_lookup() {
    let f = parse(r#"userName eq "a" or externalId eq "x" or id eq "i""#).unwrap();
    match indexed_lookup(ResourceKind::User, &f) {
        Some(Lookup::AnyOf(keys)) => assert_eq!(
            keys,
            vec![
                (Some(UniqueAttr::UserName), "a".to_string()),
                (Some(UniqueAttr::ExternalId), "x".to_string()),
                (None, "i".to_string()),
            ]
        ),
        _ => panic!("not a keyed lookup"),
    }
    // One branch that is not a keyed equality: a scan.
    let f = parse(r#"userName eq "a" or title eq "x""#).unwrap();
    assert!(indexed_lookup(ResourceKind::User, &f).is_none());
    let f = parse(r#"userName eq "a" or userName sw "b""#).unwrap();
    assert!(indexed_lookup(ResourceKind::User, &f).is_none());
}

#[tokio::test]
async fn search_by_or_of_user_names_finds_each_once() {
    let dir = Directory::new(
        Arc::new(EmbeddedStore::in_memory()),
        SchemaRegistry::builtin(),
    );
    for (name, ext) in [("ann", "e-1"), ("ben", "e-2"), ("cat", "e-3")] {
        dir.create(
                ResourceKind::User,
                &json!({"schemas": [provisync_scim::schema::USER_SCHEMA], "userName": name, "externalId": ext}),
            )
            .await
            .unwrap();
    }
    // Case-insensitive userName, case-exact externalId, a user named twice, one
    // that does not exist.
    let filter = parse(
            r#"userName eq "ANN" or externalId eq "e-1" or externalId eq "E-2" or userName eq "cat" or userName eq "nobody""#,
        )
        .unwrap();
    let r = dir
        .search(
            ResourceKind::User,
            &SearchRequest {
                filter: Some(filter),
                start_index: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut names: Vec<&str> = r
        .resources
        .iter()
        .filter_map(|s| s.resource["userName"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["ann", "cat"]);
    assert_eq!(r.total_results, Some(2));
}
