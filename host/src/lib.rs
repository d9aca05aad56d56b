//! The `granted` host: it does all I/O and embeds the policy module, which makes every decision.
//! `ARCHITECTURE.md` has the codemap.
#![deny(clippy::too_many_lines)]

pub mod admin_token;
pub mod commit;
pub mod config;
pub mod edge_snapshot;
pub mod guest;
pub mod http;
pub mod kdf;
pub mod metrics;
pub mod preview;
pub mod provider_keys;
pub mod random;
pub mod refusals;
pub mod service;
pub mod settings;
pub mod signing;
pub mod state;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod throttle;
pub mod upstream;
