//! The admin API (`/admin/api/v1`, JSON): apps and their revisions, tenants and their installs,
//! users. Every decision about an app edit is the policy module's (`preview`, the function the
//! admin page runs in the browser); the host authenticates, reads and writes the store, and
//! records each change in the audit log in the same transaction.
//!
//! Errors are JSON objects `{"error": code, "message": sentence}` with stable codes; a refused
//! edit adds `reason`, `rule` and the module's preview. Nothing is written unless the whole
//! change is.

use crate::guest::Guest;
use crate::server::{now, source_address, Server};
use crate::store::{AdminAudit, AdminTx, Change, ChangeRecord, EditContext};
use anyhow::anyhow;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use granted_policy::credentials::kdf::KdfAlgorithm;
use granted_policy::credentials::password;
use granted_policy::model::{
    App, GrantType, Revision, SignIn, TenantRecord, Timestamp, UserRecord,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The routes under `/admin/api/v1`.
pub fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/apps", get(list_apps).post(create_app))
        .route("/apps/{app_id}", get(get_app))
        .route("/previews/create", post(preview_create))
        .route("/create-context", get(create_context_route))
        .route("/apps/{app_id}/revisions", post(append_revision))
        .route("/apps/{app_id}/preview", post(preview_edit))
        .route("/apps/{app_id}/edit-context", get(edit_context))
        .route(
            "/apps/{app_id}/clients/{client_id}/secret",
            post(rotate_client_secret),
        )
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route("/tenants/{tenant}", get(get_tenant))
        .route("/tenants/{tenant}/installs", post(install))
        .route(
            "/tenants/{tenant}/installs/{app_id}/update",
            post(update_install),
        )
        .route("/tenants/{tenant}/users", get(list_users).post(create_user))
        .route(
            "/tenants/{tenant}/users/{username}/password",
            put(set_password),
        )
        .route(
            "/tenants/{tenant}/users/{username}/{action}",
            post(user_action),
        )
        .route("/audit", get(audit_log))
        .route("/openapi.json", get(openapi_document))
        .route("/reports/sunset", get(sunset_report_route))
        .layer(axum::middleware::map_response(json_errors))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such admin API route",
            )
        })
}

// --- errors ------------------------------------------------------------------------------------

/// Every error answer of the admin API is JSON, also axum's own (a path that does not decode, a
/// body over the limit, a method the route lacks).
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let code = match status.as_u16() {
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        400..=499 => "invalid_request",
        _ => "unavailable",
    };
    let allow = response.headers().get("allow").cloned();
    let bytes = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        message
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    if let Some(allow) = allow {
        answer.headers_mut().insert("allow", allow);
    }
    answer
}

/// An error answer: status, stable code, a sentence, and more fields where useful.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: Value,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Value::Null,
            retry_after: None,
        }
    }

    fn with(mut self, extra: Value) -> ApiError {
        self.extra = extra;
        self
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!("admin API: {what} failed: {e}");
        let mut err = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the {what} could not answer; try again"),
        );
        err.retry_after = Some(1);
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code, "message": self.message});
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), self.extra) {
            body.extend(extra);
        }
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("cache-control", HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                headers.insert("retry-after", value);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"granted-admin\""),
            );
        }
        response
    }
}

type ApiResult = Result<Response, ApiError>;

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

fn with_etag(mut response: Response, rev: u32) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{rev}\"")) {
        response.headers_mut().insert("etag", value);
    }
    response
}

// --- authentication ---------------------------------------------------------------------------

/// The SHA-256 of an admin token, as stored.
pub fn admin_token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new admin token: 32 random bytes, base64url, with a prefix that says what it is.
pub fn new_admin_token() -> anyhow::Result<String> {
    use base64::Engine as _;
    let bytes = crate::state::random_bytes(32)?;
    Ok(format!(
        "granted_admin_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The shortest admin token taken from `GRANTED_ADMIN_TOKEN`.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// How the admin token was set at start.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstToken {
    /// A token was in use already.
    Existing,
    /// Taken from `GRANTED_ADMIN_TOKEN`.
    FromEnvironment,
    /// Made now: show it once.
    Made(String),
}

/// On first start, stores the admin token: `from_env` (`GRANTED_ADMIN_TOKEN`) when given,
/// else a new one, which the caller shows once. Only its SHA-256 is stored.
pub fn ensure_admin_token(
    store: &crate::store::Store,
    now: Timestamp,
    from_env: Option<&str>,
) -> anyhow::Result<FirstToken> {
    if store.admin_tokens_in_use()? > 0 {
        return Ok(FirstToken::Existing);
    }
    let (token, made) = match from_env {
        Some(token) => {
            if token.len() < MIN_ADMIN_TOKEN_LEN || token.trim() != token || token.contains(' ') {
                anyhow::bail!(
                    "GRANTED_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LEN} characters, without spaces (make one with `openssl rand -base64 32`)"
                );
            }
            (token.to_string(), false)
        }
        None => (new_admin_token()?, true),
    };
    match store.first_admin_token(&admin_token_sha256(&token), now)? {
        None => Ok(FirstToken::Existing),
        Some(_) if made => Ok(FirstToken::Made(token)),
        Some(_) => Ok(FirstToken::FromEnvironment),
    }
}

/// The throttle bucket of failed admin authentications (per source address).
const ADMIN_BUCKET: &str = "\u{0}admin";

/// An authenticated admin request: who and from where.
pub(crate) struct Admin {
    server: Arc<Server>,
    audit: AdminAudit,
}

impl axum::extract::FromRequestParts<Arc<Server>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        server: &Arc<Server>,
    ) -> Result<Admin, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        authenticate(server, peer, &parts.headers).await
    }
}

