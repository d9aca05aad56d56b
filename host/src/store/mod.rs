//! All of the server's state, behind one interface: apps and their revisions, clients, tenants,
//! installs, users, login failures, refresh tokens and server keys. Nothing outside this module
//! writes SQL, and the SQL stays portable (no SQLite-only syntax beyond the connection's PRAGMAs),
//! so that another backend can implement the same interface.
//!
//! Instants are stored as RFC 3339 text in UTC, secrets only as hashes: PHC strings for
//! passwords, HMACs for client secrets, SHA-256 for refresh tokens.

use anyhow::{anyhow, bail, Context, Result};
use granted_policy::model::{
    App, ClientRecord, GrantType, Install, RefreshStatus, RefreshTokenRecord, Revision, SignIn,
    TenantRecord, Timestamp, UserRecord,
};
use granted_policy::token::endpoint::{Lookup, Records};
use rusqlite::{Connection, TransactionBehavior};
use std::cell::RefCell;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

mod admin;
mod audit;
mod db;
mod throttle;
pub use admin::{AdminAudit, AdminTx, Change, ChangeRecord, EditContext};
pub use audit::{AuditFilter, AuditRow, UseCount};
use db::{Db, PgManager};
pub use throttle::{Failure as ThrottleFailure, ThrottleCheck};

/// The schema, one step per version; a database is brought to the last one at open.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE server_keys (
        kid TEXT PRIMARY KEY,
        purpose TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at TEXT NOT NULL,
        retired_at TEXT,
        verify_until TEXT
    );
    CREATE TABLE apps (
        app_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL
    );
    CREATE TABLE revisions (
        app_id TEXT NOT NULL REFERENCES apps(app_id),
        rev INTEGER NOT NULL,
        at TEXT NOT NULL,
        client_id TEXT NOT NULL,
        grant_type TEXT NOT NULL,
        scopes TEXT NOT NULL,
        PRIMARY KEY (app_id, rev)
    );
    CREATE TABLE clients (
        client_id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL REFERENCES apps(app_id),
        secret_hmac TEXT NOT NULL
    );
    CREATE TABLE tenants (
        tenant TEXT PRIMARY KEY,
        sso_required INTEGER NOT NULL,
        password_max_age_days INTEGER
    );
    CREATE TABLE installs (
        tenant TEXT NOT NULL REFERENCES tenants(tenant),
        app_id TEXT NOT NULL REFERENCES apps(app_id),
        rev INTEGER NOT NULL,
        PRIMARY KEY (tenant, app_id)
    );
    CREATE TABLE users (
        tenant TEXT NOT NULL REFERENCES tenants(tenant),
        username TEXT NOT NULL,
        sign_in TEXT NOT NULL,
        password_hash TEXT,
        password_changed_at TEXT,
        disabled INTEGER NOT NULL,
        PRIMARY KEY (tenant, username)
    );
    CREATE TABLE login_failures (
        tenant TEXT NOT NULL,
        username TEXT NOT NULL,
        failures INTEGER NOT NULL,
        locks INTEGER NOT NULL,
        locked_until TEXT,
        PRIMARY KEY (tenant, username)
    );
    CREATE TABLE refresh_tokens (
        token_sha256 TEXT PRIMARY KEY,
        family_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        client_id TEXT NOT NULL,
        username TEXT,
        scope TEXT NOT NULL,
        grant_type TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        status TEXT NOT NULL
    );
    CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);",
    // 2: the audit log, a hash chain: each entry's `sha256` covers the previous entry's and its
    // own canonical JSON.
    "CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        entry TEXT NOT NULL,
        prev_sha256 TEXT NOT NULL,
        sha256 TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at);",
    // 3: admin tokens, stored as SHA-256 of the token (which has 256 bits of entropy).
    "CREATE TABLE admin_tokens (
        id TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        retired_at TEXT
    );",
    // 4: what the audit log is searched by, copied out of each entry's JSON when it is written
    // (the chain covers the JSON; these are an index), and the anchor that retention leaves: the
    // hash of the last entry it removed, where the remaining chain starts.
    "ALTER TABLE audit ADD COLUMN tenant TEXT;
    ALTER TABLE audit ADD COLUMN app_id TEXT;
    ALTER TABLE audit ADD COLUMN grant_type TEXT;
    ALTER TABLE audit ADD COLUMN decision TEXT;
    CREATE INDEX audit_tenant ON audit (tenant, seq);
    CREATE INDEX audit_app ON audit (app_id, seq);
    CREATE TABLE audit_anchor (seq INTEGER NOT NULL, sha256 TEXT NOT NULL);",
    // 5: failed authentications per (client, source address), for hosts that share the
    // database (one host on SQLite keeps them in memory).
    "CREATE TABLE throttle_failures (
        client_id TEXT NOT NULL,
        source TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX throttle_failures_key ON throttle_failures (client_id, source, at_ms);
    CREATE INDEX throttle_failures_at ON throttle_failures (at_ms);",
];

/// Read-only connections of a file database.
const READERS: usize = 4;

/// The `prev_sha256` of the first audit entry.
pub const AUDIT_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain hash of an audit entry: SHA-256 of the previous hash, a newline, and the entry's
/// canonical JSON, in lower-case hex.
pub fn audit_hash(prev_sha256: &str, entry: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(prev_sha256.as_bytes());
    h.update(b"\n");
    h.update(entry.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One decision to make durable: its effects and its audit entry, applied together.
#[derive(Clone, Debug)]
pub struct Job {
    /// What the module asked for.
    pub effects: Vec<Effect>,
    /// The audit entry: kind (`token`, `revocation`, …) and canonical JSON.
    pub audit: Option<(String, String)>,
    /// The decision's instant.
    pub now: Timestamp,
}

/// Where the audit chain breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditBreak {
    /// The first entry that does not check out.
    pub seq: i64,
    /// Why.
    pub why: String,
}

/// The store: every write in one transaction that is durable before it is acknowledged, on one
/// of two backends.
///
/// - SQLite (a file, or memory): one writer connection in WAL mode with `synchronous = FULL`,
///   and read-only connections beside it, so that lookups never wait behind a commit's fsync.
/// - PostgreSQL (several hosts on one database): a pool of connections; every write
///   transaction first takes one advisory lock, so writes are serial across hosts as SQLite's
///   `BEGIN IMMEDIATE` makes them within one (the audit chain's next entry, a refresh token's
///   consumption, the lockout count and every admin change read and then write).
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    /// Locks set by failed logins since this store was opened (for metrics).
    locks_set: Arc<std::sync::atomic::AtomicU64>,
}

enum Backend {
    Lite {
        /// The one writer (and the reader of an in-memory database).
        writer: Mutex<Connection>,
        /// Read-only connections to the same file. Empty for an in-memory database.
        readers: Vec<Mutex<Connection>>,
        next_reader: std::sync::atomic::AtomicUsize,
    },
    Pg(Pg),
}

/// A PostgreSQL backend: the pool, and the breaker that turns requests away at once while the
/// database is out of reach.
struct Pg {
    pool: r2d2::Pool<PgManager>,
    breaker: Breaker,
}

/// How long requests are turned away after the database was found out of reach, before one
/// request tries again (the `Retry-After` of the 503 they get).
const PG_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A circuit breaker: closed while the database answers; open for [`PG_RETRY`] after it did
/// not, when every caller fails at once; then one caller at a time tries a connection, which
/// closes it again or opens it for another round.
#[derive(Default)]
struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    open_until: Option<std::time::Instant>,
    probing: bool,
}

impl Breaker {
    /// Whether a caller may try the database now.
    fn admit(&self) -> bool {
        let mut state = lock(&self.state);
        match state.open_until {
            None => true,
            Some(until) if std::time::Instant::now() < until => false,
            Some(_) if state.probing => false,
            Some(_) => {
                state.probing = true;
                true
            }
        }
    }

    fn succeeded(&self) {
        let mut state = lock(&self.state);
        if state.open_until.is_some() {
            tracing::warn!("the database answers again");
        }
        *state = BreakerState::default();
    }

    fn failed(&self) {
        let mut state = lock(&self.state);
        if state.open_until.is_none() {
            tracing::error!(
                "the database is out of reach: requests get 503 until it answers again"
            );
        }
        state.open_until = Some(std::time::Instant::now() + PG_RETRY);
        state.probing = false;
    }
}

impl Pg {
    /// A pooled connection, or at once an error while the breaker is open. A caller let
    /// through ends by telling the breaker how it went (`settle`), or `take` does it.
    fn conn(&self) -> Result<RefCell<r2d2::PooledConnection<PgManager>>> {
        if !self.breaker.admit() {
            bail!(
                "the database is unavailable (retrying within {} s)",
                PG_RETRY.as_secs()
            );
        }
        self.take()
    }

    /// Another pooled connection for a caller the breaker already let through.
    fn take(&self) -> Result<RefCell<r2d2::PooledConnection<PgManager>>> {
        match self.pool.get() {
            Ok(conn) => Ok(RefCell::new(conn)),
            Err(e) => {
                self.breaker.failed();
                bail!("the database is unavailable: {e}")
            }
        }
    }

