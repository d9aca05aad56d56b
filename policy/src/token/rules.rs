//! The token endpoint's rules, T1–T9 of RULES.md §4, one function each and in that order:
//! [`judge_request`] reads as the T-table.

use super::exchange;
use super::found::{Found, Pinned};
use super::issue::{issue, IssueArgs};
use super::judge::{
    deny_client, deny_ineligible, deny_mismatch, End, Judge, Verdict, INVALID_CLIENT,
    INVALID_REFRESH, INVALID_USER,
};
use super::jwt::KeptInput;
use super::password::{self, Checked, StoredMemo};
use super::request::{self, quote, AuthMethod, HttpRequest, TokenRequest};
use super::steps::{
    code_sha256, keys, refresh_token_sha256, Effect, Keys, Lookup, Memo, TokenContext, TokenInput,
    TokenStep,
};
use crate::credentials::client_secret::verify_client_secret;
use crate::error::PolicyError;
use crate::model::{ClientType, GrantType, RefreshStatus, Revision, TenantRecord, UserRecord};
use crate::rules::edit::is_scope_token;
use crate::rules::eligibility::password_eligibility;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    Password,
    ClientCredentials,
    Refresh,
    AuthorizationCode,
}

impl Grant {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "password" => Some(Grant::Password),
            "client_credentials" => Some(Grant::ClientCredentials),
            "refresh_token" => Some(Grant::Refresh),
            "authorization_code" => Some(Grant::AuthorizationCode),
            _ => None,
        }
    }

    /// Whether a public client (no secret) may ask for it: the grants of §5.
    fn public_may_ask(self) -> bool {
        matches!(self, Grant::Refresh | Grant::AuthorizationCode)
    }
}

/// The token endpoint's rules in RULES.md's order; each is a function that goes on or ends the
/// request, so the T-table reads off this one: T1–T4 here, then the code exchange (X1–X5) or
/// T5–T9, then the tokens.
pub(super) fn judge_request(input: &TokenInput, memo: &mut Memo) -> Verdict<TokenStep> {
    let ctx = &input.context;
    let Memo {
        keys: memo_keys,
        parsed,
        refresh_hash,
        secret_check,
        stored_hash,
        access_input,
    } = memo;
    let keys = memo_keys_of(memo_keys, ctx)?;
    let http = &input.request;
    let mut judge = Judge::new(&http.tenant);
    let req = t1_well_formed(http, parsed, &mut judge)?;
    let grant = t2_supported_grant(req, &judge)?;
    t1_grant_parameters(req, grant, &judge)?;
    judge.username = req.param("username");
    let (client_id, client_secret) = t3_credentials_sent(req, grant, &judge)?;
    let found = records_needed(input, req, grant, client_id, refresh_hash)?;
    if matches!(grant, Grant::Refresh | Grant::AuthorizationCode) {
        judge.username = found.username;
    }
    let pinned = t3_client(
        http,
        &found,
        (client_id, client_secret),
        keys,
        secret_check,
        &mut judge,
    )?;
    t4_grant_allowed(grant, pinned.revision, req.grant_type(), &judge)?;
    let user = input.records.user.as_ref().and_then(Option::as_ref);
    let user = user.filter(|u| Some(u.username.as_str()) == found.username);
    let judged = Judged {
        input,
        req,
        grant,
        client_id,
        keys,
        found: &found,
        pinned: &pinned,
        user,
        judge: &judge,
    };
    if grant == Grant::AuthorizationCode {
        let exchanged = exchange::judge(ctx, req, &found, &pinned, client_id, user, &judge)?;
        return Ok(exchange::issue_for_code(
            input,
            keys,
            &judge,
            &pinned,
            client_id,
            exchanged,
            access_input,
        )?);
    }
    let (scope, effects) = t5_to_t9(&judged, stored_hash)?;
    issue_tokens(&judged, &scope, effects, access_input)
}

/// What T1–T4 established about a request, for the rules after them.
struct Judged<'a> {
    input: &'a TokenInput,
    req: &'a TokenRequest,
    grant: Grant,
    client_id: &'a str,
    keys: &'a Keys,
    found: &'a Found<'a>,
    pinned: &'a Pinned<'a>,
    /// The user the request is for, as found.
    user: Option<&'a UserRecord>,
    judge: &'a Judge<'a>,
}

