//! Typed errors of the policy's entry points, each with a stable code.

use std::fmt;

/// An entry point could not answer: its input is unusable. Rule outcomes
/// (a rejected edit, a refused token request) are answers, not errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// The input is not valid JSON for this entry point.
    InvalidInput(String),
    /// The input is well-formed but names something that does not exist or cannot be.
    InvalidState(String),
    /// The entry point's name is not one the module has.
    UnknownEntryPoint(String),
}

impl PolicyError {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::InvalidInput(_) => "invalid_input",
            PolicyError::InvalidState(_) => "invalid_state",
            PolicyError::UnknownEntryPoint(_) => "unknown_entry_point",
        }
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        match self {
            PolicyError::InvalidInput(m)
            | PolicyError::InvalidState(m)
            | PolicyError::UnknownEntryPoint(m) => m,
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for PolicyError {}
