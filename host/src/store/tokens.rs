//! A decision's effects, applied in one transaction with its audit entry (group commit): refresh-token rotation and reuse, login failures and lockouts, password hashes made again.

use super::*;
use crate::store::db::ToArg;
use granted_policy::token::endpoint::Effect;
use granted_policy::token::lockout::LockSchedule;

/// One decision to make durable: its effects and its audit entry, applied together.
#[derive(Clone, Debug)]
pub struct Job {
    /// What the module asked for.
    pub effects: Vec<Effect>,
    /// The audit entries, in order: kind (`token`, `revocation`, `authorization`, …) and
    /// canonical JSON.
    pub audits: Vec<(String, String)>,
    /// The decision's instant.
    pub now: Timestamp,
}

/// The outcome of applying a decision's effects.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Everything applied.
    Done,
    /// A refresh token to consume was no longer active: another request used it first. The
    /// family has been revoked; the request must be decided again (the module then answers
    /// reuse).
    RefreshRace,
    /// A login succeeded while concurrent failures locked the user: nothing was applied; the
    /// request must be decided again (the module then answers as for a locked user).
    LockRace,
    /// This decision could not be written (the others of its batch were); answer 503.
    Failed(String),
}

/// Why a decision's effects were undone.
pub(super) enum Race {
    Refresh(String),
    /// An authorization code was used meanwhile: the decision is made again, and the module
    /// sees a used code (X2).
    Code,
    Lock,
}

impl Store {
    /// The lock on (`tenant`, `username`) at `now`, whether or not the user exists: unknown
    /// names are counted like known ones.
    pub fn locked_until(&self, tenant: &str, username: &str) -> Result<Option<Timestamp>> {
        self.read(|db| locked_until(db, tenant, username))
    }

    /// Users (and unknown names) whose lock has not ended at `now`.
    pub fn users_locked(&self, now: Timestamp) -> Result<i64> {
        self.read(|db| {
            db.value(
                "SELECT COUNT(*) FROM login_failures WHERE locked_until > ?1",
                &[&now.to_rfc3339()],
            )
        })
    }

    /// Applies a decision's effects in one transaction (see [`Store::apply_batch`]).
    pub fn apply(&self, effects: &[Effect], now: Timestamp) -> Result<Applied> {
        let job = Job {
            effects: effects.to_vec(),
            audits: Vec::new(),
            now,
        };
        self.apply_batch(std::slice::from_ref(&job))?
            .pop()
            .ok_or_else(|| anyhow!("no outcome"))
    }

