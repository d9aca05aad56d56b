//! Hosts on PostgreSQL under faults: the database restarted under load, and a host killed with
//! SIGKILL under load. Each test has a PostgreSQL server of its own, so that stopping it
//! touches no other test.

mod common;

use granted_host::testing::Cluster;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CC: &str = "grant_type=client_credentials";
const ALICE: &str = "grant_type=password&username=alice&password=correct+horse+battery";

/// A `granted serve` process, killed when dropped.
struct Host {
    child: Child,
    base: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn import(url: &str) {
    let status = Command::new(common::GRANTED)
        .args(["import", "--kdf-iterations", "1000", "--db", url])
        .arg("../tests/demo/state.json")
        .stdout(Stdio::null())
        .status()
        .expect("granted import");
    assert!(status.success());
}

fn serve(url: &str, dir: &std::path::Path, name: &str) -> Host {
    let port = common::free_port();
    let child = Command::new(common::GRANTED)
        .args(["serve", "--kdf-iterations", "1000", "--db", url])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("GRANTED_LOG", "warn")
        .env("GRANTED_CACHE_DIR", dir.join("cache"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).expect("log"))
        .spawn()
        .expect("granted serve");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::agent()
        .get(format!("{base}/healthz"))
        .call()
        .is_err()
    {
        assert!(Instant::now() < deadline, "{name} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Host { child, base }
}

/// A token request: status, `Retry-After`, JSON body.
fn token(base: &str, client: (&str, &str), form: &str) -> (u16, Option<String>, Value) {
    let mut response = common::agent()
        .post(format!("{base}/tenants/acme/connect/token"))
        .header("Authorization", common::basic(client.0, client.1))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form.to_string())
        .expect("the host answers");
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// `GET /healthz`'s JSON.
fn health(base: &str) -> Value {
    let text = common::agent()
        .get(format!("{base}/healthz"))
        .call()
        .expect("healthz")
        .body_mut()
        .read_to_string()
        .expect("body");
    serde_json::from_str(&text).expect("JSON")
}

fn audit_verify(url: &str) -> String {
    let out = Command::new(common::GRANTED)
        .args(["audit", "verify", "--db", url])
        .output()
        .expect("granted audit verify");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    text
}

/// The number in `audit log: N entries, …`.
fn entries(verified: &str) -> usize {
    verified
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

#[test]
fn hosts_answer_503_while_postgres_restarts_and_serve_again_by_themselves() {
    let cluster = Cluster::new().expect("a PostgreSQL server");
    cluster.start().expect("start");
    let admin = granted_host::store::PgServer::connect(&cluster.url()).expect("admin");
    let url = admin.create("faults_restart").expect("database");
    import(&url);
    let dir = tempfile::tempdir().expect("dir");
    let host = serve(&url, dir.path(), "host");
    let sync = ("sync-1", "sync-1-secret");
    let (status, _, body) = token(&host.base, sync, CC);
    assert_eq!(status, 200, "{body}");

    // Load throughout: every answer is a 200 or a 503 with Retry-After, nothing else.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            let base = host.base.clone();
            std::thread::spawn(move || {
                let (mut ok, mut unavailable, mut other) = (0usize, 0usize, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match token(&base, ("sync-1", "sync-1-secret"), CC) {
                        (200, _, _) => ok += 1,
                        (503, Some(_), _) => unavailable += 1,
                        (status, retry, body) => other.push(format!("{status} {retry:?} {body}")),
                    }
                }
                (ok, unavailable, other)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    cluster.stop().expect("stop");
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let sent = Instant::now();
        let (status, retry, body) = token(&host.base, sync, CC);
        slowest = slowest.max(sent.elapsed());
        assert_eq!(status, 503, "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"], "temporarily_unavailable");
    }
    let reported = health(&host.base);
    assert_eq!(reported["store"], "postgres");
    assert_eq!(reported["database_reachable"], false, "{reported}");
    // One request a second waits for a connection (up to its two-second timeout); the others
    // are turned away at once.
    assert!(slowest < Duration::from_secs(3), "a 503 took {slowest:?}");
    eprintln!("while the database was down, the slowest 503 took {slowest:?}");

    cluster.start().expect("start again");
    let back = Instant::now();
    loop {
        let (status, _, _) = token(&host.base, sync, CC);
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "the host did not serve again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "the host served again {} ms after the database was back",
        back.elapsed().as_millis()
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut unavailable) = (0, 0);
    for worker in load {
        let (o, u, other) = worker.join().expect("load");
        assert!(
            other.is_empty(),
            "answers other than 200 and 503: {other:?}"
        );
        ok += o;
        unavailable += u;
    }
    assert!(
        ok > 0 && unavailable > 0,
        "{ok} answered, {unavailable} turned away"
    );
    eprintln!("under load: {ok} answered, {unavailable} turned away with 503");
    let reported = health(&host.base);
    assert_eq!(reported["database_reachable"], true, "{reported}");
    // Refresh tokens (a write and a read-then-write) work again too.
    let crm = ("crm-1", "crm-1-secret");
    let (status, _, first) = token(&host.base, crm, ALICE);
    assert_eq!(status, 200, "{first}");
    let refresh = first["refresh_token"].as_str().expect("refresh");
    let (status, _, body) = token(
        &host.base,
        crm,
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    );
    assert_eq!(status, 200, "{body}");
    audit_verify(&url);
}

#[test]
fn a_host_killed_under_load_loses_no_acknowledged_write_and_the_other_keeps_answering() {
    let cluster = Cluster::new().expect("a PostgreSQL server");
    cluster.start().expect("start");
    let admin = granted_host::store::PgServer::connect(&cluster.url()).expect("admin");
    let url = admin.create("faults_kill").expect("database");
    import(&url);
    let dir = tempfile::tempdir().expect("dir");
    let mut a = serve(&url, dir.path(), "a");
    let b = serve(&url, dir.path(), "b");
    let crm = ("crm-1", "crm-1-secret");
    // A refresh token acknowledged by the host about to die.
    let (status, _, login) = token(&a.base, crm, ALICE);
    assert_eq!(status, 200, "{login}");
    let refresh = login["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicUsize::new(1));
    let b_failures = Arc::new(AtomicUsize::new(0));
    let bases = [a.base.clone(), b.base.clone()];
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let stop = stop.clone();
            let acknowledged = acknowledged.clone();
            let b_failures = b_failures.clone();
            let base = bases[i % 2].clone();
            let on_b = i % 2 == 1;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let answer = common::agent()
                        .post(format!("{base}/tenants/acme/connect/token"))
                        .header("Authorization", common::basic("sync-1", "sync-1-secret"))
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .send(CC.to_string());
                    match answer {
                        Ok(r) if r.status().as_u16() == 200 => {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        _ if on_b => {
                            b_failures.fetch_add(1, Ordering::Relaxed);
                        }
                        // The killed host's requests fail once it is gone.
                        _ => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    a.child.kill().expect("SIGKILL");
    a.child.wait().expect("reaped");
    let killed_at = acknowledged.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let total = acknowledged.load(Ordering::Relaxed);
    assert_eq!(
        b_failures.load(Ordering::Relaxed),
        0,
        "the other host failed requests"
    );
    assert!(total > killed_at, "the other host kept answering");
    // Every acknowledged decision is in the one audit chain (a decision the killed host
    // committed but could not answer may be there too).
    let verified = audit_verify(&url);
    assert!(
        entries(&verified) >= total,
        "{verified}: {total} acknowledged"
    );
    // The refresh token the killed host issued works on the other one.
    let (status, _, body) = token(
        &b.base,
        crm,
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    );
    assert_eq!(status, 200, "{body}");
    eprintln!("{total} acknowledged, {killed_at} before the kill; {verified}");
}