async fn authenticate(
    server: &Arc<Server>,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Admin, ApiError> {
    let source = source_address(&server.settings, peer, headers);
    if let Some(wait) = server
        .throttle
        .blocked(ADMIN_BUCKET, source, &server.settings)
        .await
        .map_err(|e| ApiError::unavailable("store", format!("{e:#}")))?
    {
        let seconds = wait.as_secs().max(1);
        server.metrics.throttled();
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many failed sign-ins from this address: retry in {seconds} s"),
        );
        err.retry_after = Some(seconds);
        return Err(err);
    }
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty());
    let Some(presented) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the admin token as `Authorization: Bearer <token>`",
        ));
    };
    let sha = admin_token_sha256(presented);
    let store = server.store.clone();
    let id = tokio::task::spawn_blocking(move || store.admin_token_id(&sha))
        .await
        .map_err(|e| ApiError::unavailable("store", e))?
        .map_err(|e| ApiError::unavailable("store", e))?;
    let Some(actor) = id else {
        server
            .throttle
            .failed(ADMIN_BUCKET, source, &server.settings);
        tracing::warn!(source = %source, "admin API: a wrong admin token");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin token is not valid",
        ));
    };
    Ok(Admin {
        server: server.clone(),
        audit: AdminAudit {
            actor,
            source: source.to_string(),
            policy_sha256: server.policy_sha256().to_string(),
            now: now(&server.settings),
        },
    })
}

// --- input ------------------------------------------------------------------------------------

/// A JSON body of type `T`; the error names the field at fault.
fn body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> Result<T, ApiError> {
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if json.as_deref() != Some("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send a JSON body with `Content-Type: application/json`",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::bad_request(format!("the body is not a valid request: {inner}"))
        } else {
            ApiError::bad_request(format!("`{path}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("the body is not a valid request: {e}")))?;
    Ok(value)
}

/// A username: 1 to 128 characters, no control characters, no surrounding spaces. (App ids,
/// `client_id`s and scopes are the module's to judge: `invalid_revision`.)
fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 128
        && !name.chars().any(char::is_control)
        && name.trim() == name;
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_name",
            format!("`{what}` must be 1 to 128 characters, without control characters or surrounding spaces"),
        ))
    }
}

/// A tenant's name is part of its URLs: letters, digits, `.`, `_`, `-`, at most 64.
fn check_tenant_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_name",
            "`tenant` must be 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.`",
        ))
    }
}

/// The revision an edit is based on, from `If-Match` (`"3"`, `W/"3"` or `3`).
fn if_match(headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
    let Some(value) = headers.get("if-match") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse::<u32>().map(Some).map_err(|_| {
        ApiError::bad_request(
            "`If-Match` must name a revision, as the app's `ETag` gives it (\"3\")",
        )
    })
}

// --- the module -------------------------------------------------------------------------------

/// Calls a module entry point; its `ok` value, or the module's error as a 422.
fn module(server: &Server, entry: &str, input: &Value) -> Result<Value, ApiError> {
    call_module(&server.guest, entry, input)
}

fn call_module(guest: &Guest, entry: &str, input: &Value) -> Result<Value, ApiError> {
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

fn sunset(server: &Server) -> Option<Timestamp> {
    server.settings.sunset
}

/// The module's `app_status`: each revision's eligibility, each install's grant now and after
/// updating, and the app's status (`available`, `kept`, `retired`, `never`).
fn app_status(
    server: &Server,
    app: &App,
    installs: &[(String, u32, bool)],
) -> Result<Value, ApiError> {
    status_with(&server.guest, sunset(server), app, installs)
}

fn status_with(
    guest: &Guest,
    sunset: Option<Timestamp>,
    app: &App,
    installs: &[(String, u32, bool)],
) -> Result<Value, ApiError> {
    let mut input = json!({
        "app": app,
        "installs": installs.iter().map(|(tenant, rev, sso)| json!({
            "tenant": tenant, "rev": rev, "sso_required": sso,
        })).collect::<Vec<_>>(),
    });
    if let Some(s) = sunset {
        input["sunset"] = json!(s);
    }
    call_module(guest, "app_status", &input)
}

/// A new client secret (shown once) and its HMAC under the server key.
fn new_secret(server: &Server) -> Result<(String, String), ApiError> {
    let (_, key) = server
        .store
        .current_keys()
        .map_err(|e| ApiError::unavailable("store", e))?
        .ok_or_else(|| ApiError::unavailable("store", "no server keys"))?;
    let entropy =
        crate::state::random_base64(32).map_err(|e| ApiError::unavailable("random source", e))?;
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
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::unavailable("server", e))?
}

/// An admin change in one transaction; store failures become 503s, refusals keep their error.
fn change<T>(
    admin: &Admin,
    f: impl FnOnce(&AdminTx<'_>) -> anyhow::Result<Change<Result<T, ApiError>>>,
) -> Result<T, ApiError> {
    admin
        .server
        .store
        .admin_change(&admin.audit, f)
        .map_err(|e| ApiError::unavailable("store", format!("{e:#}")))?
}

// --- apps -------------------------------------------------------------------------------------

/// Every tenant's installs: app id → (tenant, pinned rev, SSO required).
fn installs_by_app(tenants: &[TenantRecord]) -> HashMap<String, Vec<(String, u32, bool)>> {
    let mut map: HashMap<String, Vec<(String, u32, bool)>> = HashMap::new();
    for t in tenants {
        for i in &t.installs {
            map.entry(i.app_id.clone()).or_default().push((
                t.tenant.clone(),
                i.rev,
                t.sso_required,
            ));
        }
    }
    map
}

#[utoipa::path(
    get,
    path = "/apps",
    tag = "apps",
    responses(
        (status = 200, description = "Every app with its password-grant status", body = crate::openapi::AppList),
        crate::openapi::CommonErrors
    )
)]
pub(crate) async fn list_apps(admin: Admin) -> ApiResult {
    blocking(move || {
        let store = &admin.server.store;
        let apps = store
            .apps()
            .map_err(|e| ApiError::unavailable("store", e))?;
        let tenants = store
            .tenant_records()
            .map_err(|e| ApiError::unavailable("store", e))?;
        let installs = installs_by_app(&tenants);
        let mut out = Vec::with_capacity(apps.len());
        for (app, clients) in apps {
            let empty = Vec::new();
            let app_installs = installs.get(&app.app_id).unwrap_or(&empty);
            let status = app_status(&admin.server, &app, app_installs)?;
            out.push(json!({
                "app_id": app.app_id,
                "created_at": app.created_at,
                "latest": app.revisions.last(),
                "client_ids": clients.iter().map(|(id, _)| id).collect::<Vec<_>>(),
                "installs": app_installs.len(),
                "password_grant": {
                    "status": status["status"],
                    "tenants_keeping": status["tenants_keeping"],
                },
            }));
        }
        Ok(json_response(StatusCode::OK, json!({ "apps": out })))
    })
    .await
}

