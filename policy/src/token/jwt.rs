//! Access tokens: JWTs per RFC 9068 (`typ: at+jwt`). The module writes the header and claims and
//! reads tokens back; the signature is the host's (`need_signature`, `need_verification`): no
//! private or shared key ever enters the module.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The JWS algorithms access tokens may be signed with (RFC 7518 §3.1, RFC 8037).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// ECDSA on P-256 with SHA-256: the default.
    ES256,
    /// Ed25519.
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// HMAC-SHA256 with a key shared by whoever verifies: only for existing deployments.
    HS256,
}

impl SigningAlg {
    /// Its name in a JWS header.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::RS256 => "RS256",
            SigningAlg::HS256 => "HS256",
        }
    }

    /// The algorithm a JWS header names, if it is one of these.
    pub fn from_name(name: &str) -> Option<SigningAlg> {
        match name {
            "ES256" => Some(SigningAlg::ES256),
            "EdDSA" => Some(SigningAlg::EdDSA),
            "RS256" => Some(SigningAlg::RS256),
            "HS256" => Some(SigningAlg::HS256),
            _ => None,
        }
    }

    /// Whether `len` bytes can be a signature of this algorithm (RSA: 2048 to 4096-bit keys).
    pub fn signature_len_ok(self, len: usize) -> bool {
        match self {
            SigningAlg::ES256 | SigningAlg::EdDSA => len == 64,
            SigningAlg::HS256 => len == 32,
            SigningAlg::RS256 => (256..=512).contains(&len),
        }
    }
}

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

/// The claims of an OpenID Connect ID token (Core §2, §3.1.3.3).
#[derive(Clone, Debug, Serialize)]
pub struct IdClaims<'a> {
    /// Issuer: the tenant's issuer URL.
    pub iss: &'a str,
    /// The user's stable subject identifier.
    pub sub: &'a str,
    /// The client it was issued to.
    pub aud: &'a str,
    /// Expires at (seconds).
    pub exp: i64,
    /// Issued at (seconds).
    pub iat: i64,
    /// When the user signed in (seconds).
    pub auth_time: i64,
    /// The `nonce` the client sent to the authorization endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    /// The party it was issued to.
    pub azp: &'a str,
}

/// The JWS signing input of an ID token (`typ: JWT`).
pub fn id_token_signing_input(claims: &IdClaims<'_>, kid: &str, alg: SigningAlg) -> String {
    jws_input(
        &Header {
            alg: alg.name(),
            typ: "JWT",
            kid,
        },
        claims,
    )
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// The JWS signing input of an access token: `base64url(header) "." base64url(claims)`.
pub fn signing_input(claims: &AccessClaims<'_>, kid: &str, alg: SigningAlg) -> String {
    jws_input(
        &Header {
            alg: alg.name(),
            typ: "at+jwt",
            kid,
        },
        claims,
    )
}

/// An access token's signing input kept with everything it was made of, so that a later step of
/// the same request (the one that brings the signature) takes it instead of making it again: the
/// JSON and base64 of the claims are most of a step's work in the module.
pub struct KeptInput {
    /// `iss`, `sub`, `aud`, `client_id`, `scope`, `jti`, `tenant`, and the key id.
    texts: [String; 8],
    iat: i64,
    exp: i64,
    alg: SigningAlg,
    input: String,
}

impl KeptInput {
    fn texts<'a>(claims: &AccessClaims<'a>, kid: &'a str) -> [&'a str; 8] {
        [
            claims.iss,
            claims.sub,
            claims.aud,
            claims.client_id,
            claims.scope,
            claims.jti,
            claims.tenant,
            kid,
        ]
    }

    fn made_of(&self, claims: &AccessClaims<'_>, kid: &str, alg: SigningAlg) -> bool {
        self.alg == alg
            && self.iat == claims.iat
            && self.exp == claims.exp
            && self
                .texts
                .iter()
                .zip(Self::texts(claims, kid))
                .all(|(kept, now)| kept == now)
    }
}

/// [`signing_input`], taken from `kept` when it was made of exactly these claims and key, and
/// kept there otherwise.
pub fn signing_input_kept(
    claims: &AccessClaims<'_>,
    kid: &str,
    alg: SigningAlg,
    kept: &mut Option<KeptInput>,
) -> String {
    if let Some(k) = kept.as_ref().filter(|k| k.made_of(claims, kid, alg)) {
        // Room for the signature, as `jws_input` leaves.
        let mut input = String::with_capacity(k.input.len() + 345);
        input.push_str(&k.input);
        return input;
    }
    let input = signing_input(claims, kid, alg);
    *kept = Some(KeptInput {
        texts: KeptInput::texts(claims, kid).map(str::to_string),
        iat: claims.iat,
        exp: claims.exp,
        alg,
        input: input.clone(),
    });
    input
}

/// `base64url(header) "." base64url(claims)`.
fn jws_input(header: &Header<'_>, claims: &impl Serialize) -> String {
    // One JSON buffer for both parts and one string for the token, sized for it up front
    // (with room for an RS256 signature, so that appending it does not copy).
    let mut json = Vec::with_capacity(384);
    let _ = crate::json::to_writer(&mut json, header);
    let header_len = json.len();
    let _ = crate::json::to_writer(&mut json, claims);
    let (header, payload) = json.split_at(header_len);
    let mut token = String::with_capacity((json.len() + 2) * 4 / 3 + 4 + 344);
    URL_SAFE_NO_PAD.encode_string(header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    token
}

/// The token: the signing input, `.`, and the signature the host made over it.
pub fn finish(mut signing_input: String, signature: &[u8]) -> String {
    signing_input.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut signing_input);
    signing_input
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

/// An access token taken apart, its signature not yet checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unverified {
    /// The header's algorithm.
    pub alg: SigningAlg,
    /// The header's key id.
    pub kid: String,
    /// What the signature covers (`header.payload`).
    pub signing_input: String,
    /// The signature, base64url as sent.
    pub signature: String,
    /// The claims.
    pub claims: Claims,
}

