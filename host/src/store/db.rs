//! The SQL layer under the store: one copy of every statement, run on SQLite or on PostgreSQL.
//!
//! Statements are written once, with numbered parameters (`?1`, `?2`, …), which PostgreSQL gets
//! as `$1`, `$2`, …. Values cross as three kinds only (null, 64-bit integer, text), so the two
//! schemas keep every integer `BIGINT`-wide and booleans as 0/1, and a row reads the same from
//! either backend. The store above this module never sees a backend's types.

use anyhow::{anyhow, bail, Context, Result};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

/// A statement's parameter, borrowed from the caller.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer (also booleans, as 0 and 1).
    Int(i64),
    /// Text.
    Text(&'a str),
}

/// What can be passed as a parameter.
pub trait ToArg {
    /// This value as a parameter.
    fn arg(&self) -> Arg<'_>;
}

impl ToArg for i64 {
    fn arg(&self) -> Arg<'_> {
        Arg::Int(*self)
    }
}

impl ToArg for u32 {
    fn arg(&self) -> Arg<'_> {
        Arg::Int(i64::from(*self))
    }
}

impl ToArg for bool {
    fn arg(&self) -> Arg<'_> {
        Arg::Int(i64::from(*self))
    }
}

impl ToArg for Arg<'_> {
    fn arg(&self) -> Arg<'_> {
        *self
    }
}

impl ToArg for str {
    fn arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl ToArg for String {
    fn arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl<T: ToArg + ?Sized> ToArg for &T {
    fn arg(&self) -> Arg<'_> {
        (**self).arg()
    }
}

impl<T: ToArg> ToArg for Option<T> {
    fn arg(&self) -> Arg<'_> {
        self.as_ref().map_or(Arg::Null, ToArg::arg)
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Null => ValueRef::Null,
            Arg::Int(v) => ValueRef::Integer(v),
            Arg::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

impl postgres::types::ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        use postgres::types::{IsNull, Type};
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(v) if *ty == Type::INT8 => v.to_sql(ty, out),
            Arg::Int(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
            Arg::Int(v) if *ty == Type::BOOL => (v != 0).to_sql(ty, out),
            // PostgreSQL's text cannot hold NUL, which a client may send (`%00`); it is stored
            // and looked up as U+FFFD, consistently, so that such input is an unknown name
            // (or a counted one) as on SQLite, never a database error.
            Arg::Text(s) if (*ty == Type::TEXT || *ty == Type::VARCHAR) && s.contains('\0') => {
                s.replace('\0', "\u{FFFD}").to_sql(ty, out)
            }
            Arg::Text(s) if *ty == Type::TEXT || *ty == Type::VARCHAR => s.to_sql(ty, out),
            _ => Err(format!("a parameter of type {ty} cannot take {self:?}").into()),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        // Checked value by value in `to_sql`, with an error that names both.
        true
    }

    postgres::types::to_sql_checked!();
}

/// One value of a row, as read.
#[derive(Debug)]
pub enum Cell<'r> {
    /// SQL `NULL`.
    Null,
    /// An integer (PostgreSQL `BIGINT`, `INTEGER` or `BOOLEAN`; SQLite `INTEGER`).
    Int(i64),
    /// Text.
    Text(&'r str),
}

/// One row of a result, from either backend.
pub enum Row<'r> {
    /// SQLite's.
    Lite(&'r rusqlite::Row<'r>),
    /// PostgreSQL's.
    Pg(&'r postgres::Row),
}

impl Row<'_> {
    /// Column `i`, converted to `T`.
    pub fn get<T: FromCell>(&self, i: usize) -> Result<T> {
        T::from_cell(self.cell(i)?).with_context(|| format!("column {i}"))
    }

