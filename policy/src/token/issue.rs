//! T9's success: the access token's signing input handed to the host to sign
//! (`need_signature`), then the token, the refresh token minted and its record to store.

use super::judge::Judge;
use super::jwt::{self, AccessClaims, IdClaims};
use super::response::{self, TokenBody};
use super::steps::{
    refresh_token_sha256, Decision, Effect, Keys, SignPurpose, TokenContext, TokenStep,
};
use crate::error::PolicyError;
use crate::model::{GrantType, RefreshStatus, RefreshTokenRecord, TenantRecord};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

pub(super) struct IssueArgs<'a> {
    pub(super) judge: &'a Judge<'a>,
    pub(super) ctx: &'a TokenContext,
    pub(super) keys: &'a Keys,
    /// The host's signature over the signing input, once it made it (base64url).
    pub(super) signature: Option<&'a str>,
    pub(super) tenant: &'a TenantRecord,
    pub(super) client_id: &'a str,
    pub(super) subject: &'a str,
    pub(super) scope: &'a str,
    /// For grants that issue a refresh token: the pinned grant type and the family to continue.
    pub(super) refresh: Option<(GrantType, Option<String>)>,
    pub(super) username: Option<String>,
    pub(super) effects: Vec<Effect>,
    /// For the code exchange with `openid` in the scope: what the ID token says of the sign-in.
    pub(super) id_token: Option<IdTokenArgs<'a>>,
    /// The host's signature over the ID token's signing input, once it made it (base64url).
    pub(super) id_token_signature: Option<&'a str>,
    /// The access token's signing input made in an earlier step of this request, if any.
    pub(super) kept_input: &'a mut Option<jwt::KeptInput>,
}

/// What an ID token carries besides the access token's issuer, subject and times.
pub(super) struct IdTokenArgs<'a> {
    pub(super) auth_time: i64,
    pub(super) nonce: Option<&'a str>,
}

/// The success of a request: its tokens signed (each asked of the host first), the refresh
/// token's record to store, the answer.
pub(super) fn issue(args: IssueArgs<'_>) -> Result<TokenStep, PolicyError> {
    let IssueArgs {
        judge,
        ctx,
        keys,
        signature,
        tenant,
        client_id,
        subject,
        scope,
        refresh,
        username,
        mut effects,
        id_token,
        id_token_signature,
        kept_input,
    } = args;
    let entropy = |from: usize, to: usize| keys.entropy.get(from..to).unwrap_or_default();
    let jti = URL_SAFE_NO_PAD.encode(entropy(32, 48));
    let issuer = issuer_of(ctx, tenant);
    let now = ctx.now.unix();
    let claims = AccessClaims {
        iss: &issuer,
        sub: subject,
        aud: ctx.audience.as_deref().unwrap_or(&ctx.issuer),
        client_id,
        scope,
        iat: now,
        exp: now.saturating_add(i64::from(ctx.access_token_ttl)),
        jti: &jti,
        tenant: &tenant.tenant,
    };
    let access_token = match signed_access_token(ctx, &claims, signature, kept_input)? {
        Ok(token) => token,
        Err(step) => return Ok(step),
    };
    let id_token = match id_token {
        None => None,
        Some(args) => {
            let claims = id_claims(&claims, args);
            match signed_id_token(ctx, &claims, id_token_signature)? {
                Ok(token) => Some(token),
                Err(step) => return Ok(step),
            }
        }
    };
    let refresh_token = refresh.map(|(grant_type, family)| {
        let token = URL_SAFE_NO_PAD.encode(entropy(0, 32));
        let record = RefreshTokenRecord {
            token_sha256: refresh_token_sha256(&token),
            family_id: family.unwrap_or_else(|| URL_SAFE_NO_PAD.encode(entropy(48, 64))),
            tenant: tenant.tenant.clone(),
            client_id: client_id.to_string(),
            username,
            scope: scope.to_string(),
            grant_type,
            issued_at: ctx.now,
            expires_at: ctx.now.plus_seconds(i64::from(ctx.refresh_token_ttl)),
            status: RefreshStatus::Active,
        };
        effects.push(Effect::StoreRefreshToken { record });
        token
    });
    let body = TokenBody {
        access_token: &access_token,
        token_type: "Bearer",
        expires_in: ctx.access_token_ttl,
        scope,
        refresh_token: refresh_token.as_deref(),
        id_token: id_token.as_deref(),
    };
    Ok(TokenStep::Done(Box::new(Decision {
        response: response::success(&body),
        audit: judge.audit("granted", "T9", "issued", "issued"),
        effects,
    })))
}

