//! An identity provider's signing keys (RULES.md §6, F5): its JWKS, fetched through
//! [`Upstream`] and kept per `jwks_uri`, fetched again for a `kid` it does not hold at most once a
//! minute (a provider that rotated its keys is followed; a flood of made-up `kid`s is not); and the
//! check of an ID token's signature that the module asks for, by `jsonwebtoken` on `ring`.
//!
//! Only RS256, ES256 (P-256) and EdDSA (Ed25519) are verified, each only with a key of its own
//! type: `none` and every HMAC algorithm are refused before any key is looked at, so an HS256
//! token "signed" with the provider's public key bytes never verifies.

use crate::upstream::{Upstream, UpstreamError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a provider's keys are kept before a `kid` they lack may fetch them again.
pub const REFETCH_AFTER: Duration = Duration::from_secs(60);

/// The algorithms an ID token from a provider may use (F5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdTokenAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl IdTokenAlg {
    /// The algorithm a JWS header names, if F5 allows it (never `none`, never an HMAC).
    pub fn parse(alg: &str) -> Option<IdTokenAlg> {
        match alg {
            "RS256" => Some(IdTokenAlg::RS256),
            "ES256" => Some(IdTokenAlg::ES256),
            "EdDSA" => Some(IdTokenAlg::EdDSA),
            _ => None,
        }
    }

    fn jsonwebtoken(self) -> Algorithm {
        match self {
            IdTokenAlg::RS256 => Algorithm::RS256,
            IdTokenAlg::ES256 => Algorithm::ES256,
            IdTokenAlg::EdDSA => Algorithm::EdDSA,
        }
    }

    /// Whether `jwk` is a key of this algorithm's type (RSA; EC on P-256; OKP Ed25519).
    fn fits(self, jwk: &Jwk) -> bool {
        match (self, &jwk.algorithm) {
            (IdTokenAlg::RS256, AlgorithmParameters::RSA(_)) => true,
            (IdTokenAlg::ES256, AlgorithmParameters::EllipticCurve(ec)) => {
                ec.curve == EllipticCurve::P256
            }
            (IdTokenAlg::EdDSA, AlgorithmParameters::OctetKeyPair(okp)) => {
                okp.curve == EllipticCurve::Ed25519
            }
            _ => false,
        }
    }
}

/// Why a signature could not be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The provider's keys could not be fetched.
    Upstream(UpstreamError),
    /// No key of the token's type with its `kid` (or, without one, not exactly one such key).
    NoKey,
    /// The key or the signature is not well formed.
    Malformed,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::Upstream(e) => write!(f, "the provider's keys: {e}"),
            KeyError::NoKey => write!(f, "the provider publishes no key that fits the token"),
            KeyError::Malformed => write!(f, "the key or the signature is not well formed"),
        }
    }
}

impl std::error::Error for KeyError {}

/// The key in `set` for a token of `alg` naming `kid`; without a `kid`, the only key of that
/// type.
pub fn select<'a>(set: &'a JwkSet, alg: IdTokenAlg, kid: Option<&str>) -> Option<&'a Jwk> {
    let mut fitting = set.keys.iter().filter(|k| alg.fits(k));
    match kid {
        Some(kid) => fitting.find(|k| k.common.key_id.as_deref() == Some(kid)),
        None => match (fitting.next(), fitting.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        },
    }
}

/// Whether `signature` (base64url) is `jwk`'s signature of `signing_input` under `alg`.
pub fn verify(
    alg: IdTokenAlg,
    jwk: &Jwk,
    signing_input: &[u8],
    signature: &str,
) -> Result<bool, KeyError> {
    if !alg.fits(jwk) {
        return Err(KeyError::NoKey);
    }
    if URL_SAFE_NO_PAD.decode(signature).is_err() {
        return Err(KeyError::Malformed);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| KeyError::Malformed)?;
    jsonwebtoken::crypto::verify(signature, signing_input, &key, alg.jsonwebtoken())
        .map_err(|_| KeyError::Malformed)
}

/// Providers' keys, by `jwks_uri`.
pub struct ProviderKeys {
    upstream: Upstream,
    refetch_after: Duration,
    sets: Mutex<HashMap<String, (Instant, JwkSet)>>,
}

impl ProviderKeys {
    /// Keys fetched through `upstream`, fetched again for a missing `kid` after `refetch_after`.
    pub fn new(upstream: Upstream, refetch_after: Duration) -> ProviderKeys {
        ProviderKeys {
            upstream,
            refetch_after,
            sets: Mutex::new(HashMap::new()),
        }
    }

