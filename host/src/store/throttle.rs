//! Failed authentications per (client, source address), kept in the database so that every
//! host sharing it throttles the same pairs (PostgreSQL). A single host on SQLite keeps them in
//! memory instead (`server.rs`), where reading them costs nothing.
//!
//! Instants here are milliseconds since the Unix epoch, from the hosts' clocks.

use super::db::Db;
use super::{
    cached_records, follow_up, needs_only_tenant_and_client, records_at, End, ReadAhead, Store,
};
use anyhow::Result;
use granted_policy::token::endpoint::{Lookup, Records};

/// [`Store::throttle_wait`] inside the caller's transaction: both of a source's keys (this
/// client's, and unknown clients' `""`) in one query.
fn wait_in(db: &Db<'_>, check: &ThrottleCheck) -> Result<Option<i64>> {
    Ok(wait_and_version(db, check)?.0)
}

/// [`wait_in`], and the records' version (`records_version`) read by the same statement.
fn wait_and_version(db: &Db<'_>, check: &ThrottleCheck) -> Result<(Option<i64>, Option<i64>)> {
    let ThrottleCheck {
        client_id,
        source,
        now_ms,
        window_ms,
        limit,
    } = check;
    let (now_ms, window_ms) = (*now_ms, *window_ms);
    let since = now_ms.saturating_sub(window_ms);
    let offset = i64::from((*limit).max(1)) - 1;
    // Per key, the oldest of its last `limit` failures in the window, if it has that many.
    let (client, unknown, version): (Option<i64>, Option<i64>, Option<i64>) = db
        .opt(
            "SELECT
               (SELECT at_ms FROM throttle_failures WHERE client_id = ?1 AND source = ?3
                AND at_ms > ?4 ORDER BY at_ms DESC LIMIT 1 OFFSET ?5),
               (SELECT at_ms FROM throttle_failures WHERE client_id = ?2 AND source = ?3
                AND at_ms > ?4 ORDER BY at_ms DESC LIMIT 1 OFFSET ?5),
               (SELECT version FROM records_version)",
            &[&client_id, &"", &source, &since, &offset],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .unwrap_or_default();
    let wait = client
        .into_iter()
        .chain(unknown)
        .map(|oldest| (oldest + window_ms - now_ms).max(1))
        .max();
    Ok((wait, version))
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
