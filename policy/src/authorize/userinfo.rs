//! The UserInfo endpoint (OpenID Connect Core §5.3), `GET`/`POST
//! /tenants/{tenant}/connect/userinfo`: for a bearer access token (RFC 6750 §2.1) of this tenant,
//! live, signed by a key that may still verify, whose scope holds `openid`, the signed-in user's
//! `sub` and `preferred_username`. As a step function: `need_verification` (the host checks the
//! signature), `need_records` (the user, by `sub`), then `done`.

use crate::error::PolicyError;
use crate::model::SignIn;
use crate::token::jwt;
use crate::token::manage::ManageInput;
use crate::token::request::HttpRequest;
use crate::token::response::HttpResponse;
use crate::token::steps::{Audit, Decision, Lookup, TokenStep};
use serde_json::json;

/// The realm named in `WWW-Authenticate`.
const REALM: &str = "granted";

/// One step of the UserInfo endpoint: the bearer token, its claims verified, the user it names,
/// then the answer.
pub fn userinfo(input: &ManageInput) -> Result<TokenStep, PolicyError> {
    let http = &input.request;
    let mut audit = Audit {
        decision: "denied".into(),
        rule: "userinfo".into(),
        reason: "invalid_token".into(),
        cause: String::new(),
        grant_type: None,
        tenant: http.tenant.clone(),
        app_id: None,
        client_id: None,
        username: None,
        pinned_rev: None,
    };
    Ok(answer(input, &mut audit).unwrap_or_else(|step| *step))
}

/// The phases in order; each goes on, or ends with the step to answer.
fn answer(input: &ManageInput, audit: &mut Audit) -> Result<TokenStep, Box<TokenStep>> {
    let token = bearer_token(&input.request, audit)?;
    let claims = verified_claims(input, token, audit)?;
    let Some(found) = &input.records.user else {
        return Ok(TokenStep::NeedRecords {
            lookup: Lookup {
                tenant: input.request.tenant.clone(),
                client_id: claims.client_id.clone(),
                username: None,
                refresh_token_sha256: None,
                code_sha256: None,
                consent_app_id: None,
                subject: Some(claims.sub.clone()),
            },
        });
    };
    // A user deleted, disabled or moved to SSO since the token was issued is gone for it.
    let user = match found {
        Some(user) if user.subject() == claims.sub && !user.disabled => user,
        _ => return Err(invalid(audit.clone(), "user_gone")),
    };
    if user.sign_in != SignIn::Direct {
        return Err(invalid(audit.clone(), "user_gone"));
    }
    let mut audit = audit.clone();
    audit.decision = "answered".into();
    audit.reason = "userinfo".into();
    audit.cause = "active".into();
    audit.username = Some(user.username.clone());
    let body = json!({"sub": claims.sub, "preferred_username": user.username});
    Ok(TokenStep::Done(Box::new(Decision {
        response: HttpResponse {
            status: 200,
            headers: vec![
                (
                    "Content-Type".to_string(),
                    "application/json;charset=UTF-8".to_string(),
                ),
                ("Cache-Control".to_string(), "no-store".to_string()),
            ],
            body: crate::json::to_string(&body).unwrap_or_default(),
        },
        audit,
        effects: Vec::new(),
    })))
}

/// RFC 6750 §2.1: `GET` or `POST` with one `Authorization: Bearer` header.
fn bearer_token<'a>(http: &'a HttpRequest, audit: &mut Audit) -> Result<&'a str, Box<TokenStep>> {
    if !matches!(http.method.as_str(), "GET" | "POST") {
        audit.reason = "invalid_request".into();
        return Err(refuse(
            audit.clone(),
            405,
            Some("invalid_request"),
            "use GET or POST",
            "method",
        ));
    }
    let mut authorizations = http
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.as_str());
    let (Some(authorization), None) = (authorizations.next(), authorizations.next()) else {
        // RFC 6750 §3.1: a request without credentials gets the challenge and no error code.
        audit.reason = "invalid_request".into();
        return Err(refuse(
            audit.clone(),
            401,
            None,
            "a bearer access token is required",
            "no_token",
        ));
    };
    match authorization.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => {
            audit.reason = "invalid_request".into();
            Err(refuse(
                audit.clone(),
                401,
                Some("invalid_request"),
                "the Authorization header is not a bearer token",
                "not_bearer",
            ))
        }
    }
}

