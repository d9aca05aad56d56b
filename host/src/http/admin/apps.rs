//! `/apps`: every app, one app with its history and installs, and its client secrets.
//!
//! The answers' fields are in alphabetical order, the order of the `json!` objects they replaced;
//! the policy module's types embedded in them keep their own.

use super::{answer::*, auth::*, errors::*, module::*};
use crate::service::Service;
use crate::store::{Change, ChangeRecord};
use axum::extract::Path;
use granted_policy::model::{App, ClientType, GrantType, Revision, TenantRecord, Timestamp};
use granted_policy::rules::eligibility::Ineligible;
use granted_policy::rules::status::{AppStatus, InstallStatus, PasswordStatus};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use utoipa::ToSchema;

/// Every app.
#[derive(Serialize, ToSchema)]
pub(crate) struct AppList {
    /// The apps, by id.
    apps: Vec<AppSummary>,
}

/// An app in the list.
#[derive(Serialize, ToSchema)]
pub(crate) struct AppSummary {
    /// The app.
    app_id: String,
    /// Its clients.
    client_ids: Vec<String>,
    /// When it was created.
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// How many tenants install it.
    installs: u64,
    /// Its latest revision.
    latest: Option<Revision>,
    /// The password grant.
    password_grant: PasswordGrant,
}

/// An app's password-grant status, briefly.
#[derive(Serialize, ToSchema)]
pub(crate) struct PasswordGrant {
    /// The status.
    status: PasswordStatus,
    /// Tenants that keep it until they update.
    tenants_keeping: Vec<String>,
}

impl PasswordGrant {
    fn of(status: &AppStatus) -> PasswordGrant {
        PasswordGrant {
            status: status.status,
            tenants_keeping: status.tenants_keeping.clone(),
        }
    }
}

/// An app with its history and installs.
#[derive(Serialize, ToSchema)]
pub(crate) struct AppView {
    /// The app.
    app_id: String,
    /// Its clients.
    client_ids: Vec<String>,
    /// When it was created.
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// Its installs, by tenant.
    installs: Vec<InstallStatus>,
    /// Its latest revision (also the `ETag`).
    latest_rev: u32,
    /// The password grant.
    password_grant: PasswordGrant,
    /// Every revision, oldest first.
    revisions: Vec<RevisionView>,
}

/// A revision in an app's history.
#[derive(Serialize, ToSchema)]
pub(crate) struct RevisionView {
    /// When.
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    /// Its `client_id`.
    client_id: String,
    /// Its grant type.
    grant_type: GrantType,
    /// Why not, when not.
    #[schema(value_type = Option<String>)]
    ineligible_because: Option<Ineligible>,
    /// Password-eligible (R1–R4).
    password_eligible: bool,
    /// Its number.
    rev: u32,
    /// Its scopes.
    scopes: Vec<String>,
    /// Where the authorization endpoint may send users back.
    redirect_uris: Vec<String>,
    /// `confidential` or `public`.
    client_type: ClientType,
}

/// A client secret, shown only in this answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct ClientSecret {
    /// The client.
    pub(crate) client_id: String,
    /// The secret.
    pub(crate) secret: String,
}

/// A rotated client secret.
#[derive(Serialize, ToSchema)]
pub(crate) struct RotatedSecret {
    /// The new secret.
    client_secret: ClientSecret,
}

/// Every tenant's installs: app id → (tenant, pinned rev, SSO required).
pub(crate) fn installs_by_app(
    tenants: &[TenantRecord],
) -> HashMap<String, Vec<(String, u32, bool)>> {
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
        (status = 200, description = "Every app with its password-grant status", body = AppList),
        CommonErrors
    )
)]
pub(crate) async fn list_apps(admin: Admin) -> ApiResult<AppList> {
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
            out.push(AppSummary {
                client_ids: clients.into_iter().map(|(id, _)| id).collect(),
                created_at: app.created_at,
                installs: app_installs.len() as u64,
                latest: app.revisions.last().cloned(),
                password_grant: PasswordGrant::of(&status),
                app_id: app.app_id,
            });
        }
        Ok(Answer::ok(AppList { apps: out }))
    })
    .await
}

/// An app as the API shows it: revisions with their eligibility, installs, clients, status.
pub(crate) fn app_view(
    server: &Service,
    app: &App,
    clients: &[String],
    tenants: &[TenantRecord],
) -> Result<AppView, ApiError> {
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
    let revisions = app
        .revisions
        .iter()
        .map(|r| {
            let verdict = status.revisions.iter().find(|v| v.rev == r.rev);
            RevisionView {
                at: r.at,
                client_id: r.client_id.clone(),
                grant_type: r.grant_type,
                ineligible_because: verdict.and_then(|v| v.reason),
                password_eligible: verdict.is_some_and(|v| v.password_eligible),
                rev: r.rev,
                scopes: r.scopes.clone(),
                redirect_uris: r.redirect_uris.clone(),
                client_type: r.client_type,
            }
        })
        .collect();
    Ok(AppView {
        app_id: app.app_id.clone(),
        client_ids: clients.to_vec(),
        created_at: app.created_at,
        password_grant: PasswordGrant::of(&status),
        installs: status.installs,
        latest_rev: status.latest_rev,
        revisions,
    })
}

#[utoipa::path(
    get,
    path = "/apps/{app_id}",
    tag = "apps",
    params(
        ("app_id" = String, Path, description = "The app id")
    ),
    responses(
        (status = 200, description = "The app, its history and installs", body = AppView, headers(("etag" = String, description = "The latest revision, for `If-Match`"))),
        (status = 404, description = "Not found", body = ErrorBody),
        CommonErrors
    )
)]
pub(crate) async fn get_app(admin: Admin, Path(app_id): Path<String>) -> ApiResult<AppView> {
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
        Ok(Answer::ok(view).with_etag(rev))
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
        (status = 200, description = "A new secret, shown only here; the old one stops working", body = RotatedSecret),
        (status = 404, description = "Not found", body = ErrorBody),
        CommonErrors
    )
)]
pub(crate) async fn rotate_client_secret(
    admin: Admin,
    Path((app_id, client_id)): Path<(String, String)>,
) -> ApiResult<RotatedSecret> {
    blocking(move || {
        let secret = new_secret(&admin.server)?;
        change(&admin, |tx| {
            if !tx.client_ids_of(&app_id)?.contains(&client_id) {
                return Ok(Change::Refused(Err(ApiError::not_found(format!(
                    "app `{app_id}` has no client `{client_id}`"
                )))));
            }
            tx.put_client(&client_id, &app_id, &secret.1)?;
            let target = json!({"app_id": app_id, "client_id": client_id});
            let client_secret = ClientSecret {
                client_id,
                secret: secret.0,
            };
            Ok(Change::Made(
                Ok(Answer::ok(RotatedSecret { client_secret })),
                ChangeRecord {
                    action: "rotate_client_secret",
                    target,
                    before: Value::Null,
                    after: json!({"secret": "replaced"}),
                },
            ))
        })
    })
    .await
}