/// A signed token, or the step that asks the host for its signature (not boxed: it is the
/// answer of one call in every token request).
type Signed = Result<String, TokenStep>;

/// A tenant's issuer: `{issuer}/tenants/{tenant}`.
fn issuer_of(ctx: &TokenContext, tenant: &TenantRecord) -> String {
    let base = ctx.issuer.trim_end_matches('/');
    let mut issuer = String::with_capacity(base.len() + 9 + tenant.tenant.len());
    issuer.push_str(base);
    issuer.push_str("/tenants/");
    issuer.push_str(&tenant.tenant);
    issuer
}

/// The ID token's claims that follow the access token's: the same issuer, subject and times,
/// the client as audience and authorized party (OpenID Connect Core §2).
fn id_claims<'a>(access: &AccessClaims<'a>, sign_in: IdTokenArgs<'a>) -> IdClaims<'a> {
    IdClaims {
        iss: access.iss,
        sub: access.sub,
        aud: access.client_id,
        exp: access.exp,
        iat: access.iat,
        auth_time: sign_in.auth_time,
        nonce: sign_in.nonce,
        azp: access.client_id,
    }
}

/// The access token: its signing input (kept across the request's steps), signed by the host;
/// until the host has signed it, the step that asks for the signature.
fn signed_access_token(
    ctx: &TokenContext,
    claims: &AccessClaims<'_>,
    signature: Option<&str>,
    kept_input: &mut Option<jwt::KeptInput>,
) -> Result<Signed, PolicyError> {
    let key = &ctx.signing_key;
    let signing_input = jwt::signing_input_kept(claims, &key.kid, key.alg, kept_input);
    let Some(signature) = signature else {
        return Ok(Err(TokenStep::NeedSignature {
            alg: key.alg,
            kid: key.kid.clone(),
            signing_input,
            purpose: SignPurpose::AccessToken,
        }));
    };
    Ok(Ok(jwt::finish(
        signing_input,
        &signature_bytes(ctx, "signature", signature)?,
    )))
}

/// The ID token of a code exchange with `openid`, signed by the host with the same key; until
/// then, the step that asks for the signature.
fn signed_id_token(
    ctx: &TokenContext,
    claims: &IdClaims<'_>,
    signature: Option<&str>,
) -> Result<Signed, PolicyError> {
    let key = &ctx.signing_key;
    let signing_input = jwt::id_token_signing_input(claims, &key.kid, key.alg);
    let Some(signature) = signature else {
        return Ok(Err(TokenStep::NeedSignature {
            alg: key.alg,
            kid: key.kid.clone(),
            signing_input,
            purpose: SignPurpose::IdToken,
        }));
    };
    let bytes = signature_bytes(ctx, "id_token_signature", signature)?;
    Ok(Ok(jwt::finish(signing_input, &bytes)))
}

/// A signature from the host, decoded and checked for its algorithm's length.
fn signature_bytes(ctx: &TokenContext, field: &str, text: &str) -> Result<Vec<u8>, PolicyError> {
    let alg = ctx.signing_key.alg;
    URL_SAFE_NO_PAD
        .decode(text.as_bytes())
        .ok()
        .filter(|s| alg.signature_len_ok(s.len()))
        .ok_or_else(|| {
            PolicyError::InvalidInput(format!(
                "`{field}` is not a base64url {} signature",
                alg.name()
            ))
        })
}
