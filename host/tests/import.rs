//! `granted import` and `granted export`: all or nothing, the JSON path of the first problem,
//! idempotent, and an export that imports as it is with no secret in clear. On a SQLite file,
//! or with `GRANTED_TEST_STORE=postgres` on a new PostgreSQL database (`--db URL`).

use granted_host::store::{Location, PgOptions, Store};
use std::path::Path;
use std::process::{Command, Output};

const GRANTED: &str = env!("CARGO_BIN_EXE_granted");
const DEMO: &str = "../tests/demo/state.json";

/// A new database for `--db`: a file in `dir`, or a PostgreSQL database.
fn new_db(dir: &Path, name: &str) -> String {
    match std::env::var("GRANTED_TEST_STORE").as_deref() {
        Ok("postgres") => granted_host::testing::fresh_database().unwrap(),
        _ => dir.join(name).to_str().unwrap().to_string(),
    }
}

/// Whether nothing was ever written to `db`: no file, or no schema in the database.
fn untouched(db: &str) -> bool {
    match Location::parse(db) {
        Location::File(path) => !path.exists(),
        Location::Postgres(url) => {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let row = client
                .query_one("SELECT to_regclass('schema_version') IS NULL", &[])
                .unwrap();
            row.get(0)
        }
    }
}

fn open(db: &str) -> Store {
    Store::at(&Location::parse(db), &PgOptions::default()).unwrap()
}

fn granted(args: &[&str], db: &str) -> Output {
    Command::new(GRANTED)
        .args(args)
        .arg("--db")
        .arg(db)
        .env("GRANTED_KDF_ITERATIONS", "1000")
        .output()
        .unwrap()
}

fn export(db: &str) -> String {
    let out = granted(&["export"], db);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_bad_file_names_its_first_problem_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path(), "g.db");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DEMO).unwrap()).unwrap();
    type Break = fn(&mut serde_json::Value);
    let cases: [(Break, &str); 3] = [
        (
            |s| s["tenants"][1]["installs"][0]["rev"] = serde_json::json!(9),
            "tenants[1].installs[0].rev",
        ),
        (
            |s| s["apps"][0]["revisions"][1]["grant_type"] = serde_json::json!("telepathy"),
            "apps[0].revisions[1].grant_type",
        ),
        (
            |s| s["tenants"][2]["users"][0]["sign_in"] = serde_json::json!("telepathy"),
            "tenants[2].users[0].sign_in",
        ),
    ];
    for (bad, path) in cases {
        let mut broken = state.clone();
        bad(&mut broken);
        let file = dir.path().join("bad.json");
        std::fs::write(&file, broken.to_string()).unwrap();
        let out = granted(&["import", file.to_str().unwrap()], &db);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(path), "{path} not named in: {stderr}");
        assert!(stderr.contains("nothing was written"), "{stderr}");
    }
    // An unknown key (a typo) is refused too.
    state["tenants"][0]["sso_requried"] = serde_json::json!(true);
    let file = dir.path().join("typo.json");
    std::fs::write(&file, state.to_string()).unwrap();
    let out = granted(&["import", file.to_str().unwrap()], &db);
    assert!(String::from_utf8_lossy(&out.stderr).contains("sso_requried"));
    // Nothing was written by any of them: the file is refused before the database is opened.
    assert!(untouched(&db));
}

#[test]
fn import_is_idempotent_and_an_export_imports_as_it_is_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path(), "g.db");
    assert!(granted(&["import", DEMO], &db).status.success());
    let first = export(&db);
    assert!(granted(&["import", DEMO], &db).status.success());
    assert_eq!(export(&db), first, "a second import changed the store");
    for secret in ["crm-1-secret", "correct horse battery", "tr0ub4dor"] {
        assert!(!first.contains(secret), "the export holds `{secret}`");
    }
    let file = dir.path().join("export.json");
    std::fs::write(&file, &first).unwrap();
    let other = new_db(dir.path(), "other.db");
    let out = granted(&["import", file.to_str().unwrap()], &other);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(export(&other), first);
}

/// An import is in the database file itself when `granted import` ends, not only in SQLite's
/// write-ahead log: a copy of the file alone (a backup, a file handed to `granted serve`
/// elsewhere) holds it.
#[test]
fn an_imported_sqlite_file_holds_the_import_without_its_log() {
    if std::env::var("GRANTED_TEST_STORE").as_deref() == Ok("postgres") {
        return; // a SQLite file's property
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let out = granted(&["import", DEMO], db.to_str().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wal = dir.path().join("g.db-wal");
    let left = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        left, 0,
        "the import left {left} bytes in the write-ahead log"
    );
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let exported = export(copy.to_str().unwrap());
    assert!(
        exported.contains("\"acme\""),
        "the file alone does not hold the import:\n{exported}"
    );
    assert_eq!(exported, export(db.to_str().unwrap()));
}

#[test]
fn a_hash_this_server_cannot_verify_is_kept_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path(), "g.db");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DEMO).unwrap()).unwrap();
    state["tenants"][2]["users"][0]["password_hash"] =
        serde_json::json!("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA");
    let file = dir.path().join("argon.json");
    std::fs::write(&file, state.to_string()).unwrap();
    let out = granted(&["import", file.to_str().unwrap()], &db);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot verify") && stderr.contains("initech/peter"),
        "{stderr}"
    );
    assert!(export(&db).contains("$argon2id$"));
}

