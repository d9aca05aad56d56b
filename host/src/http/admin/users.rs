//! `/tenants/{tenant}/users`: a tenant's users, their passwords, disabling and unlocking.

use super::{answer::*, auth::*, errors::*, input::*, module::*};
use crate::service::Service;
use crate::store::{Change, ChangeRecord};
use anyhow::anyhow;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use granted_policy::credentials::kdf::KdfAlgorithm;
use granted_policy::credentials::password;
use granted_policy::model::{FederatedSubject, SignIn, Timestamp, UserRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

// The answers' fields are in alphabetical order, the order of the `json!` objects they replaced.

/// The users of a tenant.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserList {
    /// By username.
    users: Vec<UserView>,
}

/// A user, without any hash.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserView {
    /// Disabled users get no tokens.
    disabled: bool,
    /// An `sso` user's subject at the tenant's identity provider, once linked (§6).
    #[serde(skip_serializing_if = "Option::is_none")]
    federated_subject: Option<FederatedSubject>,
    /// Locked out by failed logins until.
    #[schema(value_type = Option<String>, format = DateTime)]
    locked_until: Option<Timestamp>,
    /// When it was set.
    #[schema(value_type = Option<String>, format = DateTime)]
    password_changed_at: Option<Timestamp>,
    /// A password is set.
    password_set: bool,
    /// How the user signs in.
    sign_in: SignIn,
    /// The username.
    username: String,
}

/// What `POST /tenants/{tenant}/users/{username}/{action}` does.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum UserAction {
    /// The user gets no tokens.
    Disable,
    /// The user may get tokens again.
    Enable,
    /// Forget the failed logins and lift the lock.
    Unlock,
}

impl UserAction {
    /// The action named `name` in the path.
    fn named(name: &str) -> Option<UserAction> {
        match name {
            "disable" => Some(UserAction::Disable),
            "enable" => Some(UserAction::Enable),
            "unlock" => Some(UserAction::Unlock),
            _ => None,
        }
    }

    /// Its name in the audit log.
    fn audited(self) -> &'static str {
        match self {
            UserAction::Disable => "disable_user",
            UserAction::Enable => "enable_user",
            UserAction::Unlock => "unlock_user",
        }
    }
}

/// A user as the API shows it.
pub(crate) fn user_view(user: &UserRecord) -> UserView {
    UserView {
        disabled: user.disabled,
        federated_subject: user.federated_subject.clone(),
        locked_until: user.locked_until,
        password_changed_at: user.password_changed_at,
        password_set: user.password_hash.is_some(),
        sign_in: user.sign_in,
        username: user.username.clone(),
    }
}

#[utoipa::path(
    get,
    path = "/tenants/{tenant}/users",
    tag = "users",
    params(
        ("tenant" = String, Path, description = "The tenant")
    ),
    responses(
        (status = 200, description = "The tenant's users", body = UserList),
        (status = 404, description = "Not found", body = ErrorBody),
        CommonErrors
    )
)]
pub(crate) async fn list_users(admin: Admin, Path(tenant): Path<String>) -> ApiResult<UserList> {
    blocking(move || {
        let store = &admin.server.store;
        if store
            .tenant(&tenant)
            .map_err(|e| ApiError::unavailable("store", e))?
            .is_none()
        {
            return Err(ApiError::not_found(format!("no tenant `{tenant}`")));
        }
        let users = store
            .users_of(&tenant)
            .map_err(|e| ApiError::unavailable("store", e))?;
        Ok(Answer::ok(UserList {
            users: users.iter().map(user_view).collect(),
        }))
    })
    .await
}

// The bounds of a password, the same as the change-password page's (C10): at least 8
// characters, at most 1024 bytes (PBKDF2 hashes any length; this bounds the work).
pub(crate) use granted_policy::authorize::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};

pub(crate) fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(
            "invalid_password",
            format!("a password must be {MIN_PASSWORD_CHARS} characters to {MAX_PASSWORD_BYTES} bytes long"),
        ));
    }
    Ok(())
}

/// Hashes a password natively (PBKDF2-HMAC-SHA256 at the configured iterations, random salt).
pub(crate) fn hash(server: &Service, clear: &str) -> Result<String, ApiError> {
    let salt =
        crate::random::random_bytes(16).map_err(|e| ApiError::unavailable("random source", e))?;
    password::hash_password(
        KdfAlgorithm::Pbkdf2Sha256,
        clear,
        &salt,
        server.settings.kdf_iterations,
    )
    .ok_or_else(|| ApiError::unavailable("password hashing", "no hash"))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    #[schema(min_length = 1, max_length = 128, pattern = r"^\S(.*\S)?$")]
    username: String,
    #[serde(default = "direct")]
    sign_in: SignIn,
    #[serde(default)]
    #[schema(min_length = 8, max_length = 1024)]
    password: Option<String>,
    #[serde(default)]
    disabled: bool,
}

pub(crate) fn direct() -> SignIn {
    SignIn::Direct
}

