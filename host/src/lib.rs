//! The `granted` host: it does all I/O and embeds the policy module, which makes every decision.

pub mod guest;
pub mod preview;
pub mod runtime;
