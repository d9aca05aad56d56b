//! The token endpoint of RULES.md §4 (T1–T9) and §5's code exchange (X1–X5), sans-I/O: request in, steps and a response out.

pub mod endpoint;
pub(crate) mod exchange;
mod found;
mod issue;
pub(crate) mod judge;
pub mod jwt;
pub mod lockout;
pub mod manage;
pub(crate) mod password;
pub mod request;
pub mod response;
pub(crate) mod rules;
pub mod steps;