/// An app as the API shows it: revisions with their eligibility, installs, clients, status.
fn app_view(
    server: &Server,
    app: &App,
    clients: &[String],
    tenants: &[TenantRecord],
) -> Result<Value, ApiError> {
    let installs: Vec<(String, u32, bool)> = tenants
        .iter()
        .filter_map(|t| {
            t.installs
                .iter()
                .find(|i| i.app_id == app.app_id)
                .map(|i| (t.tenant.clone(), i.rev, t.sso_required))
        })
        .collect();
    let status = app_status(server, app, &installs)?;
    let eligible = |rev: u32| {
        status["revisions"]
            .as_array()
            .and_then(|revs| revs.iter().find(|r| r["rev"] == rev))
            .cloned()
            .unwrap_or(Value::Null)
    };
    Ok(json!({
        "app_id": app.app_id,
        "created_at": app.created_at,
        "latest_rev": status["latest_rev"],
        "revisions": app.revisions.iter().map(|r| {
            let verdict = eligible(r.rev);
            json!({
                "rev": r.rev,
                "at": r.at,
                "client_id": r.client_id,
                "grant_type": r.grant_type,
                "scopes": r.scopes,
                "password_eligible": verdict["password_eligible"],
                "ineligible_because": verdict["reason"],
            })
        }).collect::<Vec<_>>(),
        "client_ids": clients,
        "installs": status["installs"],
        "password_grant": {
            "status": status["status"],
            "tenants_keeping": status["tenants_keeping"],
        },
    }))
}

#[utoipa::path(
    get,
    path = "/apps/{app_id}",
    tag = "apps",
    params(
        ("app_id" = String, Path, description = "The app id")
    ),
    responses(
        (status = 200, description = "The app, its history and installs", body = crate::openapi::AppView, headers(("etag" = String, description = "The latest revision, for `If-Match`"))),
        (status = 404, description = "Not found", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors
    )
)]
pub(crate) async fn get_app(admin: Admin, Path(app_id): Path<String>) -> ApiResult {
    blocking(move || {
        let store = &admin.server.store;
        let Some((app, clients)) = store
            .app_and_clients(&app_id)
            .map_err(|e| ApiError::unavailable("store", e))?
        else {
            return Err(ApiError::not_found(format!("no app `{app_id}`")));
        };
        let tenants = store
            .tenant_records()
            .map_err(|e| ApiError::unavailable("store", e))?;
        let view = app_view(&admin.server, &app, &clients, &tenants)?;
        let rev = app.revisions.last().map(|r| r.rev).unwrap_or(0);
        Ok(with_etag(json_response(StatusCode::OK, view), rev))
    })
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApp {
    app_id: String,
    client_id: String,
    grant_type: GrantType,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EditApp {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    grant_type: Option<GrantType>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// The module's preview of an edit, judged against `ctx`.
fn preview_of(
    server: &Server,
    ctx: &EditContext,
    at: Timestamp,
    edit: &EditApp,
) -> Result<Value, ApiError> {
    let mut input = edit_input(server, ctx, at);
    input["edit"] = json!({
        "app_id": ctx.app.app_id,
        "client_id": edit.client_id,
        "grant_type": edit.grant_type,
        "scopes": edit.scopes,
    });
    module(server, "preview", &input)
}

/// What the module judges an edit of `ctx.app` against, but the edit: `state`, `now`, `sunset`.
/// The admin page runs `preview` on exactly this in the browser.
fn edit_input(server: &Server, ctx: &EditContext, at: Timestamp) -> Value {
    let mut input = json!({
        "state": {
            "apps": [ctx.app],
            "tenants": ctx.tenants,
            "client_ids_in_use": ctx.client_ids_in_use,
        },
        "now": at,
    });
    if let Some(s) = sunset(server) {
        input["sunset"] = json!(s);
    }
    input
}

#[utoipa::path(
    get,
    path = "/apps/{app_id}/edit-context",
    tag = "apps",
    params(
        ("app_id" = String, Path, description = "The app")
    ),
    responses(
        (status = 200, description = "The input of the module's `preview` for an edit of this app, without the edit: the browser adds `edit` and runs the same `preview` the server runs on save", body = crate::openapi::EditContextAnswer, headers(("etag" = String, description = "The revision it is based on"))),
        (status = 404, description = "Not found", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors
    )
)]
pub(crate) async fn edit_context(admin: Admin, Path(app_id): Path<String>) -> ApiResult {
    blocking(move || {
        let at = admin.audit.now;
        change(&admin, |tx| {
            let Some(ctx) = tx.edit_context(&app_id)? else {
                return Ok(Change::Refused(Err(ApiError::not_found(format!(
                    "no app `{app_id}`"
                )))));
            };
            let rev = ctx.app.revisions.last().map(|r| r.rev).unwrap_or(0);
            let input = edit_input(&admin.server, &ctx, at);
            Ok(Change::Refused(Ok(with_etag(
                json_response(StatusCode::OK, input),
                rev,
            ))))
        })
    })
    .await
}

/// The 422 of an edit or creation the module rejects.
fn rejected(preview: Value) -> ApiError {
    let explanation = preview["explanation"]
        .as_str()
        .unwrap_or("the policy rejects this change")
        .to_string();
    ApiError::invalid("edit_rejected", explanation).with(json!({
        "reason": preview["reason"],
        "rule": preview["rule"],
        "preview": preview,
    }))
}

fn revision_of(preview: &Value) -> Result<Revision, ApiError> {
    serde_json::from_value(preview["revision"].clone()).map_err(|e| {
        ApiError::unavailable("policy module", format!("preview without a revision: {e}"))
    })
}

/// What the module judges a new app against, but the app: every app (an id in use is
/// `app_id_taken`) and every `client_id` in use (A5), `now`, `sunset`. The admin page previews a
/// new app on exactly this.
fn create_context(server: &Server, tx: &AdminTx<'_>, at: Timestamp) -> anyhow::Result<Value> {
    let mut input = json!({
        "state": {
            "apps": tx.apps()?,
            "tenants": [],
            "client_ids_in_use": tx.client_ids_in_use(None)?,
        },
        "now": at,
    });
    if let Some(s) = sunset(server) {
        input["sunset"] = json!(s);
    }
    Ok(input)
}

/// The module's input for previewing `create`, read in the change's transaction.
fn create_input(
    server: &Server,
    tx: &AdminTx<'_>,
    create: &CreateApp,
    at: Timestamp,
) -> anyhow::Result<Value> {
    let mut input = create_context(server, tx, at)?;
    input["create"] = json!({
        "app_id": create.app_id,
        "client_id": create.client_id,
        "grant_type": create.grant_type,
        "scopes": create.scopes,
    });
    Ok(input)
}

#[utoipa::path(
    get,
    path = "/create-context",
    tag = "apps",
    responses(
        (status = 200, description = "The input of the module's `preview` for a new app, without the app: the browser adds `create` and runs the same `preview` the server runs on `POST /apps`", body = crate::openapi::EditContextAnswer),
        crate::openapi::CommonErrors
    )
)]
pub(crate) async fn create_context_route(admin: Admin) -> ApiResult {
    blocking(move || {
        let at = admin.audit.now;
        change(&admin, |tx| {
            let input = create_context(&admin.server, tx, at)?;
            Ok(Change::Refused(Ok(json_response(StatusCode::OK, input))))
        })
    })
    .await
}

