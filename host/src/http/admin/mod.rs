//! The admin API (`/admin/api/v1`, JSON): apps and their revisions, tenants and their installs,
//! users. Every decision about an app edit is the policy module's (`preview`, the function the
//! admin page runs in the browser); the host authenticates, reads and writes the store, and
//! records each change in the audit log in the same transaction.
//!
//! Each route is registered once, with its OpenAPI operation; the document is what the router
//! collected. Handlers answer typed bodies, the same types the document describes.
//!
//! Errors are JSON objects `{"error": code, "message": sentence}` with stable codes; a refused
//! edit adds `reason`, `rule` and the module's preview. Nothing is written unless the whole
//! change is.

mod answer;
mod apps;
mod audit;
mod auth;
mod consents;
pub(crate) mod errors;
#[cfg(feature = "testing")]
mod fuzz;
#[cfg(feature = "testing")]
pub use fuzz::decode_any;
mod input;
mod module;
pub mod openapi;
pub mod page;
mod providers;
pub mod reports;
mod revisions;
mod tenants;
mod users;

use crate::service::Service;
use apps::*;
use audit::*;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use consents::*;
use errors::*;
use providers::*;
use reports::*;
use revisions::*;
use std::sync::Arc;
use tenants::*;
use users::*;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The documented routes under `/admin/api/v1`, each with its operation in the document.
fn documented() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::with_openapi(openapi::AdminApi::openapi())
        .routes(routes!(list_apps, create_app))
        .routes(routes!(get_app))
        .routes(routes!(preview_create))
        .routes(routes!(create_context_route))
        .routes(routes!(append_revision))
        .routes(routes!(preview_edit))
        .routes(routes!(edit_context))
        .routes(routes!(rotate_client_secret))
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant))
        .routes(routes!(
            get_identity_provider,
            put_identity_provider,
            delete_identity_provider
        ))
        .routes(routes!(check_identity_provider))
        .routes(routes!(install))
        .routes(routes!(update_install))
        .routes(routes!(list_users, create_user))
        .routes(routes!(set_password))
        .routes(routes!(user_action))
        .routes(routes!(list_consents))
        .routes(routes!(withdraw_consent))
        .routes(routes!(audit_log))
        .routes(routes!(sunset_report_route))
}

/// The routes under `/admin/api/v1`, and `GET /openapi.json`, their document.
pub fn routes() -> Router<Arc<Service>> {
    let (router, api) = documented().split_for_parts();
    let document: Arc<str> = api.to_json().unwrap_or_else(|_| "{}".to_string()).into();
    router
        .route(
            "/openapi.json",
            get(move || openapi_document(document.clone())),
        )
        .layer(axum::middleware::map_response(json_errors))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such admin API route",
            )
        })
}

/// The admin API's OpenAPI document as JSON, as `GET /admin/api/v1/openapi.json` serves it.
pub fn document() -> String {
    documented()
        .into_openapi()
        .to_json()
        .unwrap_or_else(|_| "{}".to_string())
}

/// `GET /admin/api/v1/openapi.json`: the document, without authentication.
async fn openapi_document(document: Arc<str>) -> Response {
    let mut response = document.to_string().into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}
