//! `cargo bench -p granted --bench commit`: what making one refresh-token rotation durable costs
//! on this machine's disk, without HTTP, the module or a signature: `Store::apply_batch` on a
//! SQLite file (WAL, `synchronous = FULL`, as the server runs it), each job consuming one token,
//! storing the next and appending its audit entry, in batches of 1 to 64 jobs as the group
//! commit makes them. Prints, per batch size, the wall time and the CPU time (the whole
//! process, user and system, from `getrusage`) per rotation: the floor under the server's
//! `refresh_token` answers, which cannot cost less CPU than this. `--quick` runs a short pass.

use granted_host::store::{Job, Store};
use granted_policy::model::{
    GrantType, RefreshStatus, RefreshTokenRecord, TenantRecord, Timestamp,
};
use granted_policy::token::endpoint::Effect;
use std::time::Instant;

/// Tokens stored before the measurement, so that its B-trees have the depth of a server's
/// after a few minutes of load.
const PREFILL: usize = 50_000;

fn token(sha: String, family: &str, now: Timestamp) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_sha256: sha,
        family_id: family.to_string(),
        tenant: "acme".into(),
        client_id: "crm-1".into(),
        username: Some("alice".into()),
        scope: "openid read".into(),
        grant_type: GrantType::Password,
        issued_at: now,
        expires_at: now,
        status: RefreshStatus::Active,
    }
}

/// A SHA-256-like key (base64url, 43 characters) for `n`: spread over the key space as real
/// token hashes are.
fn sha(n: u64) -> String {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD6E8_FEB8_6659_FD93;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..43)
        .map(|i| {
            if i % 10 == 0 {
                x = x.rotate_left(17).wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ n;
            }
            let c = alphabet[(x & 63) as usize] as char;
            x >>= 6;
            c
        })
        .collect()
}

/// An audit entry of the size and shape the server writes for a granted refresh.
fn entry(n: u64) -> String {
    format!(
        r#"{{"app_id":"crm","at":"2026-12-01T12:00:00Z","cause":"issued","client_id":"crm-1","decision":"granted","grant_type":"refresh_token","kind":"token","pinned_rev":1,"policy_sha256":"9fccf86a87d0e49c59d8f567b68674feddade7cbc703e175a4b8b3b00161f72f","reason":"refresh token rotated","rule":"T7","scope":"openid read","source":"127.0.0.1","tenant":"acme","token_id":"{}","username":"alice"}}"#,
        sha(n)
    )
}

/// CPU seconds this process has used (user and system).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one `rusage` we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rotations: u64 = if quick { 400 } else { 8_000 };
    let now = Timestamp::parse("2026-12-01T12:00:00Z").expect("a time");
    println!("| jobs per commit | wall µs per rotation | CPU µs per rotation |");
    println!("| ---: | ---: | ---: |");
    for batch in [1u64, 4, 16, 64] {
        let dir = tempfile::tempdir().expect("a folder");
        let store = Store::open(&dir.path().join("commit.db")).expect("a store");
        store
            .write(|w| {
                w.put_tenant(&TenantRecord {
                    tenant: "acme".into(),
                    sso_required: false,
                    password_max_age_days: None,
                    installs: vec![],
                    identity_provider: None,
                })?;
                for i in 0..if quick { 1_000 } else { PREFILL } as u64 {
                    w.put_refresh(&token(sha(1 << 40 | i), &format!("old-{i}"), now))?;
                }
                // One chain per job of a batch, as one per connection.
                for c in 0..batch {
                    w.put_refresh(&token(sha(c), &format!("fam-{c}"), now))?;
                }
                Ok(())
            })
            .expect("the tokens");
        let mut next = batch;
        let mut heads: Vec<u64> = (0..batch).collect();
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let mut done = 0;
        while done < rotations {
            let jobs: Vec<Job> = heads
                .iter_mut()
                .enumerate()
                .map(|(c, head)| {
                    let old = std::mem::replace(head, next);
                    next += 1;
                    Job {
                        effects: vec![
                            Effect::ConsumeRefreshToken {
                                token_sha256: sha(old),
                            },
                            Effect::StoreRefreshToken {
                                record: token(sha(*head), &format!("fam-{c}"), now),
                            },
                        ],
                        audits: vec![("token".into(), entry(*head))],
                        now,
                    }
                })
                .collect();
            let applied = store.apply_batch(&jobs).expect("the batch");
            assert!(applied
                .iter()
                .all(|a| *a == granted_host::store::Applied::Done));
            done += batch;
        }
        let wall = start.elapsed().as_secs_f64() / done as f64 * 1e6;
        let cpu = (cpu_seconds() - cpu) / done as f64 * 1e6;
        println!("| {batch} | {wall:.1} | {cpu:.1} |");
    }
}
