//! Settings of `granted serve` and `granted import`: command-line flags first, then `GRANTED_*`
//! environment variables, then the TOML file of `--config`, then defaults.

use crate::settings::{ConnectionLimits, LockoutPolicy, ServerSettings};
use crate::store::{Location, MasterKey, PgOptions};
use anyhow::{anyhow, bail, Context, Result};
use granted_policy::model::Timestamp;
use granted_policy::token::jwt::SigningAlg;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Every setting, each optional: one layer (flags, environment or file).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// The database: a SQLite file, or a `postgres://` URL.
    pub db: Option<String>,
    /// Most connections to PostgreSQL this host holds.
    pub db_max_connections: Option<u32>,
    /// Certificates (PEM) to trust for PostgreSQL's TLS, beside the system's.
    pub db_ca_file: Option<std::path::PathBuf>,
    /// The address to listen on.
    pub listen: Option<SocketAddr>,
    /// The server's base URL, for issuers.
    pub issuer: Option<String>,
    /// PBKDF2 iterations for new hashes and the unknown-user dummy.
    pub kdf_iterations: Option<u32>,
    /// KDF threads.
    pub kdf_threads: Option<usize>,
    /// Password requests that may wait for a KDF thread.
    pub login_queue: Option<usize>,
    /// Failures before a lock.
    pub lockout_threshold: Option<u32>,
    /// The first lock, seconds.
    pub lockout_first_seconds: Option<i64>,
    /// The longest lock, seconds.
    pub lockout_max_seconds: Option<i64>,
    /// Access-token lifetime, seconds.
    pub access_token_ttl: Option<u32>,
    /// Refresh-token lifetime, seconds.
    pub refresh_token_ttl: Option<u32>,
    /// The algorithm of new signing keys: `ES256` (the default), `EdDSA`, `RS256` or `HS256`.
    pub signing_alg: Option<String>,
    /// Seconds a new signing key is published before it signs.
    pub key_publish_seconds: Option<u32>,
    /// The sunset instant (RFC 3339).
    pub sunset: Option<String>,
    /// Failed authentications per client and source address before 429s.
    pub throttle_failures: Option<u32>,
    /// The throttling window, seconds.
    pub throttle_window_seconds: Option<u64>,
    /// The header a trusted reverse proxy puts the client's address in.
    pub trusted_proxy_header: Option<String>,
    /// Audit entries older than this many days are removed (kept forever when absent).
    pub audit_retention_days: Option<u32>,
    /// Requests refused before client authentication per source address before 429s.
    pub throttle_source_failures: Option<u32>,
    /// Seconds for a request's head to arrive.
    pub header_timeout_seconds: Option<u64>,
    /// Seconds for a request's body to arrive.
    pub body_timeout_seconds: Option<u64>,
    /// Seconds a kept-alive connection may wait for its next request.
    pub idle_timeout_seconds: Option<u64>,
    /// Connections open at once.
    pub max_connections: Option<usize>,
    /// Seconds over which refusals before client authentication are aggregated (0: none).
    pub audit_aggregate_seconds: Option<u64>,
    /// A file holding the master key (32 bytes in standard base64), readable by its owner only.
    pub master_key_file: Option<std::path::PathBuf>,
    /// The master key itself: only from `GRANTED_MASTER_KEY`, never from a file of settings.
    #[serde(skip)]
    pub master_key: Option<MasterKey>,
}

/// Settings after layering.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The database.
    pub db: Location,
    /// How this host uses PostgreSQL (when `db` is PostgreSQL).
    pub pg: PgOptions,
    /// The listen address.
    pub listen: SocketAddr,
    /// Everything the server reads.
    pub server: ServerSettings,
    /// The key the server keys are sealed under in the store; none: they are stored in clear.
    pub master_key: Option<MasterKey>,
}

fn env_var<T: FromStr>(name: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .map(Some)
            .map_err(|e| anyhow!("the environment variable {name}=`{text}` is not valid: {e}")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(anyhow!("{name} is not UTF-8")),
    }
}

