//! Client secrets: stored as HMAC-SHA256 under a server key, checked in constant time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `secret` under `key`, the raw 32 bytes.
pub fn hmac_bytes(key: &[u8], secret: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail; the fallback keeps that proof local.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(secret);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0u8; 32],
    }
}

/// What the host stores for a client secret: its HMAC under the server key, base64.
pub fn hash_client_secret(key: &[u8], secret: &str) -> String {
    STANDARD.encode(hmac_bytes(key, secret.as_bytes()))
}

/// Whether `presented` is the secret whose stored HMAC is `stored_b64`. The HMAC is computed
/// and compared whatever `stored_b64` holds, so that a wrong or unknown client costs the same.
pub fn verify_client_secret(key: &[u8], presented: &str, stored_b64: Option<&str>) -> bool {
    let computed = hmac_bytes(key, presented.as_bytes());
    let stored = stored_b64
        .and_then(|s| STANDARD.decode(s).ok())
        .filter(|s| s.len() == 32);
    let (expected, known) = match stored {
        Some(bytes) => (bytes, true),
        None => (vec![0u8; 32], false),
    };
    let equal: bool = computed.ct_eq(expected.as_slice()).into();
    equal && known
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 4231 §4.2, test case 1.
    #[test]
    fn rfc4231_case_1() {
        let key = [0x0bu8; 20];
        assert_eq!(
            hex(&hmac_bytes(&key, b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    /// RFC 4231 §4.3, test case 2.
    #[test]
    fn rfc4231_case_2() {
        assert_eq!(
            hex(&hmac_bytes(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_secret_verifies_and_a_wrong_one_does_not() {
        let stored = hash_client_secret(b"k", "s3cret");
        assert!(verify_client_secret(b"k", "s3cret", Some(&stored)));
        assert!(!verify_client_secret(b"k", "s3cret!", Some(&stored)));
        assert!(!verify_client_secret(b"other", "s3cret", Some(&stored)));
        assert!(!verify_client_secret(b"k", "s3cret", None));
        assert!(!verify_client_secret(b"k", "s3cret", Some("not base64!")));
    }
}
