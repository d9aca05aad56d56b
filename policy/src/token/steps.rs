//! The step types every rule of the token endpoint uses: what the host hands in (context,
//! records, KDF output), what comes out (the steps asking the host for something, the decision
//! with its audit record and effects), and what one request's steps compute once ([`Memo`]).

pub use super::jwt::SigningAlg;
use super::lockout::{LockSchedule, LockoutSettings};
use super::request::{self, HttpRequest, TokenRequest};
use super::response::HttpResponse;
use crate::credentials::kdf::KdfParams;
use crate::credentials::password::{StoredHash, DEFAULT_ITERATIONS};
use crate::error::PolicyError;
use crate::model::{
    default_sunset, ClientRecord, CodeRecord, ConsentRecord, RefreshTokenRecord, TenantRecord,
    Timestamp, UserRecord,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

/// Bytes of host entropy every call needs: refresh token (32), `jti` (16), family id (16), and
/// the salt of a password hash made again at the current parameters (16).
pub const ENTROPY_BYTES: usize = 80;

/// Where in the entropy the salt of a new password hash is taken from.
pub(super) const REHASH_SALT: std::ops::Range<usize> = 64..80;

/// What the host hands in besides the request: time, keys, entropy and settings.
#[derive(Clone, Deserialize, Serialize)]
pub struct TokenContext {
    /// The instant the request is judged at.
    pub now: Timestamp,
    /// The sunset instant; RULES.md's default when absent.
    #[serde(default = "default_sunset")]
    pub sunset: Timestamp,
    /// Base URL of this server; a tenant's issuer is `{issuer}/tenants/{tenant}`.
    pub issuer: String,
    /// The `aud` of access tokens; the issuer when absent.
    #[serde(default)]
    pub audience: Option<String>,
    /// Access-token lifetime in seconds.
    #[serde(default = "default_access_ttl")]
    pub access_token_ttl: u32,
    /// Refresh-token lifetime in seconds.
    #[serde(default = "default_refresh_ttl")]
    pub refresh_token_ttl: u32,
    /// The key access tokens are signed with.
    pub signing_key: SigningKey,
    /// The server key client secrets are HMACed under, base64.
    pub client_secret_key: String,
    /// Iterations of the PBKDF2-SHA256 hashes this server writes, and of the dummy hash checked
    /// for unknown users. A password that verifies against a hash of other parameters is hashed
    /// again with these.
    #[serde(default = "default_iterations")]
    pub kdf_iterations: u32,
    /// How failed logins lock a user out; RULES.md's defaults when absent.
    #[serde(default)]
    pub lockout: LockoutSettings,
    /// Run the KDF in the module instead of asking the host (for runtimes with no fast PBKDF2).
    #[serde(default)]
    pub kdf_in_module: bool,
    /// How long an authorization code may be exchanged, in seconds (C12: 60).
    #[serde(default = "default_code_ttl")]
    pub code_ttl: u32,
    /// At least [`ENTROPY_BYTES`] random bytes from the host, base64.
    pub entropy: String,
}

impl std::fmt::Debug for TokenContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenContext")
            .field("now", &self.now)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn default_access_ttl() -> u32 {
    3600
}
fn default_refresh_ttl() -> u32 {
    30 * 24 * 3600
}
fn default_code_ttl() -> u32 {
    60
}
fn default_iterations() -> u32 {
    DEFAULT_ITERATIONS
}

/// The key access tokens are signed with: its id and algorithm. The key itself stays with the
/// host, which signs when asked (`need_signature`).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SigningKey {
    /// The `kid` put in the JWT header.
    pub kid: String,
    /// Its algorithm.
    pub alg: SigningAlg,
}

/// The records the host looked up. A field that is absent was not looked up yet; `null` means
/// the host looked and found nothing.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Records {
    /// The tenant named in the path.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub tenant: Option<Option<TenantRecord>>,
    /// The `client_id` the request names.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub client: Option<Option<ClientRecord>>,
    /// The user, in the tenant.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub user: Option<Option<UserRecord>>,
    /// The refresh token, by its SHA-256.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_token: Option<Option<RefreshTokenRecord>>,
    /// The authorization code, by its SHA-256.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub code: Option<Option<CodeRecord>>,
    /// The user's consent to the client's app in the tenant.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub consent: Option<Option<ConsentRecord>>,
}

/// A field that is present deserializes to `Some`, even when it is `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The KDF's output, from the host.
#[derive(Clone, Deserialize, Serialize)]
pub struct KdfOutput {
    /// The derived key, base64.
    pub derived: String,
}

/// The input of the `token` entry point.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenInput {
    /// The raw request.
    pub request: HttpRequest,
    /// Time, keys, entropy, settings.
    pub context: TokenContext,
    /// Records looked up so far.
    #[serde(default)]
    pub records: Records,
    /// The KDF's output, once the host ran it.
    #[serde(default)]
    pub kdf: Option<KdfOutput>,
    /// The host's signature over the access token's signing input (`need_signature`), base64url.
    #[serde(default)]
    pub signature: Option<String>,
    /// The host's signature over the ID token's signing input, base64url.
    #[serde(default)]
    pub id_token_signature: Option<String>,
    /// The output of the KDF step whose purpose is `rehash`, once the host ran it.
    #[serde(default)]
    pub rehash_kdf: Option<KdfOutput>,
}

