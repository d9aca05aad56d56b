//! Token revocation (RFC 7009) and introspection (RFC 7662), client-authenticated, as step
//! functions like the token endpoint's: `need_records`, for an access token `need_verification`
//! (the host checks its signature: the module holds no key), then `done`.
//!
//! The client authenticates as at the token endpoint (T3: a known tenant, a known client whose
//! app the tenant installed at a revision naming this `client_id`, the right secret). A client
//! sees and revokes only its own tokens in this tenant; anything else is `{"active": false}` or
//! a 200 that changes nothing (RFC 7009 §2.2). Access tokens are self-contained JWTs and cannot be
//! revoked before they expire; revoking a refresh token revokes its whole family.

use super::judge::{settle, End, Verdict, INVALID_CLIENT};
use super::jwt::{self, SigningAlg};
use super::request::{self, AuthMethod, ClientForm, HttpRequest};
use super::response::{self, HttpResponse};
use super::steps::{refresh_token_sha256, Audit, Decision, Effect, Lookup, Records, TokenStep};
use crate::credentials::client_secret::verify_client_secret;
use crate::error::PolicyError;
use crate::model::{ClientRecord, RefreshStatus, RefreshTokenRecord, TenantRecord, Timestamp};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

/// A key that may have signed an access token still in its lifetime: its id and algorithm (the
/// host holds the key and checks signatures when asked).
#[derive(Clone, Deserialize)]
pub struct VerificationKey {
    /// Its `kid`.
    pub kid: String,
    /// Its algorithm: a token whose header names another is not its.
    pub alg: SigningAlg,
}

/// What the host hands in besides the request.
#[derive(Clone, Deserialize)]
pub struct ManageContext {
    /// The instant the request is judged at.
    pub now: Timestamp,
    /// The server key client secrets are HMACed under, base64.
    pub client_secret_key: String,
    /// Keys that verify access tokens (introspection).
    #[serde(default)]
    pub verification_keys: Vec<VerificationKey>,
}

/// The input of `revocation` and `introspection`.
#[derive(Clone, Deserialize)]
pub struct ManageInput {
    /// The raw request.
    pub request: HttpRequest,
    /// Time and keys.
    pub context: ManageContext,
    /// Records looked up so far.
    #[serde(default)]
    pub records: Records,
    /// The host's answer to `need_verification`: the access token's signature is valid.
    #[serde(default)]
    pub signature_valid: Option<bool>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Revocation,
    Introspection,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Revocation => "revocation",
            Endpoint::Introspection => "introspection",
        }
    }
}

/// One step of the revocation endpoint.
pub fn revocation(input: &ManageInput) -> Result<TokenStep, PolicyError> {
    step(input, Endpoint::Revocation)
}

/// One step of the introspection endpoint.
pub fn introspection(input: &ManageInput) -> Result<TokenStep, PolicyError> {
    step(input, Endpoint::Introspection)
}

fn audit(
    http: &HttpRequest,
    form: Option<&ClientForm>,
    decision: &str,
    reason: &str,
    cause: &str,
    endpoint: Endpoint,
) -> Audit {
    Audit {
        decision: decision.into(),
        rule: endpoint.name().into(),
        reason: reason.into(),
        cause: cause.into(),
        grant_type: None,
        tenant: http.tenant.clone(),
        app_id: None,
        client_id: form.and_then(|f| f.client_id.clone()),
        username: None,
        pinned_rev: None,
    }
}

#[allow(clippy::too_many_arguments)] // one place builds every refusal
fn deny(
    http: &HttpRequest,
    form: Option<&ClientForm>,
    endpoint: Endpoint,
    status: u16,
    error: &str,
    description: &str,
    cause: &str,
    basic: bool,
) -> TokenStep {
    TokenStep::Done(Box::new(Decision {
        response: response::error(status, error, description, status == 401 && basic),
        audit: audit(http, form, "denied", error, cause, endpoint),
        effects: Vec::new(),
    }))
}

fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// One step of either endpoint: the request well formed, the records looked up, the client
/// authenticated (T3), then the endpoint's own answer.
fn step(input: &ManageInput, endpoint: Endpoint) -> Result<TokenStep, PolicyError> {
    settle(judge_manage(input, endpoint))
}

