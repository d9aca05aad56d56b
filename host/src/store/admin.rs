//! What the admin API reads and writes: admin tokens, and changes to apps, tenants, installs and
//! users, each made in one transaction together with its audit entry (actor, before, after).

use super::db::Db;
use super::{app, tenant_record, user_record, End, MasterKey, ProviderSecret, Store};
use anyhow::{anyhow, Result};
use granted_policy::model::{
    App, ConsentRecord, IdentityProvider, Revision, TenantRecord, Timestamp, UserRecord,
};
use serde_json::{json, Value};

/// Who makes an admin change, from where, and when: the part of its audit entry the change
/// itself does not know.
#[derive(Clone, Debug)]
pub struct AdminAudit {
    /// The admin token's id.
    pub actor: String,
    /// The request's source address.
    pub source: String,
    /// The policy module that judged it.
    pub policy_sha256: String,
    /// When.
    pub now: Timestamp,
}

/// What an admin change did, for its audit entry. Never holds a secret or a hash of one.
#[derive(Clone, Debug)]
pub struct ChangeRecord {
    /// `create_app`, `append_revision`, `rotate_client_secret`, `create_tenant`, `install`,
    /// `create_user`, `set_password`, `disable_user`, `enable_user`, `unlock_user`,
    /// `withdraw_consent`, `rotate_admin_token`.
    pub action: &'static str,
    /// What was changed (ids).
    pub target: Value,
    /// The state before (null when created).
    pub before: Value,
    /// The state after.
    pub after: Value,
}

/// The outcome of an admin change's closure: refused (nothing is written), or made (written
/// with its audit entry).
pub enum Change<T> {
    /// Nothing changes; the transaction is rolled back.
    Refused(T),
    /// Commit, with this audit record.
    Made(T, ChangeRecord),
}

/// What an edit of an app is judged against, read in the edit's own transaction.
#[derive(Clone, Debug)]
pub struct EditContext {
    /// The app.
    pub app: App,
    /// The tenants that install it.
    pub tenants: Vec<TenantRecord>,
    /// Every `client_id` that other apps use or used.
    pub client_ids_in_use: Vec<String>,
}

/// Reads and writes inside one admin change's transaction.
pub struct AdminTx<'a> {
    db: &'a Db<'a>,
    master: Option<&'a MasterKey>,
}

impl Store {
    /// The number of admin tokens in use.
    pub fn admin_tokens_in_use(&self) -> Result<i64> {
        self.read(|db| {
            db.value(
                "SELECT COUNT(*) FROM admin_tokens WHERE retired_at IS NULL",
                &[],
            )
        })
    }

    /// Stores the first admin token (its SHA-256) unless one is in use; its id when stored.
    pub fn first_admin_token(&self, sha256: &str, now: Timestamp) -> Result<Option<String>> {
        self.transact(|db| {
            let in_use: i64 = db.value(
                "SELECT COUNT(*) FROM admin_tokens WHERE retired_at IS NULL",
                &[],
            )?;
            if in_use > 0 {
                return Ok(End::Rollback(None));
            }
            Ok(End::Commit(Some(insert_admin_token(db, sha256, now)?)))
        })
    }

    /// Retires every admin token in use and stores a new one (its SHA-256); the new id. The
    /// rotation is an audited admin change.
    pub fn rotate_admin_token(&self, sha256: &str, audit: &AdminAudit) -> Result<String> {
        self.admin_change(audit, |a| {
            let retired = a.db.exec(
                "UPDATE admin_tokens SET retired_at = ?1 WHERE retired_at IS NULL",
                &[&audit.now.to_rfc3339()],
            )?;
            let id = insert_admin_token(a.db, sha256, audit.now)?;
            Ok(Change::Made(
                id.clone(),
                ChangeRecord {
                    action: "rotate_admin_token",
                    target: json!({ "admin_token": id }),
                    before: json!({ "tokens_in_use": retired }),
                    after: json!({ "tokens_in_use": 1 }),
                },
            ))
        })
    }

