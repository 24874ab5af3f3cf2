//! The AWS backend: SDK clients (built once per process), the table and queue definitions
//! (the one place they are written down; `infra/template.yaml` is tested against them),
//! `aws-init` (create the table and the FIFO queue + dead-letter queue if missing, e.g. on
//! an emulator or a dev account), and choosing the backend from the environment.
//!
//! Environment: `PROVISYNC_BACKEND=aws` selects DynamoDB + SQS with `PROVISYNC_TABLE` and
//! `PROVISYNC_QUEUE_URL` (or `PROVISYNC_QUEUE`, a queue name or URL). The SDK's standard
//! loader reads region, credentials and `AWS_ENDPOINT_URL` (an emulator such as moto); the
//! Lambda functions read the same variables directly ([`AwsClients::from_lambda_env`]).

use std::sync::Arc;
use std::time::Duration;

pub mod dynamodb;
pub mod lambda;
pub mod metrics;
pub mod queue_deliver;
pub mod secrets;
pub mod sqs;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::dynamodb::DynamoStore;
use crate::sqs::SqsQueue;
use provisync_core::queue::Queue;
#[cfg(feature = "embedded")]
use provisync_core::queue::store_queue::{StoreQueue, StoreQueueSettings};
use provisync_core::store::Store;
#[cfg(feature = "embedded")]
use provisync_core::store::embedded::EmbeddedStore;

/// The DynamoDB table layout (must match `infra/template.yaml`, see the test below).
pub mod table {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const GSI1_NAME: &str = "gsi1";
    pub const GSI1_PK: &str = "gsi1pk";
    pub const GSI1_SK: &str = "gsi1sk";
    pub const GSI2_NAME: &str = "gsi2";
    pub const GSI2_PK: &str = "gsi2pk";
    pub const GSI2_SK: &str = "gsi2sk";
    pub const ATTR_VERSION: &str = "v";
    pub const ATTR_DATA: &str = "data";
    /// The TTL attribute (epoch seconds).
    pub const ATTR_TTL: &str = "ttl";
    /// A counter's value (`Write::Add`: `ADD n :delta`), read back as the item's data.
    pub const ATTR_COUNTER: &str = "n";
    pub const BILLING_MODE: &str = "PAY_PER_REQUEST";
    /// Every secondary index projects all attributes.
    pub const PROJECTION: &str = "ALL";
    /// `(index name, partition key attribute, sort key attribute)`.
    pub const GSIS: [(&str, &str, &str); 2] =
        [(GSI1_NAME, GSI1_PK, GSI1_SK), (GSI2_NAME, GSI2_PK, GSI2_SK)];
    /// Every key attribute is a string.
    pub const KEY_ATTRIBUTES: [&str; 6] = [PK, SK, GSI1_PK, GSI1_SK, GSI2_PK, GSI2_SK];
}

/// The delivery queue layout (must match `infra/template.yaml`).
pub mod queue {
    pub use provisync_core::queue::{
        DEFAULT_MAX_RECEIVE_COUNT, DEFAULT_VISIBILITY_TIMEOUT_SECS as VISIBILITY_TIMEOUT_SECS,
        DELIVER_FUNCTION_TIMEOUT_SECS,
    };
    /// Main queue retention: 4 days (the SQS default).
    pub const RETENTION_SECS: u32 = 4 * 24 * 3600;
    /// Dead letters are kept 14 days (the SQS maximum), longer than the main queue.
    pub const DLQ_RETENTION_SECS: u32 = 14 * 24 * 3600;
    /// FIFO queue names end in `.fifo`.
    pub const FIFO_SUFFIX: &str = ".fifo";
    /// The dead-letter queue of `NAME.fifo` is `NAME-dlq.fifo`.
    pub const DLQ_SUFFIX: &str = "-dlq";
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("DynamoDB: {0}")]
    Dynamo(String),
    #[error("SQS: {0}")]
    Sqs(String),
    #[error(transparent)]
    Store(#[from] provisync_core::store::StoreError),
}

