//! The authorization request's checks, C1–C8 of RULES.md §5, one function each and in that
//! order. Until C3 passes the user sees an error page; from C4 on, errors go back to the
//! redirect URI.

use super::verdict::{decision, End, Verdict};
use super::{AuthorizeRequest, Page};
use crate::model::{ClientRecord, GrantType, Revision, TenantRecord};
use crate::rules::redirect;
use crate::token::exchange::is_pkce_text;
use crate::token::judge::Judge;
use crate::token::request::{form_encode, quote};
use crate::token::rules::scope_tokens;
use crate::token::steps::Records;

/// At most this many bytes in one query parameter's value.
const MAX_VALUE: usize = 2048;

/// An authorization request that passed C1–C8: what the pages and the code are bound to.
#[derive(Debug)]
pub struct Authorized<'a> {
    /// The tenant.
    pub tenant: &'a TenantRecord,
    /// The client and its app.
    pub client: &'a ClientRecord,
    /// The revision the tenant pins.
    pub revision: &'a Revision,
    /// Where the user goes back to.
    pub redirect_uri: &'a str,
    /// The `redirect_uri` as sent, if it was (X3 compares with it).
    pub redirect_uri_sent: Option<&'a str>,
    /// The client's `state`, returned as it came.
    pub state: Option<&'a str>,
    /// The PKCE challenge (S256).
    pub code_challenge: &'a str,
    /// The scopes asked for, without repeats.
    pub scopes: Vec<String>,
    /// The OpenID Connect `nonce`, if sent.
    pub nonce: Option<&'a str>,
}

/// The query's parameters, each sent once.
pub(super) struct Query<'a>(&'a [(String, String)]);

impl<'a> Query<'a> {
    pub(super) fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// C1: no repeated parameter, no value too long, and a `client_id`.
pub(super) fn c1_well_formed<'a>(
    request: &'a AuthorizeRequest,
    judge: &mut Judge<'a>,
) -> Verdict<(Query<'a>, &'a str)> {
    let query = &request.query;
    let repeated = query
        .iter()
        .enumerate()
        .find(|(i, (k, _))| query.iter().skip(i + 1).any(|(other, _)| other == k));
    if let Some((_, (name, _))) = repeated {
        let why = format!("the `{}` parameter is repeated", quote(name));
        return Err(error_page(
            judge,
            "C1",
            "malformed_request",
            "malformed_request",
            &why,
        ));
    }
    if let Some((name, _)) = query.iter().find(|(_, v)| v.len() > MAX_VALUE) {
        let why = format!(
            "the `{}` parameter is longer than {MAX_VALUE} bytes",
            quote(name)
        );
        return Err(error_page(
            judge,
            "C1",
            "malformed_request",
            "malformed_request",
            &why,
        ));
    }
    let query = Query(query);
    let Some(client_id) = query.get("client_id") else {
        return Err(error_page(
            judge,
            "C1",
            "malformed_request",
            "malformed_request",
            "the `client_id` parameter is missing",
        ));
    };
    judge.client_id = Some(client_id);
    Ok((query, client_id))
}

/// C2: the tenant exists and installs the app whose pinned revision has this `client_id`.
pub(super) fn c2_client<'a>(
    tenant_name: &str,
    client_id: &str,
    records: &'a Records,
    judge: &mut Judge<'a>,
) -> Verdict<(&'a TenantRecord, &'a ClientRecord, &'a Revision)> {
    let tenant = records
        .tenant
        .as_ref()
        .and_then(Option::as_ref)
        .filter(|t| t.tenant == tenant_name);
    let client = records
        .client
        .as_ref()
        .and_then(Option::as_ref)
        .filter(|c| c.client_id == client_id);
    judge.app_id = client.map(|c| c.app.app_id.as_str());
    let unknown = |judge: &Judge<'_>, reason, cause| {
        let why = "this app is not known to this tenant: the link that brought you here is wrong";
        error_page(judge, "C2", reason, cause, why)
    };
    let (tenant, client) = match (tenant, client) {
        (None, _) => return Err(unknown(judge, "invalid_client", "unknown_tenant")),
        (_, None) => return Err(unknown(judge, "invalid_client", "unknown_client")),
        (Some(t), Some(c)) => (t, c),
    };
    let app = &client.app;
    let Some(install) = tenant.installs.iter().find(|i| i.app_id == app.app_id) else {
        return Err(unknown(judge, "client_not_installed", "app_not_installed"));
    };
    judge.pinned_rev = Some(install.rev);
    match app.revision(install.rev) {
        Some((_, revision)) if revision.client_id == client_id => Ok((tenant, client, revision)),
        Some(_) => Err(unknown(
            judge,
            "client_not_installed",
            "client_id_not_pinned",
        )),
        None => Err(unknown(
            judge,
            "client_not_installed",
            "pinned_revision_missing",
        )),
    }
}

/// C3: the `redirect_uri` is one the pinned revision registers (a loopback one in any port), or
/// is left out while exactly one is registered.
pub(super) fn c3_redirect_uri<'a>(
    query: &Query<'a>,
    revision: &'a Revision,
    judge: &Judge<'_>,
) -> Verdict<&'a str> {
    let sent = query.get("redirect_uri");
    redirect::matching(&revision.redirect_uris, sent)
        // The user goes back to the URI as sent: a loopback one in the port the app listens on
        // now (RFC 8252 §7.3), not the registered one's.
        .map(|registered| sent.unwrap_or(registered))
        .ok_or_else(|| {
            let (cause, why) = match sent {
                Some(_) => (
                    "redirect_uri_not_registered",
                    "the redirect URI is not one this app registered, so you are not sent there",
                ),
                None => (
                    "redirect_uri_missing",
                    "the request names no redirect URI, and this app does not register exactly one",
                ),
            };
            error_page(judge, "C3", "invalid_redirect_uri", cause, why)
        })
}

