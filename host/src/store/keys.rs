//! The server keys: access-token signing keys (each published before it signs, and kept while its tokens live) and the client-secret key, sealed under the master key when the store has one (`seal.rs`).

use super::db::Row;
use super::seal::{self, MasterKey};
use super::*;
use granted_policy::token::jwt::SigningAlg;
use zeroize::Zeroizing;

/// A signing key for access tokens.
#[derive(Clone)]
pub struct SigningKey {
    /// Its id, in the JWT header.
    pub kid: String,
    /// Its algorithm (keys made before there was a choice are HS256).
    pub alg: SigningAlg,
    /// Its stored form, opened: standard base64 of PKCS#8 DER (of the HMAC key for HS256).
    pub secret: String,
    /// When it starts signing: it is published (in the JWKS) from its creation, and signs only
    /// once caches of the JWKS have had time to see it.
    pub sign_from: Timestamp,
    /// When it stops verifying (the last token it may have signed has expired); none while
    /// nothing has replaced it.
    pub verify_until: Option<Timestamp>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("sign_from", &self.sign_from)
            .field("verify_until", &self.verify_until)
            .finish_non_exhaustive()
    }
}

/// The stored form of a new signing key for `alg` (HS256 takes `entropy`'s 32 bytes).
fn new_signing_secret(
    alg: SigningAlg,
    entropy: &mut impl FnMut() -> Result<String>,
) -> Result<Zeroizing<String>> {
    match alg {
        SigningAlg::HS256 => Ok(Zeroizing::new(entropy()?)),
        _ => crate::signing::generate(alg),
    }
}

const SIGNING_COLUMNS: &str =
    "SELECT kid, secret, alg, COALESCE(sign_from, created_at), verify_until
     FROM server_keys WHERE purpose = 'signing'";

type SigningRow = (String, String, Option<String>, String, Option<String>);

fn signing_row(r: &Row<'_>) -> Result<SigningRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn open_signing(master: Option<&MasterKey>, row: SigningRow) -> Result<SigningKey> {
    let (kid, stored, alg, sign_from, verify_until) = row;
    let alg = match alg.as_deref() {
        None => SigningAlg::HS256,
        Some(name) => SigningAlg::from_name(name)
            .ok_or_else(|| anyhow!("signing key `{kid}` has an unknown algorithm `{name}`"))?,
    };
    let secret = seal::open(master, "signing", &kid, &stored)?;
    Ok(SigningKey {
        alg,
        secret,
        sign_from: ts(sign_from)?,
        verify_until: verify_until.map(ts).transpose()?,
        kid,
    })
}

