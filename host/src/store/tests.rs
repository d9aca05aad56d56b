//! The store's tests, each on SQLite and on PostgreSQL.

use super::*;
use granted_policy::token::endpoint::Effect;
use granted_policy::token::jwt::SigningAlg;

fn t(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// The lock schedule the module gives with the default settings (5 failures; 60 s doubling to
/// an hour).
fn default_schedule() -> granted_policy::token::lockout::LockSchedule {
    granted_policy::token::lockout::schedule(&Default::default())
}

/// Runs a test on a fresh store of each backend: `$name::sqlite` and `$name::postgres`.
macro_rules! on_both {
    ($name:ident, $test:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                let test: fn(Store) = $test;
                test(Store::in_memory().unwrap());
            }

            #[test]
            fn postgres() {
                let test: fn(Store) = $test;
                test(crate::testing::postgres_store().unwrap());
            }
        }
    };
}

on_both!(
    migration_4_fills_the_audit_search_columns_of_older_entries,
    |store| {
        // Start again from schema version 3, with one token decision in the audit log.
        store
            .write_tx(|db| {
                db.batch(
                    "DROP TABLE audit_anchor; DROP TABLE admin_tokens; DROP TABLE audit;
                 DROP TABLE refresh_tokens; DROP TABLE login_failures; DROP TABLE users;
                 DROP TABLE installs; DROP TABLE tenants; DROP TABLE clients;
                 DROP TABLE revisions; DROP TABLE apps; DROP TABLE server_keys;
                 DROP TABLE schema_version; DROP TABLE IF EXISTS throttle_failures",
                )?;
                migrate_to(db, 3)
            })
            .unwrap();
        assert_eq!(store.schema_version().unwrap(), 3);
        let entry = r#"{"kind":"token","tenant":"acme","app_id":"crm","grant_type":"password","decision":"granted"}"#;
        let sha = audit_hash(AUDIT_GENESIS, entry);
        store
            .write_tx(|db| {
                db.exec(
                    "INSERT INTO audit (seq, at, kind, entry, prev_sha256, sha256)
                 VALUES (1, '2026-11-20T00:00:00Z', 'token', ?1, ?2, ?3)",
                    &[&entry, &AUDIT_GENESIS, &sha],
                )
            })
            .unwrap();
        store.write_tx(migrate).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(
            store.verify_audit().unwrap(),
            (1, None),
            "the chain is untouched"
        );
        let found = store
            .audit_search(
                &AuditFilter {
                    tenant: Some("acme".into()),
                    grant_type: Some("password".into()),
                    decision: Some("granted".into()),
                    ..AuditFilter::default()
                },
                10,
            )
            .unwrap();
        assert_eq!(found.len(), 1);
        let used = store.password_use(t("2026-11-25T00:00:00Z")).unwrap();
        assert_eq!(used.len(), 1);
        assert_eq!((used[0].last_7_days, used[0].last_30_days), (1, 1));
    }
);

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    store
        .write_tx(|db| db.exec("INSERT INTO schema_version (version) VALUES (999)", &[]))
        .unwrap();
    drop(store);
    let err = Store::open(&path).err().unwrap().to_string();
    assert!(err.contains("newer"), "{err}");
}

#[test]
fn postgres_migrates_once_and_refuses_a_newer_schema() {
    let url = crate::testing::fresh_database().unwrap();
    let store = Store::connect(&url, PgOptions::default()).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    // Two hosts starting at once: each takes the write lock, the second finds it done.
    let both: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Store::connect(&url, PgOptions::default()).map(|_| ()))
        })
        .collect();
    for host in both {
        host.join().unwrap().unwrap();
    }
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    store
        .write_tx(|db| db.exec("INSERT INTO schema_version (version) VALUES (999)", &[]))
        .unwrap();
    let err = format!(
        "{:#}",
        Store::connect(&url, PgOptions::default()).err().unwrap()
    );
    assert!(err.contains("newer"), "{err}");
}

