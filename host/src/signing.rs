//! Access-token signatures, natively: the host's answer to the module's `need_signature` and
//! `need_verification` steps, the keys' public JWKs for the JWKS, their private JWKs for the
//! edge, and new keys. The module never sees a key: it hands over a signing input and gets a
//! signature back.

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use granted_policy::token::jwt::SigningAlg;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair as _};
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// RSA keys made by [`generate`]: 2048 bits, as RFC 7518 §3.3 asks at least.
const RSA_BITS: usize = 2048;

/// The start of the PKCS#8 document ring writes for a P-256 key, up to the private scalar.
const P256_PKCS8_PREFIX: &[u8] = &[
    0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
    0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02,
    0x01, 0x01, 0x04, 0x20,
];
/// The start of the PKCS#8 (v2) document ring writes for an Ed25519 key, up to the seed.
const ED25519_PKCS8_PREFIX: &[u8] = &[
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

enum Signer {
    Es256(sig::EcdsaKeyPair),
    EdDsa(sig::Ed25519KeyPair),
    Rs256(sig::RsaKeyPair),
    Hs256(ring::hmac::Key),
}

/// One signing key, opened and ready: signs, verifies, and gives its JWKs.
pub struct ServerKey {
    kid: String,
    alg: SigningAlg,
    signer: Signer,
    /// The stored form (PKCS#8 DER, or the HMAC key), for the edge's private JWK.
    stored: Zeroizing<Vec<u8>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A new key for `alg`, in its stored form (standard base64 of PKCS#8 DER; for HS256, of 32
/// random bytes).
pub fn generate(alg: SigningAlg) -> Result<Zeroizing<String>> {
    let rng = SystemRandom::new();
    let der: Zeroizing<Vec<u8>> = match alg {
        SigningAlg::ES256 => Zeroizing::new(
            sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| anyhow!("could not make a P-256 key"))?
                .as_ref()
                .to_vec(),
        ),
        SigningAlg::EdDSA => Zeroizing::new(
            sig::Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| anyhow!("could not make an Ed25519 key"))?
                .as_ref()
                .to_vec(),
        ),
        SigningAlg::RS256 => {
            use rsa::pkcs8::EncodePrivateKey as _;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
                .context("making an RSA key")?;
            Zeroizing::new(
                key.to_pkcs8_der()
                    .context("encoding an RSA key")?
                    .as_bytes()
                    .to_vec(),
            )
        }
        SigningAlg::HS256 => {
            let mut bytes = Zeroizing::new(vec![0u8; 32]);
            ring::rand::SecureRandom::fill(&rng, &mut bytes)
                .map_err(|_| anyhow!("no randomness"))?;
            bytes
        }
    };
    Ok(Zeroizing::new(STANDARD.encode(&*der)))
}

impl ServerKey {
    /// Opens key `kid` of algorithm `alg` from its stored form (see [`generate`]).
    pub fn open(kid: &str, alg: SigningAlg, stored: &str) -> Result<ServerKey> {
        let der = Zeroizing::new(
            STANDARD
                .decode(stored.as_bytes())
                .with_context(|| format!("signing key `{kid}` is not base64"))?,
        );
        let rng = SystemRandom::new();
        let bad = |_| anyhow!("signing key `{kid}` is not a usable {} key", alg.name());
        let signer = match alg {
            SigningAlg::ES256 => Signer::Es256(
                sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                    .map_err(bad)?,
            ),
            SigningAlg::EdDSA => {
                Signer::EdDsa(sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(bad)?)
            }
            SigningAlg::RS256 => Signer::Rs256(sig::RsaKeyPair::from_pkcs8(&der).map_err(bad)?),
            SigningAlg::HS256 => {
                if der.len() < 32 {
                    bail!("signing key `{kid}` is shorter than 32 bytes");
                }
                Signer::Hs256(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &der))
            }
        };
        Ok(ServerKey {
            kid: kid.to_string(),
            alg,
            signer,
            stored: der,
            rng,
        })
    }

    /// Its id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Its algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The JWS signature of `input`.
    pub fn sign(&self, input: &[u8]) -> Result<Vec<u8>> {
        let failed = |_| anyhow!("signing with key `{}` failed", self.kid);
        Ok(match &self.signer {
            Signer::Es256(key) => key
                .sign(&self.rng, input)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Signer::EdDsa(key) => key.sign(input).as_ref().to_vec(),
            Signer::Rs256(key) => {
                let mut out = vec![0u8; key.public().modulus_len()];
                key.sign(&sig::RSA_PKCS1_SHA256, &self.rng, input, &mut out)
                    .map_err(failed)?;
                out
            }
            Signer::Hs256(key) => ring::hmac::sign(key, input).as_ref().to_vec(),
        })
    }

    /// Whether `signature` is this key's over `input` (constant-time for HS256).
    pub fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        match &self.signer {
            Signer::Es256(key) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, key.public_key())
                    .verify(input, signature)
                    .is_ok()
            }
            Signer::EdDsa(key) => sig::UnparsedPublicKey::new(&sig::ED25519, key.public_key())
                .verify(input, signature)
                .is_ok(),
            Signer::Rs256(key) => {
                sig::UnparsedPublicKey::new(&sig::RSA_PKCS1_2048_8192_SHA256, key.public_key())
                    .verify(input, signature)
                    .is_ok()
            }
            Signer::Hs256(key) => ring::hmac::verify(key, input, signature).is_ok(),
        }
    }

    /// Its public JWK (RFC 7517) for the JWKS; `None` for HS256, which has no public half.
    pub fn public_jwk(&self) -> Option<Value> {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let mut jwk = match &self.signer {
            Signer::Es256(key) => {
                // The uncompressed point: 0x04, x, y.
                let point = key.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256",
                       "x": b64(point.get(1..33)?), "y": b64(point.get(33..65)?)})
            }
            Signer::EdDsa(key) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.public_key().as_ref())})
            }
            Signer::Rs256(key) => {
                let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(key.public());
                let trim = |bytes: &[u8]| -> Vec<u8> {
                    bytes.iter().copied().skip_while(|b| *b == 0).collect()
                };
                json!({"kty": "RSA", "n": b64(&trim(&public.n)), "e": b64(&trim(&public.e))})
            }
            Signer::Hs256(_) => return None,
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg.name());
        jwk["use"] = json!("sig");
        Some(jwk)
    }

    /// Its private JWK, the form WebCrypto's `importKey("jwk", …)` takes: only for
    /// `granted export --edge-secrets`' own file.
    pub fn private_jwk(&self) -> Result<Zeroizing<String>> {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let der: &[u8] = &self.stored;
        let mut jwk = match self.alg {
            SigningAlg::HS256 => json!({"kty": "oct", "k": b64(der)}),
            SigningAlg::ES256 | SigningAlg::EdDSA => {
                // Both private keys are 32 bytes right after ring's fixed PKCS#8 prefix.
                let (prefix, curve) = if self.alg == SigningAlg::ES256 {
                    (P256_PKCS8_PREFIX, "P-256")
                } else {
                    (ED25519_PKCS8_PREFIX, "Ed25519")
                };
                let d = der
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.get(..32))
                    .ok_or_else(|| anyhow!("key `{}` is not in ring's {curve} form", self.kid))?;
                let mut jwk = self.public_jwk().ok_or_else(|| anyhow!("no public key"))?;
                jwk["d"] = json!(b64(d));
                jwk
            }
            SigningAlg::RS256 => {
                use rsa::pkcs8::DecodePrivateKey as _;
                use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
                let mut key = rsa::RsaPrivateKey::from_pkcs8_der(der)
                    .with_context(|| format!("key `{}` is not an RSA key", self.kid))?;
                key.precompute().context("the RSA key's CRT values")?;
                let primes = key.primes();
                let (p, q) = match primes {
                    [p, q] => (p, q),
                    _ => bail!("key `{}` is not a two-prime RSA key", self.kid),
                };
                let big = |n: &rsa::BigUint| b64(&n.to_bytes_be());
                let (dp, dq) = key
                    .dp()
                    .zip(key.dq())
                    .ok_or_else(|| anyhow!("the RSA key's CRT values"))?;
                let qi = key
                    .crt_coefficient()
                    .ok_or_else(|| anyhow!("the RSA key's CRT coefficient"))?;
                json!({"kty": "RSA", "n": big(key.n()), "e": big(key.e()), "d": big(key.d()),
                       "p": big(p), "q": big(q), "dp": big(dp), "dq": big(dq), "qi": big(&qi)})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg.name());
        Ok(Zeroizing::new(jwk.to_string()))
    }
}

