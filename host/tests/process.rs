//! The `granted` binary as an operator runs it: import, serve, SIGTERM and SIGKILL. No secret
//! reaches the log; a server killed in the middle of a refresh-token load loses no acknowledged
//! token and leaves no family half rotated.

#![cfg(unix)]

mod common;

use common::{agent, basic, import, import_with, post, serve, GRANTED};
use granted_host::store::Store;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const LOGIN: &str = "grant_type=password&username=alice&password=correct+horse+battery";

/// How long a wait for a cause may take before the test gives up: a ceiling for a server that
/// hangs, far above what a busy 2-core machine needs.
const CEILING: Duration = Duration::from_secs(300);

/// The tests that put a server under load or wait for a slow login run one at a time (cargo runs
/// a binary's tests two at a time here): the refresh-token load of one takes both cores, and the
/// KDF thread of the other, at a lower priority, then gets a small share of a core.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn no_secret_reaches_the_log_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    import(&db);
    let mut served = serve(&db, &dir.path().join("serve.log"));
    let crm = basic("crm-1", "crm-1-secret");
    let mut secrets = vec![
        "correct horse battery".to_string(),
        "correct+horse+battery".to_string(),
        "crm-1-secret".to_string(),
        "reports-2-secret".to_string(),
        crm.clone(),
        crm.trim_start_matches("Basic ").to_string(),
    ];
    let path = "/tenants/acme/connect/token";
    let (status, token) = post(&served.base, path, &crm, LOGIN).unwrap();
    assert_eq!(status, 200);
    let refresh = token["refresh_token"].as_str().unwrap().to_string();
    secrets.push(token["access_token"].as_str().unwrap().to_string());
    secrets.push(refresh.clone());
    let (_, refreshed) = post(
        &served.base,
        path,
        &crm,
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    )
    .unwrap();
    secrets.push(refreshed["access_token"].as_str().unwrap().to_string());
    secrets.push(refreshed["refresh_token"].as_str().unwrap().to_string());
    post(
        &served.base,
        path,
        &crm,
        "grant_type=password&username=alice&password=correct+horse+batteryX",
    )
    .unwrap();
    secrets.push("correct+horse+batteryX".into());
    post(
        &served.base,
        path,
        &crm,
        "grant_type=password&username=alice&client_id=crm-1&client_secret=crm-1-secret&password=x",
    )
    .unwrap();
    post(
        &served.base,
        "/tenants/globex/connect/token",
        &basic("reports-2", "reports-2-secret"),
        "grant_type=client_credentials",
    )
    .unwrap();
    post(
        &served.base,
        "/tenants/acme/connect/introspect",
        &crm,
        &format!("token={}", token["access_token"].as_str().unwrap()),
    )
    .unwrap();
    let pid = served.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let child = &mut served.child;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < CEILING,
            "SIGTERM did not stop the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&served.log).unwrap();
    assert!(
        log.contains("token decision"),
        "the log has no decisions:\n{log}"
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the log holds a secret ({} chars)",
            secret.len()
        );
    }
}

