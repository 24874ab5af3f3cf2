//! The AWS Cognito connector: users and groups of one user pool through the AWS SDK
//! (`cognito-idp` admin API), with the default AWS credential chain (the function's role,
//! or the environment), as the hub's other AWS clients.
//!
//! - the id of a user on Cognito is its `sub` (immutable, unique in the pool); the
//!   Cognito user name is found again from it with `ListUsers` (`sub = "…"`) before each
//!   call, since the admin API addresses users by name;
//! - user names cannot change in Cognito: an update whose `userName` differs from the
//!   account's is refused with a reason saying so (the link and the account stay); pools
//!   that sign in with e-mail or phone instead of a user name (their user names are the
//!   `sub`) change the sign-in address through the `email` / `phone_number` attributes;
//! - match: `AdminGetUser` on `userName`; create: `AdminCreateUser` with
//!   `MessageAction=SUPPRESS` (no invitation message), then `AdminSetUserPassword`
//!   (`Permanent=true`) when a password comes, then `AdminDisableUser` when the user is
//!   inactive. The password is also the temporary one of the create call, so Cognito
//!   checks it against the pool's policy before the account exists;
//! - update: `AdminUpdateUserAttributes` with the attributes that differ from the
//!   account's, `AdminDeleteUserAttributes` for those the previous delivery set and this
//!   one does not, `AdminEnableUser` / `AdminDisableUser` for `active`, the password;
//! - deactivate: `AdminDisableUser`; delete: `AdminDeleteUser` (not found: done);
//! - groups: the group's name is its id: `GetGroup`, `CreateGroup`, `DeleteGroup`
//!   (no rename in Cognito: refused, as Crowd); members `AdminAddUserToGroup` /
//!   `AdminRemoveUserFromGroup`;
//! - attributes: `email` (primary), `email_verified` (when the target says the hub's
//!   addresses are verified), `given_name`, `family_name`, `middle_name`, `name`,
//!   `nickname`, `phone_number` (primary, E.164 only), `locale`, `zoneinfo`, `profile`;
//!   a mapped `attributes` object (`{"target": "attributes.department", …}`) goes to
//!   `custom:department` (or to the standard attribute of that name, e.g. `birthdate`).
//! - reconcile: users from `ListUsers` (60 a page, following `PaginationToken`), as SCIM:
//!   `id` the `sub`, `userName` the Cognito user name (in pools whose user names are the
//!   `sub`, the sign-in address: `email`, else `phone_number`), the attributes read back
//!   as [`cognito_attributes`] writes them ([`scim_of_attributes`]; `email_verified` is not
//!   compared), `active` from `Enabled`; groups from `ListGroups` with their members from
//!   `ListUsersInGroup` (members are `sub`s), both following `NextToken`.
//!
//! Errors: `UsernameExistsException` / `GroupExistsException` → Conflict,
//! `UserNotFoundException` → NotFound, throttling and 5xx → Retryable, a missing pool
//! (`ResourceNotFoundException` naming the pool) → Gone (the target is disabled: its
//! configuration cannot work), anything else → Refused with Cognito's code and message.

mod attributes;

use provisync_core::connector::{refused, str_at};

use attributes::{attribute_list, attribute_of, scim_of_user, user_name};
pub use attributes::{cognito_attributes, e164, scim_of_attributes};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::config::timeout::TimeoutConfig;
use aws_sdk_cognitoidentityprovider::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cognitoidentityprovider::types::{MessageActionType, UserType};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::http::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, SetupError, truncate};
use provisync_core::connector::{Connector, ConnectorError, ListPage, TargetId};
use provisync_core::target::CognitoTarget;
use provisync_scim::ResourceKind;

/// An API call that takes its turn at the pool's pace first: the delivery's slot covers
/// a call's first request, and each later one (a lookup of the account by `sub`, then
/// the write; one member after another) is spaced like it
/// ([`provisync_core::connector::quota::before_request`]). The SDK retries nothing
/// itself (`CognitoConnector::client`): a throttled call is the pace's to learn from.
trait TakeTurn: Future + Sized + Send {
    fn paced(self) -> impl Future<Output = Self::Output> + Send {
        async move {
            provisync_core::connector::quota::before_request().await;
            self.await
        }
    }
}