/// T5–T9 for the password, refresh and client credentials grants, in that order (a refresh's
/// own checks first): the scope granted and the effects of the checks.
fn t5_to_t9(r: &Judged<'_>, stored_hash: &mut StoredMemo) -> Verdict<(String, Vec<Effect>)> {
    let (ctx, judge, pinned, found, user) = (&r.input.context, r.judge, r.pinned, r.found, r.user);
    let mut effects = Vec::new();
    let original_scope = match r.grant {
        Grant::Refresh => Some(refresh_token_live(
            ctx,
            found,
            pinned,
            r.client_id,
            judge,
            &mut effects,
        )?),
        _ => None,
    };
    let password_path = r.grant == Grant::Password
        || (r.grant == Grant::Refresh && pinned.revision.grant_type == GrantType::Password);
    if password_path {
        t5_password_eligible(ctx, pinned, judge)?;
    }
    let scope = t6_scope(r.req.param("scope"), original_scope, pinned.revision, judge)?;
    if password_path {
        t7_no_sso(pinned.tenant, judge)?;
    }
    let mut outdated_hash = None;
    match r.grant {
        Grant::Password => {
            let password = r.req.param("password").unwrap_or_default();
            outdated_hash =
                t8_password(r.input, user, pinned.tenant, password, stored_hash, judge)?;
            effects.push(login_succeeded(pinned.tenant, found.username));
        }
        Grant::Refresh if found.username.is_some() => t8_user_still_able(ctx, user, judge)?,
        _ => {}
    }
    if password_path {
        t9_password_age(ctx, pinned.tenant, user, judge)?;
    }
    if let (Some(replaces), Some(user)) = (outdated_hash, user) {
        let password = r.req.param("password").unwrap_or_default();
        let hash = password::new_hash(ctx, &r.keys.entropy, r.input.rehash_kdf.as_ref(), password)?
            .map_err(End::step)?;
        effects.push(Effect::StorePasswordHash {
            tenant: pinned.tenant.tenant.clone(),
            username: user.username.clone(),
            hash,
            replaces,
        });
    }
    Ok((scope, effects))
}

/// The success: the access token (and a refresh token where the grant issues one).
fn issue_tokens(
    r: &Judged<'_>,
    scope: &str,
    effects: Vec<Effect>,
    access_input: &mut Option<KeptInput>,
) -> Verdict<TokenStep> {
    // §4's tokens keep the username as their subject (what APIs read today); the code flow's
    // tokens, and so their refreshes, carry the user's stable `sub` (§5).
    let subject = match (r.pinned.revision.grant_type, r.user) {
        (GrantType::AuthorizationCode, Some(user)) => user.subject(),
        _ => r.found.username.unwrap_or(r.client_id),
    };
    Ok(issue(IssueArgs {
        judge: r.judge,
        ctx: &r.input.context,
        keys: r.keys,
        signature: r.input.signature.as_deref(),
        tenant: r.pinned.tenant,
        client_id: r.client_id,
        subject,
        scope,
        refresh: refresh_to_issue(r.grant, r.pinned, r.found),
        username: r.found.username.map(str::to_string),
        effects,
        id_token: None,
        id_token_signature: None,
        kept_input: access_input,
    })?)
}

/// The request's decoded keys, decoded once per request.
fn memo_keys_of<'m>(slot: &'m mut Option<Keys>, ctx: &TokenContext) -> Verdict<&'m Keys> {
    if slot.is_none() {
        *slot = Some(keys(ctx)?);
    }
    slot.as_ref()
        .ok_or_else(|| PolicyError::InvalidInput("no keys".into()).into())
}

/// For grants that issue a refresh token: the pinned grant type, and the family to continue.
fn refresh_to_issue(
    grant: Grant,
    pinned: &Pinned<'_>,
    found: &Found<'_>,
) -> Option<(GrantType, Option<String>)> {
    match grant {
        Grant::ClientCredentials => None,
        Grant::Password | Grant::AuthorizationCode => Some((pinned.revision.grant_type, None)),
        Grant::Refresh => Some((
            pinned.revision.grant_type,
            found.refresh.map(|r| r.family_id.clone()),
        )),
    }
}

/// T1: the request parses (parsed once per request, kept in the memo).
fn t1_well_formed<'m>(
    http: &HttpRequest,
    parsed: &'m mut Option<Result<TokenRequest, request::Malformed>>,
    judge: &mut Judge<'m>,
) -> Verdict<&'m TokenRequest> {
    if parsed.is_none() {
        *parsed = Some(request::parse(http).map_err(|_| {
            PolicyError::InvalidInput("`request.body_base64` is not base64".into())
        })?);
    }
    let Some(parsed) = parsed.as_ref() else {
        return Err(PolicyError::InvalidInput("no request".into()).into());
    };
    match parsed {
        Ok(req) => {
            judge.basic = req.auth == AuthMethod::Basic;
            judge.grant_type = Some(req.grant_type());
            judge.client_id = req.client_id.as_deref();
            Ok(req)
        }
        Err(malformed) => {
            judge.basic = malformed.basic_attempted;
            Err(malformed_request(judge, &malformed.description))
        }
    }
}