    /// The id of the admin token in use whose SHA-256 is `sha256`.
    pub fn admin_token_id(&self, sha256: &str) -> Result<Option<String>> {
        self.read(|db| {
            db.opt(
                "SELECT id FROM admin_tokens WHERE sha256 = ?1 AND retired_at IS NULL",
                &[&sha256],
                |r| r.get(0),
            )
        })
    }

    /// One app with its clients' ids.
    pub fn app_and_clients(&self, app_id: &str) -> Result<Option<(App, Vec<String>)>> {
        self.snapshot(|db| {
            let Some(app) = app(db, app_id)? else {
                return Ok(None);
            };
            let clients = client_ids_of(db, app_id)?;
            Ok(Some((app, clients)))
        })
    }

    /// Every tenant with its installs, by name.
    pub fn tenant_records(&self) -> Result<Vec<TenantRecord>> {
        self.snapshot(|db| {
            let ids: Vec<String> =
                db.rows("SELECT tenant FROM tenants ORDER BY tenant", &[], |r| {
                    r.get(0)
                })?;
            ids.iter()
                .map(|id| tenant_record(db, id)?.ok_or_else(|| anyhow!("tenant vanished")))
                .collect()
        })
    }

    /// The users of a tenant, by name (with their locks).
    pub fn users_of(&self, tenant: &str) -> Result<Vec<UserRecord>> {
        self.snapshot(|db| {
            let names: Vec<String> = db.rows(
                "SELECT username FROM users WHERE tenant = ?1 ORDER BY username",
                &[&tenant],
                |r| r.get(0),
            )?;
            let mut users = Vec::with_capacity(names.len());
            for name in names {
                if let Some(user) = user_record(db, tenant, &name)? {
                    users.push(user);
                }
            }
            Ok(users)
        })
    }

    /// Runs one admin change in one transaction: `f` reads and writes through [`AdminTx`]; when
    /// it answers [`Change::Made`], the audit entry (actor, action, target, before, after,
    /// source, policy) is appended to the chain and everything commits together. When it
    /// answers [`Change::Refused`] or fails, nothing is written.
    pub fn admin_change<T>(
        &self,
        audit: &AdminAudit,
        f: impl FnOnce(&AdminTx<'_>) -> Result<Change<T>>,
    ) -> Result<T> {
        Self::with_chain(&self.chains.admin, |head| {
            let mut head = head.clone();
            let master = self.master.as_ref();
            let out = self.transact(|db| match f(&AdminTx { db, master })? {
                Change::Refused(out) => Ok(End::Rollback(out)),
                Change::Made(out, record) => {
                    let entry = json!({
                        "at": audit.now,
                        "kind": "admin",
                        "actor": audit.actor,
                        "action": record.action,
                        "target": record.target,
                        "before": record.before,
                        "after": record.after,
                        "source": audit.source,
                        "policy_sha256": audit.policy_sha256,
                    })
                    .to_string();
                    super::audit::insert_entries(db, &[head.append(audit.now, "admin", &entry)])?;
                    Ok(End::Commit(out))
                }
            })?;
            Ok((out, head))
        })
    }
}

fn insert_admin_token(db: &Db<'_>, sha256: &str, now: Timestamp) -> Result<String> {
    let n: i64 = db.value("SELECT COUNT(*) FROM admin_tokens", &[])?;
    let id = format!("admin-{}", n + 1);
    db.exec(
        "INSERT INTO admin_tokens (id, sha256, created_at) VALUES (?1, ?2, ?3)",
        &[&id, &sha256, &now.to_rfc3339()],
    )?;
    Ok(id)
}

fn client_ids_of(db: &Db<'_>, app_id: &str) -> Result<Vec<String>> {
    db.rows(
        "SELECT client_id FROM clients WHERE app_id = ?1 ORDER BY client_id",
        &[&app_id],
        |r| r.get(0),
    )
}

impl AdminTx<'_> {
    /// An app.
    pub fn app(&self, app_id: &str) -> Result<Option<App>> {
        app(self.db, app_id)
    }

