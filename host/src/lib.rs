//! The `granted` host: it does all I/O and embeds the policy module, which makes every decision.

pub mod admin;
pub mod config;
pub mod guest;
pub mod http_vectors;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod preview;
pub mod runtime;
pub mod server;
pub mod state;
pub mod store;
#[cfg(target_os = "linux")]
pub mod testing;