impl std::fmt::Debug for KdfOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KdfOutput(..)")
    }
}

/// Which records to look up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// The tenant, always.
    pub tenant: String,
    /// The `client_id`, always.
    pub client_id: String,
    /// The user, in that tenant, when the grant names one.
    pub username: Option<String>,
    /// The refresh token's SHA-256 (base64url), for `refresh_token`.
    pub refresh_token_sha256: Option<String>,
    /// The authorization code's SHA-256 (base64url), for `authorization_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_sha256: Option<String>,
    /// The app whose consent by `username` to look up (C11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_app_id: Option<String>,
    /// The user to look up by their `sub` rather than their username (UserInfo), into `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Something the host must apply, in the same transaction as the audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// A password check failed for this user: count it, and lock the user as `lockout` says
    /// when the count reaches its `lock_after`.
    RecordLoginFailure {
        /// The tenant.
        tenant: String,
        /// The username as sent.
        username: String,
        /// What the count means: when it locks, and for how long.
        lockout: LockSchedule,
    },
    /// The user signed in: reset the failure count.
    ResetLoginFailures {
        /// The tenant.
        tenant: String,
        /// The user.
        username: String,
    },
    /// Store a new refresh token (only its hash).
    StoreRefreshToken {
        /// The record to store.
        record: RefreshTokenRecord,
    },
    /// Mark a refresh token used; if it was not active any more, treat the request as reuse.
    ConsumeRefreshToken {
        /// Its SHA-256.
        token_sha256: String,
    },
    /// Revoke every token of a family (RFC 9700 §4.14: a rotated token came back).
    RevokeRefreshFamily {
        /// The family.
        family_id: String,
    },
    /// The password verified against a hash of other parameters than this server's: store
    /// `hash` (PHC, at the current parameters) in its place, if the user's hash is still
    /// `replaces` (a password changed meanwhile stays).
    StorePasswordHash {
        /// The tenant.
        tenant: String,
        /// The user.
        username: String,
        /// The new hash, a PHC string.
        hash: String,
        /// The hash it replaces, as stored.
        replaces: String,
    },
    /// The user replaced an expired password (C10): store `hash` and `changed_at`, if the
    /// user's hash is still `replaces`.
    ChangePassword {
        /// The tenant.
        tenant: String,
        /// The user.
        username: String,
        /// The new hash, a PHC string.
        hash: String,
        /// The hash it replaces, as stored.
        replaces: String,
        /// When it was changed.
        changed_at: Timestamp,
    },
    /// Store a new authorization code (only its hash).
    StoreCode {
        /// The record to store.
        record: CodeRecord,
    },
    /// Mark an authorization code used; if it was used already, treat the request as reuse
    /// (`code_reused`, and its tokens revoked).
    ConsumeCode {
        /// Its SHA-256.
        code_sha256: String,
    },
    /// Remember the user's consent (C11): store it, adding its scopes to any kept before.
    StoreConsent {
        /// The consent.
        record: ConsentRecord,
    },
}

/// The audit record of one decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// `granted` or `denied`.
    pub decision: String,
    /// The rule that decided (`T1` … `T9`, `refresh`).
    pub rule: String,
    /// The reason code of RULES.md §4 (`issued` for a success).
    pub reason: String,
    /// The true cause, finer than the reason (T8: `unknown_user`, `wrong_password`, …).
    pub cause: String,
    /// The grant type asked for, if the request got that far.
    pub grant_type: Option<String>,
    /// The tenant in the path.
    pub tenant: String,
    /// The app, once the client is known.
    pub app_id: Option<String>,
    /// The `client_id` sent.
    pub client_id: Option<String>,
    /// The username sent or the refresh token's user.
    pub username: Option<String>,
    /// The revision the tenant's install pins.
    pub pinned_rev: Option<u32>,
}

/// The final answer: the response, its audit record, the effects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The HTTP response.
    pub response: HttpResponse,
    /// What the audit log records.
    pub audit: Audit,
    /// What the host must apply.
    pub effects: Vec<Effect>,
}

/// One step of the token endpoint.
pub type TokenStep = Step<Decision>;