/// The SDK clients, built once per process (cold start) and shared (cheap clones).
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// Reads the operator key ([`secrets`]).
    pub secrets: aws_sdk_secretsmanager::Client,
}

/// Time to connect to an AWS endpoint.
pub const SDK_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time one attempt of an AWS call may take (a DynamoDB or SQS call answers in
/// milliseconds; a long poll is given its wait on top, see `sqs.rs`).
pub const SDK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time one AWS call may take with the SDK's own retries: well inside every function's
/// timeout, so a hung endpoint ends in an error the code handles, not in a killed
/// invocation.
pub const SDK_OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

fn sdk_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(SDK_CONNECT_TIMEOUT)
        .operation_attempt_timeout(SDK_ATTEMPT_TIMEOUT)
        .operation_timeout(SDK_OPERATION_TIMEOUT)
        .build()
}

impl AwsClients {
    /// Standard configuration chain: env (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL`),
    /// profile files, the Lambda/ECS/EC2 credential providers.
    pub async fn from_env() -> Self {
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(sdk_timeouts())
            .load()
            .await;
        Self::from_conf(&conf)
    }

    /// Inside Lambda: the region, the role's credentials and an optional
    /// `AWS_ENDPOINT_URL` (an emulator, in tests), all from the environment the Lambda
    /// runtime sets, with the timeouts of [`Self::from_env`]. The functions need nothing
    /// else, so they do not take the standard chain: its profile files, SSO, STS
    /// web-identity and ECS/EC2 metadata providers are dead weight in a function (about
    /// 0.4 MB of its binary, and work at every cold start).
    pub fn from_lambda_env() -> Result<Self, AwsError> {
        Self::from_lambda_vars(|k| std::env::var(k).ok())
    }

    /// [`Self::from_lambda_env`] over any variable source (`var`).
    pub fn from_lambda_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, AwsError> {
        let set = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let region = set("AWS_REGION")
            .or_else(|| set("AWS_DEFAULT_REGION"))
            .ok_or_else(|| AwsError::Config("AWS_REGION is not set".into()))?;
        let credentials = match (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => aws_credential_types::Credentials::new(
                id,
                secret,
                set("AWS_SESSION_TOKEN"),
                None,
                "lambda-environment",
            ),
            _ => {
                return Err(AwsError::Config(
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set".into(),
                ));
            }
        };
        let mut conf = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            )
            .retry_config(aws_config::retry::RetryConfig::standard())
            .timeout_config(sdk_timeouts())
            .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
            .time_source(aws_smithy_async::time::SystemTimeSource::new());
        if let Some(url) = set("AWS_ENDPOINT_URL") {
            conf = conf.endpoint_url(url);
        }
        Ok(Self::from_conf(&conf.build()))
    }

    /// Clients pointed at an emulator (tests): `endpoint`, the environment's region or
    /// `us-east-1`, credentials from the environment. Only the connect timeout of
    /// [`Self::from_env`]: an emulator on a loaded machine can take many seconds over a
    /// large transaction, which the service does not, and the tests are about what the
    /// code does, not how fast the emulator is.
    pub async fn for_endpoint(endpoint: &str) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(SDK_CONNECT_TIMEOUT)
                    .build(),
            );
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            loader = loader.region(Region::new("us-east-1"));
        }
        Self::from_conf(&loader.load().await)
    }

    pub fn from_conf(conf: &SdkConfig) -> Self {
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::new(conf),
            sqs: aws_sdk_sqs::Client::new(conf),
            secrets: aws_sdk_secretsmanager::Client::new(conf),
        }
    }
}

/// What `aws-init` creates.
#[derive(Clone, Debug)]
pub struct AwsInitConfig {
    /// Table name.
    pub table: String,
    /// Queue name (`NAME` or `NAME.fifo`) or URL; `None` creates no queue.
    pub queue: Option<String>,
    pub max_receive_count: u32,
    pub visibility_timeout_secs: u32,
}

