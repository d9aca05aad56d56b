//! The token endpoint's rules, T1–T9 of RULES.md §4, one function each and in that order:
//! [`judge_request`] reads as the T-table.

use super::endpoint::{
    keys, refresh_token_sha256, Effect, Keys, Lookup, Memo, TokenContext, TokenInput, TokenStep,
};
use super::issue::{issue, IssueArgs};
use super::judge::{
    deny_client, deny_ineligible, deny_mismatch, End, Judge, Verdict, INVALID_CLIENT,
    INVALID_REFRESH, INVALID_USER,
};
use super::password::{self, Checked, StoredMemo};
use super::request::{self, quote, AuthMethod, HttpRequest, TokenRequest};
use crate::credentials::client_secret::verify_client_secret;
use crate::error::PolicyError;
use crate::model::{
    ClientRecord, GrantType, RefreshStatus, RefreshTokenRecord, Revision, TenantRecord, UserRecord,
};
use crate::rules::edit::is_scope_token;
use crate::rules::eligibility::password_eligibility;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    Password,
    ClientCredentials,
    Refresh,
}

impl Grant {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "password" => Some(Grant::Password),
            "client_credentials" => Some(Grant::ClientCredentials),
            "refresh_token" => Some(Grant::Refresh),
            _ => None,
        }
    }
}

/// The records a request needs, once the host has looked them up.
struct Found<'a> {
    tenant: &'a Option<TenantRecord>,
    client: &'a Option<ClientRecord>,
    /// The refresh token presented, as found (`None`: not found); `None` for other grants.
    refresh: Option<&'a RefreshTokenRecord>,
    refresh_hash: Option<String>,
    /// The user the request is for: the `username` parameter, or the refresh token's user.
    username: Option<&'a str>,
}

/// The client, authenticated and installed, and the app revision its tenant pins.
struct Pinned<'a> {
    tenant: &'a TenantRecord,
    client: &'a ClientRecord,
    index: usize,
    revision: &'a Revision,
}

