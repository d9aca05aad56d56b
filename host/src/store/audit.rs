//! The audit log's search columns, its queries (filters, cursor pagination, the sunset report's
//! counts) and retention. The hash chain itself is written and checked in `mod.rs`.

use super::chain::NewEntry;
use super::db::{Arg, Db, ToArg};
use super::{ts, End, Store};
use anyhow::Result;
use granted_policy::model::Timestamp;

/// The searchable fields of an entry, from its JSON: a token decision's tenant, app, grant type
/// and decision; an admin change's tenant and app (from its target).
fn columns(entry: &str) -> [Option<String>; 4] {
    let value: serde_json::Value = serde_json::from_str(entry).unwrap_or_default();
    // Without NUL, which PostgreSQL's text refuses (an entry's JSON escapes it, so the chain
    // still covers what was sent): one such value must not fail the batch it is written in.
    let text = |v: &serde_json::Value| v.as_str().map(|s| s.replace('\0', "\u{fffd}"));
    let target = &value["target"];
    [
        text(&value["tenant"]).or_else(|| text(&target["tenant"])),
        text(&value["app_id"]).or_else(|| text(&target["app_id"])),
        text(&value["grant_type"]),
        text(&value["decision"]),
    ]
}

/// The most rows one `INSERT` takes; a batch goes in statements of 64, 32, …, 1 rows, so that
/// each connection prepares at most seven of them.
pub(super) const MOST_ROWS: usize = 64;

/// How many of `left` rows (at least one) the next multi-row statement takes, at most
/// [`MOST_ROWS`]: on PostgreSQL all of them, since each statement is a round trip (a connection
/// then prepares one statement per count of rows, at most `MOST_ROWS` of them); on SQLite, which
/// keeps few prepared statements, the largest power of two.
fn rows_per_statement(db: &Db<'_>, left: usize) -> usize {
    if left >= MOST_ROWS {
        MOST_ROWS
    } else if db.is_pg() {
        left
    } else {
        1 << left.max(1).ilog2()
    }
}

/// Runs `write` on `rows` part by part, each part as many rows as one multi-row statement takes
/// ([`rows_per_statement`]).
pub(super) fn in_statements<T>(
    db: &Db<'_>,
    rows: &[T],
    mut write: impl FnMut(&[T]) -> Result<()>,
) -> Result<()> {
    let mut rest = rows;
    while !rest.is_empty() {
        let (these, others) = rest.split_at(rows_per_statement(db, rest.len()));
        rest = others;
        write(these)?;
    }
    Ok(())
}

/// `(?first, …, ?last)`: the numbered parameters of one row of values, or of an `IN` list.
pub(super) fn placeholders(params: std::ops::RangeInclusive<usize>) -> String {
    let params: Vec<String> = params.map(|p| format!("?{p}")).collect();
    format!("({})", params.join(", "))
}

/// Appends entries with their search columns, a few statements for the lot (on PostgreSQL,
/// each statement is a round trip). Their `seq` is the next of the log: on PostgreSQL from the
/// sequence `audit_seq` (migration 9), without waiting for any other writer; on SQLite, whose
/// writes are serial anyway, one more than the highest yet written or anchored.
pub(super) fn insert_entries(db: &Db<'_>, rows: &[NewEntry]) -> Result<()> {
    let mut next_seq = if db.is_pg() {
        None
    } else {
        let seq: Option<i64> = db.value(
            "SELECT MAX(seq) FROM (SELECT MAX(seq) AS seq FROM audit
                                   UNION ALL SELECT MAX(seq) FROM audit_anchor)",
            &[],
        )?;
        Some(seq.unwrap_or(0) + 1)
    };
    in_statements(db, rows, |these| {
        let n = these.len();
        let columns: Vec<[Option<String>; 4]> = these.iter().map(|r| columns(&r.entry)).collect();
        let instants: Vec<String> = these.iter().map(|r| r.at.to_rfc3339()).collect();
        let seqs: Vec<i64> = match &mut next_seq {
            Some(next) => {
                let first = *next;
                *next += n as i64;
                (first..*next).collect()
            }
            None => Vec::new(),
        };
        let mut args: Vec<&dyn ToArg> = Vec::with_capacity(n * 12);
        let mut values = Vec::with_capacity(n);
        for (i, row) in these.iter().enumerate() {
            let first = args.len() + 1;
            if let Some(seq) = seqs.get(i) {
                args.push(seq);
            }
            args.push(&instants[i]);
            args.push(&row.kind);
            args.push(&row.entry);
            args.push(&row.prev_sha256);
            args.push(&row.sha256);
            for column in &columns[i] {
                args.push(column);
            }
            args.push(&row.chain);
            args.push(&row.link);
            values.push(placeholders(first..=args.len()));
        }
        let sql = format!(
            "INSERT INTO audit ({}at, kind, entry, prev_sha256, sha256, tenant, app_id, grant_type,
                                decision, chain, link)
             VALUES {}",
            if next_seq.is_some() { "seq, " } else { "" },
            values.join(", ")
        );
        db.exec(&sql, &args)?;
        Ok(())
    })
}