    fn cell(&self, i: usize) -> Result<Cell<'_>> {
        match self {
            Row::Lite(row) => {
                use rusqlite::types::ValueRef;
                Ok(match row.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Text(t) => Cell::Text(
                        std::str::from_utf8(t)
                            .context("the database holds text that is not UTF-8")?,
                    ),
                    other => bail!("unexpected {:?} value", other.data_type()),
                })
            }
            Row::Pg(row) => {
                use postgres::types::Type;
                let ty = row
                    .columns()
                    .get(i)
                    .ok_or_else(|| anyhow!("no column {i}"))?
                    .type_()
                    .clone();
                let cell = if ty == Type::INT8 {
                    row.try_get::<_, Option<i64>>(i)?.map(Cell::Int)
                } else if ty == Type::INT4 {
                    row.try_get::<_, Option<i32>>(i)?
                        .map(|v| Cell::Int(i64::from(v)))
                } else if ty == Type::BOOL {
                    row.try_get::<_, Option<bool>>(i)?
                        .map(|v| Cell::Int(i64::from(v)))
                } else if ty == Type::TEXT || ty == Type::VARCHAR {
                    row.try_get::<_, Option<&str>>(i)?.map(Cell::Text)
                } else {
                    bail!("unexpected column type {ty}")
                };
                Ok(cell.unwrap_or(Cell::Null))
            }
        }
    }
}

/// What a row's value can be read as.
pub trait FromCell: Sized {
    /// The value, or why it does not fit.
    fn from_cell(cell: Cell<'_>) -> Result<Self>;
}

impl FromCell for i64 {
    fn from_cell(cell: Cell<'_>) -> Result<Self> {
        match cell {
            Cell::Int(v) => Ok(v),
            other => bail!("expected an integer, found {other:?}"),
        }
    }
}

impl FromCell for u32 {
    fn from_cell(cell: Cell<'_>) -> Result<Self> {
        let v = i64::from_cell(cell)?;
        u32::try_from(v).map_err(|_| anyhow!("{v} is out of range"))
    }
}

impl FromCell for bool {
    fn from_cell(cell: Cell<'_>) -> Result<Self> {
        Ok(i64::from_cell(cell)? != 0)
    }
}

impl FromCell for String {
    fn from_cell(cell: Cell<'_>) -> Result<Self> {
        match cell {
            Cell::Text(t) => Ok(t.to_string()),
            other => bail!("expected text, found {other:?}"),
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: Cell<'_>) -> Result<Self> {
        match cell {
            Cell::Null => Ok(None),
            cell => T::from_cell(cell).map(Some),
        }
    }
}

/// A PostgreSQL connection with the statements it has prepared, by their SQL.
pub struct PgConn {
    pub(super) client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
    /// A statement failed in a way that says the session is gone (the server shut down or
    /// restarted, the socket broke): the pool drops this connection.
    broken: bool,
}

impl PgConn {
    pub(super) fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client,
            statements: HashMap::new(),
            broken: false,
        }
    }

