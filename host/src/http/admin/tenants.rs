//! `/tenants`: tenants and the app revisions they install.

use super::{auth::*, errors::*, input::*, module::*};
use crate::service::Service;
use crate::store::{Change, ChangeRecord};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use granted_policy::model::{App, TenantRecord};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

pub(crate) fn tenant_view(
    server: &Service,
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
        (status = 200, description = "Every tenant with its installs", body = super::openapi::TenantList),
        super::openapi::CommonErrors
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
        (status = 200, description = "The tenant with its installs", body = super::openapi::TenantView),
        (status = 404, description = "Not found", body = super::openapi::ErrorBody),
        super::openapi::CommonErrors
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
        (status = 201, description = "Created", body = super::openapi::TenantView),
        (status = 409, description = "A conflict", body = super::openapi::ErrorBody),
        (status = 422, description = "Refused: the message says why", body = super::openapi::ErrorBody),
        super::openapi::CommonErrors, super::openapi::BodyErrors
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
pub(crate) fn pin_latest(
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
        (status = 201, description = "Installed, pinned to the latest revision", body = super::openapi::Pinned), (status = 200, description = "Installed again: the pin moved to the latest revision, or was there already", body = super::openapi::Pinned),
        (status = 404, description = "Not found", body = super::openapi::ErrorBody),
        (status = 422, description = "Refused: the message says why", body = super::openapi::ErrorBody),
        super::openapi::CommonErrors, super::openapi::BodyErrors
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
        (status = 200, description = "The pin is the latest revision; says whether the password grant was lost", body = super::openapi::Pinned),
        (status = 404, description = "Not found", body = super::openapi::ErrorBody),
        super::openapi::CommonErrors
    )
)]
pub(crate) async fn update_install(
    admin: Admin,
    Path((tenant, app_id)): Path<(String, String)>,
) -> ApiResult {
    blocking(move || pin_latest(&admin, &tenant, &app_id, true)).await
}
