use super::*;
use crate::rows::user_name;
use provisync_scim::schema::USER_SCHEMA;
use serde_json::json;

#[test]
fn csv_rows_with_mapping_and_checks() {
    let csv = "Login,E-Mail,First,Last,active,department\n\
                   alice,alice@example.org,Alice,A,true,Sales\n\
                   ,nobody@example.org,,,,\n\
                   bob,not-an-email,Bob,B,false,\n\
                   ALICE,alice2@example.org,,,,\n\
                   carol,carol@example.org,Carol,C,no,\n";
    let map = ColumnMap::parse_toml(
        r#"[columns]
Login = "userName"
"E-Mail" = "email"
First = "name.givenName"
Last = "name.familyName"
department = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
"#,
    )
    .unwrap();
    let rows = read_csv(csv.as_bytes(), Some(&map)).unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0].line, 2);
    assert_eq!(rows[0].user["name"]["givenName"], "Alice");
    assert_eq!(rows[0].user["active"], true);
    assert_eq!(
        rows[0].user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "Sales"
    );
    let (good, bad) = check_rows(rows);
    assert_eq!(
        good.iter().map(|r| user_name(&r.user)).collect::<Vec<_>>(),
        ["alice", "carol"]
    );
    let reasons: Vec<(usize, &str)> = bad.iter().map(|r| (r.line, r.reason.as_str())).collect();
    assert_eq!(reasons[0], (3, "missing userName"));
    assert_eq!(reasons[1], (4, "bad email \"not-an-email\""));
    assert_eq!(
        reasons[2],
        (5, "duplicate userName in the file (first on line 2)")
    );
    assert!(ColumnMap::parse_toml("[columns]\nx = \"not a path!\"").is_err());
}

#[test]
fn export_then_read_back() {
    let user = json!({"schemas": [USER_SCHEMA], "id": "1", "userName": "a",
            "name": {"givenName": "A", "familyName": "Z"}, "active": false,
            "emails": [{"value": "a@x.org", "type": "work", "primary": true}],
            "meta": {"version": "W/\"1\""}});
    let mut buf = Vec::new();
    let mut w = CsvExport::new(&mut buf).unwrap();
    w.user(&user).unwrap();
    w.finish().unwrap();
    let rows = read_csv(buf.as_slice(), None).unwrap();
    assert_eq!(rows[0].user["userName"], "a");
    assert_eq!(rows[0].user["active"], false);
    assert_eq!(rows[0].user["emails"], user["emails"]);
    assert_eq!(rows[0].user["name"], user["name"]);
    let mut buf = Vec::new();
    let mut w = JsonExport::new(&mut buf).unwrap();
    w.user(&user).unwrap();
    w.finish().unwrap();
    let rows = read_json(&buf).unwrap();
    assert!(rows[0].user.get("id").is_none() && rows[0].user.get("meta").is_none());
    assert_eq!(rows[0].user["name"], user["name"]);
}

#[test]
fn emails() {
    for ok in ["a@b.co", "first.last+tag@example.org"] {
        assert!(email_ok(ok), "{ok}");
    }
    for bad in [
        "", "a", "a@b", "@b.co", "a@@b.co", "a b@c.co", "a@b.co.", "a@.co",
    ] {
        assert!(!email_ok(bad), "{bad}");
    }
}
