//! Secrets at rest, as an operator meets them through the `granted` binary: a new SQLite
//! database is readable by its owner only, a master key seals the server keys (none of them is
//! in the file in clear), a wrong or badly written master key is refused with a clear message,
//! and `granted keys rewrap` moves the keys to a new master key on SQLite and on PostgreSQL,
//! after which tokens issued before still introspect as active.

#![cfg(unix)]

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::{agent, basic, free_port, post, GRANTED};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Two master keys, as `openssl rand -base64 32` prints them.
fn master_keys() -> (String, String) {
    (STANDARD.encode([0x11u8; 32]), STANDARD.encode([0x22u8; 32]))
}

/// Runs `granted args… --db db` with `env`.
fn granted(args: &[&str], db: &str, env: &[(&str, &str)]) -> Output {
    Command::new(GRANTED)
        .args(args)
        .arg("--db")
        .arg(db)
        .env_remove("GRANTED_MASTER_KEY")
        .env_remove("GRANTED_MASTER_KEY_FILE")
        .env_remove("GRANTED_NEW_MASTER_KEY")
        .env("GRANTED_KDF_ITERATIONS", "1000")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn succeeded(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn failed(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "it succeeded: {stderr}");
    stderr
}

fn import(db: &str, env: &[(&str, &str)]) {
    succeeded(&granted(&["import", "../tests/demo/state.json"], db, env));
}

/// The server keys in clear, as `granted export --edge-secrets` writes them for the edge: every
/// key's base64 text.
fn clear_keys(db: &str, dir: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let (snapshot, secrets) = (dir.join("edge.json"), dir.join("edge-secrets.json"));
    succeeded(&granted(
        &[
            "export",
            "--edge",
            snapshot.to_str().unwrap(),
            "--edge-secrets",
            secrets.to_str().unwrap(),
        ],
        db,
        env,
    ));
    let mode = std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the edge secrets file is owner-only");
    let keys: Value = serde_json::from_str(&std::fs::read_to_string(&secrets).unwrap()).unwrap();
    // Every server key as stored (opened with the master key when there is one: standard base64
    // of PKCS#8 DER, or of an HMAC key), the client-secret key, and the private members of the
    // edge's JWKs as standard base64 of their bytes.
    let mut store = granted_host::store::Store::at(
        &granted_host::store::Location::parse(db),
        &granted_host::store::PgOptions::default(),
    )
    .unwrap();
    if let Some((_, master)) = env.iter().find(|(name, _)| *name == "GRANTED_MASTER_KEY") {
        let master = granted_host::store::MasterKey::from_base64(
            &zeroize::Zeroizing::new(master.to_string()),
            "GRANTED_MASTER_KEY",
        )
        .unwrap();
        store = store.with_master_key(master).unwrap().0;
    }
    let far = granted_policy::model::Timestamp::parse("2000-01-01T00:00:00Z").unwrap();
    let mut all: Vec<String> = store
        .verification_keys(far)
        .unwrap()
        .into_iter()
        .map(|k| k.secret)
        .collect();
    drop(store);
    all.push(
        keys["GRANTED_CLIENT_SECRET_KEY"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    assert!(
        keys["GRANTED_SIGNING_KEY"]["d"].is_string(),
        "the signing key is a private JWK: {}",
        keys["GRANTED_SIGNING_KEY"]["kid"]
    );
    for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        if let Some(text) = keys["GRANTED_SIGNING_KEY"][member].as_str() {
            all.push(STANDARD.encode(URL_SAFE_NO_PAD.decode(text).unwrap()));
        }
    }
    all.sort();
    all.dedup();
    all
}

/// The bytes of the database file at `db` and of its write-ahead log, if it has one.
fn file_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).unwrap();
    if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
        bytes.extend_from_slice(&wal);
    }
    bytes
}

/// Asserts that no key of `keys` is in the database file at `db` (or its `-wal`) in clear:
/// neither its base64 text nor its raw bytes.
fn assert_not_in_file(db: &Path, keys: &[String]) {
    let bytes = file_bytes(db);
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    for key in keys {
        let raw = STANDARD.decode(key).unwrap();
        assert!(raw.len() >= 16, "a key of {} bytes", raw.len());
        assert!(!contains(key.as_bytes()), "a key's base64 is in the file");
        assert!(!contains(&raw), "a key's bytes are in the file");
    }
}

