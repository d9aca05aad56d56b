//! Server keys at rest: sealed with the master key (XChaCha20-Poly1305), or in clear without one.
//!
//! A sealed value is text, `sealed1:<kek id>:<base64 of nonce ‖ ciphertext ‖ tag>`: the marker
//! tells it from a clear key (standard base64, which never holds `:`), the master key's id (16
//! hex digits: the first 8 bytes of SHA-256 over a label and the key) tells "another master
//! key" from "altered", and the associated data is the row's purpose and kid, so a sealed
//! value copied to another row does not open. Each value has its own random 24-byte nonce.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The marker in front of every sealed value (format version 1).
const SEALED: &str = "sealed1:";

/// Bytes of a master key.
pub const MASTER_KEY_LEN: usize = 32;

/// The key-encryption key that seals the server keys in the store. `Debug` shows its id only.
#[derive(Clone)]
pub struct MasterKey(Arc<Inner>);

struct Inner {
    key: Zeroizing<[u8; MASTER_KEY_LEN]>,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MasterKey").field(&self.0.id).finish()
    }
}

/// Why a master key or a stored key could not be used. Each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// The master key given is not 32 bytes in standard base64 (`from` names where it came from).
    BadMasterKey {
        /// Where the key came from: an environment variable or a file.
        from: String,
    },
    /// A stored key is sealed under another master key.
    WrongMasterKey,
    /// A stored key is sealed and no master key was given.
    MasterKeyMissing,
    /// A sealed key does not open under the right master key: altered, or moved to another row.
    Altered {
        /// The row's kid.
        kid: String,
    },
    /// No randomness for a nonce.
    NoRandomness,
}

impl SealError {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SealError::BadMasterKey { .. } => "bad_master_key",
            SealError::WrongMasterKey => "wrong_master_key",
            SealError::MasterKeyMissing => "master_key_missing",
            SealError::Altered { .. } => "sealed_key_altered",
            SealError::NoRandomness => "no_randomness",
        }
    }
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::BadMasterKey { from } => write!(
                f,
                "{from} is not a master key: it must be 32 bytes in standard base64, 44 characters (`openssl rand -base64 32` makes one)"
            ),
            SealError::WrongMasterKey => f.write_str(
                "the master key does not open the stored keys (they are sealed under another master key)",
            ),
            SealError::MasterKeyMissing => f.write_str(
                "the stored keys are sealed: give the master key (GRANTED_MASTER_KEY, GRANTED_MASTER_KEY_FILE or --master-key-file)",
            ),
            SealError::Altered { kid } => write!(
                f,
                "the sealed key `{kid}` does not open under the master key: it was altered or moved from another row"
            ),
            SealError::NoRandomness => f.write_str("no randomness from the system for a nonce"),
        }
    }
}

impl std::error::Error for SealError {}

impl MasterKey {
    /// A master key from its text: 32 bytes in standard base64 (with padding), surrounding white
    /// space ignored. `from` names the source in the error, which never shows the text.
    pub fn from_base64(text: &str, from: &str) -> Result<MasterKey, SealError> {
        let bad = || SealError::BadMasterKey {
            from: from.to_string(),
        };
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| bad())?);
        let key: [u8; MASTER_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| bad())?;
        Ok(MasterKey::from_bytes(key))
    }

    /// A master key from its 32 bytes.
    pub fn from_bytes(key: [u8; MASTER_KEY_LEN]) -> MasterKey {
        let key = Zeroizing::new(key);
        let digest = Sha256::new()
            .chain_update(b"granted master key id\0")
            .chain_update(key.as_slice())
            .finalize();
        let id = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        MasterKey(Arc::new(Inner { key, id }))
    }

    /// Its id (16 hex digits), stored beside each value it seals; it reveals nothing of the key.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(self.0.key.as_slice()))
    }
}

/// The associated data of row (`purpose`, `kid`).
fn associated(purpose: &str, kid: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + purpose.len() + kid.len());
    aad.extend_from_slice(b"granted server key\0");
    aad.extend_from_slice(purpose.as_bytes());
    aad.push(0);
    aad.extend_from_slice(kid.as_bytes());
    aad
}

/// What a rewrap did (`Store::rewrap_keys`): the server keys and the identity providers'
/// secrets, counted together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewrapped {
    /// Keys sealed under the old master key, now under the new one.
    pub resealed: usize,
    /// Keys that were stored in clear, now sealed.
    pub sealed_from_clear: usize,
    /// Keys already under the new master key (they were opened to check).
    pub unchanged: usize,
}

impl Rewrapped {
    /// Whether anything was written.
    pub fn changed(&self) -> bool {
        self.resealed + self.sealed_from_clear > 0
    }
}

/// Whether a stored value is sealed (else it is a key in clear).
pub(super) fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED)
}

