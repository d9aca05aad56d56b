//! The schema: versioned migrations, the same list for SQLite and PostgreSQL.

use super::*;

/// The schema, one step per version; a database is brought to the last one at open.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE server_keys (
        kid TEXT PRIMARY KEY,
        purpose TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at TEXT NOT NULL,
        retired_at TEXT,
        verify_until TEXT
    );
    CREATE TABLE apps (
        app_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL
    );
    CREATE TABLE revisions (
        app_id TEXT NOT NULL REFERENCES apps(app_id),
        rev INTEGER NOT NULL,
        at TEXT NOT NULL,
        client_id TEXT NOT NULL,
        grant_type TEXT NOT NULL,
        scopes TEXT NOT NULL,
        PRIMARY KEY (app_id, rev)
    );
    CREATE TABLE clients (
        client_id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL REFERENCES apps(app_id),
        secret_hmac TEXT NOT NULL
    );
    CREATE TABLE tenants (
        tenant TEXT PRIMARY KEY,
        sso_required INTEGER NOT NULL,
        password_max_age_days INTEGER
    );
    CREATE TABLE installs (
        tenant TEXT NOT NULL REFERENCES tenants(tenant),
        app_id TEXT NOT NULL REFERENCES apps(app_id),
        rev INTEGER NOT NULL,
        PRIMARY KEY (tenant, app_id)
    );
    CREATE TABLE users (
        tenant TEXT NOT NULL REFERENCES tenants(tenant),
        username TEXT NOT NULL,
        sign_in TEXT NOT NULL,
        password_hash TEXT,
        password_changed_at TEXT,
        disabled INTEGER NOT NULL,
        PRIMARY KEY (tenant, username)
    );
    CREATE TABLE login_failures (
        tenant TEXT NOT NULL,
        username TEXT NOT NULL,
        failures INTEGER NOT NULL,
        locks INTEGER NOT NULL,
        locked_until TEXT,
        PRIMARY KEY (tenant, username)
    );
    CREATE TABLE refresh_tokens (
        token_sha256 TEXT PRIMARY KEY,
        family_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        client_id TEXT NOT NULL,
        username TEXT,
        scope TEXT NOT NULL,
        grant_type TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        status TEXT NOT NULL
    );
    CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);",
    // 2: the audit log, a hash chain: each entry's `sha256` covers the previous entry's and its
    // own canonical JSON.
    "CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        entry TEXT NOT NULL,
        prev_sha256 TEXT NOT NULL,
        sha256 TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at);",
    // 3: admin tokens, stored as SHA-256 of the token (which has 256 bits of entropy).
    "CREATE TABLE admin_tokens (
        id TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        retired_at TEXT
    );",
    // 4: what the audit log is searched by, copied out of each entry's JSON when it is written
    // (the chain covers the JSON; these are an index), and the anchor that retention leaves: the
    // hash of the last entry it removed, where the remaining chain starts.
    "ALTER TABLE audit ADD COLUMN tenant TEXT;
    ALTER TABLE audit ADD COLUMN app_id TEXT;
    ALTER TABLE audit ADD COLUMN grant_type TEXT;
    ALTER TABLE audit ADD COLUMN decision TEXT;
    CREATE INDEX audit_tenant ON audit (tenant, seq);
    CREATE INDEX audit_app ON audit (app_id, seq);
    CREATE TABLE audit_anchor (seq INTEGER NOT NULL, sha256 TEXT NOT NULL);",
    // 5: failed authentications per (client, source address), for hosts that share the
    // database (one host on SQLite keeps them in memory).
    "CREATE TABLE throttle_failures (
        client_id TEXT NOT NULL,
        source TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX throttle_failures_key ON throttle_failures (client_id, source, at_ms);
    CREATE INDEX throttle_failures_at ON throttle_failures (at_ms);",
    // 6: each signing key's algorithm (none: HS256, the one algorithm before) and the instant
    // it starts signing (none: its creation); it is published in the JWKS from its creation.
    "ALTER TABLE server_keys ADD COLUMN alg TEXT;
    ALTER TABLE server_keys ADD COLUMN sign_from TEXT;",
    // 7: the authorization code flow (RULES.md §5): each revision's redirect URIs (JSON) and
    // client type, each user's stable `sub`, the codes issued (only their SHA-256) and the
    // consents kept.
    "ALTER TABLE revisions ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE revisions ADD COLUMN client_type TEXT NOT NULL DEFAULT 'confidential';
    ALTER TABLE users ADD COLUMN sub TEXT;
    CREATE UNIQUE INDEX users_sub ON users (sub);
    CREATE TABLE codes (
        code_sha256 TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        client_id TEXT NOT NULL,
        rev INTEGER NOT NULL,
        redirect_uri TEXT,
        code_challenge TEXT NOT NULL,
        scopes TEXT NOT NULL,
        username TEXT NOT NULL,
        nonce TEXT,
        auth_time TEXT,
        issued_at TEXT NOT NULL,
        used INTEGER NOT NULL
    );
    CREATE TABLE consents (
        tenant TEXT NOT NULL,
        username TEXT NOT NULL,
        app_id TEXT NOT NULL,
        scopes TEXT NOT NULL,
        PRIMARY KEY (tenant, username, app_id)
    );",
    // 8: the version of the records that only admin writes change (tenants, installs, apps,
    // revisions, clients), bumped by triggers on those tables (`records_version_triggers`) in
    // the writing transaction, so that hosts can keep those records in memory (`cache.rs`).
    "CREATE TABLE records_version (version INTEGER NOT NULL);
    INSERT INTO records_version (version) VALUES (0);",
    // 9: an audit chain per writer (`chain.rs`): each entry names its chain and its place in
    // it, and retention anchors each chain. The entries and the anchor written before form the
    // chain `""`, in `seq` order. On PostgreSQL `seq` now comes from a sequence (`audit_seq`),
    // so that writers on several hosts never wait for each other to number an entry.
    "ALTER TABLE audit ADD COLUMN chain TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN link INTEGER;
    UPDATE audit SET link = seq;
    ALTER TABLE audit_anchor ADD COLUMN chain TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit_anchor ADD COLUMN link INTEGER;
    UPDATE audit_anchor SET link = seq;",
    // 10: a tenant's identity provider (RULES.md §6), its client secret sealed like the server
    // keys, its `version` the admin API's `ETag` (1, 2, … for each change), and an `sso` user's subject at it (`federated_iss`, `federated_sub`: set at the
    // first federated sign-in, never changed, no two users of a tenant share one). A provider's
    // change bumps `records_version` like a tenant's (`records_version_triggers`).
    "CREATE TABLE identity_providers (
        tenant TEXT PRIMARY KEY REFERENCES tenants(tenant),
        issuer TEXT NOT NULL,
        client_id TEXT NOT NULL,
        client_secret TEXT NOT NULL,
        scopes TEXT NOT NULL,
        username_claim TEXT NOT NULL,
        link_existing INTEGER NOT NULL,
        provision INTEGER NOT NULL,
        version INTEGER NOT NULL
    );
    ALTER TABLE users ADD COLUMN federated_iss TEXT;
    ALTER TABLE users ADD COLUMN federated_sub TEXT;
    CREATE UNIQUE INDEX users_federated ON users (tenant, federated_iss, federated_sub);",
];

