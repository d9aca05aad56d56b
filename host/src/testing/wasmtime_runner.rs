//! The policy module under wasmtime as a vector-runner [`Runtime`].

use crate::guest::Guest;
use granted_vectors::{Runtime, Session};

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

    /// One fresh instance for all the calls of the session.
    fn session(&self) -> anyhow::Result<Box<dyn Session + '_>> {
        Ok(Box::new(self.guest.session()?))
    }
}

impl Session for crate::guest::Session {
    fn call(&mut self, entry: &str, input: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(crate::guest::Session::call(self, entry, input)?)
    }
}
