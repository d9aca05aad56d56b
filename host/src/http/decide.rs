//! What every endpoint the module decides shares: the raw request as the module reads it, calls
//! into the module, record lookups (with the throttle), and the decision made durable and
//! answered.

use super::answer::{http_response, oauth_error};
use super::failure::Failure;
use crate::guest::{GuestError, Session};
use crate::service::Service;
use crate::store::{Applied, Job, ReadAhead};
use crate::throttle::{clip, Throttle};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use granted_policy::model::Timestamp;
use granted_policy::token::endpoint::{Audit, Decision, KdfOutput, Lookup, Records, ENTROPY_BYTES};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The raw request as the module reads it, or the response for an unreadable body.
#[allow(clippy::result_large_err)] // the error is the response itself, built once per request
pub(crate) fn raw_request(
    tenant: &str,
    method: &Method,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Value, Response> {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is over 64 KiB",
            ))
        }
        Err(_) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request body could not be read",
            ))
        }
    };
    Ok(json!({
        "method": method.as_str(),
        "tenant": tenant,
        "headers": headers
            .iter()
            .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
            .collect::<Vec<_>>(),
        "body_base64": STANDARD.encode(&body),
    }))
}

/// The input of `token_resume`: what the host adds after a step.
#[derive(Default, serde::Serialize)]
pub(crate) struct Resume {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) records: Option<Records>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kdf: Option<KdfOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) signature: Option<String>,
    /// The ID token's signature (`need_signature` with `purpose: id_token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id_token_signature: Option<String>,
    /// The output of a KDF step whose purpose is `rehash`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rehash_kdf: Option<KdfOutput>,
}

/// What the module is told besides the request: the time, the issuer, the token lifetimes, the
/// keys (the signing key by its id only: the host signs), fresh entropy and the settings it
/// applies.
pub(crate) fn token_context(
    server: &Service,
    at: Timestamp,
    keys: &crate::service::KeyRing,
) -> Result<Value, Failure> {
    let settings = &server.settings;
    let signing = &keys.signing;
    let entropy = crate::random::random_base64(ENTROPY_BYTES).map_err(Failure::Store)?;
    let mut context = json!({
        "now": at,
        "issuer": settings.issuer,
        "access_token_ttl": settings.access_token_ttl,
        "refresh_token_ttl": settings.refresh_token_ttl,
        "signing_key": {"kid": signing.kid(), "alg": signing.alg()},
        "client_secret_key": keys.client_secret_key,
        "kdf_iterations": settings.kdf_iterations,
        "lockout": settings.lockout,
        "entropy": entropy,
    });
    if let Some(sunset) = settings.sunset {
        context["sunset"] = json!(sunset);
    }
    Ok(context)
}

/// The module's answer to `entry`, read straight into `T` (the `ok` of its envelope).
pub(crate) fn call_as<T: DeserializeOwned>(
    session: &mut Session,
    entry: &str,
    input: &impl serde::Serialize,
) -> Result<T, Failure> {
    /// `{"ok": …}` or `{"error": …}`.
    #[derive(serde::Deserialize)]
    struct Envelope<T> {
        ok: Option<T>,
        error: Option<Value>,
    }
    let bytes = serde_json::to_vec(input).map_err(|e| Failure::Module(e.to_string()))?;
    let out = session.call(entry, &bytes)?;
    let envelope: Envelope<T> = serde_json::from_slice(&out).map_err(|e| {
        Failure::Guest(GuestError::BadOutput(format!(
            "not the expected answer: {e}"
        )))
    })?;
    match envelope {
        Envelope {
            error: Some(err), ..
        } => Err(Failure::Module(err.to_string())),
        Envelope { ok: Some(ok), .. } => Ok(ok),
        _ => Err(Failure::Guest(GuestError::BadOutput(
            "neither ok nor error".into(),
        ))),
    }
}

/// The records a `need_records` step asks for (`null` where nothing was found), or how long
/// this client and source must wait when failed authentications throttle them. On SQLite, on
/// the request's own thread: a few primary-key reads in one read transaction on a read-only
/// connection (WAL readers never wait for the writer), cheaper than handing the work to another
/// thread and back; the throttle is in memory. On PostgreSQL, on the blocking pool (its client
/// cannot run on the runtime's threads), the shared throttle read in the same snapshot.
///
/// `ahead` carries what one step read for the next ([`ReadAhead`]): a step that asks exactly
/// that is answered from it, with no read of its own (the shared throttle was read in that
/// snapshot); what the store reads ahead this time replaces it.
pub(crate) async fn records(
    server: &Service,
    lookup: Lookup,
    source: IpAddr,
    ahead: &mut Option<ReadAhead>,
) -> Result<std::result::Result<Records, Duration>, Failure> {
    let settings = &server.settings;
    if let Some(wait) = server
        .throttle
        .blocked_here(&lookup.client_id, source, settings)
    {
        return Ok(Err(wait));
    }
    if let Some(read) = ahead.take() {
        if read.lookup == lookup {
            return Ok(Ok(read.records));
        }
    }
    let store = server.store.clone();
    if !store.blocks_runtime() {
        let (found, next) = store.records_ahead(&lookup).map_err(Failure::Store)?;
        *ahead = next;
        return Ok(Ok(found));
    }
    let check = Throttle::check(&lookup.client_id, source, settings);
    let found =
        tokio::task::spawn_blocking(move || store.records_unless_throttled(&lookup, &check))
            .await
            .map_err(|e| Failure::Store(e.into()))?
            .map_err(Failure::Store)?;
    Ok(match found {
        Ok((found, next)) => {
            *ahead = next;
            Ok(found)
        }
        Err(ms) => Err(Duration::from_millis(ms.max(0) as u64)),
    })
}

