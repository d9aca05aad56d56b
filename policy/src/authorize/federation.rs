//! Sign-in at a tenant's identity provider (RULES.md §6): the checks of the federation callback
//! that need no I/O, one function per rule in the spec's order (F1, F2, F3, F6, F7), each
//! answering what it found or the reason code it refuses with. F0 (the redirect), F4 (the
//! provider's token endpoint) and F5 (the ID token's signature) are steps the host carries out;
//! the callback's driver calls these between them.

use crate::model::{FederatedSubject, IdentityProvider, SignIn, Timestamp, UserRecord};
use serde_json::Value;

/// How long a pending federation (F0's state) may wait for its callback.
pub const STATE_LIFETIME_SECONDS: i64 = 600;

/// The clock skew allowed on an ID token's `exp` and `iat` (F6).
pub const SKEW_SECONDS: i64 = 60;

/// What F0 stored for a federation, as F1 reads it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending<'a> {
    /// The tenant whose callback it is.
    pub tenant: &'a str,
    /// When F0 made it.
    pub started_at: Timestamp,
    /// Whether a callback used it already.
    pub used: bool,
}

/// Why a callback is refused, with the RULES.md reason code and, for F6, the claim at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// F1: `invalid_state`.
    InvalidState(&'static str),
    /// F2: `issuer_mismatch`.
    IssuerMismatch,
    /// F3: `upstream_denied`, with the provider's `error`.
    UpstreamDenied(String),
    /// F6: `invalid_id_token`, naming the claim.
    InvalidIdToken(&'static str),
    /// F7: `unknown_account`.
    UnknownAccount,
    /// F7: `username_taken`.
    UsernameTaken,
    /// F7: `account_disabled`.
    AccountDisabled,
}

impl Refused {
    /// The reason code (RULES.md §6).
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::InvalidState(_) => "invalid_state",
            Refused::IssuerMismatch => "issuer_mismatch",
            Refused::UpstreamDenied(_) => "upstream_denied",
            Refused::InvalidIdToken(_) => "invalid_id_token",
            Refused::UnknownAccount => "unknown_account",
            Refused::UsernameTaken => "username_taken",
            Refused::AccountDisabled => "account_disabled",
        }
    }

    /// What the audit records beside the reason: the F1 cause, the provider's error, the claim.
    pub fn cause(&self) -> &str {
        match self {
            Refused::InvalidState(cause) | Refused::InvalidIdToken(cause) => cause,
            Refused::UpstreamDenied(error) => error,
            other => other.reason(),
        }
    }
}

/// F1: the callback's `state` names a pending federation of this tenant, unused and not expired,
/// and the browser carries its cookie (`state_found` is the pending federation looked up by the
/// state's hash; `cookie_matches` whether the browser's cookie is bound to it).
pub fn f1_state(
    state_found: Option<&Pending<'_>>,
    tenant: &str,
    cookie_matches: bool,
    now: Timestamp,
) -> Result<(), Refused> {
    let Some(pending) = state_found else {
        return Err(Refused::InvalidState("unknown_state"));
    };
    if pending.tenant != tenant {
        return Err(Refused::InvalidState("other_tenant"));
    }
    if pending.used {
        return Err(Refused::InvalidState("state_reused"));
    }
    if now.unix()
        >= pending
            .started_at
            .unix()
            .saturating_add(STATE_LIFETIME_SECONDS)
    {
        return Err(Refused::InvalidState("state_expired"));
    }
    if !cookie_matches {
        return Err(Refused::InvalidState("cookie_missing"));
    }
    Ok(())
}

/// F2 (RFC 9207): the callback's `iss`, when it carries one, is the issuer; it must be there when
/// the provider announces `authorization_response_iss_parameter_supported`.
pub fn f2_issuer(iss: Option<&str>, issuer: &str, announced: bool) -> Result<(), Refused> {
    match iss {
        Some(iss) if iss == issuer => Ok(()),
        Some(_) => Err(Refused::IssuerMismatch),
        None if announced => Err(Refused::IssuerMismatch),
        None => Ok(()),
    }
}

/// F3: the provider sent no `error` (a user who cancelled there).
pub fn f3_no_error(error: Option<&str>) -> Result<(), Refused> {
    match error {
        None => Ok(()),
        Some(error) => Err(Refused::UpstreamDenied(
            error.chars().take(64).collect::<String>(),
        )),
    }
}

