//! The entry points, typed and as JSON in / JSON out: the one surface both wasm faces wrap.

use crate::credentials::client_secret::hash_client_secret;
use crate::credentials::kdf::{self, KdfAlgorithm};
use crate::credentials::password;
use crate::error::PolicyError;
use crate::model::{default_sunset, App, IdentityProvider, Timestamp};
use crate::rules::edit::{self, Preview, PreviewInput};
use crate::rules::identity_provider::ProviderCheck;
use crate::rules::status::{AppStatus, StatusInput};
use crate::token::endpoint::{self, TokenFlow, TokenInput, TokenResume, TokenStep};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// The version of the plain-export ABI and of the JSON shapes; hosts refuse any other.
pub const ABI_VERSION: u32 = 2;

/// Every entry point's name.
pub const ENTRY_POINTS: &[&str] = &[
    "info",
    "token",
    "token_start",
    "token_resume",
    "authorization",
    "userinfo",
    "revocation",
    "introspection",
    "preview",
    "eligibility",
    "app_status",
    "pbkdf2",
    "hash_password",
    "hash_client_secret",
    "new_client_secret",
    "identity_provider",
];

/// `info`: what this module is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Info {
    /// [`ABI_VERSION`].
    pub abi_version: u32,
    /// The crate version.
    pub version: String,
    /// The entry points.
    pub entry_points: Vec<String>,
}

/// The module's identity.
pub fn info(_: &serde_json::Value) -> Result<Info, PolicyError> {
    Ok(Info {
        abi_version: ABI_VERSION,
        version: env!("CARGO_PKG_VERSION").into(),
        entry_points: ENTRY_POINTS.iter().map(|s| s.to_string()).collect(),
    })
}

/// `token`: one step of the token endpoint, stateless: every call carries the whole input.
pub fn token(input: &TokenInput) -> Result<TokenStep, PolicyError> {
    endpoint::token(input)
}

#[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
thread_local! {
    /// The token request in progress in this thread, for `token_resume`.
    static FLOW: RefCell<Option<Box<TokenFlow>>> = const { RefCell::new(None) };
}

/// Runs `f` on the token request in progress in this instance (in the module, a static in the
/// allocator's first page: see `arena.rs`) or, natively, in this thread.
fn with_flow<R>(f: impl FnOnce(&RefCell<Option<Box<TokenFlow>>>) -> R) -> R {
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    return f(&crate::arena::page_mates().flow);
    #[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
    FLOW.with(f)
}

/// `token_start`: the first step of a token request, as `token`, keeping the request in this
/// instance so that the next steps send only what they add (`token_resume`). One request at a
/// time per instance: a new start replaces an unfinished one. The answers are `token`'s.
pub fn token_start(input: TokenInput) -> Result<TokenStep, PolicyError> {
    let mut flow = Box::new(TokenFlow::new(input));
    let step = flow.step();
    keep_flow(flow, &step);
    step
}

/// `token_resume`: the next step of the request `token_start` began, given the records looked
/// up or the KDF's output.
pub fn token_resume(more: TokenResume) -> Result<TokenStep, PolicyError> {
    let Some(mut flow) = with_flow(|f| f.borrow_mut().take()) else {
        return Err(PolicyError::InvalidState(
            "no token request in progress here: call `token_start` first".into(),
        ));
    };
    let step = flow.resume(more);
    keep_flow(flow, &step);
    step
}

/// Keeps `flow` for the next step unless this step ended it.
fn keep_flow(flow: Box<TokenFlow>, step: &Result<TokenStep, PolicyError>) {
    let more = matches!(
        step,
        Ok(TokenStep::NeedRecords { .. }
            | TokenStep::NeedKdf { .. }
            | TokenStep::NeedSignature { .. })
    );
    with_flow(|f| *f.borrow_mut() = more.then_some(flow));
}

/// `preview`: judge an edit or creation (A1–A5).
pub fn preview(input: &PreviewInput) -> Result<Preview, PolicyError> {
    edit::preview(input)
}

/// Input of `eligibility`.
#[derive(Clone, Debug, Deserialize)]
pub struct EligibilityInput {
    /// The app.
    pub app: App,
    /// The sunset; RULES.md's default when absent.
    #[serde(default = "default_sunset")]
    pub sunset: Timestamp,
}

/// One revision's eligibility.
pub type RevisionEligibility = crate::rules::status::RevisionStatus;

/// `eligibility`: every revision of an app, judged by §2 (for timelines).
pub fn eligibility(input: &EligibilityInput) -> Result<Vec<RevisionEligibility>, PolicyError> {
    Ok(crate::rules::status::revision_statuses(
        &input.app,
        input.sunset,
    ))
}

/// Input of `identity_provider`.
#[derive(Clone, Debug, Deserialize)]
pub struct IdentityProviderInput {
    /// The provider an admin proposes for a tenant.
    pub provider: IdentityProvider,
}