#[test]
fn a_bad_postgres_url_or_an_unreachable_server_is_a_clear_error_without_the_password() {
    let err = format!(
        "{:#}",
        Store::connect("postgres://u:hunter2@h:notaport/db", PgOptions::default())
            .err()
            .unwrap()
    );
    assert!(err.contains("not a PostgreSQL URL"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PgOptions {
        connect_timeout: std::time::Duration::from_millis(500),
        ..PgOptions::default()
    };
    let url = format!("postgres://granted:hunter2@127.0.0.1:{port}/granted");
    let err = format!("{:#}", Store::connect(&url, options).err().unwrap());
    assert!(err.contains("could not connect to"), "{err}");
    assert!(err.contains("granted:***@127.0.0.1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn a_url_is_pointed_at_another_database() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres", "g_1"),
        "postgres://u:p@h:5432/g_1"
    );
    assert_eq!(with_database("postgres://h", "g_1"), "postgres://h/g_1");
    assert_eq!(
        with_database("postgresql://h/db?sslmode=disable", "g_1"),
        "postgresql://h/g_1?sslmode=disable"
    );
}

#[test]
fn postgres_over_tls_checks_the_certificate() {
    let mut cluster = crate::testing::Cluster::new().unwrap();
    let ca = cluster.enable_tls().unwrap();
    cluster.start().unwrap();
    // The administrator's own connection skips TLS (it trusts no test CA).
    let admin = PgServer::connect(&format!("{}?sslmode=disable", cluster.url())).unwrap();
    let made = admin.create("tls").unwrap();
    let url = made.split('?').next().unwrap();
    let options = |ca_file: Option<std::path::PathBuf>| PgOptions {
        ca_file,
        connect_timeout: std::time::Duration::from_secs(1),
        ..PgOptions::default()
    };
    let ssl = |store: &Store| -> bool {
        store
            .read(|db| {
                db.value(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
            })
            .unwrap()
    };
    // Trusting the server's certificate: TLS, whether required or only preferred.
    let required = format!("{url}?sslmode=require");
    assert!(ssl(
        &Store::connect(&required, options(Some(ca.clone()))).unwrap()
    ));
    assert!(ssl(&Store::connect(url, options(Some(ca))).unwrap()));
    // Not trusting it: refused, and the error says why.
    let err = format!(
        "{:#}",
        Store::connect(&required, options(None)).err().unwrap()
    );
    assert!(err.contains("certificate"), "{err}");
    // `sslmode=disable`: no TLS, nothing to trust.
    let plain = format!("{url}?sslmode=disable");
    assert!(!ssl(&Store::connect(&plain, options(None)).unwrap()));
}

#[test]
fn locations_and_redaction() {
    assert_eq!(
        Location::parse("postgres://h/db"),
        Location::Postgres("postgres://h/db".into())
    );
    assert_eq!(
        Location::parse("postgresql://h/db"),
        Location::Postgres("postgresql://h/db".into())
    );
    assert_eq!(
        Location::parse("granted.db"),
        Location::File("granted.db".into())
    );
    for (url, shown) in [
        (
            "postgres://u:secret@h:5432/db",
            "postgres://u:***@h:5432/db",
        ),
        // The port is always named (5432 when the URL gives none).
        ("postgres://u@h/db", "postgres://u@h:5432/db"),
        ("postgres://h/db", "postgres://h:5432/db"),
        (
            "postgres://h/db?user=u&password=secret&sslmode=disable",
            "postgres://u:***@h:5432/db?sslmode=disable",
        ),
        (
            "not a url at all",
            "(a PostgreSQL URL that does not parse, not shown)",
        ),
    ] {
        assert_eq!(redact_url(url), shown);
    }
    // A `Location`'s `Debug` is redacted as well.
    let location = Location::parse("postgres://u:secret@h/db");
    assert!(!format!("{location:?}").contains("secret"));
}

/// The redaction used to cut the password out of the URL's text, and a password with `/` in
/// it came through whole: it is now rebuilt from the parsed settings.
#[test]
fn a_password_with_url_characters_never_shows_in_a_redacted_url() {
    // (the password as the URL spells it, as the server gets it)
    let passwords = [
        ("s3/cr3t/pw", "s3/cr3t/pw"),
        ("s3cr?t?pw", "s3cr?t?pw"),
        ("s3:cr:3t", "s3:cr:3t"),
        ("s3%2Fcr%2F3t", "s3/cr/3t"),
        ("s3%40cr%403t", "s3@cr@3t"),
        ("p%3Fw%3Ax%25y", "p?w:x%y"),
    ];
    for (spelled, decoded) in passwords {
        for url in [
            format!("postgres://granted:{spelled}@db.example:6543/tokens"),
            format!("postgresql://granted:{spelled}@db.example:6543/tokens?sslmode=require"),
            format!("postgres://db.example:6543/tokens?user=granted&password={spelled}"),
        ] {
            let shown = redact_url(&url);
            check_redacted(&url, &shown, &[spelled, decoded]);
            assert!(
                shown.starts_with("postgres://granted:***@db.example:6543/tokens"),
                "{shown}"
            );
            assert_eq!(Location::parse(&url).redacted(), shown);
        }
        // The key=value form: its password is the value as written.
        let kv = format!(
            "host=db.example port=6543 user=granted dbname=tokens password='{}'",
            decoded.replace('\\', "\\\\").replace('\'', "\\'")
        );
        let shown = redact_url(&kv);
        check_redacted(&kv, &shown, &[decoded]);
        assert_eq!(shown, "postgres://granted:***@db.example:6543/tokens");
    }
    // An `@` that was not percent-encoded ends the user part early: the driver reads the rest
    // of the password as the host, which is then not shown either.
    let shown = redact_url("postgres://granted:p@ss@db.example:6543/tokens");
    assert_eq!(shown, "postgres://granted:***@***:6543/tokens");
}

fn check_redacted(url: &str, shown: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!shown.contains(secret), "{url} shown as {shown}");
    }
    for part in ["granted", "db.example", "6543", "tokens"] {
        assert!(shown.contains(part), "{url} shown as {shown}: no {part}");
    }
}

/// Two stores on one database, as two hosts: the same refresh token consumed by both at
/// once is honoured once, and the loser's attempt revokes the family; both appended to one
/// audit chain, which still verifies.
fn two_hosts_race_for_one_refresh_token(a: Store, b: Store) {
    let now = t("2026-11-25T12:00:00Z");
    let record = |sha: &str, status| RefreshTokenRecord {
        token_sha256: sha.into(),
        family_id: "fam-1".into(),
        tenant: "acme".into(),
        client_id: "crm-1".into(),
        username: Some("alice".into()),
        scope: "openid".into(),
        grant_type: GrantType::Password,
        issued_at: now,
        expires_at: t("2026-12-25T12:00:00Z"),
        status,
    };
    for round in 0..20 {
        let old = format!("old-{round}");
        let family = format!("fam-{round}");
        a.write(|w| {
            w.put_refresh(&RefreshTokenRecord {
                family_id: family.clone(),
                ..record(&old, RefreshStatus::Active)
            })
        })
        .unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let hosts: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let barrier = barrier.clone();
                let old = old.clone();
                let new = RefreshTokenRecord {
                    family_id: family.clone(),
                    ..record(&format!("new-{round}-{i}"), RefreshStatus::Active)
                };
                std::thread::spawn(move || {
                    let job = Job {
                        effects: vec![
                            Effect::ConsumeRefreshToken { token_sha256: old },
                            Effect::StoreRefreshToken { record: new },
                        ],
                        audit: Some(("token".into(), format!("{{\"host\":{i}}}"))),
                        now,
                    };
                    barrier.wait();
                    store.apply_batch(&[job]).unwrap().pop().unwrap()
                })
            })
            .collect();
        let mut outcomes: Vec<Applied> = hosts.into_iter().map(|h| h.join().unwrap()).collect();
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            outcomes,
            vec![Applied::Done, Applied::RefreshRace],
            "round {round}"
        );
        // The loser's attempt revoked the family, the winner's new token with it.
        let mut stored = 0;
        for i in 0..2 {
            if let Some(r) = a.refresh_token(&format!("new-{round}-{i}")).unwrap() {
                assert_eq!(r.status, RefreshStatus::Revoked, "round {round}");
                stored += 1;
            }
        }
        assert_eq!(stored, 1, "only the winner's new token is stored");
        assert_eq!(
            a.refresh_token(&old).unwrap().unwrap().status,
            RefreshStatus::Used
        );
    }
    assert_eq!(b.verify_audit().unwrap(), (20, None));
}