impl AwsInitConfig {
    pub fn new(table: impl Into<String>, queue: Option<String>) -> Self {
        AwsInitConfig {
            table: table.into(),
            queue,
            max_receive_count: queue::DEFAULT_MAX_RECEIVE_COUNT,
            visibility_timeout_secs: queue::VISIBILITY_TIMEOUT_SECS,
        }
    }

    /// From `PROVISYNC_TABLE` (required) and `PROVISYNC_QUEUE_URL` / `PROVISYNC_QUEUE`.
    pub fn from_env() -> Result<Self, AwsError> {
        let table = env_nonempty("PROVISYNC_TABLE")
            .ok_or_else(|| AwsError::Config("PROVISYNC_TABLE is not set".into()))?;
        let queue = env_nonempty("PROVISYNC_QUEUE_URL").or_else(|| env_nonempty("PROVISYNC_QUEUE"));
        Ok(Self::new(table, queue))
    }
}

/// What `aws-init` found or made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsInitReport {
    pub table: String,
    pub table_created: bool,
    pub ttl_enabled_now: bool,
    pub queue_url: Option<String>,
    pub queue_created: bool,
    pub dlq_url: Option<String>,
    pub dlq_created: bool,
}

impl std::fmt::Display for AwsInitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = |created: bool| if created { "created" } else { "exists" };
        writeln!(f, "table {}: {}", self.table, state(self.table_created))?;
        if let Some(u) = &self.queue_url {
            writeln!(f, "queue {u}: {}", state(self.queue_created))?;
        }
        if let Some(u) = &self.dlq_url {
            writeln!(f, "dead-letter queue {u}: {}", state(self.dlq_created))?;
        }
        Ok(())
    }
}

/// Creates the table (and the queues) if missing, with the standard SDK configuration.
pub async fn aws_init(cfg: &AwsInitConfig) -> Result<AwsInitReport, AwsError> {
    aws_init_with(&AwsClients::from_env().await, cfg).await
}

/// The `provisync aws-init` subcommand: table and queues from `PROVISYNC_TABLE` and
/// `PROVISYNC_QUEUE_URL`/`PROVISYNC_QUEUE`, SDK configuration from the environment
/// (`AWS_ENDPOINT_URL` for an emulator). The report's `Display` is what to print.
pub async fn aws_init_command() -> Result<AwsInitReport, AwsError> {
    aws_init(&AwsInitConfig::from_env()?).await
}

/// [`aws_init`] with given clients. Idempotent: existing resources are left as they are.
pub async fn aws_init_with(
    clients: &AwsClients,
    cfg: &AwsInitConfig,
) -> Result<AwsInitReport, AwsError> {
    let mut report = AwsInitReport {
        table: cfg.table.clone(),
        ..Default::default()
    };
    report.table_created = ensure_table(&clients.dynamodb, &cfg.table).await?;
    report.ttl_enabled_now = ensure_ttl(&clients.dynamodb, &cfg.table).await?;
    if let Some(q) = &cfg.queue {
        let base = queue_base_name(q)?;
        let dlq_name = format!("{base}{}{}", queue::DLQ_SUFFIX, queue::FIFO_SUFFIX);
        let (dlq_url, dlq_created) = ensure_queue(&clients.sqs, &dlq_name, None, cfg).await?;
        let dlq_arn = queue_arn(&clients.sqs, &dlq_url).await?;
        let name = format!("{base}{}", queue::FIFO_SUFFIX);
        let (url, created) = ensure_queue(&clients.sqs, &name, Some(&dlq_arn), cfg).await?;
        report.queue_url = Some(url);
        report.queue_created = created;
        report.dlq_url = Some(dlq_url);
        report.dlq_created = dlq_created;
    }
    Ok(report)
}

