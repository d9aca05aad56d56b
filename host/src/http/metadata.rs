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
    Json(shared_metadata(&server, &tenant)).into_response()
}

/// What RFC 8414's metadata and OpenID Connect Discovery's configuration both say.
fn shared_metadata(server: &Service, tenant: &str) -> serde_json::Value {
    let issuer = format!("{}/tenants/{}", server.settings.issuer, tenant);
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/connect/authorize"),
        "token_endpoint": format!("{issuer}/connect/token"),
        "revocation_endpoint": format!("{issuer}/connect/revocation"),
        "introspection_endpoint": format!("{issuer}/connect/introspect"),
        "userinfo_endpoint": format!("{issuer}/connect/userinfo"),
        "grant_types_supported": [
            "password", "client_credentials", "refresh_token", "authorization_code"
        ],
        // `none`: a public client (PKCE alone, RULES.md §5).
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "scopes_supported": ["openid"],
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
    })
}

/// `GET /tenants/{tenant}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §3).
pub(crate) async fn openid_configuration(
    State(server): State<Arc<Service>>,
    Path(tenant): Path<String>,
) -> Response {
    if let Some(refused) = known_tenant(&server, &tenant).await {
        return refused;
    }
    let keys = match server.keys().await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::error!("could not read the server keys: {e:#}");
            return unavailable("the store is not answering");
        }
    };
    let mut configuration = shared_metadata(&server, &tenant);
    configuration["subject_types_supported"] = json!(["public"]);
    configuration["id_token_signing_alg_values_supported"] = json!([keys.signing.alg()]);
    configuration["claims_supported"] = json!([
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "preferred_username"
    ]);
    Json(configuration).into_response()
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