impl<F: Future + Send> TakeTurn for F {}

/// Users and groups per listing page (the most `ListUsers` and `ListGroups` return).
pub const PAGE_SIZE: i32 = 60;

/// Standard (OpenID Connect) attributes of a user pool: a mapped `attributes` key with
/// one of these names sets it; any other key is a custom attribute (`custom:{key}`).
pub const STANDARD_ATTRIBUTES: [&str; 17] = [
    "address",
    "birthdate",
    "email",
    "email_verified",
    "family_name",
    "gender",
    "given_name",
    "locale",
    "middle_name",
    "name",
    "nickname",
    "phone_number",
    "picture",
    "preferred_username",
    "profile",
    "website",
    "zoneinfo",
];

/// A connector to one Cognito user pool.
pub struct CognitoConnector {
    pool: String,
    region: String,
    endpoint: Option<String>,
    email_verified: bool,
    /// Built on first use (loading the credential chain is async).
    client: OnceCell<Client>,
}

impl fmt::Debug for CognitoConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CognitoConnector")
            .field("pool", &self.pool)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// What a failed SDK call was, before the operation gives it a meaning.
#[derive(Debug)]
enum Failure {
    /// Cognito answered with an error.
    Service {
        code: String,
        message: String,
        status: Option<u16>,
    },
    /// No answer: connection, timeout, unreadable response.
    Transport(String),
    /// The request could not be built or signed (configuration, credentials).
    Client(String),
}

impl Failure {
    fn is(&self, code: &str) -> bool {
        matches!(self, Failure::Service { code: c, .. } if c == code)
    }
}

fn failure<E>(e: SdkError<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            Failure::Service {
                code: err.code().unwrap_or("UnknownError").to_string(),
                message: err.message().unwrap_or_default().to_string(),
                status: Some(s.raw().status().as_u16()),
            }
        }
        SdkError::TimeoutError(_) => Failure::Transport("timed out".into()),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Transport(truncate(&DisplayErrorContext(&e).to_string(), 300))
        }
        _ => Failure::Client(truncate(&DisplayErrorContext(&e).to_string(), 300)),
    }
}

