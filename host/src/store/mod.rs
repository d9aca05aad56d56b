//! All of the server's state, behind one interface: apps and their revisions, clients, tenants,
//! installs, users, login failures, refresh tokens and server keys. Nothing outside this module
//! writes SQL, and the SQL stays portable (no SQLite-only syntax beyond the connection's PRAGMAs),
//! so that another backend can implement the same interface.
//!
//! Instants are stored as RFC 3339 text in UTC. Secrets that are only checked are stored as
//! hashes: PHC strings for passwords, HMACs for client secrets, SHA-256 for refresh tokens and
//! admin tokens. The server keys (the signing keys and the client-secret key) must be used, not
//! only checked: with a master key they are sealed under it (`seal.rs`), without one they are
//! stored in clear, and whoever reads the database can then mint tokens. A SQLite file and its
//! `-wal` and `-shm` files are made readable by their owner only.

use anyhow::{anyhow, bail, Context, Result};
use granted_policy::model::{
    App, ClientRecord, ClientType, CodeRecord, ConsentRecord, FederatedSubject, GrantType,
    IdentityProvider, Install, RefreshStatus, RefreshTokenRecord, Revision, SignIn, TenantRecord,
    Timestamp, UserRecord,
};
use granted_policy::token::endpoint::{Lookup, Records};
use rusqlite::{Connection, TransactionBehavior};
use std::cell::RefCell;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

mod admin;
mod audit;
mod cache;
mod chain;
mod db;
mod import;
mod keys;
mod location;
mod postgres;
mod providers;
mod records;
mod schema;
mod seal;
#[cfg(test)]
mod tests;
mod throttle;
mod tokens;
pub use admin::{AdminAudit, AdminTx, Change, ChangeRecord, EditContext};
pub use audit::{AuditFilter, AuditRow, UseCount};
use cache::RecordsCache;
use chain::*;
pub use chain::{audit_hash, AuditBreak, AUDIT_GENESIS};
use db::{Db, PgManager};
pub use import::Writer;
use import::*;
pub use keys::SigningKey;
pub use location::Location;
use postgres::*;
pub use postgres::{PgOptions, PgServer};
pub use providers::ProviderSecret;
pub use records::ReadAhead;
use records::*;
pub use records::{AppWithClients, TenantWithRecords};
use schema::*;
pub use seal::{MasterKey, Rewrapped, SealError, MASTER_KEY_LEN};
pub use throttle::{Failure as ThrottleFailure, ThrottleCheck};
use tokens::*;
pub use tokens::{Applied, Job};

/// Read-only connections of a file database.
const READERS: usize = 4;

/// The store: every write in one transaction that is durable before it is acknowledged, on one
/// of two backends.
///
/// - SQLite (a file, or memory): one writer connection in WAL mode with `synchronous = FULL`,
///   and read-only connections beside it, so that lookups never wait behind a commit's fsync.
/// - PostgreSQL (several hosts on one database): a pool of connections. An admin change first
///   takes one advisory lock, so admin changes are serial across hosts as SQLite's `BEGIN
///   IMMEDIATE` makes them within one (they read, check and then write). The token path takes
///   nothing cluster-wide ([`Store::apply_batch`]): each race (a refresh token or code used
///   twice, the lockout count, a consent) is decided by the statement that changes the row, and
///   the audit entries go on this store's own chain (`chain.rs`).
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    /// Locks set by failed logins since this store was opened (for metrics).
    locks_set: Arc<std::sync::atomic::AtomicU64>,
    /// The key the server keys are sealed under ([`Store::with_master_key`]); none: in clear.
    master: Option<MasterKey>,
    /// Tenants and clients as of the database's `records_version` (`cache.rs`).
    cache: Arc<RecordsCache>,
    /// The heads of the audit chains this store appends to.
    chains: Arc<Chains>,
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

/// How a transaction ends.
enum End<T> {
    Commit(T),
    Rollback(T),
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
    /// date. A new file is made readable by its owner only (0600, whatever the umask; SQLite
    /// gives its `-wal` and `-shm` files the same mode), and so is a directory made for it
    /// (0700).
    pub fn open(path: &Path) -> Result<Store> {
        create_private(path)?;
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
        let mut config: ::postgres::Config = url.parse().context(
            "the database is not a PostgreSQL URL that parses (not shown: it may hold a password)",
        )?;
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
        // Deleted and overwritten content (a key sealed at start, say) is zeroed where that
        // costs no extra I/O, rather than left in the page's free space.
        conn.pragma_update(None, "secure_delete", "FAST")?;
        Ok(conn)
    }