    /// Every app, by id.
    pub fn apps(&self) -> Result<Vec<App>> {
        let ids: Vec<String> =
            self.db
                .rows("SELECT app_id FROM apps ORDER BY app_id", &[], |r| r.get(0))?;
        ids.iter()
            .map(|id| app(self.db, id)?.ok_or_else(|| anyhow!("app vanished")))
            .collect()
    }

    /// The app's clients' ids.
    pub fn client_ids_of(&self, app_id: &str) -> Result<Vec<String>> {
        client_ids_of(self.db, app_id)
    }

    /// What an edit of `app_id` is judged against; `None` when there is no such app.
    pub fn edit_context(&self, app_id: &str) -> Result<Option<EditContext>> {
        let Some(app) = app(self.db, app_id)? else {
            return Ok(None);
        };
        let names: Vec<String> = self.db.rows(
            "SELECT tenant FROM installs WHERE app_id = ?1 ORDER BY tenant",
            &[&app_id],
            |r| r.get(0),
        )?;
        let mut tenants = Vec::with_capacity(names.len());
        for name in names {
            tenants.push(tenant_record(self.db, &name)?.ok_or_else(|| anyhow!("tenant vanished"))?);
        }
        Ok(Some(EditContext {
            app,
            tenants,
            client_ids_in_use: self.client_ids_in_use(Some(app_id))?,
        }))
    }

    /// Every `client_id` that an app other than `except` uses now or used in a revision.
    pub fn client_ids_in_use(&self, except: Option<&str>) -> Result<Vec<String>> {
        let except = except.unwrap_or("");
        self.db.rows(
            "SELECT client_id FROM revisions WHERE app_id <> ?1
             UNION SELECT client_id FROM clients WHERE app_id <> ?1
             ORDER BY 1",
            &[&except],
            |r| r.get(0),
        )
    }

    /// A tenant with its installs.
    pub fn tenant(&self, tenant: &str) -> Result<Option<TenantRecord>> {
        tenant_record(self.db, tenant)
    }

    /// A tenant's identity provider (without its secret) and its version.
    pub fn identity_provider(&self, tenant: &str) -> Result<Option<(IdentityProvider, u32)>> {
        let provider = super::providers::provider(self.db, tenant)?;
        let version = super::providers::provider_version(self.db, tenant)?;
        Ok(provider.zip(version))
    }

    /// Sets a tenant's identity provider with its secret (sealed under the master key); its
    /// version after.
    pub fn put_identity_provider(
        &self,
        tenant: &str,
        provider: &IdentityProvider,
        secret: ProviderSecret<'_>,
    ) -> Result<u32> {
        super::providers::put_provider(self.db, self.master, tenant, provider, secret)?;
        super::providers::provider_version(self.db, tenant)?
            .ok_or_else(|| anyhow!("the identity provider of `{tenant}` vanished"))
    }

    /// Removes a tenant's identity provider; whether it had one.
    pub fn delete_identity_provider(&self, tenant: &str) -> Result<bool> {
        super::providers::delete_provider(self.db, tenant)
    }

    /// A user.
    pub fn user(&self, tenant: &str, username: &str) -> Result<Option<UserRecord>> {
        user_record(self.db, tenant, username)
    }

    /// Creates an app with its revisions (its id must be new).
    pub fn insert_app(&self, app: &App) -> Result<()> {
        self.db.exec(
            "INSERT INTO apps (app_id, created_at) VALUES (?1, ?2)",
            &[&app.app_id, &app.created_at.to_rfc3339()],
        )?;
        for r in &app.revisions {
            self.append_revision(&app.app_id, r)?;
        }
        Ok(())
    }

    /// Appends a revision (its number must be new).
    pub fn append_revision(&self, app_id: &str, r: &Revision) -> Result<()> {
        super::insert_revision(self.db, app_id, r)
    }

    /// Creates a client of an app, or gives an existing one of that app a new secret.
    pub fn put_client(&self, client_id: &str, app_id: &str, secret_hmac: &str) -> Result<()> {
        let owner: Option<String> = self.db.opt(
            "SELECT app_id FROM clients WHERE client_id = ?1",
            &[&client_id],
            |r| r.get(0),
        )?;
        if owner.as_deref().is_some_and(|owner| owner != app_id) {
            return Err(anyhow!("client `{client_id}` belongs to another app"));
        }
        self.db.exec(
            "INSERT INTO clients (client_id, app_id, secret_hmac) VALUES (?1, ?2, ?3)
             ON CONFLICT (client_id) DO UPDATE SET secret_hmac = excluded.secret_hmac",
            &[&client_id, &app_id, &secret_hmac],
        )?;
        Ok(())
    }

