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

/// `url` with its password (in the user part, `user:password@`, or a `password=` parameter)
/// replaced by `***`.
pub(super) fn redact_url(url: &str) -> String {
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
