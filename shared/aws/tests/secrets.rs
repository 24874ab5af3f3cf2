//! The operator key read from Secrets Manager on the moto emulator (`PROVISYNC_TEST_MOTO`,
//! set by `scripts/test-env.sh`). Skips without it unless `PROVISYNC_REQUIRE_PEERS` is set.

use provisync_aws::AwsClients;
use provisync_aws::secrets::{SecretError, operator_key};
use provisync_core::crypto::SecretBox;

async fn clients() -> Option<AwsClients> {
    let Some(endpoint) = std::env::var("PROVISYNC_TEST_MOTO")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        assert!(
            std::env::var_os("PROVISYNC_REQUIRE_PEERS").is_none(),
            "PROVISYNC_TEST_MOTO is not set but PROVISYNC_REQUIRE_PEERS is: run through scripts/test-env.sh"
        );
        eprintln!("skipped: PROVISYNC_TEST_MOTO not set (run through scripts/test-env.sh)");
        return None;
    };
    Some(AwsClients::for_endpoint(&endpoint).await)
}

fn name(what: &str) -> String {
    format!("provisync-test/{what}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn the_operator_key_is_read_from_its_secret() {
    let Some(c) = clients().await else { return };
    let (sealer, encoded) = SecretBox::generate();
    // As `openssl rand -base64 32` writes it: with a line end.
    let arn = c
        .secrets
        .create_secret()
        .name(name("key"))
        .secret_string(format!("{encoded}\n"))
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let key = operator_key(&c.secrets, &arn).await.expect("the key");
    // The same key: what one seals, the other opens.
    assert_eq!(key.open(&sealer.seal("hunter2")).unwrap(), "hunter2");
}

#[tokio::test]
async fn a_missing_or_wrong_secret_is_a_clear_error_without_its_value() {
    let Some(c) = clients().await else { return };
    // No such secret.
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf";
    let e = operator_key(&c.secrets, missing).await.unwrap_err();
    assert!(matches!(e, SecretError::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("ResourceNotFoundException"), "{e}");
    assert!(e.to_string().contains(missing), "{e}");
    // Not a key (a password someone pasted): refused, the value never quoted.
    let arn = c
        .secrets
        .create_secret()
        .name(name("not-a-key"))
        .secret_string("correct horse battery staple")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let e = operator_key(&c.secrets, &arn).await.unwrap_err();
    assert!(matches!(e, SecretError::NotAKey { .. }), "{e:?}");
    assert!(!e.to_string().contains("horse"), "{e}");
    // A binary secret: the key is stored as text.
    let arn = c
        .secrets
        .create_secret()
        .name(name("binary"))
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![7u8; 32]))
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let e = operator_key(&c.secrets, &arn).await.unwrap_err();
    assert!(matches!(e, SecretError::NotText { .. }), "{e:?}");
}

/// The clients the functions build from the Lambda environment alone
/// (`AwsClients::from_lambda_vars`, no profile or metadata providers) sign and reach every
/// service the functions call: the key from Secrets Manager, DynamoDB and SQS.
#[tokio::test]
async fn lambda_environment_clients_reach_every_service() {
    let Some(c) = clients().await else { return };
    let Some(endpoint) = std::env::var("PROVISYNC_TEST_MOTO").ok() else {
        return;
    };
    let (sealer, encoded) = SecretBox::generate();
    let arn = c
        .secrets
        .create_secret()
        .name(name("lambda"))
        .secret_string(encoded)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let vars = |k: &str| {
        match k {
            "AWS_REGION" => Some("us-east-1"),
            "AWS_ACCESS_KEY_ID" => Some("testing"),
            "AWS_SECRET_ACCESS_KEY" => Some("testing"),
            "AWS_SESSION_TOKEN" => Some("session"),
            "AWS_ENDPOINT_URL" => Some(endpoint.as_str()),
            _ => None,
        }
        .map(str::to_string)
    };
    let l = AwsClients::from_lambda_vars(vars).expect("clients");
    let key = operator_key(&l.secrets, &arn).await.expect("the key");
    assert_eq!(key.open(&sealer.seal("hunter2")).unwrap(), "hunter2");
    l.dynamodb
        .list_tables()
        .limit(1)
        .send()
        .await
        .expect("DynamoDB");
    l.sqs.list_queues().send().await.expect("SQS");

    // What a function cannot start without is named, and nothing secret is shown.
    let e = AwsClients::from_lambda_vars(|k| if k == "AWS_REGION" { None } else { vars(k) })
        .unwrap_err()
        .to_string();
    assert!(e.contains("AWS_REGION"), "{e}");
    let e = AwsClients::from_lambda_vars(|k| {
        if k == "AWS_SECRET_ACCESS_KEY" {
            None
        } else {
            vars(k)
        }
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("AWS_SECRET_ACCESS_KEY") && !e.contains("testing"),
        "{e}"
    );
}
