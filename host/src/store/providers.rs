//! A tenant's identity provider (RULES.md §6): the registration the policy reads with the
//! tenant, and this server's client secret at the provider, sealed under the master key like the
//! server keys (row purpose `identity_provider`, the tenant as its id) and opened only for the
//! host's own request to the provider. Nothing here returns the secret to a caller that shows it.

use super::seal::{self, MasterKey, Rewrapped};
use super::*;
use granted_policy::model::IdentityProvider;
use zeroize::Zeroizing;

/// The purpose a provider's sealed secret is bound to.
const PURPOSE: &str = "identity_provider";

/// A tenant's provider, without its secret.
pub(super) fn provider(db: &Db<'_>, tenant: &str) -> Result<Option<IdentityProvider>> {
    db.opt(
        "SELECT issuer, client_id, scopes, username_claim, link_existing, provision
         FROM identity_providers WHERE tenant = ?1",
        &[&tenant],
        |r| {
            Ok(IdentityProvider {
                issuer: r.get(0)?,
                client_id: r.get(1)?,
                scopes: r
                    .get::<String>(2)?
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                username_claim: r.get(3)?,
                link_existing: r.get(4)?,
                provision: r.get(5)?,
            })
        },
    )
}

/// The client secret that goes with a provider being stored.
#[derive(Clone, Copy, Debug)]
pub enum ProviderSecret<'a> {
    /// In clear, as an admin or an import file gives it: sealed under the master key (kept in
    /// clear when the store has none, as the server keys are).
    Clear(&'a str),
    /// Sealed, as an export wrote it: it must open under this store's master key.
    Sealed(&'a str),
    /// The one stored now (an error when there is none).
    Keep,
}

/// Stores `provider` for `tenant` with its secret.
pub(super) fn put_provider(
    db: &Db<'_>,
    master: Option<&MasterKey>,
    tenant: &str,
    provider: &IdentityProvider,
    secret: ProviderSecret<'_>,
) -> Result<()> {
    let stored = match secret {
        ProviderSecret::Clear(secret) => match master {
            Some(master) => seal::seal(master, PURPOSE, tenant, secret)?,
            None => secret.to_string(),
        },
        ProviderSecret::Sealed(sealed) => {
            if !seal::is_sealed(sealed) {
                bail!("the client secret of `{tenant}`'s identity provider is not a sealed value");
            }
            seal::open(master, PURPOSE, tenant, sealed).with_context(|| {
                format!("the sealed client secret of `{tenant}`'s identity provider")
            })?;
            sealed.to_string()
        }
        ProviderSecret::Keep => db
            .opt(
                "SELECT client_secret FROM identity_providers WHERE tenant = ?1",
                &[&tenant],
                |r| r.get::<String>(0),
            )?
            .ok_or_else(|| anyhow!("the identity provider of `{tenant}` needs a client secret"))?,
    };
    db.exec(
        "INSERT INTO identity_providers (tenant, issuer, client_id, client_secret, scopes,
                                         username_claim, link_existing, provision, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1)
         ON CONFLICT (tenant) DO UPDATE SET issuer = excluded.issuer,
             client_id = excluded.client_id, client_secret = excluded.client_secret,
             scopes = excluded.scopes, username_claim = excluded.username_claim,
             link_existing = excluded.link_existing, provision = excluded.provision,
             version = identity_providers.version + 1",
        &[
            &tenant,
            &provider.issuer,
            &provider.client_id,
            &stored,
            &provider.scopes.join(" "),
            &provider.username_claim,
            &provider.link_existing,
            &provider.provision,
        ],
    )?;
    Ok(())
}

/// The stored secret of `tenant`'s provider when it is sealed, as export writes it (a secret in
/// clear is never exported).
pub(super) fn sealed_secret(db: &Db<'_>, tenant: &str) -> Result<Option<String>> {
    let stored: Option<String> = db.opt(
        "SELECT client_secret FROM identity_providers WHERE tenant = ?1",
        &[&tenant],
        |r| r.get(0),
    )?;
    Ok(stored.filter(|s| seal::is_sealed(s)))
}

/// The version of `tenant`'s provider (1 when made, one more at each change), if it has one.
pub(super) fn provider_version(db: &Db<'_>, tenant: &str) -> Result<Option<u32>> {
    db.opt(
        "SELECT version FROM identity_providers WHERE tenant = ?1",
        &[&tenant],
        |r| r.get(0),
    )
}

/// Removes `tenant`'s provider; whether it had one.
pub(super) fn delete_provider(db: &Db<'_>, tenant: &str) -> Result<bool> {
    Ok(db.exec(
        "DELETE FROM identity_providers WHERE tenant = ?1",
        &[&tenant],
    )? > 0)
}

/// The client secret of `tenant`'s provider, opened (for the token request to the provider).
pub(super) fn provider_secret(
    db: &Db<'_>,
    master: Option<&MasterKey>,
    tenant: &str,
) -> Result<Option<Zeroizing<String>>> {
    let stored: Option<String> = db.opt(
        "SELECT client_secret FROM identity_providers WHERE tenant = ?1",
        &[&tenant],
        |r| r.get(0),
    )?;
    Ok(match stored {
        Some(stored) => Some(Zeroizing::new(seal::open(
            master, PURPOSE, tenant, &stored,
        )?)),
        None => None,
    })
}

/// Every provider's secret sealed under `new` (`granted keys rewrap`): counted into `done` as
/// the server keys are.
pub(super) fn rewrap_secrets(
    db: &Db<'_>,
    old: Option<&MasterKey>,
    new: &MasterKey,
    done: &mut Rewrapped,
) -> Result<()> {
    let rows: Vec<(String, String)> = db.rows(
        "SELECT tenant, client_secret FROM identity_providers ORDER BY tenant",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for (tenant, stored) in rows {
        if seal::sealed_under(&stored) == Some(new.id()) {
            seal::open(Some(new), PURPOSE, &tenant, &stored)?;
            done.unchanged += 1;
            continue;
        }
        let secret = Zeroizing::new(seal::open(old, PURPOSE, &tenant, &stored)?);
        if seal::is_sealed(&stored) {
            done.resealed += 1;
        } else {
            done.sealed_from_clear += 1;
        }
        let sealed = seal::seal(new, PURPOSE, &tenant, &secret)?;
        db.exec(
            "UPDATE identity_providers SET client_secret = ?1 WHERE tenant = ?2",
            &[&sealed, &tenant],
        )?;
    }
    Ok(())
}

impl Store {
    /// `tenant`'s identity provider, without its secret.
    pub fn identity_provider(&self, tenant: &str) -> Result<Option<IdentityProvider>> {
        self.read(|db| provider(db, tenant))
    }

    /// `tenant`'s identity provider, without its secret, and its version (the admin API's
    /// `ETag`).
    pub fn identity_provider_and_version(
        &self,
        tenant: &str,
    ) -> Result<Option<(IdentityProvider, u32)>> {
        self.read(|db| Ok(provider(db, tenant)?.zip(provider_version(db, tenant)?)))
    }

    /// The sealed client secret of `tenant`'s identity provider, as export writes it (`None`
    /// when there is none, or when it is stored in clear: that is never exported).
    pub fn identity_provider_sealed_secret(&self, tenant: &str) -> Result<Option<String>> {
        self.read(|db| sealed_secret(db, tenant))
    }

    /// The client secret of `tenant`'s identity provider, opened under the master key.
    pub fn identity_provider_secret(&self, tenant: &str) -> Result<Option<Zeroizing<String>>> {
        let master = self.master.as_ref();
        self.read(|db| provider_secret(db, master, tenant))
    }
}
