//! PostgreSQL, for several hosts on one database: the connection pool behind a circuit breaker, the one write lock, and a server handle that makes and drops databases.

use super::*;

/// A PostgreSQL backend: the pool, and the breaker that turns requests away at once while the
/// database is out of reach.
pub(super) struct Pg {
    pub(super) pool: r2d2::Pool<PgManager>,
    pub(super) breaker: Breaker,
}

/// How long requests are turned away after the database was found out of reach, before one
/// request tries again (the `Retry-After` of the 503 they get).
pub(super) const PG_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A circuit breaker: closed while the database answers; open for [`PG_RETRY`] after it did
/// not, when every caller fails at once; then one caller at a time tries a connection, which
/// closes it again or opens it for another round.
#[derive(Default)]
pub(super) struct Breaker {
    pub(super) state: Mutex<BreakerState>,
}

#[derive(Default)]
pub(super) struct BreakerState {
    pub(super) open_until: Option<std::time::Instant>,
    pub(super) probing: bool,
}

impl Breaker {
    /// Whether a caller may try the database now.
    pub(super) fn admit(&self) -> bool {
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

    pub(super) fn succeeded(&self) {
        let mut state = lock(&self.state);
        if state.open_until.is_some() {
            tracing::warn!("the database answers again");
        }
        *state = BreakerState::default();
    }

    pub(super) fn failed(&self) {
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
    pub(super) fn conn(&self) -> Result<RefCell<r2d2::PooledConnection<PgManager>>> {
        if !self.breaker.admit() {
            bail!(
                "the database is unavailable (retrying within {} s)",
                PG_RETRY.as_secs()
            );
        }
        self.take()
    }

    /// Another pooled connection for a caller the breaker already let through.
    pub(super) fn take(&self) -> Result<RefCell<r2d2::PooledConnection<PgManager>>> {
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
    pub(super) fn settle<T>(
        &self,
        conn: &RefCell<r2d2::PooledConnection<PgManager>>,
        out: &Result<T>,
    ) {
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
    pub(super) fn again(
        &self,
        conn: &RefCell<r2d2::PooledConnection<PgManager>>,
        tries: &mut u32,
    ) -> bool {
        let gone = conn.borrow().is_broken();
        *tries += 1;
        gone && *tries <= self.pool.max_size()
    }

    /// Runs `f` in a transaction that `begin` opens, on a connection where `begin` succeeded.
    pub(super) fn run_in<T>(&self, begin: &str, f: impl FnOnce(&Db<'_>) -> Result<T>) -> Result<T> {
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

    /// Runs `f`, one statement that is its own transaction, once: never again on another
    /// connection, since a connection lost while it ran leaves its outcome unknown.
    pub(super) fn run_once<T>(&self, f: impl FnOnce(&Db<'_>) -> Result<T>) -> Result<T> {
        let conn = self.conn()?;
        let out = f(&Db::Pg(&conn));
        self.settle(&conn, &out);
        out
    }

    /// Runs `f` without a transaction; again on another connection when this one turns out
    /// closed (a read may run twice).
    pub(super) fn run_read<T>(&self, f: impl Fn(&Db<'_>) -> Result<T>) -> Result<T> {
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
pub(super) const PG_WRITE_LOCK: i64 = 0x0067_7261_6e74_6564;

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

/// A PostgreSQL server that databases are made on and dropped from: one per test, or per
/// vector of `granted vectors --http --postgres`. Its user needs the right to create databases.
pub struct PgServer {
    url: String,
    admin: Mutex<::postgres::Client>,
}

impl PgServer {
    /// Connects as an administrator to `url` (any database of the server).
    pub fn connect(url: &str) -> Result<PgServer> {
        let admin = ::postgres::Client::connect(url, db::pg_tls(None)?)
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
pub(super) fn with_database(url: &str, name: &str) -> String {
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

/// `url` for logs and messages, without its password: rebuilt from the parsed connection
/// settings (user, hosts, ports, database, `sslmode`), never cut out of the text, so that no
/// spelling of the password (percent-encoded, holding `/`, `@` or `?`, a `password=`
/// parameter, the `key=value` form) can come through. Text that does not parse is not shown.
pub(super) fn redact_url(url: &str) -> String {
    let Ok(config) = url.parse::<::postgres::Config>() else {
        return "(a PostgreSQL URL that does not parse, not shown)".to_string();
    };
    let mut out = String::from("postgres://");
    let password = config.get_password().is_some();
    if let Some(user) = config.get_user() {
        out.push_str(&url_encode(user));
    }
    if password {
        out.push_str(":***");
    }
    if config.get_user().is_some() || password {
        out.push('@');
    }
    let ports = config.get_ports();
    for (i, host) in config.get_hosts().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match host {
            // An `@` of a password that was not percent-encoded ends the user part early, and
            // the rest of the password reads as the host: not shown.
            ::postgres::config::Host::Tcp(name) if name.contains('@') => out.push_str("***"),
            ::postgres::config::Host::Tcp(name) if name.contains(':') => {
                out.push_str(&format!("[{name}]"))
            }
            ::postgres::config::Host::Tcp(name) => out.push_str(&url_encode(name)),
            #[cfg(unix)]
            ::postgres::config::Host::Unix(path) => {
                out.push_str(&url_encode(&path.to_string_lossy()))
            }
        }
        // One port for every host, or one each.
        let port = if ports.len() == 1 {
            ports.first()
        } else {
            ports.get(i)
        };
        if let Some(port) = port {
            out.push_str(&format!(":{port}"));
        }
    }
    if let Some(db) = config.get_dbname() {
        out.push('/');
        out.push_str(&url_encode(db));
    }
    match config.get_ssl_mode() {
        ::postgres::config::SslMode::Disable => out.push_str("?sslmode=disable"),
        ::postgres::config::SslMode::Require => out.push_str("?sslmode=require"),
        _ => {}
    }
    out
}

/// `text` percent-encoded but for letters, digits and `-._~`.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
