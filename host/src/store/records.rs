//! What a decision reads: tenants with their installs, clients with their apps, users, refresh tokens, in one snapshot.

use super::*;

/// An app with its clients (`client_id`, secret HMAC).
pub type AppWithClients = (App, Vec<(String, String)>);

/// A tenant with its users and refresh tokens.
pub type TenantWithRecords = (TenantRecord, Vec<UserRecord>, Vec<RefreshTokenRecord>);

impl Store {
    /// The tenant with its installs.
    pub fn tenant(&self, tenant: &str) -> Result<Option<TenantRecord>> {
        self.snapshot(|db| tenant_record(db, tenant))
    }

    /// What a token request's `need_records` step asks for, read in one transaction: the
    /// records come from one snapshot, and a SQLite reader takes its WAL read lock (and checks
    /// its page cache against the log the writer keeps appending to) once instead of per
    /// statement.
    pub fn records(&self, lookup: &Lookup) -> Result<Records> {
        self.records_ahead(lookup).map(|(records, _)| records)
    }

    /// [`Store::records`], and what the request's next step will ask for, read in the same
    /// snapshot when it can be told from these records ([`follow_up`]).
    pub fn records_ahead(&self, lookup: &Lookup) -> Result<(Records, Option<ReadAhead>)> {
        self.snapshot(|db| {
            let records = records_in(db, lookup, &self.cache)?;
            let ahead = follow_up(db, lookup, &records)?;
            Ok((records, ahead))
        })
    }