#[test]
fn a_sigkill_during_refresh_rotation_loses_no_acknowledged_token() {
    let _alone = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    import(&db);
    let mut served = serve(&db, &dir.path().join("serve.log"));
    let crm = basic("crm-1", "crm-1-secret");
    let path = "/tenants/acme/connect/token";
    let chains: Vec<std::thread::JoinHandle<Vec<String>>> = (0..4)
        .map(|_| {
            let base = served.base.clone();
            let crm = crm.clone();
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let Ok((200, first)) = post(&base, path, &crm, LOGIN) else {
                    return acknowledged;
                };
                let mut current = first["refresh_token"].as_str().unwrap().to_string();
                acknowledged.push(current.clone());
                for _ in 0..10_000 {
                    match post(
                        &base,
                        path,
                        &crm,
                        &format!("grant_type=refresh_token&refresh_token={current}"),
                    ) {
                        Ok((200, next)) => {
                            current = next["refresh_token"].as_str().unwrap().to_string();
                            acknowledged.push(current.clone());
                        }
                        _ => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    served.child.kill().unwrap(); // SIGKILL
    served.child.wait().unwrap();
    let chains: Vec<Vec<String>> = chains.into_iter().map(|h| h.join().unwrap()).collect();
    let rotations: usize = chains.iter().map(|c| c.len().saturating_sub(1)).sum();
    assert!(
        rotations >= 20,
        "too little load before the kill: {rotations} rotations"
    );

    let store = Store::open(&db).unwrap();
    let (_, _, tokens) = store
        .tenants()
        .unwrap()
        .into_iter()
        .find(|(t, _, _)| t.tenant == "acme")
        .unwrap();
    for chain in &chains {
        let records: Vec<_> = chain
            .iter()
            .map(|t| {
                store
                    .refresh_token(&granted_policy::token::endpoint::refresh_token_sha256(t))
                    .unwrap()
                    .expect("an acknowledged refresh token was lost")
            })
            .collect();
        let Some((last, earlier)) = records.split_last() else {
            continue;
        };
        for r in earlier {
            assert_eq!(r.status, granted_policy::model::RefreshStatus::Used);
        }
        // The family has exactly one live token: the last acknowledged one, or (when the kill
        // came after a commit but before the answer) the one that replaced it.
        let live: Vec<_> = tokens
            .iter()
            .filter(|t| {
                t.family_id == last.family_id
                    && t.status == granted_policy::model::RefreshStatus::Active
            })
            .collect();
        assert_eq!(
            live.len(),
            1,
            "family {} has {} live tokens",
            last.family_id,
            live.len()
        );
        if last.status != granted_policy::model::RefreshStatus::Active {
            assert_eq!(last.status, granted_policy::model::RefreshStatus::Used);
            assert!(live[0].issued_at >= last.issued_at);
        }
    }
    drop(store);

    // Restarted on the same database, the server answers for every chain's last token as the
    // store says: live if it was the family's live token, not active otherwise.
    let mut served = serve(&db, &dir.path().join("restart.log"));
    for chain in &chains {
        let Some(last) = chain.last() else { continue };
        let (status, seen) = post(
            &served.base,
            "/tenants/acme/connect/introspect",
            &crm,
            &format!("token={last}"),
        )
        .unwrap();
        assert_eq!(status, 200);
        let sha = granted_policy::token::endpoint::refresh_token_sha256(last);
        let live = tokens.iter().any(|t| {
            t.token_sha256 == sha && t.status == granted_policy::model::RefreshStatus::Active
        });
        assert_eq!(seen["active"].as_bool(), Some(live), "{seen}");
    }
    let child = &mut served.child;
    child.kill().unwrap();
    child.wait().unwrap();
    println!(
        "{rotations} rotations acknowledged before SIGKILL; all found, no family half rotated"
    );
}

/// SIGTERM while a slow login is in flight: it is answered, then the server exits.
///
/// Every wait here is for a cause, with a generous ceiling: the server's log says the login
/// reached a KDF thread, then that shutdown began, then the login is answered. How long the
/// 600,000-iteration check takes depends on how busy the machine is (the KDF threads run at a
/// lower priority than everything else on it), never the verdict.
#[test]
fn sigterm_lets_a_request_in_flight_finish() {
    let _alone = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    import_with(&db, "600000");
    let mut served = serve(&db, &dir.path().join("serve.log"));
    let base = served.base.clone();
    let login = std::thread::spawn(move || {
        common::post_with(
            &common::patient_agent(),
            &base,
            "/tenants/acme/connect/token",
            &basic("crm-1", "crm-1-secret"),
            LOGIN,
        )
    });
    let kdf_started = "a password check started on a KDF thread";
    common::wait_for_log(&served.log, kdf_started, CEILING);
    let pid = served.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let shutting_down = "shutting down: finishing requests in flight";
    common::wait_for_log(&served.log, shutting_down, CEILING);
    let (status, body) = login
        .join()
        .unwrap()
        .expect("the login in flight was answered");
    assert_eq!(status, 200, "{body}");
    // The login was still in flight when shutdown began: its decision comes after that line.
    let log = std::fs::read_to_string(&served.log).unwrap();
    let at = |line: &str| {
        log.find(line)
            .unwrap_or_else(|| panic!("no `{line}` in:\n{log}"))
    };
    assert!(
        at(kdf_started) < at(shutting_down) && at(shutting_down) < at("token decision"),
        "the login was not in flight when shutdown began:\n{log}"
    );
    let child = &mut served.child;
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < CEILING, "the server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    // New connections are refused once it has stopped.
    assert!(agent()
        .get(format!("{}/healthz", served.base))
        .call()
        .is_err());
}

/// Every decision is in the audit chain; an entry altered or removed behind the server's back is
/// named by `granted audit verify`.
#[test]
fn the_audit_chain_records_decisions_and_catches_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    import(&db);
    let mut served = serve(&db, &dir.path().join("serve.log"));
    let crm = basic("crm-1", "crm-1-secret");
    let path = "/tenants/acme/connect/token";
    assert_eq!(post(&served.base, path, &crm, LOGIN).unwrap().0, 200);
    assert_eq!(
        post(
            &served.base,
            path,
            &crm,
            "grant_type=password&username=alice&password=no"
        )
        .unwrap()
        .0,
        400
    );
    assert_eq!(
        post(&served.base, path, &basic("crm-1", "bad"), LOGIN)
            .unwrap()
            .0,
        401
    );
    let child = &mut served.child;
    child.kill().unwrap();
    child.wait().unwrap();
    let verify = || {
        let out = Command::new(GRANTED)
            .args(["audit", "verify", "--db"])
            .arg(&db)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, text) = verify();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("3 entries"), "{text}");
    let store = Store::open(&db).unwrap();
    let entries = store.audit_entries(0, 10).unwrap();
    let reasons: Vec<String> = entries
        .iter()
        .map(|(_, _, _, e)| {
            serde_json::from_str::<Value>(e).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(reasons, ["issued", "invalid_credentials", "invalid_client"]);
    assert!(entries
        .iter()
        .all(|(_, _, _, e)| e.contains("\"source\":\"127.0.0.1\"") && e.contains("policy_sha256")));
    drop(store);
    // Behind the server's back: an altered entry, then a removed one.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let original: String = conn
        .query_row("SELECT entry FROM audit WHERE seq = 2", [], |r| r.get(0))
        .unwrap();
    conn.execute(
        "UPDATE audit SET entry = replace(entry, 'invalid_credentials', 'issued') WHERE seq = 2",
        [],
    )
    .unwrap();
    let (code, text) = verify();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("entry 2: its content"), "{text}");
    conn.execute("UPDATE audit SET entry = ?1 WHERE seq = 2", [&original])
        .unwrap();
    assert_eq!(verify().0, Some(0));
    conn.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
    let (code, text) = verify();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("entry 2 is missing"), "{text}");
}

fn admin_get(base: &str, token: &str) -> u16 {
    agent()
        .get(format!("{base}/admin/api/v1/apps"))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn the_first_start_shows_the_admin_token_once_and_rotation_replaces_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    import(&db);
    let (log, out) = (dir.path().join("serve.log"), dir.path().join("serve.out"));
    let mut served = common::serve_with(&db, &log, Some(&out), &[]);
    let printed = std::fs::read_to_string(&out).unwrap();
    let token = printed
        .lines()
        .find_map(|l| l.strip_prefix("admin token: "))
        .expect("the first start prints the admin token")
        .to_string();
    assert!(token.len() >= 43, "256 bits or more");
    assert_eq!(admin_get(&served.base, &token), 200);
    assert_eq!(admin_get(&served.base, "granted_admin_wrong"), 401);

    // Rotated from the command line: the running server takes the new one at once.
    let rotated = Command::new(GRANTED)
        .args(["admin-token", "rotate", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let fresh = String::from_utf8(rotated.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(fresh, token);
    assert_eq!(admin_get(&served.base, &token), 401);
    assert_eq!(admin_get(&served.base, &fresh), 200);
    served.child.kill().unwrap();
    served.child.wait().unwrap();

    // A second start shows no token, and GRANTED_ADMIN_TOKEN does not replace the one in use.
    let out2 = dir.path().join("serve2.out");
    let served = common::serve_with(
        &db,
        &dir.path().join("serve2.log"),
        Some(&out2),
        &[(
            "GRANTED_ADMIN_TOKEN",
            "an-attempt-to-replace-it-0123456789abcdef",
        )],
    );
    assert!(!std::fs::read_to_string(&out2)
        .unwrap()
        .contains("admin token"));
    assert_eq!(
        admin_get(&served.base, "an-attempt-to-replace-it-0123456789abcdef"),
        401
    );
    assert_eq!(admin_get(&served.base, &fresh), 200);
    drop(served);

    // Neither token is in the log; the rotation is in the audit chain.
    for log in [&log, &dir.path().join("serve2.log")] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(
            !text.contains(&token) && !text.contains(&fresh),
            "a token in the log"
        );
    }
    let store = Store::open(&db).unwrap();
    let entries = store.audit_entries(0, 10_000).unwrap();
    assert!(entries
        .iter()
        .any(|(_, _, kind, entry)| kind == "admin" && entry.contains("rotate_admin_token")));
}

#[test]
fn granted_admin_token_sets_the_first_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    import(&db);
    let short = Command::new(GRANTED)
        .args(["serve", "--db"])
        .arg(&db)
        .env("GRANTED_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    assert!(!short.status.success(), "a short token is refused at start");
    assert!(String::from_utf8_lossy(&short.stderr).contains("GRANTED_ADMIN_TOKEN"));
    let token = "operator-chosen-admin-token-0123456789abcdef";
    let out = dir.path().join("serve.out");
    let served = common::serve_with(
        &db,
        &dir.path().join("serve.log"),
        Some(&out),
        &[("GRANTED_ADMIN_TOKEN", token)],
    );
    assert!(!std::fs::read_to_string(&out).unwrap().contains(token));
    assert_eq!(admin_get(&served.base, token), 200);
}

#[test]
fn granted_report_sunset_prints_a_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    import(&db);
    let table = Command::new(GRANTED)
        .args(["report", "sunset", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8(table.stdout).unwrap();
    let reports_acme = text
        .lines()
        .find(|l| l.starts_with("reports ") && l.contains(" acme "))
        .unwrap_or_else(|| panic!("a row for reports in acme:\n{text}"));
    assert!(
        reports_acme.contains("kept") && reports_acme.contains("LOSES it"),
        "{reports_acme}"
    );
    assert!(
        text.contains("password-grant tokens: 0 in the last 7 days"),
        "{text}"
    );
    let json = Command::new(GRANTED)
        .args(["report", "sunset", "--json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(json.status.success());
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["apps"].as_array().map(Vec::len), Some(4));
}
