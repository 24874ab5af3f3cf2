//! Import and export (`provisync import` / `export`, whose work is `provisync_transfer`):
//! a CSV of 1,000 users with bad rows into a running hub (SCIM `/Bulk`) and straight into
//! the store, on both stores; the report of rejected rows; export then import round trips
//! (CSV and JSON); `--update-existing`; `--dry-run`.

use provisync_core::directory::Directory;
use provisync_scim::SchemaRegistry;
use provisync_tests::{Backend, Hub, TOKEN, USER_SCHEMA, backend_store};
use provisync_transfer::{
    self as transfer, self, CsvExport, DirectorySink, ImportOptions, ImportSink, JsonExport,
    ScimSink,
};
use serde_json::json;

/// 1,000 rows: four bad ones (missing userName, bad e-mail, a duplicate in the file, one
/// that exists in the hub already).
fn thousand_rows() -> String {
    let mut csv = String::from("userName,name.givenName,name.familyName,email,active,title\n");
    for i in 0..1000 {
        let row = match i {
            100 => ",No,Name,noname@example.org,true,\n".to_string(),
            200 => "user0200,Bad,Mail,user0200-at-example.org,true,\n".to_string(),
            300 => "USER0001,Dup,Row,dup@example.org,true,\n".to_string(),
            400 => "existing,Ex,Isting,existing@example.org,true,\n".to_string(),
            _ => format!(
                "user{i:04},Given{i},Family{i},user{i:04}@example.org,{},Engineer\n",
                i % 7 != 0
            ),
        };
        csv.push_str(&row);
    }
    csv
}

async fn import_csv(
    sink: &dyn ImportSink,
    csv: &str,
    opts: ImportOptions,
) -> (transfer::ImportSummary, String) {
    let rows = transfer::read_csv(csv.as_bytes(), None).unwrap();
    let (good, mut rejected) = transfer::check_rows(rows);
    let mut last = 0;
    let (summary, more) = transfer::import_rows(sink, &good, opts, |done| {
        assert!(done > last, "progress moves forward");
        last = done;
    })
    .await;
    assert_eq!(last, good.len(), "progress reaches the end");
    rejected.extend(more);
    let mut report = Vec::new();
    transfer::write_report(&mut report, &rejected).unwrap();
    (summary, String::from_utf8(report).unwrap())
}

const EXPECTED_REPORT: &str = "line,userName,reason\n\
102,,missing userName\n\
202,user0200,\"bad email \"\"user0200-at-example.org\"\"\"\n\
302,USER0001,duplicate userName in the file (first on line 3)\n\
402,existing,exists in the hub (same userName or externalId): use --update-existing\n";

/// Against the hub's SCIM API on the embedded store (the store-level import below runs on
/// both stores; three passes of 1,000 users through the emulated DynamoDB take minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_into_a_running_hub() {
    let hub = Hub::start(Backend::Embedded).await.unwrap();
    hub.user("existing").await;
    let sink = ScimSink::new(&hub.base, TOKEN);
    let opts = ImportOptions {
        batch: 250,
        ..Default::default()
    };
    // A dry run writes nothing and says the same.
    let (dry, report) = import_csv(
        &sink,
        &thousand_rows(),
        ImportOptions {
            dry_run: true,
            ..opts
        },
    )
    .await;
    assert_eq!(report, EXPECTED_REPORT);
    assert_eq!((dry.created, dry.rejected), (996, 1), "{dry:?}");
    assert_eq!(hub.get("/Users?count=1").await.total(), 1);

    let (summary, report) = import_csv(&sink, &thousand_rows(), opts).await;
    assert_eq!(report, EXPECTED_REPORT);
    assert_eq!(
        (summary.rows, summary.created, summary.updated),
        (997, 996, 0),
        "{summary:?}"
    );
    assert_eq!(hub.get("/Users?count=1").await.total(), 997);
    let r = hub
        .get("/Users?filter=userName%20eq%20%22user0999%22")
        .await;
    let u = &r.resources()[0];
    assert_eq!(u["name"]["givenName"], "Given999");
    assert_eq!(u["emails"][0]["value"], "user0999@example.org");
    assert_eq!(u["active"], true);
    assert_eq!(u["title"], "Engineer");

    // Again with --update-existing and one changed row: that one and `existing` (created
    // with a userName only, now given the file's name and e-mail) are updated.
    let changed = thousand_rows().replace(
        "user0500,Given500,Family500,user0500@example.org,true,Engineer",
        "user0500,Given500,Family500,user0500@example.org,true,Manager",
    );
    let (summary, _) = import_csv(
        &sink,
        &changed,
        ImportOptions {
            update_existing: true,
            ..opts
        },
    )
    .await;
    assert_eq!(
        (
            summary.created,
            summary.updated,
            summary.unchanged,
            summary.rejected
        ),
        (0, 2, 995, 0),
        "{summary:?}"
    );
    let r = hub
        .get("/Users?filter=userName%20eq%20%22user0500%22")
        .await;
    assert_eq!(r.resources()[0]["title"], "Manager");
}

