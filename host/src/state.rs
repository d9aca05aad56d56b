//! `granted import` and `granted export`: the VECTORS.md `state` format in and out of the store.
//!
//! Import reads the whole file, checks it (the JSON path of the first problem is in the error),
//! hashes clear passwords with the configured PBKDF2 (in parallel, with progress on stderr) and
//! writes everything in one transaction: all or nothing. Importing the same file again changes
//! nothing (a stored hash that already verifies the clear password is kept). Export writes the
//! same format with no secret in clear: `secret_hmacs` instead of `secrets`, `password_hash`
//! instead of `password`, `token_sha256` instead of `token`; export output imports as it is.

use crate::store::{ProviderSecret, Store};
use anyhow::{anyhow, bail, Context, Result};
use granted_policy::credentials::kdf::KdfAlgorithm;
use granted_policy::credentials::password;
use granted_policy::model::{
    App, ClientType, CodeRecord, ConsentRecord, FederatedSubject, GrantType, IdentityProvider,
    Install, RefreshStatus, RefreshTokenRecord, Revision, SignIn, TenantRecord, Timestamp,
    UserRecord,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The file: apps and tenants.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// Apps, each with its revision history.
    #[serde(default)]
    pub apps: Vec<AppEntry>,
    /// Tenants, with installs and users.
    #[serde(default)]
    pub tenants: Vec<TenantEntry>,
    /// Authorization codes already issued (import only: a code lives 60 seconds, and export
    /// leaves them out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<CodeEntry>,
    /// The consents users gave apps on the consent page (C11).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consents: Vec<ConsentRecord>,
}

/// An authorization code: the code in clear (hashed on import) or its SHA-256, and what it is
/// bound to (RULES.md §5, C12).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CodeEntry {
    /// The code as the client holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Its SHA-256, base64url, when the code is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_sha256: Option<String>,
    /// The tenant it was issued in.
    pub tenant: String,
    /// The `client_id` it was issued to.
    pub client_id: String,
    /// The pinned revision it was issued under.
    pub rev: u32,
    /// The `redirect_uri` sent, if one was.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// The PKCE challenge.
    pub code_challenge: String,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// The user who signed in.
    pub username: String,
    /// The OpenID Connect `nonce`, if one was sent.
    #[serde(default)]
    pub nonce: Option<String>,
    /// When the user signed in.
    #[serde(default)]
    pub auth_time: Option<Timestamp>,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Whether it was exchanged already.
    #[serde(default)]
    pub used: bool,
}

impl CodeEntry {
    /// The record the store keeps.
    fn record(&self) -> Result<CodeRecord> {
        let code_sha256 = match (&self.code, &self.code_sha256) {
            (Some(code), _) => granted_policy::token::endpoint::code_sha256(code),
            (None, Some(sha)) => sha.clone(),
            (None, None) => bail!("an authorization code without `code` or `code_sha256`"),
        };
        Ok(CodeRecord {
            code_sha256,
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            rev: self.rev,
            redirect_uri: self.redirect_uri.clone(),
            code_challenge: self.code_challenge.clone(),
            scopes: self.scopes.clone(),
            username: self.username.clone(),
            nonce: self.nonce.clone(),
            auth_time: self.auth_time,
            issued_at: self.issued_at,
            used: self.used,
        })
    }
}

/// One app.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppEntry {
    /// Its id.
    pub app_id: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Client secrets in clear, by `client_id` (import only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Client secrets as stored (HMAC under the server key), by `client_id`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_hmacs: BTreeMap<String, String>,
    /// Revisions, oldest first.
    pub revisions: Vec<Revision>,
}

/// One tenant.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantEntry {
    /// Its id.
    pub tenant: String,
    /// Whether its users must sign in through SSO.
    #[serde(default)]
    pub sso_required: bool,
    /// Password expiry.
    #[serde(default)]
    pub password_max_age_days: Option<u32>,
    /// Installed apps and their pinned revisions.
    #[serde(default)]
    pub installs: Vec<Install>,
    /// Its identity provider (RULES.md §6), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<ProviderEntry>,
    /// Users.
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// Refresh tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refresh_tokens: Vec<RefreshEntry>,
}

