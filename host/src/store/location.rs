//! Where the store lives: a SQLite file, or a PostgreSQL URL (shown with its password redacted).

use super::*;

/// Where a store lives, as an operator names it: a `postgres://` or `postgresql://` URL, or a
/// file path (SQLite).
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    File(std::path::PathBuf),
    /// A PostgreSQL URL (it may hold a password: see [`Location::redacted`]).
    Postgres(String),
}

impl Location {
    /// Reads `--db`'s value.
    pub fn parse(text: &str) -> Location {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.to_string())
        } else {
            Location::File(std::path::PathBuf::from(text))
        }
    }

    /// For logs and messages: the path, or the URL without its password.
    pub fn redacted(&self) -> String {
        match self {
            Location::File(path) => path.display().to_string(),
            Location::Postgres(url) => redact_url(url),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// As [`Location::redacted`]: a URL's password never reaches a log through `{:?}` either.
impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => f.debug_tuple("File").field(path).finish(),
            Location::Postgres(_) => f.debug_tuple("Postgres").field(&self.redacted()).finish(),
        }
    }
}