impl CognitoConnector {
    pub fn new(target: &CognitoTarget) -> Result<Self, SetupError> {
        let region = target.region().to_string();
        if target.user_pool_id.trim().is_empty() || region.is_empty() {
            return Err(SetupError::Config(
                "a user pool id and a region are needed".into(),
            ));
        }
        if let Some(e) = &target.endpoint_url {
            crate::http::check_target_url(e).map_err(|e| SetupError::Url(e.to_string()))?;
        }
        Ok(CognitoConnector {
            pool: target.user_pool_id.clone(),
            region,
            endpoint: target.endpoint_url.clone(),
            email_verified: target.email_verified,
            client: OnceCell::new(),
        })
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let timeouts = TimeoutConfig::builder()
                    .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
                    .operation_attempt_timeout(DEFAULT_REQUEST_TIMEOUT)
                    .operation_timeout(DEFAULT_REQUEST_TIMEOUT + Duration::from_secs(15))
                    .build();
                // No retries inside the SDK: each of its attempts would be a request the
                // hub's pace never saw (a throttled call retried unpaced, its 429 never
                // taught). A failed call is retried by the queue, after the pace's hold.
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(self.region.clone()))
                    .timeout_config(timeouts)
                    .retry_config(aws_config::retry::RetryConfig::disabled());
                if let Some(e) = &self.endpoint {
                    loader = loader.endpoint_url(e.trim());
                }
                Client::new(&loader.load().await)
            })
            .await
    }

    /// The meaning of a failure for the engine.
    fn error(&self, f: Failure) -> ConnectorError {
        match f {
            Failure::Transport(detail) => ConnectorError::Retryable {
                status: None,
                retry_after: None,
                detail,
            },
            Failure::Client(reason) => ConnectorError::Refused {
                status: None,
                reason,
            },
            Failure::Service {
                code,
                message,
                status,
            } => {
                let said = truncate(
                    &if message.is_empty() {
                        code.clone()
                    } else {
                        format!("{code}: {message}")
                    },
                    crate::http::MAX_REASON_CHARS,
                );
                match code.as_str() {
                    "UsernameExistsException" | "GroupExistsException" => {
                        ConnectorError::Conflict(said)
                    }
                    "UserNotFoundException" => ConnectorError::NotFound,
                    // "User pool {id} does not exist." (a group's is "Group not found.").
                    "ResourceNotFoundException" if message.contains(&self.pool) => {
                        ConnectorError::Gone(format!(
                            "Cognito user pool {} not found in {} ({said})",
                            self.pool, self.region
                        ))
                    }
                    "ResourceNotFoundException" => ConnectorError::NotFound,
                    // AWS says "too many requests" with 400 and a code: the pace
                    // (`sync/pace.rs`) reads it as the 429 it means and slows down.
                    "TooManyRequestsException"
                    | "ThrottlingException"
                    | "Throttling"
                    | "RequestLimitExceeded" => ConnectorError::Retryable {
                        status: Some(429),
                        retry_after: None,
                        detail: said,
                    },
                    "ServiceUnavailable" | "ServiceUnavailableException" => {
                        ConnectorError::Retryable {
                            status: Some(503),
                            retry_after: None,
                            detail: said,
                        }
                    }
                    "InternalErrorException" => ConnectorError::Retryable {
                        status,
                        retry_after: None,
                        detail: said,
                    },
                    _ if status.is_some_and(|s| s >= 500) => ConnectorError::Retryable {
                        status,
                        retry_after: None,
                        detail: said,
                    },
                    "NotAuthorizedException"
                    | "AccessDeniedException"
                    | "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "ExpiredTokenException"
                    | "InvalidClientTokenId" => ConnectorError::Refused {
                        status,
                        reason: format!(
                            "{said} (check the hub's AWS credentials and that its IAM policy allows this Cognito action on {})",
                            self.pool
                        ),
                    },
                    _ => ConnectorError::Refused {
                        status,
                        reason: said,
                    },
                }
            }
        }
    }

    /// The pool's account with this `sub`, or `None`.
    async fn user_by_sub(&self, sub: &str) -> Result<Option<UserType>, ConnectorError> {
        // A sub is a UUID: anything else cannot be one (and must not reach the filter).
        if sub.is_empty()
            || sub.len() > 128
            || !sub.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Ok(None);
        }
        let out = self
            .client()
            .await
            .list_users()
            .user_pool_id(&self.pool)
            .filter(format!("sub = \"{sub}\""))
            .limit(1)
            .send()
            .paced()
            .await
            .map_err(|e| self.error(failure(e)))?;
        Ok(out.users().first().cloned())
    }

    /// The Cognito user name of the account with this `sub`.
    async fn username_of(&self, sub: &str) -> Result<String, ConnectorError> {
        let user = self
            .user_by_sub(sub)
            .await?
            .ok_or(ConnectorError::NotFound)?;
        user.username()
            .map(str::to_string)
            .ok_or_else(|| refused("Cognito listed a user without a user name"))
    }

    async fn set_password(&self, username: &str, password: &str) -> Result<(), ConnectorError> {
        self.client()
            .await
            .admin_set_user_password()
            .user_pool_id(&self.pool)
            .username(username)
            .password(password)
            .permanent(true)
            .send()
            .paced()
            .await
            .map(|_| ())
            .map_err(|e| self.error(failure(e)))
    }

    async fn set_enabled(&self, username: &str, enabled: bool) -> Result<(), ConnectorError> {
        let c = self.client().await;
        let r = if enabled {
            c.admin_enable_user()
                .user_pool_id(&self.pool)
                .username(username)
                .send()
                .paced()
                .await
                .map(|_| ())
                .map_err(failure)
        } else {
            c.admin_disable_user()
                .user_pool_id(&self.pool)
                .username(username)
                .send()
                .paced()
                .await
                .map(|_| ())
                .map_err(failure)
        };
        r.map_err(|f| self.error(f))
    }

    /// The Cognito attributes a payload maps to.
    fn attributes(&self, user: &Value) -> BTreeMap<String, String> {
        let mut out = cognito_attributes(user);
        if self.email_verified && out.contains_key("email") {
            out.insert("email_verified".into(), "true".into());
        }
        out
    }
}

