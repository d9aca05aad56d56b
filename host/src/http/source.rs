//! Where a request came from: the TCP peer, or a trusted proxy's header.

use crate::service::Service;
use crate::settings::ServerSettings;
use axum::http::HeaderMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The request's source ([`source_address`]), or, when that source is over its limit of requests
/// refused before client authentication, how long it must wait (counted as throttled).
pub(crate) fn admitted_source(
    server: &Service,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<IpAddr, Duration> {
    let source = source_address(&server.settings, peer, headers);
    match server.throttle.source_blocked(source, &server.settings) {
        Some(wait) => {
            server.metrics.throttled();
            Err(wait)
        }
        None => Ok(source),
    }
}

/// The request's source: the trusted proxy's header when one is configured and present (its last
/// entry, the one that proxy added), else the TCP peer.
pub(crate) fn source_address(
    settings: &ServerSettings,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> IpAddr {
    settings
        .trusted_proxy_header
        .as_deref()
        .and_then(|name| headers.get_all(name).iter().next_back())
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or_else(|| peer.ip())
}