/// The `GRANTED_*` environment variables as a layer.
pub fn from_env() -> Result<Layer> {
    Ok(Layer {
        db: env_var("GRANTED_DB")?,
        db_max_connections: env_var("GRANTED_DB_MAX_CONNECTIONS")?,
        db_ca_file: env_var("GRANTED_DB_CA_FILE")?,
        listen: env_var("GRANTED_LISTEN")?,
        issuer: env_var("GRANTED_ISSUER")?,
        kdf_iterations: env_var("GRANTED_KDF_ITERATIONS")?,
        kdf_threads: env_var("GRANTED_KDF_THREADS")?,
        login_queue: env_var("GRANTED_LOGIN_QUEUE")?,
        lockout_threshold: env_var("GRANTED_LOCKOUT_THRESHOLD")?,
        lockout_first_seconds: env_var("GRANTED_LOCKOUT_FIRST_SECONDS")?,
        lockout_max_seconds: env_var("GRANTED_LOCKOUT_MAX_SECONDS")?,
        access_token_ttl: env_var("GRANTED_ACCESS_TOKEN_TTL")?,
        refresh_token_ttl: env_var("GRANTED_REFRESH_TOKEN_TTL")?,
        signing_alg: env_var("GRANTED_SIGNING_ALG")?,
        key_publish_seconds: env_var("GRANTED_KEY_PUBLISH_SECONDS")?,
        sunset: env_var("GRANTED_SUNSET")?,
        throttle_failures: env_var("GRANTED_THROTTLE_FAILURES")?,
        throttle_window_seconds: env_var("GRANTED_THROTTLE_WINDOW_SECONDS")?,
        trusted_proxy_header: env_var("GRANTED_TRUSTED_PROXY_HEADER")?,
        audit_retention_days: env_var("GRANTED_AUDIT_RETENTION_DAYS")?,
        throttle_source_failures: env_var("GRANTED_THROTTLE_SOURCE_FAILURES")?,
        header_timeout_seconds: env_var("GRANTED_HEADER_TIMEOUT_SECONDS")?,
        body_timeout_seconds: env_var("GRANTED_BODY_TIMEOUT_SECONDS")?,
        idle_timeout_seconds: env_var("GRANTED_IDLE_TIMEOUT_SECONDS")?,
        max_connections: env_var("GRANTED_MAX_CONNECTIONS")?,
        audit_aggregate_seconds: env_var("GRANTED_AUDIT_AGGREGATE_SECONDS")?,
        master_key_file: env_var("GRANTED_MASTER_KEY_FILE")?,
        master_key: master_key_from_env("GRANTED_MASTER_KEY")?,
    })
}

/// The master key in environment variable `name`, if set. The value is never shown.
fn master_key_from_env(name: &str) -> Result<Option<MasterKey>> {
    match std::env::var(name) {
        Ok(text) => Ok(Some(MasterKey::from_base64(
            &zeroize::Zeroizing::new(text),
            name,
        )?)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(anyhow!(
            "{name} is not a master key: it must be 32 bytes in standard base64"
        )),
    }
}

/// Reads the master key from `path`: 32 bytes in standard base64 (white space around them is
/// ignored), in a file readable by its owner only (mode 0600 or 0400), else refused.
pub fn read_master_key_file(path: &Path) -> Result<MasterKey> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("could not read the master key file {}", path.display()))?;
    if !meta.is_file() {
        bail!("the master key file {} is not a file", path.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o7777;
        if mode != 0o600 && mode != 0o400 {
            bail!(
                "the master key file {} has mode {mode:04o}: it must be readable by its owner only (`chmod 600` or `chmod 400` it)",
                path.display()
            );
        }
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("could not read the master key file {}", path.display()))?,
    );
    Ok(MasterKey::from_base64(
        &text,
        &format!("the master key file {}", path.display()),
    )?)
}

/// The master key of the first layer that gives one (flags, then environment, then file): its
/// `GRANTED_MASTER_KEY` or its key file; one layer giving both is refused.
fn master_key(layers: [&Layer; 3]) -> Result<Option<MasterKey>> {
    for layer in layers {
        match (&layer.master_key, &layer.master_key_file) {
            (Some(_), Some(_)) => bail!(
                "GRANTED_MASTER_KEY and GRANTED_MASTER_KEY_FILE are both set: give the master key one way"
            ),
            (Some(key), None) => return Ok(Some(key.clone())),
            (None, Some(path)) => return read_master_key_file(path).map(Some),
            (None, None) => {}
        }
    }
    Ok(None)
}

/// The new master key of `granted keys rewrap`: `GRANTED_NEW_MASTER_KEY`, or the file `file`
/// (`--new-master-key-file`); exactly one of them.
pub fn new_master_key(file: Option<&Path>) -> Result<MasterKey> {
    match (master_key_from_env("GRANTED_NEW_MASTER_KEY")?, file) {
        (Some(_), Some(_)) => bail!(
            "GRANTED_NEW_MASTER_KEY and --new-master-key-file are both given: give the new master key one way"
        ),
        (Some(key), None) => Ok(key),
        (None, Some(path)) => read_master_key_file(path),
        (None, None) => bail!(
            "no new master key: set GRANTED_NEW_MASTER_KEY or give --new-master-key-file"
        ),
    }
}

