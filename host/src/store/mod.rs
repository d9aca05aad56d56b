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
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

mod admin;
mod audit;
pub use admin::{AdminAudit, AdminTx, Change, ChangeRecord, EditContext};
pub use audit::{AuditFilter, AuditRow, UseCount};

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

/// The store: one SQLite connection in WAL mode, every write in a transaction that is durable
/// (`synchronous = FULL`) before it is acknowledged.
#[derive(Clone)]
pub struct Store {
    /// The one writer (and the reader of an in-memory database).
    conn: Arc<Mutex<Connection>>,
    /// Read-only connections to the same file: in WAL mode they read while the writer commits,
    /// so lookups never wait behind a group commit's fsync. Empty for an in-memory database.
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
    /// Locks set by failed logins since this store was opened (for metrics).
    locks_set: Arc<std::sync::atomic::AtomicU64>,
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

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
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
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)
            .with_context(|| format!("could not open the database {}", path.display()))?;
        let mut store = Self::setup(conn)?;
        let mut readers = Vec::with_capacity(READERS);
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
        store.readers = Arc::new(readers);
        Ok(store)
    }

    /// A connection to read with: a free reader when there is one, else the next in turn; the
    /// writer for an in-memory database.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        if self.readers.is_empty() {
            return lock(&self.conn);
        }
        for reader in self.readers.iter() {
            if let Ok(guard) = reader.try_lock() {
                return guard;
            }
        }
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.readers.len();
        lock(&self.readers[i])
    }

    /// A private in-memory database (tests, `granted vectors --http`).
    pub fn in_memory() -> Result<Store> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every statement the store runs is prepared once per connection and kept.
        conn.set_prepared_statement_cache_capacity(128);
        // WAL: readers never wait for the writer; FULL: a commit is on disk when it returns.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?
            .execute([])?;
        let version: Option<i64> = tx
            .prepare_cached("SELECT MAX(version) FROM schema_version")?
            .query_row([], |r| r.get(0))
            .optional()?
            .flatten();
        let version = version.unwrap_or(0);
        if version > MIGRATIONS.len() as i64 {
            bail!(
                "the database is at schema version {version}, newer than this granted knows ({}): use a newer granted",
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)
                .with_context(|| format!("migration {}", i + 1))?;
            if i + 1 == 4 {
                audit::backfill_columns(&tx).context("migration 4")?;
            }
            tx.prepare_cached("INSERT INTO schema_version (version) VALUES (?1)")?
                .execute([i as i64 + 1])?;
        }
        tx.commit()?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(Vec::new()),
            next_reader: Arc::default(),
            locks_set: Arc::default(),
        })
    }

    /// The schema version.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .reader()
            .prepare_cached("SELECT MAX(version) FROM schema_version")?
            .query_row([], |r| r.get(0))?)
    }

    // --- server keys ---------------------------------------------------------------------

    /// The current signing key, and the client-secret key; created (from `entropy`) on first
    /// use, in one transaction.
    pub fn ensure_keys(
        &self,
        now: Timestamp,
        mut entropy: impl FnMut() -> Result<String>,
    ) -> Result<(SigningKey, String)> {
        let mut conn = lock(&self.conn);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if current_signing_key(&tx)?.is_none() {
            insert_key(&tx, "signing", &new_kid(now, &entropy()?), &entropy()?, now)?;
        }
        if client_secret_key(&tx)?.is_none() {
            insert_key(&tx, "client_secret", "client-secret-1", &entropy()?, now)?;
        }
        let signing = current_signing_key(&tx)?.ok_or_else(|| anyhow!("no signing key"))?;
        let client = client_secret_key(&tx)?.ok_or_else(|| anyhow!("no client-secret key"))?;
        tx.commit()?;
        Ok((signing, client))
    }

    /// The current signing key and the client-secret key, if made.
    pub fn current_keys(&self) -> Result<Option<(SigningKey, String)>> {
        let conn = self.reader();
        Ok(current_signing_key(&conn)?.zip(client_secret_key(&conn)?))
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
        let mut conn = lock(&self.conn);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "UPDATE server_keys SET retired_at = ?1, verify_until = ?2
             WHERE purpose = 'signing' AND retired_at IS NULL",
        )?
        .execute(params![now.to_rfc3339(), verify_until.to_rfc3339()])?;
        let kid = new_kid(now, kid_entropy);
        insert_key(&tx, "signing", &kid, secret, now)?;
        tx.commit()?;
        Ok(SigningKey {
            kid,
            secret: secret.to_string(),
        })
    }

    /// Every signing key that still verifies at `now`: the current one and retired ones whose
    /// tokens may not have expired.
    pub fn verification_keys(&self, now: Timestamp) -> Result<Vec<SigningKey>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT kid, secret, verify_until FROM server_keys WHERE purpose = 'signing'
             ORDER BY created_at DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut keys = Vec::new();
        for row in rows {
            let (kid, secret, until) = row?;
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
        let conn = self.reader();
        tenant_record(&conn, tenant)
    }

    /// What a token request's `need_records` step asks for, read in one transaction: the
    /// records come from one snapshot, and the reader takes its WAL read lock (and checks its
    /// page cache against the log the writer keeps appending to) once instead of per statement.
    pub fn records(&self, lookup: &Lookup) -> Result<Records> {
        let mut conn = self.reader();
        let tx = conn.transaction()?;
        let tenant = lookup.tenant.as_str();
        let records = Records {
            tenant: Some(tenant_record(&tx, tenant)?),
            client: Some(client_record(&tx, &lookup.client_id)?),
            user: match &lookup.username {
                Some(username) => Some(user_record(&tx, tenant, username)?),
                None => None,
            },
            refresh_token: match &lookup.refresh_token_sha256 {
                Some(hash) => Some(refresh_record(&tx, hash)?),
                None => None,
            },
        };
        // Read only: ending it either way releases the snapshot.
        tx.commit()?;
        Ok(records)
    }

    /// A refresh token by its SHA-256.
    pub fn refresh_token(&self, sha256: &str) -> Result<Option<RefreshTokenRecord>> {
        let conn = self.reader();
        refresh_record(&conn, sha256)
    }

    /// The lock on (`tenant`, `username`) at `now`, whether or not the user exists: unknown
    /// names are counted like known ones.
    pub fn locked_until(&self, tenant: &str, username: &str) -> Result<Option<Timestamp>> {
        let conn = self.reader();
        locked_until(&conn, tenant, username)
    }

    /// Users (and unknown names) whose lock has not ended at `now`.
    pub fn users_locked(&self, now: Timestamp) -> Result<i64> {
        Ok(self
            .reader()
            .prepare_cached("SELECT COUNT(*) FROM login_failures WHERE locked_until > ?1")?
            .query_row([now.to_rfc3339()], |r| r.get(0))?)
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
        let mut conn = lock(&self.conn);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (mut seq, mut prev) = audit_head(&tx)?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut new_locks = 0;
        for job in jobs {
            tx.execute_batch("SAVEPOINT job")?;
            let mut locks = 0;
            let outcome = match apply_effects(&tx, &job.effects, job.now, lockout, &mut locks) {
                Ok(None) => match &job.audit {
                    Some((kind, entry)) => {
                        let sha = audit_hash(&prev, entry);
                        let written =
                            audit::insert(&tx, seq + 1, job.now, kind, entry, &prev, &sha);
                        match written {
                            Ok(_) => {
                                seq += 1;
                                prev = sha;
                                Applied::Done
                            }
                            Err(e) => Applied::Failed(e.to_string()),
                        }
                    }
                    None => Applied::Done,
                },
                Ok(Some(Race::Refresh(raced))) => {
                    tx.execute_batch("ROLLBACK TO job")?;
                    tx.prepare_cached("UPDATE refresh_tokens SET status = 'revoked'
                         WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_sha256 = ?1)
                         AND status = 'active'")?.execute([&raced],
                    )?;
                    Applied::RefreshRace
                }
                Ok(Some(Race::Lock)) => Applied::LockRace,
                Err(e) => Applied::Failed(format!("{e:#}")),
            };
            if matches!(outcome, Applied::LockRace | Applied::Failed(_)) {
                tx.execute_batch("ROLLBACK TO job")?;
            }
            tx.execute_batch("RELEASE job")?;
            if outcome == Applied::Done {
                new_locks += locks;
            }
            outcomes.push(outcome);
        }
        tx.commit()?;
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
        let conn = self.reader();
        let mut stmt =
            conn.prepare_cached("SELECT seq, entry, prev_sha256, sha256 FROM audit ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        // After retention removed old entries, the chain starts at the anchor it left.
        let (first, mut prev) = match audit::anchor(&conn)? {
            Some((seq, sha)) => (seq + 1, sha),
            None => (1, AUDIT_GENESIS.to_string()),
        };
        let mut count = 0;
        for (expected_seq, row) in (first..).zip(rows) {
            let (seq, entry, prev_sha, sha) = row?;
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
        Ok((count, None))
    }

    /// Audit entries (`seq`, `at`, kind, entry JSON) after `after`, oldest first, at most `limit`.
    pub fn audit_entries(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String, String, String)>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, at, kind, entry FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    // --- import / export -------------------------------------------------------------------

    /// Runs `f` in one transaction: all of it is written, or nothing.
    pub fn write<T>(&self, f: impl FnOnce(&Writer<'_>) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.conn);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&Writer { tx: &tx })?;
        tx.commit()?;
        Ok(out)
    }

    /// Every app with its history and clients (`client_id`, secret HMAC).
    pub fn apps(&self) -> Result<Vec<AppWithClients>> {
        let conn = self.reader();
        let ids: Vec<String> = conn
            .prepare_cached("SELECT app_id FROM apps ORDER BY app_id")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        for id in ids {
            let app = app(&conn, &id)?.ok_or_else(|| anyhow!("app vanished"))?;
            let clients = conn
                .prepare_cached("SELECT client_id, secret_hmac FROM clients WHERE app_id = ?1 ORDER BY client_id")?
                .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            out.push((app, clients));
        }
        Ok(out)
    }

    /// Every tenant with its users and refresh tokens.
    pub fn tenants(&self) -> Result<Vec<TenantWithRecords>> {
        let conn = self.reader();
        let ids: Vec<String> = conn
            .prepare_cached("SELECT tenant FROM tenants ORDER BY tenant")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        for id in ids {
            let tenant = tenant_record(&conn, &id)?.ok_or_else(|| anyhow!("tenant vanished"))?;
            let names: Vec<String> = conn
                .prepare_cached("SELECT username FROM users WHERE tenant = ?1 ORDER BY username")?
                .query_map([&id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut users = Vec::new();
            for name in names {
                if let Some(user) = user_record(&conn, &id, &name)? {
                    users.push(user);
                }
            }
            let hashes: Vec<String> = conn
                .prepare_cached("SELECT token_sha256 FROM refresh_tokens WHERE tenant = ?1 ORDER BY issued_at, token_sha256")?
                .query_map([&id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut tokens = Vec::new();
            for hash in hashes {
                if let Some(token) = refresh_record(&conn, &hash)? {
                    tokens.push(token);
                }
            }
            out.push((tenant, users, tokens));
        }
        Ok(out)
    }
}

/// Writes inside one transaction of [`Store::write`].
pub struct Writer<'a> {
    tx: &'a Transaction<'a>,
}

impl Writer<'_> {
    /// Creates or replaces an app and its whole revision history.
    pub fn put_app(&self, app: &App) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO apps (app_id, created_at) VALUES (?1, ?2)
             ON CONFLICT (app_id) DO UPDATE SET created_at = excluded.created_at",
            )?
            .execute(params![app.app_id, app.created_at.to_rfc3339()])?;
        self.tx
            .prepare_cached("DELETE FROM revisions WHERE app_id = ?1")?
            .execute([&app.app_id])?;
        for r in &app.revisions {
            insert_revision(self.tx, &app.app_id, r)?;
        }
        Ok(())
    }

    /// Creates or replaces a client of an app.
    pub fn put_client(&self, client_id: &str, app_id: &str, secret_hmac: &str) -> Result<()> {
        self.tx.prepare_cached("INSERT INTO clients (client_id, app_id, secret_hmac) VALUES (?1, ?2, ?3)
             ON CONFLICT (client_id) DO UPDATE SET app_id = excluded.app_id, secret_hmac = excluded.secret_hmac")?.execute(params![client_id, app_id, secret_hmac],
        )?;
        Ok(())
    }

    /// Creates or replaces a tenant and its installs.
    pub fn put_tenant(&self, tenant: &TenantRecord) -> Result<()> {
        self.tx.prepare_cached("INSERT INTO tenants (tenant, sso_required, password_max_age_days) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant) DO UPDATE SET sso_required = excluded.sso_required,
                 password_max_age_days = excluded.password_max_age_days")?.execute(params![
                tenant.tenant,
                tenant.sso_required,
                tenant.password_max_age_days
            ],
        )?;
        self.tx
            .prepare_cached("DELETE FROM installs WHERE tenant = ?1")?
            .execute([&tenant.tenant])?;
        for install in &tenant.installs {
            self.tx
                .prepare_cached("INSERT INTO installs (tenant, app_id, rev) VALUES (?1, ?2, ?3)")?
                .execute(params![tenant.tenant, install.app_id, install.rev])?;
        }
        Ok(())
    }

    /// The stored password hash of a user, if any (to keep it when an import repeats).
    pub fn password_hash(&self, tenant: &str, username: &str) -> Result<Option<String>> {
        Ok(self
            .tx
            .prepare_cached("SELECT password_hash FROM users WHERE tenant = ?1 AND username = ?2")?
            .query_row([tenant, username], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// Creates or replaces a user (and its lock, when the record carries one).
    pub fn put_user(&self, tenant: &str, user: &UserRecord) -> Result<()> {
        upsert_user(self.tx, tenant, user)?;
        if let Some(until) = user.locked_until {
            self.tx
                .prepare_cached(
                    "INSERT INTO login_failures (tenant, username, failures, locks, locked_until)
                 VALUES (?1, ?2, 0, 1, ?3)
                 ON CONFLICT (tenant, username) DO UPDATE SET locked_until = excluded.locked_until",
                )?
                .execute(params![tenant, user.username, until.to_rfc3339()])?;
        }
        Ok(())
    }

    /// Creates or replaces a refresh token record.
    pub fn put_refresh(&self, record: &RefreshTokenRecord) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM refresh_tokens WHERE token_sha256 = ?1")?
            .execute([&record.token_sha256])?;
        insert_refresh(self.tx, record)
    }
}

/// Inserts one revision of an app.
fn insert_revision(tx: &Transaction<'_>, app_id: &str, r: &Revision) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO revisions (app_id, rev, at, client_id, grant_type, scopes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        app_id,
        r.rev,
        r.at.to_rfc3339(),
        r.client_id,
        r.grant_type.as_str(),
        serde_json::to_string(&r.scopes)?
    ])?;
    Ok(())
}