#[utoipa::path(
    post,
    path = "/tenants/{tenant}/users",
    tag = "users",
    params(
        ("tenant" = String, Path, description = "The tenant")
    ),
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "A conflict", body = ErrorBody),
        (status = 422, description = "Refused: the message says why", body = ErrorBody),
        CommonErrors, BodyErrors
    )
)]
pub(crate) async fn create_user(
    admin: Admin,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<UserView> {
    let create: CreateUser = body(&headers, &bytes)?;
    check_name("username", &create.username)?;
    match (&create.sign_in, &create.password) {
        (SignIn::Sso, Some(_)) => {
            return Err(ApiError::invalid(
                "invalid_user",
                "an SSO user signs in through the identity provider and has no password here",
            ))
        }
        (_, Some(p)) => check_password(p)?,
        _ => {}
    }
    blocking(move || {
        let hashed = create
            .password
            .as_deref()
            .map(|p| hash(&admin.server, p))
            .transpose()?;
        let at = admin.audit.now;
        change(&admin, |tx| {
            if tx.tenant(&tenant)?.is_none() {
                return Ok(Change::Refused(Err(ApiError::not_found(format!(
                    "no tenant `{tenant}`"
                )))));
            }
            if tx.user(&tenant, &create.username)?.is_some() {
                return Ok(Change::Refused(Err(ApiError::conflict(
                    "user_exists",
                    format!("user `{}` exists in tenant `{tenant}`", create.username),
                ))));
            }
            let user = UserRecord {
                username: create.username.clone(),
                sub: Some(crate::random::new_sub()?),
                sign_in: create.sign_in,
                password_changed_at: hashed.as_ref().map(|_| at),
                password_hash: hashed,
                disabled: create.disabled,
                locked_until: None,
                federated_subject: None,
            };
            tx.insert_user(&tenant, &user)?;
            let view = user_view(&user);
            Ok(Change::Made(
                Ok(Answer::created(view)),
                ChangeRecord {
                    action: "create_user",
                    target: json!({"tenant": tenant, "username": user.username}),
                    before: Value::Null,
                    after: serde_json::to_value(user_view(&user))?,
                },
            ))
        })
    })
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetPassword {
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

#[utoipa::path(
    put,
    path = "/tenants/{tenant}/users/{username}/password",
    tag = "users",
    params(
        ("tenant" = String, Path, description = "The tenant"),
        ("username" = String, Path, description = "The username")
    ),
    request_body = SetPassword,
    responses(
        (status = 200, description = "Set", body = UserView),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 422, description = "Refused: the message says why", body = ErrorBody),
        CommonErrors, BodyErrors
    )
)]
pub(crate) async fn set_password(
    admin: Admin,
    Path((tenant, username)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<UserView> {
    let set: SetPassword = body(&headers, &bytes)?;
    check_password(&set.password)?;
    blocking(move || {
        let hashed = hash(&admin.server, &set.password)?;
        let at = admin.audit.now;
        change(&admin, |tx| {
            let Some(user) = tx.user(&tenant, &username)? else {
                return Ok(Change::Refused(Err(ApiError::not_found(format!(
                    "no user `{username}` in tenant `{tenant}`"
                )))));
            };
            if user.sign_in == SignIn::Sso {
                return Ok(Change::Refused(Err(ApiError::invalid(
                    "invalid_user",
                    "an SSO user signs in through the identity provider and has no password here",
                ))));
            }
            tx.set_password(&tenant, &username, &hashed, at)?;
            let after = tx
                .user(&tenant, &username)?
                .ok_or_else(|| anyhow!("user vanished"))?;
            Ok(Change::Made(
                Ok(Answer::ok(user_view(&after))),
                ChangeRecord {
                    action: "set_password",
                    target: json!({"tenant": tenant, "username": username}),
                    before: json!({"password_changed_at": user.password_changed_at}),
                    after: json!({"password_changed_at": after.password_changed_at}),
                },
            ))
        })
    })
    .await
}

/// Disable, enable or unlock a user.
pub(crate) fn user_change(
    admin: &Admin,
    tenant: &str,
    username: &str,
    action: UserAction,
) -> ApiResult<UserView> {
    change(admin, |tx| {
        let Some(before) = tx.user(tenant, username)? else {
            return Ok(Change::Refused(Err(ApiError::not_found(format!(
                "no user `{username}` in tenant `{tenant}`"
            )))));
        };
        let failures = tx.login_failures(tenant, username)?;
        let unchanged = match action {
            UserAction::Disable => before.disabled,
            UserAction::Enable => !before.disabled,
            UserAction::Unlock => failures == 0 && before.locked_until.is_none(),
        };
        if unchanged {
            return Ok(Change::Refused(Ok(Answer::ok(user_view(&before)))));
        }
        match action {
            UserAction::Disable => tx.set_disabled(tenant, username, true)?,
            UserAction::Enable => tx.set_disabled(tenant, username, false)?,
            UserAction::Unlock => tx.unlock(tenant, username)?,
        }
        let after = tx
            .user(tenant, username)?
            .ok_or_else(|| anyhow!("user vanished"))?;
        Ok(Change::Made(
            Ok(Answer::ok(user_view(&after))),
            ChangeRecord {
                action: action.audited(),
                target: json!({"tenant": tenant, "username": username}),
                before: json!({"user": user_view(&before), "login_failures": failures}),
                after: serde_json::to_value(user_view(&after))?,
            },
        ))
    })
}

#[utoipa::path(
    post,
    path = "/tenants/{tenant}/users/{username}/{action}",
    tag = "users",
    params(
        ("tenant" = String, Path, description = "The tenant"),
        ("username" = String, Path, description = "The username"),
        ("action" = UserAction, Path, description = "`disable`, `enable`, or `unlock` (forget failed logins, lift the lock)")
    ),
    responses(
        (status = 200, description = "The user after the change (or as it was, when there was nothing to change)", body = UserView),
        (status = 404, description = "Not found", body = ErrorBody),
        CommonErrors
    )
)]
pub(crate) async fn user_action(
    admin: Admin,
    Path((tenant, username, action)): Path<(String, String, String)>,
) -> ApiResult<UserView> {
    let Some(action) = UserAction::named(&action) else {
        return Err(ApiError::not_found(
            "no such user action: `disable`, `enable` or `unlock`",
        ));
    };
    blocking(move || user_change(&admin, &tenant, &username, action)).await
}
