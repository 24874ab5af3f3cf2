//! `infra/template.yaml` against the code: the operator key stays out of every
//! function's configuration, alarms and the dashboard watch what the code emits, the
//! Cognito rights are the connector's, and every time budget fits in its function's
//! timeout. (The table and queue layout are checked in `provisync-aws`'s unit tests; the
//! DynamoDB and SQS rights in `least_privilege.rs`.)

use std::collections::BTreeSet;
use std::time::Duration;

use provisync_tests::template::{Resource, functions, role_of, s, statements, tagged, template};
use serde_yaml::Value as Y;

fn timeout_of(t: &Y, function: &str) -> Duration {
    let own = &t["Resources"][function]["Properties"]["Timeout"];
    let secs = own
        .as_u64()
        .or_else(|| t["Globals"]["Function"]["Timeout"].as_u64())
        .expect("a timeout");
    Duration::from_secs(secs)
}

/// No function's configuration holds the key (nor any secret): they get the secret's ARN
/// and the right to read that one secret; nothing in the template resolves a secret at
/// deploy time.
#[test]
fn the_operator_key_is_never_in_the_configuration() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/template.yaml"
    ))
    .unwrap();
    assert!(
        !text.contains("{{resolve:"),
        "a dynamic reference would put the secret's value in the configuration"
    );
    let t = template();
    let global = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        tagged(&global["PROVISYNC_SECRET_KEY_ARN"]).map(|(tag, v)| (tag, s(v).to_string())),
        Some(("!Ref".to_string(), "OperatorKeySecretArn".to_string()))
    );
    let param = &t["Parameters"]["OperatorKeySecretArn"];
    assert_eq!(s(&param["Type"]), "String");
    assert!(
        param["Default"].is_null(),
        "no default: the operator names the secret"
    );
    for (function, _) in functions(&t) {
        let own = &t["Resources"][&function]["Properties"]["Environment"]["Variables"];
        for vars in [global, own] {
            for (name, _) in vars.as_mapping().into_iter().flatten() {
                let name = s(name);
                assert!(
                    name == "PROVISYNC_SECRET_KEY_ARN"
                        || !(name.contains("SECRET")
                            || name.contains("TOKEN")
                            || name.contains("PASSWORD")),
                    "{function}: {name} in the environment"
                );
            }
        }
        // The right to read the key: that one secret, only GetSecretValue.
        let rights = statements(&t, &role_of(&t, &function));
        let secret: Vec<_> = rights
            .iter()
            .filter(|st| st.actions.iter().any(|a| a.starts_with("secretsmanager:")))
            .collect();
        assert_eq!(secret.len(), 1, "{function}");
        assert_eq!(
            secret[0].actions,
            ["secretsmanager:GetSecretValue"],
            "{function}"
        );
        assert_eq!(
            secret[0].resource,
            Resource::Named("OperatorKeySecretArn".into()),
            "{function}"
        );
    }
    let deliver = &t["Resources"]["QueueDeliverFunction"]["Properties"];
    assert_eq!(
        tagged(&deliver["Environment"]["Variables"]["PROVISYNC_MAX_RECEIVE_COUNT"])
            .map(|(tag, v)| (tag, s(v).to_string())),
        Some(("!Ref".to_string(), "MaxReceiveCount".to_string()))
    );
}

/// Each function has a role of its own with its own log group (so nothing is granted
/// behind the template's back, such as SAM's policies for the SQS event).
#[test]
fn every_function_has_its_own_role_and_logs() {
    let t = template();
    let mut roles = BTreeSet::new();
    for (function, _) in functions(&t) {
        let p = &t["Resources"][&function]["Properties"];
        assert!(
            p["Policies"].is_null(),
            "{function}: rights belong in its role"
        );
        let role = role_of(&t, &function);
        assert!(roles.insert(role.clone()), "{function} shares {role}");
        let logs = tagged(&p["LoggingConfig"]["LogGroup"]).map(|(_, v)| s(v).to_string());
        assert_eq!(
            logs.as_deref(),
            Some(format!("{}Logs", function.trim_end_matches("Function")).as_str())
        );
        assert!(
            !t["Resources"][format!("{}Logs", function.trim_end_matches("Function"))]["Properties"]
                ["RetentionInDays"]
                .is_null()
        );
    }
}