/// Two stores on one database appending to the audit log at once: every entry lands, in
/// one chain.
fn two_hosts_append_to_one_audit_chain(a: Store, b: Store) {
    let now = t("2026-11-25T12:00:00Z");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let hosts: Vec<_> = [a.clone(), b]
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for n in 0..50 {
                    let job = Job {
                        effects: vec![],
                        audit: Some(("token".into(), format!("{{\"host\":{i},\"n\":{n}}}"))),
                        now,
                    };
                    let outcome = store.apply_batch(&[job]);
                    assert_eq!(outcome.unwrap(), vec![Applied::Done], "host {i}, entry {n}");
                }
            })
        })
        .collect();
    for host in hosts {
        host.join().unwrap();
    }
    assert_eq!(a.verify_audit().unwrap(), (100, None));
}

/// Runs a test on two stores sharing one database, as two hosts: `$name::sqlite` (one
/// file) and `$name::postgres`.
macro_rules! on_two_hosts {
    ($name:ident, $test:ident) => {
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("g.db");
                $test(Store::open(&path).unwrap(), Store::open(&path).unwrap());
            }

            #[test]
            fn postgres() {
                let url = crate::testing::fresh_database().unwrap();
                let open = || Store::connect(&url, PgOptions::default()).unwrap();
                $test(open(), open());
            }
        }
    };
}