/// A tenant's identity provider: the registration, and this server's client secret there, in
/// clear (`client_secret`, import only: it is sealed under the master key when stored) or as an
/// export wrote it (`client_secret_sealed`, which opens only under the same master key).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// The provider's issuer.
    pub issuer: String,
    /// This server's `client_id` there.
    pub client_id: String,
    /// The secret in clear (import only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The secret sealed under the master key, as exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_sealed: Option<String>,
    /// The scopes asked for.
    #[serde(default = "granted_policy::model::default_provider_scopes")]
    pub scopes: Vec<String>,
    /// The claim that names a user.
    #[serde(default = "granted_policy::model::default_username_claim")]
    pub username_claim: String,
    /// A first sign-in may link to an existing `sso` user.
    #[serde(default)]
    pub link_existing: bool,
    /// A first sign-in may create an `sso` user.
    #[serde(default)]
    pub provision: bool,
}

impl ProviderEntry {
    /// The registration as the policy reads it.
    pub fn provider(&self) -> IdentityProvider {
        IdentityProvider {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            scopes: self.scopes.clone(),
            username_claim: self.username_claim.clone(),
            link_existing: self.link_existing,
            provision: self.provision,
        }
    }
}

/// One user.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// The name.
    pub username: String,
    /// The password in clear (import only): hashed with the configured PBKDF2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A stored hash (PHC `$pbkdf2-sha256$`, `$pbkdf2-sha512$`, or Django's `pbkdf2_sha256$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// `direct` or `sso`.
    pub sign_in: SignIn,
    /// When the password last changed.
    #[serde(default)]
    pub password_changed_at: Option<Timestamp>,
    /// Disabled users cannot sign in.
    #[serde(default)]
    pub disabled: bool,
    /// A lock from failed logins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<Timestamp>,
    /// The stable subject identifier; one is made at import when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// An `sso` user's subject at the tenant's identity provider (§6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_subject: Option<FederatedSubject>,
}

/// One refresh token.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshEntry {
    /// The token in clear (import only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Its SHA-256, base64url, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// The family it rotates in.
    pub family_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The user, for password grants.
    #[serde(default)]
    pub username: Option<String>,
    /// The scope granted.
    pub scope: String,
    /// The grant that started the family.
    pub grant_type: GrantType,
    /// Issued.
    pub issued_at: Timestamp,
    /// Expires.
    pub expires_at: Timestamp,
    /// `active`, `used` or `revoked`.
    #[serde(default = "active")]
    pub status: RefreshStatus,
}

fn active() -> RefreshStatus {
    RefreshStatus::Active
}

/// How clear passwords and secrets are turned into what is stored.
pub struct Sealer<'a> {
    /// PBKDF2-HMAC-SHA256 iterations for clear passwords.
    pub iterations: u32,
    /// The HMAC of a client secret under the server key.
    pub hmac: &'a (dyn Fn(&str) -> Result<String> + Sync),
    /// Random bytes.
    pub random: &'a (dyn Fn(usize) -> Result<Vec<u8>> + Sync),
}

/// Parses a state file; the error names the JSON path of the first problem.
pub fn parse(text: &str) -> Result<StateFile> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let state: StateFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        anyhow!("at `{path}`: {}", e.into_inner())
    })?;
    check(&state)?;
    Ok(state)
}

/// What JSON paths cannot say alone: references between entries.
fn check(state: &StateFile) -> Result<()> {
    let mut apps: BTreeMap<&str, &AppEntry> = BTreeMap::new();
    let mut client_ids = BTreeSet::new();
    for (i, app) in state.apps.iter().enumerate() {
        if apps.insert(&app.app_id, app).is_some() {
            bail!("at `apps[{i}].app_id`: `{}` appears twice", app.app_id);
        }
        if app.revisions.is_empty() {
            bail!("at `apps[{i}].revisions`: an app has at least one revision");
        }
        for (j, r) in app.revisions.iter().enumerate() {
            if r.rev as usize != j + 1 {
                bail!("at `apps[{i}].revisions[{j}].rev`: revisions are numbered 1, 2, … in order");
            }
        }
        for (client_id, _) in app.secrets.iter().chain(app.secret_hmacs.iter()) {
            if !app.revisions.iter().any(|r| &r.client_id == client_id) {
                bail!(
                    "at `apps[{i}].secrets.{client_id}`: no revision of `{}` uses this client_id",
                    app.app_id
                );
            }
            if !client_ids.insert(client_id.as_str()) {
                bail!("at `apps[{i}].secrets.{client_id}`: this client_id has a secret twice");
            }
        }
    }
    let mut tenants = BTreeSet::new();
    for (i, tenant) in state.tenants.iter().enumerate() {
        if !tenants.insert(&tenant.tenant) {
            bail!(
                "at `tenants[{i}].tenant`: `{}` appears twice",
                tenant.tenant
            );
        }
        for (j, install) in tenant.installs.iter().enumerate() {
            let Some(app) = apps.get(install.app_id.as_str()) else {
                bail!(
                    "at `tenants[{i}].installs[{j}].app_id`: no app `{}`",
                    install.app_id
                );
            };
            if !app.revisions.iter().any(|r| r.rev == install.rev) {
                bail!(
                    "at `tenants[{i}].installs[{j}].rev`: `{}` has no revision {}",
                    install.app_id,
                    install.rev
                );
            }
        }
        if let Some(entry) = &tenant.identity_provider {
            check_provider(i, entry)?;
        }
        let mut names = BTreeSet::new();
        let mut federated = BTreeSet::new();
        for (j, user) in tenant.users.iter().enumerate() {
            if let Some(subject) = &user.federated_subject {
                if user.sign_in != SignIn::Sso {
                    bail!("at `tenants[{i}].users[{j}].federated_subject`: only an `sso` user has one");
                }
                if !federated.insert((&subject.iss, &subject.sub)) {
                    bail!("at `tenants[{i}].users[{j}].federated_subject`: another user of this tenant has it");
                }
            }
            if !names.insert(&user.username) {
                bail!(
                    "at `tenants[{i}].users[{j}].username`: `{}` appears twice",
                    user.username
                );
            }
            if user.password.is_some() && user.password_hash.is_some() {
                bail!("at `tenants[{i}].users[{j}]`: give `password` or `password_hash`, not both");
            }
        }
        for (j, token) in tenant.refresh_tokens.iter().enumerate() {
            if token.token.is_some() == token.token_sha256.is_some() {
                bail!("at `tenants[{i}].refresh_tokens[{j}]`: give `token` or `token_sha256`");
            }
        }
    }
    Ok(())
}