/// `sam build` builds each function from its own crate's folder: its `CodeUri` is the
/// package whose binary it names, so cargo builds that package alone, with its own
/// features. (From the workspace root `cargo lambda build --bin` looks only in the
/// default member, the CLI, and `make deploy` failed that way.)
#[test]
fn every_function_builds_from_its_own_crate() {
    let t = template();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut built = BTreeSet::new();
    for (function, _) in functions(&t) {
        let r = &t["Resources"][&function];
        assert_eq!(
            s(&r["Metadata"]["BuildMethod"]),
            "rust-cargolambda",
            "{function}"
        );
        let binary = s(&r["Metadata"]["BuildProperties"]["Binary"]).to_string();
        let uri = s(&r["Properties"]["CodeUri"]).to_string();
        assert_eq!(uri, format!("../functions/{binary}"), "{function}");
        let manifest = std::fs::read_to_string(root.join("infra").join(&uri).join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("{function}: {uri}/Cargo.toml: {e}"));
        let manifest: toml::Table = manifest.parse().expect("Cargo.toml");
        assert_eq!(
            manifest["package"]["name"].as_str(),
            Some(binary.as_str()),
            "{function}: {uri} is not the package {binary}"
        );
        assert!(built.insert(binary), "{function}: built twice");
    }
    assert_eq!(built.len(), 5, "{built:?}");
}

/// Alarms: dead letters, and errors and throttles of every function, all to the alarm
/// topic (the stack's own unless one is given), with an optional e-mail subscription.
#[test]
fn alarms_watch_dead_letters_errors_and_throttles() {
    let t = template();
    let topic = |v: &Y| -> bool {
        // [!If [CreateAlarmTopic, !Ref AlarmTopic, !Ref AlarmTopicArn]]
        let Some((tag, args)) = v.as_sequence().and_then(|a| a.first()).and_then(tagged) else {
            return false;
        };
        tag == "!If"
            && s(&args[0]) == "CreateAlarmTopic"
            && tagged(&args[1]).map(|(_, v)| s(v).to_string()).as_deref() == Some("AlarmTopic")
            && tagged(&args[2]).map(|(_, v)| s(v).to_string()).as_deref() == Some("AlarmTopicArn")
    };
    let mut watched = BTreeSet::new();
    for (id, r) in t["Resources"].as_mapping().unwrap() {
        if r["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        let p = &r["Properties"];
        assert!(
            topic(&p["AlarmActions"]),
            "{id:?} does not notify the topic"
        );
        assert_eq!(
            s(&p["ComparisonOperator"]),
            "GreaterThanThreshold",
            "{id:?}"
        );
        assert_eq!(p["Threshold"].as_u64(), Some(0), "{id:?}");
        let dim = &p["Dimensions"][0];
        let on = tagged(&dim["Value"])
            .map(|(_, v)| s(v).to_string())
            .unwrap_or_default();
        watched.insert((s(&p["MetricName"]).to_string(), on));
    }
    let mut want = BTreeSet::new();
    want.insert((
        "ApproximateNumberOfMessagesVisible".to_string(),
        "DeadLetterQueue.QueueName".to_string(),
    ));
    for (function, _) in functions(&t) {
        want.insert(("Errors".to_string(), function.clone()));
        want.insert(("Throttles".to_string(), function.clone()));
    }
    assert_eq!(watched, want);
    assert_eq!(
        s(&t["Resources"]["AlarmTopic"]["Condition"]),
        "CreateAlarmTopic"
    );
    let sub = &t["Resources"]["AlarmEmailSubscription"];
    assert_eq!(s(&sub["Condition"]), "HasAlarmEmail");
    assert_eq!(s(&sub["Properties"]["Protocol"]), "email");
    assert_eq!(s(&t["Parameters"]["AlarmTopicArn"]["Default"]), "");
    assert_eq!(s(&t["Parameters"]["AlarmEmail"]["Default"]), "");
}

/// The dashboard shows only metrics the code emits (namespace `Provisync`, the names of
/// `provisync_aws::metrics`), and the delivery outcomes are all on it.
#[test]
fn the_dashboard_shows_what_the_code_emits() {
    let t = template();
    let body = &t["Resources"]["Dashboard"]["Properties"]["DashboardBody"];
    let (tag, text) = tagged(body).expect("!Sub");
    assert_eq!(tag, "!Sub");
    let text = s(text);
    // The body is JSON once the ${...} substitutions are made.
    let mut substituted = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        substituted.push_str(&rest[..at]);
        substituted.push('X');
        rest = rest[at..].split_once('}').map_or("", |(_, after)| after);
    }
    substituted.push_str(rest);
    let json: serde_json::Value = serde_json::from_str(&substituted)
        .unwrap_or_else(|e| panic!("the dashboard body is not JSON: {e}"));
    assert!(json["widgets"].as_array().is_some_and(|w| !w.is_empty()));
    let mut used = BTreeSet::new();
    for part in text.split("MetricName=\\\"").skip(1) {
        used.insert(part.split('\\').next().unwrap_or_default().to_string());
    }
    for part in text.split("[\"Provisync\", \"").skip(1) {
        used.insert(part.split('"').next().unwrap_or_default().to_string());
    }
    let emitted: BTreeSet<String> = provisync_aws::metrics::ALL_METRICS
        .iter()
        .map(|m| m.to_string())
        .collect();
    let unknown: Vec<&String> = used.difference(&emitted).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard shows metrics nobody emits: {unknown:?}"
    );
    for m in [
        "Delivered",
        "Retried",
        "Failed",
        "Dead",
        "DeliveryLatency",
        "ReconcileCreated",
    ] {
        assert!(used.contains(m), "{m} is not on the dashboard");
    }
}

