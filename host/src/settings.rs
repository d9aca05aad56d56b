//! What `granted serve` runs with besides the store and the module, and the clock it judges by.

use granted_policy::model::Timestamp;
pub use granted_policy::token::lockout::LockoutSettings as LockoutPolicy;

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
    /// A fixed clock (tests and `granted vectors --http`); the system clock when absent.
    pub fixed_now: Option<Timestamp>,
    /// The sunset instant; RULES.md's when absent.
    pub sunset: Option<Timestamp>,
    /// Access-token lifetime, seconds.
    pub access_token_ttl: u32,
    /// Refresh-token lifetime, seconds.
    pub refresh_token_ttl: u32,
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
}

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
            fixed_now: None,
            sunset: None,
            access_token_ttl: 3600,
            refresh_token_ttl: 30 * 24 * 3600,
            record_decisions: false,
            throttle_failures: 20,
            throttle_window_seconds: 60,
            trusted_proxy_header: None,
            audit_retention_days: None,
        }
    }
}

/// The instant requests are judged at: the fixed clock of a test, else the system clock.
pub fn now(settings: &ServerSettings) -> Timestamp {
    settings.fixed_now.unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Timestamp::from_unix(secs).unwrap_or_else(granted_policy::model::default_sunset)
    })
}