#[utoipa::path(
    post,
    path = "/previews/create",
    tag = "apps",
    request_body = CreateApp,
    responses(
        (status = 200, description = "The module's preview of a new app; nothing stored", body = crate::openapi::PreviewAnswer),
        (status = 422, description = "Refused: the message says why", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors, crate::openapi::BodyErrors
    )
)]
pub(crate) async fn preview_create(admin: Admin, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let create: CreateApp = body(&headers, &bytes)?;
    blocking(move || {
        let at = admin.audit.now;
        change(&admin, |tx| {
            let input = create_input(&admin.server, tx, &create, at)?;
            let answer = module(&admin.server, "preview", &input)
                .map(|preview| json_response(StatusCode::OK, json!({ "preview": preview })));
            Ok(Change::Refused(answer))
        })
    })
    .await
}

#[utoipa::path(
    post,
    path = "/apps",
    tag = "apps",
    request_body = CreateApp,
    responses(
        (status = 201, description = "Created; the client secret is shown only here", body = crate::openapi::Saved, headers(("etag" = String, description = "The latest revision"))),
        (status = 409, description = "A conflict", body = crate::openapi::ErrorBody),
        (status = 422, description = "Refused: the message says why", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors, crate::openapi::BodyErrors
    )
)]
pub(crate) async fn create_app(admin: Admin, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let create: CreateApp = body(&headers, &bytes)?;
    blocking(move || {
        let at = admin.audit.now;
        let secret = new_secret(&admin.server)?;
        change(&admin, |tx| {
            let input = create_input(&admin.server, tx, &create, at)?;
            let preview = match module(&admin.server, "preview", &input) {
                Ok(p) => p,
                Err(e) => return Ok(Change::Refused(Err(e))),
            };
            if preview["accepted"] != true {
                let code = if preview["reason"] == "app_id_taken" {
                    "app_exists"
                } else {
                    ""
                };
                let mut err = rejected(preview);
                if !code.is_empty() {
                    err.status = StatusCode::CONFLICT;
                }
                return Ok(Change::Refused(Err(err)));
            }
            let revision = match revision_of(&preview) {
                Ok(r) => r,
                Err(e) => return Ok(Change::Refused(Err(e))),
            };
            let app = App {
                app_id: create.app_id.clone(),
                created_at: at,
                revisions: vec![revision.clone()],
            };
            tx.insert_app(&app)?;
            tx.put_client(&revision.client_id, &app.app_id, &secret.1)?;
            let body = json!({
                "app_id": app.app_id,
                "revision": revision,
                "preview": preview,
                "client_secret": {"client_id": revision.client_id, "secret": secret.0},
            });
            Ok(Change::Made(
                Ok(with_etag(
                    json_response(StatusCode::CREATED, body),
                    revision.rev,
                )),
                ChangeRecord {
                    action: "create_app",
                    target: json!({"app_id": app.app_id}),
                    before: Value::Null,
                    after: json!({"revision": revision}),
                },
            ))
        })
    })
    .await
}

#[utoipa::path(
    post,
    path = "/apps/{app_id}/preview",
    tag = "apps",
    params(
        ("app_id" = String, Path, description = "The app id")
    ),
    request_body = EditApp,
    responses(
        (status = 200, description = "The module's preview; nothing stored", body = crate::openapi::PreviewAnswer, headers(("etag" = String, description = "The revision the preview is based on"))),
        (status = 404, description = "Not found", body = crate::openapi::ErrorBody),
        (status = 422, description = "Refused: the message says why", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors, crate::openapi::BodyErrors
    )
)]
pub(crate) async fn preview_edit(
    admin: Admin,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let edit: EditApp = body(&headers, &bytes)?;
    blocking(move || {
        let at = admin.audit.now;
        change(&admin, |tx| {
            let Some(ctx) = tx.edit_context(&app_id)? else {
                return Ok(Change::Refused(Err(ApiError::not_found(format!(
                    "no app `{app_id}`"
                )))));
            };
            let rev = ctx.app.revisions.last().map(|r| r.rev).unwrap_or(0);
            let answer = preview_of(&admin.server, &ctx, at, &edit).map(|preview| {
                with_etag(
                    json_response(StatusCode::OK, json!({"preview": preview})),
                    rev,
                )
            });
            Ok(Change::Refused(answer))
        })
    })
    .await
}

