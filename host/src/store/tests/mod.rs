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
                    "DROP TABLE IF EXISTS identity_providers;
                 DROP TABLE audit_anchor; DROP TABLE admin_tokens; DROP TABLE audit;
                 DROP TABLE refresh_tokens; DROP TABLE login_failures; DROP TABLE users;
                 DROP TABLE installs; DROP TABLE tenants; DROP TABLE clients;
                 DROP TABLE revisions; DROP TABLE apps; DROP TABLE server_keys;
                 DROP TABLE schema_version; DROP TABLE IF EXISTS throttle_failures;
                 DROP TABLE IF EXISTS codes; DROP TABLE IF EXISTS consents;
                 DROP TABLE IF EXISTS records_version",
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
        let jobs = [0, 1].map(|i| Job {
            effects: vec![
                Effect::ConsumeRefreshToken {
                    token_sha256: old.clone(),
                },
                Effect::StoreRefreshToken {
                    record: RefreshTokenRecord {
                        family_id: family.clone(),
                        ..record(&format!("new-{round}-{i}"), RefreshStatus::Active)
                    },
                },
            ],
            audits: vec![("token".into(), format!("{{\"host\":{i}}}"))],
            now,
        });
        let mut outcomes = at_once([&a, &b], |i, store| {
            store
                .apply_batch(std::slice::from_ref(&jobs[i]))
                .unwrap()
                .pop()
                .unwrap()
        });
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

/// Two stores on one database appending to the audit log at once: every entry lands, each on
/// its store's own chain, and every chain verifies.
fn two_hosts_append_to_one_audit_chain(a: Store, b: Store) {
    let now = t("2026-11-25T12:00:00Z");
    at_once([&a, &b], |i, store| {
        for n in 0..50 {
            let job = Job {
                effects: vec![],
                audits: vec![("token".into(), format!("{{\"host\":{i},\"n\":{n}}}"))],
                now,
            };
            let outcome = store.apply_batch(&[job]);
            assert_eq!(outcome.unwrap(), vec![Applied::Done], "host {i}, entry {n}");
        }
    });
    assert_eq!(a.verify_audit().unwrap(), (100, None));
}

