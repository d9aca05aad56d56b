//! The server keys: access-token signing keys (rotated, the old ones kept while their tokens live) and the client-secret key, sealed under the master key when the store has one (`seal.rs`).

use super::seal::{self, MasterKey};
use super::*;
use zeroize::Zeroizing;

/// A signing key for access tokens.
#[derive(Clone)]
pub struct SigningKey {
    /// Its id, in the JWT header.
    pub kid: String,
    /// The HS256 secret, base64.
    pub secret: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The current signing key, and the client-secret key; created (from `entropy`) on first
    /// use, in one transaction.
    pub fn ensure_keys(
        &self,
        now: Timestamp,
        mut entropy: impl FnMut() -> Result<String>,
    ) -> Result<(SigningKey, String)> {
        let master = self.master.as_ref();
        self.write_tx(|db| {
            if current_signing_key(db, master)?.is_none() {
                let kid = new_kid(now, &entropy()?);
                insert_key(db, master, "signing", &kid, &entropy()?, now)?;
            }
            if client_secret_key(db, master)?.is_none() {
                insert_key(
                    db,
                    master,
                    "client_secret",
                    "client-secret-1",
                    &entropy()?,
                    now,
                )?;
            }
            let signing =
                current_signing_key(db, master)?.ok_or_else(|| anyhow!("no signing key"))?;
            let client =
                client_secret_key(db, master)?.ok_or_else(|| anyhow!("no client-secret key"))?;
            Ok((signing, client))
        })
    }

    /// The current signing key and the client-secret key, if made.
    pub fn current_keys(&self) -> Result<Option<(SigningKey, String)>> {
        let master = self.master.as_ref();
        self.snapshot(|db| Ok(current_signing_key(db, master)?.zip(client_secret_key(db, master)?)))
    }

    /// Adds a new signing key and retires the current one: it still verifies tokens until
    /// `verify_until` (when the last token it signed expires), but signs nothing new.
    pub fn rotate_signing_key(
        &self,
        now: Timestamp,
        verify_until: Timestamp,
        secret: &str,
        kid_entropy: &str,
    ) -> Result<SigningKey> {
        self.write_tx(|db| {
            db.exec(
                "UPDATE server_keys SET retired_at = ?1, verify_until = ?2
                 WHERE purpose = 'signing' AND retired_at IS NULL",
                &[&now.to_rfc3339(), &verify_until.to_rfc3339()],
            )?;
            let kid = new_kid(now, kid_entropy);
            insert_key(db, self.master.as_ref(), "signing", &kid, secret, now)?;
            Ok(SigningKey {
                kid,
                secret: secret.to_string(),
            })
        })
    }

    /// Every signing key that still verifies at `now`: the current one and retired ones whose
    /// tokens may not have expired.
    pub fn verification_keys(&self, now: Timestamp) -> Result<Vec<SigningKey>> {
        let rows = self.read(|db| {
            db.rows(
                "SELECT kid, secret, verify_until FROM server_keys WHERE purpose = 'signing'
                 ORDER BY created_at DESC",
                &[],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<String>(1)?,
                        r.get::<Option<String>>(2)?,
                    ))
                },
            )
        })?;
        let mut keys = Vec::new();
        for (kid, secret, until) in rows {
            let live = match until {
                None => true,
                Some(until) => now < ts(until)?,
            };
            if live {
                let secret = seal::open(self.master.as_ref(), "signing", &kid, &secret)?;
                keys.push(SigningKey { kid, secret });
            }
        }
        Ok(keys)
    }
}

pub(super) fn new_kid(now: Timestamp, entropy: &str) -> String {
    let date = now.to_rfc3339();
    let day = date.get(..10).unwrap_or("key");
    let tag: String = entropy
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    format!("{day}-{tag}")
}

/// Stores a new key, sealed under `master` when there is one.
pub(super) fn insert_key(
    db: &Db<'_>,
    master: Option<&MasterKey>,
    purpose: &str,
    kid: &str,
    secret: &str,
    now: Timestamp,
) -> Result<()> {
    let stored = match master {
        Some(master) => seal::seal(master, purpose, kid, secret)?,
        None => secret.to_string(),
    };
    db.exec(
        "INSERT INTO server_keys (kid, purpose, secret, created_at) VALUES (?1, ?2, ?3, ?4)",
        &[&kid, &purpose, &stored, &now.to_rfc3339()],
    )?;
    Ok(())
}

