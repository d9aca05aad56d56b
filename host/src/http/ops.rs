//! What operators poll: `/healthz` and `/metrics`.

use crate::service::Service;
use crate::settings::now;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// `GET /metrics`: the Prometheus text format.
pub(crate) async fn metrics(State(server): State<Arc<Service>>) -> Response {
    let store = server.store.clone();
    // Without a clock, the gauge is left out (the rest of the metrics still answer).
    let locked = match now(&server.settings) {
        Ok(at) => tokio::task::spawn_blocking(move || store.users_locked(at))
            .await
            .ok()
            .and_then(Result::ok),
        Err(_) => None,
    };
    let gauges = crate::metrics::Gauges {
        kdf_waiting: server.kdf.waiting(),
        kdf_queue_capacity: server.settings.login_queue.max(1),
        kdf_threads: server.settings.kdf_threads.max(1),
        users_locked: locked,
        lockouts: server.store.lockouts(),
        connections: {
            use std::sync::atomic::Ordering::Relaxed;
            let c = &server.connections;
            [
                c.open.load(Relaxed) as u64,
                c.refused.load(Relaxed),
                c.header_timeouts.load(Relaxed),
                c.idle_closed.load(Relaxed),
            ]
        },
    };
    let mut response = server.metrics.render(&gauges).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /healthz`: the module, the store, and whether the database answered last.
pub(crate) async fn healthz(State(server): State<Arc<Service>>) -> Response {
    Json(json!({
        "status": "ok",
        "policy_sha256": server.policy_sha256(),
        "abi_version": crate::guest::HOST_ABI_VERSION,
        "store": server.store.backend(),
        // Token requests get 503s while it is not (the host itself is up).
        "database_reachable": server.store.reachable(),
    }))
    .into_response()
}
