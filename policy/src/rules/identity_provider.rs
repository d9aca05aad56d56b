//! A tenant's identity provider (RULES.md §6): what an admin may store (A9).

use super::edit::is_scope_token;
use super::redirect::{is_loopback, Parts};
use crate::model::IdentityProvider;
use serde::{Deserialize, Serialize};

/// The reason code of every A9 refusal.
pub const INVALID_IDENTITY_PROVIDER: &str = "invalid_identity_provider";

/// At most this many bytes in an issuer URL.
pub const MAX_ISSUER_LEN: usize = 2048;

/// At most this many bytes in the `client_id` and the `username_claim`.
pub const MAX_NAME_LEN: usize = 255;

/// At most this many scopes.
pub const MAX_SCOPES: usize = 32;

/// What A9 says of a provider an admin proposes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderCheck {
    /// Whether it may be stored.
    pub accepted: bool,
    /// `invalid_identity_provider` when it may not.
    pub reason: Option<String>,
    /// The rule that decided (`A9`).
    pub rule: String,
    /// Why, in words.
    pub explanation: String,
}

/// A9: may `provider` be stored?
pub fn check(provider: &IdentityProvider) -> ProviderCheck {
    match problem(provider) {
        None => ProviderCheck {
            accepted: true,
            reason: None,
            rule: "A9".into(),
            explanation: format!(
                "A9: accepted; users of this tenant can sign in at `{}`",
                provider.issuer.escape_default()
            ),
        },
        Some(why) => ProviderCheck {
            accepted: false,
            reason: Some(INVALID_IDENTITY_PROVIDER.into()),
            rule: "A9".into(),
            explanation: format!("A9: rejected; {why}"),
        },
    }
}

/// A9: why `provider` may not be stored, in words; `None` when it may.
pub fn problem(provider: &IdentityProvider) -> Option<String> {
    if let Some(why) = issuer_problem(&provider.issuer) {
        return Some(why);
    }
    if let Some(why) = name_problem("client_id", &provider.client_id) {
        return Some(why);
    }
    if let Some(why) = name_problem("username_claim", &provider.username_claim) {
        return Some(why);
    }
    if provider.scopes.len() > MAX_SCOPES {
        return Some(format!("at most {MAX_SCOPES} scopes may be asked for"));
    }
    if let Some(bad) = provider.scopes.iter().find(|s| !is_scope_token(s)) {
        return Some(format!(
            "the scope `{}` is not a scope token (RFC 6749 §3.3)",
            bad.escape_default()
        ));
    }
    if !provider.scopes.iter().any(|s| s == "openid") {
        return Some("the scopes must hold `openid`: the sign-in is OpenID Connect".into());
    }
    None
}

/// The issuer: an absolute `https` URL without query or fragment (`http` only on a loopback
/// host), as OpenID Connect Discovery §3 asks of an issuer.
fn issuer_problem(issuer: &str) -> Option<String> {
    let shown = issuer.escape_default();
    if issuer.is_empty() || issuer.len() > MAX_ISSUER_LEN {
        return Some(format!("the issuer must be 1 to {MAX_ISSUER_LEN} bytes"));
    }
    if issuer.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Some(format!(
            "the issuer `{shown}` has a space, a control character or a non-ASCII character"
        ));
    }
    if issuer.contains('?') || issuer.contains('#') {
        return Some(format!(
            "the issuer `{shown}` has a query or a fragment (OpenID Connect Discovery §3)"
        ));
    }
    let Some(parts) = Parts::of(issuer) else {
        return Some(not_absolute(&shown));
    };
    let host = match parts.host {
        Some(host) if !host.is_empty() => host,
        _ => return Some(not_absolute(&shown)),
    };
    if !(parts.rest.is_empty() || parts.rest.starts_with('/')) {
        return Some(not_absolute(&shown));
    }
    match parts.scheme.as_str() {
        "https" => None,
        "http" if is_loopback(host) => None,
        "http" => Some(format!(
            "the issuer `{shown}` uses `http` on a host that is not loopback: use `https`"
        )),
        _ => Some(not_absolute(&shown)),
    }
}

/// `127.0.0.1`, `[::1]` or `localhost`: the hosts an issuer, and every URL its metadata names,
/// may reach over plain `http` (RFC 8252 §7.3).
pub fn is_loopback_host(host: &str) -> bool {
    is_loopback(host)
}

fn not_absolute(shown: &impl std::fmt::Display) -> String {
    format!("the issuer `{shown}` is not an absolute `https` URL with a host")
}

/// A name this server sends or reads: 1 to [`MAX_NAME_LEN`] visible ASCII characters.
fn name_problem(field: &str, value: &str) -> Option<String> {
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Some(format!("`{field}` must be 1 to {MAX_NAME_LEN} bytes"));
    }
    if value.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Some(format!(
            "`{field}` `{}` has a space, a control character or a non-ASCII character",
            value.escape_default()
        ));
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests
mod tests {
    use super::*;
    use crate::model::{default_provider_scopes, default_username_claim};

    fn provider(issuer: &str) -> IdentityProvider {
        IdentityProvider {
            issuer: issuer.into(),
            client_id: "granted-acme".into(),
            scopes: default_provider_scopes(),
            username_claim: default_username_claim(),
            link_existing: false,
            provision: false,
        }
    }

    #[test]
    fn a9_accepts_https_and_loopback_http_issuers() {
        for issuer in [
            "https://idp.acme.example",
            "https://idp.acme.example/",
            "https://login.example/tenant/v2.0",
            "https://idp.example:8443/realms/acme",
            "http://127.0.0.1:9000",
            "http://localhost:9000/oidc",
            "http://[::1]:9000",
        ] {
            assert_eq!(problem(&provider(issuer)), None, "{issuer}");
        }
    }

    #[test]
    fn a9_refuses_plain_http_queries_fragments_and_relative_issuers() {
        for issuer in [
            "",
            "http://idp.acme.example",
            "https://idp.acme.example?tenant=1",
            "https://idp.acme.example#x",
            "idp.acme.example",
            "/relative",
            "https://",
            "https://user@idp.acme.example",
            "ftp://idp.acme.example",
            "https://idp acme.example",
        ] {
            let checked = check(&provider(issuer));
            assert!(!checked.accepted, "{issuer}");
            assert_eq!(checked.reason.as_deref(), Some(INVALID_IDENTITY_PROVIDER));
        }
    }

    #[test]
    fn a9_needs_openid_a_client_id_and_a_username_claim() {
        let mut p = provider("https://idp.acme.example");
        p.scopes = vec!["profile".into()];
        assert!(problem(&p).unwrap().contains("openid"));
        let mut p = provider("https://idp.acme.example");
        p.client_id = String::new();
        assert!(problem(&p).unwrap().contains("client_id"));
        let mut p = provider("https://idp.acme.example");
        p.username_claim = String::new();
        assert!(problem(&p).unwrap().contains("username_claim"));
        let mut p = provider("https://idp.acme.example");
        p.scopes.push("bad scope".into());
        assert!(problem(&p).unwrap().contains("scope token"));
    }

    #[test]
    fn a9_defaults_are_those_of_rules_section_6() {
        let p: IdentityProvider = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.acme.example", "client_id": "granted-acme"
        }))
        .unwrap();
        assert_eq!(p.scopes, ["openid", "profile", "email"]);
        assert_eq!(p.username_claim, "preferred_username");
        assert!(!p.link_existing && !p.provision);
        assert!(check(&p).accepted);
    }
}