    /// Every consent kept (C11), by tenant, user and app.
    pub fn consents(&self) -> Result<Vec<ConsentRecord>> {
        self.read(|db| {
            let rows: Vec<(String, String, String, String)> = db.rows(
                "SELECT tenant, username, app_id, scopes FROM consents
                 ORDER BY tenant, username, app_id",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            rows.into_iter()
                .map(|(tenant, username, app_id, scopes)| {
                    Ok(ConsentRecord {
                        tenant,
                        username,
                        app_id,
                        scopes: serde_json::from_str(&scopes)
                            .context("bad consent scopes in the database")?,
                    })
                })
                .collect()
        })
    }

    /// A refresh token by its SHA-256.
    pub fn refresh_token(&self, sha256: &str) -> Result<Option<RefreshTokenRecord>> {
        self.read(|db| refresh_record(db, sha256))
    }

    /// Every app with its history and clients (`client_id`, secret HMAC).
    pub fn apps(&self) -> Result<Vec<AppWithClients>> {
        self.snapshot(|db| {
            let ids: Vec<String> =
                db.rows("SELECT app_id FROM apps ORDER BY app_id", &[], |r| r.get(0))?;
            let mut out = Vec::new();
            for id in ids {
                let app = app(db, &id)?.ok_or_else(|| anyhow!("app vanished"))?;
                let clients = db.rows(
                    "SELECT client_id, secret_hmac FROM clients WHERE app_id = ?1 ORDER BY client_id",
                    &[&id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                out.push((app, clients));
            }
            Ok(out)
        })
    }

    /// Every tenant with its users and refresh tokens.
    pub fn tenants(&self) -> Result<Vec<TenantWithRecords>> {
        self.snapshot(|db| {
            let ids: Vec<String> =
                db.rows("SELECT tenant FROM tenants ORDER BY tenant", &[], |r| r.get(0))?;
            let mut out = Vec::new();
            for id in ids {
                let tenant =
                    tenant_record(db, &id)?.ok_or_else(|| anyhow!("tenant vanished"))?;
                let names: Vec<String> = db.rows(
                    "SELECT username FROM users WHERE tenant = ?1 ORDER BY username",
                    &[&id],
                    |r| r.get(0),
                )?;
                let mut users = Vec::new();
                for name in names {
                    if let Some(user) = user_record(db, &id, &name)? {
                        users.push(user);
                    }
                }
                let hashes: Vec<String> = db.rows(
                    "SELECT token_sha256 FROM refresh_tokens WHERE tenant = ?1 ORDER BY issued_at, token_sha256",
                    &[&id],
                    |r| r.get(0),
                )?;
                let mut tokens = Vec::new();
                for hash in hashes {
                    if let Some(token) = refresh_record(db, &hash)? {
                        tokens.push(token);
                    }
                }
                out.push((tenant, users, tokens));
            }
            Ok(out)
        })
    }
}

/// What a `need_records` step asks for, inside the caller's transaction (a snapshot): the
/// tenant and the client from `cache` when it holds them as of this snapshot's version.
pub(super) fn records_in(db: &Db<'_>, lookup: &Lookup, cache: &RecordsCache) -> Result<Records> {
    let version: Option<i64> = db.opt("SELECT version FROM records_version", &[], |r| r.get(0))?;
    records_at(db, version, lookup, cache)
}

/// [`records_in`] with the records' `version` already read in this snapshot.
pub(super) fn records_at(
    db: &Db<'_>,
    version: Option<i64>,
    lookup: &Lookup,
    cache: &RecordsCache,
) -> Result<Records> {
    let tenant = lookup.tenant.as_str();
    Ok(Records {
        tenant: Some(through(
            version,
            |v| cache.tenant(v, tenant),
            || tenant_record(db, tenant),
            |v, record| cache.keep_tenant(v, record),
        )?),
        client: Some(through(
            version,
            |v| cache.client(v, &lookup.client_id),
            || client_record(db, &lookup.client_id),
            |v, record| cache.keep_client(v, record),
        )?),
        user: match (&lookup.username, &lookup.subject) {
            (Some(username), _) => Some(user_record(db, tenant, username)?),
            (None, Some(sub)) => Some(user_by_subject(db, tenant, sub)?),
            (None, None) => None,
        },
        refresh_token: match &lookup.refresh_token_sha256 {
            Some(hash) => Some(refresh_record(db, hash)?),
            None => None,
        },
        code: match &lookup.code_sha256 {
            Some(hash) => Some(code_record(db, hash)?),
            None => None,
        },
        consent: match (&lookup.consent_app_id, &lookup.username) {
            (Some(app_id), Some(username)) => Some(consent_record(db, tenant, username, app_id)?),
            (Some(_), None) => Some(None),
            (None, _) => None,
        },
    })
}

/// The records of a lookup the module has not made yet, read in the snapshot of the one before.
#[derive(Clone, Debug)]
pub struct ReadAhead {
    /// The lookup they answer; used only for a step that asks exactly this.
    pub lookup: Lookup,
    /// What [`records_at`] reads for it, in the same snapshot as the step before.
    pub records: Records,
}

/// What a refresh-token or authorization-code request asks next, read now: its first lookup
/// names the token or the code but not the user, the one after adds the user the record names
/// (everything else equal). Reading that user in the same snapshot saves a second read
/// transaction (on PostgreSQL, five round trips), and the two answers come from one snapshot
/// instead of two. `None` when there is no such user to read, or the lookup already names one.
pub(super) fn follow_up(
    db: &Db<'_>,
    lookup: &Lookup,
    records: &Records,
) -> Result<Option<ReadAhead>> {
    let Some(username) = next_user(lookup, records) else {
        return Ok(None);
    };
    let user = user_record(db, &lookup.tenant, &username)?;
    Ok(Some(read_ahead(lookup, records, username, user)))
}

/// The user the module's next lookup will add to `lookup`, given the `records` that answer it
/// ([`follow_up`]).
pub(super) fn next_user(lookup: &Lookup, records: &Records) -> Option<String> {
    if lookup.username.is_some() || lookup.subject.is_some() || lookup.consent_app_id.is_some() {
        return None;
    }
    match (&records.refresh_token, &records.code) {
        (Some(Some(token)), None) => token.username.clone(),
        (None, Some(Some(code))) => Some(code.username.clone()),
        _ => None,
    }
}

/// The next lookup (`lookup` with `username`) and its records: `records` with `user`.
pub(super) fn read_ahead(
    lookup: &Lookup,
    records: &Records,
    username: String,
    user: Option<UserRecord>,
) -> ReadAhead {
    ReadAhead {
        lookup: Lookup {
            username: Some(username),
            ..lookup.clone()
        },
        records: Records {
            user: Some(user),
            ..records.clone()
        },
    }
}

/// The refresh token's SHA-256 when `lookup` names it, its tenant and client, and nothing else.
pub(super) fn refresh_only(lookup: &Lookup) -> Option<&str> {
    if names_a_user_code_or_consent(lookup) {
        return None;
    }
    lookup.refresh_token_sha256.as_deref()
}

/// Whether `lookup` asks for the tenant and the client and nothing else.
pub(super) fn needs_only_tenant_and_client(lookup: &Lookup) -> bool {
    lookup.refresh_token_sha256.is_none() && !names_a_user_code_or_consent(lookup)
}

/// Whether `lookup` asks for anything besides its tenant, its client and a refresh token.
fn names_a_user_code_or_consent(lookup: &Lookup) -> bool {
    let Lookup {
        tenant: _,
        client_id: _,
        username,
        refresh_token_sha256: _,
        code_sha256,
        consent_app_id,
        subject,
    } = lookup;
    username.is_some() || code_sha256.is_some() || consent_app_id.is_some() || subject.is_some()
}

/// The records of a lookup that needs only its tenant and client, when `cache` holds both at
/// `version`: what [`records_at`] would read at that version.
pub(super) fn cached_records(
    cache: &RecordsCache,
    version: i64,
    lookup: &Lookup,
) -> Option<Records> {
    Some(Records {
        tenant: Some(Some(cache.tenant(version, &lookup.tenant)?)),
        client: Some(Some(cache.client(version, &lookup.client_id)?)),
        user: None,
        refresh_token: None,
        code: None,
        consent: None,
    })
}

/// A record through the cache: `hit` at the snapshot's `version`, else `read` from the
/// database and, when it exists, `keep` it at that version. Without a version (no
/// `records_version` row), always `read`.
fn through<T>(
    version: Option<i64>,
    hit: impl FnOnce(i64) -> Option<T>,
    read: impl FnOnce() -> Result<Option<T>>,
    keep: impl FnOnce(i64, &T),
) -> Result<Option<T>> {
    if let Some(found) = version.and_then(hit) {
        return Ok(Some(found));
    }
    let record = read()?;
    if let (Some(v), Some(record)) = (version, &record) {
        keep(v, record);
    }
    Ok(record)
}

/// An authorization code by its SHA-256.
pub(super) fn code_record(db: &Db<'_>, sha256: &str) -> Result<Option<CodeRecord>> {
    type Row = (
        String,
        String,
        u32,
        Option<String>,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        String,
        bool,
    );
    let row: Option<Row> = db.opt(
        "SELECT tenant, client_id, rev, redirect_uri, code_challenge, scopes, username, nonce,
                auth_time, issued_at, used
         FROM codes WHERE code_sha256 = ?1",
        &[&sha256],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
            ))
        },
    )?;
    let Some((
        tenant,
        client_id,
        rev,
        redirect_uri,
        code_challenge,
        scopes,
        username,
        nonce,
        auth_time,
        issued_at,
        used,
    )) = row
    else {
        return Ok(None);
    };
    Ok(Some(CodeRecord {
        code_sha256: sha256.to_string(),
        tenant,
        client_id,
        rev,
        redirect_uri,
        code_challenge,
        scopes: serde_json::from_str(&scopes).context("bad code scopes in the database")?,
        username,
        nonce,
        auth_time: auth_time.map(ts).transpose()?,
        issued_at: ts(issued_at)?,
        used,
    }))
}

