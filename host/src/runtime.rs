//! The policy module under wasmtime as a vector-runner [`Runtime`].

use crate::guest::Guest;
use granted_vectors::Runtime;

/// The `_bg.wasm` under wasmtime: every call on a fresh instance, as the server does.
pub struct Wasmtime {
    guest: Guest,
}

impl Wasmtime {
    /// Wraps a loaded guest.
    pub fn new(guest: Guest) -> Self {
        Wasmtime { guest }
    }

    /// The loaded guest.
    pub fn guest(&self) -> &Guest {
        &self.guest
    }
}

impl Runtime for Wasmtime {
    fn name(&self) -> &str {
        "wasmtime"
    }

    fn call(&self, entry: &str, input: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(self.guest.call(entry, input)?)
    }
}