/// Where errors from C4 on go: the redirect URI, with the client's `state` and the issuer.
pub(super) struct Back<'a> {
    pub(super) redirect_uri: &'a str,
    pub(super) state: Option<&'a str>,
    pub(super) issuer: &'a str,
}

impl Back<'_> {
    /// The redirect URI with `params`, then `state` and `iss` (RFC 9207).
    pub(super) fn location(&self, params: &[(&str, &str)]) -> String {
        let mut out = String::from(self.redirect_uri);
        let mut sep = if self.redirect_uri.contains('?') {
            '&'
        } else {
            '?'
        };
        let state = self.state.map(|s| ("state", s));
        let all = params
            .iter()
            .copied()
            .chain(state)
            .chain([("iss", self.issuer)]);
        for (name, value) in all {
            out.push(sep);
            out.push_str(name);
            out.push('=');
            out.push_str(&form_encode(value));
            sep = '&';
        }
        out
    }

    /// An error response at the redirect URI (RFC 6749 §4.1.2.1).
    pub(super) fn error(
        &self,
        judge: &Judge<'_>,
        rule: &str,
        error: &str,
        reason: &str,
        description: &str,
    ) -> End {
        let location = self.location(&[("error", error), ("error_description", description)]);
        End::step(decision(
            Page::Redirect { location },
            judge.audit("denied", rule, reason, reason),
            Vec::new(),
            None,
        ))
    }
}

/// C4: `response_type=code`; the implicit grant's `token` is named as such.
pub(super) fn c4_response_type(
    query: &Query<'_>,
    back: &Back<'_>,
    judge: &Judge<'_>,
) -> Verdict<()> {
    match query.get("response_type") {
        Some("code") => Ok(()),
        Some(t) if t.split(' ').any(|part| part == "token") => Err(back.error(
            judge,
            "C4",
            "unsupported_response_type",
            "implicit_not_issued",
            "the implicit grant puts tokens in URLs and is never issued: use `response_type=code` with PKCE",
        )),
        _ => Err(back.error(
            judge,
            "C4",
            "unsupported_response_type",
            "unsupported_response_type",
            "only `response_type=code` is supported",
        )),
    }
}

/// C5: the pinned revision uses the authorization code grant.
pub(super) fn c5_code_app(revision: &Revision, back: &Back<'_>, judge: &Judge<'_>) -> Verdict<()> {
    if revision.grant_type == GrantType::AuthorizationCode {
        return Ok(());
    }
    let why = format!(
        "this app (revision {}) uses the `{}` grant type, not `authorization_code`",
        revision.rev,
        revision.grant_type.as_str()
    );
    Err(back.error(
        judge,
        "C5",
        "unauthorized_client",
        "grant_type_mismatch",
        &why,
    ))
}

/// C6: a PKCE challenge of 43–128 unreserved characters, with the method `S256`.
pub(super) fn c6_pkce<'a>(
    query: &Query<'a>,
    back: &Back<'_>,
    judge: &Judge<'_>,
) -> Verdict<&'a str> {
    let challenge = query.get("code_challenge").filter(|c| is_pkce_text(c));
    match (challenge, query.get("code_challenge_method")) {
        (Some(challenge), Some("S256")) => Ok(challenge),
        _ => Err(back.error(
            judge,
            "C6",
            "invalid_request",
            "pkce_required",
            "PKCE is required: send a `code_challenge` of 43 to 128 characters with `code_challenge_method=S256`",
        )),
    }
}

/// C7: the scope asked for is among the revision's (absent: all of them); `openid` is always
/// allowed.
pub(super) fn c7_scope(
    query: &Query<'_>,
    revision: &Revision,
    back: &Back<'_>,
    judge: &Judge<'_>,
) -> Verdict<Vec<String>> {
    let asked: Vec<&str> = match query.get("scope") {
        None => revision.scopes.iter().map(String::as_str).collect(),
        Some(text) => scope_tokens(text).ok_or_else(|| {
            let why = format!("the scope `{}` is not a list of scope tokens", quote(text));
            back.error(judge, "C7", "invalid_scope", "invalid_scope", &why)
        })?,
    };
    let mut scopes: Vec<String> = Vec::with_capacity(asked.len());
    for token in asked {
        if token != "openid" && !revision.scopes.iter().any(|s| s == token) {
            let why = format!("the scope `{}` is not granted to this app", quote(token));
            return Err(back.error(judge, "C7", "invalid_scope", "invalid_scope", &why));
        }
        if !scopes.iter().any(|s| s == token) {
            scopes.push(token.to_string());
        }
    }
    Ok(scopes)
}

/// C8: the tenant does not require single sign-on (this server hosts no federation yet).
pub(super) fn c8_no_sso(tenant: &TenantRecord, back: &Back<'_>, judge: &Judge<'_>) -> Verdict<()> {
    if !tenant.sso_required {
        return Ok(());
    }
    Err(back.error(
        judge,
        "C8",
        "access_denied",
        "sso_required",
        "this tenant requires single sign-on, which this server does not offer yet",
    ))
}

/// An error page (C1–C3).
fn error_page(judge: &Judge<'_>, rule: &str, reason: &str, cause: &str, description: &str) -> End {
    let error = if reason == "malformed_request" || reason == "invalid_redirect_uri" {
        "invalid_request"
    } else {
        "invalid_client"
    };
    End::step(decision(
        Page::Error {
            status: 400,
            error: error.into(),
            description: description.into(),
        },
        judge.audit("denied", rule, reason, cause),
        Vec::new(),
        None,
    ))
}
