//! Revocation (RFC 7009), introspection (RFC 7662) and UserInfo (OpenID Connect Core §5.3):
//! stateless module calls, with the records the module asks for looked up between them.

use super::answer::throttled;
use super::decide::{call_as, finish, instance, note_failure, raw_request, records};
use super::failure::{failed, Failure};
use super::source::source_address;
use crate::service::Service;
use crate::settings::now;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::any;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use granted_policy::token::endpoint::{Decision, Lookup};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The route of revocation or introspection: the module's `entry` point decides.
pub(crate) fn manage_route(entry: &'static str) -> axum::routing::MethodRouter<Arc<Service>> {
    any(
        move |State(server): State<Arc<Service>>,
              Path(tenant): Path<String>,
              ConnectInfo(peer): ConnectInfo<SocketAddr>,
              method: Method,
              headers: HeaderMap,
              body: Result<Bytes, axum::extract::rejection::BytesRejection>| async move {
            let source = source_address(&server.settings, peer, &headers);
            manage(&server, entry, &tenant, source, &method, &headers, body).await
        },
    )
}

/// Revocation and introspection: stateless module calls, records looked up between them.
async fn manage(
    server: &Arc<Service>,
    entry: &str,
    tenant: &str,
    source: IpAddr,
    method: &Method,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let request = match raw_request(tenant, method, headers, body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match decide_manage(server, entry, request, source).await {
        Ok(response) => response,
        Err(failure) => failed(server, &failure),
    }
}

async fn decide_manage(
    server: &Arc<Service>,
    entry: &str,
    request: Value,
    source: IpAddr,
) -> Result<Response, Failure> {
    let at = now(&server.settings).map_err(Failure::Clock)?;
    let keys = server.keys().await.map_err(Failure::Store)?;
    let verification_keys: Vec<Value> = keys
        .published
        .iter()
        .map(|k| json!({"kid": k.kid(), "alg": k.alg()}))
        .collect();
    let mut input = json!({
        "request": request,
        "context": {
            "now": at,
            "client_secret_key": keys.client_secret_key,
            "verification_keys": verification_keys,
        },
        "records": {},
    });
    let (_slot, mut session) = instance(server).await?;
    let mut ahead = None;
    for _ in 0..4 {
        let step: Value = call_as(&mut session, entry, &input)?;
        match step["step"].as_str() {
            Some("need_records") => {
                let lookup: Lookup = serde_json::from_value(step["lookup"].clone())
                    .map_err(|e| Failure::Module(format!("lookup: {e}")))?;
                let found = match records(server, lookup, source, &mut ahead).await? {
                    Ok(found) => found,
                    Err(wait) => {
                        server.metrics.throttled();
                        return Ok(throttled(wait));
                    }
                };
                input["records"] =
                    serde_json::to_value(found).map_err(|e| Failure::Module(e.to_string()))?;
            }
            Some("need_verification") => {
                // The module names a published key of the token's algorithm; the host checks
                // the signature with it and says only whether it holds.
                let valid = (|| {
                    let alg = serde_json::from_value(step["alg"].clone()).ok()?;
                    let key = keys.published(step["kid"].as_str()?, alg)?;
                    let signature = URL_SAFE_NO_PAD.decode(step["signature"].as_str()?).ok()?;
                    Some(key.verify(step["signing_input"].as_str()?.as_bytes(), &signature))
                })()
                .unwrap_or(false);
                input["signature_valid"] = json!(valid);
            }
            Some("done") => {
                server.note_memory(&session);
                let decision: Decision = serde_json::from_value(step)
                    .map_err(|e| Failure::Module(format!("decision: {e}")))?;
                note_failure(server, &decision.audit, source);
                return finish(server, decision, at, entry, source)
                    .await?
                    .ok_or_else(|| {
                        Failure::Module("a refresh race outside the token endpoint".into())
                    });
            }
            _ => return Err(Failure::Module(format!("unknown step {}", step["step"]))),
        }
    }
    Err(Failure::Module(
        "the module did not finish in 4 steps".into(),
    ))
}