/// A user's consent to an app in a tenant.
pub(super) fn consent_record(
    db: &Db<'_>,
    tenant: &str,
    username: &str,
    app_id: &str,
) -> Result<Option<ConsentRecord>> {
    let scopes: Option<String> = db.opt(
        "SELECT scopes FROM consents WHERE tenant = ?1 AND username = ?2 AND app_id = ?3",
        &[&tenant, &username, &app_id],
        |r| r.get(0),
    )?;
    scopes
        .map(|scopes| {
            Ok(ConsentRecord {
                tenant: tenant.to_string(),
                username: username.to_string(),
                app_id: app_id.to_string(),
                scopes: serde_json::from_str(&scopes)
                    .context("bad consent scopes in the database")?,
            })
        })
        .transpose()
}

/// An app's columns joined with one of its revisions' (all null for an app without any):
/// `created_at`, then `rev`, `at`, `client_id`, `grant_type`, `scopes`, `redirect_uris`,
/// `client_type`.
pub(super) type AppRow = (
    String,
    Option<u32>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// An [`AppRow`] from `row`'s columns `first` on.
pub(super) fn app_row(row: &db::Row<'_>, first: usize) -> Result<AppRow> {
    Ok((
        row.get(first)?,
        row.get(first + 1)?,
        row.get(first + 2)?,
        row.get(first + 3)?,
        row.get(first + 4)?,
        row.get(first + 5)?,
        row.get(first + 6)?,
        row.get(first + 7)?,
    ))
}

/// The app `app_id` from its [`AppRow`]s, revisions in order; `None` when there are none.
pub(super) fn app_from_rows(app_id: &str, rows: Vec<AppRow>) -> Result<Option<App>> {
    let Some(created) = rows.first().map(|row| row.0.clone()) else {
        return Ok(None);
    };
    let mut revisions = Vec::with_capacity(rows.len());
    for (_, rev, at, client_id, grant, scopes, redirect_uris, client_type) in rows {
        // An app with no revision: the LEFT JOIN's one row of nulls.
        let (Some(rev), Some(at), Some(client_id), Some(grant), Some(scopes)) =
            (rev, at, client_id, grant, scopes)
        else {
            continue;
        };
        revisions.push(Revision {
            rev,
            at: ts(at)?,
            client_id,
            grant_type: grant_type(&grant)?,
            scopes: serde_json::from_str(&scopes).context("bad scopes in the database")?,
            redirect_uris: match redirect_uris {
                Some(uris) => {
                    serde_json::from_str(&uris).context("bad redirect URIs in the database")?
                }
                None => Vec::new(),
            },
            client_type: match client_type.as_deref() {
                Some("public") => ClientType::Public,
                _ => ClientType::Confidential,
            },
        });
    }
    Ok(Some(App {
        app_id: app_id.to_string(),
        created_at: ts(created)?,
        revisions,
    }))
}

/// An app with its revisions, in one query.
pub(super) fn app(db: &Db<'_>, app_id: &str) -> Result<Option<App>> {
    let rows = db.rows(
        "SELECT a.created_at, r.rev, r.at, r.client_id, r.grant_type, r.scopes, r.redirect_uris, r.client_type
         FROM apps a LEFT JOIN revisions r ON r.app_id = a.app_id
         WHERE a.app_id = ?1 ORDER BY r.rev",
        &[&app_id],
        |r| app_row(r, 0),
    )?;
    app_from_rows(app_id, rows)
}

/// A client with its app and the app's revisions, in one query.
pub(super) fn client_record(db: &Db<'_>, client_id: &str) -> Result<Option<ClientRecord>> {
    let rows: Vec<(String, String, AppRow)> = db.rows(
        "SELECT c.app_id, c.secret_hmac,
                a.created_at, r.rev, r.at, r.client_id, r.grant_type, r.scopes, r.redirect_uris, r.client_type
         FROM clients c JOIN apps a ON a.app_id = c.app_id
         LEFT JOIN revisions r ON r.app_id = c.app_id
         WHERE c.client_id = ?1 ORDER BY r.rev",
        &[&client_id],
        |r| Ok((r.get(0)?, r.get(1)?, app_row(r, 2)?)),
    )?;
    let Some((app_id, secret_hmac)) = rows.first().map(|(a, s, _)| (a.clone(), s.clone())) else {
        return Ok(None);
    };
    let app = app_from_rows(&app_id, rows.into_iter().map(|(_, _, row)| row).collect())?
        .ok_or_else(|| anyhow!("client of a missing app"))?;
    Ok(Some(ClientRecord {
        client_id: client_id.to_string(),
        secret_hmac,
        app,
    }))
}

/// A tenant with its installs, in one query.
pub(super) fn tenant_record(db: &Db<'_>, tenant: &str) -> Result<Option<TenantRecord>> {
    type Row = (bool, Option<u32>, Option<String>, Option<u32>);
    let rows: Vec<Row> = db.rows(
        "SELECT t.sso_required, t.password_max_age_days, i.app_id, i.rev
         FROM tenants t LEFT JOIN installs i ON i.tenant = t.tenant
         WHERE t.tenant = ?1 ORDER BY i.app_id",
        &[&tenant],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let Some(&(sso_required, password_max_age_days, ..)) = rows.first() else {
        return Ok(None);
    };
    let installs = rows
        .into_iter()
        .filter_map(|(_, _, app_id, rev)| {
            Some(Install {
                app_id: app_id?,
                rev: rev?,
            })
        })
        .collect();
    Ok(Some(TenantRecord {
        tenant: tenant.to_string(),
        sso_required,
        password_max_age_days,
        installs,
        identity_provider: super::providers::provider(db, tenant)?,
    }))
}

/// A user by their `sub` (UserInfo).
fn user_by_subject(db: &Db<'_>, tenant: &str, sub: &str) -> Result<Option<UserRecord>> {
    let username: Option<String> = db.opt(
        "SELECT username FROM users WHERE tenant = ?1 AND sub = ?2",
        &[&tenant, &sub],
        |r| r.get(0),
    )?;
    match username {
        Some(username) => user_record(db, tenant, &username),
        None => Ok(None),
    }
}

/// A user with its lock, in one query.
pub(super) fn user_record(db: &Db<'_>, tenant: &str, username: &str) -> Result<Option<UserRecord>> {
    db.opt(
        concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u LEFT JOIN login_failures f
               ON f.tenant = u.tenant AND f.username = u.username
             WHERE u.tenant = ?1 AND u.username = ?2"
        ),
        &[&tenant, &username],
        |r| user_row(r, 0, username),
    )
    .map(Option::flatten)
}

/// What [`user_row`] reads, from `users u` joined with `login_failures f` (a macro, so that
/// the queries that name these columns are still `&'static str`, built by `concat!`).
macro_rules! user_columns {
    () => {
        "u.sign_in, u.password_hash, u.password_changed_at, u.disabled, f.locked_until, u.sub, \
         u.federated_iss, u.federated_sub"
    };
}
pub(super) use user_columns;

/// The user `username` from the [`user_columns`] of `r` starting at column `at`; `None` when
/// they are null (a left join found no user).
pub(super) fn user_row(r: &db::Row<'_>, at: usize, username: &str) -> Result<Option<UserRecord>> {
    let Some(sign_in) = r.get::<Option<String>>(at)? else {
        return Ok(None);
    };
    Ok(Some(UserRecord {
        username: username.to_string(),
        sub: r.get(at + 5)?,
        sign_in: if sign_in == "sso" {
            SignIn::Sso
        } else {
            SignIn::Direct
        },
        password_hash: r.get(at + 1)?,
        password_changed_at: r.get::<Option<String>>(at + 2)?.map(ts).transpose()?,
        disabled: r.get(at + 3)?,
        locked_until: r.get::<Option<String>>(at + 4)?.map(ts).transpose()?,
        federated_subject: match (r.get(at + 6)?, r.get(at + 7)?) {
            (Some(iss), Some(sub)) => Some(FederatedSubject { iss, sub }),
            _ => None,
        },
    }))
}

pub(super) fn refresh_record(db: &Db<'_>, sha256: &str) -> Result<Option<RefreshTokenRecord>> {
    db.opt(
        concat!(
            "SELECT ",
            refresh_columns!(),
            " FROM refresh_tokens r WHERE r.token_sha256 = ?1"
        ),
        &[&sha256],
        |r| refresh_row(r, 0, sha256),
    )
    .map(Option::flatten)
}

/// What [`refresh_row`] reads, from `refresh_tokens r` (a macro, as [`user_columns`]).
macro_rules! refresh_columns {
    () => {
        "r.family_id, r.tenant, r.client_id, r.username, r.scope, \
         r.grant_type, r.issued_at, r.expires_at, r.status"
    };
}
pub(super) use refresh_columns;

/// The refresh token `sha256` from the [`refresh_columns`] of `r` starting at column `at`;
/// `None` when they are null (a left join found no token).
pub(super) fn refresh_row(
    r: &db::Row<'_>,
    at: usize,
    sha256: &str,
) -> Result<Option<RefreshTokenRecord>> {
    let Some(family_id) = r.get::<Option<String>>(at)? else {
        return Ok(None);
    };
    Ok(Some(RefreshTokenRecord {
        token_sha256: sha256.to_string(),
        family_id,
        tenant: r.get(at + 1)?,
        client_id: r.get(at + 2)?,
        username: r.get(at + 3)?,
        scope: r.get(at + 4)?,
        grant_type: grant_type(&r.get::<String>(at + 5)?)?,
        issued_at: ts(r.get(at + 6)?)?,
        expires_at: ts(r.get(at + 7)?)?,
        status: match r.get::<String>(at + 8)?.as_str() {
            "active" => RefreshStatus::Active,
            "used" => RefreshStatus::Used,
            _ => RefreshStatus::Revoked,
        },
    }))
}
