//! Several hosts on one PostgreSQL database, as operators run them behind a load balancer: each
//! test starts two servers in this process, each with its own store (its own connection pool,
//! group commit, key cache and throttle) on one fresh database of the test server.

mod common;

use granted_host::settings::{Clock, ServerSettings};
use granted_host::store::{PgOptions, Store};
use granted_policy::model::Timestamp;
use granted_policy::token::jwt::SigningAlg;
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const TOKEN: &str = "hosts-test-admin-token-0123456789abcdef0123";

struct Host {
    base: String,
    store: Store,
    _runtime: tokio::runtime::Runtime,
}

fn settings() -> ServerSettings {
    ServerSettings {
        kdf_iterations: 1000,
        clock: Clock::Fixed(Timestamp::parse("2026-11-25T12:00:00Z").expect("an instant")),
        ..ServerSettings::default()
    }
}

/// Two hosts on one new database, the demo state imported once (by the first).
fn two_hosts(settings: ServerSettings) -> (Host, Host) {
    let url = granted_host::testing::fresh_database().expect("a PostgreSQL database");
    let first = host(&url, settings.clone(), true);
    let second = host(&url, settings, false);
    (first, second)
}

fn host(url: &str, settings: ServerSettings, import: bool) -> Host {
    let store = Store::connect(url, PgOptions::default()).expect("store");
    let (base, runtime) = common::serve_in_process(store.clone(), settings, TOKEN, import);
    Host {
        base,
        store,
        _runtime: runtime,
    }
}

impl Host {
    fn token(&self, tenant: &str, client: (&str, &str), form: &str) -> (u16, Value) {
        common::token(&self.base, tenant, client, form)
    }