/// Runs `work(i, store)` for both stores at once, each on a thread of its own, both started
/// together; the results in the stores' order. A panic on either thread fails the test.
fn at_once<T: Send>(stores: [&Store; 2], work: impl Fn(usize, &Store) -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        let threads: Vec<_> = stores
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    work(i, store)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
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
    let fail = Effect::RecordLoginFailure {
        tenant: "acme".into(),
        username: "alice".into(),
        lockout: schedule,
    };
    at_once([&a, &b], |_, store| {
        for _ in 0..5 {
            let outcome = store.apply(std::slice::from_ref(&fail), now).unwrap();
            assert_eq!(outcome, Applied::Done);
        }
    });
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
            ..Lookup::default()
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
                audits: vec![("token".into(), r#"{"tenant":"ac\u0000me"}"#.into())],
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
            identity_provider: None,
        };
        let user = UserRecord {
            sub: None,
            username: "alice".into(),
            sign_in: SignIn::Direct,
            password_hash: Some("pbkdf2_sha256$1000$salt$old".into()),
            password_changed_at: Some(now),
            disabled: false,
            locked_until: None,
            federated_subject: None,
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

/// An active refresh token of `crm-1` in `acme`, issued at `now`, its family named after it.
fn active_token(sha: &str, username: Option<&str>, now: Timestamp) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_sha256: sha.into(),
        family_id: format!("fam-{sha}"),
        tenant: "acme".into(),
        client_id: "crm-1".into(),
        username: username.map(str::to_string),
        scope: "openid".into(),
        grant_type: GrantType::Password,
        issued_at: now,
        expires_at: t("2026-12-25T12:00:00Z"),
        status: RefreshStatus::Active,
    }
}

on_both!(
    a_refresh_lookup_reads_the_user_it_names_ahead_in_its_snapshot,
    |store| {
        use granted_policy::model::{SignIn, TenantRecord, UserRecord};
        let now = t("2026-11-25T12:00:00Z");
        let user = UserRecord {
            sub: Some("u-1".into()),
            username: "alice".into(),
            sign_in: SignIn::Direct,
            password_hash: None,
            password_changed_at: Some(now),
            disabled: false,
            locked_until: None,
            federated_subject: None,
        };
        let token = |sha: &str, username: Option<&str>| active_token(sha, username, now);
        store
            .write(|w| {
                w.put_tenant(&TenantRecord {
                    tenant: "acme".into(),
                    sso_required: false,
                    password_max_age_days: None,
                    installs: vec![],
                    identity_provider: None,
                })?;
                w.put_user("acme", &user)?;
                w.put_refresh(&token("with-user", Some("alice")))?;
                w.put_refresh(&token("gone-user", Some("bob")))?;
                w.put_refresh(&token("no-user", None))
            })
            .unwrap();
        let first = |sha: &str| Lookup {
            tenant: "acme".into(),
            client_id: "crm-1".into(),
            refresh_token_sha256: Some(sha.into()),
            ..Lookup::default()
        };
        let json = |r: &Records| serde_json::to_value(r).unwrap();
        // The first step's records are what `records` reads; the step after (the same lookup
        // with the user the token names) is read with them, as `records` would read it.
        for (sha, username) in [("with-user", "alice"), ("gone-user", "bob")] {
            let (records, ahead) = store.records_ahead(&first(sha)).unwrap();
            assert_eq!(json(&records), json(&store.records(&first(sha)).unwrap()));
            let ahead = ahead.expect("the user's lookup is read ahead");
            assert_eq!(ahead.lookup.username.as_deref(), Some(username));
            assert_eq!(
                Lookup {
                    username: None,
                    ..ahead.lookup.clone()
                },
                first(sha),
                "nothing else differs"
            );
            assert_eq!(
                json(&ahead.records),
                json(&store.records(&ahead.lookup).unwrap())
            );
        }
        let (_, ahead) = store.records_ahead(&first("with-user")).unwrap();
        assert_eq!(ahead.unwrap().records.user, Some(Some(user.clone())));
        // Nothing to read ahead: no user named, no token found, or the lookup names the user.
        assert!(store.records_ahead(&first("no-user")).unwrap().1.is_none());
        assert!(store.records_ahead(&first("unknown")).unwrap().1.is_none());
        let named = Lookup {
            username: Some("alice".into()),
            ..first("with-user")
        };
        assert!(store.records_ahead(&named).unwrap().1.is_none());
    }
);

on_both!(
    a_refresh_on_a_shared_database_is_read_by_one_statement_as_by_a_snapshot,
    |store| {
        use granted_policy::model::{App, SignIn, TenantRecord, UserRecord};
        let now = t("2026-11-25T12:00:00Z");
        let state: crate::state::StateFile =
            serde_json::from_str(include_str!("../../../../tests/demo/state.json")).unwrap();
        let crm = state.apps.iter().find(|a| a.app_id == "crm").unwrap();
        let token = |sha: &str, username: Option<&str>| active_token(sha, username, now);
        store
            .write(|w| {
                w.put_app(&App {
                    app_id: crm.app_id.clone(),
                    created_at: crm.created_at,
                    revisions: crm.revisions.clone(),
                })?;
                w.put_client("crm-1", "crm", "hmac")?;
                w.put_tenant(&TenantRecord {
                    tenant: "acme".into(),
                    sso_required: false,
                    password_max_age_days: None,
                    installs: vec![],
                    identity_provider: None,
                })?;
                w.put_user(
                    "acme",
                    &UserRecord {
                        sub: Some("u-1".into()),
                        username: "alice".into(),
                        sign_in: SignIn::Direct,
                        password_hash: Some("pbkdf2_sha256$1000$salt$hash".into()),
                        password_changed_at: Some(now),
                        disabled: false,
                        locked_until: Some(t("2026-11-25T12:05:00Z")),
                        federated_subject: None,
                    },
                )?;
                w.put_refresh(&token("with-user", Some("alice")))?;
                w.put_refresh(&token("gone-user", Some("bob")))?;
                w.put_refresh(&token("no-user", None))
            })
            .unwrap();
        // A lock, so that the user's columns from `login_failures` are read too.
        let lock = Effect::RecordLoginFailure {
            tenant: "acme".into(),
            username: "alice".into(),
            lockout: granted_policy::token::lockout::LockSchedule {
                lock_after: 1,
                ..default_schedule()
            },
        };
        store.apply(&[lock], now).unwrap();
        let check = |client_id: &str| ThrottleCheck {
            client_id: client_id.into(),
            source: "192.0.2.1".into(),
            now_ms: 1_000_000,
            window_ms: 60_000,
            limit: 2,
        };
        let lookup = |sha: &str| Lookup {
            tenant: "acme".into(),
            client_id: "crm-1".into(),
            refresh_token_sha256: Some(sha.into()),
            ..Lookup::default()
        };
        let json = |r: &Records| serde_json::to_value(r).unwrap();
        // The statement reads what the record readers read.
        for (sha, username) in [
            ("with-user", Some("alice")),
            ("gone-user", Some("bob")),
            ("no-user", None),
            ("unknown", None),
        ] {
            let (wait, version, token, user) = store
                .read(|db| throttle::refresh_at_once(db, &check("crm-1"), "acme", sha))
                .unwrap();
            assert_eq!(wait, None);
            assert!(version.is_some());
            assert_eq!(token, store.refresh_token(sha).unwrap(), "{sha}");
            let expected = match username {
                Some(u) => store.read(|db| user_record(db, "acme", u)).unwrap(),
                None => None,
            };
            assert_eq!(user, expected, "{sha}");
        }
        assert!(store
            .read(|db| user_record(db, "acme", "alice"))
            .unwrap()
            .unwrap()
            .locked_until
            .is_some());
        // The records and the lookup read ahead are the snapshot's, before and after the
        // tenant and the client are cached (the first call caches them).
        for round in 0..2 {
            for sha in ["with-user", "gone-user", "no-user", "unknown"] {
                let (records, ahead) = store
                    .records_unless_throttled(&lookup(sha), &check("crm-1"))
                    .unwrap()
                    .unwrap();
                let (want, want_ahead) = store.records_ahead(&lookup(sha)).unwrap();
                assert_eq!(json(&records), json(&want), "{sha}, round {round}");
                assert_eq!(
                    ahead.as_ref().map(|a| (&a.lookup, json(&a.records))),
                    want_ahead.as_ref().map(|a| (&a.lookup, json(&a.records))),
                    "{sha}, round {round}"
                );
            }
        }
        // Over the limit, the wait comes back instead.
        store
            .throttle_record(
                &[
                    ("crm-1".into(), "192.0.2.1".into(), 990_000),
                    ("crm-1".into(), "192.0.2.1".into(), 995_000),
                ],
                1_000_000,
                60_000,
            )
            .unwrap();
        assert_eq!(
            store
                .records_unless_throttled(&lookup("with-user"), &check("crm-1"))
                .unwrap()
                .err(),
            Some(50_000)
        );
    }
);

// PostgreSQL URLs: parsed, pointed at another database, shown without their password; TLS.
mod location;
// The server keys: sealed under a master key, rewrapped, and the database files owner-only.
mod keys;

mod chains;
// A tenant's identity provider and users' federated subjects (RULES.md §6).
mod providers;
// Refresh-token rotations of one batch applied together.
mod rotation;