#[utoipa::path(
    post,
    path = "/apps/{app_id}/revisions",
    tag = "apps",
    params(
        ("app_id" = String, Path, description = "The app id"),
        ("If-Match" = String, Header, description = "The revision the edit is based on, as the app's `ETag` gives it")
    ),
    request_body = EditApp,
    responses(
        (status = 201, description = "Saved under the preview shown", body = crate::openapi::Saved, headers(("etag" = String, description = "The new latest revision"))),
        (status = 404, description = "Not found", body = crate::openapi::ErrorBody),
        (status = 409, description = "A conflict", body = crate::openapi::ErrorBody),
        (status = 422, description = "Refused: the message says why", body = crate::openapi::ErrorBody),
        (status = 428, description = "`If-Match` is missing", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors, crate::openapi::BodyErrors
    )
)]
pub(crate) async fn append_revision(
    admin: Admin,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let edit: EditApp = body(&headers, &bytes)?;
    let Some(based_on) = if_match(&headers)? else {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "if_match_required",
            "name the revision this edit is based on in `If-Match` (the app's `ETag`)",
        ));
    };
    blocking(move || {
        let at = admin.audit.now;
        let secret = new_secret(&admin.server)?;
        change(&admin, |tx| {
            let Some(ctx) = tx.edit_context(&app_id)? else {
                return Ok(Change::Refused(Err(ApiError::not_found(format!("no app `{app_id}`")))));
            };
            let latest = ctx.app.revisions.last().cloned();
            let latest_rev = latest.as_ref().map(|r| r.rev).unwrap_or(0);
            if latest_rev != based_on {
                return Ok(Change::Refused(Err(ApiError::conflict(
                    "edit_conflict",
                    format!("the app changed since revision {based_on}: its latest revision is {latest_rev}; review it and edit again"),
                )
                .with(json!({"latest_rev": latest_rev})))));
            }
            let preview = match preview_of(&admin.server, &ctx, at, &edit) {
                Ok(p) => p,
                Err(e) => return Ok(Change::Refused(Err(e))),
            };
            if preview["accepted"] != true {
                return Ok(Change::Refused(Err(rejected(preview))));
            }
            let revision = match revision_of(&preview) {
                Ok(r) => r,
                Err(e) => return Ok(Change::Refused(Err(e))),
            };
            tx.append_revision(&app_id, &revision)?;
            let known = tx.client_ids_of(&app_id)?;
            let mut body = json!({
                "app_id": app_id,
                "revision": revision,
                "preview": preview,
            });
            if !known.contains(&revision.client_id) {
                tx.put_client(&revision.client_id, &app_id, &secret.1)?;
                body["client_secret"] =
                    json!({"client_id": revision.client_id, "secret": secret.0});
            }
            Ok(Change::Made(
                Ok(with_etag(json_response(StatusCode::CREATED, body), revision.rev)),
                ChangeRecord {
                    action: "append_revision",
                    target: json!({"app_id": app_id}),
                    before: json!({"revision": latest}),
                    after: json!({"revision": revision, "irreversible": preview["irreversible"]}),
                },
            ))
        })
    })
    .await
}

#[utoipa::path(
    post,
    path = "/apps/{app_id}/clients/{client_id}/secret",
    tag = "apps",
    params(
        ("app_id" = String, Path, description = "The app id"),
        ("client_id" = String, Path, description = "The client id")
    ),
    responses(
        (status = 200, description = "A new secret, shown only here; the old one stops working", body = crate::openapi::RotatedSecret),
        (status = 404, description = "Not found", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors
    )
)]
pub(crate) async fn rotate_client_secret(
    admin: Admin,
    Path((app_id, client_id)): Path<(String, String)>,
) -> ApiResult {
    blocking(move || {
        let secret = new_secret(&admin.server)?;
        change(&admin, |tx| {
            if !tx.client_ids_of(&app_id)?.contains(&client_id) {
                return Ok(Change::Refused(Err(ApiError::not_found(format!(
                    "app `{app_id}` has no client `{client_id}`"
                )))));
            }
            tx.put_client(&client_id, &app_id, &secret.1)?;
            Ok(Change::Made(
                Ok(json_response(
                    StatusCode::OK,
                    json!({"client_secret": {"client_id": client_id, "secret": secret.0}}),
                )),
                ChangeRecord {
                    action: "rotate_client_secret",
                    target: json!({"app_id": app_id, "client_id": client_id}),
                    before: Value::Null,
                    after: json!({"secret": "replaced"}),
                },
            ))
        })
    })
    .await
}

// --- tenants ----------------------------------------------------------------------------------

fn tenant_view(
    server: &Server,
    tenant: &TenantRecord,
    apps: &HashMap<String, App>,
) -> Result<Value, ApiError> {
    let mut installs = Vec::with_capacity(tenant.installs.len());
    for i in &tenant.installs {
        let Some(app) = apps.get(&i.app_id) else {
            continue;
        };
        let status = app_status(
            server,
            app,
            &[(tenant.tenant.clone(), i.rev, tenant.sso_required)],
        )?;
        let mut row = status["installs"][0].clone();
        if let Some(row) = row.as_object_mut() {
            row.remove("tenant");
            row.insert("app_id".into(), json!(i.app_id));
            row.insert("latest_rev".into(), status["latest_rev"].clone());
        }
        installs.push(row);
    }
    Ok(json!({
        "tenant": tenant.tenant,
        "sso_required": tenant.sso_required,
        "password_max_age_days": tenant.password_max_age_days,
        "installs": installs,
    }))
}

fn all_apps(server: &Server) -> Result<HashMap<String, App>, ApiError> {
    Ok(server
        .store
        .apps()
        .map_err(|e| ApiError::unavailable("store", e))?
        .into_iter()
        .map(|(app, _)| (app.app_id.clone(), app))
        .collect())
}

#[utoipa::path(
    get,
    path = "/tenants",
    tag = "tenants",
    responses(
        (status = 200, description = "Every tenant with its installs", body = crate::openapi::TenantList),
        crate::openapi::CommonErrors
    )
)]
pub(crate) async fn list_tenants(admin: Admin) -> ApiResult {
    blocking(move || {
        let apps = all_apps(&admin.server)?;
        let tenants = admin
            .server
            .store
            .tenant_records()
            .map_err(|e| ApiError::unavailable("store", e))?;
        let views = tenants
            .iter()
            .map(|t| tenant_view(&admin.server, t, &apps))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json_response(StatusCode::OK, json!({ "tenants": views })))
    })
    .await
}