/// The JWKS (RFC 7517 §5) of `keys`: the public half of each asymmetric one.
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a ServerKey>) -> Value {
    let keys: Vec<Value> = keys.into_iter().filter_map(ServerKey::public_jwk).collect();
    json!({ "keys": keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_verifies_and_refuses_a_changed_input() {
        for alg in [
            SigningAlg::ES256,
            SigningAlg::EdDSA,
            SigningAlg::RS256,
            SigningAlg::HS256,
        ] {
            let key = ServerKey::open("k", alg, &generate(alg).unwrap()).unwrap();
            let signature = key.sign(b"header.payload").unwrap();
            assert!(alg.signature_len_ok(signature.len()), "{alg:?}");
            assert!(key.verify(b"header.payload", &signature), "{alg:?}");
            assert!(!key.verify(b"header.payloaD", &signature), "{alg:?}");
            let other = ServerKey::open("o", alg, &generate(alg).unwrap()).unwrap();
            assert!(!other.verify(b"header.payload", &signature), "{alg:?}");
            assert_eq!(key.public_jwk().is_none(), alg == SigningAlg::HS256);
            let private: Value = serde_json::from_str(&key.private_jwk().unwrap()).unwrap();
            assert_eq!(private["kid"], "k");
            assert!(private.get("d").is_some() || private.get("k").is_some());
        }
    }

    #[test]
    fn a_key_of_another_algorithm_does_not_open() {
        let ec = generate(SigningAlg::ES256).unwrap();
        assert!(ServerKey::open("k", SigningAlg::RS256, &ec).is_err());
        assert!(ServerKey::open("k", SigningAlg::HS256, "c2hvcnQ=").is_err());
    }
}
