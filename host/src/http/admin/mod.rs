//! The admin API (`/admin/api/v1`, JSON): apps and their revisions, tenants and their installs,
//! users. Every decision about an app edit is the policy module's (`preview`, the function the
//! admin page runs in the browser); the host authenticates, reads and writes the store, and
//! records each change in the audit log in the same transaction.
//!
//! Errors are JSON objects `{"error": code, "message": sentence}` with stable codes; a refused
//! edit adds `reason`, `rule` and the module's preview. Nothing is written unless the whole
//! change is.

mod apps;
mod audit;
mod auth;
pub(crate) mod errors;
mod input;
mod module;
pub mod openapi;
pub mod page;
pub mod reports;
mod tenants;
mod users;

use crate::service::Service;
use apps::*;
use audit::*;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use errors::*;
use reports::*;
use std::sync::Arc;
use tenants::*;
use users::*;

/// The routes under `/admin/api/v1`.
pub fn routes() -> Router<Arc<Service>> {
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

/// `GET /admin/api/v1/openapi.json`: the document, without authentication.
async fn openapi_document() -> Response {
    let mut response = openapi::document().into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}