/// The id of the master key a sealed value was sealed under.
pub(super) fn sealed_under(stored: &str) -> Option<&str> {
    stored
        .strip_prefix(SEALED)?
        .split_once(':')
        .map(|(id, _)| id)
}

/// `secret` (row `purpose`, `kid`) sealed under `key`.
pub(super) fn seal(
    key: &MasterKey,
    purpose: &str,
    kid: &str,
    secret: &str,
) -> Result<String, SealError> {
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(|_| SealError::NoRandomness)?;
    let sealed = key
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: secret.as_bytes(),
                aad: &associated(purpose, kid),
            },
        )
        // Encryption fails only for messages longer than the cipher allows (256 GiB).
        .map_err(|_| SealError::Altered {
            kid: kid.to_string(),
        })?;
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&sealed);
    Ok(format!("{SEALED}{}:{}", key.id(), STANDARD.encode(blob)))
}

/// The key stored in row (`purpose`, `kid`): itself when in clear, else opened under `key`.
pub(super) fn open(
    key: Option<&MasterKey>,
    purpose: &str,
    kid: &str,
    stored: &str,
) -> Result<String, SealError> {
    let Some(rest) = stored.strip_prefix(SEALED) else {
        return Ok(stored.to_string());
    };
    let key = key.ok_or(SealError::MasterKeyMissing)?;
    let altered = || SealError::Altered {
        kid: kid.to_string(),
    };
    let (id, blob) = rest.split_once(':').ok_or_else(altered)?;
    if id != key.id() {
        return Err(SealError::WrongMasterKey);
    }
    let blob = STANDARD.decode(blob).map_err(|_| altered())?;
    if blob.len() < 24 {
        return Err(altered());
    }
    let (nonce, sealed) = blob.split_at(24);
    let clear = Zeroizing::new(
        key.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &associated(purpose, kid),
                },
            )
            .map_err(|_| altered())?,
    );
    String::from_utf8(clear.to_vec()).map_err(|_| altered())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; MASTER_KEY_LEN])
    }

    #[test]
    fn a_sealed_key_opens_only_in_its_own_row_under_its_own_master_key() {
        let k = key(1);
        let sealed = seal(&k, "signing", "kid-1", "c2VjcmV0").unwrap();
        assert!(is_sealed(&sealed) && !sealed.contains("c2VjcmV0"));
        assert_eq!(sealed_under(&sealed), Some(k.id()));
        assert_eq!(
            open(Some(&k), "signing", "kid-1", &sealed).unwrap(),
            "c2VjcmV0"
        );
        // Two seals of one value differ (a nonce each).
        assert_ne!(sealed, seal(&k, "signing", "kid-1", "c2VjcmV0").unwrap());
        for (purpose, kid) in [("signing", "kid-2"), ("client_secret", "kid-1")] {
            assert_eq!(
                open(Some(&k), purpose, kid, &sealed),
                Err(SealError::Altered { kid: kid.into() })
            );
        }
        assert_eq!(
            open(Some(&key(2)), "signing", "kid-1", &sealed),
            Err(SealError::WrongMasterKey)
        );
        assert_eq!(
            open(None, "signing", "kid-1", &sealed),
            Err(SealError::MasterKeyMissing)
        );
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            open(Some(&k), "signing", "kid-1", &flipped),
            Err(SealError::Altered {
                kid: "kid-1".into()
            })
        );
        // A key in clear reads as it is, with or without a master key.
        assert_eq!(
            open(None, "signing", "kid-1", "c2VjcmV0").unwrap(),
            "c2VjcmV0"
        );
        assert_eq!(
            open(Some(&k), "signing", "kid-1", "c2VjcmV0").unwrap(),
            "c2VjcmV0"
        );
    }

    #[test]
    fn a_master_key_is_32_bytes_of_standard_base64_and_errors_never_show_it() {
        let text = STANDARD.encode([7u8; 32]);
        let k = MasterKey::from_base64(&format!(" {text}\n"), "GRANTED_MASTER_KEY").unwrap();
        assert_eq!(k.id(), key(7).id());
        assert_eq!(k.id().len(), 16);
        assert!(!format!("{k:?}").contains(&text));
        let hex = "07".repeat(32);
        for bad in [
            hex.as_str(),
            &STANDARD.encode([7u8; 31]),
            &STANDARD.encode([7u8; 33]),
            "not base64!",
            "",
        ] {
            let err = MasterKey::from_base64(bad, "GRANTED_MASTER_KEY").unwrap_err();
            assert_eq!(err.code(), "bad_master_key");
            let message = err.to_string();
            assert!(message.starts_with("GRANTED_MASTER_KEY is not a master key"));
            assert!(bad.is_empty() || !message.contains(bad), "{message}");
        }
    }
}