fn dynamo_err<E: std::error::Error + 'static>(op: &str, e: E) -> AwsError {
    AwsError::Dynamo(format!("{op}: {}", DisplayErrorContext(&e)))
}

fn sqs_err<E: std::error::Error + 'static>(op: &str, e: E) -> AwsError {
    AwsError::Sqs(format!("{op}: {}", DisplayErrorContext(&e)))
}

fn build_err(e: impl std::fmt::Display) -> AwsError {
    AwsError::Config(e.to_string())
}

/// Returns whether the table was created now. Waits until it is ACTIVE.
async fn ensure_table(client: &aws_sdk_dynamodb::Client, name: &str) -> Result<bool, AwsError> {
    let mut created = false;
    match client.describe_table().table_name(name).send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            let mut req = client
                .create_table()
                .table_name(name)
                .billing_mode(BillingMode::from(table::BILLING_MODE))
                .key_schema(key(table::PK, KeyType::Hash)?)
                .key_schema(key(table::SK, KeyType::Range)?);
            for attr in table::KEY_ATTRIBUTES {
                req = req.attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(attr)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(build_err)?,
                );
            }
            for (index, pk, sk) in table::GSIS {
                req = req.global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(index)
                        .key_schema(key(pk, KeyType::Hash)?)
                        .key_schema(key(sk, KeyType::Range)?)
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::from(table::PROJECTION))
                                .build(),
                        )
                        .build()
                        .map_err(build_err)?,
                );
            }
            match req.send().await {
                Ok(_) => created = true,
                // Someone else created it meanwhile.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) => {}
                Err(e) => return Err(dynamo_err("CreateTable", e)),
            }
        }
        Err(e) => return Err(dynamo_err("DescribeTable", e)),
    }
    for _ in 0..120 {
        let out = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| dynamo_err("DescribeTable", e))?;
        if out.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            return Ok(created);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(AwsError::Dynamo(format!(
        "table {name} did not become ACTIVE within 60 s"
    )))
}

fn key(attr: &str, kind: KeyType) -> Result<KeySchemaElement, AwsError> {
    KeySchemaElement::builder()
        .attribute_name(attr)
        .key_type(kind)
        .build()
        .map_err(build_err)
}

/// Enables TTL on [`table::ATTR_TTL`] unless on; returns whether it was switched on now.
async fn ensure_ttl(client: &aws_sdk_dynamodb::Client, name: &str) -> Result<bool, AwsError> {
    let out = client
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| dynamo_err("DescribeTimeToLive", e))?;
    let status = out
        .time_to_live_description
        .and_then(|d| d.time_to_live_status);
    if matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        return Ok(false);
    }
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(table::ATTR_TTL)
                .enabled(true)
                .build()
                .map_err(build_err)?,
        )
        .send()
        .await
        .map_err(|e| dynamo_err("UpdateTimeToLive", e))?;
    Ok(true)
}

/// `NAME`, `NAME.fifo` or a queue URL -> `NAME`.
pub fn queue_base_name(name_or_url: &str) -> Result<String, AwsError> {
    let last = name_or_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(name_or_url);
    let base = last.strip_suffix(queue::FIFO_SUFFIX).unwrap_or(last);
    let valid = !base.is_empty()
        && base.len() + queue::FIFO_SUFFIX.len() + queue::DLQ_SUFFIX.len() <= 80
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(AwsError::Config(format!(
            "invalid queue name {name_or_url:?}"
        )));
    }
    Ok(base.to_string())
}

