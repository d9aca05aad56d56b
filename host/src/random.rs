//! Random values from the operating system: secrets, tokens' ids, users' `sub`.

use anyhow::{anyhow, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Base64 of `n` random bytes from the operating system.
pub fn random_base64(n: usize) -> Result<String> {
    Ok(STANDARD.encode(random_bytes(n)?))
}

/// A new subject identifier for a user (RULES.md §5: assigned once, never reused, not the
/// username): 128 random bits, base64url.
pub fn new_sub() -> Result<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    Ok(URL_SAFE_NO_PAD.encode(random_bytes(16)?))
}

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness from the system: {e}"))?;
    Ok(bytes)
}