impl Store {
    /// The signing key current at `now`, and the client-secret key; made on first use (the
    /// signing key for `alg`, signing at once: nothing can have cached a JWKS yet), in one
    /// transaction.
    pub fn ensure_keys(
        &self,
        now: Timestamp,
        alg: SigningAlg,
        mut entropy: impl FnMut() -> Result<String>,
    ) -> Result<(SigningKey, String)> {
        let master = self.master.as_ref();
        self.write_tx(|db| {
            if current_signing_key(db, master, now)?.is_none() {
                let kid = new_kid(now, &entropy()?);
                let secret = new_signing_secret(alg, &mut entropy)?;
                insert_key(db, master, "signing", &kid, &secret, now)?;
                set_signing(db, &kid, alg, now)?;
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
                current_signing_key(db, master, now)?.ok_or_else(|| anyhow!("no signing key"))?;
            let client =
                client_secret_key(db, master)?.ok_or_else(|| anyhow!("no client-secret key"))?;
            Ok((signing, client))
        })
    }

    /// The signing key current at `now` and the client-secret key, if made.
    pub fn current_keys(&self, now: Timestamp) -> Result<Option<(SigningKey, String)>> {
        let master = self.master.as_ref();
        self.snapshot(|db| {
            Ok(current_signing_key(db, master, now)?.zip(client_secret_key(db, master)?))
        })
    }

    /// The client-secret key, if made.
    pub fn client_secret_key(&self) -> Result<Option<String>> {
        let master = self.master.as_ref();
        self.snapshot(|db| client_secret_key(db, master))
    }

    /// Adds a new signing key for `alg`, published from `now` and signing from `sign_from`;
    /// every key not yet replaced signs until then and verifies until `verify_until` (when the
    /// last token it may sign expires).
    pub fn rotate_signing_key(
        &self,
        now: Timestamp,
        sign_from: Timestamp,
        verify_until: Timestamp,
        alg: SigningAlg,
        secret: &str,
        kid_entropy: &str,
    ) -> Result<SigningKey> {
        self.write_tx(|db| {
            db.exec(
                "UPDATE server_keys SET retired_at = ?1, verify_until = ?2
                 WHERE purpose = 'signing' AND verify_until IS NULL",
                &[&sign_from.to_rfc3339(), &verify_until.to_rfc3339()],
            )?;
            let kid = new_kid(now, kid_entropy);
            insert_key(db, self.master.as_ref(), "signing", &kid, secret, now)?;
            set_signing(db, &kid, alg, sign_from)?;
            Ok(SigningKey {
                kid,
                alg,
                secret: secret.to_string(),
                sign_from,
                verify_until: None,
            })
        })
    }

    /// Every signing key published at `now`: the one signing, one waiting to sign, and
    /// replaced ones whose tokens may not have expired; newest first.
    pub fn verification_keys(&self, now: Timestamp) -> Result<Vec<SigningKey>> {
        let master = self.master.as_ref();
        let rows = self.read(|db| {
            db.rows(
                &format!("{SIGNING_COLUMNS} ORDER BY created_at DESC, kid"),
                &[],
                signing_row,
            )
        })?;
        let mut keys = Vec::new();
        for row in rows {
            let live = match &row.4 {
                None => true,
                Some(until) => now < ts(until.clone())?,
            };
            if live {
                keys.push(open_signing(master, row)?);
            }
        }
        Ok(keys)
    }
}

/// Records a signing key's algorithm and the instant it starts signing.
fn set_signing(db: &Db<'_>, kid: &str, alg: SigningAlg, sign_from: Timestamp) -> Result<()> {
    db.exec(
        "UPDATE server_keys SET alg = ?1, sign_from = ?2 WHERE kid = ?3",
        &[&alg.name(), &sign_from.to_rfc3339(), &kid],
    )?;
    Ok(())
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

/// The key that signs at `now`: of those whose time to sign has come, the last to start (of two
/// starting at once, the one not replaced). A clock earlier than every key (a test's fixed
/// instant, a clock set back) signs with the first key rather than with none.
pub(super) fn current_signing_key(
    db: &Db<'_>,
    master: Option<&MasterKey>,
    now: Timestamp,
) -> Result<Option<SigningKey>> {
    let row = db.opt(
        &format!(
            "{SIGNING_COLUMNS} AND COALESCE(sign_from, created_at) <= ?1
             ORDER BY COALESCE(sign_from, created_at) DESC,
                 CASE WHEN verify_until IS NULL THEN 1 ELSE 0 END DESC, created_at DESC LIMIT 1"
        ),
        &[&now.to_rfc3339()],
        signing_row,
    )?;
    let row = match row {
        Some(row) => Some(row),
        None => db.opt(
            &format!(
                "{SIGNING_COLUMNS} ORDER BY COALESCE(sign_from, created_at), created_at LIMIT 1"
            ),
            &[],
            signing_row,
        )?,
    };
    row.map(|row| open_signing(master, row)).transpose()
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
            super::providers::rewrap_secrets(db, old, new, &mut done)?;
            Ok(if done.changed() {
                End::Commit(done)
            } else {
                End::Rollback(done)
            })
        })?;
        if done.changed() {
            self.checkpoint()?;
        }
        Ok(done)
    }

    /// On a SQLite file: moves every write in the write-ahead log into the database file and
    /// truncates the log, so that the file alone holds them (a copy of it, a backup, a key
    /// rotated out). `false` when a reader elsewhere (a running server) kept part of the log from
    /// moving: it stays durable in the log, and moves at a later checkpoint. Nothing to do on
    /// PostgreSQL or in memory.
    pub fn checkpoint(&self) -> Result<bool> {
        if let Backend::Lite {
            writer, readers, ..
        } = &*self.backend
        {
            if !readers.is_empty() {
                let busy: i64 = lock(writer)
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                    .context("checkpointing the write-ahead log")?;
                return Ok(busy == 0);
            }
        }
        Ok(true)
    }
}
