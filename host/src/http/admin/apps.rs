//! `/apps`: apps, their revisions (each edit previewed by the module first) and client secrets.

use super::{auth::*, errors::*, input::*, module::*};
use crate::service::Service;
use crate::store::{AdminTx, Change, ChangeRecord, EditContext};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use granted_policy::model::{App, GrantType, Revision, TenantRecord, Timestamp};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

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
        (status = 200, description = "Every app with its password-grant status", body = super::openapi::AppList),
        super::openapi::CommonErrors
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
pub(crate) fn app_view(
    server: &Service,
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
        (status = 200, description = "The app, its history and installs", body = super::openapi::AppView, headers(("etag" = String, description = "The latest revision, for `If-Match`"))),
        (status = 404, description = "Not found", body = super::openapi::ErrorBody),
        super::openapi::CommonErrors
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
pub(crate) fn preview_of(
    server: &Service,
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
pub(crate) fn edit_input(server: &Service, ctx: &EditContext, at: Timestamp) -> Value {
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
        (status = 200, description = "The input of the module's `preview` for an edit of this app, without the edit: the browser adds `edit` and runs the same `preview` the server runs on save", body = super::openapi::EditContextAnswer, headers(("etag" = String, description = "The revision it is based on"))),
        (status = 404, description = "Not found", body = super::openapi::ErrorBody),
        super::openapi::CommonErrors
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
pub(crate) fn rejected(preview: Value) -> ApiError {
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

pub(crate) fn revision_of(preview: &Value) -> Result<Revision, ApiError> {
    serde_json::from_value(preview["revision"].clone()).map_err(|e| {
        ApiError::unavailable("policy module", format!("preview without a revision: {e}"))
    })
}

/// What the module judges a new app against, but the app: every app (an id in use is
/// `app_id_taken`) and every `client_id` in use (A5), `now`, `sunset`. The admin page previews a
/// new app on exactly this.
pub(crate) fn create_context(
    server: &Service,
    tx: &AdminTx<'_>,
    at: Timestamp,
) -> anyhow::Result<Value> {
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
pub(crate) fn create_input(
    server: &Service,
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
        (status = 200, description = "The input of the module's `preview` for a new app, without the app: the browser adds `create` and runs the same `preview` the server runs on `POST /apps`", body = super::openapi::EditContextAnswer),
        super::openapi::CommonErrors
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
        (status = 200, description = "The module's preview of a new app; nothing stored", body = super::openapi::PreviewAnswer),
        (status = 422, description = "Refused: the message says why", body = super::openapi::ErrorBody),
        super::openapi::CommonErrors, super::openapi::BodyErrors
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
        (status = 201, description = "Created; the client secret is shown only here", body = super::openapi::Saved, headers(("etag" = String, description = "The latest revision"))),
        (status = 409, description = "A conflict", body = super::openapi::ErrorBody),
        (status = 422, description = "Refused: the message says why", body = super::openapi::ErrorBody),
        super::openapi::CommonErrors, super::openapi::BodyErrors
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
        (status = 200, description = "The module's preview; nothing stored", body = super::openapi::PreviewAnswer, headers(("etag" = String, description = "The revision the preview is based on"))),
        (status = 404, description = "Not found", body = super::openapi::ErrorBody),
        (status = 422, description = "Refused: the message says why", body = super::openapi::ErrorBody),
        super::openapi::CommonErrors, super::openapi::BodyErrors
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
        (status = 201, description = "Saved under the preview shown", body = super::openapi::Saved, headers(("etag" = String, description = "The new latest revision"))),
        (status = 404, description = "Not found", body = super::openapi::ErrorBody),
        (status = 409, description = "A conflict", body = super::openapi::ErrorBody),
        (status = 422, description = "Refused: the message says why", body = super::openapi::ErrorBody),
        (status = 428, description = "`If-Match` is missing", body = super::openapi::ErrorBody),
        super::openapi::CommonErrors, super::openapi::BodyErrors
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
        (status = 200, description = "A new secret, shown only here; the old one stops working", body = super::openapi::RotatedSecret),
        (status = 404, description = "Not found", body = super::openapi::ErrorBody),
        super::openapi::CommonErrors
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
