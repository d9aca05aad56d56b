//! The audit log's hash chain: each entry's hash covers the previous one's; verified whole.

use super::*;

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

/// Where the audit chain breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditBreak {
    /// The first entry that does not check out.
    pub seq: i64,
    /// Why.
    pub why: String,
}

impl Store {
    /// Checks the whole audit chain; the first entry that does not check out, if any, and the
    /// number of entries.
    pub fn verify_audit(&self) -> Result<(i64, Option<AuditBreak>)> {
        self.snapshot(|db| {
            // After retention removed old entries, the chain starts at the anchor it left.
            let (first, mut prev) = match audit::anchor(db)? {
                Some((seq, sha)) => (seq + 1, sha),
                None => (1, AUDIT_GENESIS.to_string()),
            };
            let mut count = 0;
            let mut after = first - 1;
            // In pages, so that a long log is never all in memory at once.
            loop {
                let page = db.rows(
                    "SELECT seq, entry, prev_sha256, sha256 FROM audit WHERE seq > ?1
                     ORDER BY seq LIMIT 1000",
                    &[&after],
                    |r| {
                        Ok((
                            r.get::<i64>(0)?,
                            r.get::<String>(1)?,
                            r.get::<String>(2)?,
                            r.get::<String>(3)?,
                        ))
                    },
                )?;
                let Some(last) = page.last() else {
                    break;
                };
                after = last.0;
                for (seq, entry, prev_sha, sha) in page {
                    let expected_seq = first + count;
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
            }
            Ok((count, None))
        })
    }

    /// Audit entries (`seq`, `at`, kind, entry JSON) after `after`, oldest first, at most `limit`.
    pub fn audit_entries(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String, String, String)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|db| {
            db.rows(
                "SELECT seq, at, kind, entry FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                &[&after, &limit],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
        })
    }
}

/// The last audit entry's `seq` and hash; when there is none, the anchor retention left, or 0
/// and the genesis hash.
pub(super) fn audit_head(db: &Db<'_>) -> Result<(i64, String)> {
    let last = db.opt(
        "SELECT seq, sha256 FROM audit ORDER BY seq DESC LIMIT 1",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match last {
        Some(last) => Ok(last),
        None => Ok(audit::anchor(db)?.unwrap_or((0, AUDIT_GENESIS.to_string()))),
    }
}