pub(super) fn current_signing_key(
    db: &Db<'_>,
    master: Option<&MasterKey>,
) -> Result<Option<SigningKey>> {
    let row = db.opt(
        "SELECT kid, secret FROM server_keys WHERE purpose = 'signing' AND retired_at IS NULL
         ORDER BY created_at DESC LIMIT 1",
        &[],
        |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
    )?;
    match row {
        Some((kid, stored)) => {
            let secret = seal::open(master, "signing", &kid, &stored)?;
            Ok(Some(SigningKey { kid, secret }))
        }
        None => Ok(None),
    }
}

pub(super) fn client_secret_key(db: &Db<'_>, master: Option<&MasterKey>) -> Result<Option<String>> {
    let row = db.opt(
        "SELECT kid, secret FROM server_keys WHERE purpose = 'client_secret' AND retired_at IS NULL
         ORDER BY created_at DESC LIMIT 1",
        &[],
        |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
    )?;
    match row {
        Some((kid, stored)) => Ok(Some(seal::open(master, "client_secret", &kid, &stored)?)),
        None => Ok(None),
    }
}

/// What [`Store::rewrap_keys`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewrapped {
    /// Keys sealed under the old master key, now under the new one.
    pub resealed: usize,
    /// Keys that were stored in clear, now sealed.
    pub sealed_from_clear: usize,
    /// Keys already under the new master key (they were opened to check).
    pub unchanged: usize,
}

impl Rewrapped {
    /// Whether anything was written.
    pub fn changed(&self) -> bool {
        self.resealed + self.sealed_from_clear > 0
    }
}

impl Store {
    /// This store with `master` as its master key: every sealed key must open under it (else
    /// the error is [`SealError::WrongMasterKey`](super::SealError)), and keys stored in clear
    /// are sealed now, in one transaction. Keys created from now on are sealed.
    pub fn with_master_key(self, master: MasterKey) -> Result<(Store, Rewrapped)> {
        let done = self.rewrap_keys(Some(&master), &master)?;
        Ok((
            Store {
                master: Some(master),
                ..self
            },
            done,
        ))
    }

    /// The master key this store seals keys under, if any.
    pub fn master_key(&self) -> Option<&MasterKey> {
        self.master.as_ref()
    }

    /// Moves every server key to master key `new`, in one transaction: keys sealed under `old`
    /// are opened and sealed again, keys in clear are sealed, keys already under `new` are
    /// only checked. A key sealed under neither, or one that does not open, fails the whole.
    /// On SQLite the write-ahead log is then truncated, so that no earlier form of a key stays
    /// in it (PostgreSQL keeps earlier row versions until it vacuums the table).
    pub fn rewrap_keys(&self, old: Option<&MasterKey>, new: &MasterKey) -> Result<Rewrapped> {
        let done = self.transact(|db| {
            let rows = db.rows(
                "SELECT kid, purpose, secret FROM server_keys ORDER BY kid",
                &[],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<String>(1)?,
                        r.get::<String>(2)?,
                    ))
                },
            )?;
            let mut done = Rewrapped::default();
            for (kid, purpose, stored) in rows {
                if seal::sealed_under(&stored) == Some(new.id()) {
                    seal::open(Some(new), &purpose, &kid, &stored)?;
                    done.unchanged += 1;
                    continue;
                }
                let secret = Zeroizing::new(seal::open(old, &purpose, &kid, &stored)?);
                if seal::is_sealed(&stored) {
                    done.resealed += 1;
                } else {
                    done.sealed_from_clear += 1;
                }
                let sealed = seal::seal(new, &purpose, &kid, &secret)?;
                db.exec(
                    "UPDATE server_keys SET secret = ?1 WHERE kid = ?2",
                    &[&sealed, &kid],
                )?;
            }
            Ok(if done.changed() {
                End::Commit(done)
            } else {
                End::Rollback(done)
            })
        })?;
        if done.changed() {
            self.truncate_log()?;
        }
        Ok(done)
    }

    /// On a SQLite file: checkpoints the write-ahead log and truncates it to nothing.
    fn truncate_log(&self) -> Result<()> {
        if let Backend::Lite {
            writer, readers, ..
        } = &*self.backend
        {
            if !readers.is_empty() {
                lock(writer)
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .context("checkpointing the write-ahead log")?;
            }
        }
        Ok(())
    }
}