/// The request as far as it got: who asked, through which endpoint, with which form.
struct Call<'a> {
    http: &'a HttpRequest,
    form: &'a ClientForm,
    endpoint: Endpoint,
}

impl Call<'_> {
    /// T3's answer, whatever the cause: the client learns nothing about which part failed.
    fn deny_client(&self, cause: &str) -> TokenStep {
        deny(
            self.http,
            Some(self.form),
            self.endpoint,
            401,
            "invalid_client",
            INVALID_CLIENT,
            cause,
            self.form.auth == AuthMethod::Basic,
        )
    }

    /// The endpoint's answer, audited under its name.
    fn done(
        &self,
        response: HttpResponse,
        decision: &str,
        cause: &str,
        effects: Vec<Effect>,
    ) -> TokenStep {
        TokenStep::Done(Box::new(Decision {
            response,
            audit: audit(
                self.http,
                Some(self.form),
                decision,
                self.endpoint.name(),
                cause,
                self.endpoint,
            ),
            effects,
        }))
    }
}

/// The phases of [`step`] in order; each goes on or ends the request.
fn judge_manage(input: &ManageInput, endpoint: Endpoint) -> Verdict<TokenStep> {
    let http = &input.request;
    let key = STANDARD
        .decode(input.context.client_secret_key.as_bytes())
        .map_err(|_| {
            PolicyError::InvalidInput("`context.client_secret_key` is not base64".into())
        })?;
    let form = well_formed(http, endpoint)?;
    let call = Call {
        http,
        form: &form,
        endpoint,
    };
    let (Some(client_id), Some(secret)) = (&form.client_id, &form.client_secret) else {
        return Err(call.deny_client("missing_client_credentials").into());
    };
    let token = form.first.as_str();
    let refresh_hash = (!looks_like_jwt(token)).then(|| refresh_token_sha256(token));
    let (tenant, client, refresh) = looked_up(input, client_id, &refresh_hash)?;
    authenticated(&call, &key, tenant, client, client_id, secret)?;
    // The client's own refresh token in this tenant, if that is what was sent.
    let own_refresh = refresh.filter(|r| {
        Some(&r.token_sha256) == refresh_hash.as_ref()
            && r.tenant == http.tenant
            && r.client_id == *client_id
    });
    match endpoint {
        Endpoint::Revocation => Ok(revoke(&call, own_refresh)),
        Endpoint::Introspection => {
            let active = match own_refresh {
                Some(r) => refresh_claims(r, input.context.now),
                None if refresh_hash.is_none() => access_claims(input, token, client_id)?,
                None => None,
            };
            let cause = if active.is_some() {
                "active"
            } else {
                "inactive"
            };
            let body = active.unwrap_or_else(|| json!({"active": false}));
            Ok(call.done(
                response::json_ok(Some(&body)),
                "answered",
                cause,
                Vec::new(),
            ))
        }
    }
}

/// The client's form, or `invalid_request`.
fn well_formed(http: &HttpRequest, endpoint: Endpoint) -> Verdict<ClientForm> {
    let endpoint_label = format!("{} endpoint", endpoint.name());
    let parsed = request::parse_client_form(http, &endpoint_label, "token")
        .map_err(|_| PolicyError::InvalidInput("`request.body_base64` is not base64".into()))?;
    parsed.map_err(|malformed| {
        End::step(deny(
            http,
            None,
            endpoint,
            400,
            "invalid_request",
            &malformed.description,
            "malformed_request",
            malformed.basic_attempted,
        ))
    })
}

/// The tenant, the client and the refresh token sent (`Some(None)`: it is not one, or was not
/// found), once the host has looked them up; until then, the step that asks for them.
fn looked_up<'a>(
    input: &'a ManageInput,
    client_id: &str,
    refresh_hash: &Option<String>,
) -> Verdict<(
    Option<&'a TenantRecord>,
    Option<&'a ClientRecord>,
    Option<&'a RefreshTokenRecord>,
)> {
    let http = &input.request;
    let records = &input.records;
    let refresh = match (refresh_hash, &records.refresh_token) {
        (Some(_), None) => None,
        (Some(_), Some(found)) => Some(found.as_ref()),
        (None, _) => Some(None),
    };
    let (Some(tenant), Some(client), Some(refresh)) = (&records.tenant, &records.client, refresh)
    else {
        return Err(End::step(TokenStep::NeedRecords {
            lookup: Lookup {
                tenant: http.tenant.clone(),
                client_id: client_id.to_string(),
                username: None,
                refresh_token_sha256: refresh_hash.clone(),
                code_sha256: None,
                consent_app_id: None,
                subject: None,
            },
        }));
    };
    let tenant = tenant.as_ref().filter(|t| t.tenant == http.tenant);
    let client = client.as_ref().filter(|c| c.client_id == *client_id);
    Ok((tenant, client, refresh))
}