    /// Whether this connection is gone: a statement said so, or the client saw it close.
    pub(super) fn is_broken(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    /// `result`, noting on the way whether its error says the session is gone.
    fn note<T>(&mut self, result: std::result::Result<T, postgres::Error>) -> Result<T> {
        if let Err(e) = &result {
            if session_gone(e) {
                self.broken = true;
            }
        }
        Ok(result?)
    }

    /// Statements kept per connection at most (SQLite's cache holds 128).
    const MAX_STATEMENTS: usize = 256;

    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let prepared = self.client.prepare(&pg_sql(sql));
        let statement = self.note(prepared)?;
        // The store's statements are a fixed set, but the audit search builds its own from the
        // filters given: past this many, start again rather than grow without bound.
        if self.statements.len() >= Self::MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

/// Opens PostgreSQL connections for the pool.
pub struct PgManager {
    pub(super) config: postgres::Config,
    pub(super) tls: tokio_postgres_rustls::MakeRustlsConnect,
}

/// Why a connection could not be made, with every cause (the pool keeps only the text, and
/// "error performing TLS handshake" alone does not say that the certificate is not trusted).
#[derive(Debug)]
pub struct ConnectError(String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

impl From<postgres::Error> for ConnectError {
    fn from(e: postgres::Error) -> Self {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        ConnectError(text)
    }
}

impl r2d2::ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = ConnectError;

    fn connect(&self) -> std::result::Result<PgConn, ConnectError> {
        Ok(PgConn::new(self.config.connect(self.tls.clone())?))
    }

    fn is_valid(&self, conn: &mut PgConn) -> std::result::Result<(), ConnectError> {
        Ok(conn.client.simple_query("").map(|_| ())?)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.is_broken()
    }
}

/// TLS to PostgreSQL: the server's certificate must chain to the system's roots or to the
/// certificates in `ca_file` (PEM), and name the host. Whether TLS is used at all is the URL's
/// `sslmode`: `prefer` (the default: TLS when the server offers it), `require`, or `disable`.
pub fn pg_tls(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates only narrow what is trusted.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .with_context(|| format!("could not read the CA file {}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert =
                cert.with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("a certificate in {} is not usable", path.display()))?;
            added += 1;
        }
        if added == 0 {
            bail!("{} holds no certificate", path.display());
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS setup")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Whether `e` says the session is gone: the connection closed, its socket failed, or the
/// server is shutting down, crashed or not yet taking connections.
fn session_gone(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code);
    }
    // No SQLSTATE: not the server's answer but the connection's own failure (I/O, protocol).
    e.as_db_error().is_none()
}

/// Calls `f` with `args` as PostgreSQL's client takes them.
fn with_pg_params<T>(
    args: &[&dyn ToArg],
    f: impl FnOnce(&[&(dyn postgres::types::ToSql + Sync)]) -> T,
) -> T {
    let values: Vec<Arg<'_>> = args.iter().map(|a| a.arg()).collect();
    let params: Vec<&(dyn postgres::types::ToSql + Sync)> = values
        .iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect();
    f(&params)
}

/// `sql` with `?N` written `$N`, PostgreSQL's spelling of a numbered parameter. The store's SQL
/// has no `?` in a literal.
pub fn pg_sql(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    Cow::Owned(sql.replace('?', "$"))
}

/// Where a statement runs: a connection (or transaction) of either backend.
pub enum Db<'a> {
    /// SQLite (a transaction derefs to its connection).
    Lite(&'a rusqlite::Connection),
    /// PostgreSQL, in whatever transaction the caller began.
    Pg(&'a RefCell<r2d2::PooledConnection<PgManager>>),
}

impl Db<'_> {
    /// Runs a statement; the number of rows it changed.
    pub fn exec(&self, sql: &str, args: &[&dyn ToArg]) -> Result<u64> {
        match self {
            Db::Lite(conn) => {
                let changed = conn
                    .prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(args.iter().map(|a| a.arg())))?;
                Ok(changed as u64)
            }
            Db::Pg(cell) => {
                let mut conn = cell.borrow_mut();
                let statement = conn.prepare(sql)?;
                let done = with_pg_params(args, |params| conn.client.execute(&statement, params));
                conn.note(done)
            }
        }
    }

    /// Every row of a query, each through `f`.
    pub fn rows<T>(
        &self,
        sql: &str,
        args: &[&dyn ToArg],
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        match self {
            Db::Lite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                let mut rows =
                    statement.query(rusqlite::params_from_iter(args.iter().map(|a| a.arg())))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(f(&Row::Lite(row))?);
                }
                Ok(out)
            }
            Db::Pg(cell) => {
                let mut conn = cell.borrow_mut();
                let statement = conn.prepare(sql)?;
                let rows = with_pg_params(args, |params| conn.client.query(&statement, params));
                let rows = conn.note(rows)?;
                drop(conn);
                rows.iter().map(|row| f(&Row::Pg(row))).collect()
            }
        }
    }

    /// The first row of a query through `f`, if there is one.
    pub fn opt<T>(
        &self,
        sql: &str,
        args: &[&dyn ToArg],
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut f = Some(f);
        let mut out = self.rows(sql, args, |row| match f.take() {
            Some(f) => f(row).map(Some),
            None => Ok(None),
        })?;
        Ok(if out.is_empty() {
            None
        } else {
            out.swap_remove(0)
        })
    }

    /// The first row's first column, which the query always has (`COUNT(*)`, `MAX(…)`).
    pub fn value<T: FromCell>(&self, sql: &str, args: &[&dyn ToArg]) -> Result<T> {
        self.opt(sql, args, |r| r.get(0))?
            .ok_or_else(|| anyhow!("no row from `{sql}`"))
    }

    /// Runs several statements without parameters (migrations, savepoints).
    pub fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Db::Lite(conn) => Ok(conn.execute_batch(sql)?),
            Db::Pg(cell) => {
                let mut conn = cell.borrow_mut();
                let done = conn.client.batch_execute(sql);
                conn.note(done)
            }
        }
    }

    /// Whether this is PostgreSQL.
    pub fn is_pg(&self) -> bool {
        matches!(self, Db::Pg(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_are_spelled_for_postgres() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE b = ?1 AND c <> ?12"),
            "SELECT a FROM t WHERE b = $1 AND c <> $12"
        );
        assert!(matches!(pg_sql("SELECT 1"), Cow::Borrowed(_)));
    }
}