/// Fills the search columns of entries written before they existed (migration 4).
pub(super) fn backfill_columns(db: &Db<'_>) -> Result<()> {
    let rows: Vec<(i64, String)> = db.rows("SELECT seq, entry FROM audit", &[], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    for (seq, entry) in rows {
        let [tenant, app_id, grant_type, decision] = columns(&entry);
        db.exec(
            "UPDATE audit SET tenant = ?2, app_id = ?3, grant_type = ?4, decision = ?5 WHERE seq = ?1",
            &[&seq, &tenant, &app_id, &grant_type, &decision],
        )?;
    }
    Ok(())
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
        let since = filter.since.map(|t| t.to_rfc3339());
        let until = filter.until.map(|t| t.to_rfc3339());
        let mut clauses = Vec::new();
        let mut values: Vec<Arg<'_>> = Vec::new();
        let mut add = |clause: &str, value| {
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
                add(&format!("{column} = ?"), Arg::Text(v));
            }
        }
        if let Some(t) = &since {
            add("at >= ?", Arg::Text(t));
        }
        if let Some(t) = &until {
            add("at < ?", Arg::Text(t));
        }
        if let Some(seq) = filter.before_seq {
            add("seq < ?", Arg::Int(seq));
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
        let args: Vec<&dyn ToArg> = values.iter().map(|v| v as &dyn ToArg).collect();
        self.read(|db| {
            db.rows(&sql, &args, |r| {
                Ok(AuditRow {
                    seq: r.get(0)?,
                    at: ts(r.get(1)?)?,
                    kind: r.get(2)?,
                    entry: r.get(3)?,
                    sha256: r.get(4)?,
                })
            })
        })
    }

    /// Removes the entries written before `cutoff` (retention), oldest first, and anchors each
    /// chain at the last of its entries removed so that `verify_audit` still checks what
    /// remains. The number removed.
    pub fn prune_audit(&self, cutoff: Timestamp) -> Result<usize> {
        self.transact(|db| {
            // Each chain is appended in time order, so its old entries are a prefix of it.
            let ends: Vec<(String, i64, i64, String)> = db.rows(
                "SELECT a.chain, a.link, a.seq, a.sha256 FROM audit a
                 JOIN (SELECT chain, MAX(link) AS link FROM audit WHERE at < ?1 GROUP BY chain) m
                   ON a.chain = m.chain AND a.link = m.link",
                &[&cutoff.to_rfc3339()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            if ends.is_empty() {
                return Ok(End::Rollback(0));
            }
            for (chain, link, seq, sha) in &ends {
                db.exec("DELETE FROM audit_anchor WHERE chain = ?1", &[chain])?;
                db.exec(
                    "INSERT INTO audit_anchor (seq, sha256, chain, link) VALUES (?1, ?2, ?3, ?4)",
                    &[seq, sha, chain, link],
                )?;
            }
            let removed = db.exec(
                "DELETE FROM audit WHERE EXISTS (SELECT 1 FROM audit_anchor n
                     WHERE n.chain = audit.chain AND audit.link <= n.link)",
                &[],
            )?;
            Ok(End::Commit(usize::try_from(removed).unwrap_or(usize::MAX)))
        })
    }

    /// The oldest entry's instant (what the audit log still covers).
    pub fn audit_oldest(&self) -> Result<Option<Timestamp>> {
        let at: Option<String> = self.read(|db| db.value("SELECT MIN(at) FROM audit", &[]))?;
        at.map(ts).transpose()
    }

    /// Password-grant tokens issued per (tenant, app): in the 7 and 30 days before `now`, and
    /// the last one ever logged.
    pub fn password_use(&self, now: Timestamp) -> Result<Vec<UseCount>> {
        self.grant_use(now, "password")
    }

    /// Tokens of `grant_type` issued per (tenant, app): in the 7 and 30 days before `now`, and
    /// the last one ever logged.
    pub fn grant_use(&self, now: Timestamp, grant_type: &str) -> Result<Vec<UseCount>> {
        let d7 = now.plus_seconds(-7 * 86_400).to_rfc3339();
        let d30 = now.plus_seconds(-30 * 86_400).to_rfc3339();
        self.read(|db| {
            db.rows(
                "SELECT tenant, app_id,
                    SUM(CASE WHEN at >= ?1 THEN 1 ELSE 0 END),
                    SUM(CASE WHEN at >= ?2 THEN 1 ELSE 0 END),
                    MAX(at)
             FROM audit
             WHERE kind = 'token' AND decision = 'granted' AND grant_type = ?3
               AND tenant IS NOT NULL AND app_id IS NOT NULL
             GROUP BY tenant, app_id ORDER BY tenant, app_id",
                &[&d7, &d30, &grant_type],
                |r| {
                    Ok(UseCount {
                        tenant: r.get(0)?,
                        app_id: r.get(1)?,
                        last_7_days: r.get(2)?,
                        last_30_days: r.get(3)?,
                        last_use: r.get::<Option<String>>(4)?.map(ts).transpose()?,
                    })
                },
            )
        })
    }
}

impl Store {
    /// Password-grant tokens issued per app and UTC day (`YYYY-MM-DD`), from `since` on.
    pub fn password_use_daily(&self, since: Timestamp) -> Result<Vec<(String, String, i64)>> {
        self.read(|db| {
            db.rows(
                "SELECT app_id, SUBSTR(at, 1, 10), COUNT(*) FROM audit
             WHERE kind = 'token' AND decision = 'granted' AND grant_type = 'password'
               AND app_id IS NOT NULL AND at >= ?1
             GROUP BY app_id, SUBSTR(at, 1, 10) ORDER BY 1, 2",
                &[&since.to_rfc3339()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        })
    }
}