/// A TOML file as a layer; an unknown key is an error.
pub fn from_file(path: &Path) -> Result<Layer> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the config file {}", path.display()))?;
    toml::from_str(&text)
        .with_context(|| format!("the config file {} is not valid", path.display()))
}

macro_rules! first {
    ($field:ident, $($layer:expr),+) => {
        None$(.or($layer.$field.clone()))+
    };
}

/// Layers, most important first, resolved with defaults and checked.
pub fn resolve(flags: &Layer, env: &Layer, file: &Layer) -> Result<Resolved> {
    let defaults = ServerSettings::default();
    let listen = first!(listen, flags, env, file)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let issuer = first!(issuer, flags, env, file).unwrap_or_else(|| format!("http://{listen}"));
    let kdf_iterations =
        first!(kdf_iterations, flags, env, file).unwrap_or(defaults.kdf_iterations);
    if !(1_000..=10_000_000).contains(&kdf_iterations) {
        return Err(anyhow!(
            "kdf_iterations must be between 1000 and 10000000, not {kdf_iterations}"
        ));
    }
    let sunset = match first!(sunset, flags, env, file) {
        Some(text) => Some(
            Timestamp::parse(&text)
                .ok_or_else(|| anyhow!("sunset `{text}` is not an RFC 3339 instant"))?,
        ),
        None => None,
    };
    let lockout = lockout(flags, env, file)?;
    let connections = connection_limits(flags, env, file)?;
    let master_key = master_key([flags, env, file])?;
    Ok(Resolved {
        master_key,
        db: Location::parse(
            first!(db, flags, env, file)
                .as_deref()
                .unwrap_or("granted.db"),
        ),
        pg: PgOptions {
            max_connections: match first!(db_max_connections, flags, env, file) {
                Some(0) => return Err(anyhow!("db_max_connections must be at least 1")),
                Some(n) => n,
                None => PgOptions::default().max_connections,
            },
            ca_file: first!(db_ca_file, flags, env, file),
            ..PgOptions::default()
        },
        listen,
        server: ServerSettings {
            issuer: issuer.trim_end_matches('/').to_string(),
            kdf_iterations,
            kdf_threads: first!(kdf_threads, flags, env, file)
                .unwrap_or(defaults.kdf_threads)
                .max(1),
            login_queue: first!(login_queue, flags, env, file).unwrap_or(defaults.login_queue),
            lockout,
            clock: crate::settings::Clock::System,
            sunset,
            access_token_ttl: first!(access_token_ttl, flags, env, file)
                .unwrap_or(defaults.access_token_ttl),
            refresh_token_ttl: first!(refresh_token_ttl, flags, env, file)
                .unwrap_or(defaults.refresh_token_ttl),
            signing_alg: match first!(signing_alg, flags, env, file) {
                None => defaults.signing_alg,
                Some(name) => SigningAlg::from_name(&name).ok_or_else(|| {
                    anyhow!("signing_alg is `ES256`, `EdDSA`, `RS256` or `HS256`, not `{name}`")
                })?,
            },
            key_publish_seconds: first!(key_publish_seconds, flags, env, file)
                .unwrap_or(defaults.key_publish_seconds),
            record_decisions: false,
            throttle_failures: first!(throttle_failures, flags, env, file)
                .unwrap_or(defaults.throttle_failures),
            throttle_window_seconds: first!(throttle_window_seconds, flags, env, file)
                .unwrap_or(defaults.throttle_window_seconds),
            trusted_proxy_header: first!(trusted_proxy_header, flags, env, file),
            audit_retention_days: match first!(audit_retention_days, flags, env, file) {
                Some(0) => return Err(anyhow!("audit_retention_days must be at least 1 (leave it out to keep the audit log forever)")),
                days => days,
            },
            throttle_source_failures: match first!(throttle_source_failures, flags, env, file) {
                Some(0) => return Err(anyhow!("throttle_source_failures must be at least 1")),
                Some(n) => n,
                None => defaults.throttle_source_failures,
            },
            connections,
            audit_aggregate_window: aggregate_window(flags, env, file)?,
        },
    })
}

