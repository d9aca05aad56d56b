//! The authorization endpoint, `GET`/`POST /tenants/{tenant}/connect/authorize` (RULES.md §5,
//! C1–C12): the module judges the request and every form posted on its pages; the host keeps
//! the transaction (a MACed cookie), checks the forms' CSRF token, looks up records, runs the
//! KDF, makes the effects and audit entries durable in one transaction, and renders the page
//! the module names.

mod render;
mod transaction;

use super::decide::{audit_entry, call_as, instance, note_failure, records, token_context};
use super::failure::{failed, Failure};
use super::source::admitted_source;
use crate::service::Service;
use crate::settings::now;
use crate::store::{Applied, Job};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use granted_policy::authorize::{
    Action, AuthorizationStep, AuthorizeRequest, Page, PageDecision, SignedIn,
};
use granted_policy::model::Timestamp;
use granted_policy::token::endpoint::{KdfOutput, KdfPurpose, Records, Step};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use transaction::{Transaction, TransactionKey};

pub(crate) use render::{style, STYLE_PATH};
pub use transaction::COOKIE;

/// The route of `/tenants/{tenant}/connect/authorize`.
pub(crate) fn route() -> MethodRouter<Arc<Service>> {
    get(authorize).post(authorize)
}

/// The audit log's kind for the authorization endpoint's decisions.
const KIND: &str = "authorization";

/// What one request to the endpoint is.
struct Visit {
    tenant: String,
    /// The raw query (the authorization request), as sent.
    query: String,
    /// The endpoint's path (the cookie's path).
    path: String,
    source: IpAddr,
    at: Timestamp,
}

/// `GET` opens the authorization URL (a new transaction); `POST` answers one of its pages.
async fn authorize(
    State(server): State<Arc<Service>>,
    Path(tenant): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let source = match admitted_source(&server, peer, &headers) {
        Ok(source) => source,
        Err(wait) => return too_many(wait),
    };
    let at = match now(&server.settings) {
        Ok(at) => at,
        Err(e) => return page_failed(&server, &Failure::Clock(e)),
    };
    let visit = Visit {
        path: format!("/tenants/{tenant}/connect/authorize"),
        tenant,
        query: query.unwrap_or_default(),
        source,
        at,
    };
    let keys = match server.keys().await {
        Ok(keys) => keys,
        Err(e) => return page_failed(&server, &Failure::Store(e)),
    };
    let key = TransactionKey::derive(&keys.client_secret_key);
    let (action, tx) = if method == Method::POST {
        match posted(&visit, &key, &headers, body) {
            Ok(posted) => posted,
            Err(response) => return response,
        }
    } else if method == Method::GET {
        match new_transaction(&visit) {
            Ok(tx) => (Action::Authorize, tx),
            Err(e) => return page_failed(&server, &Failure::Store(e)),
        }
    } else {
        let mut response = render::error(
            StatusCode::METHOD_NOT_ALLOWED,
            Some("invalid_request"),
            "The authorization endpoint takes GET and, from its own pages, POST.",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return response;
    };
    // A lock set meanwhile by a concurrent failure: decide again (the module then sees it).
    for _ in 0..2 {
        match decide(&server, &visit, &action, tx.signed_in.clone()).await {
            Ok(Outcome::Decided(decision)) => return answer(&server, &visit, &key, tx, *decision),
            Ok(Outcome::Again) => continue,
            Ok(Outcome::Throttled(wait)) => {
                server.metrics.throttled();
                return too_many(wait);
            }
            Err(failure) => return page_failed(&server, &failure),
        }
    }
    page_failed(
        &server,
        &Failure::Store(anyhow::anyhow!("the sign-in could not be decided")),
    )
}

/// A new transaction for the authorization request, nobody signed in.
fn new_transaction(visit: &Visit) -> anyhow::Result<Transaction> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    Ok(Transaction {
        id: URL_SAFE_NO_PAD.encode(crate::random::random_bytes(16)?),
        request: transaction::request_digest(&visit.query),
        expires: visit.at.unix() + transaction::LIFETIME_SECONDS,
        signed_in: None,
    })
}

