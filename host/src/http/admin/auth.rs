//! Who may call the admin API: the bearer admin token, throttled per source on failure.

use super::errors::*;
use crate::admin_token::admin_token_sha256;
use crate::http::source::source_address;
use crate::service::Service;
use crate::settings::now;
use crate::store::AdminAudit;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

/// The throttle bucket of failed admin authentications (per source address).
pub(crate) const ADMIN_BUCKET: &str = "\u{0}admin";

/// An authenticated admin request: who and from where.
pub(crate) struct Admin {
    pub(crate) server: Arc<Service>,
    pub(crate) audit: AdminAudit,
}

impl axum::extract::FromRequestParts<Arc<Service>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        server: &Arc<Service>,
    ) -> Result<Admin, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        authenticate(server, peer, &parts.headers).await
    }
}

pub(crate) async fn authenticate(
    server: &Arc<Service>,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Admin, ApiError> {
    let source = source_address(&server.settings, peer, headers);
    if let Some(wait) = server
        .throttle
        .blocked(ADMIN_BUCKET, source, &server.settings)
        .await
        .map_err(|e| ApiError::unavailable("store", format!("{e:#}")))?
    {
        let seconds = wait.as_secs().max(1);
        server.metrics.throttled();
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many failed sign-ins from this address: retry in {seconds} s"),
        );
        err.retry_after = Some(seconds);
        return Err(err);
    }
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty());
    let Some(presented) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the admin token as `Authorization: Bearer <token>`",
        ));
    };
    let sha = admin_token_sha256(presented);
    let store = server.store.clone();
    let id = tokio::task::spawn_blocking(move || store.admin_token_id(&sha))
        .await
        .map_err(|e| ApiError::unavailable("store", e))?
        .map_err(|e| ApiError::unavailable("store", e))?;
    let Some(actor) = id else {
        server
            .throttle
            .failed(ADMIN_BUCKET, source, &server.settings);
        tracing::warn!(source = %source, "admin API: a wrong admin token");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin token is not valid",
        ));
    };
    Ok(Admin {
        server: server.clone(),
        audit: AdminAudit {
            actor,
            source: source.to_string(),
            policy_sha256: server.policy_sha256().to_string(),
            now: now(&server.settings).map_err(|e| ApiError::unavailable("clock", e))?,
        },
    })
}