#[utoipa::path(
    get,
    path = "/tenants/{tenant}",
    tag = "tenants",
    params(
        ("tenant" = String, Path, description = "The tenant")
    ),
    responses(
        (status = 200, description = "The tenant with its installs", body = crate::openapi::TenantView),
        (status = 404, description = "Not found", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors
    )
)]
pub(crate) async fn get_tenant(admin: Admin, Path(tenant): Path<String>) -> ApiResult {
    blocking(move || {
        let Some(record) = admin
            .server
            .store
            .tenant(&tenant)
            .map_err(|e| ApiError::unavailable("store", e))?
        else {
            return Err(ApiError::not_found(format!("no tenant `{tenant}`")));
        };
        let apps = all_apps(&admin.server)?;
        Ok(json_response(
            StatusCode::OK,
            tenant_view(&admin.server, &record, &apps)?,
        ))
    })
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTenant {
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    tenant: String,
    #[serde(default)]
    sso_required: bool,
    #[serde(default)]
    #[schema(minimum = 1)]
    password_max_age_days: Option<u32>,
}

#[utoipa::path(
    post,
    path = "/tenants",
    tag = "tenants",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = crate::openapi::TenantView),
        (status = 409, description = "A conflict", body = crate::openapi::ErrorBody),
        (status = 422, description = "Refused: the message says why", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors, crate::openapi::BodyErrors
    )
)]
pub(crate) async fn create_tenant(admin: Admin, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let create: CreateTenant = body(&headers, &bytes)?;
    check_tenant_name(&create.tenant)?;
    if create.password_max_age_days == Some(0) {
        return Err(ApiError::invalid(
            "invalid_tenant",
            "`password_max_age_days` must be at least 1, or null for passwords that never expire",
        ));
    }
    blocking(move || {
        change(&admin, |tx| {
            if tx.tenant(&create.tenant)?.is_some() {
                return Ok(Change::Refused(Err(ApiError::conflict(
                    "tenant_exists",
                    format!("tenant `{}` exists", create.tenant),
                ))));
            }
            let record = TenantRecord {
                tenant: create.tenant.clone(),
                sso_required: create.sso_required,
                password_max_age_days: create.password_max_age_days,
                installs: Vec::new(),
            };
            tx.insert_tenant(&record)?;
            let view = json!({
                "tenant": record.tenant,
                "sso_required": record.sso_required,
                "password_max_age_days": record.password_max_age_days,
                "installs": [],
            });
            Ok(Change::Made(
                Ok(json_response(StatusCode::CREATED, view.clone())),
                ChangeRecord {
                    action: "create_tenant",
                    target: json!({"tenant": record.tenant}),
                    before: Value::Null,
                    after: view,
                },
            ))
        })
    })
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstallApp {
    app_id: String,
}

/// Pins `tenant`'s install of `app_id` to the app's latest revision: installing (or installing
/// again) when `must_exist` is false, updating an existing install when it is true.
fn pin_latest(
    admin: &Admin,
    tenant: &str,
    app_id: &str,
    must_exist: bool,
) -> Result<Response, ApiError> {
    let server = admin.server.clone();
    change(admin, |tx| {
        let Some(record) = tx.tenant(tenant)? else {
            return Ok(Change::Refused(Err(ApiError::not_found(format!(
                "no tenant `{tenant}`"
            )))));
        };
        let Some(app) = tx.app(app_id)? else {
            return Ok(Change::Refused(Err(ApiError::not_found(format!(
                "no app `{app_id}`"
            )))));
        };
        let previous = record
            .installs
            .iter()
            .find(|i| i.app_id == app_id)
            .map(|i| i.rev);
        if must_exist && previous.is_none() {
            return Ok(Change::Refused(Err(ApiError::not_found(format!(
                "tenant `{tenant}` does not install `{app_id}`"
            )))));
        }
        let Some(latest) = app.revisions.last().map(|r| r.rev) else {
            return Ok(Change::Refused(Err(ApiError::unavailable(
                "store",
                "an app without revisions",
            ))));
        };
        let pins: Vec<(String, u32, bool)> = previous
            .map(|rev| (tenant.to_string(), rev, record.sso_required))
            .into_iter()
            .collect();
        let status = match app_status(&server, &app, &pins) {
            Ok(s) => s,
            Err(e) => return Ok(Change::Refused(Err(e))),
        };
        let before = status["installs"][0]["password_now"] == true;
        let after = status["revisions"]
            .as_array()
            .and_then(|revs| revs.last())
            .is_some_and(|r| r["password_eligible"] == true);
        let view = json!({
            "tenant": tenant,
            "app_id": app_id,
            "rev": latest,
            "previous_rev": previous,
            "sso_required": record.sso_required,
            "password_before": before,
            "password_after": after,
            "password_lost": before && !after,
        });
        if previous == Some(latest) {
            return Ok(Change::Refused(Ok(json_response(StatusCode::OK, view))));
        }
        tx.set_install(tenant, app_id, latest)?;
        let status = if previous.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok(Change::Made(
            Ok(json_response(status, view.clone())),
            ChangeRecord {
                action: if previous.is_some() {
                    "update_install"
                } else {
                    "install"
                },
                target: json!({"tenant": tenant, "app_id": app_id}),
                before: json!({"rev": previous}),
                after: view,
            },
        ))
    })
}

#[utoipa::path(
    post,
    path = "/tenants/{tenant}/installs",
    tag = "tenants",
    params(
        ("tenant" = String, Path, description = "The tenant")
    ),
    request_body = InstallApp,
    responses(
        (status = 201, description = "Installed, pinned to the latest revision", body = crate::openapi::Pinned), (status = 200, description = "Installed again: the pin moved to the latest revision, or was there already", body = crate::openapi::Pinned),
        (status = 404, description = "Not found", body = crate::openapi::ErrorBody),
        (status = 422, description = "Refused: the message says why", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors, crate::openapi::BodyErrors
    )
)]
pub(crate) async fn install(
    admin: Admin,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let install: InstallApp = body(&headers, &bytes)?;
    blocking(move || pin_latest(&admin, &tenant, &install.app_id, false)).await
}

#[utoipa::path(
    post,
    path = "/tenants/{tenant}/installs/{app_id}/update",
    tag = "tenants",
    params(
        ("tenant" = String, Path, description = "The tenant"),
        ("app_id" = String, Path, description = "The app id")
    ),
    responses(
        (status = 200, description = "The pin is the latest revision; says whether the password grant was lost", body = crate::openapi::Pinned),
        (status = 404, description = "Not found", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors
    )
)]
pub(crate) async fn update_install(
    admin: Admin,
    Path((tenant, app_id)): Path<(String, String)>,
) -> ApiResult {
    blocking(move || pin_latest(&admin, &tenant, &app_id, true)).await
}

// --- users ------------------------------------------------------------------------------------

fn user_view(user: &UserRecord) -> Value {
    json!({
        "username": user.username,
        "sign_in": user.sign_in,
        "disabled": user.disabled,
        "password_set": user.password_hash.is_some(),
        "password_changed_at": user.password_changed_at,
        "locked_until": user.locked_until,
    })
}

