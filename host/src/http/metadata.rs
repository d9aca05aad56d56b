//! The RFC 8414 authorization-server metadata of each tenant.

use super::answer::{oauth_error, unavailable};
use crate::service::Service;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// RFC 8414 metadata of a tenant.
pub(crate) async fn metadata(
    State(server): State<Arc<Service>>,
    Path(tenant): Path<String>,
) -> Response {
    let exists = {
        let store = server.store.clone();
        let t = tenant.clone();
        tokio::task::spawn_blocking(move || store.tenant(&t)).await
    };
    match exists {
        Ok(Ok(Some(_))) => {}
        Ok(Ok(None)) => return oauth_error(StatusCode::NOT_FOUND, "not_found", "no such tenant"),
        _ => return unavailable("the store is not answering"),
    }
    let issuer = format!("{}/tenants/{}", server.settings.issuer, tenant);
    Json(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/connect/token"),
        "revocation_endpoint": format!("{issuer}/connect/revocation"),
        "introspection_endpoint": format!("{issuer}/connect/introspect"),
        "grant_types_supported": ["password", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
    }))
    .into_response()
}