/// F6: the ID token's claims. `iss` is the issuer; `aud` holds this server's `client_id`, and
/// `azp` equals it when present or when `aud` has several values; `exp` after now and `iat` not
/// after now, each with [`SKEW_SECONDS`]; `nonce` the one F0 sent. The error names the claim.
pub fn f6_claims(
    claims: &Value,
    provider: &IdentityProvider,
    nonce: &str,
    now: Timestamp,
) -> Result<(), Refused> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    if text("iss") != Some(provider.issuer.as_str()) {
        return Err(Refused::InvalidIdToken("iss"));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&provider.client_id.as_str()) {
        return Err(Refused::InvalidIdToken("aud"));
    }
    match text("azp") {
        Some(azp) if azp != provider.client_id => return Err(Refused::InvalidIdToken("azp")),
        None if audiences.len() > 1 => return Err(Refused::InvalidIdToken("azp")),
        _ => {}
    }
    let now = now.unix();
    match number("exp") {
        Some(exp) if exp.saturating_add(SKEW_SECONDS) > now => {}
        _ => return Err(Refused::InvalidIdToken("exp")),
    }
    match number("iat") {
        Some(iat) if iat <= now.saturating_add(SKEW_SECONDS) => {}
        _ => return Err(Refused::InvalidIdToken("iat")),
    }
    if text("nonce") != Some(nonce) {
        return Err(Refused::InvalidIdToken("nonce"));
    }
    if text("sub").is_none_or(str::is_empty) {
        return Err(Refused::InvalidIdToken("sub"));
    }
    Ok(())
}

/// Who F7 signs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Account<'a> {
    /// The user linked to this subject already.
    Linked(&'a UserRecord),
    /// An `sso` user of that name, linked now (`account_linked`).
    LinkNow(&'a UserRecord, FederatedSubject),
    /// A new `sso` user of that name (`account_provisioned`).
    Provision(String, FederatedSubject),
}

/// F7: the tenant's user with this `federated_subject`; else, with `link_existing`, the `sso`
/// user named by the `username_claim` that has no `federated_subject` yet (a `direct` user is
/// never linked); else, with `provision`, a new `sso` user named by the claim; else none. The
/// user is not disabled. `by_subject` is the user carrying this subject, `by_name` the user
/// named by the claim, as the host found them.
pub fn f7_account<'a>(
    provider: &IdentityProvider,
    claims: &Value,
    by_subject: Option<&'a UserRecord>,
    by_name: Option<&'a UserRecord>,
) -> Result<Account<'a>, Refused> {
    if let Some(user) = by_subject {
        return not_disabled(user).map(Account::Linked);
    }
    let subject = FederatedSubject {
        iss: provider.issuer.clone(),
        sub: claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    };
    let name = claims
        .get(&provider.username_claim)
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let Some(name) = name else {
        return Err(Refused::UnknownAccount);
    };
    match by_name {
        Some(user) if provider.link_existing => {
            if user.sign_in != SignIn::Sso || user.federated_subject.is_some() {
                return Err(Refused::UsernameTaken);
            }
            not_disabled(user).map(|user| Account::LinkNow(user, subject))
        }
        Some(_) if provider.provision => Err(Refused::UsernameTaken),
        Some(_) => Err(Refused::UnknownAccount),
        None if provider.provision => Ok(Account::Provision(name.to_string(), subject)),
        None => Err(Refused::UnknownAccount),
    }
}