#[test]
fn a_new_database_its_log_and_its_directory_are_owner_only_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("deeper").join("g.db");
    // Under umask 000 (which would leave files 0666 and directories 0777), a server running:
    // its `-wal` and `-shm` files are there.
    let port = free_port();
    let mut child = Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(GRANTED)
        .args(["serve", "--kdf-iterations", "1000", "--db"])
        .arg(&db)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("GRANTED_MASTER_KEY")
        .env_remove("GRANTED_MASTER_KEY_FILE")
        .env("GRANTED_CACHE_DIR", dir.path().join("cache"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let _stop = Stop(&mut child);
    wait_healthy(&format!("http://127.0.0.1:{port}"));
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    for name in ["g.db", "g.db-wal", "g.db-shm"] {
        let file = db.with_file_name(name);
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(&dir.path().join("state").join("deeper")), 0o700);
    // Without a master key the server says, loudly, that its keys are stored in clear.
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("WARNING: no master key"), "{log}");
    assert!(log.contains("stored in clear"), "{log}");
}

#[test]
fn with_a_master_key_no_server_key_is_in_the_database_file_in_clear() {
    let (key, _) = master_keys();
    let env = [("GRANTED_MASTER_KEY", key.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let db_text = db.to_str().unwrap();
    import(db_text, &env);
    succeeded(&granted(&["keys", "rotate"], db_text, &env));
    let keys = clear_keys(db_text, dir.path(), &env);
    assert_eq!(
        keys.len(),
        4,
        "two signing keys, the client-secret key, the edge's private scalar"
    );
    assert_not_in_file(&db, &keys);
}

#[test]
fn keys_stored_in_clear_are_sealed_by_the_first_command_with_a_master_key() {
    let (key, _) = master_keys();
    let env = [("GRANTED_MASTER_KEY", key.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let db_text = db.to_str().unwrap();
    import(db_text, &[]);
    let keys = clear_keys(db_text, dir.path(), &[]);
    assert_eq!(keys.len(), 3);
    let in_file = keys
        .iter()
        .filter(|k| file_bytes(&db).windows(k.len()).any(|w| w == k.as_bytes()))
        .count();
    assert_eq!(
        in_file, 2,
        "without a master key the keys are in the file in clear"
    );
    let out = granted(&["keys", "rotate"], db_text, &env);
    let stderr = succeeded(&out);
    assert!(stderr.contains("sealed 2 server keys"), "{stderr}");
    assert_not_in_file(&db, &keys);
    // The sealed keys are the same keys.
    let after = clear_keys(db_text, dir.path(), &env);
    assert!(keys.iter().all(|k| after.contains(k)), "{after:?}");
    // Without the master key, the store's keys cannot be read.
    let stderr = failed(&granted(
        &[
            "export",
            "--edge",
            "/dev/null",
            "--edge-secrets",
            "/dev/null",
        ],
        db_text,
        &[],
    ));
    assert!(stderr.contains("the stored keys are sealed"), "{stderr}");
}

#[test]
fn a_wrong_or_badly_written_master_key_is_refused_with_a_clear_message() {
    let (key, other) = master_keys();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let db_text = db.to_str().unwrap();
    import(db_text, &[("GRANTED_MASTER_KEY", &key)]);
    for command in [
        &["keys", "rotate"][..],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let stderr = failed(&granted(
            command,
            db_text,
            &[("GRANTED_MASTER_KEY", &other)],
        ));
        assert!(
            stderr.contains("the master key does not open the stored keys"),
            "{stderr}"
        );
        assert!(
            !stderr.contains(&other) && !stderr.contains(&key),
            "{stderr}"
        );
    }
    // Hex, too short, not base64: refused, and the value is never echoed.
    for bad in [
        "11".repeat(32),
        STANDARD.encode([0x11u8; 16]),
        "this is no key".to_string(),
    ] {
        let stderr = failed(&granted(
            &["keys", "rotate"],
            db_text,
            &[("GRANTED_MASTER_KEY", &bad)],
        ));
        assert!(
            stderr.contains("GRANTED_MASTER_KEY is not a master key")
                && stderr.contains("32 bytes in standard base64"),
            "{stderr}"
        );
        assert!(!stderr.contains(&bad), "{stderr}");
    }
    // A key file readable by others is refused; 0600 and 0400 are taken.
    let file = dir.path().join("master.key");
    std::fs::write(&file, format!("{key}\n")).unwrap();
    let with_file = [
        "keys",
        "rotate",
        "--master-key-file",
        file.to_str().unwrap(),
    ];
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let stderr = failed(&granted(&with_file, db_text, &[]));
        assert!(
            stderr.contains("must be readable by its owner only"),
            "{stderr}"
        );
        assert!(!stderr.contains(&key), "{stderr}");
    }
    for mode in [0o600, 0o400] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        succeeded(&granted(&with_file, db_text, &[]));
    }
    // The key and a key file both in the environment: which one is meant is not guessed.
    let stderr = failed(&granted(
        &["keys", "rotate"],
        db_text,
        &[
            ("GRANTED_MASTER_KEY", &key),
            ("GRANTED_MASTER_KEY_FILE", file.to_str().unwrap()),
        ],
    ));
    assert!(stderr.contains("both set"), "{stderr}");
}

#[test]
fn keys_rewrap_moves_the_keys_to_a_new_master_key_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    rewrap_keeps_tokens_valid(db.to_str().unwrap(), dir.path());
    let keys = clear_keys(
        db.to_str().unwrap(),
        dir.path(),
        &[("GRANTED_MASTER_KEY", &master_keys().1)],
    );
    assert_not_in_file(&db, &keys);
}

#[test]
fn keys_rewrap_moves_the_keys_to_a_new_master_key_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let url = granted_host::testing::fresh_database().expect("a PostgreSQL database");
    rewrap_keeps_tokens_valid(&url, dir.path());
}