    /// Applies several decisions in one transaction (group commit): each one's effects and its
    /// audit entries together, or none of them. A refresh token that is no longer active when it
    /// is consumed (a concurrent request used it) undoes that decision, revokes the token's
    /// family and reports [`Applied::RefreshRace`] for it; the others are unaffected.
    ///
    /// Nothing cluster-wide is held: the effects lock only the rows they change (each race is
    /// decided by the row's own statement), and the entries go on this store's own chain of
    /// decisions, numbered without asking the database, in a few multi-row statements at the
    /// end. The batch's refresh-token rotations go first, together, in two statements (see
    /// [`rotate_refresh_tokens`]); a database error there fails the batch, as at `COMMIT`.
    /// Any other decision with effects runs in a savepoint of its own, so that a race or a
    /// failure undoes it alone; one with none (most `client_credentials`) costs no round trip of
    /// its own, and a batch of those alone (up to 64 entries) is one statement, on PostgreSQL
    /// without `BEGIN` and `COMMIT`: one round trip instead of three.
    pub fn apply_batch(&self, jobs: &[Job]) -> Result<Vec<Applied>> {
        let count: usize = jobs.iter().map(|job| job.audits.len()).sum();
        if count <= audit::MOST_ROWS && jobs.iter().all(|job| job.effects.is_empty()) {
            // Entries alone, in one statement (on PostgreSQL its own transaction).
            return Self::with_chain(&self.chains.decisions, |head| {
                let mut head = head.clone();
                let entries: Vec<_> = jobs
                    .iter()
                    .flat_map(|job| {
                        job.audits
                            .iter()
                            .map(|(kind, entry)| (job.now, kind, entry))
                    })
                    .map(|(now, kind, entry)| head.append(now, kind, entry))
                    .collect();
                self.write_alone(|db| audit::insert_entries(db, &entries))?;
                Ok((jobs.iter().map(|_| Applied::Done).collect(), head))
            });
        }
        let rotations: Vec<Option<Rotation<'_>>> = jobs.iter().map(rotation).collect();
        // On PostgreSQL the first savepoint is set in BEGIN's round trip, unless rotations go
        // first (a rollback to it would undo them); on SQLite statements cost no round trip.
        let savepoint_first = self.blocks_runtime()
            && rotations.iter().all(Option::is_none)
            && jobs.iter().any(|job| !job.effects.is_empty());
        let (outcomes, new_locks) = Self::with_chain(&self.chains.decisions, |head| {
            self.transact_rows_then(if savepoint_first { "SAVEPOINT job" } else { "" }, |db| {
                let mut head = head.clone();
                let rotated = rotate_refresh_tokens(db, &rotations)?;
                let mut entries = Vec::new();
                let mut outcomes = Vec::with_capacity(jobs.len());
                let mut new_locks = 0;
                // Whether a savepoint is set (and whether no job has used it yet).
                let (mut in_savepoint, mut unused) = (savepoint_first, savepoint_first);
                for ((job, rotation), rotated) in jobs.iter().zip(&rotations).zip(&rotated) {
                    let outcome = if let Some(Rotation { old, .. }) = rotation {
                        if *rotated {
                            Applied::Done
                        } else {
                            // Nothing of this job was written: no savepoint to go back to.
                            revoke_family_of(db, old)?;
                            Applied::RefreshRace
                        }
                    } else if job.effects.is_empty() {
                        Applied::Done
                    } else {
                        // The previous savepoint is released in the same round trip; the last
                        // one by COMMIT.
                        if !unused {
                            db.batch(if in_savepoint {
                                "RELEASE SAVEPOINT job; SAVEPOINT job"
                            } else {
                                "SAVEPOINT job"
                            })?;
                        }
                        (in_savepoint, unused) = (true, false);
                        apply_in_savepoint(db, job, &mut new_locks)?
                    };
                    if outcome == Applied::Done {
                        for (kind, entry) in &job.audits {
                            entries.push(head.append(job.now, kind, entry));
                        }
                    }
                    outcomes.push(outcome);
                }
                audit::insert_entries(db, &entries)?;
                Ok(End::Commit(((outcomes, new_locks), head)))
            })
        })?;
        self.locks_set
            .fetch_add(new_locks, std::sync::atomic::Ordering::Relaxed);
        Ok(outcomes)
    }

    /// Users (or unknown names) locked by failed logins since this store was opened.
    pub fn lockouts(&self) -> u64 {
        self.locks_set.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A decision whose only effects are a refresh token's rotation: the token it consumes, then the
/// one it stores (what the module asks for every `refresh_token` grant it allows).
struct Rotation<'a> {
    old: &'a str,
    new: &'a RefreshTokenRecord,
}

fn rotation(job: &Job) -> Option<Rotation<'_>> {
    match job.effects.as_slice() {
        [Effect::ConsumeRefreshToken { token_sha256 }, Effect::StoreRefreshToken { record }] => {
            Some(Rotation {
                old: token_sha256,
                new: record,
            })
        }
        _ => None,
    }
}

