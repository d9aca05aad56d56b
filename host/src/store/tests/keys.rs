//! The store's tests of the server keys at rest: sealed under a master key, rewrapped to a new
//! one, and the SQLite files owner-only.

use super::*;

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
