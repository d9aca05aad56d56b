//! Stored password hashes: PHC strings (`$pbkdf2-sha256$i=…,l=…$salt$hash`, also SHA-512 and
//! passlib's numeric form) and Django's `pbkdf2_sha256$iter$salt$hash`.

use super::kdf::{self, KdfAlgorithm, KdfParams};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use subtle::ConstantTimeEq;

/// PHC's base64: standard alphabet, no padding written, padding tolerated when read.
const PHC_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The iteration count OWASP recommends for PBKDF2-HMAC-SHA256, our default.
pub const DEFAULT_ITERATIONS: u32 = 600_000;

/// Length of the PBKDF2-SHA256 keys this server stores.
pub const CURRENT_LENGTH: usize = 32;

/// The iteration count of the hashes a server writes, kept within what the KDF accepts.
pub fn current_iterations(configured: u32) -> u32 {
    configured.clamp(1, kdf::MAX_ITERATIONS)
}

/// A stored hash, parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredHash {
    /// The PRF.
    pub algorithm: KdfAlgorithm,
    /// Iterations.
    pub iterations: u32,
    /// Salt bytes.
    pub salt: Vec<u8>,
    /// The expected derived key.
    pub hash: Vec<u8>,
}

impl std::fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredHash")
            .field("algorithm", &self.algorithm)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl StoredHash {
    /// The KDF run that checks a password against this hash.
    pub fn kdf_params(&self) -> KdfParams {
        KdfParams {
            algorithm: self.algorithm,
            salt: STANDARD.encode(&self.salt),
            iterations: self.iterations,
            length: self.hash.len(),
        }
    }

    /// The module's own KDF run for `password` under this hash's parameters (the slow path).
    pub fn derive_here(&self, password: &str) -> Option<Vec<u8>> {
        kdf::derive(
            self.algorithm,
            password.as_bytes(),
            &self.salt,
            self.iterations,
            self.hash.len(),
        )
    }

    /// Whether `stored`, the text this hash was read from, is exactly what this server writes
    /// at `iterations`: a PHC PBKDF2-SHA256 string of a 32-byte key. Anything else (Django's
    /// form, SHA-512, another iteration count or length) is hashed again after a login.
    pub fn is_current(&self, stored: &str, iterations: u32) -> bool {
        self.algorithm == KdfAlgorithm::Pbkdf2Sha256
            && self.iterations == iterations
            && self.hash.len() == CURRENT_LENGTH
            && is_phc_string(stored, self)
    }

    /// Whether `derived` (the KDF's output for the presented password) matches, in constant time.
    pub fn matches(&self, derived: &[u8]) -> bool {
        derived.len() == self.hash.len() && bool::from(derived.ct_eq(&self.hash))
    }
}

/// Parses a stored hash; `None` for anything this module cannot verify.
pub fn parse(stored: &str) -> Option<StoredHash> {
    let parsed = if stored.starts_with('$') {
        parse_phc(stored)
    } else {
        parse_django(stored)
    }?;
    kdf::params_in_bounds(parsed.iterations, parsed.salt.len(), parsed.hash.len()).then_some(parsed)
}

fn algorithm(name: &str) -> Option<KdfAlgorithm> {
    match name {
        "pbkdf2-sha256" | "pbkdf2_sha256" => Some(KdfAlgorithm::Pbkdf2Sha256),
        "pbkdf2-sha512" | "pbkdf2_sha512" => Some(KdfAlgorithm::Pbkdf2Sha512),
        _ => None,
    }
}

