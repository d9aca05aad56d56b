//! The token endpoint of RULES.md §4 (T1–T9), sans-I/O: request in, steps and a response out.

pub mod endpoint;
mod issue;
mod judge;
pub mod jwt;
pub mod lockout;
pub mod manage;
mod password;
pub mod request;
pub mod response;
mod rules;
