//! App revisions: a new app (its revision 1) and an edit (the next one), each previewed by the
//! policy module before anything is stored, and the module inputs the admin page previews on.
//!
//! The answers' fields are in alphabetical order, the order of the `json!` objects they replaced;
//! the policy module's types embedded in them keep their own.

use super::apps::ClientSecret;
use super::{answer::*, auth::*, errors::*, input::*, module::*};
use crate::service::Service;
use crate::store::{AdminTx, Change, ChangeRecord, EditContext};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use granted_policy::model::{App, ClientType, GrantType, Revision, Timestamp};
use granted_policy::rules::edit::Preview;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApp {
    app_id: String,
    client_id: String,
    grant_type: GrantType,
    #[serde(default)]
    scopes: Vec<String>,
    /// Where the authorization endpoint may send users back (A6: 1 to 10 with
    /// `authorization_code`).
    #[serde(default)]
    redirect_uris: Vec<String>,
    /// `confidential` (the default) or `public` (A7: only with `authorization_code`).
    #[serde(default)]
    client_type: ClientType,
}

#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EditApp {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    grant_type: Option<GrantType>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    /// Replaces the redirect URIs (A6).
    #[serde(default)]
    redirect_uris: Option<Vec<String>>,
    /// Replaces the client type (A7).
    #[serde(default)]
    client_type: Option<ClientType>,
}

/// The module's `preview` input for an edit or a new app, without the edit or the app.
#[derive(Serialize, ToSchema)]
pub(crate) struct EditContextAnswer {
    /// The instant the server judges at.
    #[schema(value_type = String, format = DateTime)]
    now: Timestamp,
    /// The app, the tenants that install it, the `client_id`s other apps use.
    state: Map<String, Value>,
    /// The configured sunset, when not RULES.md's.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime, nullable = false)]
    sunset: Option<Timestamp>,
}

impl EditContextAnswer {
    /// The module's input: this context with `key` (`edit` or `create`) set to `proposal`.
    fn with(&self, key: &str, proposal: Value) -> Result<Value, serde_json::Error> {
        let mut input = serde_json::to_value(self)?;
        input[key] = proposal;
        Ok(input)
    }
}

/// A preview, nothing stored.
#[derive(Serialize, ToSchema)]
pub(crate) struct PreviewAnswer {
    /// The module's preview.
    #[schema(value_type = Preview)]
    preview: Value,
}

/// A saved creation or edit.
#[derive(Serialize, ToSchema)]
pub(crate) struct Saved {
    /// The app.
    app_id: String,
    /// The new client's secret, when the change made a client.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    client_secret: Option<ClientSecret>,
    /// The preview it was saved under.
    #[schema(value_type = Preview)]
    preview: Value,
    /// The revision appended.
    revision: Revision,
}

/// A context's `state`: the apps, the tenants, the `client_id`s in use.
fn state(apps: Value, tenants: Value, client_ids_in_use: Value) -> Map<String, Value> {
    Map::from_iter([
        ("apps".to_string(), apps),
        ("client_ids_in_use".to_string(), client_ids_in_use),
        ("tenants".to_string(), tenants),
    ])
}

/// What the module judges an edit of `ctx.app` against, but the edit: `state`, `now`, `sunset`.
/// The admin page runs `preview` on exactly this in the browser.
pub(crate) fn edit_input(server: &Service, ctx: &EditContext, at: Timestamp) -> EditContextAnswer {
    EditContextAnswer {
        now: at,
        state: state(
            json!([ctx.app]),
            json!(ctx.tenants),
            json!(ctx.client_ids_in_use),
        ),
        sunset: sunset(server),
    }
}

/// The module's preview of an edit, judged against `ctx`.
pub(crate) fn preview_of(
    server: &Service,
    ctx: &EditContext,
    at: Timestamp,
    edit: &EditApp,
) -> Result<Value, ApiError> {
    let edit = json!({
        "app_id": ctx.app.app_id,
        "client_id": edit.client_id,
        "grant_type": edit.grant_type,
        "scopes": edit.scopes,
        "redirect_uris": edit.redirect_uris,
        "client_type": edit.client_type,
    });
    let input = edit_input(server, ctx, at)
        .with("edit", edit)
        .map_err(|e| ApiError::unavailable("policy module", e))?;
    module(server, "preview", &input)
}

/// What the module judges a new app against, but the app: every app (an id in use is
/// `app_id_taken`) and every `client_id` in use (A5), `now`, `sunset`. The admin page previews a
/// new app on exactly this.
pub(crate) fn create_context(
    server: &Service,
    tx: &AdminTx<'_>,
    at: Timestamp,
) -> anyhow::Result<EditContextAnswer> {
    Ok(EditContextAnswer {
        now: at,
        state: state(
            json!(tx.apps()?),
            json!([]),
            json!(tx.client_ids_in_use(None)?),
        ),
        sunset: sunset(server),
    })
}