/// One step of an endpoint's decision: something the host must do and call again with, or the
/// final answer `D` (the token endpoint's [`Decision`], the authorization pages' decision).
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step<D> {
    /// Look these up, add them to `records`, call again.
    NeedRecords {
        /// What to look up.
        lookup: Lookup,
    },
    /// Run this KDF on `password`, put the result in `kdf` (or `rehash_kdf` when `purpose` is
    /// `rehash`), call again.
    NeedKdf {
        /// The parameters.
        kdf: KdfParams,
        /// The password the client sent.
        password: String,
        /// Which input the output goes to; `verify` (`kdf`) when absent.
        #[serde(default, skip_serializing_if = "KdfPurpose::is_verify")]
        purpose: KdfPurpose,
    },
    /// Sign `signing_input` with key `kid` (algorithm `alg`), put the signature in `signature`
    /// (or `id_token_signature` when `purpose` is `id_token`), base64url, call again.
    NeedSignature {
        /// The algorithm.
        alg: SigningAlg,
        /// The key.
        kid: String,
        /// The JWS signing input.
        signing_input: String,
        /// Which token the signature is for; the access token when absent.
        #[serde(default, skip_serializing_if = "SignPurpose::is_access_token")]
        purpose: SignPurpose,
    },
    /// Check `signature` (base64url) over `signing_input` with key `kid` (algorithm `alg`), put
    /// the outcome in `signature_valid`, call again (introspection).
    NeedVerification {
        /// The algorithm.
        alg: SigningAlg,
        /// The key.
        kid: String,
        /// The JWS signing input.
        signing_input: String,
        /// The signature, base64url.
        signature: String,
    },
    /// The answer.
    Done(Box<D>),
}

/// Which token a signature is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignPurpose {
    /// The access token; the signature goes to `signature`.
    #[default]
    AccessToken,
    /// The OpenID Connect `id_token`; the signature goes to `id_token_signature`.
    IdToken,
}

impl SignPurpose {
    /// Whether this is the access token's signature (the default, left out of the JSON).
    pub fn is_access_token(&self) -> bool {
        *self == SignPurpose::AccessToken
    }
}

/// What a KDF step is for: checking the password, or hashing it again at current parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KdfPurpose {
    /// Check the password against the stored hash (or the dummy); the output goes to `kdf`.
    #[default]
    Verify,
    /// Hash the verified password at the current parameters; the output goes to `rehash_kdf`.
    Rehash,
}

impl KdfPurpose {
    /// Whether this is the verification step (the default, left out of the JSON).
    pub fn is_verify(&self) -> bool {
        *self == KdfPurpose::Verify
    }
}

impl<D: std::fmt::Debug> std::fmt::Debug for Step<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::NeedRecords { lookup } => f
                .debug_struct("NeedRecords")
                .field("lookup", lookup)
                .finish(),
            // The password never reaches a log through Debug.
            Step::NeedKdf { kdf, purpose, .. } => f
                .debug_struct("NeedKdf")
                .field("kdf", kdf)
                .field("purpose", purpose)
                .finish_non_exhaustive(),
            Step::NeedSignature {
                alg, kid, purpose, ..
            } => f
                .debug_struct("NeedSignature")
                .field("alg", alg)
                .field("kid", kid)
                .field("purpose", purpose)
                .finish_non_exhaustive(),
            Step::NeedVerification { alg, kid, .. } => f
                .debug_struct("NeedVerification")
                .field("alg", alg)
                .field("kid", kid)
                .finish_non_exhaustive(),
            Step::Done(decision) => f.debug_tuple("Done").field(decision).finish(),
        }
    }
}

/// The context's keys and entropy, decoded.
pub(crate) struct Keys {
    pub(crate) client_secret: Vec<u8>,
    pub(crate) entropy: Vec<u8>,
}

pub(crate) fn keys(ctx: &TokenContext) -> Result<Keys, PolicyError> {
    let decode = |what: &str, value: &str| {
        STANDARD
            .decode(value.as_bytes())
            .map_err(|_| PolicyError::InvalidInput(format!("`{what}` is not base64")))
    };
    let client_secret = decode("context.client_secret_key", &ctx.client_secret_key)?;
    let entropy = decode("context.entropy", &ctx.entropy)?;
    if entropy.len() < ENTROPY_BYTES {
        return Err(PolicyError::InvalidInput(format!(
            "`context.entropy` must be at least {ENTROPY_BYTES} bytes"
        )));
    }
    Ok(Keys {
        client_secret,
        entropy,
    })
}

/// SHA-256 of a refresh token, as stored and looked up: base64url without padding.
pub fn refresh_token_sha256(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// SHA-256 of an authorization code, as stored and looked up: base64url without padding.
pub fn code_sha256(code: &str) -> String {
    refresh_token_sha256(code)
}

/// The refresh-token family that a code's exchange starts: named after the code, so that a
/// second use of the code (X2) revokes it.
pub fn code_family(code_sha256: &str) -> String {
    let mut family = String::with_capacity(5 + code_sha256.len());
    family.push_str("code.");
    family.push_str(code_sha256);
    family
}

/// What one request's steps compute once and reuse: decoded keys, the parsed request, the
/// refresh token's hash and the client-secret check. The answers are the same with or without it.
#[derive(Default)]
pub struct Memo {
    pub(super) keys: Option<Keys>,
    pub(super) parsed: Option<Result<TokenRequest, request::Malformed>>,
    pub(super) refresh_hash: Option<Option<String>>,
    /// The secret checked, against which stored HMAC (if any), and the outcome.
    pub(super) secret_check: Option<(Option<String>, bool)>,
    /// The user's stored password hash as given, and parsed.
    pub(super) stored_hash: Option<(String, Option<StoredHash>)>,
    /// The access token's signing input, with what it was made of.
    pub(super) access_input: Option<super::jwt::KeptInput>,
}
