//! Credentials: password hashes (PHC and Django PBKDF2), the KDF itself, client-secret HMACs.

pub mod client_secret;
pub mod kdf;
pub mod password;
