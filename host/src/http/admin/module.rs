//! The admin API's calls into the policy module and the store: previews, statuses, secrets, one-transaction changes.

use super::{auth::*, errors::*};
use crate::guest::Guest;
use crate::service::Service;
use crate::store::{AdminTx, Change};
use granted_policy::model::{App, Timestamp};
use granted_policy::rules::status::AppStatus;
use serde_json::{json, Value};

/// Calls a module entry point; its `ok` value, or the module's error as a 422.
pub(crate) fn module(server: &Service, entry: &str, input: &Value) -> Result<Value, ApiError> {
    call_module(&server.guest, entry, input)
}

pub(crate) fn call_module(guest: &Guest, entry: &str, input: &Value) -> Result<Value, ApiError> {
    let bytes = serde_json::to_vec(input).map_err(|e| ApiError::unavailable("policy module", e))?;
    let out = guest
        .call(entry, &bytes)
        .map_err(|e| ApiError::unavailable("policy module", e))?;
    let mut envelope: Value =
        serde_json::from_slice(&out).map_err(|e| ApiError::unavailable("policy module", e))?;
    if let Some(ok) = envelope.get_mut("ok") {
        return Ok(ok.take());
    }
    let error = &envelope["error"];
    Err(ApiError::invalid(
        "invalid_input",
        error["message"]
            .as_str()
            .unwrap_or("the policy module refused the input")
            .to_string(),
    )
    .with(json!({"code": error["code"]})))
}

pub(crate) fn sunset(server: &Service) -> Option<Timestamp> {
    server.settings.sunset
}

/// The module's `app_status`: each revision's eligibility, each install's grant now and after
/// updating, and the app's status (`available`, `kept`, `retired`, `never`).
pub(crate) fn app_status(
    server: &Service,
    app: &App,
    installs: &[(String, u32, bool)],
) -> Result<AppStatus, ApiError> {
    status_with(&server.guest, sunset(server), app, installs)
}

/// [`app_status`] with this guest and this sunset (`granted report sunset` has no server).
pub(crate) fn status_with(
    guest: &Guest,
    sunset: Option<Timestamp>,
    app: &App,
    installs: &[(String, u32, bool)],
) -> Result<AppStatus, ApiError> {
    let mut input = json!({
        "app": app,
        "installs": installs.iter().map(|(tenant, rev, sso)| json!({
            "tenant": tenant, "rev": rev, "sso_required": sso,
        })).collect::<Vec<_>>(),
    });
    if let Some(s) = sunset {
        input["sunset"] = json!(s);
    }
    let status = call_module(guest, "app_status", &input)?;
    serde_json::from_value(status).map_err(|e| {
        ApiError::unavailable(
            "policy module",
            format!("an app status that does not parse: {e}"),
        )
    })
}

/// A new client secret (shown once) and its HMAC under the server key.
pub(crate) fn new_secret(server: &Service) -> Result<(String, String), ApiError> {
    let key = server
        .store
        .client_secret_key()
        .map_err(|e| ApiError::unavailable("store", e))?
        .ok_or_else(|| ApiError::unavailable("store", "no server keys"))?;
    let entropy =
        crate::random::random_base64(32).map_err(|e| ApiError::unavailable("random source", e))?;
    let out = module(
        server,
        "new_client_secret",
        &json!({"key": key, "entropy": entropy}),
    )?;
    match (out["secret"].as_str(), out["secret_hmac"].as_str()) {
        (Some(secret), Some(hmac)) => Ok((secret.to_string(), hmac.to_string())),
        _ => Err(ApiError::unavailable("policy module", "no secret")),
    }
}

/// Runs `f` on the blocking pool (store transactions and module calls).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::unavailable("server", e))?
}

/// An admin change in one transaction; store failures become 503s, refusals keep their error.
pub(crate) fn change<T>(
    admin: &Admin,
    f: impl FnOnce(&AdminTx<'_>) -> anyhow::Result<Change<Result<T, ApiError>>>,
) -> Result<T, ApiError> {
    admin
        .server
        .store
        .admin_change(&admin.audit, f)
        .map_err(|e| ApiError::unavailable("store", format!("{e:#}")))?
}
