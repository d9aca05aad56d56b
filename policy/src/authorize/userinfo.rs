//! The UserInfo endpoint (OpenID Connect Core §5.3), `GET`/`POST
//! /tenants/{tenant}/connect/userinfo`: for a bearer access token (RFC 6750 §2.1) of this tenant,
//! live, signed by a key that may still verify, whose scope holds `openid`, the signed-in user's
//! `sub` and `preferred_username`. As a step function: `need_verification` (the host checks the
//! signature), `need_records` (the user, by `sub`), then `done`.

use crate::error::PolicyError;
use crate::model::SignIn;
use crate::token::endpoint::{Audit, Decision, Lookup, TokenStep};
use crate::token::jwt;
use crate::token::manage::ManageInput;
use crate::token::response::HttpResponse;
use serde_json::json;

/// The realm named in `WWW-Authenticate`.
const REALM: &str = "granted";

/// One step of the UserInfo endpoint.
pub fn userinfo(input: &ManageInput) -> Result<TokenStep, PolicyError> {
    let http = &input.request;
    let ctx = &input.context;
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
    if !matches!(http.method.as_str(), "GET" | "POST") {
        audit.reason = "invalid_request".into();
        return Ok(refuse(
            audit,
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
        return Ok(refuse(
            audit,
            401,
            None,
            "a bearer access token is required",
            "no_token",
        ));
    };
    let token = match authorization.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            audit.reason = "invalid_request".into();
            return Ok(refuse(
                audit,
                401,
                Some("invalid_request"),
                "the Authorization header is not a bearer token",
                "not_bearer",
            ));
        }
    };
    let now = ctx.now.unix();
    let Some(parsed) = jwt::parse(token) else {
        return Ok(invalid(audit, "not_ours"));
    };
    audit.client_id = Some(parsed.claims.client_id.clone());
    let key_ok = ctx
        .verification_keys
        .iter()
        .any(|k| k.kid == parsed.kid && k.alg == parsed.alg);
    if parsed.claims.tenant != http.tenant || !key_ok {
        return Ok(invalid(audit, "not_ours"));
    }
    if now >= parsed.claims.exp {
        return Ok(invalid(audit, "expired"));
    }
    match input.signature_valid {
        None => {
            return Ok(TokenStep::NeedVerification {
                alg: parsed.alg,
                kid: parsed.kid,
                signing_input: parsed.signing_input,
                signature: parsed.signature,
            })
        }
        Some(false) => return Ok(invalid(audit, "bad_signature")),
        Some(true) => {}
    }
    let claims = parsed.claims;
    if !claims.scope.split(' ').any(|s| s == "openid") {
        audit.reason = "insufficient_scope".into();
        return Ok(refuse(
            audit,
            403,
            Some("insufficient_scope"),
            "the access token's scope does not hold `openid`",
            "no_openid_scope",
        ));
    }
    let Some(found) = &input.records.user else {
        return Ok(TokenStep::NeedRecords {
            lookup: Lookup {
                tenant: http.tenant.clone(),
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
        _ => return Ok(invalid(audit, "user_gone")),
    };
    if user.sign_in != SignIn::Direct {
        return Ok(invalid(audit, "user_gone"));
    }
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

/// RFC 6750 §3.1's `invalid_token`.
fn invalid(audit: Audit, cause: &str) -> TokenStep {
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
) -> TokenStep {
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
    TokenStep::Done(Box::new(Decision {
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
    }))
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