/// Rotates the batch's refresh tokens together: consumes every one still active in one
/// statement per [`audit::MOST_ROWS`] tokens, then stores the new tokens of those consumed in
/// one statement per as many (on PostgreSQL two round trips for a batch of rotations, where one
/// savepoint and two statements each cost three per rotation). Whether each rotation happened
/// (`false` for a job that is not one). A token named twice in the batch is consumed by its
/// first job only: the later ones raced, as they would have one after the other.
///
/// Each row's own statement decides its race, as before: a token another host is consuming is
/// waited for and then no longer active. Nothing is written for a rotation that raced, so its
/// job needs no savepoint.
fn rotate_refresh_tokens(db: &Db<'_>, rotations: &[Option<Rotation<'_>>]) -> Result<Vec<bool>> {
    let mut firsts = std::collections::HashSet::new();
    let olds: Vec<&str> = rotations
        .iter()
        .flatten()
        .map(|r| r.old)
        .filter(|old| firsts.insert(*old))
        .collect();
    let mut consumed = std::collections::HashSet::new();
    audit::in_statements(db, &olds, |these| {
        let args: Vec<&dyn ToArg> = these.iter().map(|old| old as &dyn ToArg).collect();
        consumed.extend(db.rows(
            &format!(
                "UPDATE refresh_tokens SET status = 'used'
                 WHERE status = 'active' AND token_sha256 IN {}
                 RETURNING token_sha256",
                audit::placeholders(1..=these.len())
            ),
            &args,
            |row| row.get::<String>(0),
        )?);
        Ok(())
    })?;
    // The first job naming a consumed token rotated it; any later one raced.
    let rotated: Vec<bool> = rotations
        .iter()
        .map(|r| r.as_ref().is_some_and(|r| consumed.remove(r.old)))
        .collect();
    let stored: Vec<&RefreshTokenRecord> = rotations
        .iter()
        .zip(&rotated)
        .filter_map(|(r, rotated)| r.as_ref().filter(|_| *rotated).map(|r| r.new))
        .collect();
    insert_refreshes(db, &stored)?;
    Ok(rotated)
}

/// Revokes every active token of `token_sha256`'s family: a rotation raced (RFC 9700 §4.14).
fn revoke_family_of(db: &Db<'_>, token_sha256: &str) -> Result<()> {
    db.exec(
        "UPDATE refresh_tokens SET status = 'revoked'
         WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_sha256 = ?1)
         AND status = 'active'",
        &[&token_sha256],
    )?;
    Ok(())
}

/// Applies one job's effects in the savepoint just set: undone alone when it races or fails.
fn apply_in_savepoint(db: &Db<'_>, job: &Job, new_locks: &mut u64) -> Result<Applied> {
    let mut locks = 0;
    let undone = match apply_effects(db, &job.effects, job.now, &mut locks) {
        Ok(None) => {
            *new_locks += locks;
            return Ok(Applied::Done);
        }
        Ok(Some(race)) => Ok(race),
        Err(e) => Err(e),
    };
    db.batch("ROLLBACK TO SAVEPOINT job")?;
    Ok(match undone {
        Ok(Race::Refresh(raced)) => {
            revoke_family_of(db, &raced)?;
            Applied::RefreshRace
        }
        Ok(Race::Code) => Applied::RefreshRace,
        Ok(Race::Lock) => Applied::LockRace,
        Err(e) => Applied::Failed(format!("{e:#}")),
    })
}

/// Applies effects; a [`Race`] when a refresh token to consume was no longer active, or when a
/// login's success meets a lock that concurrent failures set meanwhile.
pub(super) fn apply_effects(
    db: &Db<'_>,
    effects: &[Effect],
    now: Timestamp,
    locks_set: &mut u64,
) -> Result<Option<Race>> {
    for effect in effects {
        if let Some(race) = apply_effect(db, effect, now, locks_set)? {
            return Ok(Some(race));
        }
    }
    Ok(None)
}

