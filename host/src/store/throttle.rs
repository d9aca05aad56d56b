//! Failed authentications per (client, source address), kept in the database so that every
//! host sharing it throttles the same pairs (PostgreSQL). A single host on SQLite keeps them in
//! memory instead (`server.rs`), where reading them costs nothing.
//!
//! Instants here are milliseconds since the Unix epoch, from the hosts' clocks.

use super::db::Db;
use super::records::{refresh_columns, user_columns};
use super::{
    cached_records, follow_up, needs_only_tenant_and_client, next_user, read_ahead, records_at,
    refresh_only, refresh_row, user_row, End, ReadAhead, Store,
};
use anyhow::Result;
use granted_policy::model::{RefreshTokenRecord, UserRecord};
use granted_policy::token::endpoint::{Lookup, Records};

/// Three columns: per key (this client's `?1`, unknown clients' `?2`, from source `?3`), the
/// oldest of its last `limit` failures in the window (after `?4`, offset `?5`), if it has that
/// many; and the records' version. A macro, so that the queries are `&'static str`.
macro_rules! wait_and_version_columns {
    () => {
        "(SELECT at_ms FROM throttle_failures WHERE client_id = ?1 AND source = ?3
          AND at_ms > ?4 ORDER BY at_ms DESC LIMIT 1 OFFSET ?5),
         (SELECT at_ms FROM throttle_failures WHERE client_id = ?2 AND source = ?3
          AND at_ms > ?4 ORDER BY at_ms DESC LIMIT 1 OFFSET ?5),
         (SELECT version FROM records_version)"
    };
}

/// [`Store::throttle_wait`] inside the caller's transaction: both of a source's keys (this
/// client's, and unknown clients' `""`) in one query.
fn wait_in(db: &Db<'_>, check: &ThrottleCheck) -> Result<Option<i64>> {
    Ok(wait_and_version(db, check)?.0)
}

/// [`wait_in`], and the records' version (`records_version`) read by the same statement.
fn wait_and_version(db: &Db<'_>, check: &ThrottleCheck) -> Result<(Option<i64>, Option<i64>)> {
    let args = WaitArgs::of(check);
    let (client, unknown, version): (Option<i64>, Option<i64>, Option<i64>) = db
        .opt(
            concat!("SELECT ", wait_and_version_columns!()),
            &args.list(),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .unwrap_or_default();
    Ok((args.wait(client, unknown), version))
}

/// The parameters `?1` to `?5` of [`wait_and_version_columns`], and the wait their answers make.
struct WaitArgs<'c> {
    check: &'c ThrottleCheck,
    since: i64,
    offset: i64,
}

impl<'c> WaitArgs<'c> {
    fn of(check: &'c ThrottleCheck) -> WaitArgs<'c> {
        WaitArgs {
            check,
            since: check.now_ms.saturating_sub(check.window_ms),
            offset: i64::from(check.limit.max(1)) - 1,
        }
    }

    fn list(&self) -> [&dyn super::db::ToArg; 5] {
        [
            &self.check.client_id,
            &"",
            &self.check.source,
            &self.since,
            &self.offset,
        ]
    }

    /// The wait, in milliseconds, that the two keys' oldest failures make.
    fn wait(&self, client: Option<i64>, unknown: Option<i64>) -> Option<i64> {
        let ThrottleCheck {
            now_ms, window_ms, ..
        } = self.check;
        client
            .into_iter()
            .chain(unknown)
            .map(|oldest| (oldest + window_ms - now_ms).max(1))
            .max()
    }
}

/// The throttle, the version, the refresh token `sha256` and the user it names in `tenant`,
/// by one statement (one snapshot, one round trip).
#[allow(clippy::type_complexity)]
pub(super) fn refresh_at_once(
    db: &Db<'_>,
    check: &ThrottleCheck,
    tenant: &str,
    sha256: &str,
) -> Result<(
    Option<i64>,
    Option<i64>,
    Option<RefreshTokenRecord>,
    Option<UserRecord>,
)> {
    let args = WaitArgs::of(check);
    let [a1, a2, a3, a4, a5] = args.list();
    let row = db.opt(
        concat!(
            "SELECT ",
            wait_and_version_columns!(),
            ", ",
            refresh_columns!(),
            ", ",
            user_columns!(),
            " FROM (SELECT 1 AS one) o
             LEFT JOIN refresh_tokens r ON r.token_sha256 = ?6
             LEFT JOIN users u ON u.tenant = ?7 AND u.username = r.username
             LEFT JOIN login_failures f ON f.tenant = u.tenant AND f.username = u.username"
        ),
        &[a1, a2, a3, a4, a5, &sha256, &tenant],
        |r| {
            let token = refresh_row(r, 3, sha256)?;
            let user = match token.as_ref().and_then(|t| t.username.as_deref()) {
                Some(username) => user_row(r, 12, username)?,
                None => None,
            };
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, token, user))
        },
    )?;
    let (client, unknown, version, token, user) =
        row.ok_or_else(|| anyhow::anyhow!("a query of constants returned no row"))?;
    Ok((args.wait(client, unknown), version, token, user))
}