#[utoipa::path(
    get,
    path = "/tenants/{tenant}/users",
    tag = "users",
    params(
        ("tenant" = String, Path, description = "The tenant")
    ),
    responses(
        (status = 200, description = "The tenant's users", body = crate::openapi::UserList),
        (status = 404, description = "Not found", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors
    )
)]
pub(crate) async fn list_users(admin: Admin, Path(tenant): Path<String>) -> ApiResult {
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
        Ok(json_response(
            StatusCode::OK,
            json!({"users": users.iter().map(user_view).collect::<Vec<_>>()}),
        ))
    })
    .await
}

/// The longest password taken, in bytes (PBKDF2 hashes any length; this bounds the work).
const MAX_PASSWORD_BYTES: usize = 1024;
/// The shortest password taken, in characters.
const MIN_PASSWORD_CHARS: usize = 8;

fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(
            "invalid_password",
            format!("a password must be {MIN_PASSWORD_CHARS} characters to {MAX_PASSWORD_BYTES} bytes long"),
        ));
    }
    Ok(())
}

/// Hashes a password natively (PBKDF2-HMAC-SHA256 at the configured iterations, random salt).
fn hash(server: &Server, clear: &str) -> Result<String, ApiError> {
    let salt =
        crate::state::random_bytes(16).map_err(|e| ApiError::unavailable("random source", e))?;
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

fn direct() -> SignIn {
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
        (status = 201, description = "Created", body = crate::openapi::UserView),
        (status = 404, description = "Not found", body = crate::openapi::ErrorBody),
        (status = 409, description = "A conflict", body = crate::openapi::ErrorBody),
        (status = 422, description = "Refused: the message says why", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors, crate::openapi::BodyErrors
    )
)]
pub(crate) async fn create_user(
    admin: Admin,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
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
                sign_in: create.sign_in,
                password_changed_at: hashed.as_ref().map(|_| at),
                password_hash: hashed,
                disabled: create.disabled,
                locked_until: None,
            };
            tx.insert_user(&tenant, &user)?;
            let view = user_view(&user);
            Ok(Change::Made(
                Ok(json_response(StatusCode::CREATED, view.clone())),
                ChangeRecord {
                    action: "create_user",
                    target: json!({"tenant": tenant, "username": user.username}),
                    before: Value::Null,
                    after: view,
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
        (status = 200, description = "Set", body = crate::openapi::UserView),
        (status = 404, description = "Not found", body = crate::openapi::ErrorBody),
        (status = 422, description = "Refused: the message says why", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors, crate::openapi::BodyErrors
    )
)]
pub(crate) async fn set_password(
    admin: Admin,
    Path((tenant, username)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
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
                Ok(json_response(StatusCode::OK, user_view(&after))),
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
fn user_change(
    admin: &Admin,
    tenant: &str,
    username: &str,
    action: &'static str,
) -> Result<Response, ApiError> {
    change(admin, |tx| {
        let Some(before) = tx.user(tenant, username)? else {
            return Ok(Change::Refused(Err(ApiError::not_found(format!(
                "no user `{username}` in tenant `{tenant}`"
            )))));
        };
        let failures = tx.login_failures(tenant, username)?;
        let unchanged = match action {
            "disable_user" => before.disabled,
            "enable_user" => !before.disabled,
            _ => failures == 0 && before.locked_until.is_none(),
        };
        if unchanged {
            return Ok(Change::Refused(Ok(json_response(
                StatusCode::OK,
                user_view(&before),
            ))));
        }
        match action {
            "disable_user" => tx.set_disabled(tenant, username, true)?,
            "enable_user" => tx.set_disabled(tenant, username, false)?,
            _ => tx.unlock(tenant, username)?,
        }
        let after = tx
            .user(tenant, username)?
            .ok_or_else(|| anyhow!("user vanished"))?;
        Ok(Change::Made(
            Ok(json_response(StatusCode::OK, user_view(&after))),
            ChangeRecord {
                action,
                target: json!({"tenant": tenant, "username": username}),
                before: json!({"user": user_view(&before), "login_failures": failures}),
                after: user_view(&after),
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
        ("action" = crate::openapi::UserAction, Path, description = "`disable`, `enable`, or `unlock` (forget failed logins, lift the lock)")
    ),
    responses(
        (status = 200, description = "The user after the change (or as it was, when there was nothing to change)", body = crate::openapi::UserView),
        (status = 404, description = "Not found", body = crate::openapi::ErrorBody),
        crate::openapi::CommonErrors
    )
)]
pub(crate) async fn user_action(
    admin: Admin,
    Path((tenant, username, action)): Path<(String, String, String)>,
) -> ApiResult {
    let action = match action.as_str() {
        "disable" => "disable_user",
        "enable" => "enable_user",
        "unlock" => "unlock_user",
        _ => {
            return Err(ApiError::not_found(
                "no such user action: `disable`, `enable` or `unlock`",
            ))
        }
    };
    blocking(move || user_change(&admin, &tenant, &username, action)).await
}

// --- the audit log ----------------------------------------------------------------------------

/// The most entries one page holds.
pub const MAX_AUDIT_PAGE: usize = 1000;

#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(
        ("kind" = Option<String>, Query, description = "token, revocation, introspection or admin"),
        ("tenant" = Option<String>, Query, description = "The tenant"),
        ("app_id" = Option<String>, Query, description = "The app"),
        ("grant_type" = Option<String>, Query, description = "The grant type"),
        ("decision" = Option<String>, Query, description = "granted or denied"),
        ("since" = Option<String>, Query, format = DateTime, description = "At or after (RFC 3339)"),
        ("until" = Option<String>, Query, format = DateTime, description = "Before (RFC 3339)"),
        ("cursor" = Option<i64>, Query, minimum = 1, description = "The previous page's `next_cursor`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Entries per page (100)")
    ),
    responses(
        (status = 200, description = "A page of the audit log, newest first", body = crate::openapi::AuditPage),
        crate::openapi::CommonErrors
    )
)]
pub(crate) async fn audit_log(
    admin: Admin,
    Query(query): Query<Vec<(String, String)>>,
) -> ApiResult {
    let mut filter = crate::store::AuditFilter::default();
    let mut limit = 100usize;
    let mut seen = std::collections::HashSet::new();
    for (key, value) in query {
        if !seen.insert(key.clone()) {
            return Err(ApiError::bad_request(format!("`{key}` is given twice")));
        }
        let instant = |value: &str| {
            Timestamp::parse(value).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`{key}` must be an RFC 3339 instant, like 2026-11-25T12:00:00Z"
                ))
            })
        };
        match key.as_str() {
            "kind" => filter.kind = Some(value),
            "tenant" => filter.tenant = Some(value),
            "app_id" => filter.app_id = Some(value),
            "grant_type" => filter.grant_type = Some(value),
            "decision" => filter.decision = Some(value),
            "since" => filter.since = Some(instant(&value)?),
            "until" => filter.until = Some(instant(&value)?),
            "cursor" => {
                filter.before_seq = Some(value.parse::<i64>().ok().filter(|c| *c > 0).ok_or_else(|| {
                    ApiError::bad_request("`cursor` must be the `next_cursor` of the previous page")
                })?)
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_AUDIT_PAGE).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("`limit` must be 1 to {MAX_AUDIT_PAGE}"))
                    })?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter `{other}` (kind, tenant, app_id, grant_type, decision, since, until, cursor, limit)"
                )))
            }
        }
    }
    blocking(move || {
        let store = &admin.server.store;
        let rows = store
            .audit_search(&filter, limit)
            .map_err(|e| ApiError::unavailable("store", e))?;
        let next = (rows.len() == limit).then(|| rows.last().map(|r| r.seq)).flatten();
        let oldest = store.audit_oldest().map_err(|e| ApiError::unavailable("store", e))?;
        let entries: Vec<Value> = rows
            .into_iter()
            .map(|r| {
                json!({
                    "seq": r.seq,
                    "at": r.at,
                    "kind": r.kind,
                    "sha256": r.sha256,
                    "entry": serde_json::from_str::<Value>(&r.entry).unwrap_or(Value::String(r.entry)),
                })
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            json!({
                "entries": entries,
                "next_cursor": next,
                "oldest": oldest,
                "retention_days": admin.server.settings.audit_retention_days,
            }),
        ))
    })
    .await
}