/// Applies one effect; a [`Race`] as [`apply_effects`] says.
fn apply_effect(
    db: &Db<'_>,
    effect: &Effect,
    now: Timestamp,
    locks_set: &mut u64,
) -> Result<Option<Race>> {
    match effect {
        Effect::ConsumeRefreshToken { token_sha256 } => {
            let changed = db.exec(
                "UPDATE refresh_tokens SET status = 'used'
                 WHERE token_sha256 = ?1 AND status = 'active'",
                &[token_sha256],
            )?;
            if changed == 0 {
                return Ok(Some(Race::Refresh(token_sha256.clone())));
            }
        }
        Effect::StoreRefreshToken { record } => insert_refresh(db, record)?,
        Effect::RevokeRefreshFamily { family_id } => {
            db.exec(
                "UPDATE refresh_tokens SET status = 'revoked'
                 WHERE family_id = ?1 AND status = 'active'",
                &[family_id],
            )?;
        }
        Effect::RecordLoginFailure {
            tenant,
            username,
            lockout,
        } => {
            if record_failure(db, tenant, username, now, lockout)? {
                *locks_set += 1;
            }
        }
        Effect::StorePasswordHash {
            tenant,
            username,
            hash,
            replaces,
        } => {
            // Only over the hash that verified: a password changed meanwhile stays.
            db.exec(
                "UPDATE users SET password_hash = ?3
                 WHERE tenant = ?1 AND username = ?2 AND password_hash = ?4",
                &[tenant, username, hash, replaces],
            )?;
        }
        Effect::StoreCode { record } => insert_code(db, record)?,
        Effect::ConsumeCode { code_sha256 } => {
            let changed = db.exec(
                "UPDATE codes SET used = 1 WHERE code_sha256 = ?1 AND used = 0",
                &[code_sha256],
            )?;
            if changed == 0 {
                return Ok(Some(Race::Code));
            }
        }
        Effect::StoreConsent { record } => keep_consent(db, record)?,
        Effect::ChangePassword {
            tenant,
            username,
            hash,
            replaces,
            changed_at,
        } => {
            db.exec(
                "UPDATE users SET password_hash = ?3, password_changed_at = ?5
                 WHERE tenant = ?1 AND username = ?2 AND password_hash = ?4",
                &[tenant, username, hash, replaces, &changed_at.to_rfc3339()],
            )?;
        }
        Effect::ResetLoginFailures { tenant, username } => {
            return reset_login_failures(db, tenant, username, now);
        }
    }
    Ok(None)
}

/// A login's success clears its failures. Only a count without a lock in force goes: the row's
/// own statement decides, after any concurrent failure that holds the row has committed; a lock
/// set meanwhile is a [`Race::Lock`].
fn reset_login_failures(
    db: &Db<'_>,
    tenant: &str,
    username: &str,
    now: Timestamp,
) -> Result<Option<Race>> {
    let removed = db.exec(
        "DELETE FROM login_failures WHERE tenant = ?1 AND username = ?2
         AND (locked_until IS NULL OR locked_until <= ?3)",
        &[&tenant, &username, &now.to_rfc3339()],
    )?;
    if removed == 0 && locked_until(db, tenant, username)?.is_some_and(|until| now < until) {
        return Ok(Some(Race::Lock));
    }
    Ok(None)
}

pub(super) fn locked_until(db: &Db<'_>, tenant: &str, username: &str) -> Result<Option<Timestamp>> {
    let until: Option<Option<String>> = db.opt(
        "SELECT locked_until FROM login_failures WHERE tenant = ?1 AND username = ?2",
        &[&tenant, &username],
        |r| r.get(0),
    )?;
    until.flatten().map(ts).transpose()
}

/// Stores an authorization code (its hash and what it is bound to).
pub(super) fn insert_code(db: &Db<'_>, c: &CodeRecord) -> Result<()> {
    db.exec(
        "INSERT INTO codes (code_sha256, tenant, client_id, rev, redirect_uri, code_challenge,
                            scopes, username, nonce, auth_time, issued_at, used)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        &[
            &c.code_sha256,
            &c.tenant,
            &c.client_id,
            &c.rev,
            &c.redirect_uri,
            &c.code_challenge,
            &serde_json::to_string(&c.scopes)?,
            &c.username,
            &c.nonce,
            &c.auth_time.map(Timestamp::to_rfc3339),
            &c.issued_at.to_rfc3339(),
            &c.used,
        ],
    )?;
    Ok(())
}

