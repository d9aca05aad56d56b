//! The authorization transaction: what the pages carry from one form to the next, kept in a
//! short-lived `HttpOnly`, `SameSite=Lax` cookie that the server MACs (so the user's browser
//! holds it, every host of a shared store can read it, and nobody can forge a signed-in user),
//! and the CSRF token its forms carry, bound to it.
//!
//! The cookie holds a random id, the SHA-256 of the authorization request it belongs to, its
//! expiry and who signed in (the module's [`SignedIn`]); no password, no code. The MAC key is
//! derived from the store's client-secret key with a label of its own, so it is shared by every
//! host and never used for anything else.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use granted_policy::authorize::SignedIn;
use ring::hmac;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The cookie's name.
pub const COOKIE: &str = "granted_authorize";
/// How long a transaction lasts from the authorization URL's opening (seconds).
pub(crate) const LIFETIME_SECONDS: i64 = 600;
/// What the MAC key is derived for.
const LABEL: &[u8] = b"granted authorization transaction v1";

/// What a transaction holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Transaction {
    /// Random, per opening of the authorization URL; the CSRF token is bound to it.
    pub(crate) id: String,
    /// SHA-256 (base64url) of the authorization request's query: a transaction goes with the
    /// request it was opened for, never another app's.
    pub(crate) request: String,
    /// Seconds since the epoch after which the transaction is over.
    pub(crate) expires: i64,
    /// Who signed in, as the module said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signed_in: Option<SignedIn>,
}

/// The key that MACs transactions and CSRF tokens.
pub(crate) struct TransactionKey(hmac::Key);

impl TransactionKey {
    /// Derived from the store's client-secret key.
    pub(crate) fn derive(client_secret_key: &str) -> TransactionKey {
        let root = hmac::Key::new(hmac::HMAC_SHA256, client_secret_key.as_bytes());
        let derived = hmac::sign(&root, LABEL);
        TransactionKey(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    /// The cookie's value for `tx`.
    pub(crate) fn seal(&self, tx: &Transaction) -> String {
        // A struct of strings and numbers always serializes.
        let json = serde_json::to_vec(tx).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = hmac::sign(&self.0, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The transaction in a cookie's value, if its MAC holds and it has not expired at `now`.
    pub(crate) fn open(&self, value: &str, now: i64) -> Option<Transaction> {
        let (payload, tag) = value.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.0, payload.as_bytes(), &tag).ok()?;
        let tx: Transaction =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (now < tx.expires).then_some(tx)
    }

    /// The CSRF token the forms of transaction `id` carry.
    pub(crate) fn csrf(&self, id: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.0, &csrf_message(id)).as_ref())
    }

    /// Whether `token` is the CSRF token of transaction `id` (in constant time).
    pub(crate) fn csrf_holds(&self, id: &str, token: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(token) {
            Ok(tag) => hmac::verify(&self.0, &csrf_message(id), &tag).is_ok(),
            Err(_) => false,
        }
    }
}

fn csrf_message(id: &str) -> Vec<u8> {
    let mut message = b"csrf\0".to_vec();
    message.extend_from_slice(id.as_bytes());
    message
}

/// The SHA-256 (base64url) of an authorization request's raw query.
pub(crate) fn request_digest(query: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(query.as_bytes()))
}

/// The `Set-Cookie` value for `value` on the authorization endpoint's path; `secure` behind
/// https. An empty `value` with `max_age` 0 ends the transaction.
pub(crate) fn set_cookie(path: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The transaction cookie's value among a request's `Cookie` headers.
pub(crate) fn cookie_value(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx() -> Transaction {
        Transaction {
            id: "abc".into(),
            request: request_digest("client_id=a"),
            expires: 1_000,
            signed_in: Some(SignedIn {
                username: "alice".into(),
                auth_time: 900,
                must_change_password: false,
            }),
        }
    }

    #[test]
    fn a_sealed_transaction_opens_until_it_expires() {
        let key = TransactionKey::derive("k");
        let sealed = key.seal(&tx());
        assert_eq!(key.open(&sealed, 999), Some(tx()));
        assert_eq!(key.open(&sealed, 1_000), None);
    }

    #[test]
    fn a_changed_or_foreign_cookie_does_not_open() {
        let key = TransactionKey::derive("k");
        let sealed = key.seal(&tx());
        let (payload, tag) = sealed.split_once('.').unwrap();
        let mut forged = tx();
        forged.signed_in.as_mut().unwrap().username = "mallory".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(key.open(&format!("{forged_payload}.{tag}"), 0), None);
        assert_eq!(TransactionKey::derive("other").open(&sealed, 0), None);
        assert_eq!(key.open(payload, 0), None);
        assert_eq!(key.open("", 0), None);
    }

    #[test]
    fn the_csrf_token_is_bound_to_its_transaction() {
        let key = TransactionKey::derive("k");
        let token = key.csrf("abc");
        assert!(key.csrf_holds("abc", &token));
        assert!(!key.csrf_holds("abd", &token));
        assert!(!key.csrf_holds("abc", ""));
        assert!(!key.csrf_holds("abc", "not base64 !"));
        assert!(!TransactionKey::derive("other").csrf_holds("abc", &token));
    }

    #[test]
    fn the_cookie_is_http_only_and_lax() {
        let set = set_cookie("/tenants/acme/connect/authorize", "v", 600, true);
        assert_eq!(
            set,
            "granted_authorize=v; Path=/tenants/acme/connect/authorize; Max-Age=600; HttpOnly; SameSite=Lax; Secure"
        );
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "other=1; granted_authorize=xyz.abc".parse().unwrap(),
        );
        assert_eq!(cookie_value(&headers).as_deref(), Some("xyz.abc"));
    }
}