/// The token endpoint's rules in RULES.md's order; each is a function that goes on or ends the
/// request, so the T-table reads off this one.
pub(super) fn judge_request(input: &TokenInput, memo: &mut Memo) -> Verdict<TokenStep> {
    let ctx = &input.context;
    let Memo {
        keys: memo_keys,
        parsed,
        refresh_hash,
        secret_check,
        stored_hash,
    } = memo;
    let keys = memo_keys_of(memo_keys, ctx)?;
    let http = &input.request;
    let mut judge = Judge::new(&http.tenant);
    let req = t1_well_formed(http, parsed, &mut judge)?;
    let grant = t2_supported_grant(req, &judge)?;
    t1_grant_parameters(req, grant, &judge)?;
    judge.username = req.param("username");
    let (client_id, client_secret) = t3_credentials_sent(req, &judge)?;
    let found = records_needed(input, req, grant, client_id, refresh_hash)?;
    if grant == Grant::Refresh {
        judge.username = found.username;
    }
    let pinned = t3_client(
        http,
        &found,
        client_id,
        client_secret,
        keys,
        secret_check,
        &mut judge,
    )?;
    t4_grant_allowed(grant, pinned.revision, req.grant_type(), &judge)?;
    let mut effects = Vec::new();
    let original_scope = match grant {
        Grant::Refresh => Some(refresh_token_live(
            ctx,
            &found,
            &pinned,
            client_id,
            &judge,
            &mut effects,
        )?),
        _ => None,
    };
    let password_path = grant == Grant::Password
        || (grant == Grant::Refresh && pinned.revision.grant_type == GrantType::Password);
    if password_path {
        t5_password_eligible(ctx, &pinned, &judge)?;
    }
    let scope = t6_scope(req.param("scope"), original_scope, pinned.revision, &judge)?;
    if password_path {
        t7_no_sso(pinned.tenant, &judge)?;
    }
    let user = input.records.user.as_ref().and_then(Option::as_ref);
    let user = user.filter(|u| Some(u.username.as_str()) == found.username);
    let mut outdated_hash = None;
    match grant {
        Grant::Password => {
            let password = req.param("password").unwrap_or_default();
            outdated_hash = t8_password(input, user, pinned.tenant, password, stored_hash, &judge)?;
            effects.push(login_succeeded(pinned.tenant, found.username));
        }
        Grant::Refresh if found.username.is_some() => t8_user_still_able(ctx, user, &judge)?,
        _ => {}
    }
    if password_path {
        t9_password_age(ctx, pinned.tenant, user, &judge)?;
    }
    if let (Some(replaces), Some(user)) = (outdated_hash, user) {
        let password = req.param("password").unwrap_or_default();
        let hash = password::new_hash(ctx, &keys.entropy, input.rehash_kdf.as_ref(), password)?
            .map_err(End::Step)?;
        effects.push(Effect::StorePasswordHash {
            tenant: pinned.tenant.tenant.clone(),
            username: user.username.clone(),
            hash,
            replaces,
        });
    }
    Ok(issue(IssueArgs {
        judge: &judge,
        ctx,
        keys,
        signature: input.signature.as_deref(),
        tenant: pinned.tenant,
        client_id,
        subject: found.username.unwrap_or(client_id),
        scope: &scope,
        refresh: refresh_to_issue(grant, &pinned, &found),
        username: found.username.map(str::to_string),
        effects,
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
        Grant::Password => Some((pinned.revision.grant_type, None)),
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
    End::Step(judge.deny(
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
            "the grant type `{}` is not supported here: use `password`, `client_credentials` or `refresh_token`",
            quote(req.grant_type())
        );
        End::Step(judge.deny(
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

/// T3, before any lookup: the client must have sent credentials.
fn t3_credentials_sent<'r>(
    req: &'r TokenRequest,
    judge: &Judge<'_>,
) -> Verdict<(&'r str, &'r str)> {
    match (&req.client_id, &req.client_secret) {
        (Some(id), Some(secret)) => Ok((id.as_str(), secret.as_str())),
        _ => {
            let cause = if req.client_id.is_some() {
                "missing_client_secret"
            } else {
                "missing_client_credentials"
            };
            Err(End::Step(judge.deny(
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
    let username: Option<&str> = match grant {
        Grant::Password => req.param("username"),
        Grant::Refresh => refresh_record.flatten().and_then(|r| r.username.as_deref()),
        Grant::ClientCredentials => None,
    };
    let (Some(tenant), Some(client), Some(refresh)) =
        (&records.tenant, &records.client, refresh_record)
    else {
        return Err(need(&input.request, client_id, username, refresh_hash).into());
    };
    if username.is_some() && records.user.is_none() {
        return Err(need(&input.request, client_id, username, refresh_hash).into());
    }
    Ok(Found {
        tenant,
        client,
        refresh,
        refresh_hash,
        username,
    })
}

/// T3: the client exists in this tenant, its secret is right, its app is installed there and
/// the pinned revision is this `client_id`'s. The secret is checked whatever else is found, so
/// every failure costs the same; records are checked against what was asked for, so a
/// mis-keyed lookup finds nothing.
fn t3_client<'a>(
    http: &HttpRequest,
    found: &Found<'a>,
    client_id: &str,
    client_secret: &str,
    keys: &Keys,
    secret_check: &mut Option<(Option<String>, bool)>,
    judge: &mut Judge<'a>,
) -> Verdict<Pinned<'a>> {
    let tenant = found.tenant.as_ref().filter(|t| t.tenant == http.tenant);
    let client = found.client.as_ref().filter(|c| c.client_id == client_id);
    let stored_hmac = client.map(|c| c.secret_hmac.as_str());
    let secret_ok = match secret_check {
        Some((checked, ok)) if checked.as_deref() == stored_hmac => *ok,
        _ => {
            let ok = verify_client_secret(&keys.client_secret, client_secret, stored_hmac);
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
    if !secret_ok {
        return Err(deny_client(judge, "invalid_client", "wrong_client_secret").into());
    }
    let app = &client.app;
    let Some(install) = tenant.installs.iter().find(|i| i.app_id == app.app_id) else {
        return Err(deny_client(judge, "client_not_installed", "app_not_installed").into());
    };
    judge.pinned_rev = Some(install.rev);
    let Some((index, revision)) = app.revision(install.rev) else {
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
        End::Step(judge.deny(
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
    granted_scope(requested, original, &pinned.scopes).map_err(|bad| {
        let description = format!("the scope `{}` is not granted to this client", quote(&bad));
        End::Step(judge.deny(
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
    Err(End::Step(judge.deny(
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
    .map_err(End::Step)?;
    match checked {
        Checked::Verified { outdated } => Ok(outdated),
        Checked::Refused { cause, effects } => Err(End::Step(judge.deny(
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
        Some(cause) => Err(End::Step(judge.deny(
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
    Err(End::Step(judge.deny(
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
) -> TokenStep {
    TokenStep::NeedRecords {
        lookup: Lookup {
            tenant: http.tenant.clone(),
            client_id: client_id.to_string(),
            username: username.map(str::to_string),
            refresh_token_sha256,
        },
    }
}

/// Scope tokens of a `scope` parameter, `None` when it is not `token *( SP token )`.
fn scope_tokens(scope: &str) -> Option<Vec<&str>> {
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