#[async_trait::async_trait]
impl Connector for CognitoConnector {
    async fn list_users(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let out = self
            .client()
            .await
            .list_users()
            .user_pool_id(&self.pool)
            .limit(PAGE_SIZE)
            .set_pagination_token(cursor.map(str::to_string))
            .send()
            .paced()
            .await
            .map_err(|e| self.error(failure(e)))?;
        Ok(ListPage {
            resources: out.users().iter().filter_map(scim_of_user).collect(),
            next: out
                .pagination_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        })
    }

    async fn list_groups(&self, cursor: Option<&str>) -> Result<ListPage, ConnectorError> {
        let c = self.client().await;
        let out = c
            .list_groups()
            .user_pool_id(&self.pool)
            .limit(PAGE_SIZE)
            .set_next_token(cursor.map(str::to_string))
            .send()
            .paced()
            .await
            .map_err(|e| self.error(failure(e)))?;
        let mut resources = Vec::with_capacity(out.groups().len());
        for g in out.groups() {
            let Some(name) = g.group_name() else { continue };
            let mut members = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = c
                    .list_users_in_group()
                    .user_pool_id(&self.pool)
                    .group_name(name)
                    .limit(PAGE_SIZE)
                    .set_next_token(token.take())
                    .send()
                    .paced()
                    .await
                    .map_err(|e| self.error(failure(e)))?;
                members.extend(
                    page.users()
                        .iter()
                        .filter_map(|u| attribute_of(u.attributes(), "sub"))
                        .map(|s| serde_json::json!({ "value": s })),
                );
                match page.next_token().filter(|t| !t.is_empty()) {
                    Some(t) => token = Some(t.to_string()),
                    None => break,
                }
            }
            resources
                .push(serde_json::json!({"id": name, "displayName": name, "members": members}));
        }
        Ok(ListPage {
            resources,
            next: out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        })
    }

    fn kept(&self, kind: ResourceKind, mapped: &Value) -> Value {
        match kind {
            // The attributes `create_user` / `update_user` write, read back as the listing
            // reads them, with the user name and `Enabled`.
            ResourceKind::User => {
                let mut u = scim_of_attributes(&cognito_attributes(mapped));
                if let Some(o) = u.as_object_mut() {
                    if let Some(n) = str_at(mapped, &["userName"]) {
                        o.insert("userName".into(), Value::String(n.to_string()));
                    }
                    let active = mapped
                        .get("active")
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                    o.insert("active".into(), Value::Bool(active));
                }
                u
            }
            // A Cognito group keeps its name (the description is the connector's own).
            ResourceKind::Group => {
                let mut g = serde_json::Map::new();
                if let Some(n) = str_at(mapped, &["displayName"]) {
                    g.insert("displayName".into(), Value::String(n.to_string()));
                }
                if let Some(m) = mapped.get("members") {
                    g.insert("members".into(), m.clone());
                }
                Value::Object(g)
            }
        }
    }

    async fn test(&self) -> Result<String, ConnectorError> {
        let out = self
            .client()
            .await
            .describe_user_pool()
            .user_pool_id(&self.pool)
            .send()
            .paced()
            .await
            .map_err(|e| match self.error(failure(e)) {
                // A test says what is wrong; it disables nothing.
                ConnectorError::Gone(why) => ConnectorError::Refused {
                    status: Some(400),
                    reason: why,
                },
                other => other,
            })?;
        let (name, users) = out
            .user_pool()
            .map(|p| (p.name().unwrap_or("?"), p.estimated_number_of_users()))
            .unwrap_or(("?", 0));
        Ok(format!(
            "Cognito user pool {} ({name:?}) in {}: about {users} users",
            self.pool, self.region
        ))
    }

    fn create_detects_existing(&self) -> bool {
        // UsernameExistsException: one call per new account.
        true
    }

    async fn find_user(&self, user: &Value) -> Result<Option<TargetId>, ConnectorError> {
        let name = user_name(user)?;
        match self
            .client()
            .await
            .admin_get_user()
            .user_pool_id(&self.pool)
            .username(name)
            .send()
            .paced()
            .await
        {
            Ok(out) => attribute_of(out.user_attributes(), "sub")
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| refused("Cognito answered a user without a sub")),
            Err(e) => match self.error(failure(e)) {
                ConnectorError::NotFound => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn create_user(
        &self,
        user: &Value,
        password: Option<&str>,
    ) -> Result<TargetId, ConnectorError> {
        let name = user_name(user)?;
        let attrs = attribute_list(&self.attributes(user))?;
        let mut req = self
            .client()
            .await
            .admin_create_user()
            .user_pool_id(&self.pool)
            .username(name)
            .message_action(MessageActionType::Suppress)
            .set_user_attributes(Some(attrs));
        if let Some(p) = password {
            // Checked against the pool's password policy before the account exists.
            req = req.temporary_password(p);
        }
        let out = req
            .send()
            .paced()
            .await
            .map_err(|e| self.error(failure(e)))?;
        let created = out.user();
        let sub = match created.and_then(|u| attribute_of(u.attributes(), "sub")) {
            Some(s) => s.to_string(),
            None => self
                .find_user(user)
                .await?
                .ok_or_else(|| refused("Cognito created the user but does not find it"))?,
        };
        // The name Cognito gave the account (the sub, in pools that sign in by e-mail).
        let username = created
            .and_then(UserType::username)
            .unwrap_or(name)
            .to_string();
        if let Some(p) = password {
            self.set_password(&username, p).await?;
        }
        if user.get("active") == Some(&Value::Bool(false)) {
            self.set_enabled(&username, false).await?;
        }
        Ok(sub)
    }

    async fn update_user(
        &self,
        id: &str,
        user: &Value,
        previous: Option<&Value>,
        password: Option<&str>,
    ) -> Result<Option<TargetId>, ConnectorError> {
        let wanted = user_name(user)?;
        let current = self
            .user_by_sub(id)
            .await?
            .ok_or(ConnectorError::NotFound)?;
        let username = current
            .username()
            .ok_or_else(|| refused("Cognito listed a user without a user name"))?
            .to_string();
        if username != wanted && username != id {
            return Err(ConnectorError::Refused {
                status: None,
                reason: format!(
                    "Cognito user names cannot change: {username:?} cannot become {wanted:?} (keep userName stable for this target, e.g. map it from externalId, or delete the account and provision it again)"
                ),
            });
        }
        let attrs = self.attributes(user);
        let have = current.attributes();
        let changed: BTreeMap<String, String> = attrs
            .iter()
            .filter(|(k, v)| attribute_of(have, k) != Some(v.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let c = self.client().await;
        if !changed.is_empty() {
            c.admin_update_user_attributes()
                .user_pool_id(&self.pool)
                .username(&username)
                .set_user_attributes(Some(attribute_list(&changed)?))
                .send()
                .paced()
                .await
                .map_err(|e| self.error(failure(e)))?;
        }
        // Cleared since the last delivery (and still on the account): removed.
        if let Some(prev) = previous {
            let cleared: Vec<String> = self
                .attributes(prev)
                .into_keys()
                .filter(|k| {
                    !attrs.contains_key(k)
                        && k != "email_verified"
                        && attribute_of(have, k).is_some()
                })
                .collect();
            if !cleared.is_empty() {
                c.admin_delete_user_attributes()
                    .user_pool_id(&self.pool)
                    .username(&username)
                    .set_user_attribute_names(Some(cleared))
                    .send()
                    .paced()
                    .await
                    .map_err(|e| self.error(failure(e)))?;
            }
        }
        if let Some(p) = password {
            self.set_password(&username, p).await?;
        }
        let active = user.get("active").and_then(Value::as_bool).unwrap_or(true);
        if active != current.enabled() {
            self.set_enabled(&username, active).await?;
        }
        Ok(None)
    }

    async fn disable_user(&self, id: &str) -> Result<(), ConnectorError> {
        let username = self.username_of(id).await?;
        self.set_enabled(&username, false).await
    }

    async fn delete_user(&self, id: &str) -> Result<(), ConnectorError> {
        let username = match self.username_of(id).await {
            Ok(u) => u,
            Err(ConnectorError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        match self
            .client()
            .await
            .admin_delete_user()
            .user_pool_id(&self.pool)
            .username(username)
            .send()
            .paced()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.error(failure(e)) {
                ConnectorError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn find_group(&self, group: &Value) -> Result<Option<TargetId>, ConnectorError> {
        let name = group_name(group)?;
        match self
            .client()
            .await
            .get_group()
            .user_pool_id(&self.pool)
            .group_name(name)
            .send()
            .paced()
            .await
        {
            Ok(out) => Ok(Some(
                out.group()
                    .and_then(|g| g.group_name())
                    .unwrap_or(name)
                    .to_string(),
            )),
            Err(e) => match self.error(failure(e)) {
                ConnectorError::NotFound => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn create_group(&self, group: &Value) -> Result<TargetId, ConnectorError> {
        let name = group_name(group)?;
        self.client()
            .await
            .create_group()
            .user_pool_id(&self.pool)
            .group_name(name)
            .description("Provisioned by provisync")
            .send()
            .paced()
            .await
            .map_err(|e| self.error(failure(e)))?;
        Ok(name.to_string())
    }

    async fn update_group(
        &self,
        id: &str,
        group: &Value,
        _previous: Option<&Value>,
    ) -> Result<(), ConnectorError> {
        let name = group_name(group)?;
        if name != id {
            return Err(ConnectorError::Refused {
                status: None,
                reason: format!(
                    "Cognito cannot rename group {id:?} to {name:?}: map the new name back to {id:?} with group_mapping, or recreate the group"
                ),
            });
        }
        Ok(())
    }

    async fn delete_group(&self, id: &str) -> Result<(), ConnectorError> {
        match self
            .client()
            .await
            .delete_group()
            .user_pool_id(&self.pool)
            .group_name(id)
            .send()
            .paced()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.error(failure(e)) {
                ConnectorError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn add_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError> {
        for m in member_ids {
            let username = match self.username_of(m).await {
                Ok(u) => u,
                Err(ConnectorError::NotFound) => {
                    return Err(ConnectorError::Refused {
                        status: None,
                        reason: format!("member {m:?} is not a user of pool {}", self.pool),
                    });
                }
                Err(e) => return Err(e),
            };
            // Adding a member twice is no error in Cognito.
            self.client()
                .await
                .admin_add_user_to_group()
                .user_pool_id(&self.pool)
                .group_name(group_id)
                .username(username)
                .send()
                .paced()
                .await
                .map_err(|e| match failure(e) {
                    f if f.is("ResourceNotFoundException") => match self.error(f) {
                        gone @ ConnectorError::Gone(_) => gone,
                        _ => ConnectorError::Refused {
                            status: Some(400),
                            reason: format!("group {group_id:?} is not in pool {}", self.pool),
                        },
                    },
                    f => self.error(f),
                })?;
        }
        Ok(())
    }

    async fn remove_members(
        &self,
        group_id: &str,
        member_ids: &[TargetId],
    ) -> Result<(), ConnectorError> {
        for m in member_ids {
            let username = match self.username_of(m).await {
                Ok(u) => u,
                // Gone from the pool: not a member any more.
                Err(ConnectorError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            match self
                .client()
                .await
                .admin_remove_user_from_group()
                .user_pool_id(&self.pool)
                .group_name(group_id)
                .username(username)
                .send()
                .paced()
                .await
            {
                Ok(_) => {}
                Err(e) => match self.error(failure(e)) {
                    ConnectorError::NotFound => {}
                    other => return Err(other),
                },
            }
        }
        Ok(())
    }
}

fn group_name(group: &Value) -> Result<&str, ConnectorError> {
    str_at(group, &["displayName"]).ok_or_else(|| refused("the group has no displayName"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attributes_from_scim() {
        let u = json!({
            "userName": "alice", "displayName": "Alice L.", "nickName": "Al",
            "name": {"givenName": "Alice", "familyName": "Liddell", "middleName": "P"},
            "emails": [{"value": "w@x.example"}, {"value": "p@x.example", "primary": true}],
            "phoneNumbers": [{"value": "+33 (1) 23-45-67-89", "primary": true}],
            "locale": "fr-FR", "timezone": "Europe/Paris", "active": true,
            "attributes": {"department": "Wonderland", "birthdate": "1852-05-04",
                           "custom:level": 3, "tags": ["a"]}
        });
        let a = cognito_attributes(&u);
        let want: BTreeMap<String, String> = [
            ("email", "p@x.example"),
            ("given_name", "Alice"),
            ("family_name", "Liddell"),
            ("middle_name", "P"),
            ("name", "Alice L."),
            ("nickname", "Al"),
            ("locale", "fr-FR"),
            ("zoneinfo", "Europe/Paris"),
            ("phone_number", "+33123456789"),
            ("custom:department", "Wonderland"),
            ("birthdate", "1852-05-04"),
            ("custom:level", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(a, want);
        // Nothing but a user name: nothing to send; a name from its parts.
        assert!(cognito_attributes(&json!({"userName": "bob"})).is_empty());
        let parts = cognito_attributes(&json!({"name": {"givenName": "Bob"}}));
        assert_eq!(parts["name"], "Bob");
        // Phone numbers Cognito would refuse are left out.
        assert_eq!(e164("555-1234"), None);
        assert_eq!(e164("+1 555 0100"), Some("+15550100".into()));
        assert_eq!(e164("+12"), None);
    }

    #[test]
    fn what_cognito_keeps_is_what_it_lists() {
        let c = CognitoConnector::new(&CognitoTarget {
            user_pool_id: "eu-west-1_abc".into(),
            region: None,
            endpoint_url: None,
            email_verified: true,
        })
        .unwrap();
        let mapped = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": "h1",
            "userName": "alice", "title": "Queen", "active": true,
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "a@x.example", "type": "work", "primary": true}],
            "phoneNumbers": [{"value": "+44 20 7946 0000", "type": "work"}],
            "attributes": {"department": "Tea", "birthdate": "1852-05-04"}
        });
        let kept = c.kept(ResourceKind::User, &mapped);
        assert_eq!(
            kept,
            json!({"userName": "alice", "active": true, "displayName": "Alice Liddell",
                   "name": {"givenName": "Alice", "familyName": "Liddell"},
                   "emails": [{"value": "a@x.example", "primary": true}],
                   "phoneNumbers": [{"value": "+442079460000", "primary": true}],
                   "attributes": {"department": "Tea", "birthdate": "1852-05-04"}})
        );
        // The account Cognito holds after the delivery lists as exactly that, plus its id.
        let mut attrs = c.attributes(&mapped);
        attrs.insert("sub".into(), "0f1e-22".into());
        let user = UserType::builder()
            .username("alice")
            .enabled(true)
            .set_attributes(Some(attribute_list(&attrs).unwrap()))
            .build();
        let mut listed = scim_of_user(&user).unwrap();
        assert_eq!(listed["id"], "0f1e-22");
        listed.as_object_mut().unwrap().remove("id");
        assert_eq!(listed, kept);
        // A pool that names users by sub: the sign-in address is the user name.
        let by_sub = UserType::builder()
            .username("0f1e-22")
            .enabled(false)
            .set_attributes(Some(attribute_list(&attrs).unwrap()))
            .build();
        let listed = scim_of_user(&by_sub).unwrap();
        assert_eq!(listed["userName"], "a@x.example");
        assert_eq!(listed["active"], false);
        assert_eq!(
            c.kept(
                ResourceKind::Group,
                &json!({"displayName": "navy", "externalId": "g"})
            ),
            json!({"displayName": "navy"})
        );
    }

    #[test]
    fn setup_and_debug() {
        // The emulator endpoint below is on loopback: opt in, as `serve` does.
        provisync_core::net::set_process_policy(provisync_core::net::UrlPolicy::new(
            provisync_core::net::PrivateTargets::Loopback,
        ));
        let t = CognitoTarget {
            user_pool_id: "eu-west-1_abc".into(),
            region: None,
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            email_verified: true,
        };
        let c = CognitoConnector::new(&t).unwrap();
        assert_eq!(c.region, "eu-west-1");
        assert!(format!("{c:?}").contains("eu-west-1_abc"));
        let with = c.attributes(&json!({"emails": [{"value": "a@b.example"}]}));
        assert_eq!(with["email_verified"], "true");
        let without = c.attributes(&json!({"userName": "a"}));
        assert!(!without.contains_key("email_verified"));
        let bad = CognitoTarget {
            endpoint_url: Some("http://cognito.example.com".into()),
            ..t
        };
        assert!(matches!(
            CognitoConnector::new(&bad),
            Err(SetupError::Url(_))
        ));
    }

    #[test]
    fn error_mapping() {
        let c = CognitoConnector::new(&CognitoTarget {
            user_pool_id: "us-east-1_abc".into(),
            region: None,
            endpoint_url: None,
            email_verified: false,
        })
        .unwrap();
        let svc = |code: &str, message: &str, status: u16| Failure::Service {
            code: code.into(),
            message: message.into(),
            status: Some(status),
        };
        assert!(matches!(
            c.error(svc("UsernameExistsException", "User account already exists", 400)),
            ConnectorError::Conflict(m) if m == "UsernameExistsException: User account already exists"
        ));
        assert_eq!(
            c.error(svc("UserNotFoundException", "User does not exist.", 400)),
            ConnectorError::NotFound
        );
        assert!(matches!(
            c.error(svc("ResourceNotFoundException", "User pool us-east-1_abc does not exist.", 400)),
            ConnectorError::Gone(m) if m.contains("us-east-1_abc")
        ));
        assert_eq!(
            c.error(svc("ResourceNotFoundException", "Group not found.", 400)),
            ConnectorError::NotFound
        );
        for (code, status, paced_as) in [
            ("TooManyRequestsException", 400, Some(429)),
            ("ThrottlingException", 400, Some(429)),
            ("ServiceUnavailableException", 503, Some(503)),
            ("InternalErrorException", 500, Some(500)),
            ("Whatever", 503, Some(503)),
        ] {
            match c.error(svc(code, "slow down", status)) {
                ConnectorError::Retryable { status, .. } => assert_eq!(status, paced_as, "{code}"),
                other => panic!("{code}: {other:?}"),
            }
        }
        assert_eq!(
            c.error(svc(
                "InvalidPasswordException",
                "Password did not conform with policy",
                400
            )),
            ConnectorError::Refused {
                status: Some(400),
                reason: "InvalidPasswordException: Password did not conform with policy".into()
            }
        );
        match c.error(svc(
            "AccessDeniedException",
            "not authorized to perform: cognito-idp:AdminCreateUser",
            400,
        )) {
            ConnectorError::Refused { reason, .. } => {
                assert!(reason.contains("IAM policy"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            c.error(Failure::Transport("connection refused".into()))
                .is_retryable()
        );
        assert!(matches!(
            c.error(Failure::Client("no credentials".into())),
            ConnectorError::Refused { .. }
        ));
    }
}
