//! `granted serve` over HTTP: the routes, composed here and nowhere else. The handlers do I/O
//! only (store lookups, the KDF on its own threads, effects in one transaction, the response);
//! the policy module, one fresh instance per request, makes every decision.

pub mod admin;
pub(crate) mod answer;
mod authorize;
/// The authorization transaction's cookie.
pub use authorize::COOKIE as AUTHORIZE_COOKIE;
pub mod conn;
mod decide;
pub(crate) mod failure;
mod manage;
mod metadata;
pub mod openapi;
mod ops;
pub(crate) mod source;
mod token;

use crate::service::Service;
use anyhow::Result;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use std::sync::Arc;
use std::time::Instant;

/// The largest request body read (RFC 6749 requests are small).
pub const MAX_BODY: usize = 64 * 1024;

/// The HTTP routes.
pub fn router(server: Arc<Service>) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/tenants/{tenant}/connect/token", any(token::token))
        .route("/tenants/{tenant}/connect/authorize", authorize::route())
        .route(authorize::STYLE_PATH, get(authorize::style))
        .route(
            "/tenants/{tenant}/connect/revocation",
            manage::manage_route("revocation"),
        )
        .route(
            "/tenants/{tenant}/connect/introspect",
            manage::manage_route("introspection"),
        )
        .route(
            "/tenants/{tenant}/connect/userinfo",
            manage::manage_route("userinfo"),
        )
        .route(
            "/tenants/{tenant}/.well-known/oauth-authorization-server",
            get(metadata::metadata),
        )
        .route(
            "/tenants/{tenant}/.well-known/openid-configuration",
            get(metadata::openid_configuration),
        )
        .route(
            "/tenants/{tenant}/.well-known/jwks.json",
            get(metadata::jwks),
        )
        // RFC 8414 §3.1: the well-known segment goes before the issuer's path.
        .route(
            "/.well-known/oauth-authorization-server/tenants/{tenant}",
            get(metadata::metadata),
        )
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(ops::metrics))
        .nest("/admin/api/v1", admin::routes())
        .merge(admin::page::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            body_in_time,
        ))
        .layer(axum::middleware::from_fn_with_state(server.clone(), timed))
        .with_state(server)
}

/// Times every request for the latency histograms, by endpoint.
async fn timed(
    State(server): State<Arc<Service>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let endpoint = if path.starts_with("/admin/api/") {
        "admin"
    } else if path.ends_with("/connect/token") {
        "token"
    } else if path.ends_with("/connect/authorize") {
        "authorize"
    } else if path.ends_with("/connect/userinfo") {
        "userinfo"
    } else if path.ends_with("/connect/revocation") {
        "revocation"
    } else if path.ends_with("/connect/introspect") {
        "introspection"
    } else if path.contains("/.well-known/") {
        "metadata"
    } else if path == "/healthz" {
        "health"
    } else if path == "/metrics" {
        "metrics"
    } else {
        "other"
    };
    let started = Instant::now();
    let response = next.run(request).await;
    server.metrics.observe(endpoint, started.elapsed());
    response
}

/// Reads a request's body (up to one byte over [`MAX_BODY`], so that the handlers still see
/// that it is too large) within `body_timeout`, or answers 408 and closes the connection: a
/// client that sends its body slowly holds a connection for that long at most.
async fn body_in_time(
    State(server): State<Arc<Service>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::body::{Body, HttpBody as _};
    use http_body_util::BodyExt as _;
    let (parts, mut body) = request.into_parts();
    if body.is_end_stream() {
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    }
    let mut read = bytes::BytesMut::new();
    let collect = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                read.extend_from_slice(&data);
                if read.len() > MAX_BODY {
                    break;
                }
            }
        }
        Ok::<(), axum::Error>(())
    };
    let limit = server.settings.connections.body_timeout;
    match tokio::time::timeout(limit, collect).await {
        Ok(Ok(())) => {
            let request = axum::extract::Request::from_parts(parts, Body::from(read.freeze()));
            next.run(request).await
        }
        Ok(Err(_)) => answer::oauth_error(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request body could not be read",
        ),
        Err(_) => {
            let mut response = answer::oauth_error(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                &format!(
                    "the request body did not arrive within {} s",
                    limit.as_secs()
                ),
            );
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

/// Serves until `shutdown` resolves; in-flight requests finish, new ones are refused.
/// Connections are capped and timed ([`conn`]).
pub async fn serve(
    server: Arc<Service>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let limits = server.settings.connections;
    let stats = server.connections.clone();
    let writer = server.clone();
    let aggregates = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            writer.write_refusals(false).await;
        }
    });
    conn::serve_connections(router(server.clone()), listener, limits, stats, shutdown).await;
    aggregates.abort();
    server.write_refusals(true).await;
    Ok(())
}