/// A tenant's identity provider in a state file: A9 (the policy's own check), and one secret.
fn check_provider(i: usize, entry: &ProviderEntry) -> Result<()> {
    if let Some(problem) = granted_policy::rules::identity_provider::problem(&entry.provider()) {
        bail!("at `tenants[{i}].identity_provider`: {problem}");
    }
    if entry.client_secret.is_some() == entry.client_secret_sealed.is_some() {
        bail!(
            "at `tenants[{i}].identity_provider`: give `client_secret` or `client_secret_sealed`"
        );
    }
    Ok(())
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Clear passwords hashed.
    pub hashed: usize,
    /// Users whose stored hash this server cannot verify (not PBKDF2: argon2, bcrypt, …). They
    /// are kept as they are; such a user cannot sign in with a password until it is set again.
    pub unverifiable: Vec<String>,
}

/// Writes `state` into `store` in one transaction.
pub fn import(store: &Store, state: &StateFile, sealer: &Sealer<'_>) -> Result<Imported> {
    // Hash first (slow, in parallel, outside the transaction), then write everything at once.
    let (hashed, total) = hash_clear_passwords(store, state, sealer)?;
    let secret_hmacs = client_hmacs(state, sealer)?;
    store
        .write(|w| {
            for app in &state.apps {
                w.put_app(&App {
                    app_id: app.app_id.clone(),
                    created_at: app.created_at,
                    revisions: app.revisions.clone(),
                })?;
            }
            for (client_id, app_id, hmac) in &secret_hmacs {
                w.put_client(client_id, app_id, hmac)?;
            }
            for (i, tenant) in state.tenants.iter().enumerate() {
                write_tenant(w, i, tenant, &hashed)?;
            }
            for code in &state.codes {
                w.put_code(&code.record()?)?;
            }
            for consent in &state.consents {
                w.put_consent(consent)?;
            }
            Ok(())
        })
        .context("nothing was written")?;
    Ok(Imported {
        hashed: total,
        unverifiable: unverifiable(state),
    })
}

/// The PHC hash of every clear password in `state`, by (tenant, user) index, hashed on every
/// core; a stored hash that already verifies the clear password is kept (import is idempotent).
/// Also answers how many there were.
/// New hashes of clear passwords, by (tenant, user) position in the state file.
type HashedPasswords = BTreeMap<(usize, usize), String>;