/// Creates or replaces a user's row (not its lock).
fn upsert_user(tx: &Transaction<'_>, tenant: &str, user: &UserRecord) -> Result<()> {
    let sign_in = match user.sign_in {
        SignIn::Direct => "direct",
        SignIn::Sso => "sso",
    };
    tx.prepare_cached("INSERT INTO users (tenant, username, sign_in, password_hash, password_changed_at, disabled)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (tenant, username) DO UPDATE SET sign_in = excluded.sign_in,
             password_hash = excluded.password_hash,
             password_changed_at = excluded.password_changed_at,
             disabled = excluded.disabled")?.execute(params![
            tenant,
            user.username,
            sign_in,
            user.password_hash,
            user.password_changed_at.map(|t| t.to_rfc3339()),
            user.disabled
        ],
    )?;
    Ok(())
}

/// The last audit entry's `seq` and hash; when there is none, the anchor retention left, or 0
/// and the genesis hash.
fn audit_head(conn: &Connection) -> Result<(i64, String)> {
    let last = conn
        .prepare_cached("SELECT seq, sha256 FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match last {
        Some(last) => Ok(last),
        None => Ok(audit::anchor(conn)?.unwrap_or((0, AUDIT_GENESIS.to_string()))),
    }
}

/// Applies effects; a [`Race`] when a refresh token to consume was no longer active, or when a
/// login's success meets a lock that concurrent failures set meanwhile.
fn apply_effects(
    tx: &Transaction<'_>,
    effects: &[Effect],
    now: Timestamp,
    lockout: LockoutPolicy,
    locks_set: &mut u64,
) -> Result<Option<Race>> {
    for effect in effects {
        match effect {
            Effect::ConsumeRefreshToken { token_sha256 } => {
                let changed = tx
                    .prepare_cached(
                        "UPDATE refresh_tokens SET status = 'used'
                     WHERE token_sha256 = ?1 AND status = 'active'",
                    )?
                    .execute([token_sha256])?;
                if changed == 0 {
                    return Ok(Some(Race::Refresh(token_sha256.clone())));
                }
            }
            Effect::StoreRefreshToken { record } => insert_refresh(tx, record)?,
            Effect::RevokeRefreshFamily { family_id } => {
                tx.prepare_cached(
                    "UPDATE refresh_tokens SET status = 'revoked'
                     WHERE family_id = ?1 AND status = 'active'",
                )?
                .execute([family_id])?;
            }
            Effect::RecordLoginFailure { tenant, username } => {
                if record_failure(tx, tenant, username, now, lockout)? {
                    *locks_set += 1;
                }
            }
            Effect::ResetLoginFailures { tenant, username } => {
                if locked_until(tx, tenant, username)?.is_some_and(|until| now < until) {
                    return Ok(Some(Race::Lock));
                }
                tx.prepare_cached(
                    "DELETE FROM login_failures WHERE tenant = ?1 AND username = ?2",
                )?
                .execute([tenant, username])?;
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

fn insert_key(
    tx: &Transaction<'_>,
    purpose: &str,
    kid: &str,
    secret: &str,
    now: Timestamp,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO server_keys (kid, purpose, secret, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![kid, purpose, secret, now.to_rfc3339()])?;
    Ok(())
}

fn current_signing_key(conn: &Connection) -> Result<Option<SigningKey>> {
    Ok(conn
        .prepare_cached(
            "SELECT kid, secret FROM server_keys WHERE purpose = 'signing' AND retired_at IS NULL
             ORDER BY created_at DESC LIMIT 1",
        )?
        .query_row([], |r| {
            Ok(SigningKey {
                kid: r.get(0)?,
                secret: r.get(1)?,
            })
        })
        .optional()?)
}

fn client_secret_key(conn: &Connection) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT secret FROM server_keys WHERE purpose = 'client_secret' AND retired_at IS NULL
             ORDER BY created_at DESC LIMIT 1",
        )?
        .query_row([], |r| r.get(0))
        .optional()?)
}

fn app(conn: &Connection, app_id: &str) -> Result<Option<App>> {
    let created: Option<String> = conn
        .prepare_cached("SELECT created_at FROM apps WHERE app_id = ?1")?
        .query_row([app_id], |r| r.get(0))
        .optional()?;
    let Some(created) = created else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT rev, at, client_id, grant_type, scopes FROM revisions WHERE app_id = ?1 ORDER BY rev",
    )?;
    let rows = stmt.query_map([app_id], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut revisions = Vec::new();
    for row in rows {
        let (rev, at, client_id, grant, scopes) = row?;
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

fn client_record(conn: &Connection, client_id: &str) -> Result<Option<ClientRecord>> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT app_id, secret_hmac FROM clients WHERE client_id = ?1")?
        .query_row([client_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((app_id, secret_hmac)) = row else {
        return Ok(None);
    };
    let app = app(conn, &app_id)?.ok_or_else(|| anyhow!("client of a missing app"))?;
    Ok(Some(ClientRecord {
        client_id: client_id.to_string(),
        secret_hmac,
        app,
    }))
}

fn tenant_record(conn: &Connection, tenant: &str) -> Result<Option<TenantRecord>> {
    let row: Option<(bool, Option<u32>)> = conn
        .prepare_cached(
            "SELECT sso_required, password_max_age_days FROM tenants WHERE tenant = ?1",
        )?
        .query_row([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((sso_required, password_max_age_days)) = row else {
        return Ok(None);
    };
    let installs = conn
        .prepare_cached("SELECT app_id, rev FROM installs WHERE tenant = ?1 ORDER BY app_id")?
        .query_map([tenant], |r| {
            Ok(Install {
                app_id: r.get(0)?,
                rev: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(TenantRecord {
        tenant: tenant.to_string(),
        sso_required,
        password_max_age_days,
        installs,
    }))
}

fn locked_until(conn: &Connection, tenant: &str, username: &str) -> Result<Option<Timestamp>> {
    let until: Option<Option<String>> = conn
        .prepare_cached(
            "SELECT locked_until FROM login_failures WHERE tenant = ?1 AND username = ?2",
        )?
        .query_row([tenant, username], |r| r.get(0))
        .optional()?;
    until.flatten().map(ts).transpose()
}

fn user_record(conn: &Connection, tenant: &str, username: &str) -> Result<Option<UserRecord>> {
    type Row = (String, Option<String>, Option<String>, bool);
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT sign_in, password_hash, password_changed_at, disabled FROM users
             WHERE tenant = ?1 AND username = ?2",
        )?
        .query_row([tenant, username], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((sign_in, password_hash, changed, disabled)) = row else {
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
        locked_until: locked_until(conn, tenant, username)?,
    }))
}

fn refresh_record(conn: &Connection, sha256: &str) -> Result<Option<RefreshTokenRecord>> {
    type Row = (
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        String,
        String,
        String,
    );
    let row: Option<Row> = conn
        .prepare_cached("SELECT family_id, tenant, client_id, username, scope, grant_type, issued_at, expires_at, status
             FROM refresh_tokens WHERE token_sha256 = ?1")?.query_row([sha256],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            },
        )
        .optional()?;
    let Some((family_id, tenant, client_id, username, scope, grant, issued, expires, status)) = row
    else {
        return Ok(None);
    };
    Ok(Some(RefreshTokenRecord {
        token_sha256: sha256.to_string(),
        family_id,
        tenant,
        client_id,
        username,
        scope,
        grant_type: grant_type(&grant)?,
        issued_at: ts(issued)?,
        expires_at: ts(expires)?,
        status: match status.as_str() {
            "active" => RefreshStatus::Active,
            "used" => RefreshStatus::Used,
            _ => RefreshStatus::Revoked,
        },
    }))
}

fn insert_refresh(tx: &Transaction<'_>, r: &RefreshTokenRecord) -> Result<()> {
    let status = match r.status {
        RefreshStatus::Active => "active",
        RefreshStatus::Used => "used",
        RefreshStatus::Revoked => "revoked",
    };
    tx.prepare_cached(
        "INSERT INTO refresh_tokens (token_sha256, family_id, tenant, client_id, username, scope,
             grant_type, issued_at, expires_at, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        r.token_sha256,
        r.family_id,
        r.tenant,
        r.client_id,
        r.username,
        r.scope,
        r.grant_type.as_str(),
        r.issued_at.to_rfc3339(),
        r.expires_at.to_rfc3339(),
        status
    ])?;
    Ok(())
}

fn record_failure(
    tx: &Transaction<'_>,
    tenant: &str,
    username: &str,
    now: Timestamp,
    policy: LockoutPolicy,
) -> Result<bool> {
    let row: Option<(u32, u32)> = tx
        .prepare_cached(
            "SELECT failures, locks FROM login_failures WHERE tenant = ?1 AND username = ?2",
        )?
        .query_row([tenant, username], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
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
    tx.prepare_cached(
        "INSERT INTO login_failures (tenant, username, failures, locks, locked_until)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, username) DO UPDATE SET failures = excluded.failures,
             locks = excluded.locks,
             locked_until = COALESCE(excluded.locked_until, login_failures.locked_until)",
    )?
    .execute(params![
        tenant,
        username,
        failures,
        locks,
        until.map(|t| t.to_rfc3339())
    ])?;
    Ok(until.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn migration_4_fills_the_audit_search_columns_of_older_entries() {
        // A database at schema version 3 with one token decision in its audit log.
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            .unwrap();
        for (i, sql) in MIGRATIONS.iter().take(3).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [i as i64 + 1],
            )
            .unwrap();
        }
        let entry = r#"{"kind":"token","tenant":"acme","app_id":"crm","grant_type":"password","decision":"granted"}"#;
        let sha = audit_hash(AUDIT_GENESIS, entry);
        conn.execute(
            "INSERT INTO audit (seq, at, kind, entry, prev_sha256, sha256)
             VALUES (1, '2026-11-20T00:00:00Z', 'token', ?1, ?2, ?3)",
            params![entry, AUDIT_GENESIS, sha],
        )
        .unwrap();
        let store = Store::setup(conn).unwrap();
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

    #[test]
    fn migrations_run_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        lock(&store.conn)
            .execute("INSERT INTO schema_version (version) VALUES (999)", [])
            .unwrap();
        drop(store);
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer"), "{err}");
    }

    #[test]
    fn failures_lock_after_the_threshold_and_the_lock_doubles() {
        let store = Store::in_memory().unwrap();
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

    #[test]
    fn keys_are_made_once_and_a_rotated_key_still_verifies_until_its_tokens_expire() {
        let store = Store::in_memory().unwrap();
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
}