/// Every time budget of the code fits in its function's timeout: a `queue-deliver` record
/// can make one full connector call and still answer; a scheduled cycle ends, with its
/// grace and margin, before `scheduled-sync`'s timeout; an AWS call gives up before any
/// function's timeout.
#[test]
fn budgets_fit_in_the_timeouts() {
    use provisync_aws::lambda::{DeadlinePolicy, SCHEDULE_ANSWER_MARGIN};
    use provisync_core::connector::http::DEFAULT_REQUEST_TIMEOUT;
    use provisync_core::sync::PHASE_GRACE;
    use provisync_core::sync::schedule::CYCLE_BUDGET;
    let t = template();
    let deliver = timeout_of(&t, "QueueDeliverFunction");
    let policy = DeadlinePolicy::DEFAULT;
    assert!(policy.start_margin >= DEFAULT_REQUEST_TIMEOUT);
    assert!(
        policy.start_margin + policy.finish_margin < deliver,
        "{policy:?} in {deliver:?}"
    );
    assert_eq!(
        deliver.as_secs(),
        u64::from(provisync_aws::queue::DELIVER_FUNCTION_TIMEOUT_SECS)
    );
    let schedule = timeout_of(&t, "ScheduledSyncFunction");
    assert!(CYCLE_BUDGET + PHASE_GRACE + SCHEDULE_ANSWER_MARGIN <= schedule);
    for (function, _) in functions(&t) {
        assert!(
            provisync_aws::SDK_OPERATION_TIMEOUT < timeout_of(&t, &function),
            "{function}"
        );
    }
    // The HTTP API answers within 30 s: the API functions stop before.
    for f in [
        "ScimApiFunction",
        "WebhookIngestFunction",
        "AdminApiFunction",
    ] {
        assert!(timeout_of(&t, f) < Duration::from_secs(30), "{f}");
    }
}

/// The Cognito policy: exactly the actions docs/connectors.md lists, on the pools of
/// `CognitoUserPoolArns` only, attached (when the parameter is set) to the roles of the
/// functions that deliver and test, and to no other.
#[test]
fn cognito_rights_are_the_connectors() {
    let t = template();
    let param = &t["Parameters"]["CognitoUserPoolArns"];
    assert_eq!(s(&param["Type"]), "CommaDelimitedList");
    assert_eq!(s(&param["Default"]), "");
    let policy = &t["Resources"]["CognitoTargetsPolicy"];
    assert_eq!(s(&policy["Type"]), "AWS::IAM::ManagedPolicy");
    assert_eq!(s(&policy["Condition"]), "HasCognitoPools");
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(
        tagged(&statements[0]["Resource"]).map(|(tag, v)| (tag, s(v).to_string())),
        Some(("!Ref".to_string(), "CognitoUserPoolArns".to_string()))
    );
    let mut actions: Vec<&str> = statements[0]["Action"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    let docs = include_str!("../docs/connectors.md");
    let section = docs
        .split("## AWS Cognito user pools")
        .nth(1)
        .and_then(|d| d.split("\n## ").next())
        .unwrap();
    let mut documented: Vec<&str> = section
        .lines()
        .map(|l| l.trim().trim_end_matches(',').trim_matches('"'))
        .filter(|l| l.starts_with("cognito-idp:"))
        .collect();
    actions.sort_unstable();
    documented.sort_unstable();
    assert_eq!(actions, documented);

    let attached = |function: &str| -> bool {
        let arns = &t["Resources"][role_of(&t, function)]["Properties"]["ManagedPolicyArns"];
        match tagged(arns) {
            None => false,
            Some((tag, args)) => {
                assert_eq!(tag, "!If");
                assert_eq!(s(&args[0]), "HasCognitoPools");
                let yes = args[1].as_sequence().expect("a list");
                assert_eq!(
                    tagged(&yes[0]).map(|(_, v)| s(v).to_string()).as_deref(),
                    Some("CognitoTargetsPolicy")
                );
                assert_eq!(
                    tagged(&args[2]).map(|(_, v)| s(v).to_string()).as_deref(),
                    Some("AWS::NoValue")
                );
                true
            }
        }
    };
    for f in [
        "QueueDeliverFunction",
        "ScheduledSyncFunction",
        "AdminApiFunction",
    ] {
        assert!(attached(f), "{f} lacks the Cognito policy");
    }
    for f in ["ScimApiFunction", "WebhookIngestFunction"] {
        assert!(!attached(f), "{f} must not get Cognito rights");
    }
}
