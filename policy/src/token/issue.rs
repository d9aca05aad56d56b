//! T9's success: the access token's signing input handed to the host to sign
//! (`need_signature`), then the token, the refresh token minted and its record to store.

use super::endpoint::{
    refresh_token_sha256, Decision, Effect, Keys, SignPurpose, TokenContext, TokenStep,
};
use super::judge::Judge;
use super::jwt::{self, AccessClaims, IdClaims};
use super::response::{self, TokenBody};
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
    let base = ctx.issuer.trim_end_matches('/');
    let mut issuer = String::with_capacity(base.len() + 9 + tenant.tenant.len());
    issuer.push_str(base);
    issuer.push_str("/tenants/");
    issuer.push_str(&tenant.tenant);
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
    let key = &ctx.signing_key;
    let signing_input = jwt::signing_input_kept(&claims, &key.kid, key.alg, kept_input);
    let Some(signature) = signature else {
        return Ok(TokenStep::NeedSignature {
            alg: key.alg,
            kid: key.kid.clone(),
            signing_input,
            purpose: SignPurpose::AccessToken,
        });
    };
    let access_token = jwt::finish(
        signing_input,
        &signature_bytes(ctx, "signature", signature)?,
    );
    let id_token = match id_token {
        None => None,
        Some(args) => {
            let claims = IdClaims {
                iss: &issuer,
                sub: subject,
                aud: client_id,
                exp: now.saturating_add(i64::from(ctx.access_token_ttl)),
                iat: now,
                auth_time: args.auth_time,
                nonce: args.nonce,
                azp: client_id,
            };
            let signing_input = jwt::id_token_signing_input(&claims, &key.kid, key.alg);
            let Some(signature) = id_token_signature else {
                return Ok(TokenStep::NeedSignature {
                    alg: key.alg,
                    kid: key.kid.clone(),
                    signing_input,
                    purpose: SignPurpose::IdToken,
                });
            };
            let bytes = signature_bytes(ctx, "id_token_signature", signature)?;
            Some(jwt::finish(signing_input, &bytes))
        }
    };
    let refresh_token = refresh.map(|(grant_type, family)| {
        let token = URL_SAFE_NO_PAD.encode(entropy(0, 32));
        let family_id = family.unwrap_or_else(|| URL_SAFE_NO_PAD.encode(entropy(48, 64)));
        effects.push(Effect::StoreRefreshToken {
            record: RefreshTokenRecord {
                token_sha256: refresh_token_sha256(&token),
                family_id,
                tenant: tenant.tenant.clone(),
                client_id: client_id.to_string(),
                username: username.clone(),
                scope: scope.to_string(),
                grant_type,
                issued_at: ctx.now,
                expires_at: ctx.now.plus_seconds(i64::from(ctx.refresh_token_ttl)),
                status: RefreshStatus::Active,
            },
        });
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