    /// The key for a token of `alg` naming `kid`, from the keys kept for `jwks_uri`, or fetched
    /// (first use, or a key they lack once they are older than `refetch_after`).
    pub fn key(&self, jwks_uri: &str, alg: IdTokenAlg, kid: Option<&str>) -> Result<Jwk, KeyError> {
        let kept = self.kept(jwks_uri);
        if let Some((_, set)) = &kept {
            if let Some(key) = select(set, alg, kid) {
                return Ok(key.clone());
            }
        }
        let stale = kept
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= self.refetch_after);
        if !stale {
            return Err(KeyError::NoKey);
        }
        let set = self.fetch(jwks_uri)?;
        select(&set, alg, kid).cloned().ok_or(KeyError::NoKey)
    }

    fn kept(&self, jwks_uri: &str) -> Option<(Instant, JwkSet)> {
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        sets.get(jwks_uri).cloned()
    }

    fn fetch(&self, jwks_uri: &str) -> Result<JwkSet, KeyError> {
        let answer = self
            .upstream
            .get_json(jwks_uri)
            .map_err(KeyError::Upstream)?;
        if answer.status != 200 {
            return Err(KeyError::Upstream(UpstreamError::Unreachable(format!(
                "the JWKS answered {}",
                answer.status
            ))));
        }
        // Keys of types this server does not know are left out, not a reason to refuse the set.
        let keys = answer
            .body
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or(KeyError::Upstream(UpstreamError::NotJson))?
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .collect();
        let set = JwkSet { keys };
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        sets.insert(jwks_uri.to_string(), (Instant::now(), set.clone()));
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{generate, ServerKey};
    use granted_policy::token::jwt::SigningAlg;

    /// A key of `alg` with its public JWK, as a provider would publish it.
    fn key(alg: SigningAlg, kid: &str) -> (ServerKey, Jwk) {
        let secret = generate(alg).unwrap();
        let key = ServerKey::open(kid, alg, &secret).unwrap();
        let jwk = serde_json::from_value(key.public_jwk().unwrap()).unwrap();
        (key, jwk)
    }

    fn signed(key: &ServerKey, input: &str) -> String {
        URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).unwrap())
    }

    #[test]
    fn rs256_es256_and_eddsa_verify_and_a_changed_input_does_not() {
        for (alg, id_alg) in [
            (SigningAlg::RS256, IdTokenAlg::RS256),
            (SigningAlg::ES256, IdTokenAlg::ES256),
            (SigningAlg::EdDSA, IdTokenAlg::EdDSA),
        ] {
            let (key, jwk) = key(alg, "k1");
            let signature = signed(&key, "header.claims");
            assert_eq!(verify(id_alg, &jwk, b"header.claims", &signature), Ok(true));
            assert_eq!(
                verify(id_alg, &jwk, b"header.claimz", &signature),
                Ok(false)
            );
        }
    }

    #[test]
    fn none_and_hmac_are_refused_and_a_key_of_another_type_is_never_used() {
        for alg in ["none", "HS256", "HS384", "HS512", "RS512", "PS256", ""] {
            assert_eq!(IdTokenAlg::parse(alg), None, "{alg}");
        }
        let (rsa, rsa_jwk) = key(SigningAlg::RS256, "rsa");
        let signature = signed(&rsa, "header.claims");
        // An RS256 signature presented as ES256 or EdDSA: no key of that type, no panic.
        assert_eq!(
            verify(IdTokenAlg::ES256, &rsa_jwk, b"header.claims", &signature),
            Err(KeyError::NoKey)
        );
        assert_eq!(
            verify(IdTokenAlg::EdDSA, &rsa_jwk, b"header.claims", &signature),
            Err(KeyError::NoKey)
        );
        let set = JwkSet {
            keys: vec![rsa_jwk],
        };
        assert!(select(&set, IdTokenAlg::ES256, Some("rsa")).is_none());
    }

    #[test]
    fn a_kid_names_its_key_and_without_one_only_a_lone_key_of_the_type_is_taken() {
        let (_, a) = key(SigningAlg::ES256, "a");
        let (_, b) = key(SigningAlg::ES256, "b");
        let (_, r) = key(SigningAlg::RS256, "r");
        let two = JwkSet {
            keys: vec![a.clone(), b.clone(), r.clone()],
        };
        assert_eq!(select(&two, IdTokenAlg::ES256, Some("b")), Some(&b));
        assert_eq!(select(&two, IdTokenAlg::ES256, Some("z")), None);
        assert_eq!(
            select(&two, IdTokenAlg::ES256, None),
            None,
            "two of that type"
        );
        assert_eq!(select(&two, IdTokenAlg::RS256, None), Some(&r));
    }
}
