//! The server keys: access-token signing keys (rotated, the old ones kept while their tokens live) and the client-secret key.

use super::*;

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
        self.write_tx(|db| {
            if current_signing_key(db)?.is_none() {
                insert_key(db, "signing", &new_kid(now, &entropy()?), &entropy()?, now)?;
            }
            if client_secret_key(db)?.is_none() {
                insert_key(db, "client_secret", "client-secret-1", &entropy()?, now)?;
            }
            let signing = current_signing_key(db)?.ok_or_else(|| anyhow!("no signing key"))?;
            let client = client_secret_key(db)?.ok_or_else(|| anyhow!("no client-secret key"))?;
            Ok((signing, client))
        })
    }

    /// The current signing key and the client-secret key, if made.
    pub fn current_keys(&self) -> Result<Option<(SigningKey, String)>> {
        self.snapshot(|db| Ok(current_signing_key(db)?.zip(client_secret_key(db)?)))
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
            insert_key(db, "signing", &kid, secret, now)?;
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

pub(super) fn insert_key(
    db: &Db<'_>,
    purpose: &str,
    kid: &str,
    secret: &str,
    now: Timestamp,
) -> Result<()> {
    db.exec(
        "INSERT INTO server_keys (kid, purpose, secret, created_at) VALUES (?1, ?2, ?3, ?4)",
        &[&kid, &purpose, &secret, &now.to_rfc3339()],
    )?;
    Ok(())
}

pub(super) fn current_signing_key(db: &Db<'_>) -> Result<Option<SigningKey>> {
    db.opt(
        "SELECT kid, secret FROM server_keys WHERE purpose = 'signing' AND retired_at IS NULL
         ORDER BY created_at DESC LIMIT 1",
        &[],
        |r| {
            Ok(SigningKey {
                kid: r.get(0)?,
                secret: r.get(1)?,
            })
        },
    )
}

pub(super) fn client_secret_key(db: &Db<'_>) -> Result<Option<String>> {
    db.opt(
        "SELECT secret FROM server_keys WHERE purpose = 'client_secret' AND retired_at IS NULL
         ORDER BY created_at DESC LIMIT 1",
        &[],
        |r| r.get(0),
    )
}
