//! Failed authentications per (client, source address), kept in the database so that every
//! host sharing it throttles the same pairs (PostgreSQL). A single host on SQLite keeps them in
//! memory instead (`server.rs`), where reading them costs nothing.
//!
//! Instants here are milliseconds since the Unix epoch, from the hosts' clocks.

use super::db::Db;
use super::{records_in, Store};
use anyhow::Result;
use granted_policy::token::endpoint::{Lookup, Records};

/// [`Store::throttle_wait`] inside the caller's transaction.
fn wait_in(
    db: &Db<'_>,
    keys: &[(&str, &str)],
    now_ms: i64,
    window_ms: i64,
    limit: u32,
) -> Result<Option<i64>> {
    let since = now_ms.saturating_sub(window_ms);
    let offset = i64::from(limit.max(1)) - 1;
    let mut wait: Option<i64> = None;
    for (client_id, source) in keys {
        let oldest: Option<i64> = db.opt(
            "SELECT at_ms FROM throttle_failures
             WHERE client_id = ?1 AND source = ?2 AND at_ms > ?3
             ORDER BY at_ms DESC LIMIT 1 OFFSET ?4",
            &[client_id, source, &since, &offset],
            |r| r.get(0),
        )?;
        if let Some(oldest) = oldest {
            let left = (oldest + window_ms - now_ms).max(1);
            wait = Some(wait.map_or(left, |w| w.max(left)));
        }
    }
    Ok(wait)
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
    ) -> Result<std::result::Result<Records, i64>> {
        self.snapshot(|db| {
            let keys = [
                (check.client_id.as_str(), check.source.as_str()),
                ("", check.source.as_str()),
            ];
            if let Some(wait) = wait_in(db, &keys, check.now_ms, check.window_ms, check.limit)? {
                return Ok(Err(wait));
            }
            records_in(db, lookup).map(Ok)
        })
    }

    /// How long (milliseconds) the first of `keys` (client, source) that has `limit` failures
    /// in the `window_ms` before `now_ms` must wait: until the oldest of its last `limit`
    /// failures leaves the window. `None` when none must.
    pub fn throttle_wait(
        &self,
        keys: &[(&str, &str)],
        now_ms: i64,
        window_ms: i64,
        limit: u32,
    ) -> Result<Option<i64>> {
        self.read(|db| wait_in(db, keys, now_ms, window_ms, limit))
    }

    /// Records failed authentications, and forgets every one older than `window_ms` before
    /// `now_ms`.
    pub fn throttle_record(&self, failures: &[Failure], now_ms: i64, window_ms: i64) -> Result<()> {
        self.write_tx(|db| {
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
            Ok(())
        })
    }
}