/// Keeps a consent, its scopes added to any kept before for the same user and app. The first
/// statement makes the row if there is none and locks it either way, so a concurrent consent
/// for the same user and app waits, then adds its scopes to these.
fn keep_consent(db: &Db<'_>, c: &ConsentRecord) -> Result<()> {
    let kept: String = db.value(
        "INSERT INTO consents (tenant, username, app_id, scopes) VALUES (?1, ?2, ?3, '[]')
         ON CONFLICT (tenant, username, app_id) DO UPDATE SET scopes = consents.scopes
         RETURNING scopes",
        &[&c.tenant, &c.username, &c.app_id],
    )?;
    let mut scopes: Vec<String> = serde_json::from_str(&kept)
        .with_context(|| format!("the database holds bad consent scopes `{kept}`"))?;
    for scope in &c.scopes {
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    db.exec(
        "UPDATE consents SET scopes = ?4 WHERE tenant = ?1 AND username = ?2 AND app_id = ?3",
        &[
            &c.tenant,
            &c.username,
            &c.app_id,
            &serde_json::to_string(&scopes)?,
        ],
    )?;
    Ok(())
}

pub(super) fn insert_refresh(db: &Db<'_>, r: &RefreshTokenRecord) -> Result<()> {
    insert_refreshes(db, &[r])
}

/// Stores refresh tokens, several in one statement ([`audit::in_statements`]).
fn insert_refreshes(db: &Db<'_>, records: &[&RefreshTokenRecord]) -> Result<()> {
    const COLUMNS: usize = 10;
    audit::in_statements(db, records, |these| {
        // The columns that are not text in the record, as text.
        let texts: Vec<[&str; 2]> = these
            .iter()
            .map(|r| {
                let status = match r.status {
                    RefreshStatus::Active => "active",
                    RefreshStatus::Used => "used",
                    RefreshStatus::Revoked => "revoked",
                };
                [r.grant_type.as_str(), status]
            })
            .collect();
        let instants: Vec<[String; 2]> = these
            .iter()
            .map(|r| [r.issued_at.to_rfc3339(), r.expires_at.to_rfc3339()])
            .collect();
        let mut args: Vec<&dyn ToArg> = Vec::with_capacity(these.len() * COLUMNS);
        for ((r, [grant_type, status]), [issued_at, expires_at]) in
            these.iter().zip(&texts).zip(&instants)
        {
            args.extend([
                &r.token_sha256 as &dyn ToArg,
                &r.family_id,
                &r.tenant,
                &r.client_id,
                &r.username,
                &r.scope,
                grant_type,
                issued_at,
                expires_at,
                status,
            ]);
        }
        let values: Vec<String> = (0..these.len())
            .map(|row| audit::placeholders(row * COLUMNS + 1..=(row + 1) * COLUMNS))
            .collect();
        db.exec(
            &format!(
                "INSERT INTO refresh_tokens (token_sha256, family_id, tenant, client_id, username,
                     scope, grant_type, issued_at, expires_at, status)
                 VALUES {}",
                values.join(", ")
            ),
            &args,
        )?;
        Ok(())
    })
}

/// Counts one failed login and locks as the module's `schedule` says (the store decides
/// nothing: it counts, and looks the lock's length up). Race-free without any lock of the
/// store's: the count goes up in the row's own statement, which holds the row until the
/// transaction ends, so a concurrent failure for the same name counts after this one.
pub(super) fn record_failure(
    db: &Db<'_>,
    tenant: &str,
    username: &str,
    now: Timestamp,
    schedule: &LockSchedule,
) -> Result<bool> {
    let (failures, locks): (i64, i64) = db
        .opt(
            "INSERT INTO login_failures (tenant, username, failures, locks, locked_until)
             VALUES (?1, ?2, 1, 0, NULL)
             ON CONFLICT (tenant, username) DO UPDATE SET failures = login_failures.failures + 1
             RETURNING failures, locks",
            &[&tenant, &username],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .ok_or_else(|| anyhow!("counting a failed login returned no row"))?;
    let length = schedule.length(u64::try_from(locks).unwrap_or(0));
    match length {
        // The count reached the schedule's: lock for this lock's length; the count starts again.
        Some(seconds) if failures >= i64::from(schedule.lock_after) => {
            db.exec(
                "UPDATE login_failures SET failures = 0, locks = ?3, locked_until = ?4
                 WHERE tenant = ?1 AND username = ?2",
                &[
                    &tenant,
                    &username,
                    &locks.saturating_add(1),
                    &now.plus_seconds(seconds).to_rfc3339(),
                ],
            )?;
            Ok(true)
        }
        _ => Ok(false),
    }
}
