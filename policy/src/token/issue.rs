//! T9's success: the access token signed, the refresh token minted and its record to store.

use super::endpoint::{refresh_token_sha256, Decision, Effect, Keys, TokenContext, TokenStep};
use super::judge::Judge;
use super::jwt::{self, AccessClaims};
use super::response::{self, TokenBody};
use crate::model::{GrantType, RefreshStatus, RefreshTokenRecord, TenantRecord};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

pub(super) struct IssueArgs<'a> {
    pub(super) judge: &'a Judge<'a>,
    pub(super) ctx: &'a TokenContext,
    pub(super) keys: &'a Keys,
    pub(super) tenant: &'a TenantRecord,
    pub(super) client_id: &'a str,
    pub(super) subject: &'a str,
    pub(super) scope: &'a str,
    /// For grants that issue a refresh token: the pinned grant type and the family to continue.
    pub(super) refresh: Option<(GrantType, Option<String>)>,
    pub(super) username: Option<String>,
    pub(super) effects: Vec<Effect>,
}

pub(super) fn issue(args: IssueArgs<'_>) -> TokenStep {
    let IssueArgs {
        judge,
        ctx,
        keys,
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
    let access_token = jwt::sign(&claims, &ctx.signing_key.kid, &keys.signing);
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
    TokenStep::Done(Box::new(Decision {
        response: response::success(&body),
        audit: judge.audit("granted", "T9", "issued", "issued"),
        effects,
    }))
}