/// A T1 refusal.
fn malformed_request(judge: &Judge<'_>, description: &str) -> End {
    End::step(judge.deny(
        "T1",
        400,
        "invalid_request",
        description,
        "malformed_request",
        "malformed_request",
        Vec::new(),
    ))
}

/// T2: a grant type this endpoint serves.
fn t2_supported_grant(req: &TokenRequest, judge: &Judge<'_>) -> Verdict<Grant> {
    Grant::parse(req.grant_type()).ok_or_else(|| {
        let description = format!(
            "the grant type `{}` is not supported here: use `authorization_code`, `client_credentials`, `refresh_token` or `password`",
            quote(req.grant_type())
        );
        End::step(judge.deny(
            "T2",
            400,
            "unsupported_grant_type",
            &description,
            "unsupported_grant_type",
            "unsupported_grant_type",
            Vec::new(),
        ))
    })
}

/// T1 again: the parameters each grant needs, and a scope that is a list of scope tokens, are
/// part of a well-formed request.
fn t1_grant_parameters(req: &TokenRequest, grant: Grant, judge: &Judge<'_>) -> Verdict<()> {
    let required: &[&str] = match grant {
        Grant::Password => &["username", "password"],
        Grant::Refresh => &["refresh_token"],
        Grant::AuthorizationCode => &["code"],
        Grant::ClientCredentials => &[],
    };
    if let Some(missing) = required.iter().find(|p| req.param(p).is_none()) {
        let description = format!(
            "the `{missing}` parameter is missing for the `{}` grant",
            req.grant_type()
        );
        return Err(malformed_request(judge, &description));
    }
    if let Some(scope) = req.param("scope") {
        if scope_tokens(scope).is_none() {
            let description = format!("the scope `{}` is not a list of scope tokens", quote(scope));
            return Err(malformed_request(judge, &description));
        }
    }
    Ok(())
}

/// T3, before any lookup: the client must have sent its `client_id`, and its secret unless the
/// grant is one a public client may ask for (whether it is public is known once it is found).
fn t3_credentials_sent<'r>(
    req: &'r TokenRequest,
    grant: Grant,
    judge: &Judge<'_>,
) -> Verdict<(&'r str, Option<&'r str>)> {
    match (&req.client_id, &req.client_secret) {
        (Some(id), secret) if secret.is_some() || grant.public_may_ask() => {
            Ok((id.as_str(), secret.as_deref()))
        }
        _ => {
            let cause = if req.client_id.is_some() {
                "missing_client_secret"
            } else {
                "missing_client_credentials"
            };
            Err(End::step(judge.deny(
                "T3",
                401,
                "invalid_client",
                INVALID_CLIENT,
                "invalid_client",
                cause,
                Vec::new(),
            )))
        }
    }
}

/// The records the rules need, or a step that asks the host for the ones still missing.
fn records_needed<'a>(
    input: &'a TokenInput,
    req: &'a TokenRequest,
    grant: Grant,
    client_id: &str,
    memo_refresh_hash: &mut Option<Option<String>>,
) -> Verdict<Found<'a>> {
    let records = &input.records;
    let refresh_hash = memo_refresh_hash
        .get_or_insert_with(|| req.param("refresh_token").map(refresh_token_sha256))
        .clone();
    let refresh_record = match (&refresh_hash, &records.refresh_token) {
        (Some(_), None) => None,
        (Some(_), Some(found)) => Some(found.as_ref()),
        (None, _) => Some(None),
    };
    let code_hash = match grant {
        Grant::AuthorizationCode => req.param("code").map(code_sha256),
        _ => None,
    };
    let code_record = match (&code_hash, &records.code) {
        (Some(_), None) => None,
        (Some(_), Some(found)) => Some(found.as_ref()),
        (None, _) => Some(None),
    };
    let username: Option<&str> = match grant {
        Grant::Password => req.param("username"),
        Grant::Refresh => refresh_record.flatten().and_then(|r| r.username.as_deref()),
        Grant::AuthorizationCode => code_record.flatten().map(|c| c.username.as_str()),
        Grant::ClientCredentials => None,
    };
    let ask = |username: Option<&str>| {
        End::from(need(
            &input.request,
            client_id,
            username,
            refresh_hash.clone(),
            code_hash.clone(),
        ))
    };
    let (Some(tenant), Some(client), Some(refresh), Some(code)) = (
        &records.tenant,
        &records.client,
        refresh_record,
        code_record,
    ) else {
        return Err(ask(username));
    };
    if username.is_some() && records.user.is_none() {
        return Err(ask(username));
    }
    Ok(Found {
        tenant,
        client,
        refresh,
        refresh_hash: refresh_hash.clone(),
        code,
        code_hash: code_hash.clone(),
        username,
    })
}