/// With the old master key: import, and a token from a running server. `keys rewrap` to the new
/// master key; then the old key is refused, the new one opens, and the token is still active.
fn rewrap_keeps_tokens_valid(db: &str, dir: &Path) {
    let (old, new) = master_keys();
    let old_env = [("GRANTED_MASTER_KEY", old.as_str())];
    let new_env = [("GRANTED_MASTER_KEY", new.as_str())];
    import(db, &old_env);
    let reports = basic("reports-2", "reports-2-secret");
    let (token, before) = {
        let served = Served::start(db, dir, &old_env);
        let (status, body) = post(
            &served.base,
            "/tenants/globex/connect/token",
            &reports,
            "grant_type=client_credentials",
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let log = std::fs::read_to_string(&served.log).unwrap();
        assert!(log.contains("sealed under master key"), "{log}");
        assert!(!log.contains(&old), "the master key is in the log");
        (
            body["access_token"].as_str().unwrap().to_string(),
            clear_keys(db, dir, &old_env),
        )
    };
    // No new key: refused, nothing changed.
    let stderr = failed(&granted(&["keys", "rewrap"], db, &old_env));
    assert!(stderr.contains("no new master key"), "{stderr}");
    let rewrap = || {
        granted(
            &["keys", "rewrap"],
            db,
            &[
                ("GRANTED_MASTER_KEY", old.as_str()),
                ("GRANTED_NEW_MASTER_KEY", new.as_str()),
            ],
        )
    };
    let out = rewrap();
    succeeded(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("2 moved from the old master key"),
        "{stdout}"
    );
    assert!(!stdout.contains(&new) && !stdout.contains(&old), "{stdout}");
    // The old master key no longer opens them; the new one does, and they are the same keys.
    let stderr = failed(&granted(&["keys", "rotate"], db, &old_env));
    assert!(
        stderr.contains("the master key does not open the stored keys"),
        "{stderr}"
    );
    assert_eq!(clear_keys(db, dir, &new_env), before);
    // Again: nothing to move.
    let out = rewrap();
    succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 were already under it"));
    let served = Served::start(db, dir, &new_env);
    let (status, seen) = post(
        &served.base,
        "/tenants/globex/connect/introspect",
        &reports,
        &format!("token={token}"),
    )
    .unwrap();
    assert_eq!(
        (status, &seen["active"]),
        (200, &Value::Bool(true)),
        "{seen}"
    );
}

/// `granted serve` on `db` with `env`, stopped on drop.
struct Served {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Served {
    fn start(db: &str, dir: &Path, env: &[(&str, &str)]) -> Served {
        let port = free_port();
        let log = dir.join(format!("serve-{port}.log"));
        let child = Command::new(GRANTED)
            .args(["serve", "--kdf-iterations", "1000", "--db", db])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("GRANTED_MASTER_KEY")
            .env_remove("GRANTED_MASTER_KEY_FILE")
            .env("GRANTED_CACHE_DIR", dir.join("cache"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let served = Served {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        wait_healthy(&served.base);
        served
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a child on drop.
struct Stop<'a>(&'a mut Child);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `/healthz` to answer: a ceiling for a server that never starts, not a timing.
fn wait_healthy(base: &str) {
    let started = Instant::now();
    while agent().get(format!("{base}/healthz")).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