fn parse_phc(stored: &str) -> Option<StoredHash> {
    let parts: Vec<&str> = stored.split('$').collect();
    let ["", id, params, salt, hash] = parts.as_slice() else {
        return None;
    };
    let algorithm = algorithm(id)?;
    if params.bytes().all(|b| b.is_ascii_digit()) {
        // passlib: `$pbkdf2-sha256$29000$salt$hash` in its "adapted base64" (`.` for `+`).
        let iterations = params.parse().ok()?;
        let salt = PHC_B64.decode(salt.replace('.', "+")).ok()?;
        let hash = PHC_B64.decode(hash.replace('.', "+")).ok()?;
        return Some(StoredHash {
            algorithm,
            iterations,
            salt,
            hash,
        });
    }
    let mut iterations = None;
    let mut length = None;
    for param in params.split(',') {
        let (key, value) = param.split_once('=')?;
        match key {
            "i" if iterations.is_none() => iterations = Some(value.parse::<u32>().ok()?),
            "l" if length.is_none() => length = Some(value.parse::<usize>().ok()?),
            _ => return None,
        }
    }
    let salt = PHC_B64.decode(salt).ok()?;
    let hash = PHC_B64.decode(hash).ok()?;
    if length.is_some_and(|l| l != hash.len()) {
        return None;
    }
    Some(StoredHash {
        algorithm,
        iterations: iterations?,
        salt,
        hash,
    })
}

fn parse_django(stored: &str) -> Option<StoredHash> {
    let parts: Vec<&str> = stored.split('$').collect();
    let [id, iterations, salt, hash] = parts.as_slice() else {
        return None;
    };
    Some(StoredHash {
        algorithm: algorithm(id)?,
        iterations: iterations.parse().ok()?,
        salt: salt.as_bytes().to_vec(),
        hash: STANDARD.decode(hash).ok()?,
    })
}

/// The PHC string for a derived key.
pub fn phc_string(algorithm: KdfAlgorithm, iterations: u32, salt: &[u8], derived: &[u8]) -> String {
    format!(
        "${}$i={},l={}${}${}",
        algorithm.as_str(),
        iterations,
        derived.len(),
        PHC_B64.encode(salt),
        PHC_B64.encode(derived)
    )
}

/// Whether `stored` is exactly [`phc_string`] of `hash`'s parameters and key, compared piece by
/// piece without building that string (every login on the token path asks).
fn is_phc_string(stored: &str, hash: &StoredHash) -> bool {
    let mut iterations = itoa::Buffer::new();
    let mut length = itoa::Buffer::new();
    let rest = [
        "$",
        hash.algorithm.as_str(),
        "$i=",
        iterations.format(hash.iterations),
        ",l=",
    ]
    .into_iter()
    .chain([length.format(hash.hash.len()), "$"])
    .try_fold(stored, |rest, piece| rest.strip_prefix(piece));
    let Some((salt, key)) = rest.and_then(|rest| rest.split_once('$')) else {
        return false;
    };
    encodes(salt.as_bytes(), &hash.salt) && encodes(key.as_bytes(), &hash.hash)
}

/// Whether `text` is exactly `PHC_B64.encode(bytes)`.
fn encodes(text: &[u8], bytes: &[u8]) -> bool {
    let mut buf = [0u8; 128];
    match PHC_B64.encode_slice(bytes, &mut buf) {
        Ok(n) => buf.get(..n) == Some(text),
        // Longer than any key or salt in bounds; compared the slow way all the same.
        Err(_) => PHC_B64.encode(bytes).as_bytes() == text,
    }
}