/// The module's input for previewing `create`, read in the change's transaction.
pub(crate) fn create_input(
    server: &Service,
    tx: &AdminTx<'_>,
    create: &CreateApp,
    at: Timestamp,
) -> anyhow::Result<Value> {
    let create = json!({
        "app_id": create.app_id,
        "client_id": create.client_id,
        "grant_type": create.grant_type,
        "scopes": create.scopes,
        "redirect_uris": create.redirect_uris,
        "client_type": create.client_type,
    });
    Ok(create_context(server, tx, at)?.with("create", create)?)
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

/// The revision an accepted preview would append.
pub(crate) fn revision_of(preview: &Value) -> Result<Revision, ApiError> {
    serde_json::from_value(preview["revision"].clone()).map_err(|e| {
        ApiError::unavailable("policy module", format!("preview without a revision: {e}"))
    })
}

#[utoipa::path(
    get,
    path = "/create-context",
    tag = "apps",
    responses(
        (status = 200, description = "The input of the module's `preview` for a new app, without the app: the browser adds `create` and runs the same `preview` the server runs on `POST /apps`", body = EditContextAnswer),
        CommonErrors
    )
)]
pub(crate) async fn create_context_route(admin: Admin) -> ApiResult<EditContextAnswer> {
    blocking(move || {
        let at = admin.audit.now;
        change(&admin, |tx| {
            let input = create_context(&admin.server, tx, at)?;
            Ok(Change::Refused(Ok(Answer::ok(input))))
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
        (status = 200, description = "The module's preview of a new app; nothing stored", body = PreviewAnswer),
        (status = 422, description = "Refused: the message says why", body = ErrorBody),
        CommonErrors, BodyErrors
    )
)]
pub(crate) async fn preview_create(
    admin: Admin,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<PreviewAnswer> {
    let create: CreateApp = body(&headers, &bytes)?;
    blocking(move || {
        let at = admin.audit.now;
        change(&admin, |tx| {
            let input = create_input(&admin.server, tx, &create, at)?;
            let answer = module(&admin.server, "preview", &input)
                .map(|preview| Answer::ok(PreviewAnswer { preview }));
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
        (status = 201, description = "Created; the client secret is shown only here", body = Saved, headers(("etag" = String, description = "The latest revision"))),
        (status = 409, description = "A conflict", body = ErrorBody),
        (status = 422, description = "Refused: the message says why", body = ErrorBody),
        CommonErrors, BodyErrors
    )
)]
pub(crate) async fn create_app(admin: Admin, headers: HeaderMap, bytes: Bytes) -> ApiResult<Saved> {
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
                let taken = preview["reason"] == "app_id_taken";
                let mut err = rejected(preview);
                if taken {
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
            // A public client (A7) holds no secret: none is made, none is shown.
            let public = revision.client_type == ClientType::Public;
            tx.put_client(
                &revision.client_id,
                &app.app_id,
                if public { "" } else { &secret.1 },
            )?;
            let record = ChangeRecord {
                action: "create_app",
                target: json!({"app_id": app.app_id}),
                before: Value::Null,
                after: json!({"revision": revision}),
            };
            let saved = Saved {
                client_secret: (!public).then(|| ClientSecret {
                    client_id: revision.client_id.clone(),
                    secret: secret.0,
                }),
                app_id: app.app_id,
                preview,
                revision,
            };
            let rev = saved.revision.rev;
            Ok(Change::Made(
                Ok(Answer::created(saved).with_etag(rev)),
                record,
            ))
        })
    })
    .await
}

#[utoipa::path(
    get,
    path = "/apps/{app_id}/edit-context",
    tag = "apps",
    params(
        ("app_id" = String, Path, description = "The app")
    ),
    responses(
        (status = 200, description = "The input of the module's `preview` for an edit of this app, without the edit: the browser adds `edit` and runs the same `preview` the server runs on save", body = EditContextAnswer, headers(("etag" = String, description = "The revision it is based on"))),
        (status = 404, description = "Not found", body = ErrorBody),
        CommonErrors
    )
)]
pub(crate) async fn edit_context(
    admin: Admin,
    Path(app_id): Path<String>,
) -> ApiResult<EditContextAnswer> {
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
            Ok(Change::Refused(Ok(Answer::ok(input).with_etag(rev))))
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
        (status = 200, description = "The module's preview; nothing stored", body = PreviewAnswer, headers(("etag" = String, description = "The revision the preview is based on"))),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 422, description = "Refused: the message says why", body = ErrorBody),
        CommonErrors, BodyErrors
    )
)]
pub(crate) async fn preview_edit(
    admin: Admin,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<PreviewAnswer> {
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
            let answer = preview_of(&admin.server, &ctx, at, &edit)
                .map(|preview| Answer::ok(PreviewAnswer { preview }).with_etag(rev));
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
        (status = 201, description = "Saved under the preview shown", body = Saved, headers(("etag" = String, description = "The new latest revision"))),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "A conflict", body = ErrorBody),
        (status = 422, description = "Refused: the message says why", body = ErrorBody),
        (status = 428, description = "`If-Match` is missing", body = ErrorBody),
        CommonErrors, BodyErrors
    )
)]
pub(crate) async fn append_revision(
    admin: Admin,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Saved> {
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
            let mut client_secret = None;
            if !known.contains(&revision.client_id) {
                if revision.client_type == ClientType::Public {
                    // A public client (A7) holds no secret: none is made, none is shown.
                    tx.put_client(&revision.client_id, &app_id, "")?;
                } else {
                    tx.put_client(&revision.client_id, &app_id, &secret.1)?;
                    client_secret = Some(ClientSecret { client_id: revision.client_id.clone(), secret: secret.0 });
                }
            }
            let record = ChangeRecord {
                action: "append_revision",
                target: json!({"app_id": app_id}),
                before: json!({"revision": latest}),
                after: json!({"revision": revision, "irreversible": preview["irreversible"]}),
            };
            let rev = revision.rev;
            let saved = Saved { app_id, client_secret, preview, revision };
            Ok(Change::Made(Ok(Answer::created(saved).with_etag(rev)), record))
        })
    })
    .await
}