async fn import_into_the_store(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let directory = Directory::new(store, SchemaRegistry::builtin());
    directory
        .create(
            provisync_scim::ResourceKind::User,
            &json!({"schemas": [USER_SCHEMA], "userName": "existing"}),
        )
        .await
        .unwrap();
    let sink = DirectorySink::new(directory.clone());
    let (summary, report) = import_csv(&sink, &thousand_rows(), ImportOptions::default()).await;
    assert_eq!(report, EXPECTED_REPORT);
    assert_eq!(summary.created, 996, "{summary:?}");
    let mut n = 0;
    directory
        .scan(provisync_scim::ResourceKind::User, |_| n += 1)
        .await
        .unwrap();
    assert_eq!(n, 997);
    // Lookups by userName work for batch-created users (their uniqueness keys exist).
    let again = sink
        .find(&json!({"userName": "USER0042"}))
        .await
        .unwrap()
        .expect("found");
    assert_eq!(again.1["name"]["familyName"], "Family42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_into_the_store_embedded() {
    import_into_the_store(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_into_the_store_dynamodb() {
    import_into_the_store(Backend::DynamoDb).await;
}

async fn export_csv(sink: &ScimSink, filter: Option<&str>) -> String {
    let mut buf = Vec::new();
    let mut w = CsvExport::new(&mut buf).unwrap();
    sink.each_user(filter, |u| w.user(u)).await.unwrap();
    w.finish().unwrap();
    String::from_utf8(buf).unwrap()
}

async fn export_json(sink: &ScimSink) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = JsonExport::new(&mut buf).unwrap();
    sink.each_user(None, |u| w.user(u)).await.unwrap();
    w.finish().unwrap();
    buf
}

/// Export from one hub, import into an empty one, export again: the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_round_trips() {
    let a = Hub::start(Backend::Embedded).await.unwrap();
    let b = Hub::start(Backend::Embedded).await.unwrap();
    let c = Hub::start(Backend::Embedded).await.unwrap();
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    for i in 0..40 {
        let r = a
            .post(
                "/Users",
                &json!({"schemas": [USER_SCHEMA, ent], "userName": format!("rt{i:02}"),
                    "externalId": format!("ext-{i}"), "displayName": format!("Round Trip {i}"),
                    "name": {"givenName": "Round", "familyName": format!("Trip {i}")},
                    "emails": [{"value": format!("rt{i}@example.org"), "type": "work", "primary": true}],
                    "active": i % 3 != 0, "title": "Tester", "password": "Secret-123!",
                    ent: {"department": "QA", "employeeNumber": format!("{i}")}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let from_a = ScimSink::new(&a.base, TOKEN);
    let csv = export_csv(&from_a, None).await;
    assert_eq!(csv.lines().count(), 41);
    assert!(
        !csv.to_lowercase().contains("secret-123"),
        "no passwords in exports"
    );
    // A filter exports only what matches.
    let inactive = export_csv(&from_a, Some("active eq false")).await;
    assert_eq!(inactive.lines().count(), 1 + 14);

    // CSV into hub b.
    let to_b = ScimSink::new(&b.base, TOKEN);
    let (summary, report) = import_csv(&to_b, &csv, ImportOptions::default()).await;
    assert_eq!(summary.created, 40, "{report}");
    assert_eq!(export_csv(&to_b, None).await, csv);

    // JSON into hub c.
    let json_a = export_json(&from_a).await;
    assert!(
        !String::from_utf8_lossy(&json_a)
            .to_lowercase()
            .contains("secret-123")
    );
    let rows = transfer::read_json(&json_a).unwrap();
    let (good, bad) = transfer::check_rows(rows);
    assert!(bad.is_empty());
    let to_c = ScimSink::new(&c.base, TOKEN);
    let (summary, _) = transfer::import_rows(&to_c, &good, ImportOptions::default(), |_| {}).await;
    assert_eq!(summary.created, 40);
    // Same users, new ids: compare without id.
    let strip = |bytes: &[u8]| -> Vec<serde_json::Value> {
        let mut v: Vec<serde_json::Value> = serde_json::from_slice(bytes).unwrap();
        for u in &mut v {
            u.as_object_mut().unwrap().remove("id");
        }
        v
    };
    assert_eq!(strip(&export_json(&to_c).await), strip(&json_a));
}

/// `userName,externalId,…` rows `emp000`.. with `externalId` `hr-{i}`; `title(i)` gives
/// each row's title, `name(i)` its userName.
fn staff_rows(
    n: usize,
    name: impl Fn(usize) -> String,
    title: impl Fn(usize) -> &'static str,
) -> String {
    let mut csv = String::from("userName,externalId,name.givenName,name.familyName,email,title\n");
    for i in 0..n {
        csv.push_str(&format!(
            "{},hr-{i},Given{i},Family{i},emp{i:03}@example.org,{}\n",
            name(i),
            title(i)
        ));
    }
    csv
}

/// Against a running hub (through a recording proxy), `--update-existing` and `--dry-run`
/// look existing users up a batch at a time (`userName eq … or …`, `externalId eq … or
/// …`) and replace them through `/Bulk`: a handful of requests, not one or two per row.
/// Matching: `externalId` first (a renamed user is found by it), then `userName`.
async fn remote_import_batches_lookups(backend: Backend) {
    let Some(hub) = Hub::start(backend).await else {
        return;
    };
    let proxy = provisync_tests::proxy::RecordingProxy::start(&hub.base).await;
    let sink = ScimSink::new(&format!("{}/scim/v2", proxy.origin), TOKEN);
    let emp = |i: usize| format!("emp{i:03}");
    // 80 users in the hub already.
    let first = staff_rows(80, emp, |_| "Engineer");
    let (s, report) = import_csv(&sink, &first, ImportOptions::default()).await;
    assert_eq!((s.created, s.rejected), (80, 0), "{report}");

    // The file: 200 rows; rows 0..5 get a new title, row 7 a new userName (same
    // externalId), the rest of the first 80 are unchanged, 120 are new.
    let file = staff_rows(
        200,
        |i| if i == 7 { "renamed007".into() } else { emp(i) },
        |i| if i < 5 { "Manager" } else { "Engineer" },
    );
    let opts = ImportOptions {
        update_existing: true,
        dry_run: true,
        ..Default::default()
    };
    proxy.clear();
    let (dry, report) = import_csv(&sink, &file, opts).await;
    assert_eq!(
        (dry.created, dry.updated, dry.unchanged, dry.rejected),
        (120, 6, 74, 0),
        "{dry:?} {report}"
    );
    let requests = proxy.requests();
    assert!(
        proxy.writes().is_empty(),
        "a dry run writes nothing: {requests:?}"
    );
    assert!(
        requests.len() <= 4,
        "one batch: a lookup by externalId and one by userName, not one per row: {requests:?}"
    );
    assert_eq!(hub.get("/Users?count=1").await.total(), 80);

    proxy.clear();
    let (s, report) = import_csv(
        &sink,
        &file,
        ImportOptions {
            dry_run: false,
            ..opts
        },
    )
    .await;
    assert_eq!(
        (s.created, s.updated, s.unchanged, s.rejected),
        (120, 6, 74, 0),
        "{s:?} {report}"
    );
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .all(|(m, p)| m == "GET" || (m == "POST" && p.ends_with("/Bulk"))),
        "creates and replaces go through /Bulk: {requests:?}"
    );
    // Two /Bulk of creates (100 a request), one of replaces, and the lookups.
    assert_eq!(proxy.writes().len(), 3, "{requests:?}");
    assert!(requests.len() <= 7, "{requests:?}");
    assert_eq!(hub.get("/Users?count=1").await.total(), 200);
    let r = hub.get("/Users?filter=userName%20eq%20%22emp003%22").await;
    assert_eq!(r.resources()[0]["title"], "Manager");
    let r = hub.get("/Users?filter=externalId%20eq%20%22hr-7%22").await;
    assert_eq!(r.resources()[0]["userName"], "renamed007");

    // The same file again: nothing to do, except for one row without its externalId
    // and its userName in capitals: found by userName, case-insensitively (RFC 7643
    // §4.1.1), so an update (of the capitals), not a create.
    let again = file.replace("emp150,hr-150", "EMP150,");
    let (s, _) = import_csv(&sink, &again, opts).await;
    assert_eq!(
        (s.created, s.updated, s.unchanged, s.rejected),
        (0, 1, 199, 0),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_import_batches_lookups_embedded() {
    remote_import_batches_lookups(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_import_batches_lookups_dynamodb() {
    remote_import_batches_lookups(Backend::DynamoDb).await;
}

/// `provisync export` from a running hub pages by cursor (the hub announces cursors): each
/// page reads one page of the directory, and every user comes once, filtered or not.
async fn export_pages_by_cursor(backend: Backend) {
    let Some(store) = backend_store(backend).await else {
        return;
    };
    let hub = Hub::start_on(store.clone()).await;
    let dir = Directory::new(store, SchemaRegistry::builtin());
    let bodies: Vec<_> = (0..1100)
        .map(|i| {
            json!({"schemas": [USER_SCHEMA], "userName": format!("exp{i:04}"),
                   "title": if i % 3 == 0 { "Engineer" } else { "Clerk" }})
        })
        .collect();
    for r in dir
        .create_batch(
            provisync_scim::ResourceKind::User,
            &bodies,
            provisync_core::event::Origin::Import,
            false,
        )
        .await
    {
        r.unwrap();
    }
    let proxy = provisync_tests::proxy::RecordingProxy::start(&hub.base).await;
    let sink = ScimSink::new(&format!("{}/scim/v2", proxy.origin), TOKEN);
    let csv = export_csv(&sink, None).await;
    let names: std::collections::HashSet<&str> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    assert_eq!(names.len(), 1100);
    assert_eq!(csv.lines().count(), 1101, "each user once");
    let lists: Vec<String> = proxy
        .urls()
        .into_iter()
        .filter(|u| u.contains("/Users?"))
        .collect();
    assert_eq!(lists.len(), 3, "pages of 500: {lists:?}");
    assert!(lists.iter().all(|u| u.contains("cursor=")), "{lists:?}");
    assert!(!lists.iter().any(|u| u.contains("startIndex")), "{lists:?}");

    let engineers = export_csv(&sink, Some(r#"title eq "Engineer""#)).await;
    assert_eq!(engineers.lines().count(), 1 + 367);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_pages_by_cursor_embedded() {
    export_pages_by_cursor(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_pages_by_cursor_dynamodb() {
    export_pages_by_cursor(Backend::DynamoDb).await;
}

/// #20 item 6: the documented round trip (`export --format csv`, then `import
/// --update-existing --dry-run` of that file) is a no-op for users as the quick start and
/// IdPs create them: an e-mail without `type`, one marked primary only, none at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_export_reimports_as_a_no_op() {
    let hub = Hub::start(Backend::Embedded).await.unwrap();
    for user in [
        json!({"userName": "ada@example.org", "name": {"givenName": "Ada"}}),
        json!({"userName": "grace", "emails": [{"value": "grace@example.org"}]}),
        json!({"userName": "edsger", "emails": [{"value": "Edsger@Example.org", "primary": true},
            {"value": "ewd@home.example", "type": "home"}]}),
        json!({"userName": "alan", "emails": [{"value": "alan@example.org", "type": "work", "primary": true}]}),
    ] {
        let mut user = user;
        user["schemas"] = json!([USER_SCHEMA]);
        let r = hub.post("/Users", &user).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let sink = ScimSink::new(&hub.base, TOKEN);
    let csv = export_csv(&sink, None).await;
    let opts = ImportOptions {
        update_existing: true,
        dry_run: true,
        ..Default::default()
    };
    let (s, report) = import_csv(&sink, &csv, opts).await;
    assert_eq!(
        (s.created, s.updated, s.unchanged, s.rejected),
        (0, 0, 4, 0),
        "{s:?} {report}\n{csv}"
    );
    // A changed address is still a change.
    let changed = csv.replace("grace@example.org", "grace.hopper@example.org");
    let (s, report) = import_csv(&sink, &changed, opts).await;
    assert_eq!((s.updated, s.unchanged), (1, 3), "{s:?} {report}");
}
