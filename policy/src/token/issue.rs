//! T9's success: the access token's signing input handed to the host to sign
//! (`need_signature`), then the token, the refresh token minted and its record to store.

use super::endpoint::{refresh_token_sha256, Decision, Effect, Keys, TokenContext, TokenStep};
use super::judge::Judge;
use super::jwt::{self, AccessClaims};
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
    let signing_input = jwt::signing_input(&claims, &key.kid, key.alg);
    let Some(signature) = signature else {
        return Ok(TokenStep::NeedSignature {
            alg: key.alg,
            kid: key.kid.clone(),
            signing_input,
        });
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature.as_bytes())
        .ok()
        .filter(|s| key.alg.signature_len_ok(s.len()))
        .ok_or_else(|| {
            PolicyError::InvalidInput(format!(
                "`signature` is not a base64url {} signature",
                key.alg.name()
            ))
        })?;
    let access_token = jwt::finish(signing_input, &signature);
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
    };
    Ok(TokenStep::Done(Box::new(Decision {
        response: response::success(&body),
        audit: judge.audit("granted", "T9", "issued", "issued"),
        effects,
    })))
}