    /// An admin API call: status, ETag, JSON body.
    fn admin(
        &self,
        method: &str,
        path: &str,
        if_match: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Option<String>, Value) {
        let url = format!("{}/admin/api/v1{path}", self.base);
        let agent = common::agent();
        let mut response = match body {
            Some(body) => {
                let mut req = agent
                    .post(&url)
                    .header("Authorization", format!("Bearer {TOKEN}"))
                    .header("Content-Type", "application/json");
                if let Some(tag) = if_match {
                    req = req.header("If-Match", tag);
                }
                req.send(body.to_string())
            }
            None => {
                let req = match method {
                    "GET" => agent.get(&url).force_send_body(),
                    _ => agent.post(&url),
                };
                req.header("Authorization", format!("Bearer {TOKEN}"))
                    .send_empty()
            }
        }
        .expect("admin API answers");
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("body");
        (
            status,
            etag,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

const ALICE: &str = "grant_type=password&username=alice&password=correct+horse+battery";
const CRM: (&str, &str) = ("crm-1", "crm-1-secret");

/// The `kid` in an access token's header.
fn kid(access_token: &str) -> String {
    use base64::Engine as _;
    let header = access_token.split('.').next().expect("a JWT");
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let header: Value = serde_json::from_slice(&header).expect("JSON header");
    header["kid"].as_str().expect("kid").to_string()
}

#[test]
fn a_refresh_token_sent_to_two_hosts_at_once_is_honoured_once_and_the_loser_revokes_the_family() {
    let (a, b) = two_hosts(settings());
    let hosts = Arc::new([a, b]);
    for round in 0..10 {
        let (status, first) = hosts[0].token("acme", CRM, ALICE);
        assert_eq!(status, 200, "{first}");
        let refresh = first["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_string();
        let barrier = Arc::new(Barrier::new(2));
        let answers: Vec<(u16, Value)> = (0..2)
            .map(|i| {
                let hosts = hosts.clone();
                let barrier = barrier.clone();
                let form = format!("grant_type=refresh_token&refresh_token={refresh}");
                std::thread::spawn(move || {
                    barrier.wait();
                    hosts[i].token("acme", CRM, &form)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let won: Vec<&Value> = answers
            .iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
            .collect();
        let lost: Vec<&Value> = answers
            .iter()
            .filter(|(s, _)| *s == 400)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(
            (won.len(), lost.len()),
            (1, 1),
            "round {round}: {answers:?}"
        );
        assert_eq!(lost[0]["error"], "invalid_grant", "round {round}");
        // The loser's attempt was reuse: the winner's new token went with the family.
        let rotated = won[0]["refresh_token"].as_str().expect("rotated");
        let (status, after) = hosts[round % 2].token(
            "acme",
            CRM,
            &format!("grant_type=refresh_token&refresh_token={rotated}"),
        );
        assert_eq!(
            (status, after["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
    let (count, broken) = hosts[1].store.verify_audit().expect("verify");
    assert_eq!(broken, None);
    assert_eq!(count, 40, "10 × (login, two refreshes, the revoked one)");
}

#[test]
fn the_audit_log_is_one_chain_after_load_on_both_hosts() {
    let (a, b) = two_hosts(settings());
    let hosts = Arc::new([a, b]);
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let hosts = hosts.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                for n in 0..25 {
                    let host = &hosts[(i + n) % 2];
                    let (status, body) = host.token(
                        "acme",
                        ("sync-1", "sync-1-secret"),
                        "grant_type=client_credentials",
                    );
                    assert_eq!(status, 200, "{body}");
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    let granted: usize = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    assert_eq!(granted, 200);
    let (count, broken) = hosts[0].store.verify_audit().expect("verify");
    assert_eq!((count, broken), (200, None));
}

#[test]
fn lockouts_and_throttling_on_one_host_hold_on_the_other() {
    let (a, b) = two_hosts(ServerSettings {
        throttle_failures: 6,
        ..settings()
    });
    // Five wrong passwords on the first host lock alice (the default threshold)…
    let wrong = "grant_type=password&username=alice&password=wrong";
    for _ in 0..5 {
        let (status, body) = a.token("acme", CRM, wrong);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
    // …on the second host too: the right password gets the wrong-password answer.
    let (status, body) = b.token("acme", CRM, ALICE);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // One more failure (the sixth) on the second host: this client and address are now
    // throttled on the first host as well.
    // A ceiling for a host that never sees the other's failures, not a timing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = a.token("acme", CRM, wrong);
        if status == 429 {
            break;
        }
        assert!(Instant::now() < deadline, "no 429 on the first host");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = b.token("acme", CRM, wrong);
    assert_eq!(status, 429);
    // Another client from the same address is not throttled.
    let (status, body) = b.token(
        "acme",
        ("sync-1", "sync-1-secret"),
        "grant_type=client_credentials",
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_key_rotated_on_one_host_signs_on_the_other_within_seconds() {
    let (a, b) = two_hosts(settings());
    let cc = "grant_type=client_credentials";
    let sync = ("sync-1", "sync-1-secret");
    let (_, before) = b.token("acme", sync, cc);
    let old = kid(before["access_token"].as_str().expect("token"));
    let now = Timestamp::parse("2026-11-25T12:00:00Z").expect("instant");
    let new = a
        .store
        .rotate_signing_key(
            now,
            now,
            now.plus_seconds(3600),
            SigningAlg::ES256,
            &granted_host::signing::generate(SigningAlg::ES256).expect("a key"),
            "rotated1",
        )
        .expect("rotate");
    assert_ne!(new.kid, old);
    let rotated = Instant::now();
    loop {
        let (status, body) = b.token("acme", sync, cc);
        assert_eq!(status, 200, "{body}");
        if kid(body["access_token"].as_str().expect("token")) == new.kid {
            break;
        }
        assert!(
            rotated.elapsed() < Duration::from_secs(60),
            "the second host still signs with {old}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "the second host signed with the new key after {} ms",
        rotated.elapsed().as_millis()
    );
}

#[test]
fn an_admin_token_and_if_match_hold_across_hosts() {
    let (a, b) = two_hosts(settings());
    // The admin token the first host made works on the second.
    let (status, etag, body) = b.admin("GET", "/apps/crm", None, None);
    assert_eq!(status, 200, "{body}");
    let etag = etag.expect("an ETag");
    // Two edits under the same ETag, one per host, at once: one is saved, the other is refused
    // as an edit of a revision that is no longer the latest.
    let hosts = Arc::new([a, b]);
    let barrier = Arc::new(Barrier::new(2));
    let answers: Vec<(u16, Option<String>, Value)> = (0..2)
        .map(|i| {
            let hosts = hosts.clone();
            let barrier = barrier.clone();
            let etag = etag.clone();
            std::thread::spawn(move || {
                barrier.wait();
                hosts[i].admin(
                    "POST",
                    "/apps/crm/revisions",
                    Some(&etag),
                    Some(json!({"scopes": [format!("scope-from-host-{i}")]})),
                )
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let mut statuses: Vec<u16> = answers.iter().map(|(s, _, _)| *s).collect();
    statuses.sort();
    assert_eq!(statuses, vec![201, 409], "{answers:?}");
    assert!(
        answers
            .iter()
            .any(|(s, _, b)| *s == 409 && b["error"] == "edit_conflict"),
        "{answers:?}"
    );
    let (_, _, app) = hosts[0].admin("GET", "/apps/crm", None, None);
    let before = body["latest_rev"].as_u64().expect("latest_rev");
    assert_eq!(
        app["latest_rev"].as_u64(),
        Some(before + 1),
        "exactly one revision was added"
    );
    assert_eq!(hosts[1].store.verify_audit().expect("verify").1, None);
}

#[test]
fn an_admin_write_on_one_host_is_seen_by_the_next_token_request_on_the_other() {
    let (a, b) = two_hosts(settings());
    // The second host answers (and so holds acme and crm-1 in its records cache) …
    for _ in 0..2 {
        let (status, body) = b.token("acme", CRM, ALICE);
        assert_eq!(status, 200, "{body}");
    }
    // … then the first moves crm to client_credentials and acme updates its install: acme
    // loses the password grant (RULES.md A-rules) …
    let (status, etag, body) = a.admin("GET", "/apps/crm", None, None);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = a.admin(
        "POST",
        "/apps/crm/revisions",
        etag.as_deref(),
        Some(json!({"grant_type": "client_credentials"})),
    );
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = a.admin("POST", "/tenants/acme/installs/crm/update", None, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["password_lost"], true, "{body}");
    // … and the second host's very next request sees it.
    let (status, body) = b.token("acme", CRM, ALICE);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "unauthorized_client", "{body}");
}
