//! The RFC 8414 authorization-server metadata of each tenant, and its JWKS (RFC 7517): the
//! public keys whose tokens may still be live, including one published before it signs.

use super::answer::{oauth_error, unavailable};
use crate::service::Service;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// Whether `tenant` exists; an answer to send when not, or when the store cannot tell.
async fn known_tenant(server: &Arc<Service>, tenant: &str) -> Option<Response> {
    let exists = {
        let store = server.store.clone();
        let t = tenant.to_string();
        tokio::task::spawn_blocking(move || store.tenant(&t)).await
    };
    match exists {
        Ok(Ok(Some(_))) => None,
        Ok(Ok(None)) => Some(oauth_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such tenant",
        )),
        _ => Some(unavailable("the store is not answering")),
    }
}

/// RFC 8414 metadata of a tenant.
pub(crate) async fn metadata(
    State(server): State<Arc<Service>>,
    Path(tenant): Path<String>,
) -> Response {
    if let Some(refused) = known_tenant(&server, &tenant).await {
        return refused;
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
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
    }))
    .into_response()
}

/// `GET /tenants/{tenant}/.well-known/jwks.json`: every public key whose tokens may be live.
/// Caches may keep it for half the publication delay (at most five minutes): a new key is in
/// every cache before it signs.
pub(crate) async fn jwks(
    State(server): State<Arc<Service>>,
    Path(tenant): Path<String>,
) -> Response {
    if let Some(refused) = known_tenant(&server, &tenant).await {
        return refused;
    }
    match server.keys().await {
        Ok(keys) => {
            let max_age = (server.settings.key_publish_seconds / 2).min(300);
            (
                [(
                    axum::http::header::CACHE_CONTROL,
                    format!("public, max-age={max_age}"),
                )],
                Json(crate::signing::jwks(keys.published.iter().map(|k| &**k))),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!("could not read the server keys: {e:#}");
            unavailable("the store is not answering")
        }
    }
}