#[test]
fn keys_rotate_adds_a_signing_key_and_keeps_the_old_one_for_verification() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path(), "g.db");
    assert!(granted(&["import", DEMO], &db).status.success());
    let before = open(&db);
    let now = granted_policy::model::Timestamp::parse(
        &time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("whole seconds")
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
    )
    .unwrap();
    let (old, _) = before.current_keys(now).unwrap().unwrap();
    drop(before);
    let out = granted(&["keys", "rotate"], &db);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = open(&db);
    // The new key is published now and signs after the publication delay (an hour).
    let (still, _) = store.current_keys(now).unwrap().unwrap();
    assert_eq!(still.kid, old.kid);
    let (new, _) = store
        .current_keys(now.plus_seconds(3600 + 60))
        .unwrap()
        .unwrap();
    assert_ne!(new.kid, old.kid);
    assert_eq!(new.alg.name(), "ES256");
    assert!(stdout.contains(&new.kid), "{stdout}");
    // Both verify now (the old one until its last token expires, an hour after the new one
    // starts signing).
    let kids: Vec<String> = store
        .verification_keys(now)
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert!(
        kids.contains(&old.kid) && kids.contains(&new.kid),
        "{kids:?}"
    );
}

/// A tenant's identity provider (RULES.md §6) in a state file: its secret sealed under the
/// master key when imported, exported sealed (never in clear), imported again as it is under
/// the same master key; a provider that A9 refuses is named by its JSON path, and nothing is
/// written; an `sso` user's federated subject travels with it.
#[test]
fn an_identity_provider_is_imported_sealed_and_exported_sealed() {
    const MASTER: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path(), "g.db");
    let sealed = |args: &[&str], db: &str| {
        Command::new(GRANTED)
            .args(args)
            .arg("--db")
            .arg(db)
            .env("GRANTED_KDF_ITERATIONS", "1000")
            .env("GRANTED_MASTER_KEY", MASTER)
            .output()
            .unwrap()
    };
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DEMO).unwrap()).unwrap();
    state["tenants"][2]["identity_provider"] = serde_json::json!({
        "issuer": "https://idp.initech.example", "client_id": "granted-initech",
        "client_secret": "idp-s3cret-value", "link_existing": true
    });
    state["tenants"][2]["users"][0]["federated_subject"] =
        serde_json::json!({"iss": "https://idp.initech.example", "sub": "248289761001"});

    // A9: an issuer over plain http is refused, with its path, before anything is written.
    let mut refused = state.clone();
    refused["tenants"][2]["identity_provider"]["issuer"] = serde_json::json!("http://idp.example");
    let file = dir.path().join("refused.json");
    std::fs::write(&file, refused.to_string()).unwrap();
    let out = sealed(&["import", file.to_str().unwrap()], &db);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tenants[2].identity_provider"), "{stderr}");
    assert!(untouched(&db));

    let file = dir.path().join("state.json");
    std::fs::write(&file, state.to_string()).unwrap();
    let out = sealed(&["import", file.to_str().unwrap()], &db);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = open(&db)
        .with_master_key(granted_host::store::MasterKey::from_base64(MASTER, "test").unwrap())
        .unwrap()
        .0;
    assert_eq!(
        store
            .identity_provider_secret("initech")
            .unwrap()
            .as_deref()
            .map(String::as_str),
        Some("idp-s3cret-value")
    );
    let out = sealed(&["export"], &db);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = String::from_utf8(out.stdout).unwrap();
    assert!(
        !exported.contains("idp-s3cret-value"),
        "the export holds the secret"
    );
    let back: serde_json::Value = serde_json::from_str(&exported).unwrap();
    let provider = &back["tenants"][2]["identity_provider"];
    assert_eq!(provider["issuer"], "https://idp.initech.example");
    assert_eq!(
        provider["scopes"],
        serde_json::json!(["openid", "profile", "email"])
    );
    assert!(provider["client_secret_sealed"]
        .as_str()
        .unwrap()
        .starts_with("sealed1:"));
    assert_eq!(
        back["tenants"][2]["users"][0]["federated_subject"]["sub"],
        "248289761001"
    );
    // The export imports as it is into another database under the same master key.
    let other = new_db(dir.path(), "other.db");
    let file = dir.path().join("export.json");
    std::fs::write(&file, &exported).unwrap();
    let out = sealed(&["import", file.to_str().unwrap()], &other);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = sealed(&["export"], &other);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["tenants"][2], back["tenants"][2]);
}