fn hash_clear_passwords(
    store: &Store,
    state: &StateFile,
    sealer: &Sealer<'_>,
) -> Result<(HashedPasswords, usize)> {
    let mut clear: Vec<(usize, usize, &str)> = Vec::new();
    for (i, tenant) in state.tenants.iter().enumerate() {
        for (j, user) in tenant.users.iter().enumerate() {
            if let Some(p) = &user.password {
                clear.push((i, j, p));
            }
        }
    }
    let existing: Vec<Option<String>> = store.write(|w| {
        clear
            .iter()
            .map(|(i, j, _)| {
                let tenant = &state.tenants[*i];
                w.password_hash(&tenant.tenant, &tenant.users[*j].username)
            })
            .collect()
    })?;
    let done = AtomicUsize::new(0);
    let total = clear.len();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let chunk = total.div_ceil(threads).max(1);
    let hashes: Vec<Result<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = clear
            .chunks(chunk)
            .zip(existing.chunks(chunk))
            .map(|(work, old)| {
                let done = &done;
                scope.spawn(move || {
                    work.iter()
                        .zip(old)
                        .map(|((_, _, clear), old)| {
                            let out = seal_password(clear, old.as_deref(), sealer);
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            progress(n, total, sealer.iterations);
                            out
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err(anyhow!("a hashing thread failed"))])
            })
            .collect()
    });
    let mut hashed: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for ((i, j, _), hash) in clear.iter().zip(hashes) {
        hashed.insert((*i, *j), hash?);
    }
    Ok((hashed, total))
}

/// Every client's (`client_id`, app, secret HMAC): clear secrets HMACed under the server key,
/// HMACs from an export kept.
fn client_hmacs(state: &StateFile, sealer: &Sealer<'_>) -> Result<Vec<(String, String, String)>> {
    let mut secret_hmacs = Vec::new();
    for app in &state.apps {
        for (client_id, secret) in &app.secrets {
            secret_hmacs.push((
                client_id.clone(),
                app.app_id.clone(),
                (sealer.hmac)(secret)?,
            ));
        }
        for (client_id, hmac) in &app.secret_hmacs {
            secret_hmacs.push((client_id.clone(), app.app_id.clone(), hmac.clone()));
        }
        // A public client (RULES.md §5) holds no secret: it is a client all the same.
        for revision in &app.revisions {
            let id = &revision.client_id;
            let known = app.secrets.contains_key(id)
                || app.secret_hmacs.contains_key(id)
                || secret_hmacs
                    .iter()
                    .any(|(c, a, _)| c == id && *a == app.app_id);
            if revision.client_type == ClientType::Public && !known {
                secret_hmacs.push((id.clone(), app.app_id.clone(), String::new()));
            }
        }
    }
    Ok(secret_hmacs)
}

/// One tenant (the `i`th of the file), its users and its refresh tokens.
fn write_tenant(
    w: &crate::store::Writer<'_>,
    i: usize,
    tenant: &TenantEntry,
    hashed: &BTreeMap<(usize, usize), String>,
) -> Result<()> {
    w.put_tenant(&TenantRecord {
        tenant: tenant.tenant.clone(),
        sso_required: tenant.sso_required,
        password_max_age_days: tenant.password_max_age_days,
        installs: tenant.installs.clone(),
        identity_provider: None,
    })?;
    let provider = match &tenant.identity_provider {
        None => None,
        Some(entry) => {
            let secret = match (&entry.client_secret, &entry.client_secret_sealed) {
                (Some(clear), None) => ProviderSecret::Clear(clear),
                (None, Some(sealed)) => ProviderSecret::Sealed(sealed),
                _ => bail!(
                    "the identity provider of `{}` needs one of `client_secret` and `client_secret_sealed`",
                    tenant.tenant
                ),
            };
            Some((entry.provider(), secret))
        }
    };
    w.put_identity_provider(&tenant.tenant, provider.as_ref().map(|(p, s)| (p, *s)))?;
    for (j, user) in tenant.users.iter().enumerate() {
        let password_hash = hashed
            .get(&(i, j))
            .cloned()
            .or_else(|| user.password_hash.clone());
        w.put_user(
            &tenant.tenant,
            &UserRecord {
                username: user.username.clone(),
                sub: Some(match &user.sub {
                    Some(sub) => sub.clone(),
                    None => crate::random::new_sub()?,
                }),
                sign_in: user.sign_in,
                password_hash,
                password_changed_at: user.password_changed_at,
                disabled: user.disabled,
                locked_until: user.locked_until,
                federated_subject: user.federated_subject.clone(),
            },
        )?;
    }
    for token in &tenant.refresh_tokens {
        let sha = match (&token.token, &token.token_sha256) {
            (Some(clear), _) => granted_policy::token::endpoint::refresh_token_sha256(clear),
            (None, Some(sha)) => sha.clone(),
            (None, None) => bail!("a refresh token without `token`"),
        };
        w.put_refresh(&RefreshTokenRecord {
            token_sha256: sha,
            family_id: token.family_id.clone(),
            tenant: tenant.tenant.clone(),
            client_id: token.client_id.clone(),
            username: token.username.clone(),
            scope: token.scope.clone(),
            grant_type: token.grant_type,
            issued_at: token.issued_at,
            expires_at: token.expires_at,
            status: token.status,
        })?;
    }
    Ok(())
}