/// Returns `(url, created now)`. A queue that exists is left as it is.
async fn ensure_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    dlq_arn: Option<&str>,
    cfg: &AwsInitConfig,
) -> Result<(String, bool), AwsError> {
    match client.get_queue_url().queue_name(name).send().await {
        Ok(out) => {
            return out
                .queue_url
                .map(|u| (u, false))
                .ok_or_else(|| AwsError::Sqs(format!("GetQueueUrl {name}: no URL")));
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_does_not_exist()) => {}
        Err(e) => return Err(sqs_err("GetQueueUrl", e)),
    }
    let mut req = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            cfg.visibility_timeout_secs.to_string(),
        );
    req = match dlq_arn {
        Some(arn) => req
            .attributes(
                QueueAttributeName::RedrivePolicy,
                redrive_policy(arn, cfg.max_receive_count),
            )
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                queue::RETENTION_SECS.to_string(),
            ),
        None => req.attributes(
            QueueAttributeName::MessageRetentionPeriod,
            queue::DLQ_RETENTION_SECS.to_string(),
        ),
    };
    let out = req.send().await.map_err(|e| sqs_err("CreateQueue", e))?;
    let url = out
        .queue_url
        .ok_or_else(|| AwsError::Sqs(format!("CreateQueue {name}: no URL")))?;
    Ok((url, true))
}

/// The `RedrivePolicy` attribute value.
pub fn redrive_policy(dlq_arn: &str, max_receive_count: u32) -> String {
    serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count })
        .to_string()
}

async fn queue_arn(client: &aws_sdk_sqs::Client, url: &str) -> Result<String, AwsError> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sqs_err("GetQueueAttributes", e))?;
    out.attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| AwsError::Sqs(format!("no QueueArn for {url}")))
}

/// Resolves a queue name (or URL) to its URL.
pub async fn queue_url(
    client: &aws_sdk_sqs::Client,
    name_or_url: &str,
) -> Result<String, AwsError> {
    if name_or_url.starts_with("https://") || name_or_url.starts_with("http://") {
        return Ok(name_or_url.to_string());
    }
    let name = if name_or_url.ends_with(queue::FIFO_SUFFIX) {
        name_or_url.to_string()
    } else {
        format!("{name_or_url}{}", queue::FIFO_SUFFIX)
    };
    client
        .get_queue_url()
        .queue_name(&name)
        .send()
        .await
        .map_err(|e| sqs_err("GetQueueUrl", e))?
        .queue_url
        .ok_or_else(|| AwsError::Sqs(format!("GetQueueUrl {name}: no URL")))
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Which backend `PROVISYNC_BACKEND` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The embedded store in `PROVISYNC_DATA_DIR` (default `./.provisync`).
    Embedded,
    /// DynamoDB (`PROVISYNC_TABLE`) and SQS (`PROVISYNC_QUEUE_URL`).
    Aws,
}

impl BackendKind {
    pub fn from_env() -> Result<Self, AwsError> {
        match env_nonempty("PROVISYNC_BACKEND").as_deref() {
            None | Some("embedded") | Some("local") => Ok(BackendKind::Embedded),
            Some("aws") => Ok(BackendKind::Aws),
            Some(other) => Err(AwsError::Config(format!(
                "PROVISYNC_BACKEND={other:?}: expected `aws` or `embedded`"
            ))),
        }
    }
}

/// The embedded store's directory: `PROVISYNC_DATA_DIR` or `./.provisync`.
pub fn data_dir_from_env() -> std::path::PathBuf {
    env_nonempty("PROVISYNC_DATA_DIR")
        .map(Into::into)
        .unwrap_or_else(|| ".provisync".into())
}

/// The store the environment selects: DynamoDB with `PROVISYNC_BACKEND=aws`, else the
/// embedded store (in builds with the `embedded` feature).
pub async fn store_from_env() -> Result<Arc<dyn Store>, AwsError> {
    match BackendKind::from_env()? {
        #[cfg(feature = "embedded")]
        BackendKind::Embedded => Ok(Arc::new(EmbeddedStore::open(&data_dir_from_env())?)),
        #[cfg(not(feature = "embedded"))]
        BackendKind::Embedded => Err(no_embedded()),
        BackendKind::Aws => {
            let clients = AwsClients::from_env().await;
            Ok(Arc::new(dynamo_store_from_env(&clients)?))
        }
    }
}

