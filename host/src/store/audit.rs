//! The audit log's search columns, its queries (filters, cursor pagination, the sunset report's
//! counts) and retention. The hash chain itself is written and checked in `mod.rs`.

use super::{lock, ts, Store, Transaction};
use anyhow::Result;
use granted_policy::model::Timestamp;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};

/// The searchable fields of an entry, from its JSON: a token decision's tenant, app, grant type
/// and decision; an admin change's tenant and app (from its target).
fn columns(entry: &str) -> [Option<String>; 4] {
    let value: serde_json::Value = serde_json::from_str(entry).unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let target = &value["target"];
    [
        text(&value["tenant"]).or_else(|| text(&target["tenant"])),
        text(&value["app_id"]).or_else(|| text(&target["app_id"])),
        text(&value["grant_type"]),
        text(&value["decision"]),
    ]
}

/// Appends one entry with its search columns.
pub(super) fn insert(
    tx: &Transaction<'_>,
    seq: i64,
    at: Timestamp,
    kind: &str,
    entry: &str,
    prev: &str,
    sha: &str,
) -> rusqlite::Result<usize> {
    let [tenant, app_id, grant_type, decision] = columns(entry);
    tx.prepare_cached("INSERT INTO audit (seq, at, kind, entry, prev_sha256, sha256, tenant, app_id, grant_type, decision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")?.execute(params![seq, at.to_rfc3339(), kind, entry, prev, sha, tenant, app_id, grant_type, decision],
    )
}

/// Fills the search columns of entries written before they existed (migration 4).
pub(super) fn backfill_columns(tx: &Transaction<'_>) -> Result<()> {
    let rows: Vec<(i64, String)> = tx
        .prepare_cached("SELECT seq, entry FROM audit")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (seq, entry) in rows {
        let [tenant, app_id, grant_type, decision] = columns(&entry);
        tx.prepare_cached("UPDATE audit SET tenant = ?2, app_id = ?3, grant_type = ?4, decision = ?5 WHERE seq = ?1")?.execute(params![seq, tenant, app_id, grant_type, decision],
        )?;
    }
    Ok(())
}