/// Users whose stored hash this server cannot verify, as `tenant/user`.
fn unverifiable(state: &StateFile) -> Vec<String> {
    state
        .tenants
        .iter()
        .flat_map(|t| t.users.iter().map(move |u| (t, u)))
        .filter(|(_, u)| {
            u.password_hash
                .as_deref()
                .is_some_and(|h| password::parse(h).is_none())
        })
        .map(|(t, u)| format!("{}/{}", t.tenant, u.username))
        .collect()
}

/// A progress bar on a terminal (redrawn in place), a line every 5% otherwise.
fn progress(n: usize, total: usize, iterations: u32) {
    use std::io::IsTerminal as _;
    if std::io::stderr().is_terminal() {
        let width = 30;
        let filled = n * width / total.max(1);
        eprint!(
            "\rhashing passwords [{}{}] {n}/{total} ({iterations} iterations)",
            "#".repeat(filled),
            "-".repeat(width - filled)
        );
        if n == total {
            eprintln!();
        }
    } else if total >= 20 && (n.is_multiple_of((total / 20).max(1)) || n == total) {
        eprintln!("hashed {n}/{total} passwords ({iterations} iterations)");
    }
}

fn seal_password(clear: &str, existing: Option<&str>, sealer: &Sealer<'_>) -> Result<String> {
    if let Some(stored) = existing.and_then(|e| password::parse(e).map(|p| (e, p))) {
        let (text, parsed) = stored;
        if parsed
            .derive_here(clear)
            .is_some_and(|derived| parsed.matches(&derived))
        {
            return Ok(text.to_string());
        }
    }
    let salt = (sealer.random)(16)?;
    password::hash_password(KdfAlgorithm::Pbkdf2Sha256, clear, &salt, sealer.iterations).ok_or_else(
        || {
            anyhow!(
                "could not hash a password with {} iterations",
                sealer.iterations
            )
        },
    )
}

/// The store as a state file, with no secret in clear.
pub fn export(store: &Store) -> Result<StateFile> {
    let apps = store
        .apps()?
        .into_iter()
        .map(|(app, clients)| AppEntry {
            app_id: app.app_id,
            created_at: app.created_at,
            secrets: BTreeMap::new(),
            secret_hmacs: clients.into_iter().collect(),
            revisions: app.revisions,
        })
        .collect();
    let tenants = store
        .tenants()?
        .into_iter()
        .map(|(tenant, users, tokens)| {
            let identity_provider = tenant
                .identity_provider
                .map(|p| provider_entry(store, &tenant.tenant, p))
                .transpose()?;
            Ok(TenantEntry {
                tenant: tenant.tenant,
                sso_required: tenant.sso_required,
                password_max_age_days: tenant.password_max_age_days,
                installs: tenant.installs,
                identity_provider,
                users: users
                    .into_iter()
                    .map(|u| UserEntry {
                        username: u.username,
                        password: None,
                        password_hash: u.password_hash,
                        sign_in: u.sign_in,
                        password_changed_at: u.password_changed_at,
                        disabled: u.disabled,
                        locked_until: u.locked_until,
                        sub: u.sub,
                        federated_subject: u.federated_subject,
                    })
                    .collect(),
                refresh_tokens: tokens
                    .into_iter()
                    .map(|t| RefreshEntry {
                        token: None,
                        token_sha256: Some(t.token_sha256),
                        family_id: t.family_id,
                        client_id: t.client_id,
                        username: t.username,
                        scope: t.scope,
                        grant_type: t.grant_type,
                        issued_at: t.issued_at,
                        expires_at: t.expires_at,
                        status: t.status,
                    })
                    .collect(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(StateFile {
        apps,
        tenants,
        codes: Vec::new(),
        consents: store.consents()?,
    })
}

/// A provider as exported: its secret only when sealed (one stored in clear, by a server with
/// no master key, is left out, and the file does not import until it is given again).
fn provider_entry(
    store: &Store,
    tenant: &str,
    provider: IdentityProvider,
) -> Result<ProviderEntry> {
    Ok(ProviderEntry {
        issuer: provider.issuer,
        client_id: provider.client_id,
        client_secret: None,
        client_secret_sealed: store.identity_provider_sealed_secret(tenant)?,
        scopes: provider.scopes,
        username_claim: provider.username_claim,
        link_existing: provider.link_existing,
        provision: provider.provision,
    })
}
