//! PBKDF2-HMAC-SHA256/512: the parameters the module asks a host to run, and its own implementation.

use serde::{Deserialize, Serialize};

/// Most iterations a stored hash may ask for: more is refused as a denial of service.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// Longest derived key.
pub const MAX_LENGTH: usize = 64;
/// Longest salt.
pub const MAX_SALT: usize = 64;

/// The PRF of PBKDF2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KdfAlgorithm {
    /// PBKDF2-HMAC-SHA256.
    #[serde(rename = "pbkdf2-sha256")]
    Pbkdf2Sha256,
    /// PBKDF2-HMAC-SHA512.
    #[serde(rename = "pbkdf2-sha512")]
    Pbkdf2Sha512,
}

impl KdfAlgorithm {
    /// The PHC identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            KdfAlgorithm::Pbkdf2Sha256 => "pbkdf2-sha256",
            KdfAlgorithm::Pbkdf2Sha512 => "pbkdf2-sha512",
        }
    }
}

/// One PBKDF2 run: what the module asks the host to compute.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// The PRF.
    pub algorithm: KdfAlgorithm,
    /// Salt bytes, standard base64 with padding.
    pub salt: String,
    /// Iteration count, 1 to [`MAX_ITERATIONS`].
    pub iterations: u32,
    /// Derived key length in bytes, 1 to [`MAX_LENGTH`].
    pub length: usize,
}

impl std::fmt::Debug for KdfParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KdfParams")
            .field("algorithm", &self.algorithm)
            .field("iterations", &self.iterations)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl KdfParams {
    /// Runs this KDF on `password` with the policy's own code, compiled for wherever it runs
    /// (a host's native build: SHA-NI where the CPU has it). `None` for a bad salt or bounds.
    pub fn derive(&self, password: &[u8]) -> Option<Vec<u8>> {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine as _;
        let salt = STANDARD.decode(self.salt.as_bytes()).ok()?;
        derive(
            self.algorithm,
            password,
            &salt,
            self.iterations,
            self.length,
        )
    }
}

/// Checks the bounds a host may rely on before it spends CPU on a request.
pub fn params_in_bounds(iterations: u32, salt_len: usize, length: usize) -> bool {
    (1..=MAX_ITERATIONS).contains(&iterations)
        && salt_len <= MAX_SALT
        && (1..=MAX_LENGTH).contains(&length)
}

/// PBKDF2 computed here, in whatever the module runs on: the slow path for runtimes with no
/// fast one. Out-of-bounds parameters give `None`.
pub fn derive(
    algorithm: KdfAlgorithm,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    length: usize,
) -> Option<Vec<u8>> {
    if !params_in_bounds(iterations, salt.len(), length) {
        return None;
    }
    let mut out = vec![0u8; length];
    match algorithm {
        KdfAlgorithm::Pbkdf2Sha256 => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out)
        }
        KdfAlgorithm::Pbkdf2Sha512 => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, &mut out)
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 7914 §11 (PBKDF2-HMAC-SHA256), first vector.
    #[test]
    fn rfc7914_pbkdf2_sha256_passwd_salt_1() {
        let dk = derive(KdfAlgorithm::Pbkdf2Sha256, b"passwd", b"salt", 1, 64).unwrap();
        assert_eq!(
            hex(&dk),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        );
    }

    /// RFC 6070-style vector for SHA-256 (widely published), c = 4096.
    #[test]
    fn pbkdf2_sha256_password_salt_4096() {
        let dk = derive(KdfAlgorithm::Pbkdf2Sha256, b"password", b"salt", 4096, 32).unwrap();
        assert_eq!(
            hex(&dk),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
    }

    #[test]
    fn out_of_bounds_parameters_are_refused() {
        assert!(derive(KdfAlgorithm::Pbkdf2Sha256, b"p", b"s", 0, 32).is_none());
        assert!(derive(
            KdfAlgorithm::Pbkdf2Sha256,
            b"p",
            b"s",
            MAX_ITERATIONS + 1,
            32
        )
        .is_none());
        assert!(derive(KdfAlgorithm::Pbkdf2Sha256, b"p", b"s", 1, 65).is_none());
    }
}