    /// Creates a tenant without installs (its name must be new).
    pub fn insert_tenant(&self, tenant: &TenantRecord) -> Result<()> {
        self.db.exec(
            "INSERT INTO tenants (tenant, sso_required, password_max_age_days) VALUES (?1, ?2, ?3)",
            &[
                &tenant.tenant,
                &tenant.sso_required,
                &tenant.password_max_age_days,
            ],
        )?;
        Ok(())
    }

    /// Pins `tenant`'s install of `app_id` to `rev`, installing it when it was not.
    pub fn set_install(&self, tenant: &str, app_id: &str, rev: u32) -> Result<()> {
        self.db.exec(
            "INSERT INTO installs (tenant, app_id, rev) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant, app_id) DO UPDATE SET rev = excluded.rev",
            &[&tenant, &app_id, &rev],
        )?;
        Ok(())
    }

    /// Creates a user (the caller has checked that the name is new in the tenant).
    pub fn insert_user(&self, tenant: &str, user: &UserRecord) -> Result<()> {
        super::upsert_user(self.db, tenant, user)
    }

    /// Sets a user's password hash and when it changed.
    pub fn set_password(
        &self,
        tenant: &str,
        username: &str,
        password_hash: &str,
        at: Timestamp,
    ) -> Result<()> {
        self.db.exec(
            "UPDATE users SET password_hash = ?3, password_changed_at = ?4
             WHERE tenant = ?1 AND username = ?2",
            &[&tenant, &username, &password_hash, &at.to_rfc3339()],
        )?;
        Ok(())
    }

    /// Disables or enables a user.
    pub fn set_disabled(&self, tenant: &str, username: &str, disabled: bool) -> Result<()> {
        self.db.exec(
            "UPDATE users SET disabled = ?3 WHERE tenant = ?1 AND username = ?2",
            &[&tenant, &username, &disabled],
        )?;
        Ok(())
    }

    /// Clears a user's failed logins and lock.
    pub fn unlock(&self, tenant: &str, username: &str) -> Result<()> {
        self.db.exec(
            "DELETE FROM login_failures WHERE tenant = ?1 AND username = ?2",
            &[&tenant, &username],
        )?;
        Ok(())
    }

    /// The consents a user gave (C11), by app.
    pub fn consents(&self, tenant: &str, username: &str) -> Result<Vec<ConsentRecord>> {
        let rows: Vec<(String, String)> = self.db.rows(
            "SELECT app_id, scopes FROM consents WHERE tenant = ?1 AND username = ?2 ORDER BY app_id",
            &[&tenant, &username],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        rows.into_iter()
            .map(|(app_id, scopes)| {
                Ok(ConsentRecord {
                    tenant: tenant.to_string(),
                    username: username.to_string(),
                    app_id,
                    scopes: serde_json::from_str(&scopes)
                        .map_err(|e| anyhow!("bad consent scopes in the database: {e}"))?,
                })
            })
            .collect()
    }

    /// Withdraws a user's consent to an app: the next sign-in asks again. Whether there was one.
    pub fn withdraw_consent(&self, tenant: &str, username: &str, app_id: &str) -> Result<bool> {
        let removed = self.db.exec(
            "DELETE FROM consents WHERE tenant = ?1 AND username = ?2 AND app_id = ?3",
            &[&tenant, &username, &app_id],
        )?;
        Ok(removed > 0)
    }

    /// The failed logins counted against a user (0 when none).
    pub fn login_failures(&self, tenant: &str, username: &str) -> Result<i64> {
        Ok(self
            .db
            .opt(
                "SELECT failures FROM login_failures WHERE tenant = ?1 AND username = ?2",
                &[&tenant, &username],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }
}
