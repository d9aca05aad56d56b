//! Checking a user's password (T8 and the sign-in page's C9) and hashing one at the current
//! parameters (rehash on login, C10's new password): the same KDF work, the same dummy hash for
//! unknown users, and the same lockout counting wherever a password is typed.

use super::lockout;
use super::steps::{Effect, KdfOutput, KdfPurpose, Step, TokenContext, REHASH_SALT};
use crate::credentials::kdf::{KdfAlgorithm, KdfParams};
use crate::credentials::password::{self, StoredHash};
use crate::error::PolicyError;
use crate::model::{SignIn, Timestamp, UserRecord};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The outcome of a password check that ran its KDF.
pub(crate) enum Checked {
    /// The password verified and the user may sign in; `outdated` is the stored hash when it is
    /// not what this server writes now (imported, or older parameters): to be hashed again.
    Verified { outdated: Option<String> },
    /// The one refusal for every cause (the true cause for the audit), with the effects to
    /// apply: a failure counted for the lockout unless the password verified.
    Refused {
        cause: &'static str,
        effects: Vec<Effect>,
    },
}

/// The user's stored hash as given, and parsed; parsed once per request.
pub(crate) type StoredMemo = Option<(String, Option<StoredHash>)>;

/// Checks `password` against the user's stored hash, or against a dummy hash of the same cost
/// when there is none, so that every failure costs the same KDF work. Answers the KDF step for
/// the host when its output is not in yet.
#[allow(clippy::too_many_arguments)] // the one place that checks a password
pub(crate) fn check<D>(
    ctx: &TokenContext,
    kdf: Option<&KdfOutput>,
    user: Option<&UserRecord>,
    tenant: &str,
    username: &str,
    password: &str,
    memo: &mut StoredMemo,
) -> Result<Result<Checked, Step<D>>, PolicyError> {
    let stored_text = user
        .filter(|u| u.sign_in == SignIn::Direct)
        .and_then(|u| u.password_hash.as_deref());
    if let Some(text) = stored_text {
        if !matches!(memo, Some((seen, _)) if seen == text) {
            *memo = Some((text.to_string(), password::parse(text)));
        }
    }
    let stored: Option<&StoredHash> = stored_text
        .and(memo.as_ref())
        .and_then(|(_, parsed)| parsed.as_ref());
    let dummy;
    let against = match stored {
        Some(hash) => hash,
        None => {
            dummy = password::dummy_hash(ctx.kdf_iterations);
            &dummy
        }
    };
    let derived = match derive(ctx, kdf, against, password)? {
        Ok(bytes) => bytes,
        Err(step) => return Ok(Err(step)),
    };
    let verified = stored.is_some() && against.matches(&derived);
    let cause = user_problem(user, ctx.now).or(if stored.is_none() {
        Some("unusable_password_hash")
    } else if verified {
        None
    } else {
        Some("wrong_password")
    });
    let Some(cause) = cause else {
        let iterations = password::current_iterations(ctx.kdf_iterations);
        let outdated = stored_text
            .zip(stored)
            .filter(|(text, hash)| !hash.is_current(text, iterations))
            .map(|(text, _)| text.to_string());
        return Ok(Ok(Checked::Verified { outdated }));
    };
    let effects = if verified {
        Vec::new()
    } else {
        vec![Effect::RecordLoginFailure {
            tenant: tenant.to_string(),
            username: username.to_string(),
            lockout: lockout::schedule(&ctx.lockout),
        }]
    };
    Ok(Ok(Checked::Refused { cause, effects }))
}

/// Whether `password` is the one `user`'s stored hash holds (C10: a new password must differ
/// from the old). Answers the KDF step for the host when its output is not in yet.
pub(crate) fn is_current<D>(
    ctx: &TokenContext,
    kdf: Option<&KdfOutput>,
    user: &UserRecord,
    password: &str,
) -> Result<Result<bool, Step<D>>, PolicyError> {
    let Some(stored) = user.password_hash.as_deref().and_then(password::parse) else {
        return Ok(Ok(false));
    };
    Ok(derive(ctx, kdf, &stored, password)?.map(|derived| stored.matches(&derived)))
}

/// `password` hashed at the current parameters (PBKDF2-SHA256, the context's iterations, a
/// salt from the host's entropy), as a PHC string. Natively a KDF step asked of the host, whose
/// output comes back as `rehash_kdf`.
pub(crate) fn new_hash<D>(
    ctx: &TokenContext,
    entropy: &[u8],
    rehash_kdf: Option<&KdfOutput>,
    password: &str,
) -> Result<Result<String, Step<D>>, PolicyError> {
    let iterations = password::current_iterations(ctx.kdf_iterations);
    let salt = entropy.get(REHASH_SALT).unwrap_or_default();
    let params = KdfParams {
        algorithm: KdfAlgorithm::Pbkdf2Sha256,
        salt: STANDARD.encode(salt),
        iterations,
        length: password::CURRENT_LENGTH,
    };
    let derived = if ctx.kdf_in_module {
        params.derive(password.as_bytes()).unwrap_or_default()
    } else {
        match rehash_kdf {
            Some(out) => STANDARD.decode(out.derived.as_bytes()).map_err(|_| {
                PolicyError::InvalidInput("`rehash_kdf.derived` is not base64".into())
            })?,
            None => {
                return Ok(Err(Step::NeedKdf {
                    kdf: params,
                    password: password.to_string(),
                    purpose: KdfPurpose::Rehash,
                }))
            }
        }
    };
    if derived.len() != password::CURRENT_LENGTH {
        return Err(PolicyError::InvalidInput(format!(
            "`rehash_kdf.derived` must be {} bytes",
            password::CURRENT_LENGTH
        )));
    }
    Ok(Ok(password::phc_string(
        KdfAlgorithm::Pbkdf2Sha256,
        iterations,
        salt,
        &derived,
    )))
}

/// The T8 cause that a user's record alone gives, whatever the password.
pub(crate) fn user_problem(user: Option<&UserRecord>, now: Timestamp) -> Option<&'static str> {
    match user {
        None => Some("unknown_user"),
        Some(u) if u.sign_in == SignIn::Sso => Some("sso_account"),
        Some(u) if u.disabled => Some("disabled"),
        Some(u) if u.locked_until.is_some_and(|until| now < until) => Some("locked"),
        Some(_) => None,
    }
}

/// The KDF's output for `password` under `check`: from the host, computed here, or asked for.
fn derive<D>(
    ctx: &TokenContext,
    from_host: Option<&KdfOutput>,
    check: &StoredHash,
    password: &str,
) -> Result<Result<Vec<u8>, Step<D>>, PolicyError> {
    if ctx.kdf_in_module {
        return Ok(Ok(check.derive_here(password).unwrap_or_default()));
    }
    match from_host {
        Some(out) => STANDARD
            .decode(out.derived.as_bytes())
            .map(Ok)
            .map_err(|_| PolicyError::InvalidInput("`kdf.derived` is not base64".into())),
        None => Ok(Err(Step::NeedKdf {
            kdf: check.kdf_params(),
            password: password.to_string(),
            purpose: KdfPurpose::Verify,
        })),
    }
}
