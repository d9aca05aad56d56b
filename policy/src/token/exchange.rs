//! The code exchange at the token endpoint, X1–X5 of RULES.md §5, one function each and in
//! that order, after T1–T4.

use super::found::{Found, Pinned};
use super::issue::{issue, IdTokenArgs, IssueArgs};
use super::judge::{End, Judge, Verdict};
use super::jwt::KeptInput;
use super::request::TokenRequest;
use super::steps::{code_family, Effect, Keys, TokenContext, TokenInput, TokenStep};
use crate::error::PolicyError;
use crate::model::{CodeRecord, GrantType, SignIn, UserRecord};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a code that passed X1–X5 gives: the code, its user and the scope to grant.
pub(super) struct Exchanged<'a> {
    pub(super) code: &'a CodeRecord,
    pub(super) user: &'a UserRecord,
    pub(super) scope: String,
}

/// The description of every X1, X2 and X5 refusal: the client learns no more than that.
const INVALID_CODE: &str = "the authorization code is invalid, expired or already used";

/// X1–X5 in RULES.md's order.
pub(super) fn judge<'a>(
    ctx: &TokenContext,
    req: &TokenRequest,
    found: &Found<'a>,
    pinned: &Pinned<'_>,
    client_id: &str,
    user: Option<&'a UserRecord>,
    judge: &Judge<'_>,
) -> Verdict<Exchanged<'a>> {
    let code = x1_issued_here(ctx, found, pinned, client_id, judge)?;
    x2_not_used(code, judge)?;
    x3_same_redirect_uri(code, req.param("redirect_uri"), judge)?;
    x4_pkce(code, req.param("code_verifier"), judge)?;
    let user = x5_user_still_able(user, judge)?;
    Ok(Exchanged {
        code,
        user,
        scope: code.scopes.join(" "),
    })
}

fn deny(judge: &Judge<'_>, rule: &str, description: &str, reason: &str, cause: &str) -> End {
    deny_with(judge, rule, description, reason, cause, Vec::new())
}

fn deny_with(
    judge: &Judge<'_>,
    rule: &str,
    description: &str,
    reason: &str,
    cause: &str,
    effects: Vec<Effect>,
) -> End {
    End::step(judge.deny(
        rule,
        400,
        "invalid_grant",
        description,
        reason,
        cause,
        effects,
    ))
}

/// X1: a code this server issued, to this `client_id` in this tenant, for the revision the
/// tenant still pins, and not expired.
fn x1_issued_here<'a>(
    ctx: &TokenContext,
    found: &Found<'a>,
    pinned: &Pinned<'_>,
    client_id: &str,
    judge: &Judge<'_>,
) -> Verdict<&'a CodeRecord> {
    let invalid = |cause| deny(judge, "X1", INVALID_CODE, "invalid_code", cause);
    let code = found
        .code
        .filter(|c| Some(&c.code_sha256) == found.code_hash.as_ref());
    let Some(code) = code else {
        return Err(invalid("unknown_code"));
    };
    if code.tenant != pinned.tenant.tenant || code.client_id != client_id {
        return Err(invalid("code_of_another_client"));
    }
    if code.rev != pinned.revision.rev {
        return Err(invalid("revision_changed"));
    }
    let expires = code.issued_at.plus_seconds(i64::from(ctx.code_ttl));
    if ctx.now >= expires {
        return Err(deny(
            judge,
            "X1",
            INVALID_CODE,
            "code_expired",
            "code_expired",
        ));
    }
    Ok(code)
}

/// X2: not used before; a second use revokes every token issued from it (RFC 6749 §4.1.2).
fn x2_not_used(code: &CodeRecord, judge: &Judge<'_>) -> Verdict<()> {
    if !code.used {
        return Ok(());
    }
    Err(deny_with(
        judge,
        "X2",
        INVALID_CODE,
        "code_reused",
        "code_reused",
        vec![Effect::RevokeRefreshFamily {
            family_id: code_family(&code.code_sha256),
        }],
    ))
}

/// X3: the `redirect_uri` sent to the authorization endpoint, when one was sent there, again.
fn x3_same_redirect_uri(code: &CodeRecord, sent: Option<&str>, judge: &Judge<'_>) -> Verdict<()> {
    match &code.redirect_uri {
        Some(at_authorize) if Some(at_authorize.as_str()) != sent => Err(deny(
            judge,
            "X3",
            "the `redirect_uri` is not the one sent to the authorization endpoint",
            "redirect_uri_mismatch",
            if sent.is_some() {
                "redirect_uri_differs"
            } else {
                "redirect_uri_missing"
            },
        )),
        _ => Ok(()),
    }
}

/// X4: `BASE64URL(SHA-256(code_verifier)) == code_challenge` (RFC 7636 §4.6), with a verifier
/// of 43 to 128 unreserved characters (§4.1).
fn x4_pkce(code: &CodeRecord, verifier: Option<&str>, judge: &Judge<'_>) -> Verdict<()> {
    let fail = |cause| {
        deny(
            judge,
            "X4",
            "the PKCE `code_verifier` does not match the `code_challenge`",
            "pkce_failed",
            cause,
        )
    };
    let Some(verifier) = verifier else {
        return Err(fail("code_verifier_missing"));
    };
    if !is_pkce_text(verifier) {
        return Err(fail("code_verifier_malformed"));
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if bool::from(computed.as_bytes().ct_eq(code.code_challenge.as_bytes())) {
        Ok(())
    } else {
        Err(fail("code_verifier_mismatch"))
    }
}

/// 43 to 128 characters of `[A-Za-z0-9._~-]` (RFC 7636 §4.1 and §4.2).
pub(crate) fn is_pkce_text(text: &str) -> bool {
    (43..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// X5: the user still exists, signs in directly and is not disabled.
fn x5_user_still_able<'a>(
    user: Option<&'a UserRecord>,
    judge: &Judge<'_>,
) -> Verdict<&'a UserRecord> {
    let invalid = |cause| deny(judge, "X5", INVALID_CODE, "invalid_code", cause);
    match user {
        None => Err(invalid("unknown_user")),
        Some(u) if u.sign_in == SignIn::Sso => Err(invalid("sso_account")),
        Some(u) if u.disabled => Err(invalid("disabled")),
        Some(u) => Ok(u),
    }
}

/// X1–X5 passed: the tokens of a code's exchange, in the family named after the code, with an
/// ID token when the scope holds `openid`.
pub(super) fn issue_for_code(
    input: &TokenInput,
    keys: &Keys,
    judge: &Judge<'_>,
    pinned: &Pinned<'_>,
    client_id: &str,
    exchanged: Exchanged<'_>,
    kept_input: &mut Option<KeptInput>,
) -> Result<TokenStep, PolicyError> {
    let Exchanged { code, user, scope } = exchanged;
    let openid = code.scopes.iter().any(|s| s == "openid");
    issue(IssueArgs {
        judge,
        ctx: &input.context,
        keys,
        signature: input.signature.as_deref(),
        tenant: pinned.tenant,
        client_id,
        subject: user.subject(),
        scope: &scope,
        refresh: Some((
            GrantType::AuthorizationCode,
            Some(code_family(&code.code_sha256)),
        )),
        username: Some(code.username.clone()),
        effects: vec![Effect::ConsumeCode {
            code_sha256: code.code_sha256.clone(),
        }],
        id_token: openid.then(|| IdTokenArgs {
            auth_time: code.auth_time.unwrap_or(code.issued_at).unix(),
            nonce: code.nonce.as_deref(),
        }),
        id_token_signature: input.id_token_signature.as_deref(),
        kept_input,
    })
}