on_two_hosts!(
    audit_chain_across_hosts,
    two_hosts_append_to_one_audit_chain
);
on_two_hosts!(
    refresh_race_across_hosts,
    two_hosts_race_for_one_refresh_token
);
on_two_hosts!(
    failure_counts_across_hosts,
    two_hosts_count_failures_at_once
);

/// Two stores on one database counting failed logins for one user at once: none is lost, so
/// ten failures with `lock_after` 10 make exactly one lock.
fn two_hosts_count_failures_at_once(a: Store, b: Store) {
    let now = t("2026-11-25T12:00:00Z");
    let schedule = granted_policy::token::lockout::schedule(
        &granted_policy::token::lockout::LockoutSettings {
            threshold: 10,
            ..Default::default()
        },
    );
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let hosts: Vec<_> = [a.clone(), b]
        .into_iter()
        .map(|store| {
            let barrier = barrier.clone();
            let fail = Effect::RecordLoginFailure {
                tenant: "acme".into(),
                username: "alice".into(),
                lockout: schedule.clone(),
            };
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..5 {
                    let outcome = store.apply(std::slice::from_ref(&fail), now).unwrap();
                    assert_eq!(outcome, Applied::Done);
                }
            })
        })
        .collect();
    for host in hosts {
        host.join().unwrap();
    }
    assert_eq!(
        a.locked_until("acme", "alice").unwrap(),
        Some(t("2026-11-25T12:01:00Z"))
    );
}

on_both!(
    failures_lock_after_the_threshold_and_the_lock_doubles,
    |store| {
        let now = t("2026-11-25T12:00:00Z");
        let fail = Effect::RecordLoginFailure {
            tenant: "acme".into(),
            username: "nobody".into(),
            lockout: default_schedule(),
        };
        for _ in 0..4 {
            store.apply(std::slice::from_ref(&fail), now).unwrap();
        }
        assert_eq!(store.locked_until("acme", "nobody").unwrap(), None);
        store.apply(std::slice::from_ref(&fail), now).unwrap();
        assert_eq!(
            store.locked_until("acme", "nobody").unwrap(),
            Some(t("2026-11-25T12:01:00Z"))
        );
        for _ in 0..5 {
            store.apply(std::slice::from_ref(&fail), now).unwrap();
        }
        assert_eq!(
            store.locked_until("acme", "nobody").unwrap(),
            Some(t("2026-11-25T12:02:00Z"))
        );
        let reset = [Effect::ResetLoginFailures {
            tenant: "acme".into(),
            username: "nobody".into(),
        }];
        // A success that meets a lock set meanwhile is undone, to be decided again.
        assert_eq!(store.apply(&reset, now).unwrap(), Applied::LockRace);
        assert!(store.locked_until("acme", "nobody").unwrap().is_some());
        let later = t("2026-11-25T12:03:00Z");
        assert_eq!(store.apply(&reset, later).unwrap(), Applied::Done);
        assert_eq!(store.locked_until("acme", "nobody").unwrap(), None);
    }
);