/// The tables whose every change bumps `records_version` (migration 8).
const VERSIONED: [&str; 5] = ["tenants", "installs", "apps", "revisions", "clients"];

/// The tables migration 10 adds to them.
const VERSIONED_10: [&str; 1] = ["identity_providers"];

impl Store {
    /// The schema version.
    pub fn schema_version(&self) -> Result<i64> {
        self.read(|db| db.value("SELECT MAX(version) FROM schema_version", &[]))
    }
}

/// Brings the schema to the last version, inside the caller's write transaction.
pub(super) fn migrate(db: &Db<'_>) -> Result<()> {
    migrate_to(db, MIGRATIONS.len())
}

/// Brings the schema to version `last` (no further), inside the caller's write transaction.
pub(super) fn migrate_to(db: &Db<'_>, last: usize) -> Result<()> {
    db.exec(
        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
        &[],
    )?;
    let version: Option<i64> = db.value("SELECT MAX(version) FROM schema_version", &[])?;
    let version = version.unwrap_or(0);
    if version > MIGRATIONS.len() as i64 {
        bail!(
            "the database is at schema version {version}, newer than this granted knows ({}): use a newer granted",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(last)
        .skip(version as usize)
    {
        let sql = if db.is_pg() {
            std::borrow::Cow::Owned(pg_schema(sql))
        } else {
            std::borrow::Cow::Borrowed(*sql)
        };
        db.batch(&sql)
            .with_context(|| format!("migration {}", i + 1))?;
        if i + 1 == 4 {
            audit::backfill_columns(db).context("migration 4")?;
        }
        if i + 1 == 7 {
            backfill_subs(db).context("migration 7")?;
        }
        if i + 1 == 8 {
            records_version_triggers(db).context("migration 8")?;
        }
        if i + 1 == 9 && db.is_pg() {
            audit_sequence(db).context("migration 9")?;
        }
        if i + 1 == 10 {
            version_triggers(db, &VERSIONED_10).context("migration 10")?;
        }
        db.exec(
            "INSERT INTO schema_version (version) VALUES (?1)",
            &[&(i as i64 + 1)],
        )?;
    }
    Ok(())
}

/// The triggers of migration 8: after any insert, update or delete on the [`VERSIONED`]
/// tables, `records_version` goes up by one. SQLite's fire per row, PostgreSQL's per statement
/// (and on `TRUNCATE` too).
fn records_version_triggers(db: &Db<'_>) -> Result<()> {
    if db.is_pg() {
        db.batch(
            "CREATE OR REPLACE FUNCTION granted_records_changed() RETURNS trigger
             LANGUAGE plpgsql AS $$
             BEGIN UPDATE records_version SET version = version + 1; RETURN NULL; END $$;",
        )?;
    }
    version_triggers(db, &VERSIONED)
}

/// The triggers that bump `records_version` on every change of `tables` (on PostgreSQL through
/// the function migration 8 made).
fn version_triggers(db: &Db<'_>, tables: &[&str]) -> Result<()> {
    let mut sql = String::new();
    for table in tables {
        if db.is_pg() {
            sql.push_str(&format!(
                "CREATE TRIGGER records_version_{table}
                 AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
                 FOR EACH STATEMENT EXECUTE FUNCTION granted_records_changed();"
            ));
        } else {
            for event in ["INSERT", "UPDATE", "DELETE"] {
                sql.push_str(&format!(
                    "CREATE TRIGGER records_version_{table}_{} AFTER {event} ON {table}
                     BEGIN UPDATE records_version SET version = version + 1; END;",
                    event.to_lowercase()
                ));
            }
        }
    }
    db.batch(&sql)
}

/// PostgreSQL's numbering of audit entries (migration 9): a sequence that starts after every
/// `seq` written or anchored, as the default of `audit.seq`.
fn audit_sequence(db: &Db<'_>) -> Result<()> {
    db.batch(
        "CREATE SEQUENCE audit_seq AS BIGINT OWNED BY audit.seq;
         SELECT setval('audit_seq', GREATEST((SELECT MAX(seq) FROM audit),
                                             (SELECT MAX(seq) FROM audit_anchor), 0) + 1, false);
         ALTER TABLE audit ALTER COLUMN seq SET DEFAULT nextval('audit_seq');",
    )
}

/// Gives every user who has none a `sub` (RULES.md §5: assigned once, never reused): the users
/// a database held before migration 7.
fn backfill_subs(db: &Db<'_>) -> Result<()> {
    let users: Vec<(String, String)> = db.rows(
        "SELECT tenant, username FROM users WHERE sub IS NULL",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for (tenant, username) in users {
        db.exec(
            "UPDATE users SET sub = ?3 WHERE tenant = ?1 AND username = ?2",
            &[&tenant, &username, &crate::random::new_sub()?],
        )?;
    }
    Ok(())
}

/// A migration as PostgreSQL runs it: the same statements, with every integer 64 bits wide
/// (the store reads and writes `i64`) and text compared byte by byte, as SQLite does (so that
/// `ORDER BY` and the RFC 3339 instants compare the same on both).
pub(super) fn pg_schema(sql: &str) -> String {
    sql.replace("INTEGER", "BIGINT")
        .replace(" TEXT", " TEXT COLLATE \"C\"")
}
