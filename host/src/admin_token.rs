//! The admin API's bearer token: made (or taken from `GRANTED_ADMIN_TOKEN`) on first start,
//! stored only as its SHA-256, rotated from the command line.

use granted_policy::model::Timestamp;
use sha2::{Digest, Sha256};

/// The SHA-256 of an admin token, as stored.
pub fn admin_token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new admin token: 32 random bytes, base64url, with a prefix that says what it is.
pub fn new_admin_token() -> anyhow::Result<String> {
    use base64::Engine as _;
    let bytes = crate::random::random_bytes(32)?;
    Ok(format!(
        "granted_admin_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The shortest admin token taken from `GRANTED_ADMIN_TOKEN`.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// How the admin token was set at start.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstToken {
    /// A token was in use already.
    Existing,
    /// Taken from `GRANTED_ADMIN_TOKEN`.
    FromEnvironment,
    /// Made now: show it once.
    Made(String),
}

/// On first start, stores the admin token: `from_env` (`GRANTED_ADMIN_TOKEN`) when given,
/// else a new one, which the caller shows once. Only its SHA-256 is stored.
pub fn ensure_admin_token(
    store: &crate::store::Store,
    now: Timestamp,
    from_env: Option<&str>,
) -> anyhow::Result<FirstToken> {
    if store.admin_tokens_in_use()? > 0 {
        return Ok(FirstToken::Existing);
    }
    let (token, made) = match from_env {
        Some(token) => {
            if token.len() < MIN_ADMIN_TOKEN_LEN || token.trim() != token || token.contains(' ') {
                anyhow::bail!(
                    "GRANTED_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LEN} characters, without spaces (make one with `openssl rand -base64 32`)"
                );
            }
            (token.to_string(), false)
        }
        None => (new_admin_token()?, true),
    };
    match store.first_admin_token(&admin_token_sha256(&token), now)? {
        None => Ok(FirstToken::Existing),
        Some(_) if made => Ok(FirstToken::Made(token)),
        Some(_) => Ok(FirstToken::FromEnvironment),
    }
}
