//! Granted's policy: the password-grant sunset rules (RULES.md) and the token endpoint's whole
//! decision, with no I/O. Built natively as a library and for `wasm32-unknown-unknown` as the one
//! module that the host, the browser and the edge load.
#![deny(missing_docs)]
#![deny(clippy::too_many_lines)]

pub mod api;
pub mod arena;
pub mod authorize;
pub mod credentials;
pub mod error;
pub mod json;
pub mod model;
pub mod rules;
pub mod token;

#[cfg(target_arch = "wasm32")]
mod bindgen;
// Its answers live in a static beside the allocator's arena (single-threaded wasm32 only).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod ffi;

pub use error::PolicyError;

/// A bump arena for the short-lived allocations of one request, in front of dlmalloc (a later
/// release than std's, that starts its heap in the memory the module already has, `__heap_base`
/// to `__heap_end`, instead of growing memory on the first allocation). See [`arena`].
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: arena::ArenaThenDlmalloc = arena::ArenaThenDlmalloc::new();