/// The action a form posted, in its transaction: refused (403, nothing decided, nothing
/// stored) unless the transaction cookie is this request's and still valid, and the form
/// carries its CSRF token. A cross-site post carries neither.
#[allow(clippy::result_large_err)] // the error is the response itself
fn posted(
    visit: &Visit,
    key: &TransactionKey,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(Action, Transaction), Response> {
    let forbidden = |why: &str| {
        tracing::info!(
            target: "granted::audit",
            kind = KIND,
            tenant = visit.tenant.as_str(),
            source = %visit.source,
            "a form post was refused: {why}"
        );
        render::error(
            StatusCode::FORBIDDEN,
            Some("invalid_request"),
            "This form has expired or did not come from this sign-in. Open the app's sign-in link again.",
        )
    };
    let body = body.map_err(|_| {
        render::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("invalid_request"),
            "The form could not be read.",
        )
    })?;
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| -> Option<String> {
        let mut values = form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone());
        let first = values.next();
        // A repeated field is not a form this server rendered.
        if values.next().is_some() {
            return None;
        }
        first
    };
    let tx = transaction::cookie_value(headers)
        .and_then(|value| key.open(&value, visit.at.unix()))
        .ok_or_else(|| forbidden("no valid transaction cookie"))?;
    if tx.request != transaction::request_digest(&visit.query) {
        return Err(forbidden("the transaction belongs to another request"));
    }
    let csrf = field("csrf").unwrap_or_default();
    if !key.csrf_holds(&tx.id, &csrf) {
        return Err(forbidden("the CSRF token is missing or wrong"));
    }
    let bad_form = || {
        render::error(
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            "The form was not one this page sends.",
        )
    };
    let action = match field("action").as_deref() {
        Some("sign_in") => Action::SignIn {
            username: field("username").ok_or_else(bad_form)?,
            password: field("password").ok_or_else(bad_form)?,
        },
        Some("change_password") => Action::ChangePassword {
            new_password: field("new_password").ok_or_else(bad_form)?,
            confirm_password: field("confirm_password").ok_or_else(bad_form)?,
        },
        Some("consent") => Action::Consent {
            approve: match field("approve").as_deref() {
                Some("yes") => true,
                Some("no") => false,
                _ => return Err(bad_form()),
            },
        },
        _ => return Err(bad_form()),
    };
    Ok((action, tx))
}

/// How an action ended.
enum Outcome {
    /// Decided, and its effects durable.
    Decided(Box<PageDecision>),
    /// A concurrent change undid it: decide again.
    Again,
    /// Failed authentications from this source and client: wait this long.
    Throttled(std::time::Duration),
}

/// One action through the module, its decision made durable.
async fn decide(
    server: &Arc<Service>,
    visit: &Visit,
    action: &Action,
    signed_in: Option<SignedIn>,
) -> Result<Outcome, Failure> {
    let keys = server.keys().await.map_err(Failure::Store)?;
    let context = token_context(server, visit.at, &keys)?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(visit.query.as_bytes())
        .into_owned()
        .collect();
    let request = AuthorizeRequest {
        tenant: visit.tenant.clone(),
        query: pairs,
    };
    let mut input = json!({
        "request": request,
        "action": action,
        "signed_in": signed_in,
        "context": context,
    });
    let (_slot, mut session) = instance(server).await?;
    let mut found = Records::default();
    let mut ahead = None;
    for _ in 0..6 {
        let step: AuthorizationStep = call_as(&mut session, "authorization", &input)?;
        match step {
            Step::NeedRecords { lookup } => {
                let more = match records(server, lookup, visit.source, &mut ahead).await? {
                    Ok(more) => more,
                    Err(wait) => return Ok(Outcome::Throttled(wait)),
                };
                found = merge(found, more);
                input["records"] =
                    serde_json::to_value(&found).map_err(|e| Failure::Module(e.to_string()))?;
            }
            Step::NeedKdf {
                kdf,
                password,
                purpose,
            } => {
                let derived = server.kdf.run(kdf, password).await?;
                let output = KdfOutput {
                    derived: STANDARD.encode(derived),
                };
                let slot = match purpose {
                    KdfPurpose::Verify => "kdf",
                    KdfPurpose::Rehash => "rehash_kdf",
                };
                input[slot] =
                    serde_json::to_value(output).map_err(|e| Failure::Module(e.to_string()))?;
            }
            Step::NeedSignature { .. } | Step::NeedVerification { .. } => {
                return Err(Failure::Module(
                    "the authorization endpoint asked for a signature".into(),
                ))
            }
            Step::Done(decision) => {
                server.note_memory(&session);
                note_failure(server, &decision.audit, visit.source);
                return commit(server, visit, *decision).await;
            }
        }
    }
    Err(Failure::Module(
        "the module did not finish in 6 steps".into(),
    ))
}

/// Records found so far, with those of a later lookup added.
fn merge(mut found: Records, more: Records) -> Records {
    found.tenant = more.tenant.or(found.tenant);
    found.client = more.client.or(found.client);
    found.user = more.user.or(found.user);
    found.code = more.code.or(found.code);
    found.consent = more.consent.or(found.consent);
    found.refresh_token = more.refresh_token.or(found.refresh_token);
    found
}