/// Applies the decision's effects (durably) and answers; `None` when a concurrent request
/// consumed the same refresh token first.
pub(crate) async fn finish(
    server: &Arc<Service>,
    decision: Decision,
    at: Timestamp,
    kind: &str,
    source: IpAddr,
) -> Result<Option<Response>, Failure> {
    let Decision {
        response,
        audit,
        effects,
    } = decision;
    // What `record_decisions` keeps, taken before the effects go to the writer.
    let recorded = server
        .settings
        .record_decisions
        .then(|| json!({"audit": &audit, "effects": &effects}));
    let entry = audit_entry(server, &audit, at, kind, source);
    // A refusal before client authentication, after the first of its window from this source,
    // is counted in an aggregate entry instead (`refusals`): it changes nothing else.
    let counted = crate::refusals::before_client_auth(&audit.rule, &audit.decision)
        && effects.is_empty()
        && server.refusals.admit(
            source,
            &audit.rule,
            &audit.reason,
            at,
            std::time::Instant::now(),
        ) == crate::refusals::Admit::Counted;
    if !counted {
        let job = Job {
            effects,
            audits: vec![(kind.to_string(), entry.to_string())],
            now: at,
        };
        // Group commit: the answer goes out only once the effects and the audit entry are
        // durable.
        match server.committer.submit(job).await.map_err(Failure::Store)? {
            Applied::Done => {}
            Applied::RefreshRace | Applied::LockRace => return Ok(None),
            Applied::Failed(e) => return Err(Failure::Store(anyhow::anyhow!(e))),
        }
    }
    server.metrics.decision(
        kind,
        audit.grant_type.as_deref().unwrap_or(""),
        &audit.decision,
        &audit.reason,
        &audit.cause,
    );
    if let Some(recorded) = recorded {
        server.record_decision(recorded);
    }
    if counted {
        return Ok(Some(http_response(&response)));
    }
    log_decision(server, &audit, kind, source);
    Ok(Some(http_response(&response)))
}

/// The audit entry as stored and hashed: the module's record, where the request came from, and
/// which module decided.
pub(crate) fn audit_entry(
    server: &Service,
    audit: &Audit,
    at: Timestamp,
    kind: &str,
    source: IpAddr,
) -> Value {
    json!({
        "at": at,
        "kind": kind,
        "decision": audit.decision,
        "rule": audit.rule,
        "reason": audit.reason,
        "cause": audit.cause,
        "grant_type": audit.grant_type,
        "tenant": audit.tenant,
        "app_id": audit.app_id,
        "client_id": audit.client_id.as_deref().map(clip),
        "username": audit.username.as_deref().map(clip),
        "pinned_rev": audit.pinned_rev,
        "source": source.to_string(),
        "policy_sha256": server.policy_sha256(),
    })
}

/// The decision's line in the log (`granted::audit`; no secret, only the audit record's fields).
fn log_decision(server: &Service, audit: &Audit, kind: &str, source: IpAddr) {
    tracing::info!(
        target: "granted::audit",
        kind,
        decision = audit.decision.as_str(),
        rule = audit.rule.as_str(),
        reason = audit.reason.as_str(),
        cause = audit.cause.as_str(),
        grant_type = audit.grant_type.as_deref().unwrap_or_default(),
        tenant = audit.tenant.as_str(),
        client_id = audit.client_id.as_deref().unwrap_or_default(),
        username = audit.username.as_deref().unwrap_or_default(),
        source = %source,
        policy = server.policy_sha256(),
        "token decision"
    );
}

/// Counts a failed client or user authentication toward throttling.
pub(crate) fn note_failure(server: &Service, audit: &Audit, source: IpAddr) {
    if audit.decision != "denied"
        || !matches!(
            audit.reason.as_str(),
            "invalid_client" | "invalid_credentials"
        )
    {
        return;
    }
    // An unknown client's failures go to the source's shared bucket.
    let client_id = match audit.cause.as_str() {
        "unknown_client" | "unknown_tenant" => "",
        _ => audit.client_id.as_deref().unwrap_or_default(),
    };
    server.throttle.failed(client_id, source, &server.settings);
}

/// A fresh instance of the module once the pool has a slot for it; the permit holds the slot
/// (keep it alive longer than the instance).
pub(crate) async fn instance(
    server: &Service,
) -> Result<(tokio::sync::SemaphorePermit<'_>, Session), Failure> {
    let permit = server
        .sessions
        .acquire()
        .await
        .map_err(|_| Failure::Guest(GuestError::Busy))?;
    Ok((permit, server.guest.session()?))
}
