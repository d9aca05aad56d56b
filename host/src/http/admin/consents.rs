//! `/tenants/{tenant}/users/{username}/consents`: what a user allowed apps to do on the consent
//! page (RULES.md §5, C11), and withdrawing it (the next sign-in to that app asks again).

use super::{answer::*, auth::*, errors::*, module::*};
use crate::store::{AdminTx, Change, ChangeRecord};
use axum::extract::Path;
use granted_policy::model::ConsentRecord;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// A user's consents.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConsentList {
    /// By app.
    consents: Vec<ConsentView>,
}

/// A consent to one app.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConsentView {
    /// The app.
    app_id: String,
    /// The scopes allowed.
    scopes: Vec<String>,
}

fn view(consent: ConsentRecord) -> ConsentView {
    ConsentView {
        app_id: consent.app_id,
        scopes: consent.scopes,
    }
}

/// The user, or the 404 to answer.
fn known_user(
    tx: &AdminTx<'_>,
    tenant: &str,
    username: &str,
) -> anyhow::Result<Result<(), ApiError>> {
    Ok(match tx.user(tenant, username)? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!(
            "no user `{username}` in tenant `{tenant}`"
        ))),
    })
}

#[utoipa::path(
    get,
    path = "/tenants/{tenant}/users/{username}/consents",
    tag = "users",
    params(
        ("tenant" = String, Path, description = "The tenant"),
        ("username" = String, Path, description = "The username")
    ),
    responses(
        (status = 200, description = "The apps the user allowed on the consent page, with the scopes", body = ConsentList),
        (status = 404, description = "Not found", body = ErrorBody),
        CommonErrors
    )
)]
pub(crate) async fn list_consents(
    admin: Admin,
    Path((tenant, username)): Path<(String, String)>,
) -> ApiResult<ConsentList> {
    blocking(move || {
        change(&admin, |tx| {
            if let Err(e) = known_user(tx, &tenant, &username)? {
                return Ok(Change::Refused(Err(e)));
            }
            let consents = tx.consents(&tenant, &username)?;
            Ok(Change::Refused(Ok(Answer::ok(ConsentList {
                consents: consents.into_iter().map(view).collect(),
            }))))
        })
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/tenants/{tenant}/users/{username}/consents/{app_id}",
    tag = "users",
    params(
        ("tenant" = String, Path, description = "The tenant"),
        ("username" = String, Path, description = "The username"),
        ("app_id" = String, Path, description = "The app whose consent to withdraw")
    ),
    responses(
        (status = 200, description = "The user's consents after the withdrawal", body = ConsentList),
        (status = 404, description = "No such user, or no consent to that app", body = ErrorBody),
        CommonErrors
    )
)]
pub(crate) async fn withdraw_consent(
    admin: Admin,
    Path((tenant, username, app_id)): Path<(String, String, String)>,
) -> ApiResult<ConsentList> {
    blocking(move || {
        change(&admin, |tx| {
            if let Err(e) = known_user(tx, &tenant, &username)? {
                return Ok(Change::Refused(Err(e)));
            }
            let before = tx.consents(&tenant, &username)?;
            let Some(withdrawn) = before.iter().find(|c| c.app_id == app_id).cloned() else {
                return Ok(Change::Refused(Err(ApiError::not_found(format!(
                    "`{username}` has no consent to `{app_id}` in tenant `{tenant}`"
                )))));
            };
            tx.withdraw_consent(&tenant, &username, &app_id)?;
            let after = tx.consents(&tenant, &username)?;
            Ok(Change::Made(
                Ok(Answer::ok(ConsentList {
                    consents: after.into_iter().map(view).collect(),
                })),
                ChangeRecord {
                    action: "withdraw_consent",
                    target: json!({"tenant": tenant, "username": username, "app_id": app_id}),
                    before: json!({"scopes": withdrawn.scopes}),
                    after: json!(null),
                },
            ))
        })
    })
    .await
}
