//! `/tenants`: tenants and the app revisions they install.

use super::{answer::*, auth::*, errors::*, input::*, module::*};
use crate::service::Service;
use crate::store::{Change, ChangeRecord};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use granted_policy::model::{App, TenantRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use utoipa::ToSchema;

// The answers' fields are in alphabetical order, the order of the `json!` objects they replaced.

/// Every tenant.
#[derive(Serialize, ToSchema)]
pub(crate) struct TenantList {
    /// The tenants, by name.
    tenants: Vec<TenantView>,
}

/// A tenant with its installs.
#[derive(Serialize, ToSchema)]
pub(crate) struct TenantView {
    /// Its installs.
    installs: Vec<TenantInstall>,
    /// Passwords expire after this many days.
    password_max_age_days: Option<u32>,
    /// Password logins are refused.
    sso_required: bool,
    /// The tenant.
    tenant: String,
}

/// A tenant's install.
#[derive(Serialize, ToSchema)]
pub(crate) struct TenantInstall {
    /// The app.
    app_id: String,
    /// The app's latest revision.
    latest_rev: u32,
    /// The latest revision is.
    password_after_update: bool,
    /// The pinned revision is password-eligible.
    password_now: bool,
    /// The pinned revision.
    rev: u32,
    /// The tenant requires SSO.
    sso_required: bool,
    /// The pin is the latest revision.
    up_to_date: bool,
}

/// An install pinned to the latest revision.
#[derive(Serialize, ToSchema)]
pub(crate) struct Pinned {
    /// The app.
    app_id: String,
    /// After.
    password_after: bool,
    /// The password grant before.
    password_before: bool,
    /// Updating took it away, for good.
    password_lost: bool,
    /// The revision pinned before.
    previous_rev: Option<u32>,
    /// The pinned revision now.
    rev: u32,
    /// The tenant requires SSO.
    sso_required: bool,
    /// The tenant.
    tenant: String,
}

/// A tenant as the API shows it: each install with its password grant now and after updating.
pub(crate) fn tenant_view(
    server: &Service,
    tenant: &TenantRecord,
    apps: &HashMap<String, App>,
) -> Result<TenantView, ApiError> {
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
        let Some(row) = status.installs.first() else {
            return Err(ApiError::unavailable(
                "policy module",
                "an app status without the install asked about",
            ));
        };
        installs.push(TenantInstall {
            app_id: i.app_id.clone(),
            latest_rev: status.latest_rev,
            password_after_update: row.password_after_update,
            password_now: row.password_now,
            rev: row.rev,
            sso_required: row.sso_required,
            up_to_date: row.up_to_date,
        });
    }
    Ok(TenantView {
        installs,
        password_max_age_days: tenant.password_max_age_days,
        sso_required: tenant.sso_required,
        tenant: tenant.tenant.clone(),
    })
}

/// Every app, by id.
pub(crate) fn all_apps(server: &Service) -> Result<HashMap<String, App>, ApiError> {
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
        (status = 200, description = "Every tenant with its installs", body = TenantList),
        CommonErrors
    )
)]
pub(crate) async fn list_tenants(admin: Admin) -> ApiResult<TenantList> {
    blocking(move || {
        let apps = all_apps(&admin.server)?;
        let tenants = admin
            .server
            .store
            .tenant_records()
            .map_err(|e| ApiError::unavailable("store", e))?;
        let tenants = tenants
            .iter()
            .map(|t| tenant_view(&admin.server, t, &apps))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Answer::ok(TenantList { tenants }))
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
        (status = 200, description = "The tenant with its installs", body = TenantView),
        (status = 404, description = "Not found", body = ErrorBody),
        CommonErrors
    )
)]
pub(crate) async fn get_tenant(admin: Admin, Path(tenant): Path<String>) -> ApiResult<TenantView> {
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
        Ok(Answer::ok(tenant_view(&admin.server, &record, &apps)?))
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
        (status = 201, description = "Created", body = TenantView),
        (status = 409, description = "A conflict", body = ErrorBody),
        (status = 422, description = "Refused: the message says why", body = ErrorBody),
        CommonErrors, BodyErrors
    )
)]
pub(crate) async fn create_tenant(
    admin: Admin,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<TenantView> {
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
                identity_provider: None,
            };
            tx.insert_tenant(&record)?;
            let view = TenantView {
                installs: Vec::new(),
                password_max_age_days: record.password_max_age_days,
                sso_required: record.sso_required,
                tenant: record.tenant,
            };
            let record = ChangeRecord {
                action: "create_tenant",
                target: json!({"tenant": view.tenant}),
                before: Value::Null,
                after: serde_json::to_value(&view)?,
            };
            Ok(Change::Made(Ok(Answer::created(view)), record))
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
pub(crate) fn pin_latest(
    admin: &Admin,
    tenant: &str,
    app_id: &str,
    must_exist: bool,
) -> ApiResult<Pinned> {
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
        let view = match pinned(&server, tenant, record.sso_required, &app, previous) {
            Ok(view) => view,
            Err(e) => return Ok(Change::Refused(Err(e))),
        };
        if previous == Some(view.rev) {
            return Ok(Change::Refused(Ok(Answer::ok(view))));
        }
        tx.set_install(tenant, app_id, view.rev)?;
        let (status, action) = match previous {
            Some(_) => (StatusCode::OK, "update_install"),
            None => (StatusCode::CREATED, "install"),
        };
        let record = ChangeRecord {
            action,
            target: json!({"tenant": tenant, "app_id": app_id}),
            before: json!({"rev": previous}),
            after: serde_json::to_value(&view)?,
        };
        Ok(Change::Made(Ok(Answer::new(status, view)), record))
    })
}

/// What pinning `tenant`'s install of `app` to its latest revision does, the install pinning
/// `previous` before (none: not installed).
fn pinned(
    server: &Service,
    tenant: &str,
    sso_required: bool,
    app: &App,
    previous: Option<u32>,
) -> Result<Pinned, ApiError> {
    let Some(latest) = app.revisions.last().map(|r| r.rev) else {
        return Err(ApiError::unavailable("store", "an app without revisions"));
    };
    let pins: Vec<(String, u32, bool)> = previous
        .map(|rev| (tenant.to_string(), rev, sso_required))
        .into_iter()
        .collect();
    let status = app_status(server, app, &pins)?;
    let before = status.installs.first().is_some_and(|i| i.password_now);
    let after = status.revisions.last().is_some_and(|r| r.password_eligible);
    Ok(Pinned {
        app_id: app.app_id.clone(),
        password_after: after,
        password_before: before,
        password_lost: before && !after,
        previous_rev: previous,
        rev: latest,
        sso_required,
        tenant: tenant.to_string(),
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
        (status = 201, description = "Installed, pinned to the latest revision", body = Pinned), (status = 200, description = "Installed again: the pin moved to the latest revision, or was there already", body = Pinned),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 422, description = "Refused: the message says why", body = ErrorBody),
        CommonErrors, BodyErrors
    )
)]
pub(crate) async fn install(
    admin: Admin,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Pinned> {
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
        (status = 200, description = "The pin is the latest revision; says whether the password grant was lost", body = Pinned),
        (status = 404, description = "Not found", body = ErrorBody),
        CommonErrors
    )
)]
pub(crate) async fn update_install(
    admin: Admin,
    Path((tenant, app_id)): Path<(String, String)>,
) -> ApiResult<Pinned> {
    blocking(move || pin_latest(&admin, &tenant, &app_id, true)).await
}