fn not_disabled(user: &UserRecord) -> Result<&UserRecord, Refused> {
    if user.disabled {
        Err(Refused::AccountDisabled)
    } else {
        Ok(user)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests
mod tests {
    use super::*;
    use crate::model::{default_provider_scopes, default_username_claim};
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn provider(link_existing: bool, provision: bool) -> IdentityProvider {
        IdentityProvider {
            issuer: "https://idp.globex.example".into(),
            client_id: "granted-globex".into(),
            scopes: default_provider_scopes(),
            username_claim: default_username_claim(),
            link_existing,
            provision,
        }
    }

    fn claims() -> Value {
        json!({
            "iss": "https://idp.globex.example", "sub": "248289761001",
            "aud": "granted-globex", "exp": 1_795_000_000, "iat": 1_794_999_000,
            "nonce": "n-1", "preferred_username": "carol"
        })
    }

    fn user(name: &str, sign_in: SignIn, linked: bool, disabled: bool) -> UserRecord {
        UserRecord {
            username: name.into(),
            sub: None,
            sign_in,
            password_hash: None,
            password_changed_at: None,
            disabled,
            locked_until: None,
            federated_subject: linked.then(|| FederatedSubject {
                iss: "https://idp.globex.example".into(),
                sub: "someone".into(),
            }),
        }
    }

    #[test]
    fn f1_refuses_unknown_foreign_used_expired_and_cookieless_states() {
        let now = at("2026-11-25T12:00:00Z");
        let pending = |tenant, started: &str, used| Pending {
            tenant,
            started_at: at(started),
            used,
        };
        let fresh = pending("globex", "2026-11-25T11:59:00Z", false);
        assert_eq!(f1_state(Some(&fresh), "globex", true, now), Ok(()));
        for (found, cookie, cause) in [
            (None, true, "unknown_state"),
            (
                Some(pending("acme", "2026-11-25T11:59:00Z", false)),
                true,
                "other_tenant",
            ),
            (
                Some(pending("globex", "2026-11-25T11:59:00Z", true)),
                true,
                "state_reused",
            ),
            (
                Some(pending("globex", "2026-11-25T11:50:00Z", false)),
                true,
                "state_expired",
            ),
            (Some(fresh.clone()), false, "cookie_missing"),
        ] {
            assert_eq!(
                f1_state(found.as_ref(), "globex", cookie, now),
                Err(Refused::InvalidState(cause))
            );
        }
    }

    #[test]
    fn f2_and_f3_as_rules_section_6_says() {
        let issuer = "https://idp.globex.example";
        assert_eq!(f2_issuer(Some(issuer), issuer, true), Ok(()));
        assert_eq!(f2_issuer(None, issuer, false), Ok(()));
        assert_eq!(f2_issuer(None, issuer, true), Err(Refused::IssuerMismatch));
        assert_eq!(
            f2_issuer(Some("https://evil"), issuer, false),
            Err(Refused::IssuerMismatch)
        );
        assert_eq!(f3_no_error(None), Ok(()));
        assert_eq!(
            f3_no_error(Some("access_denied")).unwrap_err().reason(),
            "upstream_denied"
        );
    }

    #[test]
    fn f6_names_the_claim_that_fails() {
        let p = provider(false, false);
        let now = at("2026-11-18T11:00:00Z"); // `exp` 1_795_000_000 is 2026-11-18T11:06:40Z
        assert_eq!(f6_claims(&claims(), &p, "n-1", now), Ok(()));
        let cases: [(&str, Value, &str); 9] = [
            ("iss", json!("https://other.example"), "iss"),
            ("aud", json!("someone-else"), "aud"),
            ("aud", json!(["granted-globex", "other"]), "azp"),
            ("azp", json!("other"), "azp"),
            ("exp", json!(1_700_000_000), "exp"),
            ("iat", json!(1_800_000_000), "iat"),
            ("nonce", json!("n-2"), "nonce"),
            ("sub", json!(""), "sub"),
            ("exp", json!("soon"), "exp"),
        ];
        for (claim, value, named) in cases {
            let mut c = claims();
            c[claim] = value;
            assert_eq!(
                f6_claims(&c, &p, "n-1", now),
                Err(Refused::InvalidIdToken(named)),
                "{claim}"
            );
        }
        let mut both = claims();
        both["aud"] = json!(["granted-globex", "other"]);
        both["azp"] = json!("granted-globex");
        assert_eq!(f6_claims(&both, &p, "n-1", now), Ok(()));
        let mut missing = claims();
        missing.as_object_mut().unwrap().remove("nonce");
        assert_eq!(
            f6_claims(&missing, &p, "n-1", now),
            Err(Refused::InvalidIdToken("nonce"))
        );
        // The skew: an `exp` 59 s past and an `iat` 59 s ahead still pass.
        let edge = at("2026-11-18T11:07:39Z");
        let mut skewed = claims();
        skewed["iat"] = json!(edge.unix() + 59);
        assert_eq!(f6_claims(&skewed, &p, "n-1", edge), Ok(()));
        let late = at("2026-11-18T11:07:40Z");
        assert_eq!(
            f6_claims(&claims(), &p, "n-1", late),
            Err(Refused::InvalidIdToken("exp"))
        );
    }

    #[test]
    fn f7_links_provisions_and_never_takes_over_a_direct_account() {
        let c = claims();
        let linked = user("carol", SignIn::Sso, true, false);
        assert_eq!(
            f7_account(&provider(false, false), &c, Some(&linked), None),
            Ok(Account::Linked(&linked))
        );
        let sso = user("carol", SignIn::Sso, false, false);
        assert!(matches!(
            f7_account(&provider(true, false), &c, None, Some(&sso)),
            Ok(Account::LinkNow(u, s)) if u.username == "carol" && s.sub == "248289761001"
        ));
        let direct = user("carol", SignIn::Direct, false, false);
        assert_eq!(
            f7_account(&provider(true, true), &c, None, Some(&direct)),
            Err(Refused::UsernameTaken)
        );
        let other_link = user("carol", SignIn::Sso, true, false);
        assert_eq!(
            f7_account(&provider(true, false), &c, None, Some(&other_link)),
            Err(Refused::UsernameTaken)
        );
        assert_eq!(
            f7_account(&provider(false, true), &c, None, Some(&sso)),
            Err(Refused::UsernameTaken),
            "provisioning never takes a name in use"
        );
        assert!(matches!(
            f7_account(&provider(false, true), &c, None, None),
            Ok(Account::Provision(name, _)) if name == "carol"
        ));
        assert_eq!(
            f7_account(&provider(false, false), &c, None, None),
            Err(Refused::UnknownAccount)
        );
        let disabled = user("carol", SignIn::Sso, true, true);
        assert_eq!(
            f7_account(&provider(false, false), &c, Some(&disabled), None),
            Err(Refused::AccountDisabled)
        );
    }
}