/// T3, as at the token endpoint: the secret is checked whatever else is found.
fn authenticated(
    call: &Call<'_>,
    key: &[u8],
    tenant: Option<&TenantRecord>,
    client: Option<&ClientRecord>,
    client_id: &str,
    secret: &str,
) -> Verdict<()> {
    let secret_ok = verify_client_secret(key, secret, client.map(|c| c.secret_hmac.as_str()));
    let installed = match (tenant, client) {
        (Some(t), Some(c)) => t.installs.iter().any(|i| {
            i.app_id == c.app.app_id
                && c.app
                    .revision(i.rev)
                    .is_some_and(|(_, r)| r.client_id == *client_id)
        }),
        _ => false,
    };
    if secret_ok && installed {
        return Ok(());
    }
    let cause = match (tenant, client, secret_ok) {
        (None, _, _) => "unknown_tenant",
        (_, None, _) => "unknown_client",
        (_, _, false) => "wrong_client_secret",
        _ => "client_not_installed",
    };
    Err(call.deny_client(cause).into())
}

/// RFC 7009: the client's own active refresh token revokes its family; anything else is a 200
/// that changes nothing.
fn revoke(call: &Call<'_>, own_refresh: Option<&RefreshTokenRecord>) -> TokenStep {
    match own_refresh {
        Some(r) if r.status == RefreshStatus::Active => call.done(
            response::json_ok(None),
            "revoked",
            "refresh_family_revoked",
            vec![Effect::RevokeRefreshFamily {
                family_id: r.family_id.clone(),
            }],
        ),
        _ => call.done(
            response::json_ok(None),
            "ignored",
            "unknown_or_inactive_token",
            Vec::new(),
        ),
    }
}

/// RFC 7662 for the client's own refresh token: its claims while it is active and unexpired.
fn refresh_claims(r: &RefreshTokenRecord, now: Timestamp) -> Option<serde_json::Value> {
    (r.status == RefreshStatus::Active && now < r.expires_at).then(|| {
        json!({
            "active": true,
            "token_type": "refresh_token",
            "client_id": r.client_id,
            "username": r.username,
            "scope": r.scope,
            "iat": r.issued_at.unix(),
            "exp": r.expires_at.unix(),
        })
    })
}

/// RFC 7662 for an access token: ours, live, this client's in this tenant, signed by a key that
/// may still verify under its own algorithm; only then is the host asked to check it.
fn access_claims(
    input: &ManageInput,
    token: &str,
    client_id: &str,
) -> Verdict<Option<serde_json::Value>> {
    let ctx = &input.context;
    let now = ctx.now.unix();
    let candidate = jwt::parse(token).filter(|t| {
        let c = &t.claims;
        c.tenant == input.request.tenant
            && c.client_id == *client_id
            && now < c.exp
            && ctx
                .verification_keys
                .iter()
                .any(|k| k.kid == t.kid && k.alg == t.alg)
    });
    match (candidate, input.signature_valid) {
        (Some(t), None) => Err(End::step(TokenStep::NeedVerification {
            alg: t.alg,
            kid: t.kid,
            signing_input: t.signing_input,
            signature: t.signature,
        })),
        (Some(t), Some(true)) => {
            let c = t.claims;
            Ok(Some(json!({
                "active": true,
                "token_type": "Bearer",
                "client_id": c.client_id,
                "sub": c.sub,
                "scope": c.scope,
                "iss": c.iss,
                "aud": c.aud,
                "iat": c.iat,
                "exp": c.exp,
                "jti": c.jti,
            })))
        }
        _ => Ok(None),
    }
}
