//! The audit log's search columns, its queries (filters, cursor pagination, the sunset report's
//! counts) and retention. The hash chain itself is written and checked in `mod.rs`.

use super::db::{Arg, Db, ToArg};
use super::{ts, End, Store};
use anyhow::Result;
use granted_policy::model::Timestamp;

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
    db: &Db<'_>,
    seq: i64,
    at: Timestamp,
    kind: &str,
    entry: &str,
    prev: &str,
    sha: &str,
) -> Result<u64> {
    let [tenant, app_id, grant_type, decision] = columns(entry);
    db.exec(
        "INSERT INTO audit (seq, at, kind, entry, prev_sha256, sha256, tenant, app_id, grant_type, decision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        &[
            &seq,
            &at.to_rfc3339(),
            &kind,
            &entry,
            &prev,
            &sha,
            &tenant,
            &app_id,
            &grant_type,
            &decision,
        ],
    )
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

/// Where the chain starts: the anchor retention left (`seq`, hash of that removed entry), or
/// nothing (the genesis).
pub(super) fn anchor(db: &Db<'_>) -> Result<Option<(i64, String)>> {
    db.opt(
        "SELECT seq, sha256 FROM audit_anchor ORDER BY seq DESC LIMIT 1",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
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

    /// Removes the entries written before `cutoff` (retention), oldest first, and anchors the
    /// chain at the last one removed so that `verify_audit` still checks what remains. The
    /// number removed.
    pub fn prune_audit(&self, cutoff: Timestamp) -> Result<usize> {
        self.transact(|db| {
            // Entries are appended in time order, so the old ones are a prefix of the chain.
            let last: Option<(i64, String)> = db.opt(
                "SELECT seq, sha256 FROM audit WHERE at < ?1 ORDER BY seq DESC LIMIT 1",
                &[&cutoff.to_rfc3339()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let Some((seq, sha)) = last else {
                return Ok(End::Rollback(0));
            };
            let removed = db.exec("DELETE FROM audit WHERE seq <= ?1", &[&seq])?;
            db.exec("DELETE FROM audit_anchor", &[])?;
            db.exec(
                "INSERT INTO audit_anchor (seq, sha256) VALUES (?1, ?2)",
                &[&seq, &sha],
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
