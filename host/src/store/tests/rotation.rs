//! Refresh-token rotations applied together (a batch's consumptions in one statement, its new
//! tokens in another): each one decided as if the batch's jobs ran one after the other.

use super::*;

fn refresh(sha: &str, family: &str, status: RefreshStatus) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_sha256: sha.into(),
        family_id: family.into(),
        tenant: "acme".into(),
        client_id: "crm-1".into(),
        username: Some("alice".into()),
        scope: "read".into(),
        grant_type: GrantType::Password,
        issued_at: t("2026-11-25T12:00:00Z"),
        expires_at: t("2026-12-25T12:00:00Z"),
        status,
    }
}

fn job(effects: Vec<Effect>, n: usize) -> Job {
    Job {
        effects,
        audits: vec![("token".into(), format!("{{\"job\":{n}}}"))],
        now: t("2026-11-25T12:00:00Z"),
    }
}

/// The rotation of `old` (family `family`) to `new`, as the module asks for it.
fn rotate(old: &str, new: &str, family: &str, n: usize) -> Job {
    job(
        vec![
            Effect::ConsumeRefreshToken {
                token_sha256: old.into(),
            },
            Effect::StoreRefreshToken {
                record: refresh(new, family, RefreshStatus::Active),
            },
        ],
        n,
    )
}

/// More rotations than one statement takes (`audit::MOST_ROWS`), a token rotated twice in the
/// batch, a used and an unknown token, and jobs of other kinds between them: each rotation is
/// honoured once, the races revoke their families, and a job undone in its savepoint undoes
/// nothing of the rotations before it.
fn a_batch_rotates_together_as_if_one_after_the_other(store: Store) {
    let count = audit::MOST_ROWS + 6;
    store
        .write(|w| {
            for i in 0..count {
                w.put_refresh(&refresh(
                    &format!("old-{i}"),
                    &format!("fam-{i}"),
                    RefreshStatus::Active,
                ))?;
            }
            w.put_refresh(&refresh("used", "fam-used", RefreshStatus::Used))?;
            w.put_refresh(&refresh("used-next", "fam-used", RefreshStatus::Active))
        })
        .unwrap();
    let mut jobs: Vec<Job> = (0..count)
        .map(|i| {
            rotate(
                &format!("old-{i}"),
                &format!("new-{i}"),
                &format!("fam-{i}"),
                i,
            )
        })
        .collect();
    // A second rotation of old-3 in the same batch: it comes after the first, so it raced.
    jobs.push(rotate("old-3", "new-3-again", "fam-3", 100));
    jobs.push(rotate("used", "never", "fam-used", 101));
    jobs.push(rotate("unknown", "never-either", "fam-none", 102));
    jobs.push(job(Vec::new(), 103));
    // Another kind of job, in its own savepoint: undone there, since the token is used.
    jobs.push(job(
        vec![Effect::ConsumeRefreshToken {
            token_sha256: "old-5".into(),
        }],
        104,
    ));
    jobs.push(job(
        vec![Effect::StoreConsent {
            record: ConsentRecord {
                tenant: "acme".into(),
                username: "alice".into(),
                app_id: "crm".into(),
                scopes: vec!["read".into()],
            },
        }],
        105,
    ));
    let outcomes = store.apply_batch(&jobs).unwrap();
    let mut expected: Vec<Applied> = (0..count).map(|_| Applied::Done).collect();
    expected.extend([
        Applied::RefreshRace,
        Applied::RefreshRace,
        Applied::RefreshRace,
        Applied::Done,
        Applied::RefreshRace,
        Applied::Done,
    ]);
    assert_eq!(outcomes, expected);

    let status = |sha: &str| store.refresh_token(sha).unwrap().map(|r| r.status);
    for i in (0..count).filter(|i| ![3, 5].contains(i)) {
        assert_eq!(
            status(&format!("old-{i}")),
            Some(RefreshStatus::Used),
            "old-{i}"
        );
        assert_eq!(
            status(&format!("new-{i}")),
            Some(RefreshStatus::Active),
            "new-{i}"
        );
    }
    // old-3's second rotation revoked its family, the first rotation's new token with it.
    assert_eq!(status("old-3"), Some(RefreshStatus::Used));
    assert_eq!(status("new-3"), Some(RefreshStatus::Revoked));
    assert_eq!(status("new-3-again"), None);
    // old-5 was rotated before the lone consumption raced and revoked its family.
    assert_eq!(status("old-5"), Some(RefreshStatus::Used));
    assert_eq!(status("new-5"), Some(RefreshStatus::Revoked));
    // The used token's family is revoked; nothing is stored for a race.
    assert_eq!(status("used-next"), Some(RefreshStatus::Revoked));
    assert_eq!(status("never"), None);
    assert_eq!(status("never-either"), None);
    assert_eq!(store.consents().unwrap().len(), 1);
    // An entry for each job done, on a chain that verifies.
    let done = outcomes.iter().filter(|o| **o == Applied::Done).count();
    assert_eq!(store.verify_audit().unwrap(), (done as i64, None));
}

on_both!(
    rotations_in_one_batch,
    a_batch_rotates_together_as_if_one_after_the_other
);