on_both!(
    throttle_waits_until_the_oldest_of_the_last_failures_leaves_the_window,
    |store| {
        let (window, limit, now) = (60_000, 3, 10_000_000);
        let fail =
            |client: &str, ago: i64| (client.to_string(), "192.0.2.1".to_string(), now - ago);
        let check = |client: &str, source: &str, now_ms| ThrottleCheck {
            client_id: client.into(),
            source: source.into(),
            now_ms,
            window_ms: window,
            limit,
        };
        let wait =
            |client: &str, source: &str| store.throttle_wait(&check(client, source, now)).unwrap();
        assert_eq!(wait("c", "192.0.2.1"), None);
        store
            .throttle_record(&[fail("c", 50_000), fail("c", 40_000)], now, window)
            .unwrap();
        assert_eq!(
            wait("c", "192.0.2.1"),
            None,
            "two failures, under the limit"
        );
        store
            .throttle_record(&[fail("c", 30_000)], now, window)
            .unwrap();
        assert_eq!(wait("c", "192.0.2.1"), Some(10_000));
        assert_eq!(wait("c", "192.0.2.2"), None, "another source");
        assert_eq!(wait("d", "192.0.2.1"), None, "another client");
        store
            .throttle_record(&[fail("c", 1_000)], now, window)
            .unwrap();
        assert_eq!(wait("c", "192.0.2.1"), Some(20_000), "the last three count");
        // Unknown clients' failures from a source throttle every client from it.
        store
            .throttle_record(
                &[fail("", 5_000), fail("", 4_000), fail("", 3_000)],
                now,
                window,
            )
            .unwrap();
        assert_eq!(wait("d", "192.0.2.1"), Some(55_000));
        assert_eq!(
            wait("c", "192.0.2.1"),
            Some(55_000),
            "the longer of the two"
        );
        // A minute later everything has left the window, and recording prunes it.
        let later = now + window;
        store.throttle_record(&[], later, window).unwrap();
        assert_eq!(
            store
                .throttle_wait(&check("c", "192.0.2.1", later))
                .unwrap(),
            None
        );
    }
);

