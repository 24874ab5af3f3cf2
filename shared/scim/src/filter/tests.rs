use super::*;
use crate::schema::{ResourceKind, SchemaRegistry};
use proptest::prelude::*;
use serde_json::{Number, json};

fn p(s: &str) -> Filter {
    parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn path(s: &str) -> AttrPath {
    AttrPath::parse(s).unwrap()
}

fn cmp(a: &str, op: CompareOp, v: CompValue) -> Filter {
    Filter::Compare {
        path: path(a),
        op,
        value: v,
    }
}

fn s(v: &str) -> CompValue {
    CompValue::Str(v.into())
}

fn and(l: Filter, r: Filter) -> Filter {
    Filter::And(Box::new(l), Box::new(r))
}

fn or(l: Filter, r: Filter) -> Filter {
    Filter::Or(Box::new(l), Box::new(r))
}

fn not(f: Filter) -> Filter {
    Filter::Not(Box::new(f))
}

fn pr(a: &str) -> Filter {
    Filter::Present(path(a))
}

fn parse_err(s: &str) -> ScimError {
    match parse(s) {
        Ok(f) => panic!("{s:?} should not parse, got {f:?}"),
        Err(e) => {
            assert_eq!(e.status, 400);
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidFilter));
            e
        }
    }
}

fn user_matches(filter: &str, resource: &Value) -> bool {
    let reg = SchemaRegistry::builtin();
    let schema = reg.view(ResourceKind::User);
    let f = p(filter);
    f.validate(&schema)
        .unwrap_or_else(|e| panic!("{filter:?} should validate: {e}"));
    f.matches(&schema, resource)
}

fn validate_user(filter: &str) -> Result<(), ScimError> {
    let reg = SchemaRegistry::builtin();
    let schema = reg.view(ResourceKind::User);
    p(filter).validate(&schema)
}

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn bjensen() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "Bjensen-Ext",
        "userName": "bjensen@example.com",
        "name": {"familyName": "O'Malley", "givenName": "Barbara", "formatted": "Ms. Barbara J Jensen, III"},
        "displayName": "Babs Jensen",
        "title": "Tour Guide",
        "userType": "Employee",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "ims": [{"value": "babs@foo.com", "type": "xmpp"}],
        "meta": {
            "resourceType": "User",
            "created": "2010-01-23T04:56:22Z",
            "lastModified": "2011-05-13T04:42:34Z",
            "version": "W/\"3694e05e9dff591\"",
            "location": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646"
        },
        ENT: {
            "employeeNumber": "701984",
            "costCenter": "4130",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}
        }
    })
}

// ------------------------------------------------------------------ parsing

#[test]
fn every_operator_parses_case_insensitively() {
    for op in CompareOp::ALL {
        for spelling in [op.as_str().to_string(), op.as_str().to_uppercase()] {
            let f = p(&format!("userName {spelling} \"x\""));
            assert_eq!(f, cmp("userName", op, s("x")));
        }
    }
    assert_eq!(p("title pr"), pr("title"));
    assert_eq!(p("title PR"), pr("title"));
    assert!(
        parse("userName xx \"x\"")
            .unwrap_err()
            .detail
            .contains("unknown operator")
    );
}