#[cfg(not(feature = "embedded"))]
fn no_embedded() -> AwsError {
    AwsError::Config(
        "this build runs on AWS only: set PROVISYNC_BACKEND=aws (the embedded store is in `provisync`)"
            .into(),
    )
}

/// The DynamoDB store on `PROVISYNC_TABLE` with given clients.
pub fn dynamo_store_from_env(clients: &AwsClients) -> Result<DynamoStore, AwsError> {
    let table = env_nonempty("PROVISYNC_TABLE")
        .ok_or_else(|| AwsError::Config("PROVISYNC_BACKEND=aws needs PROVISYNC_TABLE".into()))?;
    Ok(DynamoStore::new(clients.dynamodb.clone(), table))
}

/// The SQS queue of `PROVISYNC_QUEUE_URL` (or `PROVISYNC_QUEUE`, a name or URL). With
/// `PROVISYNC_DLQ_URL` (the template sets it) the dead-letter queue is taken from there
/// instead of being looked up through the queue's `RedrivePolicy`, so a function that
/// only counts dead letters needs no right on the delivery queue.
pub async fn sqs_queue_from_env(clients: &AwsClients) -> Result<SqsQueue, AwsError> {
    let q = env_nonempty("PROVISYNC_QUEUE_URL")
        .or_else(|| env_nonempty("PROVISYNC_QUEUE"))
        .ok_or_else(|| {
            AwsError::Config("PROVISYNC_BACKEND=aws needs PROVISYNC_QUEUE_URL".into())
        })?;
    let queue = SqsQueue::new(clients.sqs.clone(), queue_url(&clients.sqs, &q).await?);
    Ok(match env_nonempty("PROVISYNC_DLQ_URL") {
        Some(dlq) => queue.with_dlq_url(dlq),
        None => queue,
    })
}

/// DynamoDB (`PROVISYNC_TABLE`) and SQS (`PROVISYNC_QUEUE_URL`), whatever
/// `PROVISYNC_BACKEND` says: the Lambda functions run on nothing else.
pub async fn aws_backend_from_env() -> Result<Backend, AwsError> {
    aws_backend_with(AwsClients::from_env().await).await
}

/// [`aws_backend_from_env`] with given clients.
pub async fn aws_backend_with(clients: AwsClients) -> Result<Backend, AwsError> {
    let store = Arc::new(dynamo_store_from_env(&clients)?);
    let queue = Arc::new(sqs_queue_from_env(&clients).await?);
    Ok(Backend {
        kind: BackendKind::Aws,
        store,
        queue,
        aws: Some(clients),
    })
}

/// The store and queue the environment selects, built once per process.
#[derive(Clone)]
pub struct Backend {
    pub kind: BackendKind,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    /// The SDK clients (AWS backend only).
    pub aws: Option<AwsClients>,
}

impl Backend {
    /// Where this backend keeps the directory, as banners say it: the embedded store's
    /// folder, or the DynamoDB table (what `/healthz` calls `store`).
    pub fn describe(&self) -> String {
        match self.kind {
            BackendKind::Embedded => data_dir_from_env().display().to_string(),
            BackendKind::Aws => format!(
                "{} table {}",
                self.store.backend(),
                env_nonempty("PROVISYNC_TABLE").unwrap_or_default()
            ),
        }
    }
}