// --- the sunset report ------------------------------------------------------------------------

/// Who still depends on the password grant: per app, its status and per installing tenant
/// whether it has the grant now, what updating would take away, and the password-grant tokens
/// issued in the last 7 and 30 days (from the audit log, so as far back as it reaches).
pub fn sunset_report(
    store: &crate::store::Store,
    guest: &Guest,
    now: Timestamp,
    sunset: Option<Timestamp>,
) -> anyhow::Result<Value> {
    let apps = store.apps()?;
    let tenants = store.tenant_records()?;
    let installs = installs_by_app(&tenants);
    let uses: HashMap<(String, String), crate::store::UseCount> = store
        .password_use(now)?
        .into_iter()
        .map(|u| ((u.tenant.clone(), u.app_id.clone()), u))
        .collect();
    // The last 30 UTC days, oldest first, and each app's password-grant tokens on each.
    let days: Vec<String> = (0..30)
        .rev()
        .map(|back| {
            now.plus_seconds(-back * 86_400)
                .to_rfc3339()
                .chars()
                .take(10)
                .collect()
        })
        .collect();
    let since = granted_policy::model::Timestamp::parse(&format!(
        "{}T00:00:00Z",
        days.first().map(String::as_str).unwrap_or("1970-01-01")
    ))
    .unwrap_or(now);
    let mut daily: HashMap<(String, String), i64> = HashMap::new();
    for (app_id, day, count) in store.password_use_daily(since)? {
        daily.insert((app_id, day), count);
    }
    let mut out = Vec::with_capacity(apps.len());
    let (mut total_7, mut total_30) = (0i64, 0i64);
    for (app, _) in apps {
        let empty = Vec::new();
        let app_installs = installs.get(&app.app_id).unwrap_or(&empty);
        let status = status_with(guest, sunset, &app, app_installs)
            .map_err(|e| anyhow!("the policy module: {}", e.message))?;
        let rows: Vec<Value> = status["installs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|row| {
                let tenant = row["tenant"].as_str().unwrap_or_default().to_string();
                let used = uses.get(&(tenant, app.app_id.clone()));
                let (d7, d30) = used
                    .map(|u| (u.last_7_days, u.last_30_days))
                    .unwrap_or((0, 0));
                total_7 += d7;
                total_30 += d30;
                let now = row["password_now"] == true;
                let after = row["password_after_update"] == true;
                json!({
                    "tenant": row["tenant"],
                    "pinned_rev": row["rev"],
                    "sso_required": row["sso_required"],
                    "password_now": now,
                    "password_after_update": after,
                    "update_takes_away_password": now && !after,
                    "password_tokens_7_days": d7,
                    "password_tokens_30_days": d30,
                    "last_password_use": used.and_then(|u| u.last_use),
                })
            })
            .collect();
        out.push(json!({
            "app_id": app.app_id,
            "status": status["status"],
            "latest_rev": status["latest_rev"],
            "tenants_keeping": status["tenants_keeping"],
            "password_tokens_7_days": rows.iter().filter_map(|r| r["password_tokens_7_days"].as_i64()).sum::<i64>(),
            "password_tokens_30_days": rows.iter().filter_map(|r| r["password_tokens_30_days"].as_i64()).sum::<i64>(),
            "daily_password_tokens": days.iter().map(|day| json!({
                "date": day,
                "count": daily.get(&(app.app_id.clone(), day.clone())).copied().unwrap_or(0),
            })).collect::<Vec<_>>(),
            "tenants": rows,
        }));
    }
    Ok(json!({
        "generated_at": now,
        "audit_log_since": store.audit_oldest()?,
        "password_tokens_7_days": total_7,
        "password_tokens_30_days": total_30,
        "apps": out,
    }))
}

#[utoipa::path(
    get,
    path = "/reports/sunset",
    tag = "reports",
    responses(
        (status = 200, description = "Who still depends on the password grant", body = crate::openapi::SunsetReport),
        crate::openapi::CommonErrors
    )
)]
pub(crate) async fn sunset_report_route(admin: Admin) -> ApiResult {
    blocking(move || {
        let server = &admin.server;
        let report = sunset_report(
            &server.store,
            &server.guest,
            admin.audit.now,
            sunset(server),
        )
        .map_err(|e| ApiError::unavailable("report", format!("{e:#}")))?;
        Ok(json_response(StatusCode::OK, report))
    })
    .await
}

/// `GET /admin/api/v1/openapi.json`: the document, without authentication.
async fn openapi_document() -> Response {
    let mut response = crate::openapi::document().into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}
