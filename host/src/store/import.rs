//! Writes of `granted import` (and of tests): apps, clients, tenants, users, refresh tokens,
//! authorization codes and consents, in one transaction.

use super::*;

/// Writes inside one transaction of [`Store::write`].
pub struct Writer<'a> {
    db: &'a Db<'a>,
    master: Option<&'a MasterKey>,
}

impl Writer<'_> {
    /// Creates or replaces an app and its whole revision history.
    pub fn put_app(&self, app: &App) -> Result<()> {
        self.db.exec(
            "INSERT INTO apps (app_id, created_at) VALUES (?1, ?2)
             ON CONFLICT (app_id) DO UPDATE SET created_at = excluded.created_at",
            &[&app.app_id, &app.created_at.to_rfc3339()],
        )?;
        self.db
            .exec("DELETE FROM revisions WHERE app_id = ?1", &[&app.app_id])?;
        for r in &app.revisions {
            insert_revision(self.db, &app.app_id, r)?;
        }
        Ok(())
    }

    /// Creates or replaces a client of an app.
    pub fn put_client(&self, client_id: &str, app_id: &str, secret_hmac: &str) -> Result<()> {
        self.db.exec(
            "INSERT INTO clients (client_id, app_id, secret_hmac) VALUES (?1, ?2, ?3)
             ON CONFLICT (client_id) DO UPDATE SET app_id = excluded.app_id, secret_hmac = excluded.secret_hmac",
            &[&client_id, &app_id, &secret_hmac],
        )?;
        Ok(())
    }

    /// Creates or replaces a tenant and its installs.
    pub fn put_tenant(&self, tenant: &TenantRecord) -> Result<()> {
        self.db.exec(
            "INSERT INTO tenants (tenant, sso_required, password_max_age_days) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant) DO UPDATE SET sso_required = excluded.sso_required,
                 password_max_age_days = excluded.password_max_age_days",
            &[
                &tenant.tenant,
                &tenant.sso_required,
                &tenant.password_max_age_days,
            ],
        )?;
        self.db
            .exec("DELETE FROM installs WHERE tenant = ?1", &[&tenant.tenant])?;
        for install in &tenant.installs {
            self.db.exec(
                "INSERT INTO installs (tenant, app_id, rev) VALUES (?1, ?2, ?3)",
                &[&tenant.tenant, &install.app_id, &install.rev],
            )?;
        }
        Ok(())
    }

    /// Sets `tenant`'s identity provider with its client secret (sealed under the master key);
    /// `None` removes it.
    pub fn put_identity_provider(
        &self,
        tenant: &str,
        provider: Option<(&IdentityProvider, ProviderSecret<'_>)>,
    ) -> Result<()> {
        match provider {
            Some((provider, secret)) => {
                super::providers::put_provider(self.db, self.master, tenant, provider, secret)
            }
            None => super::providers::delete_provider(self.db, tenant).map(drop),
        }
    }

    /// The stored password hash of a user, if any (to keep it when an import repeats).
    pub fn password_hash(&self, tenant: &str, username: &str) -> Result<Option<String>> {
        Ok(self
            .db
            .opt(
                "SELECT password_hash FROM users WHERE tenant = ?1 AND username = ?2",
                &[&tenant, &username],
                |r| r.get::<Option<String>>(0),
            )?
            .flatten())
    }

    /// Creates or replaces a user (and its lock, when the record carries one).
    pub fn put_user(&self, tenant: &str, user: &UserRecord) -> Result<()> {
        upsert_user(self.db, tenant, user)?;
        if let Some(until) = user.locked_until {
            self.db.exec(
                "INSERT INTO login_failures (tenant, username, failures, locks, locked_until)
                 VALUES (?1, ?2, 0, 1, ?3)
                 ON CONFLICT (tenant, username) DO UPDATE SET locked_until = excluded.locked_until",
                &[&tenant, &user.username, &until.to_rfc3339()],
            )?;
        }
        Ok(())
    }

    /// Creates or replaces a refresh token record.
    pub fn put_refresh(&self, record: &RefreshTokenRecord) -> Result<()> {
        self.db.exec(
            "DELETE FROM refresh_tokens WHERE token_sha256 = ?1",
            &[&record.token_sha256],
        )?;
        insert_refresh(self.db, record)
    }

    /// Creates or replaces an authorization code record.
    pub fn put_code(&self, record: &CodeRecord) -> Result<()> {
        self.db.exec(
            "DELETE FROM codes WHERE code_sha256 = ?1",
            &[&record.code_sha256],
        )?;
        tokens::insert_code(self.db, record)
    }

    /// Creates or replaces a user's consent to an app.
    pub fn put_consent(&self, record: &ConsentRecord) -> Result<()> {
        self.db.exec(
            "INSERT INTO consents (tenant, username, app_id, scopes) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, username, app_id) DO UPDATE SET scopes = excluded.scopes",
            &[
                &record.tenant,
                &record.username,
                &record.app_id,
                &serde_json::to_string(&record.scopes)?,
            ],
        )?;
        Ok(())
    }
}

impl Store {
    /// Runs `f` in one transaction: all of it is written, or nothing.
    pub fn write<T>(&self, f: impl FnOnce(&Writer<'_>) -> Result<T>) -> Result<T> {
        let master = self.master.as_ref();
        self.write_tx(|db| f(&Writer { db, master }))
    }
}

/// Inserts one revision of an app.
pub(super) fn insert_revision(db: &Db<'_>, app_id: &str, r: &Revision) -> Result<()> {
    db.exec(
        "INSERT INTO revisions (app_id, rev, at, client_id, grant_type, scopes, redirect_uris, client_type)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &[
            &app_id,
            &r.rev,
            &r.at.to_rfc3339(),
            &r.client_id,
            &r.grant_type.as_str(),
            &serde_json::to_string(&r.scopes)?,
            &serde_json::to_string(&r.redirect_uris)?,
            &r.client_type.as_str(),
        ],
    )?;
    Ok(())
}

/// Creates or replaces a user's row (not its lock).
pub(super) fn upsert_user(db: &Db<'_>, tenant: &str, user: &UserRecord) -> Result<()> {
    let sign_in = match user.sign_in {
        SignIn::Direct => "direct",
        SignIn::Sso => "sso",
    };
    db.exec(
        "INSERT INTO users (tenant, username, sign_in, password_hash, password_changed_at, disabled, sub,
                            federated_iss, federated_sub)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (tenant, username) DO UPDATE SET sign_in = excluded.sign_in,
             password_hash = excluded.password_hash,
             password_changed_at = excluded.password_changed_at,
             disabled = excluded.disabled,
             sub = COALESCE(users.sub, excluded.sub),
             federated_iss = COALESCE(users.federated_iss, excluded.federated_iss),
             federated_sub = COALESCE(users.federated_sub, excluded.federated_sub)",
        &[
            &tenant,
            &user.username,
            &sign_in,
            &user.password_hash,
            &user.password_changed_at.map(|t| t.to_rfc3339()),
            &user.disabled,
            &user.sub,
            &user.federated_subject.as_ref().map(|f| f.iss.as_str()),
            &user.federated_subject.as_ref().map(|f| f.sub.as_str()),
        ],
    )?;
    Ok(())
}