/// `identity_provider`: A9, whether a tenant's identity provider may be stored.
pub fn identity_provider(input: &IdentityProviderInput) -> Result<ProviderCheck, PolicyError> {
    Ok(crate::rules::identity_provider::check(&input.provider))
}

/// `app_status`: an app's password-grant status, its revisions and its installs.
pub fn app_status(input: &StatusInput) -> Result<AppStatus, PolicyError> {
    Ok(crate::rules::status::app_status(input))
}

/// Input of `pbkdf2`.
#[derive(Clone, Deserialize)]
pub struct Pbkdf2Input {
    /// The PRF.
    pub algorithm: KdfAlgorithm,
    /// The password.
    pub password: String,
    /// Salt, base64.
    pub salt: String,
    /// Iterations.
    pub iterations: u32,
    /// Output length in bytes.
    pub length: usize,
}

/// A derived key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Derived {
    /// The bytes, base64.
    pub derived: String,
}

fn salt(text: &str) -> Result<Vec<u8>, PolicyError> {
    STANDARD
        .decode(text.as_bytes())
        .map_err(|_| PolicyError::InvalidInput("`salt` is not base64".into()))
}

fn out_of_bounds() -> PolicyError {
    PolicyError::InvalidInput(format!(
        "KDF parameters out of bounds: iterations 1 to {}, salt at most {} bytes, length 1 to {}",
        kdf::MAX_ITERATIONS,
        kdf::MAX_SALT,
        kdf::MAX_LENGTH
    ))
}

/// `pbkdf2`: the module's own PBKDF2 (the slow path).
pub fn pbkdf2(input: &Pbkdf2Input) -> Result<Derived, PolicyError> {
    let salt = salt(&input.salt)?;
    let derived = kdf::derive(
        input.algorithm,
        input.password.as_bytes(),
        &salt,
        input.iterations,
        input.length,
    )
    .ok_or_else(out_of_bounds)?;
    Ok(Derived {
        derived: STANDARD.encode(derived),
    })
}

/// Input of `hash_password`.
#[derive(Clone, Deserialize)]
pub struct HashPasswordInput {
    /// The password in clear.
    pub password: String,
    /// Salt, base64 (the host's randomness).
    pub salt: String,
    /// Iterations.
    pub iterations: u32,
    /// The PRF; SHA-256 when absent.
    #[serde(default = "sha256")]
    pub algorithm: KdfAlgorithm,
}

fn sha256() -> KdfAlgorithm {
    KdfAlgorithm::Pbkdf2Sha256
}

/// A PHC string.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PasswordHash {
    /// `$pbkdf2-sha256$i=…,l=32$…$…`.
    pub hash: String,
}

/// `hash_password`: a PHC string computed in the module.
pub fn hash_password(input: &HashPasswordInput) -> Result<PasswordHash, PolicyError> {
    let salt = salt(&input.salt)?;
    password::hash_password(input.algorithm, &input.password, &salt, input.iterations)
        .map(|hash| PasswordHash { hash })
        .ok_or_else(out_of_bounds)
}

/// Input of `hash_client_secret`.
#[derive(Clone, Deserialize)]
pub struct HashClientSecretInput {
    /// The server's client-secret key, base64.
    pub key: String,
    /// The secret in clear.
    pub secret: String,
}

/// A client secret's stored form.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientSecretHash {
    /// HMAC-SHA256, base64.
    pub secret_hmac: String,
}

/// `hash_client_secret`: what a host stores for a client secret.
pub fn hash_client_secret_entry(
    input: &HashClientSecretInput,
) -> Result<ClientSecretHash, PolicyError> {
    let key = STANDARD
        .decode(input.key.as_bytes())
        .map_err(|_| PolicyError::InvalidInput("`key` is not base64".into()))?;
    Ok(ClientSecretHash {
        secret_hmac: hash_client_secret(&key, &input.secret),
    })
}

/// Input of `new_client_secret`.
#[derive(Clone, Deserialize)]
pub struct NewClientSecretInput {
    /// The server's client-secret key, base64.
    pub key: String,
    /// At least 32 random bytes from the host, base64: the secret is made of them.
    pub entropy: String,
}

/// A new client secret: shown once to the admin, stored only as its HMAC.
#[derive(Clone, Serialize, Deserialize)]
pub struct NewClientSecret {
    /// The secret in clear (base64url, 256 bits or more).
    pub secret: String,
    /// What the host stores.
    pub secret_hmac: String,
}

impl std::fmt::Debug for NewClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewClientSecret").finish_non_exhaustive()
    }
}

/// Bytes of entropy a client secret is made of, at least.
pub const CLIENT_SECRET_BYTES: usize = 32;

