//! The token endpoint: one flow through the module per request (`token_start`, then
//! `token_resume` with the records, the KDF output or the access token's signature), its
//! decision made durable, then answered.

use super::answer::{throttled, unavailable};
use super::decide::{
    call_as, finish, instance, note_failure, raw_request, records, token_context, Resume,
};
use super::failure::{failed, Failure};
use super::source::admitted_source;
use crate::service::Service;
use crate::settings::now;
use crate::signing::ServerKey;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use granted_policy::credentials::kdf::KdfParams;
use granted_policy::token::endpoint::{KdfOutput, KdfPurpose, SignPurpose, SigningAlg, TokenStep};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// `POST /tenants/{tenant}/connect/token`.
pub(crate) async fn token(
    State(server): State<Arc<Service>>,
    Path(tenant): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let source = match admitted_source(&server, peer, &headers) {
        Ok(source) => source,
        Err(wait) => return throttled(wait),
    };
    let request = match raw_request(&tenant, &method, &headers, body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    // A refresh token consumed by a concurrent request between lookup and write: decide again,
    // now that the store shows it used (the module then answers reuse).
    for _ in 0..2 {
        match decide(&server, &request, source).await {
            Ok(Some(response)) => return response,
            Ok(None) => continue,
            Err(failure) => return failed(&server, &failure),
        }
    }
    unavailable("the request could not be decided; try again")
}

/// One request through the module; `None` when it must be decided again.
async fn decide(
    server: &Arc<Service>,
    request: &Value,
    source: IpAddr,
) -> Result<Option<Response>, Failure> {
    let settings = &server.settings;
    let at = now(settings).map_err(Failure::Clock)?;
    let keys = server.keys().await.map_err(Failure::Store)?;
    let signing = &keys.signing;
    let context = token_context(server, at, &keys)?;
    let input = json!({"request": request, "context": context});
    let (_slot, mut session) = instance(server).await?;
    let mut step: TokenStep = call_as(&mut session, "token_start", &input)?;
    let mut ahead = None;
    for _ in 0..6 {
        let more = match step {
            TokenStep::NeedRecords { lookup } => {
                let found = match records(server, lookup, source, &mut ahead).await? {
                    Ok(found) => found,
                    Err(wait) => {
                        server.metrics.throttled();
                        return Ok(Some(throttled(wait)));
                    }
                };
                Resume {
                    records: Some(found),
                    ..Resume::default()
                }
            }
            TokenStep::NeedKdf {
                kdf,
                password,
                purpose,
            } => kdf_resume(server, kdf, password, purpose).await?,
            TokenStep::NeedSignature {
                alg,
                kid,
                signing_input,
                purpose,
            } => signature_resume(signing, alg, &kid, &signing_input, purpose)?,
            TokenStep::NeedVerification { .. } => {
                return Err(Failure::Module(
                    "the token endpoint asked to verify a signature".into(),
                ))
            }
            TokenStep::Done(decision) => {
                server.note_memory(&session);
                note_failure(server, &decision.audit, source);
                if crate::refusals::before_client_auth(
                    &decision.audit.rule,
                    &decision.audit.decision,
                ) {
                    server.throttle.refused_before_auth(source, settings);
                }
                return finish(server, *decision, at, "token", source).await;
            }
        };
        step = call_as(&mut session, "token_resume", &more)?;
    }
    Err(Failure::Module(
        "the module did not finish in 6 steps".into(),
    ))
}

/// The KDF the module asked for, run on the KDF threads, as the input it goes to.
async fn kdf_resume(
    server: &Service,
    kdf: KdfParams,
    password: String,
    purpose: KdfPurpose,
) -> Result<Resume, Failure> {
    let derived = server.kdf.run(kdf, password).await?;
    let output = Some(KdfOutput {
        derived: STANDARD.encode(derived),
    });
    Ok(match purpose {
        KdfPurpose::Verify => Resume {
            kdf: output,
            ..Resume::default()
        },
        KdfPurpose::Rehash => Resume {
            rehash_kdf: output,
            ..Resume::default()
        },
    })
}

/// The signature the module asked for, by the server's current key, as the input it goes to.
fn signature_resume(
    signing: &ServerKey,
    alg: SigningAlg,
    kid: &str,
    signing_input: &str,
    purpose: SignPurpose,
) -> Result<Resume, Failure> {
    // The module asks for the key it was given: anything else is its bug.
    if kid != signing.kid() || alg != signing.alg() {
        return Err(Failure::Module(format!(
            "the module asked for a signature by key `{kid}`"
        )));
    }
    let signature = signing
        .sign(signing_input.as_bytes())
        .map_err(Failure::Signing)?;
    let signature = Some(URL_SAFE_NO_PAD.encode(signature));
    Ok(match purpose {
        SignPurpose::AccessToken => Resume {
            signature,
            ..Resume::default()
        },
        SignPurpose::IdToken => Resume {
            id_token_signature: signature,
            ..Resume::default()
        },
    })
}