/// `PROVISYNC_BACKEND=aws`: DynamoDB + SQS; otherwise the embedded store in
/// `PROVISYNC_DATA_DIR` and the store-backed queue on it (durable across restarts).
pub async fn backend_from_env() -> Result<Backend, AwsError> {
    let kind = BackendKind::from_env()?;
    match kind {
        #[cfg(not(feature = "embedded"))]
        BackendKind::Embedded => Err(no_embedded()),
        #[cfg(feature = "embedded")]
        BackendKind::Embedded => {
            let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&data_dir_from_env())?);
            // Receives before the dead-letter queue: `PROVISYNC_MAX_RECEIVE_COUNT`, as
            // `queue-deliver` reads it (SQS's redrive policy on AWS).
            let max_receive_count = lambda::max_receive_count_from_env()
                .map_err(|e| AwsError::Config(e.to_string()))?;
            let queue = Arc::new(StoreQueue::new(
                store.clone(),
                "deliver",
                StoreQueueSettings {
                    max_receive_count,
                    ..StoreQueueSettings::default()
                },
            ));
            // The redb file is this process's alone: what is in flight was received by a
            // previous run that died before acking it. Deliver it now, not after the
            // visibility timeout.
            match queue.release_in_flight().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    messages = n,
                    "queue: released deliveries left in flight by a previous run"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "queue: releasing in-flight deliveries failed")
                }
            }
            Ok(Backend {
                kind,
                store,
                queue,
                aws: None,
            })
        }
        BackendKind::Aws => aws_backend_from_env().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        assert_eq!(queue_base_name("provisync").unwrap(), "provisync");
        assert_eq!(queue_base_name("provisync.fifo").unwrap(), "provisync");
        assert_eq!(
            queue_base_name("https://sqs.us-east-1.amazonaws.com/123456789012/prov-q.fifo")
                .unwrap(),
            "prov-q"
        );
        assert!(queue_base_name("bad name").is_err());
        assert!(queue_base_name("").is_err());
    }

    fn template() -> serde_yaml::Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/template.yaml");
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn s(v: &serde_yaml::Value) -> &str {
        v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
    }

    fn key_schema(v: &serde_yaml::Value) -> Vec<(String, String)> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    s(&k["AttributeName"]).to_string(),
                    s(&k["KeyType"]).to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn template_table_matches_the_constants() {
        let t = template();
        let table = &t["Resources"]["Table"]["Properties"];
        assert_eq!(s(&table["BillingMode"]), table::BILLING_MODE);
        assert_eq!(
            key_schema(&table["KeySchema"]),
            [
                (table::PK.into(), "HASH".into()),
                (table::SK.into(), "RANGE".into())
            ]
        );
        let mut attrs: Vec<(&str, &str)> = table["AttributeDefinitions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| (s(&a["AttributeName"]), s(&a["AttributeType"])))
            .collect();
        attrs.sort();
        let mut want: Vec<(&str, &str)> = table::KEY_ATTRIBUTES.iter().map(|a| (*a, "S")).collect();
        want.sort();
        assert_eq!(attrs, want);
        let gsis = table["GlobalSecondaryIndexes"].as_sequence().unwrap();
        assert_eq!(gsis.len(), table::GSIS.len());
        for (gsi, (name, pk, sk)) in gsis.iter().zip(table::GSIS) {
            assert_eq!(s(&gsi["IndexName"]), name);
            assert_eq!(
                key_schema(&gsi["KeySchema"]),
                [(pk.into(), "HASH".into()), (sk.into(), "RANGE".into())]
            );
            assert_eq!(s(&gsi["Projection"]["ProjectionType"]), table::PROJECTION);
        }
        assert_eq!(
            s(&table["TimeToLiveSpecification"]["AttributeName"]),
            table::ATTR_TTL
        );
        assert_eq!(
            table["TimeToLiveSpecification"]["Enabled"].as_bool(),
            Some(true)
        );
        assert_eq!(
            table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
            Some(true)
        );
    }

    #[test]
    fn template_queues_match_the_constants() {
        let t = template();
        let q = &t["Resources"]["DeliveryQueue"]["Properties"];
        let dlq = &t["Resources"]["DeadLetterQueue"]["Properties"];
        for p in [q, dlq] {
            assert_eq!(p["FifoQueue"].as_bool(), Some(true));
            assert_eq!(p["ContentBasedDeduplication"].as_bool(), Some(false));
        }
        assert_eq!(
            q["VisibilityTimeout"].as_u64(),
            Some(u64::from(queue::VISIBILITY_TIMEOUT_SECS))
        );
        assert_eq!(
            q["MessageRetentionPeriod"].as_u64(),
            Some(u64::from(queue::RETENTION_SECS))
        );
        assert_eq!(
            dlq["MessageRetentionPeriod"].as_u64(),
            Some(u64::from(queue::DLQ_RETENTION_SECS))
        );
        let name = |v: &serde_yaml::Value| match v {
            serde_yaml::Value::Tagged(t) => s(&t.value).to_string(),
            other => s(other).to_string(),
        };
        assert!(name(&q["QueueName"]).ends_with(".fifo"));
        assert!(name(&dlq["QueueName"]).ends_with(&format!(
            "{}{}",
            queue::DLQ_SUFFIX,
            queue::FIFO_SUFFIX
        )));
        // maxReceiveCount is the MaxReceiveCount parameter, defaulting to the constant.
        let redrive = &q["RedrivePolicy"];
        assert_eq!(name(&redrive["maxReceiveCount"]), "MaxReceiveCount");
        assert_eq!(name(&redrive["deadLetterTargetArn"]), "DeadLetterQueue.Arn");
        assert_eq!(
            t["Parameters"]["MaxReceiveCount"]["Default"].as_u64(),
            Some(u64::from(queue::DEFAULT_MAX_RECEIVE_COUNT))
        );
        // Visibility timeout >= 6x the consumer's timeout.
        let deliver = &t["Resources"]["QueueDeliverFunction"]["Properties"];
        assert_eq!(
            deliver["Timeout"].as_u64(),
            Some(u64::from(queue::DELIVER_FUNCTION_TIMEOUT_SECS))
        );
        let (vis, timeout) = (q["VisibilityTimeout"].as_u64(), deliver["Timeout"].as_u64());
        assert!(
            vis.zip(timeout).is_some_and(|(v, t)| v >= 6 * t),
            "visibility {vis:?} < 6 x {timeout:?}"
        );
        let event = &deliver["Events"]["Deliveries"]["Properties"];
        assert_eq!(
            s(&event["FunctionResponseTypes"][0]),
            "ReportBatchItemFailures"
        );
    }

    /// (The rights, the operator key, alarms and budgets are checked in `tests/template.rs`
    /// and `tests/least_privilege.rs`.)
    #[test]
    fn template_functions_are_cargo_lambda_arm64() {
        let t = template();
        let g = &t["Globals"]["Function"];
        assert_eq!(s(&g["Runtime"]), "provided.al2023");
        assert_eq!(s(&g["Architectures"][0]), "arm64");
        assert_eq!(s(&g["Handler"]), "bootstrap");
        assert_eq!(
            s(&g["Environment"]["Variables"]["PROVISYNC_BACKEND"]),
            "aws"
        );
        let mut binaries = Vec::new();
        for (_, r) in t["Resources"].as_mapping().unwrap() {
            if r["Type"].as_str() == Some("AWS::Serverless::Function") {
                assert_eq!(s(&r["Metadata"]["BuildMethod"]), "rust-cargolambda");
                binaries.push(s(&r["Metadata"]["BuildProperties"]["Binary"]).to_string());
            }
        }
        binaries.sort();
        assert_eq!(
            binaries,
            [
                "admin-api",
                "queue-deliver",
                "scheduled-sync",
                "scim-api",
                "webhook-ingest"
            ]
        );
    }

    #[test]
    fn redrive_policy_json() {
        let p: serde_json::Value = serde_json::from_str(&redrive_policy("arn:x", 5)).unwrap();
        assert_eq!(p["maxReceiveCount"], 5);
        assert_eq!(p["deadLetterTargetArn"], "arn:x");
    }
}