    /// Tells the breaker how a call went: a failure that lost the session opens it; anything
    /// else, an error the server answered included, shows the database is there.
    fn settle<T>(&self, conn: &RefCell<r2d2::PooledConnection<PgManager>>, out: &Result<T>) {
        if out.is_err() && conn.borrow().is_broken() {
            self.breaker.failed();
        } else {
            self.breaker.succeeded();
        }
    }

    /// Whether to take another connection after a failure on `conn`: the server closed it (it
    /// restarted, say) and the pool may still hold others like it, which each fail the same
    /// way at their first statement. The pool does not check connections as they leave it
    /// (that would cost a round trip per call); this finds the dead ones instead.
    fn again(&self, conn: &RefCell<r2d2::PooledConnection<PgManager>>, tries: &mut u32) -> bool {
        let gone = conn.borrow().is_broken();
        *tries += 1;
        gone && *tries <= self.pool.max_size()
    }

    /// Runs `f` in a transaction that `begin` opens, on a connection where `begin` succeeded.
    fn run_in<T>(&self, begin: &str, f: impl FnOnce(&Db<'_>) -> Result<T>) -> Result<T> {
        let mut tries = 0;
        let mut next = self.conn();
        let conn = loop {
            let conn = next?;
            match Db::Pg(&conn).batch(begin) {
                Ok(()) => break conn,
                Err(_) if self.again(&conn, &mut tries) => next = self.take(),
                Err(e) => {
                    let out = Err(e);
                    self.settle(&conn, &out);
                    return out;
                }
            }
        };
        let out = f(&Db::Pg(&conn));
        self.settle(&conn, &out);
        out
    }

    /// Runs `f` without a transaction; again on another connection when this one turns out
    /// closed (a read may run twice).
    fn run_read<T>(&self, f: impl Fn(&Db<'_>) -> Result<T>) -> Result<T> {
        let mut tries = 0;
        let mut next = self.conn();
        loop {
            let conn = next?;
            let out = f(&Db::Pg(&conn));
            if out.is_err() && self.again(&conn, &mut tries) {
                next = self.take();
                continue;
            }
            self.settle(&conn, &out);
            return out;
        }
    }
}

/// The advisory lock every PostgreSQL write transaction holds until it ends ("granted" in
/// ASCII): any number that no other application on the database uses.
const PG_WRITE_LOCK: i64 = 0x0067_7261_6e74_6564;

/// How a transaction ends.
enum End<T> {
    Commit(T),
    Rollback(T),
}

/// Options for a PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Most connections this host holds.
    pub max_connections: u32,
    /// Longest wait for a connection (from the pool, or a new one to the server).
    pub connect_timeout: std::time::Duration,
    /// Longest one statement may run.
    pub statement_timeout: std::time::Duration,
    /// Certificates (PEM) to trust for the server's TLS certificate, beside the system's.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            connect_timeout: std::time::Duration::from_secs(2),
            statement_timeout: std::time::Duration::from_secs(10),
            ca_file: None,
        }
    }
}

/// Where a store lives, as an operator names it: a `postgres://` or `postgresql://` URL, or a
/// file path (SQLite).
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// A PostgreSQL server that databases are made on and dropped from: one per test, or per
/// vector of `granted vectors --http --postgres`. Its user needs the right to create databases.
pub struct PgServer {
    url: String,
    admin: Mutex<postgres::Client>,
}

impl PgServer {
    /// Connects as an administrator to `url` (any database of the server).
    pub fn connect(url: &str) -> Result<PgServer> {
        let admin = postgres::Client::connect(url, db::pg_tls(None)?)
            .map_err(db::ConnectError::from)
            .with_context(|| format!("could not connect to {}", redact_url(url)))?;
        Ok(PgServer {
            url: url.to_string(),
            admin: Mutex::new(admin),
        })
    }

    /// Makes database `name` (letters, digits and `_`), empty; its URL.
    pub fn create(&self, name: &str) -> Result<String> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("`{name}` is not a database name this makes (letters, digits, `_`)");
        }
        lock(&self.admin)
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .with_context(|| format!("creating database {name}"))?;
        Ok(with_database(&self.url, name))
    }

    /// Drops database `name`, closing any connection still on it.
    pub fn drop_database(&self, name: &str) -> Result<()> {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("`{name}` is not a database name this makes");
        }
        lock(&self.admin)
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .with_context(|| format!("dropping database {name}"))?;
        Ok(())
    }
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// `url` with its password (in the user part, `user:password@`, or a `password=` parameter)
/// replaced by `***`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// A signing key for access tokens.
#[derive(Clone)]
pub struct SigningKey {
    /// Its id, in the JWT header.
    pub kid: String,
    /// The HS256 secret, base64.
    pub secret: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// How failed logins lock a user out: `threshold` consecutive failures lock for `first`
/// seconds, each further lock doubles it, up to `max` seconds.
#[derive(Clone, Copy, Debug)]
pub struct LockoutPolicy {
    /// Failures before the first lock.
    pub threshold: u32,
    /// The first lock, in seconds.
    pub first: i64,
    /// The longest lock, in seconds.
    pub max: i64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            threshold: 5,
            first: 60,
            max: 3600,
        }
    }
}

/// An app with its clients (`client_id`, secret HMAC).
pub type AppWithClients = (App, Vec<(String, String)>);

/// A tenant with its users and refresh tokens.
pub type TenantWithRecords = (TenantRecord, Vec<UserRecord>, Vec<RefreshTokenRecord>);

/// A change the module asked for after a token decision.
pub use granted_policy::token::endpoint::Effect;

/// The outcome of applying a decision's effects.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Everything applied.
    Done,
    /// A refresh token to consume was no longer active: another request used it first. The
    /// family has been revoked; the request must be decided again (the module then answers
    /// reuse).
    RefreshRace,
    /// A login succeeded while concurrent failures locked the user: nothing was applied; the
    /// request must be decided again (the module then answers as for a locked user).
    LockRace,
    /// This decision could not be written (the others of its batch were); answer 503.
    Failed(String),
}

/// Why a decision's effects were undone.
enum Race {
    Refresh(String),
    Lock,
}