/// Takes apart a token that looks like one of ours (`typ: at+jwt`, a known `alg`, a `kid`,
/// claims of the right shape, a signature of a plausible length); `None` for anything else.
pub fn parse(token: &str) -> Option<Unverified> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let head: ReadHeader = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    let alg = SigningAlg::from_name(&head.alg)?;
    if head.typ != "at+jwt" {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(signature).ok()?;
    if !alg.signature_len_ok(raw.len()) {
        return None;
    }
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    Some(Unverified {
        alg,
        kid: head.kid,
        signing_input: token.get(..header.len() + 1 + payload.len())?.to_string(),
        signature: signature.to_string(),
        claims,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests
mod tests {
    use super::*;

    fn claims() -> AccessClaims<'static> {
        AccessClaims {
            iss: "https://granted.test/tenants/acme",
            sub: "alice",
            aud: "api",
            client_id: "crm-1",
            scope: "read",
            iat: 1,
            exp: 3601,
            jti: "j",
            tenant: "acme",
        }
    }

    #[test]
    #[allow(
        clippy::too_many_lines,
        reason = "a test: its cases read best as one table"
    )]
    fn a_kept_signing_input_is_taken_only_for_the_same_claims_and_key() {
        let mut kept = None;
        let first = signing_input_kept(&claims(), "k1", SigningAlg::ES256, &mut kept);
        assert_eq!(first, signing_input(&claims(), "k1", SigningAlg::ES256));
        assert_eq!(
            signing_input_kept(&claims(), "k1", SigningAlg::ES256, &mut kept),
            first
        );
        // Each claim, the key id and the algorithm changed alone: made again, and kept anew.
        let base = claims();
        let changed: Vec<(AccessClaims<'static>, &str, SigningAlg)> = vec![
            (
                AccessClaims {
                    iss: "https://other",
                    ..base.clone()
                },
                "k1",
                SigningAlg::ES256,
            ),
            (
                AccessClaims {
                    sub: "bob",
                    ..base.clone()
                },
                "k1",
                SigningAlg::ES256,
            ),
            (
                AccessClaims {
                    aud: "api2",
                    ..base.clone()
                },
                "k1",
                SigningAlg::ES256,
            ),
            (
                AccessClaims {
                    client_id: "crm-2",
                    ..base.clone()
                },
                "k1",
                SigningAlg::ES256,
            ),
            (
                AccessClaims {
                    scope: "read write",
                    ..base.clone()
                },
                "k1",
                SigningAlg::ES256,
            ),
            (
                AccessClaims {
                    iat: 2,
                    ..base.clone()
                },
                "k1",
                SigningAlg::ES256,
            ),
            (
                AccessClaims {
                    exp: 3602,
                    ..base.clone()
                },
                "k1",
                SigningAlg::ES256,
            ),
            (
                AccessClaims {
                    jti: "k",
                    ..base.clone()
                },
                "k1",
                SigningAlg::ES256,
            ),
            (
                AccessClaims {
                    tenant: "globex",
                    ..base.clone()
                },
                "k1",
                SigningAlg::ES256,
            ),
            (base.clone(), "k2", SigningAlg::ES256),
            (base.clone(), "k1", SigningAlg::EdDSA),
        ];
        for (claims, kid, alg) in changed {
            let mut kept_here = None;
            let _ = signing_input_kept(&base, "k1", SigningAlg::ES256, &mut kept_here);
            let made = signing_input_kept(&claims, kid, alg, &mut kept_here);
            assert_eq!(
                made,
                signing_input(&claims, kid, alg),
                "{claims:?} {kid} {alg:?}"
            );
            assert_ne!(made, first);
            assert_eq!(signing_input_kept(&claims, kid, alg, &mut kept_here), made);
        }
    }

    #[test]
    fn a_token_has_the_rfc9068_header_and_the_hosts_signature() {
        let input = signing_input(&claims(), "k1", SigningAlg::ES256);
        let token = finish(input.clone(), &[7u8; 64]);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(format!("{}.{}", parts[0], parts[1]), input);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "k1");
        let body: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(body["sub"], "alice");
        assert_eq!(body["exp"], 3601);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap(), vec![7u8; 64]);
    }

    #[test]
    fn parse_reads_back_what_was_written_and_refuses_the_rest() {
        for alg in [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::HS256] {
            let len = if alg == SigningAlg::HS256 { 32 } else { 64 };
            let input = signing_input(&claims(), "k1", alg);
            let token = finish(input.clone(), &vec![1u8; len]);
            let read = parse(&token).unwrap();
            assert_eq!(read.alg, alg);
            assert_eq!(read.kid, "k1");
            assert_eq!(read.signing_input, input);
            assert_eq!(read.claims.sub, "alice");
            // A signature of another algorithm's length is not one of ours.
            assert!(parse(&finish(input, &vec![1u8; len + 1])).is_none());
        }
        let rs = finish(
            signing_input(&claims(), "k", SigningAlg::RS256),
            &[2u8; 256],
        );
        assert_eq!(parse(&rs).unwrap().alg, SigningAlg::RS256);
        assert!(parse("a.b").is_none());
        assert!(parse("a.b.c.d").is_none());
        let none = finish(
            "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0Iiwia2lkIjoiayJ9.e30".into(),
            &[],
        );
        assert!(parse(&none).is_none());
    }
}