/// Hashes a password here, in the module (the slow path): `None` when the parameters are out of bounds.
pub fn hash_password(
    algorithm: KdfAlgorithm,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Option<String> {
    let length = match algorithm {
        KdfAlgorithm::Pbkdf2Sha256 => 32,
        KdfAlgorithm::Pbkdf2Sha512 => 64,
    };
    let derived = kdf::derive(algorithm, password.as_bytes(), salt, iterations, length)?;
    Some(phc_string(algorithm, iterations, salt, &derived))
}

/// The hash the unknown-user path checks against, so that it does the same KDF work as a real user.
pub fn dummy_hash(iterations: u32) -> StoredHash {
    StoredHash {
        algorithm: KdfAlgorithm::Pbkdf2Sha256,
        iterations: current_iterations(iterations),
        salt: b"granted-dummy-salt".to_vec(),
        hash: vec![0u8; 32],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;

    fn verify(stored: &str, password: &str) -> bool {
        let h = parse(stored).unwrap();
        h.matches(&h.derive_here(password).unwrap())
    }

    #[test]
    fn phc_sha256_round_trips() {
        let s = hash_password(
            KdfAlgorithm::Pbkdf2Sha256,
            "correct horse",
            b"0123456789abcdef",
            1000,
        )
        .unwrap();
        assert!(s.starts_with("$pbkdf2-sha256$i=1000,l=32$"));
        assert!(verify(&s, "correct horse"));
        assert!(!verify(&s, "correct horsf"));
    }

    #[test]
    fn phc_sha512_round_trips() {
        let s = hash_password(KdfAlgorithm::Pbkdf2Sha512, "pässwörd", b"salt-salt", 500).unwrap();
        assert!(s.starts_with("$pbkdf2-sha512$i=500,l=64$"));
        assert!(verify(&s, "pässwörd"));
    }

    /// Django's `PBKDF2PasswordHasher` format: the salt is used as its UTF-8 text, the hash
    /// is padded standard base64 of a 32-byte PBKDF2-SHA256 key.
    #[test]
    fn django_format_verifies() {
        let dk = kdf::derive(
            KdfAlgorithm::Pbkdf2Sha256,
            b"correct horse battery",
            b"seasalt",
            1000,
            32,
        )
        .unwrap();
        let stored = format!("pbkdf2_sha256$1000$seasalt${}", STANDARD.encode(dk));
        assert!(verify(&stored, "correct horse battery"));
        assert!(!verify(&stored, "wrong"));
    }

    /// passlib's form: rounds as a bare number and "adapted base64" (`.` for `+`).
    #[test]
    fn passlib_numeric_form_verifies() {
        let salt = [0xfbu8, 0xef, 0xbe, 0xfb, 0xef, 0xbe, 0x01, 0x02];
        let dk = kdf::derive(KdfAlgorithm::Pbkdf2Sha256, b"password", &salt, 6400, 32).unwrap();
        let ab64 = |b: &[u8]| PHC_B64.encode(b).replace('+', ".");
        assert!(ab64(&salt).contains('.'));
        let stored = format!("$pbkdf2-sha256$6400${}${}", ab64(&salt), ab64(&dk));
        assert!(verify(&stored, "password"));
        assert!(!verify(&stored, "Password"));
    }

    #[test]
    fn only_phc_sha256_at_the_current_iterations_is_current() {
        let ours =
            hash_password(KdfAlgorithm::Pbkdf2Sha256, "pw", b"0123456789abcdef", 1000).unwrap();
        assert!(parse(&ours).unwrap().is_current(&ours, 1000));
        assert!(!parse(&ours).unwrap().is_current(&ours, 2000));
        let sha512 = hash_password(KdfAlgorithm::Pbkdf2Sha512, "pw", b"salt", 1000).unwrap();
        assert!(!parse(&sha512).unwrap().is_current(&sha512, 1000));
        // Any change to the text, however small, makes it not current (it is stored again).
        let hash = parse(&ours).unwrap();
        for (at, _) in ours.char_indices() {
            let cut = format!("{}{}", &ours[..at], &ours[at + 1..]);
            assert!(!hash.is_current(&cut, 1000), "{cut}");
            let longer = format!("{}A{}", &ours[..at], &ours[at..]);
            assert!(!hash.is_current(&longer, 1000), "{longer}");
        }
        assert!(!hash.is_current(&format!("{ours}A"), 1000));
        assert!(!hash.is_current(&format!("{ours}$"), 1000));
        let dk = kdf::derive(KdfAlgorithm::Pbkdf2Sha256, b"pw", b"seasalt", 1000, 32).unwrap();
        let django = format!("pbkdf2_sha256$1000$seasalt${}", STANDARD.encode(dk));
        assert!(!parse(&django).unwrap().is_current(&django, 1000));
    }

    #[test]
    fn unusable_hashes_are_refused() {
        for bad in [
            "",
            "$",
            "$pbkdf2-sha256$i=0,l=32$c2FsdA$AAAA",
            "$pbkdf2-sha256$i=99999999999,l=32$c2FsdA$AAAA",
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$AAAA",
            "$pbkdf2-sha256$i=1000,l=31$c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "pbkdf2_sha256$abc$salt$AAAA",
            "md5$salt$hash",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