/// T3: the client exists in this tenant, its secret is right (a public client sends none), its
/// app is installed there and the pinned revision is this `client_id`'s. A secret sent is
/// checked whatever else is found, so every failure costs the same; records are checked against
/// what was asked for, so a mis-keyed lookup finds nothing.
fn t3_client<'a>(
    http: &HttpRequest,
    found: &Found<'a>,
    (client_id, client_secret): (&str, Option<&str>),
    keys: &Keys,
    secret_check: &mut Option<(Option<String>, bool)>,
    judge: &mut Judge<'a>,
) -> Verdict<Pinned<'a>> {
    let tenant = found.tenant.as_ref().filter(|t| t.tenant == http.tenant);
    let client = found.client.as_ref().filter(|c| c.client_id == client_id);
    let stored_hmac = client.map(|c| c.secret_hmac.as_str());
    let secret_ok = match (client_secret, secret_check.as_ref()) {
        (None, _) => false,
        (Some(_), Some((checked, ok))) if checked.as_deref() == stored_hmac => *ok,
        (Some(secret), _) => {
            let ok = verify_client_secret(&keys.client_secret, secret, stored_hmac);
            *secret_check = Some((stored_hmac.map(str::to_string), ok));
            ok
        }
    };
    judge.app_id = client.map(|c| c.app.app_id.as_str());
    let (tenant, client) = match (tenant, client) {
        (None, _) => return Err(deny_client(judge, "invalid_client", "unknown_tenant").into()),
        (_, None) => return Err(deny_client(judge, "invalid_client", "unknown_client").into()),
        (Some(t), Some(c)) => (t, c),
    };
    let app = &client.app;
    let install = tenant.installs.iter().find(|i| i.app_id == app.app_id);
    let pinned = install.and_then(|i| app.revision(i.rev));
    let public = pinned
        .is_some_and(|(_, r)| r.client_id == client_id && r.client_type == ClientType::Public);
    match (public, client_secret) {
        (true, Some(_)) => {
            return Err(deny_client(judge, "invalid_client", "public_client_sent_secret").into())
        }
        (true, None) => {}
        (false, None) => {
            return Err(deny_client(judge, "invalid_client", "missing_client_secret").into())
        }
        (false, Some(_)) if !secret_ok => {
            return Err(deny_client(judge, "invalid_client", "wrong_client_secret").into())
        }
        (false, Some(_)) => {}
    }
    let Some(install) = install else {
        return Err(deny_client(judge, "client_not_installed", "app_not_installed").into());
    };
    judge.pinned_rev = Some(install.rev);
    let Some((index, revision)) = pinned else {
        return Err(deny_client(judge, "client_not_installed", "pinned_revision_missing").into());
    };
    if revision.client_id != client_id {
        return Err(deny_client(judge, "client_not_installed", "client_id_not_pinned").into());
    }
    Ok(Pinned {
        tenant,
        client,
        index,
        revision,
    })
}

/// T4: the pinned revision's grant type allows the grant asked for.
fn t4_grant_allowed(
    grant: Grant,
    pinned: &Revision,
    asked: &str,
    judge: &Judge<'_>,
) -> Verdict<()> {
    let allowed = match grant {
        Grant::Password => pinned.grant_type == GrantType::Password,
        Grant::ClientCredentials => pinned.grant_type == GrantType::ClientCredentials,
        Grant::Refresh => matches!(
            pinned.grant_type,
            GrantType::Password | GrantType::AuthorizationCode
        ),
        Grant::AuthorizationCode => pinned.grant_type == GrantType::AuthorizationCode,
    };
    if allowed {
        Ok(())
    } else {
        Err(deny_mismatch(judge, pinned, asked).into())
    }
}