/// The lockout after failed logins: threshold ≥ 1 and 0 < first seconds ≤ max seconds.
fn lockout(flags: &Layer, env: &Layer, file: &Layer) -> Result<LockoutPolicy> {
    let lockout_default = LockoutPolicy::default();
    let lockout = LockoutPolicy {
        threshold: first!(lockout_threshold, flags, env, file).unwrap_or(lockout_default.threshold),
        first_seconds: first!(lockout_first_seconds, flags, env, file)
            .unwrap_or(lockout_default.first_seconds),
        max_seconds: first!(lockout_max_seconds, flags, env, file)
            .unwrap_or(lockout_default.max_seconds),
    };
    if lockout.threshold == 0
        || lockout.first_seconds <= 0
        || lockout.max_seconds < lockout.first_seconds
    {
        return Err(anyhow!(
            "the lockout needs threshold ≥ 1 and 0 < first seconds ≤ max seconds"
        ));
    }
    Ok(lockout)
}

/// The window of the refusals' aggregate audit entries: none for 0, at most an hour.
fn aggregate_window(flags: &Layer, env: &Layer, file: &Layer) -> Result<Option<Duration>> {
    Ok(match first!(audit_aggregate_seconds, flags, env, file) {
        None => ServerSettings::default().audit_aggregate_window,
        Some(0) => None,
        Some(s) if s <= 3600 => Some(Duration::from_secs(s)),
        Some(s) => bail!("audit_aggregate_seconds must be between 0 and 3600, not {s}"),
    })
}

/// The connection limits: each timeout between 1 second and a day, at least 16 connections.
fn connection_limits(flags: &Layer, env: &Layer, file: &Layer) -> Result<ConnectionLimits> {
    let defaults = ConnectionLimits::default();
    let seconds = |name: &str, value: Option<u64>, default: Duration| match value {
        None => Ok(default),
        Some(s) if (1..=86_400).contains(&s) => Ok(Duration::from_secs(s)),
        Some(s) => Err(anyhow!("{name} must be between 1 and 86400, not {s}")),
    };
    let max_connections = match first!(max_connections, flags, env, file) {
        None => defaults.max_connections,
        Some(n) if n >= 16 => n,
        Some(n) => return Err(anyhow!("max_connections must be at least 16, not {n}")),
    };
    Ok(ConnectionLimits {
        header_timeout: seconds(
            "header_timeout_seconds",
            first!(header_timeout_seconds, flags, env, file),
            defaults.header_timeout,
        )?,
        body_timeout: seconds(
            "body_timeout_seconds",
            first!(body_timeout_seconds, flags, env, file),
            defaults.body_timeout,
        )?,
        idle_timeout: seconds(
            "idle_timeout_seconds",
            first!(idle_timeout_seconds, flags, env, file),
            defaults.idle_timeout,
        )?,
        max_connections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let file: Layer =
            toml::from_str("kdf_iterations = 2000\nissuer = \"https://file\"\nlogin_queue = 7")
                .unwrap();
        let env = Layer {
            kdf_iterations: Some(3000),
            issuer: Some("https://env".into()),
            ..Layer::default()
        };
        let flags = Layer {
            kdf_iterations: Some(4000),
            ..Layer::default()
        };
        let r = resolve(&flags, &env, &file).unwrap();
        assert_eq!(r.server.kdf_iterations, 4000);
        assert_eq!(r.server.issuer, "https://env");
        assert_eq!(r.server.login_queue, 7);
        assert_eq!(r.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn the_master_key_is_never_read_from_the_settings_file_only_its_file() {
        let err = toml::from_str::<Layer>(
            "master_key = \"ERERERERERERERERERERERERERERERERERERERERERE=\"",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "ERERERERERERERERERERERERERERERERERERERERERE=\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let file: Layer =
            toml::from_str(&format!("master_key_file = {:?}", path.to_str().unwrap())).unwrap();
        let r = resolve(&Layer::default(), &Layer::default(), &file).unwrap();
        let expected = MasterKey::from_bytes([0x11; 32]);
        assert_eq!(
            r.master_key.map(|k| k.id().to_string()),
            Some(expected.id().to_string())
        );
        // A layer before it wins: here the environment's key.
        let env = Layer {
            master_key: Some(MasterKey::from_bytes([0x22; 32])),
            ..Layer::default()
        };
        let r = resolve(&Layer::default(), &env, &file).unwrap();
        assert_ne!(r.master_key.unwrap().id(), expected.id());
    }

    #[test]
    fn an_unknown_key_or_a_bad_value_is_refused() {
        assert!(toml::from_str::<Layer>("kdf_iteration = 2000").is_err());
        let bad = Layer {
            kdf_iterations: Some(10),
            ..Layer::default()
        };
        assert!(resolve(&bad, &Layer::default(), &Layer::default()).is_err());
    }
}
