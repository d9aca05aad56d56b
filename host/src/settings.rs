//! What `granted serve` runs with besides the store and the module, and the clock it judges by.

use granted_policy::model::Timestamp;
use granted_policy::token::jwt::SigningAlg;
pub use granted_policy::token::lockout::LockoutSettings as LockoutPolicy;
use std::time::{Duration, SystemTime};

/// How long a window of aggregated refusals lasts by default (`audit_aggregate_seconds`).
pub const AUDIT_AGGREGATE_WINDOW: Duration = Duration::from_secs(10);

/// What the server needs besides the store and the module.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Base URL of this server (a tenant's issuer is `{issuer}/tenants/{tenant}`).
    pub issuer: String,
    /// PBKDF2 iterations of new hashes and of the unknown-user dummy.
    pub kdf_iterations: u32,
    /// KDF threads (the cores, by default).
    pub kdf_threads: usize,
    /// Password requests that may wait for a KDF thread before new ones get a 503.
    pub login_queue: usize,
    /// Lockout after failed logins: given to the module in the token context, which decides
    /// what each failure count means (the store only counts).
    pub lockout: LockoutPolicy,
    /// The clock requests are judged by.
    pub clock: Clock,
    /// The sunset instant; RULES.md's when absent.
    pub sunset: Option<Timestamp>,
    /// Access-token lifetime, seconds.
    pub access_token_ttl: u32,
    /// Refresh-token lifetime, seconds.
    pub refresh_token_ttl: u32,
    /// The algorithm of new signing keys (ES256 by default; HS256 only for existing deployments).
    pub signing_alg: SigningAlg,
    /// How long a new key is published in the JWKS before it signs, seconds.
    pub key_publish_seconds: u32,
    /// Keep every decision's audit record and effects in memory (`granted vectors --http`).
    pub record_decisions: bool,
    /// Failed client or user authentications from one client and source address within
    /// `throttle_window_seconds` before that pair gets 429s.
    pub throttle_failures: u32,
    /// The throttling window, seconds.
    pub throttle_window_seconds: u64,
    /// A header set by a trusted reverse proxy with the client's address (its last entry is
    /// taken); without it, the TCP peer is the source.
    pub trusted_proxy_header: Option<String>,
    /// Audit entries older than this many days are removed, hourly (kept forever when `None`).
    pub audit_retention_days: Option<u32>,
    /// Requests refused before any client authentication (malformed, unsupported grant type)
    /// from one source address within `throttle_window_seconds` before that source gets 429s.
    pub throttle_source_failures: u32,
    /// How the server treats its connections.
    pub connections: ConnectionLimits,
    /// The window over which refusals before client authentication are aggregated in the audit
    /// log, per source and reason; none: each is written on its own.
    pub audit_aggregate_window: Option<Duration>,
}

/// Limits on connections: slow and idle clients cannot hold the server's sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time for a request's head to arrive, from the connection's opening or from the first byte
    /// after its previous answer; past it the connection is closed.
    pub header_timeout: Duration,
    /// Time for a request's body to arrive once its head has; past it the answer is 408.
    pub body_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request before it is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// The clock requests are judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed instant (tests and `granted vectors --http`).
    Fixed(Timestamp),
    /// A clock that cannot be read (unit tests of the answer when the system clock fails).
    #[cfg(test)]
    Unreadable,
}

/// The clock could not be read, or reads an instant outside what the server can judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockError(String);

impl std::fmt::Display for ClockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the system clock cannot be read: {}", self.0)
    }
}

impl std::error::Error for ClockError {}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            issuer: "http://127.0.0.1:8080".into(),
            kdf_iterations: 600_000,
            kdf_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            login_queue: 64,
            lockout: LockoutPolicy::default(),
            clock: Clock::System,
            sunset: None,
            access_token_ttl: 3600,
            refresh_token_ttl: 30 * 24 * 3600,
            signing_alg: SigningAlg::ES256,
            key_publish_seconds: 3600,
            record_decisions: false,
            throttle_failures: 20,
            throttle_window_seconds: 60,
            trusted_proxy_header: None,
            audit_retention_days: None,
            throttle_source_failures: 100,
            connections: ConnectionLimits::default(),
            audit_aggregate_window: Some(AUDIT_AGGREGATE_WINDOW),
        }
    }
}

/// The instant requests are judged at: the fixed clock of a test, else the system clock. A
/// clock that cannot be read is an error, never a made-up instant: a token's lifetime, a lock's
/// end and a password's age are all judged by it.
pub fn now(settings: &ServerSettings) -> Result<Timestamp, ClockError> {
    match settings.clock {
        Clock::Fixed(at) => Ok(at),
        Clock::System => timestamp_of(SystemTime::now()),
        #[cfg(test)]
        Clock::Unreadable => Err(ClockError("the test clock is unreadable".into())),
    }
}

/// The instant `time` names, if the server can judge by it.
fn timestamp_of(time: SystemTime) -> Result<Timestamp, ClockError> {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| ClockError("it reads before 1970".into()))?;
    let secs = i64::try_from(since.as_secs())
        .map_err(|_| ClockError("it reads past what a timestamp holds".into()))?;
    Timestamp::from_unix(secs)
        .ok_or_else(|| ClockError(format!("it reads {secs} s after 1970, out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_before_1970_is_an_error_not_a_time() {
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert!(timestamp_of(before).is_err());
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert!(timestamp_of(far).is_err());
        let ok = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(timestamp_of(ok).map(|t| t.unix()), Ok(1_800_000_000));
        let unreadable = ServerSettings {
            clock: Clock::Unreadable,
            ..ServerSettings::default()
        };
        assert!(now(&unreadable).is_err());
    }
}