/// One failed authentication: `client_id` (`""` for an unknown client), source address, and
/// when, in milliseconds since the epoch.
pub type Failure = (String, String, i64);

/// What a token request's records come with on a shared database: its throttle key (client,
/// and source address) and the limit.
#[derive(Clone, Debug)]
pub struct ThrottleCheck {
    /// The `client_id` (failures of unknown clients count under `""` too).
    pub client_id: String,
    /// The source address.
    pub source: String,
    /// Now, in milliseconds since the epoch.
    pub now_ms: i64,
    /// The window, in milliseconds.
    pub window_ms: i64,
    /// Failures in the window before the pair waits.
    pub limit: u32,
}

impl Store {
    /// The records of a token request, read in one snapshot after its throttle: `Err` with
    /// the milliseconds to wait when the client and source are over the limit.
    pub fn records_unless_throttled(
        &self,
        lookup: &Lookup,
        check: &ThrottleCheck,
    ) -> Result<std::result::Result<(Records, Option<ReadAhead>), i64>> {
        if let Some(sha256) = refresh_only(lookup) {
            // A refresh: the throttle, the version, the token and its user, by one statement;
            // when the cache holds the tenant and the client at that version, that is all.
            let (wait, version, token, user) =
                self.read(|db| refresh_at_once(db, check, &lookup.tenant, sha256))?;
            if let Some(wait) = wait {
                return Ok(Err(wait));
            }
            if let Some(mut records) = version.and_then(|v| cached_records(&self.cache, v, lookup))
            {
                records.refresh_token = Some(token);
                let ahead = next_user(lookup, &records)
                    .map(|username| read_ahead(lookup, &records, username, user));
                return Ok(Ok((records, ahead)));
            }
        }
        if needs_only_tenant_and_client(lookup) {
            // One statement is one snapshot: the throttle and the version alone, in one round
            // trip; when the cache holds the tenant and the client at that version, that is all
            // (most `client_credentials`). Otherwise the transaction below reads them.
            let (wait, version) = self.read(|db| wait_and_version(db, check))?;
            if let Some(wait) = wait {
                return Ok(Err(wait));
            }
            if let Some(records) = version.and_then(|v| cached_records(&self.cache, v, lookup)) {
                return Ok(Ok((records, None)));
            }
        }
        self.snapshot(|db| {
            let (wait, version) = wait_and_version(db, check)?;
            if let Some(wait) = wait {
                return Ok(Err(wait));
            }
            let records = records_at(db, version, lookup, &self.cache)?;
            let ahead = follow_up(db, lookup, &records)?;
            Ok(Ok((records, ahead)))
        })
    }

    /// How long (milliseconds) the check's client from its source must wait: until the oldest
    /// of its last `limit` failures in the window leaves it; the same for unknown clients from
    /// that source (`""`), and the longer of the two. `None` when neither has `limit` failures
    /// in the window.
    pub fn throttle_wait(&self, check: &ThrottleCheck) -> Result<Option<i64>> {
        self.read(|db| wait_in(db, check))
    }

    /// Records failed authentications, and forgets every one older than `window_ms` before
    /// `now_ms`.
    pub fn throttle_record(&self, failures: &[Failure], now_ms: i64, window_ms: i64) -> Result<()> {
        // Inserts and a delete of old rows: nothing to serialize with other hosts.
        self.transact_rows(|db| {
            for (client_id, source, at_ms) in failures {
                db.exec(
                    "INSERT INTO throttle_failures (client_id, source, at_ms) VALUES (?1, ?2, ?3)",
                    &[client_id, source, at_ms],
                )?;
            }
            db.exec(
                "DELETE FROM throttle_failures WHERE at_ms <= ?1",
                &[&now_ms.saturating_sub(window_ms)],
            )?;
            Ok(End::Commit(()))
        })
    }
}