/// Applies the decision's effects with its audit entries (a page shown on the way, `pending`
/// with nothing to apply, is only logged).
async fn commit(
    server: &Arc<Service>,
    visit: &Visit,
    decision: PageDecision,
) -> Result<Outcome, Failure> {
    let audits: Vec<(String, String)> = decision
        .earlier
        .iter()
        .chain(std::iter::once(&decision.audit))
        .filter(|audit| audit.decision != "pending")
        .map(|audit| {
            let entry = audit_entry(server, audit, visit.at, KIND, visit.source);
            (KIND.to_string(), entry.to_string())
        })
        .collect();
    // What `record_decisions` keeps (tests compare it with the vectors), before the writer.
    let recorded = server.settings.record_decisions.then(|| {
        json!({
            "page": &decision.page,
            "audit": &decision.audit,
            "earlier": &decision.earlier,
            "effects": &decision.effects,
            "signed_in": &decision.signed_in,
        })
    });
    if !audits.is_empty() || !decision.effects.is_empty() {
        let job = Job {
            effects: decision.effects.clone(),
            audits,
            now: visit.at,
        };
        match server.committer.submit(job).await.map_err(Failure::Store)? {
            Applied::Done => {}
            Applied::RefreshRace | Applied::LockRace => return Ok(Outcome::Again),
            Applied::Failed(e) => return Err(Failure::Store(anyhow::anyhow!(e))),
        }
    }
    if let Some(recorded) = recorded {
        server.record_decision(recorded);
    }
    for audit in decision
        .earlier
        .iter()
        .chain(std::iter::once(&decision.audit))
    {
        server.metrics.decision(
            KIND,
            "authorization_code",
            &audit.decision,
            &audit.reason,
            &audit.cause,
        );
        tracing::info!(
            target: "granted::audit",
            kind = KIND,
            decision = audit.decision.as_str(),
            rule = audit.rule.as_str(),
            reason = audit.reason.as_str(),
            cause = audit.cause.as_str(),
            tenant = audit.tenant.as_str(),
            client_id = audit.client_id.as_deref().unwrap_or_default(),
            username = audit.username.as_deref().unwrap_or_default(),
            source = %visit.source,
            policy = server.policy_sha256(),
            "authorization decision"
        );
    }
    Ok(Outcome::Decided(Box::new(decision)))
}

/// The page the module named, with the transaction as it now stands.
fn answer(
    server: &Service,
    visit: &Visit,
    key: &TransactionKey,
    mut tx: Transaction,
    decision: PageDecision,
) -> Response {
    let secure = server.settings.issuer.starts_with("https://");
    tx.signed_in = decision.signed_in;
    let csrf = key.csrf(&tx.id);
    let action = if visit.query.is_empty() {
        visit.path.clone()
    } else {
        format!("{}?{}", visit.path, visit.query)
    };
    let form = render::Form {
        action: &action,
        csrf: &csrf,
    };
    let (mut response, keep) = match &decision.page {
        Page::Error {
            status,
            error,
            description,
        } => (
            render::error(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                Some(error),
                description,
            ),
            false,
        ),
        Page::Redirect { location } => match HeaderValue::from_str(location) {
            Ok(location) => {
                let mut response = StatusCode::SEE_OTHER.into_response();
                response.headers_mut().insert(header::LOCATION, location);
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                (response, false)
            }
            Err(_) => (
                page_failed(
                    server,
                    &Failure::Module("the module's redirect is not a header value".into()),
                ),
                false,
            ),
        },
        Page::SignIn { client, message } => {
            (render::sign_in(client, message.as_deref(), &form), true)
        }
        Page::ChangePassword {
            client,
            username,
            message,
        } => (
            render::change_password(client, username, message.as_deref(), &form),
            true,
        ),
        Page::Consent { client, username } => (render::consent(client, username, &form), true),
    };
    let cookie = if keep {
        let max_age = (tx.expires - visit.at.unix()).max(0);
        transaction::set_cookie(&visit.path, &key.seal(&tx), max_age, secure)
    } else {
        transaction::set_cookie(&visit.path, "", 0, secure)
    };
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Too many failures from this source: the sign-in page cannot be used for a while.
fn too_many(wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    let mut response = render::error(
        StatusCode::TOO_MANY_REQUESTS,
        Some("temporarily_unavailable"),
        &format!("Too many attempts. Wait {seconds} seconds, then try again."),
    );
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A failure as a page: counted and logged as the token endpoint does, shown with its status.
fn page_failed(server: &Service, failure: &Failure) -> Response {
    let status = failed(server, failure).status();
    render::error(
        status,
        None,
        "The sign-in could not go on just now. Try again shortly.",
    )
}
