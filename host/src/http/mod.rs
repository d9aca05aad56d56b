//! `granted serve` over HTTP: the routes, composed here and nowhere else. The handlers do I/O
//! only (store lookups, the KDF on its own threads, effects in one transaction, the response);
//! the policy module, one fresh instance per request, makes every decision.

pub mod admin;
pub(crate) mod answer;
mod decide;
pub(crate) mod failure;
mod manage;
mod metadata;
mod ops;
pub(crate) mod source;
mod token;

use crate::service::Service;
use anyhow::Result;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The largest request body read (RFC 6749 requests are small).
pub const MAX_BODY: usize = 64 * 1024;

/// The HTTP routes.
pub fn router(server: Arc<Service>) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/tenants/{tenant}/connect/token", any(token::token))
        .route(
            "/tenants/{tenant}/connect/revocation",
            manage::manage_route("revocation"),
        )
        .route(
            "/tenants/{tenant}/connect/introspect",
            manage::manage_route("introspection"),
        )
        .route(
            "/tenants/{tenant}/.well-known/oauth-authorization-server",
            get(metadata::metadata),
        )
        // RFC 8414 §3.1: the well-known segment goes before the issuer's path.
        .route(
            "/.well-known/oauth-authorization-server/tenants/{tenant}",
            get(metadata::metadata),
        )
        .route("/metrics", get(ops::metrics))
        .nest("/admin/api/v1", admin::routes())
        .merge(admin::page::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
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

/// Serves until `shutdown` resolves; in-flight requests finish, new ones are refused.
pub async fn serve(
    server: Arc<Service>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(
        listener,
        router(server).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}