/// Where the chain starts: the anchor retention left (`seq`, hash of that removed entry), or
/// nothing (the genesis).
pub(super) fn anchor(conn: &Connection) -> Result<Option<(i64, String)>> {
    Ok(conn
        .prepare_cached("SELECT seq, sha256 FROM audit_anchor ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// What to search the audit log for; every field narrows.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// `token`, `revocation`, `introspection`, `admin`.
    pub kind: Option<String>,
    /// The tenant.
    pub tenant: Option<String>,
    /// The app.
    pub app_id: Option<String>,
    /// The grant type.
    pub grant_type: Option<String>,
    /// `granted` or `denied`.
    pub decision: Option<String>,
    /// At or after.
    pub since: Option<Timestamp>,
    /// Before.
    pub until: Option<Timestamp>,
    /// Entries older than this `seq` (the cursor of the previous page).
    pub before_seq: Option<i64>,
}

/// One audit entry as searched.
#[derive(Clone, Debug)]
pub struct AuditRow {
    /// Its place in the chain.
    pub seq: i64,
    /// When.
    pub at: Timestamp,
    /// Its kind.
    pub kind: String,
    /// Its canonical JSON.
    pub entry: String,
    /// Its chain hash.
    pub sha256: String,
}

/// Password-grant tokens issued for one (tenant, app).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UseCount {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app_id: String,
    /// Issued in the last 7 days.
    pub last_7_days: i64,
    /// Issued in the last 30 days.
    pub last_30_days: i64,
    /// The last one.
    pub last_use: Option<Timestamp>,
}

impl Store {
    /// Entries matching `filter`, newest first, at most `limit`.
    pub fn audit_search(&self, filter: &AuditFilter, limit: usize) -> Result<Vec<AuditRow>> {
        let mut clauses = Vec::new();
        let mut values: Vec<String> = Vec::new();
        let mut add = |clause: &str, value: String| {
            values.push(value);
            clauses.push(clause.replace('?', &format!("?{}", values.len())));
        };
        for (column, value) in [
            ("kind", &filter.kind),
            ("tenant", &filter.tenant),
            ("app_id", &filter.app_id),
            ("grant_type", &filter.grant_type),
            ("decision", &filter.decision),
        ] {
            if let Some(v) = value {
                add(&format!("{column} = ?"), v.clone());
            }
        }
        if let Some(t) = filter.since {
            add("at >= ?", t.to_rfc3339());
        }
        if let Some(t) = filter.until {
            add("at < ?", t.to_rfc3339());
        }
        if let Some(seq) = filter.before_seq {
            add("seq < CAST(? AS INTEGER)", seq.to_string());
        }
        let sql = format!(
            "SELECT seq, at, kind, entry, sha256 FROM audit {} ORDER BY seq DESC LIMIT {}",
            if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            },
            limit.min(10_000)
        );
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(values.iter()), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at, kind, entry, sha256) = row?;
            out.push(AuditRow {
                seq,
                at: ts(at)?,
                kind,
                entry,
                sha256,
            });
        }
        Ok(out)
    }

    /// Removes the entries written before `cutoff` (retention), oldest first, and anchors the
    /// chain at the last one removed so that `verify_audit` still checks what remains. The
    /// number removed.
    pub fn prune_audit(&self, cutoff: Timestamp) -> Result<usize> {
        let mut conn = lock(&self.conn);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Entries are appended in time order, so the old ones are a prefix of the chain.
        let last: Option<(i64, String)> = tx
            .prepare_cached(
                "SELECT seq, sha256 FROM audit WHERE at < ?1 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row([cutoff.to_rfc3339()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((seq, sha)) = last else {
            return Ok(0);
        };
        let removed = tx
            .prepare_cached("DELETE FROM audit WHERE seq <= ?1")?
            .execute([seq])?;
        tx.prepare_cached("DELETE FROM audit_anchor")?.execute([])?;
        tx.prepare_cached("INSERT INTO audit_anchor (seq, sha256) VALUES (?1, ?2)")?
            .execute(params![seq, sha])?;
        tx.commit()?;
        Ok(removed)
    }

    /// The oldest entry's instant (what the audit log still covers).
    pub fn audit_oldest(&self) -> Result<Option<Timestamp>> {
        let conn = self.reader();
        let at: Option<String> = conn
            .prepare_cached("SELECT MIN(at) FROM audit")?
            .query_row([], |r| r.get(0))
            .optional()?
            .flatten();
        at.map(ts).transpose()
    }

    /// Password-grant tokens issued per (tenant, app): in the 7 and 30 days before `now`, and
    /// the last one ever logged.
    pub fn password_use(&self, now: Timestamp) -> Result<Vec<UseCount>> {
        let conn = self.reader();
        let d7 = now.plus_seconds(-7 * 86_400).to_rfc3339();
        let d30 = now.plus_seconds(-30 * 86_400).to_rfc3339();
        let mut stmt = conn.prepare_cached(
            "SELECT tenant, app_id,
                    SUM(CASE WHEN at >= ?1 THEN 1 ELSE 0 END),
                    SUM(CASE WHEN at >= ?2 THEN 1 ELSE 0 END),
                    MAX(at)
             FROM audit
             WHERE kind = 'token' AND decision = 'granted' AND grant_type = 'password'
               AND tenant IS NOT NULL AND app_id IS NOT NULL
             GROUP BY tenant, app_id ORDER BY tenant, app_id",
        )?;
        let rows = stmt.query_map(params![d7, d30], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (tenant, app_id, last_7_days, last_30_days, last) = row?;
            out.push(UseCount {
                tenant,
                app_id,
                last_7_days,
                last_30_days,
                last_use: last.map(ts).transpose()?,
            });
        }
        Ok(out)
    }
}

impl Store {
    /// Password-grant tokens issued per app and UTC day (`YYYY-MM-DD`), from `since` on.
    pub fn password_use_daily(&self, since: Timestamp) -> Result<Vec<(String, String, i64)>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT app_id, SUBSTR(at, 1, 10), COUNT(*) FROM audit
             WHERE kind = 'token' AND decision = 'granted' AND grant_type = 'password'
               AND app_id IS NOT NULL AND at >= ?1
             GROUP BY app_id, SUBSTR(at, 1, 10) ORDER BY 1, 2",
        )?;
        let rows = stmt
            .query_map([since.to_rfc3339()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}