fn lock<T>(conn: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a transaction half applied (SQLite rolls it
    // back), so a poisoned lock is still usable.
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn ts(text: String) -> Result<Timestamp> {
    Timestamp::parse(&text).ok_or_else(|| anyhow!("the database holds a bad instant `{text}`"))
}

fn grant_type(text: &str) -> Result<GrantType> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .with_context(|| format!("the database holds a bad grant type `{text}`"))
}

impl Store {
    /// Opens the store at `location`: a SQLite file ([`Store::open`]) or a PostgreSQL database
    /// ([`Store::connect`], with `pg`).
    pub fn at(location: &Location, pg: &PgOptions) -> Result<Store> {
        match location {
            Location::File(path) => Self::open(path),
            Location::Postgres(url) => Self::connect(url, pg.clone()),
        }
    }

    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to
    /// date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)
            .with_context(|| format!("could not open the database {}", path.display()))?;
        let mut readers = Vec::with_capacity(READERS);
        let writer = Self::lite_writer(conn)?;
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("could not open the database {}", path.display()))?;
            reader.busy_timeout(std::time::Duration::from_secs(5))?;
            reader.set_prepared_statement_cache_capacity(128);
            readers.push(Mutex::new(reader));
        }
        Self::migrated(Backend::Lite {
            writer: Mutex::new(writer),
            readers,
            next_reader: Default::default(),
        })
    }

    /// A private in-memory SQLite database (tests, `granted vectors --http`).
    pub fn in_memory() -> Result<Store> {
        let writer = Self::lite_writer(Connection::open_in_memory()?)?;
        Self::migrated(Backend::Lite {
            writer: Mutex::new(writer),
            readers: Vec::new(),
            next_reader: Default::default(),
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host/db`) and
    /// brings its schema up to date. Several hosts may share the database.
    pub fn connect(url: &str, options: PgOptions) -> Result<Store> {
        let redacted = redact_url(url);
        let mut config: postgres::Config = url
            .parse()
            .with_context(|| format!("not a PostgreSQL URL: {redacted}"))?;
        config.connect_timeout(options.connect_timeout);
        config.application_name("granted");
        // Every session: statements that run too long fail rather than hold a connection.
        let timeout = format!(
            "-c statement_timeout={}",
            options.statement_timeout.as_millis()
        );
        let session_options = match config.get_options() {
            Some(given) => format!("{given} {timeout}"),
            None => timeout,
        };
        config.options(&session_options);
        let pool = r2d2::Pool::builder()
            .max_size(options.max_connections.max(1))
            .min_idle(Some(1))
            .connection_timeout(options.connect_timeout)
            // Not checked on checkout (a round trip per call): a connection the server closed
            // fails at its first statement, and the call takes another (`Pg::again`).
            .test_on_check_out(false)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(PgManager {
                config,
                tls: db::pg_tls(options.ca_file.as_deref())?,
            })
            .with_context(|| format!("could not connect to {redacted}"))?;
        Self::migrated(Backend::Pg(Pg {
            pool,
            breaker: Breaker::default(),
        }))
    }

    fn lite_writer(conn: Connection) -> Result<Connection> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every statement the store runs is prepared once per connection and kept.
        conn.set_prepared_statement_cache_capacity(128);
        // WAL: readers never wait for the writer; FULL: a commit is on disk when it returns.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(conn)
    }

    /// The store on `backend`, its schema brought to the last version in one transaction (on
    /// PostgreSQL under the write lock, so hosts starting together migrate once).
    fn migrated(backend: Backend) -> Result<Store> {
        let store = Store {
            backend: Arc::new(backend),
            locks_set: Arc::default(),
        };
        store.write_tx(migrate)?;
        Ok(store)
    }

    /// Which backend, for logs: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match *self.backend {
            Backend::Lite { .. } => "sqlite",
            Backend::Pg(_) => "postgres",
        }
    }

    /// Whether the database answered the last time it was tried: always on SQLite; on
    /// PostgreSQL, false from a call that could not reach it until one that did.
    pub fn reachable(&self) -> bool {
        match &*self.backend {
            Backend::Lite { .. } => true,
            Backend::Pg(pg) => lock(&pg.breaker.state).open_until.is_none(),
        }
    }

    /// Whether a call may run on an async runtime's own threads. PostgreSQL's client blocks
    /// on a runtime of its own, which cannot start inside another: such calls go through
    /// `spawn_blocking`.
    pub fn blocks_runtime(&self) -> bool {
        matches!(*self.backend, Backend::Pg(_))
    }

    /// Runs `f` on a connection to read with, without a transaction: on SQLite a free reader
    /// when there is one, else the next in turn (the writer for an in-memory database).
    fn read<T>(&self, f: impl Fn(&Db<'_>) -> Result<T>) -> Result<T> {
        match &*self.backend {
            Backend::Lite {
                writer,
                readers,
                next_reader,
            } => {
                let conn = lite_reader(writer, readers, next_reader);
                f(&Db::Lite(&conn))
            }
            Backend::Pg(pg) => pg.run_read(f),
        }
    }

    /// Runs `f` in a read-only transaction: everything it reads comes from one snapshot.
    fn snapshot<T>(&self, f: impl FnOnce(&Db<'_>) -> Result<T>) -> Result<T> {
        match &*self.backend {
            Backend::Lite {
                writer,
                readers,
                next_reader,
            } => {
                let mut conn = lite_reader(writer, readers, next_reader);
                let tx = conn.transaction()?;
                let out = f(&Db::Lite(&tx))?;
                // Read only: ending it either way releases the snapshot.
                tx.commit()?;
                Ok(out)
            }
            Backend::Pg(pg) => pg.run_in("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", |db| {
                let out = f(db);
                pg_end(db, out.is_ok())?;
                out
            }),
        }
    }

    /// Runs `f` in a write transaction (writes are serial: SQLite's `BEGIN IMMEDIATE`, or
    /// PostgreSQL's advisory lock), committed when it answers [`End::Commit`] and rolled back
    /// when it answers [`End::Rollback`] or fails.
    fn transact<T>(&self, f: impl FnOnce(&Db<'_>) -> Result<End<T>>) -> Result<T> {
        match &*self.backend {
            Backend::Lite { writer, .. } => {
                let mut conn = lock(writer);
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                match f(&Db::Lite(&tx))? {
                    End::Commit(out) => {
                        tx.commit()?;
                        Ok(out)
                    }
                    End::Rollback(out) => Ok(out),
                }
            }
            // READ COMMITTED: each statement sees what committed before it, so everything after
            // the lock sees every earlier writer's work.
            Backend::Pg(pg) => pg.run_in(&format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})"
            ), |db| {
                match f(db) {
                    Ok(End::Commit(out)) => {
                        // An error here leaves the outcome unknown to this host; it is never
                        // retried (the caller answers 503, and the client may try again).
                        pg_end(db, true)?;
                        Ok(out)
                    }
                    Ok(End::Rollback(out)) => {
                        pg_end(db, false)?;
                        Ok(out)
                    }
                    Err(e) => {
                        // The error is what the caller needs; a failed rollback only closes
                        // the connection (the server rolls back what a lost session began).
                        let _ = pg_end(db, false);
                        Err(e)
                    }
                }
            }),
        }
    }

    /// [`Store::transact`] that always commits what `f` did when it succeeds.
    fn write_tx<T>(&self, f: impl FnOnce(&Db<'_>) -> Result<T>) -> Result<T> {
        self.transact(|db| f(db).map(End::Commit))
    }

    /// The schema version.
    pub fn schema_version(&self) -> Result<i64> {
        self.read(|db| db.value("SELECT MAX(version) FROM schema_version", &[]))
    }

    // --- server keys ---------------------------------------------------------------------

    /// The current signing key, and the client-secret key; created (from `entropy`) on first
    /// use, in one transaction.
    pub fn ensure_keys(
        &self,
        now: Timestamp,
        mut entropy: impl FnMut() -> Result<String>,
    ) -> Result<(SigningKey, String)> {
        self.write_tx(|db| {
            if current_signing_key(db)?.is_none() {
                insert_key(db, "signing", &new_kid(now, &entropy()?), &entropy()?, now)?;
            }
            if client_secret_key(db)?.is_none() {
                insert_key(db, "client_secret", "client-secret-1", &entropy()?, now)?;
            }
            let signing = current_signing_key(db)?.ok_or_else(|| anyhow!("no signing key"))?;
            let client = client_secret_key(db)?.ok_or_else(|| anyhow!("no client-secret key"))?;
            Ok((signing, client))
        })
    }

    /// The current signing key and the client-secret key, if made.
    pub fn current_keys(&self) -> Result<Option<(SigningKey, String)>> {
        self.snapshot(|db| Ok(current_signing_key(db)?.zip(client_secret_key(db)?)))
    }

    /// Adds a new signing key and retires the current one: it still verifies tokens until
    /// `verify_until` (when the last token it signed expires), but signs nothing new.
    pub fn rotate_signing_key(
        &self,
        now: Timestamp,
        verify_until: Timestamp,
        secret: &str,
        kid_entropy: &str,
    ) -> Result<SigningKey> {
        self.write_tx(|db| {
            db.exec(
                "UPDATE server_keys SET retired_at = ?1, verify_until = ?2
                 WHERE purpose = 'signing' AND retired_at IS NULL",
                &[&now.to_rfc3339(), &verify_until.to_rfc3339()],
            )?;
            let kid = new_kid(now, kid_entropy);
            insert_key(db, "signing", &kid, secret, now)?;
            Ok(SigningKey {
                kid,
                secret: secret.to_string(),
            })
        })
    }

    /// Every signing key that still verifies at `now`: the current one and retired ones whose
    /// tokens may not have expired.
    pub fn verification_keys(&self, now: Timestamp) -> Result<Vec<SigningKey>> {
        let rows = self.read(|db| {
            db.rows(
                "SELECT kid, secret, verify_until FROM server_keys WHERE purpose = 'signing'
                 ORDER BY created_at DESC",
                &[],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<String>(1)?,
                        r.get::<Option<String>>(2)?,
                    ))
                },
            )
        })?;
        let mut keys = Vec::new();
        for (kid, secret, until) in rows {
            let live = match until {
                None => true,
                Some(until) => now < ts(until)?,
            };
            if live {
                keys.push(SigningKey { kid, secret });
            }
        }
        Ok(keys)
    }

    // --- lookups ---------------------------------------------------------------------------

    /// The tenant with its installs.
    pub fn tenant(&self, tenant: &str) -> Result<Option<TenantRecord>> {
        self.snapshot(|db| tenant_record(db, tenant))
    }

    /// What a token request's `need_records` step asks for, read in one transaction: the
    /// records come from one snapshot, and a SQLite reader takes its WAL read lock (and checks
    /// its page cache against the log the writer keeps appending to) once instead of per
    /// statement.
    pub fn records(&self, lookup: &Lookup) -> Result<Records> {
        self.snapshot(|db| records_in(db, lookup))
    }

    /// A refresh token by its SHA-256.
    pub fn refresh_token(&self, sha256: &str) -> Result<Option<RefreshTokenRecord>> {
        self.read(|db| refresh_record(db, sha256))
    }

    /// The lock on (`tenant`, `username`) at `now`, whether or not the user exists: unknown
    /// names are counted like known ones.
    pub fn locked_until(&self, tenant: &str, username: &str) -> Result<Option<Timestamp>> {
        self.read(|db| locked_until(db, tenant, username))
    }

    /// Users (and unknown names) whose lock has not ended at `now`.
    pub fn users_locked(&self, now: Timestamp) -> Result<i64> {
        self.read(|db| {
            db.value(
                "SELECT COUNT(*) FROM login_failures WHERE locked_until > ?1",
                &[&now.to_rfc3339()],
            )
        })
    }

    // --- effects ---------------------------------------------------------------------------

    /// Applies a decision's effects in one transaction (see [`Store::apply_batch`]).
    pub fn apply(
        &self,
        effects: &[Effect],
        now: Timestamp,
        lockout: LockoutPolicy,
    ) -> Result<Applied> {
        let job = Job {
            effects: effects.to_vec(),
            audit: None,
            now,
        };
        self.apply_batch(std::slice::from_ref(&job), lockout)?
            .pop()
            .ok_or_else(|| anyhow!("no outcome"))
    }

    /// Applies several decisions in one transaction (group commit): each one's effects and its
    /// audit entry together, or none of them. A refresh token that is no longer active when it
    /// is consumed (a concurrent request used it) undoes that decision, revokes the token's
    /// family and reports [`Applied::RefreshRace`] for it; the others are unaffected.
    pub fn apply_batch(&self, jobs: &[Job], lockout: LockoutPolicy) -> Result<Vec<Applied>> {
        let (outcomes, new_locks) = self.write_tx(|db| {
            let (mut seq, mut prev) = audit_head(db)?;
            let mut outcomes = Vec::with_capacity(jobs.len());
            let mut new_locks = 0;
            for (i, job) in jobs.iter().enumerate() {
                // Each job in a savepoint of its own; the previous one's is released in the
                // same round trip, and the last one's by COMMIT.
                db.batch(if i == 0 {
                    "SAVEPOINT job"
                } else {
                    "RELEASE SAVEPOINT job; SAVEPOINT job"
                })?;
                let mut locks = 0;
                let outcome = match apply_effects(db, &job.effects, job.now, lockout, &mut locks) {
                    Ok(None) => match &job.audit {
                        Some((kind, entry)) => {
                            let sha = audit_hash(&prev, entry);
                            let written =
                                audit::insert(db, seq + 1, job.now, kind, entry, &prev, &sha);
                            match written {
                                Ok(_) => {
                                    seq += 1;
                                    prev = sha;
                                    Applied::Done
                                }
                                Err(e) => Applied::Failed(format!("{e:#}")),
                            }
                        }
                        None => Applied::Done,
                    },
                    Ok(Some(Race::Refresh(raced))) => {
                        db.batch("ROLLBACK TO SAVEPOINT job")?;
                        db.exec(
                            "UPDATE refresh_tokens SET status = 'revoked'
                             WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_sha256 = ?1)
                             AND status = 'active'",
                            &[&raced],
                        )?;
                        Applied::RefreshRace
                    }
                    Ok(Some(Race::Lock)) => Applied::LockRace,
                    Err(e) => Applied::Failed(format!("{e:#}")),
                };
                if matches!(outcome, Applied::LockRace | Applied::Failed(_)) {
                    db.batch("ROLLBACK TO SAVEPOINT job")?;
                }
                if outcome == Applied::Done {
                    new_locks += locks;
                }
                outcomes.push(outcome);
            }
            Ok((outcomes, new_locks))
        })?;
        self.locks_set
            .fetch_add(new_locks, std::sync::atomic::Ordering::Relaxed);
        Ok(outcomes)
    }

    /// Users (or unknown names) locked by failed logins since this store was opened.
    pub fn lockouts(&self) -> u64 {
        self.locks_set.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks the whole audit chain; the first entry that does not check out, if any, and the
    /// number of entries.
    pub fn verify_audit(&self) -> Result<(i64, Option<AuditBreak>)> {
        self.snapshot(|db| {
            // After retention removed old entries, the chain starts at the anchor it left.
            let (first, mut prev) = match audit::anchor(db)? {
                Some((seq, sha)) => (seq + 1, sha),
                None => (1, AUDIT_GENESIS.to_string()),
            };
            let mut count = 0;
            let mut after = first - 1;
            // In pages, so that a long log is never all in memory at once.
            loop {
                let page = db.rows(
                    "SELECT seq, entry, prev_sha256, sha256 FROM audit WHERE seq > ?1
                     ORDER BY seq LIMIT 1000",
                    &[&after],
                    |r| {
                        Ok((
                            r.get::<i64>(0)?,
                            r.get::<String>(1)?,
                            r.get::<String>(2)?,
                            r.get::<String>(3)?,
                        ))
                    },
                )?;
                let Some(last) = page.last() else {
                    break;
                };
                after = last.0;
                for (seq, entry, prev_sha, sha) in page {
                    let expected_seq = first + count;
                    count += 1;
                    let broken = |why: String| Ok((count, Some(AuditBreak { seq, why })));
                    if seq != expected_seq {
                        return broken(format!(
                            "entry {expected_seq} is missing (the next is {seq})"
                        ));
                    }
                    if prev_sha != prev {
                        return broken("its link to the previous entry does not match".into());
                    }
                    if audit_hash(&prev_sha, &entry) != sha {
                        return broken("its content does not match its hash".into());
                    }
                    prev = sha;
                }
            }
            Ok((count, None))
        })
    }

    /// Audit entries (`seq`, `at`, kind, entry JSON) after `after`, oldest first, at most `limit`.
    pub fn audit_entries(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String, String, String)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|db| {
            db.rows(
                "SELECT seq, at, kind, entry FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                &[&after, &limit],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
        })
    }

    // --- import / export -------------------------------------------------------------------

    /// Runs `f` in one transaction: all of it is written, or nothing.
    pub fn write<T>(&self, f: impl FnOnce(&Writer<'_>) -> Result<T>) -> Result<T> {
        self.write_tx(|db| f(&Writer { db }))
    }

    /// Every app with its history and clients (`client_id`, secret HMAC).
    pub fn apps(&self) -> Result<Vec<AppWithClients>> {
        self.snapshot(|db| {
            let ids: Vec<String> =
                db.rows("SELECT app_id FROM apps ORDER BY app_id", &[], |r| r.get(0))?;
            let mut out = Vec::new();
            for id in ids {
                let app = app(db, &id)?.ok_or_else(|| anyhow!("app vanished"))?;
                let clients = db.rows(
                    "SELECT client_id, secret_hmac FROM clients WHERE app_id = ?1 ORDER BY client_id",
                    &[&id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                out.push((app, clients));
            }
            Ok(out)
        })
    }

    /// Every tenant with its users and refresh tokens.
    pub fn tenants(&self) -> Result<Vec<TenantWithRecords>> {
        self.snapshot(|db| {
            let ids: Vec<String> =
                db.rows("SELECT tenant FROM tenants ORDER BY tenant", &[], |r| r.get(0))?;
            let mut out = Vec::new();
            for id in ids {
                let tenant =
                    tenant_record(db, &id)?.ok_or_else(|| anyhow!("tenant vanished"))?;
                let names: Vec<String> = db.rows(
                    "SELECT username FROM users WHERE tenant = ?1 ORDER BY username",
                    &[&id],
                    |r| r.get(0),
                )?;
                let mut users = Vec::new();
                for name in names {
                    if let Some(user) = user_record(db, &id, &name)? {
                        users.push(user);
                    }
                }
                let hashes: Vec<String> = db.rows(
                    "SELECT token_sha256 FROM refresh_tokens WHERE tenant = ?1 ORDER BY issued_at, token_sha256",
                    &[&id],
                    |r| r.get(0),
                )?;
                let mut tokens = Vec::new();
                for hash in hashes {
                    if let Some(token) = refresh_record(db, &hash)? {
                        tokens.push(token);
                    }
                }
                out.push((tenant, users, tokens));
            }
            Ok(out)
        })
    }
}

/// What a `need_records` step asks for, inside the caller's transaction.
fn records_in(db: &Db<'_>, lookup: &Lookup) -> Result<Records> {
    let tenant = lookup.tenant.as_str();
    Ok(Records {
        tenant: Some(tenant_record(db, tenant)?),
        client: Some(client_record(db, &lookup.client_id)?),
        user: match &lookup.username {
            Some(username) => Some(user_record(db, tenant, username)?),
            None => None,
        },
        refresh_token: match &lookup.refresh_token_sha256 {
            Some(hash) => Some(refresh_record(db, hash)?),
            None => None,
        },
    })
}

/// A free SQLite reader when there is one, else the next in turn; the writer for an in-memory
/// database.
fn lite_reader<'a>(
    writer: &'a Mutex<Connection>,
    readers: &'a [Mutex<Connection>],
    next_reader: &std::sync::atomic::AtomicUsize,
) -> MutexGuard<'a, Connection> {
    if readers.is_empty() {
        return lock(writer);
    }
    for reader in readers {
        if let Ok(guard) = reader.try_lock() {
            return guard;
        }
    }
    let i = next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % readers.len();
    lock(&readers[i])
}

/// Ends a PostgreSQL transaction.
fn pg_end(db: &Db<'_>, commit: bool) -> Result<()> {
    db.batch(if commit { "COMMIT" } else { "ROLLBACK" })
}

/// Brings the schema to the last version, inside the caller's write transaction.
fn migrate(db: &Db<'_>) -> Result<()> {
    migrate_to(db, MIGRATIONS.len())
}

/// Brings the schema to version `last` (no further), inside the caller's write transaction.
fn migrate_to(db: &Db<'_>, last: usize) -> Result<()> {
    db.exec(
        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
        &[],
    )?;
    let version: Option<i64> = db.value("SELECT MAX(version) FROM schema_version", &[])?;
    let version = version.unwrap_or(0);
    if version > MIGRATIONS.len() as i64 {
        bail!(
            "the database is at schema version {version}, newer than this granted knows ({}): use a newer granted",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(last)
        .skip(version as usize)
    {
        let sql = if db.is_pg() {
            std::borrow::Cow::Owned(pg_schema(sql))
        } else {
            std::borrow::Cow::Borrowed(*sql)
        };
        db.batch(&sql)
            .with_context(|| format!("migration {}", i + 1))?;
        if i + 1 == 4 {
            audit::backfill_columns(db).context("migration 4")?;
        }
        db.exec(
            "INSERT INTO schema_version (version) VALUES (?1)",
            &[&(i as i64 + 1)],
        )?;
    }
    Ok(())
}

/// A migration as PostgreSQL runs it: the same statements, with every integer 64 bits wide
/// (the store reads and writes `i64`) and text compared byte by byte, as SQLite does (so that
/// `ORDER BY` and the RFC 3339 instants compare the same on both).
fn pg_schema(sql: &str) -> String {
    sql.replace("INTEGER", "BIGINT")
        .replace(" TEXT", " TEXT COLLATE \"C\"")
}

/// Writes inside one transaction of [`Store::write`].
pub struct Writer<'a> {
    db: &'a Db<'a>,
}

impl Writer<'_> {
    /// Creates or replaces an app and its whole revision history.
    pub fn put_app(&self, app: &App) -> Result<()> {
        self.db.exec(
            "INSERT INTO apps (app_id, created_at) VALUES (?1, ?2)
             ON CONFLICT (app_id) DO UPDATE SET created_at = excluded.created_at",
            &[&app.app_id, &app.created_at.to_rfc3339()],
        )?;
        self.db
            .exec("DELETE FROM revisions WHERE app_id = ?1", &[&app.app_id])?;
        for r in &app.revisions {
            insert_revision(self.db, &app.app_id, r)?;
        }
        Ok(())
    }

    /// Creates or replaces a client of an app.
    pub fn put_client(&self, client_id: &str, app_id: &str, secret_hmac: &str) -> Result<()> {
        self.db.exec(
            "INSERT INTO clients (client_id, app_id, secret_hmac) VALUES (?1, ?2, ?3)
             ON CONFLICT (client_id) DO UPDATE SET app_id = excluded.app_id, secret_hmac = excluded.secret_hmac",
            &[&client_id, &app_id, &secret_hmac],
        )?;
        Ok(())
    }

    /// Creates or replaces a tenant and its installs.
    pub fn put_tenant(&self, tenant: &TenantRecord) -> Result<()> {
        self.db.exec(
            "INSERT INTO tenants (tenant, sso_required, password_max_age_days) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant) DO UPDATE SET sso_required = excluded.sso_required,
                 password_max_age_days = excluded.password_max_age_days",
            &[
                &tenant.tenant,
                &tenant.sso_required,
                &tenant.password_max_age_days,
            ],
        )?;
        self.db
            .exec("DELETE FROM installs WHERE tenant = ?1", &[&tenant.tenant])?;
        for install in &tenant.installs {
            self.db.exec(
                "INSERT INTO installs (tenant, app_id, rev) VALUES (?1, ?2, ?3)",
                &[&tenant.tenant, &install.app_id, &install.rev],
            )?;
        }
        Ok(())
    }

    /// The stored password hash of a user, if any (to keep it when an import repeats).
    pub fn password_hash(&self, tenant: &str, username: &str) -> Result<Option<String>> {
        Ok(self
            .db
            .opt(
                "SELECT password_hash FROM users WHERE tenant = ?1 AND username = ?2",
                &[&tenant, &username],
                |r| r.get::<Option<String>>(0),
            )?
            .flatten())
    }

    /// Creates or replaces a user (and its lock, when the record carries one).
    pub fn put_user(&self, tenant: &str, user: &UserRecord) -> Result<()> {
        upsert_user(self.db, tenant, user)?;
        if let Some(until) = user.locked_until {
            self.db.exec(
                "INSERT INTO login_failures (tenant, username, failures, locks, locked_until)
                 VALUES (?1, ?2, 0, 1, ?3)
                 ON CONFLICT (tenant, username) DO UPDATE SET locked_until = excluded.locked_until",
                &[&tenant, &user.username, &until.to_rfc3339()],
            )?;
        }
        Ok(())
    }

    /// Creates or replaces a refresh token record.
    pub fn put_refresh(&self, record: &RefreshTokenRecord) -> Result<()> {
        self.db.exec(
            "DELETE FROM refresh_tokens WHERE token_sha256 = ?1",
            &[&record.token_sha256],
        )?;
        insert_refresh(self.db, record)
    }
}

/// Inserts one revision of an app.
fn insert_revision(db: &Db<'_>, app_id: &str, r: &Revision) -> Result<()> {
    db.exec(
        "INSERT INTO revisions (app_id, rev, at, client_id, grant_type, scopes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[
            &app_id,
            &r.rev,
            &r.at.to_rfc3339(),
            &r.client_id,
            &r.grant_type.as_str(),
            &serde_json::to_string(&r.scopes)?,
        ],
    )?;
    Ok(())
}

/// Creates or replaces a user's row (not its lock).
fn upsert_user(db: &Db<'_>, tenant: &str, user: &UserRecord) -> Result<()> {
    let sign_in = match user.sign_in {
        SignIn::Direct => "direct",
        SignIn::Sso => "sso",
    };
    db.exec(
        "INSERT INTO users (tenant, username, sign_in, password_hash, password_changed_at, disabled)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (tenant, username) DO UPDATE SET sign_in = excluded.sign_in,
             password_hash = excluded.password_hash,
             password_changed_at = excluded.password_changed_at,
             disabled = excluded.disabled",
        &[
            &tenant,
            &user.username,
            &sign_in,
            &user.password_hash,
            &user.password_changed_at.map(|t| t.to_rfc3339()),
            &user.disabled,
        ],
    )?;
    Ok(())
}

/// The last audit entry's `seq` and hash; when there is none, the anchor retention left, or 0
/// and the genesis hash.
fn audit_head(db: &Db<'_>) -> Result<(i64, String)> {
    let last = db.opt(
        "SELECT seq, sha256 FROM audit ORDER BY seq DESC LIMIT 1",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match last {
        Some(last) => Ok(last),
        None => Ok(audit::anchor(db)?.unwrap_or((0, AUDIT_GENESIS.to_string()))),
    }
}

/// Applies effects; a [`Race`] when a refresh token to consume was no longer active, or when a
/// login's success meets a lock that concurrent failures set meanwhile.
fn apply_effects(
    db: &Db<'_>,
    effects: &[Effect],
    now: Timestamp,
    lockout: LockoutPolicy,
    locks_set: &mut u64,
) -> Result<Option<Race>> {
    for effect in effects {
        match effect {
            Effect::ConsumeRefreshToken { token_sha256 } => {
                let changed = db.exec(
                    "UPDATE refresh_tokens SET status = 'used'
                     WHERE token_sha256 = ?1 AND status = 'active'",
                    &[token_sha256],
                )?;
                if changed == 0 {
                    return Ok(Some(Race::Refresh(token_sha256.clone())));
                }
            }
            Effect::StoreRefreshToken { record } => insert_refresh(db, record)?,
            Effect::RevokeRefreshFamily { family_id } => {
                db.exec(
                    "UPDATE refresh_tokens SET status = 'revoked'
                     WHERE family_id = ?1 AND status = 'active'",
                    &[family_id],
                )?;
            }
            Effect::RecordLoginFailure { tenant, username } => {
                if record_failure(db, tenant, username, now, lockout)? {
                    *locks_set += 1;
                }
            }
            Effect::ResetLoginFailures { tenant, username } => {
                if locked_until(db, tenant, username)?.is_some_and(|until| now < until) {
                    return Ok(Some(Race::Lock));
                }
                db.exec(
                    "DELETE FROM login_failures WHERE tenant = ?1 AND username = ?2",
                    &[tenant, username],
                )?;
            }
        }
    }
    Ok(None)
}

fn new_kid(now: Timestamp, entropy: &str) -> String {
    let date = now.to_rfc3339();
    let day = date.get(..10).unwrap_or("key");
    let tag: String = entropy
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    format!("{day}-{tag}")
}

fn insert_key(db: &Db<'_>, purpose: &str, kid: &str, secret: &str, now: Timestamp) -> Result<()> {
    db.exec(
        "INSERT INTO server_keys (kid, purpose, secret, created_at) VALUES (?1, ?2, ?3, ?4)",
        &[&kid, &purpose, &secret, &now.to_rfc3339()],
    )?;
    Ok(())
}

fn current_signing_key(db: &Db<'_>) -> Result<Option<SigningKey>> {
    db.opt(
        "SELECT kid, secret FROM server_keys WHERE purpose = 'signing' AND retired_at IS NULL
         ORDER BY created_at DESC LIMIT 1",
        &[],
        |r| {
            Ok(SigningKey {
                kid: r.get(0)?,
                secret: r.get(1)?,
            })
        },
    )
}

fn client_secret_key(db: &Db<'_>) -> Result<Option<String>> {
    db.opt(
        "SELECT secret FROM server_keys WHERE purpose = 'client_secret' AND retired_at IS NULL
         ORDER BY created_at DESC LIMIT 1",
        &[],
        |r| r.get(0),
    )
}

/// An app's columns joined with one of its revisions' (all null for an app without any):
/// `created_at`, then `rev`, `at`, `client_id`, `grant_type`, `scopes`.
type AppRow = (
    String,
    Option<u32>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// An [`AppRow`] from `row`'s columns `first` on.
fn app_row(row: &db::Row<'_>, first: usize) -> Result<AppRow> {
    Ok((
        row.get(first)?,
        row.get(first + 1)?,
        row.get(first + 2)?,
        row.get(first + 3)?,
        row.get(first + 4)?,
        row.get(first + 5)?,
    ))
}

/// The app `app_id` from its [`AppRow`]s, revisions in order; `None` when there are none.
fn app_from_rows(app_id: &str, rows: Vec<AppRow>) -> Result<Option<App>> {
    let Some(created) = rows.first().map(|row| row.0.clone()) else {
        return Ok(None);
    };
    let mut revisions = Vec::with_capacity(rows.len());
    for (_, rev, at, client_id, grant, scopes) in rows {
        // An app with no revision: the LEFT JOIN's one row of nulls.
        let (Some(rev), Some(at), Some(client_id), Some(grant), Some(scopes)) =
            (rev, at, client_id, grant, scopes)
        else {
            continue;
        };
        revisions.push(Revision {
            rev,
            at: ts(at)?,
            client_id,
            grant_type: grant_type(&grant)?,
            scopes: serde_json::from_str(&scopes).context("bad scopes in the database")?,
        });
    }
    Ok(Some(App {
        app_id: app_id.to_string(),
        created_at: ts(created)?,
        revisions,
    }))
}

/// An app with its revisions, in one query.
fn app(db: &Db<'_>, app_id: &str) -> Result<Option<App>> {
    let rows = db.rows(
        "SELECT a.created_at, r.rev, r.at, r.client_id, r.grant_type, r.scopes
         FROM apps a LEFT JOIN revisions r ON r.app_id = a.app_id
         WHERE a.app_id = ?1 ORDER BY r.rev",
        &[&app_id],
        |r| app_row(r, 0),
    )?;
    app_from_rows(app_id, rows)
}

/// A client with its app and the app's revisions, in one query.
fn client_record(db: &Db<'_>, client_id: &str) -> Result<Option<ClientRecord>> {
    let rows: Vec<(String, String, AppRow)> = db.rows(
        "SELECT c.app_id, c.secret_hmac,
                a.created_at, r.rev, r.at, r.client_id, r.grant_type, r.scopes
         FROM clients c JOIN apps a ON a.app_id = c.app_id
         LEFT JOIN revisions r ON r.app_id = c.app_id
         WHERE c.client_id = ?1 ORDER BY r.rev",
        &[&client_id],
        |r| Ok((r.get(0)?, r.get(1)?, app_row(r, 2)?)),
    )?;
    let Some((app_id, secret_hmac)) = rows.first().map(|(a, s, _)| (a.clone(), s.clone())) else {
        return Ok(None);
    };
    let app = app_from_rows(&app_id, rows.into_iter().map(|(_, _, row)| row).collect())?
        .ok_or_else(|| anyhow!("client of a missing app"))?;
    Ok(Some(ClientRecord {
        client_id: client_id.to_string(),
        secret_hmac,
        app,
    }))
}

/// A tenant with its installs, in one query.
fn tenant_record(db: &Db<'_>, tenant: &str) -> Result<Option<TenantRecord>> {
    type Row = (bool, Option<u32>, Option<String>, Option<u32>);
    let rows: Vec<Row> = db.rows(
        "SELECT t.sso_required, t.password_max_age_days, i.app_id, i.rev
         FROM tenants t LEFT JOIN installs i ON i.tenant = t.tenant
         WHERE t.tenant = ?1 ORDER BY i.app_id",
        &[&tenant],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let Some(&(sso_required, password_max_age_days, ..)) = rows.first() else {
        return Ok(None);
    };
    let installs = rows
        .into_iter()
        .filter_map(|(_, _, app_id, rev)| {
            Some(Install {
                app_id: app_id?,
                rev: rev?,
            })
        })
        .collect();
    Ok(Some(TenantRecord {
        tenant: tenant.to_string(),
        sso_required,
        password_max_age_days,
        installs,
    }))
}

fn locked_until(db: &Db<'_>, tenant: &str, username: &str) -> Result<Option<Timestamp>> {
    let until: Option<Option<String>> = db.opt(
        "SELECT locked_until FROM login_failures WHERE tenant = ?1 AND username = ?2",
        &[&tenant, &username],
        |r| r.get(0),
    )?;
    until.flatten().map(ts).transpose()
}

/// A user with its lock, in one query.
fn user_record(db: &Db<'_>, tenant: &str, username: &str) -> Result<Option<UserRecord>> {
    type Row = (String, Option<String>, Option<String>, bool, Option<String>);
    let row: Option<Row> = db.opt(
        "SELECT u.sign_in, u.password_hash, u.password_changed_at, u.disabled, f.locked_until
         FROM users u LEFT JOIN login_failures f
           ON f.tenant = u.tenant AND f.username = u.username
         WHERE u.tenant = ?1 AND u.username = ?2",
        &[&tenant, &username],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let Some((sign_in, password_hash, changed, disabled, locked)) = row else {
        return Ok(None);
    };
    Ok(Some(UserRecord {
        username: username.to_string(),
        sign_in: if sign_in == "sso" {
            SignIn::Sso
        } else {
            SignIn::Direct
        },
        password_hash,
        password_changed_at: changed.map(ts).transpose()?,
        disabled,
        locked_until: locked.map(ts).transpose()?,
    }))
}

fn refresh_record(db: &Db<'_>, sha256: &str) -> Result<Option<RefreshTokenRecord>> {
    db.opt(
        "SELECT family_id, tenant, client_id, username, scope, grant_type, issued_at, expires_at, status
         FROM refresh_tokens WHERE token_sha256 = ?1",
        &[&sha256],
        |r| {
            Ok(RefreshTokenRecord {
                token_sha256: sha256.to_string(),
                family_id: r.get(0)?,
                tenant: r.get(1)?,
                client_id: r.get(2)?,
                username: r.get(3)?,
                scope: r.get(4)?,
                grant_type: grant_type(&r.get::<String>(5)?)?,
                issued_at: ts(r.get(6)?)?,
                expires_at: ts(r.get(7)?)?,
                status: match r.get::<String>(8)?.as_str() {
                    "active" => RefreshStatus::Active,
                    "used" => RefreshStatus::Used,
                    _ => RefreshStatus::Revoked,
                },
            })
        },
    )
}

fn insert_refresh(db: &Db<'_>, r: &RefreshTokenRecord) -> Result<()> {
    let status = match r.status {
        RefreshStatus::Active => "active",
        RefreshStatus::Used => "used",
        RefreshStatus::Revoked => "revoked",
    };
    db.exec(
        "INSERT INTO refresh_tokens (token_sha256, family_id, tenant, client_id, username, scope,
             grant_type, issued_at, expires_at, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        &[
            &r.token_sha256,
            &r.family_id,
            &r.tenant,
            &r.client_id,
            &r.username,
            &r.scope,
            &r.grant_type.as_str(),
            &r.issued_at.to_rfc3339(),
            &r.expires_at.to_rfc3339(),
            &status,
        ],
    )?;
    Ok(())
}

fn record_failure(
    db: &Db<'_>,
    tenant: &str,
    username: &str,
    now: Timestamp,
    policy: LockoutPolicy,
) -> Result<bool> {
    let row: Option<(u32, u32)> = db.opt(
        "SELECT failures, locks FROM login_failures WHERE tenant = ?1 AND username = ?2",
        &[&tenant, &username],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (failures, locks) = row.unwrap_or((0, 0));
    let failures = failures.saturating_add(1);
    let (failures, locks, until) = if failures >= policy.threshold.max(1) {
        // Lock, doubling each time, up to the maximum; the count starts again.
        let seconds = policy
            .first
            .saturating_mul(1i64 << locks.min(30))
            .min(policy.max)
            .max(1);
        (0, locks.saturating_add(1), Some(now.plus_seconds(seconds)))
    } else {
        (failures, locks, None)
    };
    db.exec(
        "INSERT INTO login_failures (tenant, username, failures, locks, locked_until)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, username) DO UPDATE SET failures = excluded.failures,
             locks = excluded.locks,
             locked_until = COALESCE(excluded.locked_until, login_failures.locked_until)",
        &[
            &tenant,
            &username,
            &failures,
            &locks,
            &until.map(|t| t.to_rfc3339()),
        ],
    )?;
    Ok(until.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    /// Runs a test on a fresh store of each backend: `$name::sqlite` and `$name::postgres`.
    macro_rules! on_both {
        ($name:ident, $test:expr) => {
            mod $name {
                use super::*;

                #[test]
                fn sqlite() {
                    let test: fn(Store) = $test;
                    test(Store::in_memory().unwrap());
                }

                #[test]
                fn postgres() {
                    let test: fn(Store) = $test;
                    test(crate::testing::postgres_store().unwrap());
                }
            }
        };
    }

    on_both!(
        migration_4_fills_the_audit_search_columns_of_older_entries,
        |store| {
            // Start again from schema version 3, with one token decision in the audit log.
            store
                .write_tx(|db| {
                    db.batch(
                        "DROP TABLE audit_anchor; DROP TABLE admin_tokens; DROP TABLE audit;
                     DROP TABLE refresh_tokens; DROP TABLE login_failures; DROP TABLE users;
                     DROP TABLE installs; DROP TABLE tenants; DROP TABLE clients;
                     DROP TABLE revisions; DROP TABLE apps; DROP TABLE server_keys;
                     DROP TABLE schema_version; DROP TABLE IF EXISTS throttle_failures",
                    )?;
                    migrate_to(db, 3)
                })
                .unwrap();
            assert_eq!(store.schema_version().unwrap(), 3);
            let entry = r#"{"kind":"token","tenant":"acme","app_id":"crm","grant_type":"password","decision":"granted"}"#;
            let sha = audit_hash(AUDIT_GENESIS, entry);
            store
                .write_tx(|db| {
                    db.exec(
                        "INSERT INTO audit (seq, at, kind, entry, prev_sha256, sha256)
                     VALUES (1, '2026-11-20T00:00:00Z', 'token', ?1, ?2, ?3)",
                        &[&entry, &AUDIT_GENESIS, &sha],
                    )
                })
                .unwrap();
            store.write_tx(migrate).unwrap();
            assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
            assert_eq!(
                store.verify_audit().unwrap(),
                (1, None),
                "the chain is untouched"
            );
            let found = store
                .audit_search(
                    &AuditFilter {
                        tenant: Some("acme".into()),
                        grant_type: Some("password".into()),
                        decision: Some("granted".into()),
                        ..AuditFilter::default()
                    },
                    10,
                )
                .unwrap();
            assert_eq!(found.len(), 1);
            let used = store.password_use(t("2026-11-25T00:00:00Z")).unwrap();
            assert_eq!(used.len(), 1);
            assert_eq!((used[0].last_7_days, used[0].last_30_days), (1, 1));
        }
    );

    #[test]
    fn migrations_run_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        store
            .write_tx(|db| db.exec("INSERT INTO schema_version (version) VALUES (999)", &[]))
            .unwrap();
        drop(store);
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer"), "{err}");
    }

    #[test]
    fn postgres_migrates_once_and_refuses_a_newer_schema() {
        let url = crate::testing::fresh_database().unwrap();
        let store = Store::connect(&url, PgOptions::default()).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        // Two hosts starting at once: each takes the write lock, the second finds it done.
        let both: Vec<_> = (0..2)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || Store::connect(&url, PgOptions::default()).map(|_| ()))
            })
            .collect();
        for host in both {
            host.join().unwrap().unwrap();
        }
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        store
            .write_tx(|db| db.exec("INSERT INTO schema_version (version) VALUES (999)", &[]))
            .unwrap();
        let err = format!(
            "{:#}",
            Store::connect(&url, PgOptions::default()).err().unwrap()
        );
        assert!(err.contains("newer"), "{err}");
    }

    #[test]
    fn a_bad_postgres_url_or_an_unreachable_server_is_a_clear_error_without_the_password() {
        let err = format!(
            "{:#}",
            Store::connect("postgres://u:hunter2@h:notaport/db", PgOptions::default())
                .err()
                .unwrap()
        );
        assert!(err.contains("not a PostgreSQL URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = PgOptions {
            connect_timeout: std::time::Duration::from_millis(500),
            ..PgOptions::default()
        };
        let url = format!("postgres://granted:hunter2@127.0.0.1:{port}/granted");
        let err = format!("{:#}", Store::connect(&url, options).err().unwrap());
        assert!(err.contains("could not connect to"), "{err}");
        assert!(err.contains("granted:***@127.0.0.1"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_url_is_pointed_at_another_database() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "g_1"),
            "postgres://u:p@h:5432/g_1"
        );
        assert_eq!(with_database("postgres://h", "g_1"), "postgres://h/g_1");
        assert_eq!(
            with_database("postgresql://h/db?sslmode=disable", "g_1"),
            "postgresql://h/g_1?sslmode=disable"
        );
    }

    #[test]
    fn postgres_over_tls_checks_the_certificate() {
        let mut cluster = crate::testing::Cluster::new().unwrap();
        let ca = cluster.enable_tls().unwrap();
        cluster.start().unwrap();
        // The administrator's own connection skips TLS (it trusts no test CA).
        let admin = PgServer::connect(&format!("{}?sslmode=disable", cluster.url())).unwrap();
        let made = admin.create("tls").unwrap();
        let url = made.split('?').next().unwrap();
        let options = |ca_file: Option<std::path::PathBuf>| PgOptions {
            ca_file,
            connect_timeout: std::time::Duration::from_secs(1),
            ..PgOptions::default()
        };
        let ssl = |store: &Store| -> bool {
            store
                .read(|db| {
                    db.value(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[],
                    )
                })
                .unwrap()
        };
        // Trusting the server's certificate: TLS, whether required or only preferred.
        let required = format!("{url}?sslmode=require");
        assert!(ssl(
            &Store::connect(&required, options(Some(ca.clone()))).unwrap()
        ));
        assert!(ssl(&Store::connect(url, options(Some(ca))).unwrap()));
        // Not trusting it: refused, and the error says why.
        let err = format!(
            "{:#}",
            Store::connect(&required, options(None)).err().unwrap()
        );
        assert!(err.contains("certificate"), "{err}");
        // `sslmode=disable`: no TLS, nothing to trust.
        let plain = format!("{url}?sslmode=disable");
        assert!(!ssl(&Store::connect(&plain, options(None)).unwrap()));
    }

    #[test]
    fn locations_and_redaction() {
        assert_eq!(
            Location::parse("postgres://h/db"),
            Location::Postgres("postgres://h/db".into())
        );
        assert_eq!(
            Location::parse("postgresql://h/db"),
            Location::Postgres("postgresql://h/db".into())
        );
        assert_eq!(
            Location::parse("granted.db"),
            Location::File("granted.db".into())
        );
        for (url, shown) in [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://u:p@ss@h/db?x=1", "postgres://u:***@h/db?x=1"),
            (
                "postgres://h/db?user=u&password=secret&sslmode=disable",
                "postgres://h/db?user=u&password=***&sslmode=disable",
            ),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }

    /// Two stores on one database, as two hosts: the same refresh token consumed by both at
    /// once is honoured once, and the loser's attempt revokes the family; both appended to one
    /// audit chain, which still verifies.
    fn two_hosts_race_for_one_refresh_token(a: Store, b: Store) {
        let now = t("2026-11-25T12:00:00Z");
        let record = |sha: &str, status| RefreshTokenRecord {
            token_sha256: sha.into(),
            family_id: "fam-1".into(),
            tenant: "acme".into(),
            client_id: "crm-1".into(),
            username: Some("alice".into()),
            scope: "openid".into(),
            grant_type: GrantType::Password,
            issued_at: now,
            expires_at: t("2026-12-25T12:00:00Z"),
            status,
        };
        for round in 0..20 {
            let old = format!("old-{round}");
            let family = format!("fam-{round}");
            a.write(|w| {
                w.put_refresh(&RefreshTokenRecord {
                    family_id: family.clone(),
                    ..record(&old, RefreshStatus::Active)
                })
            })
            .unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let hosts: Vec<_> = [a.clone(), b.clone()]
                .into_iter()
                .enumerate()
                .map(|(i, store)| {
                    let barrier = barrier.clone();
                    let old = old.clone();
                    let new = RefreshTokenRecord {
                        family_id: family.clone(),
                        ..record(&format!("new-{round}-{i}"), RefreshStatus::Active)
                    };
                    std::thread::spawn(move || {
                        let job = Job {
                            effects: vec![
                                Effect::ConsumeRefreshToken { token_sha256: old },
                                Effect::StoreRefreshToken { record: new },
                            ],
                            audit: Some(("token".into(), format!("{{\"host\":{i}}}"))),
                            now,
                        };
                        barrier.wait();
                        store
                            .apply_batch(&[job], LockoutPolicy::default())
                            .unwrap()
                            .pop()
                            .unwrap()
                    })
                })
                .collect();
            let mut outcomes: Vec<Applied> = hosts.into_iter().map(|h| h.join().unwrap()).collect();
            outcomes.sort_by_key(|o| format!("{o:?}"));
            assert_eq!(
                outcomes,
                vec![Applied::Done, Applied::RefreshRace],
                "round {round}"
            );
            // The loser's attempt revoked the family, the winner's new token with it.
            let mut stored = 0;
            for i in 0..2 {
                if let Some(r) = a.refresh_token(&format!("new-{round}-{i}")).unwrap() {
                    assert_eq!(r.status, RefreshStatus::Revoked, "round {round}");
                    stored += 1;
                }
            }
            assert_eq!(stored, 1, "only the winner's new token is stored");
            assert_eq!(
                a.refresh_token(&old).unwrap().unwrap().status,
                RefreshStatus::Used
            );
        }
        assert_eq!(b.verify_audit().unwrap(), (20, None));
    }

    /// Two stores on one database appending to the audit log at once: every entry lands, in
    /// one chain.
    fn two_hosts_append_to_one_audit_chain(a: Store, b: Store) {
        let now = t("2026-11-25T12:00:00Z");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let hosts: Vec<_> = [a.clone(), b]
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    for n in 0..50 {
                        let job = Job {
                            effects: vec![],
                            audit: Some(("token".into(), format!("{{\"host\":{i},\"n\":{n}}}"))),
                            now,
                        };
                        let outcome = store.apply_batch(&[job], LockoutPolicy::default());
                        assert_eq!(outcome.unwrap(), vec![Applied::Done], "host {i}, entry {n}");
                    }
                })
            })
            .collect();
        for host in hosts {
            host.join().unwrap();
        }
        assert_eq!(a.verify_audit().unwrap(), (100, None));
    }

    /// Runs a test on two stores sharing one database, as two hosts: `$name::sqlite` (one
    /// file) and `$name::postgres`.
    macro_rules! on_two_hosts {
        ($name:ident, $test:ident) => {
            mod $name {
                use super::*;

                #[test]
                fn sqlite() {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("g.db");
                    $test(Store::open(&path).unwrap(), Store::open(&path).unwrap());
                }

                #[test]
                fn postgres() {
                    let url = crate::testing::fresh_database().unwrap();
                    let open = || Store::connect(&url, PgOptions::default()).unwrap();
                    $test(open(), open());
                }
            }
        };
    }

    on_two_hosts!(
        audit_chain_across_hosts,
        two_hosts_append_to_one_audit_chain
    );
    on_two_hosts!(
        refresh_race_across_hosts,
        two_hosts_race_for_one_refresh_token
    );

    on_both!(
        failures_lock_after_the_threshold_and_the_lock_doubles,
        |store| {
            let policy = LockoutPolicy::default();
            let now = t("2026-11-25T12:00:00Z");
            let fail = Effect::RecordLoginFailure {
                tenant: "acme".into(),
                username: "nobody".into(),
            };
            for _ in 0..4 {
                store
                    .apply(std::slice::from_ref(&fail), now, policy)
                    .unwrap();
            }
            assert_eq!(store.locked_until("acme", "nobody").unwrap(), None);
            store
                .apply(std::slice::from_ref(&fail), now, policy)
                .unwrap();
            assert_eq!(
                store.locked_until("acme", "nobody").unwrap(),
                Some(t("2026-11-25T12:01:00Z"))
            );
            for _ in 0..5 {
                store
                    .apply(std::slice::from_ref(&fail), now, policy)
                    .unwrap();
            }
            assert_eq!(
                store.locked_until("acme", "nobody").unwrap(),
                Some(t("2026-11-25T12:02:00Z"))
            );
            let reset = [Effect::ResetLoginFailures {
                tenant: "acme".into(),
                username: "nobody".into(),
            }];
            // A success that meets a lock set meanwhile is undone, to be decided again.
            assert_eq!(store.apply(&reset, now, policy).unwrap(), Applied::LockRace);
            assert!(store.locked_until("acme", "nobody").unwrap().is_some());
            let later = t("2026-11-25T12:03:00Z");
            assert_eq!(store.apply(&reset, later, policy).unwrap(), Applied::Done);
            assert_eq!(store.locked_until("acme", "nobody").unwrap(), None);
        }
    );

    on_both!(
        throttle_waits_until_the_oldest_of_the_last_failures_leaves_the_window,
        |store| {
            let (window, limit, now) = (60_000, 3, 10_000_000);
            let fail =
                |client: &str, ago: i64| (client.to_string(), "192.0.2.1".to_string(), now - ago);
            let check = |client: &str, source: &str, now_ms| ThrottleCheck {
                client_id: client.into(),
                source: source.into(),
                now_ms,
                window_ms: window,
                limit,
            };
            let wait = |client: &str, source: &str| {
                store.throttle_wait(&check(client, source, now)).unwrap()
            };
            assert_eq!(wait("c", "192.0.2.1"), None);
            store
                .throttle_record(&[fail("c", 50_000), fail("c", 40_000)], now, window)
                .unwrap();
            assert_eq!(
                wait("c", "192.0.2.1"),
                None,
                "two failures, under the limit"
            );
            store
                .throttle_record(&[fail("c", 30_000)], now, window)
                .unwrap();
            assert_eq!(wait("c", "192.0.2.1"), Some(10_000));
            assert_eq!(wait("c", "192.0.2.2"), None, "another source");
            assert_eq!(wait("d", "192.0.2.1"), None, "another client");
            store
                .throttle_record(&[fail("c", 1_000)], now, window)
                .unwrap();
            assert_eq!(wait("c", "192.0.2.1"), Some(20_000), "the last three count");
            // Unknown clients' failures from a source throttle every client from it.
            store
                .throttle_record(
                    &[fail("", 5_000), fail("", 4_000), fail("", 3_000)],
                    now,
                    window,
                )
                .unwrap();
            assert_eq!(wait("d", "192.0.2.1"), Some(55_000));
            assert_eq!(
                wait("c", "192.0.2.1"),
                Some(55_000),
                "the longer of the two"
            );
            // A minute later everything has left the window, and recording prunes it.
            let later = now + window;
            store.throttle_record(&[], later, window).unwrap();
            assert_eq!(
                store
                    .throttle_wait(&check("c", "192.0.2.1", later))
                    .unwrap(),
                None
            );
        }
    );

    on_both!(
        names_with_a_nul_are_unknown_or_counted_never_an_error,
        |store| {
            // A client may send `%00` in any name: lookups find nothing, failures are counted.
            let lookup = Lookup {
                tenant: "ac\0me".into(),
                client_id: "sync\0-1".into(),
                username: Some("al\0ice".into()),
                refresh_token_sha256: Some("ab\0c".into()),
            };
            let records = store.records(&lookup).unwrap();
            assert_eq!(records.tenant, Some(None));
            assert_eq!(records.client, Some(None));
            assert_eq!(records.user, Some(None));
            assert_eq!(records.refresh_token, Some(None));
            let now = t("2026-11-25T12:00:00Z");
            let fail = Effect::RecordLoginFailure {
                tenant: "acme".into(),
                username: "al\0ice".into(),
            };
            for _ in 0..5 {
                let job = Job {
                    effects: vec![fail.clone()],
                    audit: Some(("token".into(), r#"{"tenant":"ac\u0000me"}"#.into())),
                    now,
                };
                assert_eq!(
                    store.apply_batch(&[job], LockoutPolicy::default()).unwrap(),
                    vec![Applied::Done]
                );
            }
            assert!(store.locked_until("acme", "al\0ice").unwrap().is_some());
            assert_eq!(store.locked_until("acme", "alice").unwrap(), None);
            assert_eq!(store.verify_audit().unwrap(), (5, None));
        }
    );

    on_both!(
        keys_are_made_once_and_a_rotated_key_still_verifies_until_its_tokens_expire,
        |store| {
            let now = t("2026-11-25T12:00:00Z");
            let mut n = 0;
            let mut entropy = || {
                n += 1;
                Ok(format!(
                    "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0{n}"
                ))
            };
            let (first, _) = store.ensure_keys(now, &mut entropy).unwrap();
            let (again, _) = store.ensure_keys(now, &mut entropy).unwrap();
            assert_eq!(first.kid, again.kid);
            let later = t("2026-11-25T13:00:00Z");
            let new = store
                .rotate_signing_key(later, t("2026-11-25T14:00:00Z"), "bmV3LWtleQ==", "abc123")
                .unwrap();
            assert_ne!(new.kid, first.kid);
            let (current, _) = store.ensure_keys(later, &mut entropy).unwrap();
            assert_eq!(current.kid, new.kid);
            let kids = |at| -> Vec<String> {
                store
                    .verification_keys(t(at))
                    .unwrap()
                    .into_iter()
                    .map(|k| k.kid)
                    .collect()
            };
            assert_eq!(
                kids("2026-11-25T13:30:00Z"),
                vec![new.kid.clone(), first.kid.clone()]
            );
            assert_eq!(kids("2026-11-25T14:00:01Z"), vec![new.kid.clone()]);
        }
    );
}
