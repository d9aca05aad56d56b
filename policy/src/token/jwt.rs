//! Access tokens: JWTs per RFC 9068 (`typ: at+jwt`), signed HS256 with a key the host hands in.

use crate::credentials::client_secret::hmac_bytes;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The claims of RFC 9068 §2.2, plus the tenant.
#[derive(Clone, Debug, Serialize)]
pub struct AccessClaims<'a> {
    /// Issuer: the tenant's issuer URL.
    pub iss: &'a str,
    /// Subject: the user, or the client for `client_credentials`.
    pub sub: &'a str,
    /// Audience.
    pub aud: &'a str,
    /// The client the token was issued to.
    pub client_id: &'a str,
    /// Space-separated scope.
    pub scope: &'a str,
    /// Issued at (seconds).
    pub iat: i64,
    /// Expires at (seconds).
    pub exp: i64,
    /// Unique id.
    pub jti: &'a str,
    /// The tenant the token is valid in.
    pub tenant: &'a str,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// Encodes and signs an access token.
pub fn sign(claims: &AccessClaims<'_>, kid: &str, key: &[u8]) -> String {
    let header = Header {
        alg: "HS256",
        typ: "at+jwt",
        kid,
    };
    // One JSON buffer for both parts and one string for the token, sized for it up front.
    let mut json = Vec::with_capacity(384);
    let _ = crate::json::to_writer(&mut json, &header);
    let header_len = json.len();
    let _ = crate::json::to_writer(&mut json, claims);
    let (header, payload) = json.split_at(header_len);
    let mut token = String::with_capacity((json.len() + 32) * 4 / 3 + 4);
    URL_SAFE_NO_PAD.encode_string(header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = hmac_bytes(key, token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}

/// The claims of an access token this server signed, read back once its signature checks out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Scope.
    pub scope: String,
    /// Issued at.
    pub iat: i64,
    /// Expires at.
    pub exp: i64,
    /// Unique id.
    pub jti: String,
    /// Tenant.
    pub tenant: String,
}

#[derive(Deserialize)]
struct ReadHeader {
    alg: String,
    typ: String,
    kid: String,
}

/// Checks an access token against the keys that may have signed it (`kid`, secret) and reads
/// its claims; `None` for anything not signed by one of them (expiry is the caller's to check).
pub fn verify(token: &str, keys: &[(String, Vec<u8>)]) -> Option<Claims> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let head: ReadHeader = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if head.alg != "HS256" || head.typ != "at+jwt" {
        return None;
    }
    let (_, key) = keys.iter().find(|(kid, _)| *kid == head.kid)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let signing_input = token.get(..header.len() + 1 + payload.len())?;
    let expected = hmac_bytes(key, signing_input.as_bytes());
    if !bool::from(expected.as_slice().ct_eq(signature.as_slice())) {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests
mod tests {
    use super::*;

    #[test]
    fn a_token_has_the_rfc9068_header_and_a_checkable_signature() {
        let claims = AccessClaims {
            iss: "https://granted.test/tenants/acme",
            sub: "alice",
            aud: "api",
            client_id: "crm-1",
            scope: "read",
            iat: 1,
            exp: 3601,
            jti: "j",
            tenant: "acme",
        };
        let token = sign(&claims, "k1", b"key");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["kid"], "k1");
        let body: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(body["sub"], "alice");
        assert_eq!(body["exp"], 3601);
        let mac = hmac_bytes(b"key", format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap(), mac.to_vec());
    }
}
