//! The admin page, served at `/admin/`: its files are built into the binary, with the
//! wasm-bindgen glue and the very `_bg.wasm` the server runs, so the page previews edits with
//! the module the server enforces (the page shows both digests and warns when they differ).

use crate::http::answer::page_headers;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../../../www/admin/index.html");
const APP_JS: &str = include_str!("../../../../www/admin/app.js");
const STYLE: &str = include_str!("../../../../www/admin/style.css");
const GLUE: &str = include_str!("../../../../www/pkg/granted_policy.js");

/// The page may load only its own scripts, styles and the module, and talk only to this server.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn file(content_type: &'static str, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    page_headers(
        &mut response,
        content_type,
        "no-cache",
        HeaderValue::from_static(CSP),
    );
    response
}

/// The page's routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route(
            "/admin/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/admin/app.js",
            get(|| async { file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/admin/style.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/admin/pkg/granted_policy.js",
            get(|| async { file("text/javascript; charset=utf-8", GLUE) }),
        )
        .route(
            "/admin/pkg/granted_policy_bg.wasm",
            get(|| async {
                file(
                    "application/wasm",
                    (StatusCode::OK, crate::guest::EMBEDDED_POLICY),
                )
            }),
        )
}
