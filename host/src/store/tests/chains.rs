//! The audit chains per writer, and the token path's races decided row by row (no cluster-wide
//! lock): consents merged, a failed write ending its chain, retention anchoring every chain.

use super::*;

/// Two stores on one database keeping consents for one user and app at once: every scope
/// either one consented to is kept (each merge waits for the other's row).
fn two_hosts_merge_consents_at_once(a: Store, b: Store) {
    let now = t("2026-11-25T12:00:00Z");
    at_once([&a, &b], |i, store| {
        for n in 0..10 {
            let consent = Effect::StoreConsent {
                record: ConsentRecord {
                    tenant: "acme".into(),
                    username: "alice".into(),
                    app_id: "crm".into(),
                    scopes: vec![format!("s{i}-{n}")],
                },
            };
            let outcome = store.apply(std::slice::from_ref(&consent), now);
            assert_eq!(outcome.unwrap(), Applied::Done, "host {i}, consent {n}");
        }
    });
    let kept = a.consents().unwrap();
    assert_eq!(kept.len(), 1);
    let mut scopes = kept[0].scopes.clone();
    scopes.sort();
    let mut expected: Vec<String> = (0..2)
        .flat_map(|i| (0..10).map(move |n| format!("s{i}-{n}")))
        .collect();
    expected.sort();
    assert_eq!(scopes, expected, "no consent is lost");
}

on_two_hosts!(consents_across_hosts, two_hosts_merge_consents_at_once);

fn entry(n: i64) -> Job {
    Job {
        effects: vec![],
        audits: vec![("token".into(), format!("{{\"n\":{n}}}"))],
        now: t("2026-11-25T12:00:00Z"),
    }
}

on_both!(
    a_failed_write_ends_its_chain_and_the_next_starts_another,
    |store| {
        assert_eq!(store.apply_batch(&[entry(1), entry(2)]).unwrap().len(), 2);
        let first = lock(&store.chains.decisions).clone();
        assert_eq!(first.link, 2);
        // The audit table out of the way: the whole batch fails, nothing of it is written.
        store
            .write_tx(|db| db.batch("ALTER TABLE audit RENAME TO audit_away"))
            .unwrap();
        assert!(store.apply_batch(&[entry(3)]).is_err());
        store
            .write_tx(|db| db.batch("ALTER TABLE audit_away RENAME TO audit"))
            .unwrap();
        let second = lock(&store.chains.decisions).clone();
        assert_ne!(second.id, first.id, "a failed write starts a new chain");
        assert_eq!(second.link, 0);
        store.apply_batch(&[entry(4)]).unwrap();
        assert_eq!(store.verify_audit().unwrap(), (3, None));
        // The new chain's first entry links to its genesis, not to the old chain's head.
        let links: Vec<(String, i64, String)> = store
            .read(|db| {
                db.rows(
                    "SELECT chain, link, prev_sha256 FROM audit ORDER BY seq",
                    &[],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
            })
            .unwrap();
        assert_eq!(links[2], (second.id.clone(), 1, AUDIT_GENESIS.to_string()));
        assert_eq!((links[0].1, links[1].1), (1, 2));
    }
);

on_both!(an_entry_altered_or_removed_in_one_chain_is_found, |store| {
    let other = Store {
        chains: Arc::default(),
        ..store.clone()
    };
    for n in 0..3 {
        store.apply_batch(&[entry(n)]).unwrap();
        other.apply_batch(&[entry(10 + n)]).unwrap();
    }
    assert_eq!(store.verify_audit().unwrap(), (6, None));
    let seq_of = |n: i64| -> i64 {
        store
            .read(|db| {
                db.value(
                    "SELECT seq FROM audit WHERE entry = ?1",
                    &[&format!("{{\"n\":{n}}}")],
                )
            })
            .unwrap()
    };
    let (altered, removed) = (seq_of(11), seq_of(1));
    store
        .write_tx(|db| {
            db.exec(
                "UPDATE audit SET entry = '{\"n\":99}' WHERE seq = ?1",
                &[&altered],
            )
        })
        .unwrap();
    let (_, broken) = store.verify_audit().unwrap();
    assert_eq!(broken.unwrap().seq, altered);
    store
        .write_tx(|db| {
            db.exec(
                "UPDATE audit SET entry = '{\"n\":11}' WHERE seq = ?1",
                &[&altered],
            )?;
            db.exec("DELETE FROM audit WHERE seq = ?1", &[&removed])
        })
        .unwrap();
    let (_, broken) = store.verify_audit().unwrap();
    let broken = broken.unwrap();
    assert_eq!(
        broken.seq,
        seq_of(2),
        "the entry after the gap, in its chain"
    );
    assert!(broken.why.contains("entry 2 is missing"), "{}", broken.why);
});

/// Two stores on one database, old entries and new on each: retention removes the old ones of
/// both chains and anchors each, and both chains go on verifying.
fn retention_anchors_every_chain(a: Store, b: Store) {
    let job = |n: i64, at: &str| Job {
        effects: vec![],
        audits: vec![("token".into(), format!("{{\"n\":{n}}}"))],
        now: t(at),
    };
    for n in 0..3 {
        a.apply_batch(&[job(n, "2026-01-01T00:00:00Z")]).unwrap();
    }
    for n in 0..2 {
        b.apply_batch(&[job(10 + n, "2026-01-02T00:00:00Z")])
            .unwrap();
    }
    a.apply_batch(&[job(3, "2026-06-01T00:00:00Z")]).unwrap();
    b.apply_batch(&[job(12, "2026-06-01T00:00:00Z")]).unwrap();
    assert_eq!(a.prune_audit(t("2026-03-01T00:00:00Z")).unwrap(), 5);
    assert_eq!(a.prune_audit(t("2026-03-01T00:00:00Z")).unwrap(), 0);
    assert_eq!(b.verify_audit().unwrap(), (2, None));
    a.apply_batch(&[job(4, "2026-07-01T00:00:00Z")]).unwrap();
    b.apply_batch(&[job(13, "2026-07-01T00:00:00Z")]).unwrap();
    assert_eq!(a.verify_audit().unwrap(), (4, None));
}

on_two_hosts!(retention_across_hosts, retention_anchors_every_chain);