/// The token's claims: ours, of this tenant, live, signed by a key that may still verify
/// (the host checks the signature when asked), with `openid` in its scope.
fn verified_claims(
    input: &ManageInput,
    token: &str,
    audit: &mut Audit,
) -> Result<jwt::Claims, Box<TokenStep>> {
    let ctx = &input.context;
    let Some(parsed) = jwt::parse(token) else {
        return Err(invalid(audit.clone(), "not_ours"));
    };
    audit.client_id = Some(parsed.claims.client_id.clone());
    let key_ok = ctx
        .verification_keys
        .iter()
        .any(|k| k.kid == parsed.kid && k.alg == parsed.alg);
    if parsed.claims.tenant != input.request.tenant || !key_ok {
        return Err(invalid(audit.clone(), "not_ours"));
    }
    if ctx.now.unix() >= parsed.claims.exp {
        return Err(invalid(audit.clone(), "expired"));
    }
    match input.signature_valid {
        None => {
            return Err(Box::new(TokenStep::NeedVerification {
                alg: parsed.alg,
                kid: parsed.kid,
                signing_input: parsed.signing_input,
                signature: parsed.signature,
            }))
        }
        Some(false) => return Err(invalid(audit.clone(), "bad_signature")),
        Some(true) => {}
    }
    let claims = parsed.claims;
    if !claims.scope.split(' ').any(|s| s == "openid") {
        audit.reason = "insufficient_scope".into();
        return Err(refuse(
            audit.clone(),
            403,
            Some("insufficient_scope"),
            "the access token's scope does not hold `openid`",
            "no_openid_scope",
        ));
    }
    Ok(claims)
}

/// RFC 6750 §3.1's `invalid_token`.
fn invalid(audit: Audit, cause: &str) -> Box<TokenStep> {
    refuse(
        audit,
        401,
        Some("invalid_token"),
        "the access token is not valid here",
        cause,
    )
}

/// A refusal with its `WWW-Authenticate` challenge (RFC 6750 §3).
fn refuse(
    mut audit: Audit,
    status: u16,
    error: Option<&str>,
    description: &str,
    cause: &str,
) -> Box<TokenStep> {
    audit.cause = cause.into();
    let challenge = match error {
        Some(error) => format!(
            "Bearer realm=\"{REALM}\", error=\"{error}\", error_description=\"{description}\""
        ),
        None => format!("Bearer realm=\"{REALM}\""),
    };
    let body = match error {
        Some(error) => json!({"error": error, "error_description": description}),
        None => json!({"error": "invalid_request", "error_description": description}),
    };
    Box::new(TokenStep::Done(Box::new(Decision {
        response: HttpResponse {
            status,
            headers: vec![
                (
                    "Content-Type".to_string(),
                    "application/json;charset=UTF-8".to_string(),
                ),
                ("Cache-Control".to_string(), "no-store".to_string()),
                ("WWW-Authenticate".to_string(), challenge),
            ],
            body: crate::json::to_string(&body).unwrap_or_default(),
        },
        audit,
        effects: Vec::new(),
    })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use serde_json::Value;

    fn input(headers: Vec<(String, String)>) -> ManageInput {
        serde_json::from_value(json!({
            "request": {"method": "GET", "tenant": "acme", "headers": headers},
            "context": {
                "now": "2026-01-01T00:00:00Z",
                "client_secret_key": "",
                "verification_keys": [{"kid": "k1", "alg": "ES256"}],
            },
        }))
        .unwrap()
    }

    fn done(step: TokenStep) -> Decision {
        match step {
            TokenStep::Done(d) => *d,
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn no_token_gets_the_bare_challenge() {
        let d = done(userinfo(&input(Vec::new())).unwrap());
        assert_eq!(d.response.status, 401);
        let challenge = &d
            .response
            .headers
            .iter()
            .find(|(n, _)| n == "WWW-Authenticate")
            .unwrap()
            .1;
        assert_eq!(challenge, "Bearer realm=\"granted\"");
    }

    #[test]
    fn garbage_is_an_invalid_token() {
        let d = done(
            userinfo(&input(vec![(
                "Authorization".into(),
                "Bearer x.y.z".into(),
            )]))
            .unwrap(),
        );
        assert_eq!(d.response.status, 401);
        let body: Value = serde_json::from_str(&d.response.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
    }
}