#[test]
fn and_binds_tighter_than_or() {
    let (a, b, c) = (pr("a"), pr("b"), pr("c"));
    assert_eq!(
        p("a pr or b pr and c pr"),
        or(a.clone(), and(b.clone(), c.clone()))
    );
    assert_eq!(
        p("a pr and b pr or c pr"),
        or(and(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(
        p("(a pr or b pr) and c pr"),
        and(or(a.clone(), b.clone()), c.clone())
    );
    // Left-associative chains.
    assert_eq!(
        p("a pr and b pr and c pr"),
        and(and(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(
        p("a pr or b pr or c pr"),
        or(or(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(
        p("a pr AND b pr Or c pr"),
        or(and(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(p("a pr and (b pr and c pr)"), and(a, and(b, c)));
}

#[test]
fn not_and_parentheses() {
    assert_eq!(p("not (a pr)"), not(pr("a")));
    assert_eq!(p("NOT(a pr)"), not(pr("a")));
    assert_eq!(
        p("not (a pr or b pr) and c pr"),
        and(not(or(pr("a"), pr("b"))), pr("c"))
    );
    assert_eq!(p("((a pr))"), pr("a"));
    assert_eq!(p("  ( a pr )  "), pr("a"));
    // An attribute called `not` is still an attribute.
    assert_eq!(p("not pr"), pr("not"));
    assert_eq!(p("not eq \"x\""), cmp("not", CompareOp::Eq, s("x")));
    assert!(
        parse("not a pr")
            .unwrap_err()
            .detail
            .contains("`(` after `not`")
    );
}

#[test]
fn value_paths() {
    let f = p(r#"emails[type eq "work" and value ew "@x.org"]"#);
    assert_eq!(
        f,
        Filter::ValuePath {
            path: path("emails"),
            filter: Box::new(and(
                cmp("type", CompareOp::Eq, s("work")),
                cmp("value", CompareOp::Ew, s("@x.org"))
            )),
        }
    );
    let f = p(r#"emails[not (type eq "work")] or ims[type eq "xmpp"]"#);
    assert!(matches!(f, Filter::Or(..)));
    parse_err(r#"emails[type eq "work"].value eq "x""#);
    let e = parse_err(r#"emails[type[value eq "x"] pr]"#);
    assert!(e.detail.contains("nested"), "{}", e.detail);
    parse_err("emails[]");
    parse_err(r#"emails[type eq "work""#);
    parse_err(r#"emails[type eq "work")"#);
}

#[test]
fn urn_qualified_names() {
    let f = p(&format!("{ENT}:manager.value eq \"x\""));
    let Filter::Compare { path: ap, .. } = &f else {
        panic!("{f:?}")
    };
    assert_eq!(ap.urn.as_deref(), Some(ENT));
    assert_eq!(ap.attr, "manager");
    assert_eq!(ap.sub_attr.as_deref(), Some("value"));
    let f = p("urn:ietf:params:scim:schemas:core:2.0:User:userName sw \"J\"");
    let Filter::Compare { path: ap, .. } = &f else {
        panic!("{f:?}")
    };
    assert_eq!(
        ap.urn.as_deref(),
        Some("urn:ietf:params:scim:schemas:core:2.0:User")
    );
    assert_eq!(ap.attr, "userName");
    let f = p(&format!("{ENT}:employeeNumber pr"));
    assert_eq!(f.to_string(), format!("{ENT}:employeeNumber pr"));
}

#[test]
fn string_escapes() {
    let f = p(r#"displayName eq "a\"b\\c\/d\n\t\u00e9\ud83d\ude00""#);
    assert_eq!(f, cmp("displayName", CompareOp::Eq, s("a\"b\\c/d\n\té😀")));
    assert_eq!(
        p(r#"displayName eq "O'Malley (x) [y]""#),
        cmp("displayName", CompareOp::Eq, s("O'Malley (x) [y]"))
    );
    assert_eq!(
        p(r#"displayName eq """#),
        cmp("displayName", CompareOp::Eq, s(""))
    );
    assert_eq!(
        p("displayName eq \"héllo wörld\""),
        cmp("displayName", CompareOp::Eq, s("héllo wörld"))
    );
    let e = parse_err(r#"displayName eq "abc"#);
    assert!(e.detail.contains("unterminated string"), "{}", e.detail);
    parse_err(r#"displayName eq "abc\"#);
    parse_err(r#"displayName eq "\x""#);
    parse_err(r#"displayName eq "\u12""#);
    parse_err("displayName eq \"a\u{1}b\"");
    parse_err("displayName eq 'single'");
}

#[test]
fn numbers_and_literals() {
    let n = |x: &str| CompValue::Number(serde_json::from_str(x).unwrap());
    for lit in [
        "0",
        "42",
        "-7",
        "3.25",
        "-0.5",
        "1e3",
        "1.5E-2",
        "-2e+10",
        "18446744073709551615",
    ] {
        assert_eq!(
            p(&format!("x eq {lit}")),
            cmp("x", CompareOp::Eq, n(lit)),
            "{lit}"
        );
    }
    // Floats survive print + parse bit for bit (the std parser is correctly rounded).
    let x = 0.055929095829221565_f64;
    let f = cmp(
        "x",
        CompareOp::Eq,
        CompValue::Number(Number::from_f64(x).unwrap()),
    );
    assert_eq!(p(&f.to_string()), f);
    for bad in [
        "01", "1.", ".5", "+1", "1e", "--1", "1x", "0x10", "NaN", "1e999",
    ] {
        parse_err(&format!("x eq {bad}"));
    }
    assert_eq!(
        p("x eq true"),
        cmp("x", CompareOp::Eq, CompValue::Bool(true))
    );
    assert_eq!(
        p("x eq False"),
        cmp("x", CompareOp::Eq, CompValue::Bool(false))
    );
    assert_eq!(p("x eq NULL"), cmp("x", CompareOp::Eq, CompValue::Null));
    parse_err("x eq work");
    parse_err("x eq");
    parse_err("x");
}

#[test]
fn syntax_errors_say_where() {
    let e = parse_err("userName eq \"x\" and");
    assert!(e.detail.contains("position 19"), "{}", e.detail);
    let e = parse_err("userName eq \"x\" foo");
    assert!(
        e.detail.contains("position 16") && e.detail.contains("`foo`"),
        "{}",
        e.detail
    );
    let e = parse_err("(userName pr");
    assert!(e.detail.contains("missing `)`"), "{}", e.detail);
    parse_err("");
    parse_err("   ");
    parse_err("userName pr)");
    parse_err("and pr pr");
    parse_err("1abc pr");
    parse_err("a.b.c pr");
    parse_err("urné pr");
    parse_err("()");
    parse_err("userName eq \"x\" userName eq \"y\"");
}

#[test]
fn depth_and_length_limits() {
    let ok = format!(
        "{}a pr{}",
        "(".repeat(MAX_FILTER_DEPTH),
        ")".repeat(MAX_FILTER_DEPTH)
    );
    assert_eq!(p(&ok), pr("a"));
    let too_deep = format!(
        "{}a pr{}",
        "(".repeat(MAX_FILTER_DEPTH + 1),
        ")".repeat(MAX_FILTER_DEPTH + 1)
    );
    assert!(parse_err(&too_deep).detail.contains("nested too deeply"));
    // Bombs: rejected, never a stack overflow.
    let bomb = "(".repeat(10_000);
    parse_err(&bomb);
    let bomb = format!("{}a pr{}", "(".repeat(4_000), ")".repeat(4_000));
    parse_err(&bomb);
    let bomb = "not (".repeat(1_600);
    assert!(parse_err(&bomb).detail.contains("nested too deeply"));
    let huge = format!("userName eq \"{}\"", "x".repeat(MAX_FILTER_LEN));
    assert!(parse_err(&huge).detail.contains("limit"));
    // A long flat chain within the limit is fine, and evaluates without trouble.
    let chain = vec!["a pr"; 800].join(" and ");
    assert!(chain.len() < MAX_FILTER_LEN);
    let f = p(&chain);
    assert_eq!(parse(&f.to_string()).unwrap(), f);
    let reg = SchemaRegistry::builtin();
    assert!(f.matches(&reg.view(ResourceKind::User), &json!({"a": 1})));
}

/// Every example filter of RFC 7644 §3.4.2.2 (Figure 2) parses, prints back to
/// itself, validates against the User schema and evaluates as expected on bjensen.
#[test]
fn rfc7644_example_filters() {
    let cases: &[(&str, bool)] = &[
        (r#"userName eq "bjensen""#, false),
        (r#"name.familyName co "O'Malley""#, true),
        (r#"userName sw "J""#, false),
        (
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            false,
        ),
        ("title pr", true),
        (r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, false),
        (r#"meta.lastModified ge "2011-05-13T04:42:34Z""#, true),
        (r#"meta.lastModified lt "2011-05-13T04:42:34Z""#, false),
        (r#"meta.lastModified le "2011-05-13T04:42:34Z""#, true),
        (r#"title pr and userType eq "Employee""#, true),
        (r#"title pr or userType eq "Intern""#, true),
        (
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            true,
        ),
        (
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            true,
        ),
        (
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            false,
        ),
        (
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            true,
        ),
        (
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            true,
        ),
        (
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            true,
        ),
    ];
    let reg = SchemaRegistry::builtin();
    let schema = reg.view(ResourceKind::User);
    let user = bjensen();
    for (text, expected) in cases {
        let f = p(text);
        f.validate(&schema)
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(f.matches(&schema, &user), *expected, "{text}");
        let printed = f.to_string();
        // The canonical form drops the one pair of redundant parentheses the RFC has.
        let canonical = text.replace(r#"(emails.type eq "work")"#, r#"emails.type eq "work""#);
        assert_eq!(printed, canonical, "canonical form");
        assert_eq!(p(&printed), f);
    }
    // The same with sJ-style data: userName "bjensen" and "J..." prefixes.
    let mut other = user.clone();
    other["userName"] = json!("Jbjensen");
    assert!(user_matches(r#"userName sw "j""#, &other));
    other["userName"] = json!("BJENSEN");
    assert!(user_matches(r#"userName eq "bjensen""#, &other));
}

#[test]
fn printer_adds_only_needed_parentheses() {
    assert_eq!(
        p("(a pr and b pr) or c pr").to_string(),
        "a pr and b pr or c pr"
    );
    assert_eq!(
        p("a pr and (b pr or c pr)").to_string(),
        "a pr and (b pr or c pr)"
    );
    assert_eq!(
        p("a pr or (b pr or c pr)").to_string(),
        "a pr or (b pr or c pr)"
    );
    assert_eq!(
        p("(a pr or b pr) or c pr").to_string(),
        "a pr or b pr or c pr"
    );
    assert_eq!(p("NOT ( a PR )").to_string(), "not (a pr)");
    assert_eq!(p("x EQ TRUE").to_string(), "x eq true");
    assert_eq!(
        p(r#"x eq "a\u0022\u0001""#).to_string(),
        r#"x eq "a\"\u0001""#
    );
}

// ------------------------------------------------------------------ PATCH paths

#[test]
fn patch_paths() {
    let pp = parse_patch_path("userName").unwrap();
    assert_eq!(
        pp,
        PatchPath {
            attr: path("userName"),
            filter: None,
            sub_attr: None
        }
    );
    let pp = parse_patch_path("name.givenName").unwrap();
    assert_eq!(pp.attr, path("name.givenName"));
    let pp = parse_patch_path(r#"emails[type eq "work"]"#).unwrap();
    assert_eq!(pp.attr, path("emails"));
    assert_eq!(pp.filter, Some(cmp("type", CompareOp::Eq, s("work"))));
    assert_eq!(pp.sub_attr, None);
    let pp = parse_patch_path(r#"emails[type eq "work" and primary eq true].value"#).unwrap();
    assert_eq!(pp.sub_attr.as_deref(), Some("value"));
    assert_eq!(
        pp.to_string(),
        r#"emails[type eq "work" and primary eq true].value"#
    );
    let pp =
        parse_patch_path(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#).unwrap();
    assert_eq!(pp.attr, path("members"));
    let pp = parse_patch_path(&format!("{ENT}:manager")).unwrap();
    assert_eq!(pp.attr.urn.as_deref(), Some(ENT));
    assert_eq!(pp.attr.attr, "manager");
    let pp = parse_patch_path("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName").unwrap();
    assert_eq!(pp.attr.attr, "name");
    assert_eq!(pp.attr.sub_attr.as_deref(), Some("givenName"));
    let pp = parse_patch_path(r#"addresses[type eq "work"].streetAddress"#).unwrap();
    assert_eq!(pp.sub_attr.as_deref(), Some("streetAddress"));
    // A `]` inside a string does not close the filter.
    let pp = parse_patch_path(r#"emails[value eq "a]b"].display"#).unwrap();
    assert_eq!(pp.filter, Some(cmp("value", CompareOp::Eq, s("a]b"))));

    for bad in [
        "",
        "  ",
        "1abc",
        "emails[",
        "emails[]",
        r#"emails[type eq "work""#,
        r#"emails[type eq "work"]value"#,
        r#"emails[type eq "work"].1x"#,
        r#"emails[type eq "work"].value.x"#,
        r#"emails[type eq "work"]]"#,
        r#"emails[type[value pr] pr]"#,
        "a.b.c",
        "emails type",
        "ém",
    ] {
        let e = parse_patch_path(bad).expect_err(bad);
        assert_eq!(e.scim_type, Some(crate::ScimType::InvalidPath), "{bad}");
        assert_eq!(e.status, 400);
    }
    let deep = format!("emails[{}a pr{}]", "(".repeat(5_000), ")".repeat(5_000));
    assert!(parse_patch_path(&deep).is_err());
}

// ------------------------------------------------------------------ validation

#[test]
fn validation() {
    validate_user(r#"userName eq "x""#).unwrap();
    validate_user(r#"USERNAME eq "x""#).unwrap();
    validate_user(r#"name.givenName sw "B""#).unwrap();
    validate_user(&format!("{ENT}:manager.value eq \"x\"")).unwrap();
    validate_user(&format!("{ENT}:manager eq \"x\"")).unwrap();
    validate_user(r#"employeeNumber eq "1""#).unwrap(); // unqualified extension name
    validate_user(r#"emails co "x""#).unwrap();
    validate_user(r#"emails[type eq "work" and primary eq true]"#).unwrap();
    validate_user(r#"meta.created gt "2020-01-01T00:00:00Z""#).unwrap();
    validate_user(r#"active eq true"#).unwrap();
    validate_user("id pr and externalId pr").unwrap();

    let invalid = |f: &str, needle: &str| {
        let e = validate_user(f).expect_err(f);
        assert_eq!(e.status, 400);
        assert_eq!(e.scim_type, Some(crate::ScimType::InvalidFilter));
        assert!(e.detail.contains(needle), "{f}: {}", e.detail);
    };
    invalid(r#"nope eq "x""#, "unknown attribute `nope`");
    invalid(r#"name.nope eq "x""#, "unknown attribute");
    invalid("nope pr", "unknown attribute");
    invalid(r#"userName eq "x" and not (bogus pr)"#, "bogus");
    invalid(
        r#"emails[bogus eq "x"]"#,
        "unknown attribute `emails.bogus`",
    );
    invalid(r#"emails[value.x eq "x"]"#, "unknown attribute");
    invalid(r#"bogus[value eq "x"]"#, "unknown attribute");
    invalid(r#"userName[value eq "x"]"#, "complex attribute");
    invalid(
        r#"urn:example:nope:User:userName eq "x""#,
        "unknown attribute",
    );
    invalid(r#"name eq "x""#, "complex attribute");
    invalid(r#"addresses eq "x""#, "complex attribute");
    invalid("active gt true", "boolean");
    invalid("active le false", "boolean");
    invalid(r#"emails.primary lt true"#, "boolean");
    invalid(r#"x509Certificates.value gt "AAAA""#, "binary");
    invalid(r#"emails[primary ge false]"#, "boolean");
    invalid("userName co 5", "needs a string");
    invalid("userName gt null", "needs a string or a number");

    // Value filters on their own (PATCH paths).
    let reg = SchemaRegistry::builtin();
    let schema = reg.view(ResourceKind::User);
    let emails = schema.core.attribute("emails").unwrap();
    p(r#"type eq "work""#).validate_element(emails).unwrap();
    assert!(p(r#"nope eq "work""#).validate_element(emails).is_err());
    assert!(p(r#"x[y pr]"#).validate_element(emails).is_err());
}

// ------------------------------------------------------------------ evaluation

#[test]
fn operators_on_strings_and_case_exactness() {
    let u = bjensen();
    // userName: caseExact false.
    assert!(user_matches(r#"userName eq "BJensen@Example.com""#, &u));
    assert!(user_matches(r#"userName co "JENSEN""#, &u));
    assert!(user_matches(r#"userName sw "BJ""#, &u));
    assert!(user_matches(r#"userName ew ".COM""#, &u));
    assert!(!user_matches(r#"userName ew "example""#, &u));
    assert!(user_matches(r#"userName gt "a""#, &u));
    assert!(user_matches(r#"userName lt "C""#, &u));
    assert!(user_matches(r#"userName ne "other""#, &u));
    assert!(!user_matches(r#"userName ne "BJENSEN@example.com""#, &u));
    // id / externalId: caseExact true.
    assert!(user_matches(r#"externalId eq "Bjensen-Ext""#, &u));
    assert!(!user_matches(r#"externalId eq "bjensen-ext""#, &u));
    assert!(!user_matches(
        r#"id eq "2819C223-7F76-453A-919D-413861904646""#,
        &u
    ));
    assert!(user_matches(r#"id sw "2819c223""#, &u));
    assert!(!user_matches(r#"externalId co "EXT""#, &u));
    // Keys looked up case-insensitively.
    let odd = json!({"USERNAME": "Alice", "Name": {"GIVENNAME": "Al"}});
    assert!(user_matches(r#"userName eq "alice""#, &odd));
    assert!(user_matches(r#"name.givenName eq "al""#, &odd));
}

#[test]
fn ne_absent_and_null() {
    let u = bjensen();
    assert!(user_matches(r#"nickName ne "x""#, &u)); // absent
    assert!(user_matches("nickName eq null", &u));
    assert!(!user_matches("nickName ne null", &u));
    assert!(!user_matches("userName eq null", &u));
    assert!(user_matches("userName ne null", &u));
    let with_null = json!({"nickName": null, "title": ""});
    assert!(user_matches("nickName eq null", &with_null));
    assert!(user_matches("title eq null", &with_null));
    assert!(user_matches(r#"title ne "x""#, &with_null));
    // ne on multi-valued: true only when no value equals.
    assert!(!user_matches(r#"emails.type ne "work""#, &u));
    assert!(user_matches(r#"emails.type ne "other""#, &u));
}

#[test]
fn presence() {
    let u = bjensen();
    assert!(user_matches("title pr", &u));
    assert!(user_matches("emails pr", &u));
    assert!(user_matches("emails.value pr", &u));
    assert!(user_matches("name pr", &u));
    assert!(user_matches(&format!("{ENT}:manager pr"), &u));
    assert!(user_matches(&format!("{ENT}:manager.displayName pr"), &u));
    assert!(!user_matches(&format!("{ENT}:division pr"), &u));
    assert!(!user_matches("nickName pr", &u));
    let empty = json!({
        "title": "", "nickName": null, "emails": [], "name": {},
        "phoneNumbers": [{"value": ""}], "addresses": [{"type": null}],
    });
    for a in [
        "title",
        "nickName",
        "emails",
        "name",
        "phoneNumbers",
        "phoneNumbers.value",
        "addresses",
        "userName",
    ] {
        assert!(!user_matches(&format!("{a} pr"), &empty), "{a}");
        assert!(user_matches(&format!("not ({a} pr)"), &empty), "{a}");
    }
}

#[test]
fn multi_valued_any_match() {
    let u = bjensen();
    assert!(user_matches(r#"emails.value eq "babs@jensen.org""#, &u));
    assert!(user_matches(r#"emails eq "BABS@jensen.org""#, &u)); // through `value`
    assert!(user_matches(r#"emails co "jensen.org""#, &u));
    assert!(user_matches(r#"emails.type eq "home""#, &u));
    assert!(!user_matches(r#"emails.type eq "other""#, &u));
    assert!(user_matches(r#"emails.primary eq true"#, &u));
    assert!(user_matches(
        r#"schemas eq "urn:ietf:params:scim:schemas:core:2.0:User""#,
        &u
    ));
    // Case-exact reference: `schemas` is caseExact in the common schema.
    assert!(!user_matches(
        r#"schemas eq "URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER""#,
        &u
    ));
    // Multi-valued attribute given as a single object is still handled.
    let single = json!({"emails": {"value": "a@b.c", "type": "work"}});
    assert!(user_matches(r#"emails.type eq "work""#, &single));
    assert!(user_matches(r#"emails[type eq "work"]"#, &single));
}

#[test]
fn value_path_needs_one_element_to_match_everything() {
    let u = bjensen();
    assert!(user_matches(
        r#"emails[type eq "work" and value co "@example.com"]"#,
        &u
    ));
    // type work is on one element, jensen.org on the other: no single element matches.
    assert!(!user_matches(
        r#"emails[type eq "work" and value co "jensen.org"]"#,
        &u
    ));
    // Whereas the flattened form matches any element for each clause.
    assert!(user_matches(
        r#"emails.type eq "work" and emails.value co "jensen.org""#,
        &u
    ));
    assert!(user_matches(
        r#"emails[type eq "home" and not (primary eq true)]"#,
        &u
    ));
    assert!(user_matches(
        r#"emails[primary eq true or type eq "nope"]"#,
        &u
    ));
    assert!(!user_matches(r#"ims[type eq "work"]"#, &u));
    assert!(!user_matches(r#"phoneNumbers[type pr]"#, &u));
    assert!(user_matches(r#"not (phoneNumbers[type pr])"#, &u));
    // Case-insensitive sub-attribute `type`.
    assert!(user_matches(r#"emails[TYPE eq "WORK"]"#, &u));
}

#[test]
fn extension_attributes() {
    let u = bjensen();
    assert!(user_matches(
        &format!("{ENT}:employeeNumber eq \"701984\""),
        &u
    ));
    assert!(user_matches(
        &format!("{ENT}:manager.value eq \"26118915-6090-4610-87e4-49d8ca9f808d\""),
        &u
    ));
    assert!(user_matches(
        &format!("{ENT}:manager eq \"26118915-6090-4610-87e4-49d8ca9f808d\""),
        &u
    ));
    assert!(user_matches(
        &format!("{ENT}:manager.displayName eq \"john smith\""),
        &u
    ));
    assert!(user_matches(r#"employeeNumber eq "701984""#, &u));
    assert!(user_matches(r#"costCenter sw "41""#, &u));
    // Extension object keyed case-insensitively.
    let lower = json!({ENT.to_lowercase(): {"employeeNumber": "1"}});
    assert!(user_matches(
        &format!("{ENT}:employeeNumber eq \"1\""),
        &lower
    ));
    // Core URN prefix reaches top-level attributes.
    assert!(user_matches(
        r#"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName eq "barbara""#,
        &u
    ));
}

#[test]
fn date_times_compare_as_instants() {
    let u = bjensen(); // lastModified 2011-05-13T04:42:34Z
    assert!(user_matches(
        r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#,
        &u
    ));
    assert!(user_matches(
        r#"meta.lastModified eq "2011-05-13T04:42:34.000Z""#,
        &u
    ));
    assert!(user_matches(
        r#"meta.lastModified gt "2011-05-13T05:00:00+02:00""#,
        &u
    ));
    assert!(user_matches(
        r#"meta.lastModified lt "2011-05-13T04:42:35Z""#,
        &u
    ));
    assert!(!user_matches(
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        &u
    ));
    assert!(user_matches(r#"meta.created lt "2011-01-01T00:00:00""#, &u)); // no zone: UTC
    // Not a date: string comparison.
    assert!(user_matches(r#"meta.lastModified gt "2010""#, &u));
    assert!(user_matches(r#"meta.lastModified sw "2011-05""#, &u));
}

#[test]
fn numbers_and_booleans() {
    let reg = SchemaRegistry::builtin()
        .add_extension(
            ResourceKind::User,
            r#"{"id":"urn:acme:User","name":"Acme","attributes":[
                {"name":"badge","type":"integer"},
                {"name":"score","type":"decimal"},
                {"name":"flags","type":"integer","multiValued":true}]}"#,
            false,
        )
        .unwrap();
    let schema = reg.view(ResourceKind::User);
    let u = json!({"active": false, "urn:acme:User": {"badge": 42, "score": 2.5, "flags": [1, 7]}});
    let m = |f: &str| {
        let f = p(f);
        f.validate(&schema).unwrap();
        f.matches(&schema, &u)
    };
    assert!(m("urn:acme:User:badge eq 42"));
    assert!(m("urn:acme:User:badge eq 42.0"));
    assert!(m("urn:acme:User:badge gt 41.5"));
    assert!(m("urn:acme:User:badge ge 42"));
    assert!(!m("urn:acme:User:badge lt 42"));
    assert!(m("urn:acme:User:badge le 4.2e1"));
    assert!(m("urn:acme:User:badge ne 43"));
    assert!(!m(r#"urn:acme:User:badge eq "42""#)); // types differ
    assert!(m("urn:acme:User:score lt 3"));
    assert!(m("urn:acme:User:score gt -1"));
    assert!(m("urn:acme:User:flags eq 7"));
    assert!(m("urn:acme:User:flags gt 5"));
    assert!(!m("urn:acme:User:flags gt 7"));
    assert!(m("badge eq 42")); // unqualified, one extension defines it
    assert!(m("active eq false"));
    assert!(!m("active eq true"));
    assert!(m("active ne true"));
    assert!(m("active pr")); // false is a value
    assert!(!m(r#"active eq "false""#));
    // Large integers compare exactly.
    let big = json!({"urn:acme:User": {"badge": 9007199254740993_u64}});
    let f = p("urn:acme:User:badge gt 9007199254740992");
    assert!(f.matches(&schema, &big));
}

#[test]
fn matches_element_uses_parent_definitions() {
    let reg = SchemaRegistry::builtin();
    let schema = reg.view(ResourceKind::User);
    let emails = schema.core.attribute("emails").unwrap();
    let e = json!({"value": "Babs@Example.com", "type": "Work", "primary": true});
    assert!(p(r#"type eq "work""#).matches_element(emails, &e));
    assert!(p(r#"value eq "babs@example.com""#).matches_element(emails, &e));
    assert!(p("primary eq true").matches_element(emails, &e));
    assert!(!p("primary eq false").matches_element(emails, &e));
    assert!(p(r#"type eq "work" and primary eq true"#).matches_element(emails, &e));
    assert!(p(r#"display eq null"#).matches_element(emails, &e));
    let group = reg.view(ResourceKind::Group);
    let members = group.core.attribute("members").unwrap();
    let m = json!({"value": "ABC", "type": "User"});
    assert!(p(r#"value eq "abc""#).matches_element(members, &m)); // caseExact false in schema
    assert!(!p(r#"value eq "abd""#).matches_element(members, &m));
    assert!(!p(r#"value eq "abc""#).matches_element(members, &json!("abc")));
}

#[test]
fn group_filters() {
    let reg = SchemaRegistry::builtin();
    let schema = reg.view(ResourceKind::Group);
    let g =
        json!({"id": "g1", "displayName": "Admins", "members": [{"value": "u1"}, {"value": "u2"}]});
    for (f, want) in [
        (r#"displayName eq "admins""#, true),
        (r#"members[value eq "u2"]"#, true),
        (r#"members.value eq "u3""#, false),
        (r#"members eq "u1""#, true),
    ] {
        let f = p(f);
        f.validate(&schema).unwrap();
        assert_eq!(f.matches(&schema, &g), want, "{f}");
    }
    assert!(p(r#"userName eq "x""#).validate(&schema).is_err());
}

#[test]
fn unknown_attributes_still_evaluate_without_panicking() {
    let reg = SchemaRegistry::builtin();
    let schema = reg.view(ResourceKind::User);
    let r = json!({"custom": "Hello", "urn:x:y": {"z": [1, 2]}, "objs": [{"value": "v"}]});
    assert!(p(r#"custom eq "hello""#).matches(&schema, &r));
    assert!(p("urn:x:y:z eq 2").matches(&schema, &r));
    assert!(p(r#"objs eq "v""#).matches(&schema, &r));
    assert!(p(r#"objs[value eq "v"]"#).matches(&schema, &r));
    assert!(!p("custom pr").matches(&schema, &json!("not an object")));
    assert!(!p("custom pr").matches(&schema, &json!(null)));
}

// ------------------------------------------------------------------ properties

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("userName".to_string()),
        Just("emails".to_string()),
        Just("not".to_string()),
        Just("and".to_string()),
        Just("or".to_string()),
        Just("pr".to_string()),
        Just("eq".to_string()),
        Just("true".to_string()),
        Just("$ref".to_string()),
        "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
    ]
}

fn arb_path(with_urn: bool) -> impl Strategy<Value = AttrPath> {
    let urn = if with_urn {
        prop_oneof![
            3 => Just(None),
            1 => Just(Some("urn:ietf:params:scim:schemas:core:2.0:User".to_string())),
            1 => Just(Some(ENT.to_string())),
            1 => Just(Some("urn:a:b.c:1.0".to_string())),
        ]
        .boxed()
    } else {
        Just(None).boxed()
    };
    (urn, arb_name(), proptest::option::of(arb_name())).prop_map(|(urn, attr, sub_attr)| AttrPath {
        urn,
        attr,
        sub_attr,
    })
}

fn arb_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        Just(CompValue::Null),
        any::<bool>().prop_map(CompValue::Bool),
        any::<i64>().prop_map(|n| CompValue::Number(n.into())),
        any::<u64>().prop_map(|n| CompValue::Number(n.into())),
        any::<f64>()
            .prop_filter_map("finite", serde_json::Number::from_f64)
            .prop_map(CompValue::Number),
        any::<String>().prop_map(CompValue::Str),
        "[a-z\"\\\\()\\[\\] ]{0,10}".prop_map(CompValue::Str),
    ]
}

fn arb_op() -> impl Strategy<Value = CompareOp> {
    proptest::sample::select(CompareOp::ALL.to_vec())
}

fn arb_filter_in(in_value: bool) -> BoxedStrategy<Filter> {
    let leaf = prop_oneof![
        (arb_path(!in_value), arb_op(), arb_value())
            .prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
        arb_path(!in_value).prop_map(Filter::Present),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Filter::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Filter::Or(Box::new(l), Box::new(r))),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
    .boxed()
}

fn arb_filter() -> impl Strategy<Value = Filter> {
    let value_path = (arb_path(true), arb_filter_in(true)).prop_map(|(mut path, f)| {
        path.sub_attr = None;
        Filter::ValuePath {
            path,
            filter: Box::new(f),
        }
    });
    let atom = prop_oneof![3 => arb_filter_in(false), 1 => value_path];
    atom.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Filter::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Filter::Or(Box::new(l), Box::new(r))),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", serde_json::Number::from_f64)
            .prop_map(Value::Number),
        "[a-zA-Z0-9@. :-]{0,12}".prop_map(Value::String),
        Just(Value::String("2011-05-13T04:42:34Z".into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("userName".to_string()),
                        Just("emails".to_string()),
                        Just("value".to_string()),
                        Just("type".to_string()),
                        Just("primary".to_string()),
                        Just("name".to_string()),
                        Just("givenName".to_string()),
                        Just("meta".to_string()),
                        Just("lastModified".to_string()),
                        Just("active".to_string()),
                        Just(ENT.to_string()),
                        Just("manager".to_string()),
                        "[a-z]{1,4}",
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Filters over the User schema's real attributes, to exercise typed evaluation.
fn arb_user_filter() -> impl Strategy<Value = Filter> {
    let names = proptest::sample::select(vec![
        "userName",
        "emails",
        "emails.value",
        "emails.type",
        "emails.primary",
        "name.givenName",
        "name",
        "meta.lastModified",
        "active",
        "id",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        "employeeNumber",
        "value",
        "type",
        "primary",
    ]);
    let leaf = prop_oneof![
        (names.clone(), arb_op(), arb_value()).prop_map(|(n, op, value)| Filter::Compare {
            path: AttrPath::parse(n).unwrap(),
            op,
            value
        }),
        names
            .clone()
            .prop_map(|n| Filter::Present(AttrPath::parse(n).unwrap())),
    ];
    let leaf2 = leaf.clone();
    let vp = (
        proptest::sample::select(vec!["emails", "name", "userName", "bogus"]),
        leaf2,
    )
        .prop_map(|(n, f)| Filter::ValuePath {
            path: AttrPath::new(n),
            filter: Box::new(f),
        });
    prop_oneof![3 => leaf, 1 => vp].prop_recursive(3, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Filter::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Filter::Or(Box::new(l), Box::new(r))),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn print_then_parse_is_identity(f in arb_filter()) {
        let printed = f.to_string();
        let reparsed = parse(&printed);
        prop_assert_eq!(reparsed.as_ref().ok(), Some(&f), "printed: {} -> {:?}", printed, reparsed);
    }

    #[test]
    fn patch_path_print_then_parse(attr in arb_path(true), f in arb_filter_in(true), sub in proptest::option::of("[a-zA-Z][a-zA-Z0-9]{0,5}")) {
        let pp = PatchPath { attr: AttrPath { sub_attr: None, ..attr }, filter: Some(f), sub_attr: sub };
        let printed = pp.to_string();
        prop_assert_eq!(parse_patch_path(&printed).ok(), Some(pp), "{}", printed);
    }

    #[test]
    fn parse_never_panics(s in any::<String>()) {
        let _ = parse(&s);
        let _ = parse_patch_path(&s);
    }

    #[test]
    fn parse_never_panics_on_filter_like_soup(
        tokens in prop::collection::vec(prop_oneof![
            Just("("), Just(")"), Just("["), Just("]"), Just("\""), Just("\\"), Just(" "),
            Just("not"), Just("and"), Just("or"), Just("pr"), Just("eq"), Just("gt"),
            Just("userName"), Just("emails"), Just("."), Just(":"), Just("urn:a:b"),
            Just("\"x\""), Just("1"), Just("-"), Just("e5"), Just("true"), Just("null"),
            Just("\\u12"), Just("é"), Just("urn"), Just("urné"),
        ], 0..40)
    ) {
        let s: String = tokens.concat();
        let _ = parse(&s);
        let _ = parse_patch_path(&s);
    }

    #[test]
    fn matches_never_panics(f in arb_user_filter(), v in arb_json()) {
        let reg = SchemaRegistry::builtin();
        let schema = reg.view(ResourceKind::User);
        let _ = f.validate(&schema);
        let _ = f.matches(&schema, &v);
        let emails = schema.core.attribute("emails").unwrap();
        let _ = f.matches_element(emails, &v);
        let _ = f.validate_element(emails);
        // `not` is the exact complement.
        prop_assert_eq!(Filter::Not(Box::new(f.clone())).matches(&schema, &v), !f.matches(&schema, &v));
    }

    #[test]
    fn arbitrary_filters_never_panic_in_evaluation(f in arb_filter(), v in arb_json()) {
        let reg = SchemaRegistry::builtin();
        let schema = reg.view(ResourceKind::User);
        let _ = f.validate(&schema);
        let _ = f.matches(&schema, &v);
    }
}

// ------------------------------------------ properties: input that was never a filter

/// Nodes of a parsed filter (what parsing allocates).
fn node_count(f: &Filter) -> usize {
    match f {
        Filter::Compare { .. } | Filter::Present(_) => 1,
        Filter::Not(x) => 1 + node_count(x),
        Filter::And(l, r) | Filter::Or(l, r) => 1 + node_count(l) + node_count(r),
        Filter::ValuePath { filter, .. } => 1 + node_count(filter),
    }
}

/// A printed filter with tokens inserted and bytes dropped: mostly not a filter any more,
/// sometimes a different one.
fn arb_mangled_filter() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("("),
        Just(")"),
        Just("["),
        Just("]"),
        Just("\""),
        Just(" "),
        Just("not "),
        Just(" and "),
        Just(" or "),
        Just(" pr"),
        Just(" eq "),
        Just("."),
        Just(":"),
        Just("\\"),
        Just("1e999"),
        Just("-0"),
        Just("\u{0}"),
        Just("\u{202e}"),
        Just("é"),
        Just("\u{1F600}"),
        Just("urn:ietf:params:scim:schemas:core:2.0:User:"),
    ];
    (
        arb_filter(),
        prop::collection::vec((any::<prop::sample::Index>(), token), 0..6),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    )
        .prop_map(|(f, inserts, drops)| {
            let mut chars: Vec<char> = f.to_string().chars().collect();
            for (at, t) in inserts {
                let i = at.index(chars.len() + 1);
                chars.splice(i..i, t.chars());
            }
            for at in drops {
                if !chars.is_empty() {
                    let i = at.index(chars.len());
                    chars.remove(i);
                }
            }
            chars.into_iter().collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever string parses prints back to a string that parses to the same filter.
    #[test]
    fn accepted_input_round_trips(s in prop_oneof![arb_mangled_filter(), any::<String>()]) {
        if let Ok(f) = parse(&s) {
            let printed = f.to_string();
            prop_assert_eq!(parse(&printed).ok(), Some(f), "{:?} printed as {:?}", s, printed);
        }
        if let Ok(p) = parse_patch_path(&s) {
            prop_assert_eq!(parse_patch_path(&p.to_string()).ok(), Some(p));
        }
    }

    /// What parsing builds is bounded by the input: at most one node per byte, and never
    /// deeper than the cap.
    #[test]
    fn the_tree_is_bounded_by_the_input(s in arb_mangled_filter()) {
        if let Ok(f) = parse(&s) {
            prop_assert!(node_count(&f) <= s.len(), "{} nodes from {} bytes", node_count(&f), s.len());
        }
    }

    /// Nesting: accepted exactly up to the cap, whatever mix of `(`, `not (` and value
    /// paths makes it, and refused past it without recursing further (no stack overflow at
    /// any depth).
    #[test]
    fn the_depth_cap_holds(
        wrappers in prop::collection::vec(prop_oneof![Just("("), Just("not (")], 0..(MAX_FILTER_DEPTH * 3)),
        in_value_path in any::<bool>(),
    ) {
        let inner = if in_value_path { "emails[type eq \"work\"]" } else { "userName pr" };
        let depth = wrappers.len() + usize::from(in_value_path);
        let s = format!("{}{inner}{}", wrappers.concat(), ")".repeat(wrappers.len()));
        let r = parse(&s);
        prop_assert_eq!(r.is_ok(), depth <= MAX_FILTER_DEPTH, "depth {}: {:?}", depth, r);
        if let Err(e) = r {
            prop_assert!(e.detail.contains("nested too deeply"), "{}", e.detail);
        }
    }

    /// Past the length cap the input is refused before any parsing (the message is about
    /// the length, whatever the bytes).
    #[test]
    fn the_length_cap_holds(extra in 1usize..4096, fill in any::<char>(), head in arb_mangled_filter()) {
        let mut s = head;
        while s.len() <= MAX_FILTER_LEN + extra {
            s.push(fill);
        }
        let e = parse(&s).unwrap_err();
        prop_assert!(e.detail.contains("the limit is"), "{}", e.detail);
        let e = parse_patch_path(&s).unwrap_err();
        prop_assert!(e.detail.contains("the limit is"), "{}", e.detail);
        prop_assert_eq!(e.status, 400);
    }
}