on_both!(
    names_with_a_nul_are_unknown_or_counted_never_an_error,
    |store| {
        // A client may send `%00` in any name: lookups find nothing, failures are counted.
        let lookup = Lookup {
            tenant: "ac\0me".into(),
            client_id: "sync\0-1".into(),
            username: Some("al\0ice".into()),
            refresh_token_sha256: Some("ab\0c".into()),
        };
        let records = store.records(&lookup).unwrap();
        assert_eq!(records.tenant, Some(None));
        assert_eq!(records.client, Some(None));
        assert_eq!(records.user, Some(None));
        assert_eq!(records.refresh_token, Some(None));
        let now = t("2026-11-25T12:00:00Z");
        let fail = Effect::RecordLoginFailure {
            tenant: "acme".into(),
            username: "al\0ice".into(),
            lockout: default_schedule(),
        };
        for _ in 0..5 {
            let job = Job {
                effects: vec![fail.clone()],
                audit: Some(("token".into(), r#"{"tenant":"ac\u0000me"}"#.into())),
                now,
            };
            assert_eq!(store.apply_batch(&[job]).unwrap(), vec![Applied::Done]);
        }
        assert!(store.locked_until("acme", "al\0ice").unwrap().is_some());
        assert_eq!(store.locked_until("acme", "alice").unwrap(), None);
        assert_eq!(store.verify_audit().unwrap(), (5, None));
    }
);

on_both!(
    keys_are_made_once_and_a_rotated_key_still_verifies_until_its_tokens_expire,
    |store| {
        let now = t("2026-11-25T12:00:00Z");
        let mut n = 0;
        let mut entropy = || {
            n += 1;
            Ok(format!(
                "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0{n}"
            ))
        };
        let (first, _) = store
            .ensure_keys(now, SigningAlg::ES256, &mut entropy)
            .unwrap();
        let (again, _) = store
            .ensure_keys(now, SigningAlg::ES256, &mut entropy)
            .unwrap();
        assert_eq!(first.kid, again.kid);
        assert_eq!((first.alg, first.sign_from), (SigningAlg::ES256, now));
        crate::signing::ServerKey::open(&first.kid, first.alg, &first.secret).unwrap();
        // Rotated at 13:00: published at once, signing from 14:00, the first key verifying
        // until 15:00.
        let later = t("2026-11-25T13:00:00Z");
        let new = store
            .rotate_signing_key(
                later,
                t("2026-11-25T14:00:00Z"),
                t("2026-11-25T15:00:00Z"),
                SigningAlg::EdDSA,
                &crate::signing::generate(SigningAlg::EdDSA).unwrap(),
                "abc123",
            )
            .unwrap();
        assert_ne!(new.kid, first.kid);
        let signing_at = |at| store.current_keys(t(at)).unwrap().unwrap().0.kid;
        assert_eq!(signing_at("2026-11-25T13:59:59Z"), first.kid);
        assert_eq!(signing_at("2026-11-25T14:00:00Z"), new.kid);
        let (current, _) = store
            .ensure_keys(later, SigningAlg::ES256, &mut entropy)
            .unwrap();
        assert_eq!(current.kid, first.kid, "a pending key is not made current");
        let kids = |at| -> Vec<String> {
            store
                .verification_keys(t(at))
                .unwrap()
                .into_iter()
                .map(|k| k.kid)
                .collect()
        };
        assert_eq!(
            kids("2026-11-25T13:00:00Z"),
            vec![new.kid.clone(), first.kid.clone()]
        );
        assert_eq!(kids("2026-11-25T15:00:00Z"), vec![new.kid.clone()]);
    }
);

/// The stored text of every server key, by kid.
fn stored_keys(store: &Store) -> Vec<(String, String)> {
    store
        .read(|db| {
            db.rows(
                "SELECT kid, secret FROM server_keys ORDER BY kid",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .unwrap()
}

fn seal_error(err: &anyhow::Error) -> Option<&SealError> {
    err.chain().find_map(|e| e.downcast_ref::<SealError>())
}

on_both!(
    a_master_key_seals_the_keys_refuses_another_key_and_rewrap_moves_them,
    |store| {
        let now = t("2026-11-25T12:00:00Z");
        let (k1, k2) = (
            MasterKey::from_bytes([1; MASTER_KEY_LEN]),
            MasterKey::from_bytes([2; MASTER_KEY_LEN]),
        );
        let mut n = 0;
        let mut entropy = || {
            n += 1;
            Ok(format!(
                "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0{n}"
            ))
        };
        // Without a master key: in clear.
        let (signing, client) = store
            .ensure_keys(now, SigningAlg::HS256, &mut entropy)
            .unwrap();
        let clear = stored_keys(&store);
        assert!(clear.iter().any(|(_, s)| *s == signing.secret));
        assert!(clear.iter().any(|(_, s)| *s == client));
        // With one: the keys in clear are sealed at once, and new keys are made sealed.
        let (sealed, done) = store.clone().with_master_key(k1.clone()).unwrap();
        assert_eq!(done.sealed_from_clear, 2);
        let rotated = sealed
            .rotate_signing_key(
                t("2026-11-25T12:30:00Z"),
                t("2026-11-25T12:30:00Z"),
                t("2026-11-25T13:00:00Z"),
                SigningAlg::HS256,
                "bmV3LWtleQ==",
                "abc123",
            )
            .unwrap();
        let stored = stored_keys(&store);
        assert_eq!(stored.len(), 3);
        for (kid, text) in &stored {
            assert!(text.starts_with("sealed1:"), "{kid} is not sealed");
            for secret in [&signing.secret, &client, &rotated.secret] {
                assert!(!text.contains(secret.as_str()));
            }
        }
        let rotated_at = t("2026-11-25T12:30:00Z");
        let (current, key) = sealed.current_keys(rotated_at).unwrap().unwrap();
        assert_eq!(
            (current.secret.as_str(), key.as_str()),
            (rotated.secret.as_str(), client.as_str())
        );
        let secrets: Vec<String> = sealed
            .verification_keys(now)
            .unwrap()
            .into_iter()
            .map(|k| k.secret)
            .collect();
        assert_eq!(
            secrets,
            vec![rotated.secret.clone(), signing.secret.clone()]
        );
        // Without the master key the sealed keys cannot be read; with another, refused.
        let err = store.current_keys(now).unwrap_err();
        assert_eq!(
            seal_error(&err),
            Some(&SealError::MasterKeyMissing),
            "{err:#}"
        );
        let err = store.clone().with_master_key(k2.clone()).err().unwrap();
        assert_eq!(
            seal_error(&err),
            Some(&SealError::WrongMasterKey),
            "{err:#}"
        );
        assert!(format!("{err:#}").contains("the master key does not open the stored keys"));
        // Rewrap: the new key opens, the old does not, the keys are the same.
        let done = store.rewrap_keys(Some(&k1), &k2).unwrap();
        assert_eq!(
            (done.resealed, done.sealed_from_clear, done.unchanged),
            (3, 0, 0)
        );
        let err = store.clone().with_master_key(k1.clone()).err().unwrap();
        assert_eq!(
            seal_error(&err),
            Some(&SealError::WrongMasterKey),
            "{err:#}"
        );
        let (moved, done) = store.clone().with_master_key(k2.clone()).unwrap();
        assert!(!done.changed());
        assert_eq!(moved.current_keys(now).unwrap().unwrap().1, client);
        assert_eq!(
            moved.verification_keys(now).unwrap().len(),
            2,
            "both signing keys still verify"
        );
        // Again, or with the old key missing: nothing to move, nothing refused.
        let done = store.rewrap_keys(None, &k2).unwrap();
        assert_eq!((done.resealed, done.unchanged), (0, 3));
        // A rewrap that cannot open one key changes none.
        let k3 = MasterKey::from_bytes([3; MASTER_KEY_LEN]);
        let before = stored_keys(&store);
        let err = store.rewrap_keys(Some(&k1), &k3).unwrap_err();
        assert_eq!(
            seal_error(&err),
            Some(&SealError::WrongMasterKey),
            "{err:#}"
        );
        assert_eq!(stored_keys(&store), before);
        // A sealed value moved to another row does not open there.
        store
            .write_tx(|db| {
                db.exec(
                    "UPDATE server_keys SET secret = (SELECT secret FROM server_keys WHERE purpose = 'client_secret')
                     WHERE kid = ?1",
                    &[&rotated.kid],
                )
            })
            .unwrap();
        let err = moved.current_keys(rotated_at).unwrap_err();
        assert_eq!(
            seal_error(&err),
            Some(&SealError::Altered {
                kid: rotated.kid.clone()
            }),
            "{err:#}"
        );
    }
);

#[cfg(unix)]
#[test]
fn a_new_sqlite_database_and_its_log_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("made").join("g.db");
    let store = Store::open(&path).unwrap();
    store
        .ensure_keys(t("2026-11-25T12:00:00Z"), SigningAlg::ES256, || {
            Ok("a2V5".to_string())
        })
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&path.with_extension("db-wal")), 0o600);
    assert_eq!(mode(&path.with_extension("db-shm")), 0o600);
    assert_eq!(mode(&dir.path().join("made")), 0o700);
    drop(store);
    // An existing file keeps its mode (with a warning when others may read it).
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    drop(Store::open(&path).unwrap());
    assert_eq!(mode(&path), 0o640);
}
on_both!(
    a_new_password_hash_is_stored_only_over_the_hash_that_verified,
    |store| {
        use granted_policy::model::{SignIn, TenantRecord, UserRecord};
        let now = t("2026-11-25T12:00:00Z");
        let tenant = TenantRecord {
            tenant: "acme".into(),
            sso_required: false,
            password_max_age_days: None,
            installs: vec![],
        };
        let user = UserRecord {
            username: "alice".into(),
            sign_in: SignIn::Direct,
            password_hash: Some("pbkdf2_sha256$1000$salt$old".into()),
            password_changed_at: Some(now),
            disabled: false,
            locked_until: None,
        };
        store
            .write(|w| {
                w.put_tenant(&tenant)?;
                w.put_user("acme", &user)
            })
            .unwrap();
        let stored = || store.write(|w| w.password_hash("acme", "alice")).unwrap();
        let rehash = |replaces: &str, hash: &str| Effect::StorePasswordHash {
            tenant: "acme".into(),
            username: "alice".into(),
            hash: hash.into(),
            replaces: replaces.into(),
        };
        // A password changed since the login verified: the new one stays.
        let stale = [rehash(
            "pbkdf2_sha256$1000$salt$other",
            "$pbkdf2-sha256$i=1000,l=32$a$b",
        )];
        assert_eq!(store.apply(&stale, now).unwrap(), Applied::Done);
        assert_eq!(stored().as_deref(), Some("pbkdf2_sha256$1000$salt$old"));
        let current = [rehash(
            "pbkdf2_sha256$1000$salt$old",
            "$pbkdf2-sha256$i=1000,l=32$a$b",
        )];
        assert_eq!(store.apply(&current, now).unwrap(), Applied::Done);
        assert_eq!(stored().as_deref(), Some("$pbkdf2-sha256$i=1000,l=32$a$b"));
    }
);