/// `new_client_secret`: a secret from the host's entropy, and the HMAC to store.
pub fn new_client_secret(input: &NewClientSecretInput) -> Result<NewClientSecret, PolicyError> {
    let decode = |what: &str, text: &str| {
        STANDARD
            .decode(text.as_bytes())
            .map_err(|_| PolicyError::InvalidInput(format!("`{what}` is not base64")))
    };
    let key = decode("key", &input.key)?;
    let entropy = decode("entropy", &input.entropy)?;
    if entropy.len() < CLIENT_SECRET_BYTES {
        return Err(PolicyError::InvalidInput(format!(
            "`entropy` must be at least {CLIENT_SECRET_BYTES} bytes"
        )));
    }
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&entropy);
    Ok(NewClientSecret {
        secret_hmac: hash_client_secret(&key, &secret),
        secret,
    })
}

#[derive(Serialize)]
struct OkEnvelope<'a, T> {
    ok: &'a T,
}

#[derive(Serialize)]
struct ErrEnvelope<'a> {
    error: ErrBody<'a>,
}

#[derive(Serialize)]
struct ErrBody<'a> {
    code: &'a str,
    message: &'a str,
}

fn envelope_error(err: &PolicyError) -> Vec<u8> {
    crate::json::to_vec(&ErrEnvelope {
        error: ErrBody {
            code: err.code(),
            message: err.message(),
        },
    })
    .unwrap_or_default()
}

fn run<I: DeserializeOwned, O: Serialize>(
    input: &[u8],
    f: impl Fn(&I) -> Result<O, PolicyError>,
) -> Vec<u8> {
    run_owned(input, |i: I| f(&i))
}

fn run_owned<I: DeserializeOwned, O: Serialize>(
    input: &[u8],
    f: impl FnOnce(I) -> Result<O, PolicyError>,
) -> Vec<u8> {
    // UTF-8 is checked once for the whole input, not string by string.
    let parsed: Result<I, PolicyError> = std::str::from_utf8(input)
        .map_err(|e| PolicyError::InvalidInput(format!("the input is not UTF-8: {e}")))
        .and_then(|text| {
            crate::json::from_str(text)
                .map_err(|e| PolicyError::InvalidInput(format!("the input is not valid: {e}")))
        });
    match parsed.and_then(f) {
        Ok(out) => {
            let mut bytes = Vec::with_capacity(2048);
            match crate::json::to_writer(&mut bytes, &OkEnvelope { ok: &out }) {
                Ok(()) => bytes,
                Err(e) => envelope_error(&PolicyError::InvalidInput(e.to_string())),
            }
        }
        Err(err) => envelope_error(&err),
    }
}

/// Calls an entry point by name with JSON `input`; answers `{"ok": …}` or
/// `{"error": {"code": …, "message": …}}`, never panics.
pub fn call(entry: &str, input: &[u8]) -> Vec<u8> {
    match entry {
        "info" => run(input, info),
        "token" => run(input, token),
        "token_start" => run_owned(input, token_start),
        "token_resume" => run_owned(input, token_resume),
        "authorization" => run(input, crate::authorize::authorization),
        "userinfo" => run(input, crate::authorize::userinfo::userinfo),
        "revocation" => run(input, crate::token::manage::revocation),
        "introspection" => run(input, crate::token::manage::introspection),
        "preview" => run(input, preview),
        "eligibility" => run(input, eligibility),
        "app_status" => run(input, app_status),
        "pbkdf2" => run(input, pbkdf2),
        "hash_password" => run(input, hash_password),
        "hash_client_secret" => run(input, hash_client_secret_entry),
        "new_client_secret" => run(input, new_client_secret),
        "identity_provider" => run(input, identity_provider),
        other => envelope_error(&PolicyError::UnknownEntryPoint(format!(
            "no entry point `{other}`"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests
mod tests {
    use super::*;

    #[test]
    fn a_new_client_secret_has_256_bits_and_verifies_against_its_hmac() {
        let input = NewClientSecretInput {
            key: STANDARD.encode(b"server key"),
            entropy: STANDARD.encode([9u8; 32]),
        };
        let made = new_client_secret(&input).unwrap();
        assert_eq!(made.secret.len(), 43);
        assert!(crate::credentials::client_secret::verify_client_secret(
            b"server key",
            &made.secret,
            Some(&made.secret_hmac)
        ));
        let short = NewClientSecretInput {
            entropy: STANDARD.encode([9u8; 31]),
            ..input
        };
        assert_eq!(
            new_client_secret(&short).unwrap_err().code(),
            "invalid_input"
        );
    }

    #[test]
    fn every_entry_point_answers_json_to_garbage() {
        for entry in ENTRY_POINTS.iter().chain(["no_such_entry"].iter()) {
            for input in [
                &b""[..],
                b"null",
                b"{",
                b"[]",
                b"{\"now\": 1}",
                &[0xff, 0xfe],
            ] {
                let out = call(entry, input);
                let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
                assert!(
                    value.get("ok").is_some() || value["error"]["code"].is_string(),
                    "{entry}: {value}"
                );
            }
        }
    }
}
