//! The ceiling of `cargo xtask bench`: a minimal axum server that answers every request with a
//! fixed JSON body, on the same runtime settings as `granted serve`. Nothing can answer faster
//! through axum on this machine.
//!
//! `cargo run --release --example ceiling -- 127.0.0.1:PORT`

use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;

const BODY: &str = r#"{"access_token":"eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl","token_type":"Bearer","expires_in":3600,"scope":"read"}"#;

fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Router::new().fallback(any(|| async {
            (
                [
                    ("content-type", "application/json"),
                    ("cache-control", "no-store"),
                ],
                BODY,
            )
                .into_response()
        }));
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        eprintln!("ceiling: listening on http://{listen}");
        axum::serve(listener, app).await?;
        Ok(())
    })
}