    /// The store on `backend`, its schema brought to the last version in one transaction (on
    /// PostgreSQL under the write lock, so hosts starting together migrate once).
    fn migrated(backend: Backend) -> Result<Store> {
        let store = Store {
            backend: Arc::new(backend),
            locks_set: Arc::default(),
            master: None,
            cache: Arc::default(),
            chains: Arc::default(),
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
            Backend::Pg(pg) => pg.run_in(
                &format!(
                    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})"
                ),
                |db| pg_finish(db, f(db)),
            ),
        }
    }

    /// A write transaction of the token path: as [`Store::transact`] on SQLite; on PostgreSQL
    /// without the advisory lock (the statements lock the rows they change, and no more), and
    /// run again, at most twice more, when PostgreSQL ends it as a deadlock or a serialization
    /// failure, which leaves nothing of it written.
    fn transact_rows<T>(&self, f: impl FnMut(&Db<'_>) -> Result<End<T>>) -> Result<T> {
        self.transact_rows_then("", f)
    }

    /// [`Store::transact_rows`], and on PostgreSQL `then` (statements without parameters) sent
    /// with the `BEGIN`, in its round trip.
    fn transact_rows_then<T>(
        &self,
        then: &str,
        mut f: impl FnMut(&Db<'_>) -> Result<End<T>>,
    ) -> Result<T> {
        let Backend::Pg(pg) = &*self.backend else {
            return self.transact(f);
        };
        let begin = format!("BEGIN ISOLATION LEVEL READ COMMITTED; {then}");
        let mut tries = 0;
        loop {
            let out = pg.run_in(&begin, |db| pg_finish(db, f(db)));
            match out {
                Err(e) if tries < 2 && pg_retryable(&e) => {
                    tries += 1;
                    tracing::debug!("a write transaction is run again: {e:#}");
                }
                out => return out,
            }
        }
    }

    /// One statement of the token path that is its own transaction (on PostgreSQL without
    /// `BEGIN` and `COMMIT`, two round trips fewer; never run twice); on SQLite in a write
    /// transaction as ever.
    fn write_alone<T>(&self, f: impl FnOnce(&Db<'_>) -> Result<T>) -> Result<T> {
        match &*self.backend {
            Backend::Pg(pg) => pg.run_once(f),
            Backend::Lite { .. } => self.write_tx(f),
        }
    }

    /// [`Store::transact`] that always commits what `f` did when it succeeds.
    fn write_tx<T>(&self, f: impl FnOnce(&Db<'_>) -> Result<T>) -> Result<T> {
        self.transact(|db| f(db).map(End::Commit))
    }
}

/// Makes the SQLite file at `path`, empty and readable by its owner only, unless it exists;
/// a missing directory is made readable by its owner only. An existing file readable by others
/// is used as it is, with a warning.
fn create_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "the database {} is readable by others (mode {:o}): `chmod 600` it and its -wal and -shm files",
                    path.display(),
                    meta.permissions().mode() & 0o777
                );
            }
            return Ok(());
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| format!("could not make the directory {}", dir.display()))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("could not make {} private", dir.display()))?;
            }
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            // Made by someone else meanwhile: theirs to set.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("could not make the database {}", path.display()))
            }
        }
        // The umask may have taken bits away, never added them; set exactly 0600.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("could not make {} private", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
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

/// Ends a PostgreSQL write transaction as `done` says.
fn pg_finish<T>(db: &Db<'_>, done: Result<End<T>>) -> Result<T> {
    match done {
        Ok(End::Commit(out)) => {
            // An error here leaves the outcome unknown to this host; it is never retried
            // (the caller answers 503, and the client may try again).
            pg_end(db, true)?;
            Ok(out)
        }
        Ok(End::Rollback(out)) => {
            pg_end(db, false)?;
            Ok(out)
        }
        Err(e) => {
            // The error is what the caller needs; a failed rollback only closes the connection
            // (the server rolls back what a lost session began).
            let _ = pg_end(db, false);
            Err(e)
        }
    }
}

/// Whether PostgreSQL ended a transaction as a deadlock or a serialization failure: it wrote
/// nothing, and the same transaction may run again. (A `COMMIT` that fails so did not commit.)
fn pg_retryable(e: &anyhow::Error) -> bool {
    use ::postgres::error::SqlState;
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<::postgres::Error>())
        .filter_map(|pg| pg.code())
        .any(|code| {
            *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
        })
}