/// Refresh rotation: the refresh token must be this tenant's and this client's, live, unused,
/// and from a grant the pin still allows. A rotated token presented again revokes its family.
/// Answers the scope first granted, and adds the consumption of the token to `effects`.
fn refresh_token_live<'a>(
    ctx: &TokenContext,
    found: &Found<'a>,
    pinned: &Pinned<'_>,
    client_id: &str,
    judge: &Judge<'_>,
    effects: &mut Vec<Effect>,
) -> Verdict<&'a str> {
    let invalid = |cause: &str, reason: &str, effects: Vec<Effect>| {
        End::step(judge.deny(
            "refresh",
            400,
            "invalid_grant",
            INVALID_REFRESH,
            reason,
            cause,
            effects,
        ))
    };
    let record = found.refresh.filter(|r| {
        Some(&r.token_sha256) == found.refresh_hash.as_ref()
            && r.tenant == pinned.tenant.tenant
            && r.client_id == client_id
            && ctx.now < r.expires_at
    });
    let Some(record) = record else {
        return Err(invalid(
            "unknown_or_expired",
            "refresh_token_invalid",
            Vec::new(),
        ));
    };
    match record.status {
        RefreshStatus::Active => {}
        RefreshStatus::Revoked => {
            return Err(invalid("revoked", "refresh_token_invalid", Vec::new()))
        }
        RefreshStatus::Used => {
            return Err(invalid(
                "rotated_token_presented",
                "refresh_token_reused",
                vec![Effect::RevokeRefreshFamily {
                    family_id: record.family_id.clone(),
                }],
            ))
        }
    }
    // T4 again: the grant that started the family must still be what the pin allows.
    if record.grant_type != pinned.revision.grant_type {
        return Err(deny_mismatch(judge, pinned.revision, record.grant_type.as_str()).into());
    }
    effects.push(Effect::ConsumeRefreshToken {
        token_sha256: record.token_sha256.clone(),
    });
    Ok(record.scope.as_str())
}

/// T5: the app keeps the password grant (R1–R4 at the pinned revision).
fn t5_password_eligible(ctx: &TokenContext, pinned: &Pinned<'_>, judge: &Judge<'_>) -> Verdict<()> {
    password_eligibility(&pinned.client.app.revisions, pinned.index, ctx.sunset)
        .map_err(|reason| deny_ineligible(judge, reason, ctx.sunset).into())
}

/// T6: the scope granted.
fn t6_scope(
    requested: Option<&str>,
    original: Option<&str>,
    pinned: &Revision,
    judge: &Judge<'_>,
) -> Verdict<String> {
    // C7: `openid` is always allowed in the code flow, and so in the refresh of its tokens.
    let openid = pinned.grant_type == GrantType::AuthorizationCode
        && !pinned.scopes.iter().any(|s| s == "openid");
    let allowed: Vec<String> = if openid {
        pinned
            .scopes
            .iter()
            .cloned()
            .chain(std::iter::once("openid".to_string()))
            .collect()
    } else {
        pinned.scopes.clone()
    };
    granted_scope(requested, original, &allowed).map_err(|bad| {
        let description = format!("the scope `{}` is not granted to this client", quote(&bad));
        End::step(judge.deny(
            "T6",
            400,
            "invalid_scope",
            &description,
            "invalid_scope",
            "invalid_scope",
            Vec::new(),
        ))
    })
}

/// T7: a tenant that requires single sign-on gets no password-path tokens.
fn t7_no_sso(tenant: &TenantRecord, judge: &Judge<'_>) -> Verdict<()> {
    if !tenant.sso_required {
        return Ok(());
    }
    Err(End::step(judge.deny(
        "T7",
        400,
        "invalid_grant",
        "this tenant requires single sign-on: the password grant cannot sign its users in",
        "sso_required",
        "sso_required",
        Vec::new(),
    )))
}

/// T8 for the password grant: the password is checked against the user's stored hash, or a
/// dummy hash of the same cost when there is none, so every failure costs the same KDF work and
/// gets the same answer; a failure is counted for the lockout (see [`password::check`]). A
/// success answers the stored hash when it is to be hashed again.
fn t8_password(
    input: &TokenInput,
    user: Option<&UserRecord>,
    tenant: &TenantRecord,
    password: &str,
    memo_stored_hash: &mut StoredMemo,
    judge: &Judge<'_>,
) -> Verdict<Option<String>> {
    let checked = password::check(
        &input.context,
        input.kdf.as_ref(),
        user,
        &tenant.tenant,
        judge.username.unwrap_or_default(),
        password,
        memo_stored_hash,
    )?
    .map_err(End::step)?;
    match checked {
        Checked::Verified { outdated } => Ok(outdated),
        Checked::Refused { cause, effects } => Err(End::step(judge.deny(
            "T8",
            400,
            "invalid_grant",
            INVALID_USER,
            "invalid_credentials",
            cause,
            effects,
        ))),
    }
}

