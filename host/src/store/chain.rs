//! The audit log's hash chains: one per writer, each entry's hash covering the previous entry of
//! its chain; verified whole.
//!
//! Why several: with one global chain, every writer had to read the chain's head and append
//! under one cluster-wide lock, held across the database's round trips. Now each store (each
//! process) appends to chains of its own, whose heads it keeps in memory: one for token
//! decisions (the group-commit writer) and one for admin changes, so that an admin change
//! waiting for the cluster-wide admin lock never holds up a token decision. A chain is named by
//! a random id; it starts at its genesis when the store opens, and again under a new id
//! whenever a transaction that appended to it failed (its outcome may be unknown, and a chain
//! must never fork). Entries written before chains existed form the chain `""`.
//!
//! What verification shows: in each chain, an entry altered, removed from the middle, or moved
//! is found. As with one chain, removing the newest entries of a chain (or a whole chain) is
//! not: that needs the heads kept somewhere the database's writer cannot reach.

use super::*;
use std::collections::HashMap;

/// The `prev_sha256` of a chain's first entry.
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
    /// The first entry (in `seq` order) that does not check out.
    pub seq: i64,
    /// Why.
    pub why: String,
}

/// The head of one writer's chain: its id, the position of its last entry (0: none yet) and
/// that entry's hash (the genesis before the first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ChainHead {
    pub(super) id: String,
    pub(super) link: i64,
    pub(super) sha256: String,
}

impl ChainHead {
    /// A new chain, under a new random id.
    pub(super) fn start() -> ChainHead {
        ChainHead {
            id: new_chain_id(),
            link: 0,
            sha256: AUDIT_GENESIS.to_string(),
        }
    }

    /// Appends `entry` (written at `at`, of `kind`) to this head, and the row to insert.
    pub(super) fn append(&mut self, at: Timestamp, kind: &str, entry: &str) -> NewEntry {
        let sha256 = audit_hash(&self.sha256, entry);
        let row = NewEntry {
            at,
            kind: kind.to_string(),
            entry: entry.to_string(),
            chain: self.id.clone(),
            link: self.link + 1,
            prev_sha256: std::mem::replace(&mut self.sha256, sha256.clone()),
            sha256,
        };
        self.link += 1;
        row
    }
}

/// An audit entry to insert, its place in its chain decided.
#[derive(Clone, Debug)]
pub(super) struct NewEntry {
    pub(super) at: Timestamp,
    pub(super) kind: String,
    pub(super) entry: String,
    pub(super) chain: String,
    pub(super) link: i64,
    pub(super) prev_sha256: String,
    pub(super) sha256: String,
}

/// The chains a store appends to.
pub(super) struct Chains {
    /// Token decisions and the other effects of the token and authorization endpoints.
    pub(super) decisions: Mutex<ChainHead>,
    /// Admin changes.
    pub(super) admin: Mutex<ChainHead>,
}

impl Default for Chains {
    fn default() -> Self {
        Chains {
            decisions: Mutex::new(ChainHead::start()),
            admin: Mutex::new(ChainHead::start()),
        }
    }
}

/// 16 random hex digits; when the system has no randomness to give, a hash of the process,
/// the clock and a counter (ids need only differ, not be secret).
fn new_chain_id() -> String {
    use sha2::{Digest, Sha256};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let bytes = crate::random::random_bytes(8).unwrap_or_else(|_| {
        let mut h = Sha256::new();
        h.update(std::process::id().to_le_bytes());
        h.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
        h.update(
            COUNTER
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .to_le_bytes(),
        );
        h.finalize()[..8].to_vec()
    });
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Runs `f` with the head of `chain` as a draft and keeps the draft once `f` succeeds (its
    /// transaction committed). When `f` fails, its transaction may or may not have committed,
    /// so the chain ends there and the next append starts a new one.
    pub(super) fn with_chain<T>(
        chain: &Mutex<ChainHead>,
        f: impl FnOnce(&ChainHead) -> Result<(T, ChainHead)>,
    ) -> Result<T> {
        let mut head = lock(chain);
        match f(&head) {
            Ok((out, next)) => {
                *head = next;
                Ok(out)
            }
            Err(e) => {
                *head = ChainHead::start();
                Err(e)
            }
        }
    }

    /// Checks every chain of the audit log: the first entry (in `seq` order) that does not
    /// check out, if any, and the number of entries.
    pub fn verify_audit(&self) -> Result<(i64, Option<AuditBreak>)> {
        self.snapshot(|db| {
            // After retention removed old entries, a chain starts at the anchor it left.
            let mut heads: HashMap<String, (i64, String)> = db
                .rows("SELECT chain, link, sha256 FROM audit_anchor", &[], |r| {
                    Ok((r.get::<String>(0)?, (r.get(1)?, r.get(2)?)))
                })?
                .into_iter()
                .collect();
            let mut count = 0;
            let mut after = i64::MIN;
            // In pages, so that a long log is never all in memory at once. A chain's entries
            // are in `seq` order: one writer appends to it, one transaction after another.
            loop {
                let page = db.rows(
                    "SELECT seq, chain, link, entry, prev_sha256, sha256 FROM audit
                     WHERE seq > ?1 ORDER BY seq LIMIT 1000",
                    &[&after],
                    |r| {
                        Ok((
                            r.get::<i64>(0)?,
                            r.get::<String>(1)?,
                            r.get::<i64>(2)?,
                            r.get::<String>(3)?,
                            r.get::<String>(4)?,
                            r.get::<String>(5)?,
                        ))
                    },
                )?;
                let Some(last) = page.last() else {
                    break;
                };
                after = last.0;
                for (seq, chain, link, entry, prev_sha, sha) in page {
                    count += 1;
                    let broken = |why: String| Ok((count, Some(AuditBreak { seq, why })));
                    let (last_link, last_sha) = heads
                        .get(&chain)
                        .cloned()
                        .unwrap_or_else(|| (0, AUDIT_GENESIS.to_string()));
                    let name = if chain.is_empty() {
                        "the first chain".to_string()
                    } else {
                        format!("chain {chain}")
                    };
                    if link != last_link + 1 {
                        return broken(format!(
                            "entry {} is missing from {name} (the next there is {link})",
                            last_link + 1
                        ));
                    }
                    if prev_sha != last_sha {
                        return broken(format!(
                            "its link to the previous entry of {name} does not match"
                        ));
                    }
                    if audit_hash(&prev_sha, &entry) != sha {
                        return broken("its content does not match its hash".into());
                    }
                    heads.insert(chain, (link, sha));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_links_each_entry_to_the_one_before() {
        let mut head = ChainHead::start();
        let at = Timestamp::parse("2026-12-01T00:00:00Z").unwrap();
        let a = head.append(at, "token", "{\"a\":1}");
        let b = head.append(at, "token", "{\"b\":2}");
        assert_eq!((a.link, b.link), (1, 2));
        assert_eq!(a.prev_sha256, AUDIT_GENESIS);
        assert_eq!(a.sha256, audit_hash(AUDIT_GENESIS, "{\"a\":1}"));
        assert_eq!(b.prev_sha256, a.sha256);
        assert_eq!(b.sha256, audit_hash(&a.sha256, "{\"b\":2}"));
        assert_eq!((head.link, head.sha256.as_str()), (2, b.sha256.as_str()));
        assert_eq!(a.chain, head.id);
        assert_ne!(
            ChainHead::start().id,
            head.id,
            "every chain has an id of its own"
        );
    }
}