/// The effect of a password that verified: the user's failed logins are forgotten.
fn login_succeeded(tenant: &TenantRecord, username: Option<&str>) -> Effect {
    Effect::ResetLoginFailures {
        tenant: tenant.tenant.clone(),
        username: username.unwrap_or_default().to_string(),
    }
}

/// T8 for a refresh: it is judged against the user's current record.
fn t8_user_still_able(
    ctx: &TokenContext,
    user: Option<&UserRecord>,
    judge: &Judge<'_>,
) -> Verdict<()> {
    match password::user_problem(user, ctx.now) {
        None => Ok(()),
        Some(cause) => Err(End::step(judge.deny(
            "T8",
            400,
            "invalid_grant",
            INVALID_REFRESH,
            "invalid_credentials",
            cause,
            Vec::new(),
        ))),
    }
}

/// T9: a password older than the tenant's maximum age must be changed first.
fn t9_password_age(
    ctx: &TokenContext,
    tenant: &TenantRecord,
    user: Option<&UserRecord>,
    judge: &Judge<'_>,
) -> Verdict<()> {
    let (Some(days), Some(user)) = (tenant.password_max_age_days, user) else {
        return Ok(());
    };
    let expired = match user.password_changed_at {
        Some(changed) => ctx.now.seconds_since(changed) > i64::from(days) * 86_400,
        None => true,
    };
    if !expired {
        return Ok(());
    }
    Err(End::step(judge.deny(
        "T9",
        400,
        "invalid_grant",
        "the password has expired: the user must change it before signing in",
        "password_expired",
        "password_expired",
        Vec::new(),
    )))
}

fn need(
    http: &HttpRequest,
    client_id: &str,
    username: Option<&str>,
    refresh_token_sha256: Option<String>,
    code_sha256: Option<String>,
) -> TokenStep {
    TokenStep::NeedRecords {
        lookup: Lookup {
            tenant: http.tenant.clone(),
            client_id: client_id.to_string(),
            username: username.map(str::to_string),
            refresh_token_sha256,
            code_sha256,
            consent_app_id: None,
            subject: None,
        },
    }
}

/// Scope tokens of a `scope` parameter, `None` when it is not `token *( SP token )`.
pub(crate) fn scope_tokens(scope: &str) -> Option<Vec<&str>> {
    let tokens: Vec<&str> = scope.split(' ').collect();
    tokens.iter().all(|t| is_scope_token(t)).then_some(tokens)
}

/// T6: the scope to grant, or the first token not allowed. A refresh never widens the scope
/// first granted; absent, it asks for that scope again.
pub(super) fn granted_scope(
    requested: Option<&str>,
    original: Option<&str>,
    allowed: &[String],
) -> Result<String, String> {
    let asked: Vec<&str> = match (requested, original) {
        (Some(r), _) => scope_tokens(r).unwrap_or_default(),
        (None, Some(o)) => o.split(' ').filter(|t| !t.is_empty()).collect(),
        (None, None) => allowed.iter().map(String::as_str).collect(),
    };
    let mut out: Vec<&str> = Vec::new();
    for token in asked {
        let in_original = original.is_none_or(|o| o.split(' ').any(|t| t == token));
        if !in_original || !allowed.iter().any(|a| a == token) {
            return Err(token.to_string());
        }
        if !out.contains(&token) {
            out.push(token);
        }
    }
    Ok(out.join(" "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests
mod tests {
    use super::*;

    #[test]
    fn scope_never_widens_on_refresh() {
        let allowed = vec!["read".to_string(), "write".to_string()];
        assert_eq!(
            granted_scope(None, Some("read"), &allowed),
            Ok("read".into())
        );
        assert_eq!(
            granted_scope(Some("write"), Some("read"), &allowed),
            Err("write".into())
        );
        assert_eq!(granted_scope(None, None, &allowed), Ok("read write".into()));
        assert_eq!(
            granted_scope(Some("read read"), None, &allowed),
            Ok("read".into())
        );
        assert_eq!(
            granted_scope(Some("admin"), None, &allowed),
            Err("admin".into())
        );
    }
}
