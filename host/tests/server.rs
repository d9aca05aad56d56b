//! `granted serve` over real HTTP on loopback: the demo state imported, the grants, refresh
//! rotation and reuse, the sunset, lockout, limits, and a misbehaving module.

use base64::Engine as _;
use granted_host::guest::{Guest, GuestOptions};
use granted_host::service::Service;
use granted_host::settings::{Clock, ServerSettings};
use granted_host::store::Store;
use granted_policy::model::Timestamp;
use granted_policy::token::jwt::SigningAlg;
use serde_json::Value;
use std::time::Duration;

mod common;

struct Running {
    base: String,
    _runtime: tokio::runtime::Runtime,
}

fn start_with(guest: Guest) -> Running {
    start_with_store(guest, granted_host::testing::store().expect("store"))
}

fn start_keeping_store() -> (Running, Store) {
    let store = granted_host::testing::store().expect("store");
    (
        start_with_store(Guest::embedded().expect("module"), store.clone()),
        store,
    )
}

fn test_settings() -> ServerSettings {
    ServerSettings {
        kdf_iterations: 1000,
        clock: Clock::Fixed(Timestamp::parse("2026-11-25T12:00:00Z").expect("an instant")),
        ..ServerSettings::default()
    }
}

fn start_with_store(guest: Guest, store: Store) -> Running {
    start_with_settings(guest, store, test_settings())
}

fn start_with_settings(guest: Guest, store: Store, settings: ServerSettings) -> Running {
    let srv = Service::new(guest, store, settings).expect("server");
    common::import_demo_state(&srv);
    let (base, runtime) = common::listen(srv);
    Running {
        base,
        _runtime: runtime,
    }
}

fn start() -> Running {
    start_with(Guest::embedded().expect("module"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// POSTs a form to the tenant's token endpoint; answers status and JSON body.
fn token(run: &Running, tenant: &str, auth: Option<&str>, form: &[(&str, &str)]) -> (u16, Value) {
    post(run, tenant, "token", auth, form)
}

/// POSTs a form to `/tenants/{tenant}/connect/{endpoint}`; answers status and JSON body (a
/// string when the body is not JSON, `""` when it is empty).
fn post(
    run: &Running,
    tenant: &str,
    endpoint: &str,
    auth: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let body: String = form
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                granted_policy::token::request::form_encode(k),
                granted_policy::token::request::form_encode(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let mut request = agent()
        .post(format!("{}/tenants/{tenant}/connect/{endpoint}", run.base))
        .header("Content-Type", "application/x-www-form-urlencoded");
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    let mut response = request.send(body).expect("request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const ALICE: [(&str, &str); 3] = [
    ("grant_type", "password"),
    ("username", "alice"),
    ("password", "correct horse battery"),
];

#[test]
fn the_password_grant_works_with_basic_and_with_body_credentials() {
    let run = start();
    let (status, body) = token(&run, "acme", Some(&basic("crm-1", "crm-1-secret")), &ALICE);
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"]
        .as_str()
        .is_some_and(|t| t.split('.').count() == 3));
    assert!(body["refresh_token"].is_string());
    let mut form = ALICE.to_vec();
    form.extend([("client_id", "crm-1"), ("client_secret", "crm-1-secret")]);
    let (status, body) = token(&run, "acme", None, &form);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_refresh_token_rotates_and_its_reuse_revokes_the_family() {
    let run = start();
    let auth = basic("crm-1", "crm-1-secret");
    let (_, first) = token(&run, "acme", Some(&auth), &ALICE);
    let r1 = first["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    let (status, second) = token(
        &run,
        "acme",
        Some(&auth),
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    );
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_string();
    assert_ne!(r1, r2);
    // The rotated-out token comes back: refused, and the whole family with it.
    let (status, reuse) = token(
        &run,
        "acme",
        Some(&auth),
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    );
    assert_eq!(
        (status, reuse["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, after) = token(
        &run,
        "acme",
        Some(&auth),
        &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
    );
    assert_eq!(
        (status, after["error"].as_str()),
        (400, Some("invalid_grant")),
        "{after}"
    );
}

#[test]
fn the_sunset_is_enforced_and_machine_tokens_still_flow() {
    let run = start();
    // globex updated `reports` to the client-credentials revision with a new client_id.
    let (status, body) = token(
        &run,
        "globex",
        Some(&basic("reports-2", "reports-2-secret")),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = token(
        &run,
        "globex",
        Some(&basic("reports-2", "reports-2-secret")),
        &[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "x"),
        ],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
}

#[test]
fn failed_logins_lock_the_user_and_a_locked_user_gets_the_wrong_password_answer() {
    let run = start();
    let auth = basic("crm-1", "crm-1-secret");
    let wrong = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "nope"),
    ];
    let (_, wrong_answer) = token(&run, "acme", Some(&auth), &wrong);
    for _ in 0..4 {
        token(&run, "acme", Some(&auth), &wrong);
    }
    let (status, locked) = token(&run, "acme", Some(&auth), &ALICE);
    assert_eq!(status, 400);
    assert_eq!(locked, wrong_answer);
}

#[test]
fn health_names_the_module_and_limits_hold() {
    let run = start();
    let mut response = agent()
        .get(format!("{}/healthz", run.base))
        .call()
        .expect("healthz");
    let health: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(health["policy_sha256"], Guest::embedded().unwrap().sha256());
    let big = "a".repeat(70 * 1024);
    let mut response = agent()
        .post(format!("{}/tenants/acme/connect/token", run.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(big)
        .expect("request");
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error"], "invalid_request");
    let mut response = agent()
        .get(format!(
            "{}/tenants/acme/.well-known/oauth-authorization-server",
            run.base
        ))
        .call()
        .expect("metadata");
    let meta: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    // The issuer is the configured base URL (the default here), not the test's port.
    assert_eq!(
        meta["token_endpoint"],
        "http://127.0.0.1:8080/tenants/acme/connect/token"
    );
    assert_eq!(meta["grant_types_supported"][0], "password");
}

/// Modules that loop, ask for too much memory, trap, or lack `granted_token_start`: each request
/// gets a 503 JSON error in time, and the server keeps serving.
#[test]
fn a_misbehaving_module_gets_a_503_and_the_server_keeps_serving() {
    let bodies = [
        (
            "an endless loop",
            r#"(func (export "granted_token_start") (param i32 i32) (result i64) (loop (br 0)) i64.const 0)"#,
        ),
        (
            "a huge allocation",
            r#"(func (export "granted_token_start") (param i32 i32) (result i64)
            (if (i32.eq (memory.grow (i32.const 30000)) (i32.const -1)) (then unreachable)) i64.const 0)"#,
        ),
        (
            "a trap",
            r#"(func (export "granted_token_start") (param i32 i32) (result i64) unreachable)"#,
        ),
        ("a missing export", ""),
    ];
    for (what, body) in bodies {
        let wat = format!(
            r#"
(module
  (memory (export "memory") 1)
  (func (export "granted_abi_version") (result i32) i32.const 2)
  (func (export "granted_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "granted_free") (param i32 i32))
  (data (i32.const 2048) "{{\"ok\":{{\"secret_hmac\":\"aG1hYw==\"}}}}")
  (func (export "granted_hash_client_secret") (param i32 i32) (result i64) i64.const 0x0000080000000021)
  {body}
)"#
        );
        let bytes = wat::parse_str(&wat).expect("wat");
        let guest = Guest::load(
            &bytes,
            GuestOptions {
                deadline: Duration::from_millis(100),
                memory_limit: 16 << 20,
                ..GuestOptions::default()
            },
        )
        .expect("loads");
        let run = start_with(guest);
        for _ in 0..2 {
            let started = std::time::Instant::now();
            let (status, body) = token(&run, "acme", Some(&basic("crm-1", "crm-1-secret")), &ALICE);
            assert_eq!(status, 503, "{what}: {body}");
            assert_eq!(body["error"], "temporarily_unavailable", "{what}");
            assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        }
        let response = agent()
            .get(format!("{}/healthz", run.base))
            .call()
            .expect("healthz");
        assert_eq!(response.status().as_u16(), 200, "{what}");
    }
}

/// A key rotated while the server runs signs the next tokens; tokens signed with the old key
/// still introspect as active until they expire.
#[test]
fn a_rotated_key_signs_new_tokens_and_old_ones_still_verify() {
    let (run, store) = start_keeping_store();
    let crm = basic("crm-1", "crm-1-secret");
    let kid = |token: &str| -> String {
        let header = token.split('.').next().unwrap();
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap();
        header["kid"].as_str().unwrap().to_string()
    };
    let (_, before) = token(&run, "acme", Some(&crm), &ALICE);
    let old = before["access_token"].as_str().unwrap().to_string();
    let now = Timestamp::parse("2026-11-25T12:00:00Z").unwrap();
    // Signing from now (no publication delay), with another algorithm than the first key's.
    let new = store
        .rotate_signing_key(
            now,
            now,
            now.plus_seconds(3600),
            SigningAlg::EdDSA,
            &granted_host::signing::generate(SigningAlg::EdDSA).unwrap(),
            "rotated",
        )
        .unwrap();
    // The server reads its keys at most once a second: the new key signs within that.
    let started = std::time::Instant::now();
    let fresh = loop {
        let (_, after) = token(&run, "acme", Some(&crm), &ALICE);
        let fresh = after["access_token"].as_str().unwrap().to_string();
        if kid(&fresh) == new.kid {
            break fresh;
        }
        // A ceiling for a server that never reads its keys again, not a timing.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the rotated key is not used after 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(kid(&fresh), new.kid);
    assert_ne!(kid(&old), new.kid);
    let (_, seen) = post(&run, "acme", "introspect", Some(&crm), &[("token", &old)]);
    assert_eq!(seen["active"], true, "{seen}");
}

#[test]
fn introspection_shows_a_client_its_own_live_tokens_only() {
    let run = start();
    let crm = basic("crm-1", "crm-1-secret");
    let (_, issued) = token(&run, "acme", Some(&crm), &ALICE);
    let access = issued["access_token"].as_str().unwrap();
    let refresh = issued["refresh_token"].as_str().unwrap();
    let (status, seen) = post(&run, "acme", "introspect", Some(&crm), &[("token", access)]);
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(
        (seen["sub"].as_str(), seen["client_id"].as_str()),
        (Some("alice"), Some("crm-1"))
    );
    let (_, seen) = post(
        &run,
        "acme",
        "introspect",
        Some(&crm),
        &[("token", refresh)],
    );
    assert_eq!(
        (seen["active"].as_bool(), seen["token_type"].as_str()),
        (Some(true), Some("refresh_token"))
    );
    // Another client of the tenant learns nothing about them.
    let other = basic("reports-1", "reports-1-secret");
    for token in [access, refresh] {
        let (status, seen) = post(
            &run,
            "acme",
            "introspect",
            Some(&other),
            &[("token", token)],
        );
        assert_eq!(
            (status, &seen),
            (200, &serde_json::json!({"active": false}))
        );
    }
    // A tampered token is not active.
    let tampered = format!("{}x", access);
    let (_, seen) = post(
        &run,
        "acme",
        "introspect",
        Some(&crm),
        &[("token", &tampered)],
    );
    assert_eq!(seen, serde_json::json!({"active": false}));
    // Without the right secret: 401.
    let (status, seen) = post(
        &run,
        "acme",
        "introspect",
        Some(&basic("crm-1", "wrong")),
        &[("token", access)],
    );
    assert_eq!(
        (status, seen["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[test]
fn revoking_a_refresh_token_ends_its_family_and_unknown_tokens_get_a_200() {
    let run = start();
    let crm = basic("crm-1", "crm-1-secret");
    let (_, issued) = token(&run, "acme", Some(&crm), &ALICE);
    let r1 = issued["refresh_token"].as_str().unwrap().to_string();
    let (_, rotated) = token(
        &run,
        "acme",
        Some(&crm),
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    );
    let r2 = rotated["refresh_token"].as_str().unwrap().to_string();
    // Another client cannot revoke it.
    let (status, _) = post(
        &run,
        "acme",
        "revocation",
        Some(&basic("reports-1", "reports-1-secret")),
        &[("token", &r2)],
    );
    assert_eq!(status, 200);
    let (_, seen) = post(&run, "acme", "introspect", Some(&crm), &[("token", &r2)]);
    assert_eq!(seen["active"], true);
    let (status, body) = post(
        &run,
        "acme",
        "revocation",
        Some(&crm),
        &[("token", &r2), ("token_type_hint", "refresh_token")],
    );
    assert_eq!((status, body), (200, Value::String(String::new())));
    let (_, seen) = post(&run, "acme", "introspect", Some(&crm), &[("token", &r2)]);
    assert_eq!(seen["active"], false);
    let (status, refused) = token(
        &run,
        "acme",
        Some(&crm),
        &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
    );
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = post(
        &run,
        "acme",
        "revocation",
        Some(&crm),
        &[("token", "no-such-token")],
    );
    assert_eq!(status, 200);
    let (status, body) = post(
        &run,
        "acme",
        "revocation",
        Some(&crm),
        &[("nothing", "here")],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

/// One KDF thread and room for one waiting login: a burst of password requests gets quick 503s
/// with `Retry-After` rather than an unbounded wait, and machine tokens are served meanwhile.
#[test]
fn a_full_login_queue_turns_passwords_away_and_client_credentials_still_flow() {
    let settings = ServerSettings {
        kdf_iterations: 400_000,
        kdf_threads: 1,
        login_queue: 1,
        ..test_settings()
    };
    let run = start_with_settings(
        Guest::embedded().expect("module"),
        granted_host::testing::store().expect("store"),
        settings,
    );
    let url = format!("{}/tenants/acme/connect/token", run.base);
    let logins: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let response = agent()
                    .post(&url)
                    .header("Authorization", &basic("crm-1", "crm-1-secret"))
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .send("grant_type=password&username=alice&password=correct+horse+battery")
                    .expect("request");
                let retry = response.headers().get("retry-after").is_some();
                (response.status().as_u16(), retry)
            })
        })
        .collect();
    // While the logins wait for the one KDF thread, a machine token is issued.
    let (status, body) = token(
        &run,
        "globex",
        Some(&basic("reports-2", "reports-2-secret")),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 200, "{body}");
    let answers: Vec<(u16, bool)> = logins.into_iter().map(|h| h.join().unwrap()).collect();
    let turned_away = answers.iter().filter(|(s, _)| *s == 503).count();
    let served = answers.iter().filter(|(s, _)| *s == 200).count();
    assert!(served >= 1, "{answers:?}");
    assert!(turned_away >= 1, "no login was turned away: {answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, retry)| *s == 200 || (*s == 503 && *retry)),
        "{answers:?}"
    );
}

/// Failed authentications from one client and address are throttled with 429 and
/// `Retry-After`; another client, or (behind a trusted proxy) another address, is not.
#[test]
fn failures_from_one_client_and_address_are_throttled() {
    let settings = ServerSettings {
        throttle_failures: 3,
        trusted_proxy_header: Some("x-forwarded-for".into()),
        ..test_settings()
    };
    let run = start_with_settings(
        Guest::embedded().expect("module"),
        granted_host::testing::store().expect("store"),
        settings,
    );
    let url = format!("{}/tenants/acme/connect/token", run.base);
    let send = |secret: &str, forwarded: &str| {
        let mut response = agent()
            .post(&url)
            .header("Authorization", &basic("crm-1", secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-Forwarded-For", forwarded)
            .send("grant_type=client_credentials")
            .expect("request");
        let retry = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        (response.status().as_u16(), retry, body)
    };
    for _ in 0..3 {
        assert_eq!(send("wrong", "203.0.113.7").0, 401);
    }
    let (status, retry, body) = send("wrong", "203.0.113.7");
    assert_eq!(status, 429, "{body}");
    assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|s| (1..=60).contains(&s))));
    assert_eq!(body["error"], "temporarily_unavailable");
    // Even the right secret waits out the window from that address…
    assert_eq!(send("crm-1-secret", "203.0.113.7").0, 429);
    // …but the same client from another address is answered as usual.
    assert_eq!(send("wrong", "198.51.100.1, 203.0.113.9").0, 401);
}

/// Secret guessing at introspection is throttled like at the token endpoint, and so is spraying
/// made-up client ids from one address.
#[test]
fn introspection_guessing_and_made_up_clients_are_throttled() {
    let settings = ServerSettings {
        throttle_failures: 3,
        ..test_settings()
    };
    let run = start_with_settings(
        Guest::embedded().expect("module"),
        granted_host::testing::store().expect("store"),
        settings,
    );
    for _ in 0..3 {
        let (status, _) = post(
            &run,
            "acme",
            "introspect",
            Some(&basic("crm-1", "guess")),
            &[("token", "x")],
        );
        assert_eq!(status, 401);
    }
    let (status, body) = post(
        &run,
        "acme",
        "introspect",
        Some(&basic("crm-1", "guess")),
        &[("token", "x")],
    );
    assert_eq!(status, 429, "{body}");
    for i in 0..3 {
        let id = format!("made-up-{i}");
        let (status, _) = token(
            &run,
            "globex",
            Some(&basic(&id, "s")),
            &[("grant_type", "client_credentials")],
        );
        assert_eq!(status, 401);
    }
    let (status, body) = token(
        &run,
        "globex",
        Some(&basic("made-up-9", "s")),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 429, "{body}");
}

#[test]
fn metadata_is_also_at_the_rfc8414_well_known_path() {
    let run = start();
    let mut response = agent()
        .get(format!(
            "{}/.well-known/oauth-authorization-server/tenants/acme",
            run.base
        ))
        .call()
        .expect("metadata");
    assert_eq!(response.status().as_u16(), 200);
    let meta: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(meta["issuer"], "http://127.0.0.1:8080/tenants/acme");
}

/// More requests at once than the instance pool holds: they wait for an instance, none fails.
#[test]
fn requests_beyond_the_instance_pool_wait_instead_of_failing() {
    let guest = Guest::load(
        granted_host::guest::EMBEDDED_POLICY,
        GuestOptions {
            max_instances: 10,
            ..Default::default()
        },
    )
    .expect("module");
    let run = start_with(guest);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40)
            .map(|_| {
                s.spawn(|| {
                    token(
                        &run,
                        "acme",
                        Some(&basic("sync-1", "sync-1-secret")),
                        &[("grant_type", "client_credentials")],
                    )
                    .0
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// A user imported with a Django hash (`pbkdf2_sha256$1000$…`): the first login stores a PHC
/// PBKDF2-SHA256 hash at the server's iterations in its place, in the login's own commit; the
/// next login verifies against that hash and stores nothing more.
#[test]
fn a_login_with_an_imported_django_hash_stores_a_pbkdf2_hash_at_the_current_parameters() {
    use granted_policy::credentials::password;
    use granted_policy::token::endpoint::Lookup;
    const DJANGO: &str =
        "pbkdf2_sha256$1000$seasalt42$XPaecmkzWf3qPB25Id+BHEcxTNEHi5C3HmcsaNyB2ms=";
    let store = granted_host::testing::store().expect("store");
    let settings = ServerSettings {
        kdf_iterations: 2000,
        record_decisions: true,
        ..test_settings()
    };
    let srv =
        Service::new(Guest::embedded().expect("module"), store.clone(), settings).expect("server");
    let text = std::fs::read_to_string("../tests/demo/state.json").expect("demo state");
    let mut state: Value = serde_json::from_str(&text).expect("demo state is JSON");
    let acme = state["tenants"]
        .as_array_mut()
        .and_then(|t| t.iter_mut().find(|t| t["tenant"] == "acme"))
        .expect("acme");
    acme["users"]
        .as_array_mut()
        .expect("users")
        .push(serde_json::json!({
            "username": "django", "sign_in": "direct", "disabled": false,
            "password_changed_at": "2026-11-01T00:00:00Z", "password_hash": DJANGO,
        }));
    let state = granted_host::state::parse(&state.to_string()).expect("state parses");
    srv.import(&state).expect("import");
    let (base, runtime) = common::listen(srv.clone());
    let run = Running {
        base,
        _runtime: runtime,
    };
    let stored_hash = || {
        let lookup = Lookup {
            tenant: "acme".into(),
            client_id: "crm-1".into(),
            username: Some("django".into()),
            refresh_token_sha256: None,
            ..Lookup::default()
        };
        let records = store.records(&lookup).expect("records");
        records.user.flatten().and_then(|u| u.password_hash)
    };
    let effects = |srv: &Service| -> Vec<String> {
        let decisions = srv.take_decisions();
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        decisions[0]["effects"]
            .as_array()
            .expect("effects")
            .iter()
            .map(|e| e["effect"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let auth = basic("crm-1", "crm-1-secret");
    let login = [
        ("grant_type", "password"),
        ("username", "django"),
        ("password", "correct horse battery"),
    ];

    let (status, body) = token(&run, "acme", Some(&auth), &login);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        effects(&srv),
        [
            "reset_login_failures",
            "store_password_hash",
            "store_refresh_token"
        ]
    );
    let rehashed = stored_hash().expect("a hash is stored");
    assert!(
        rehashed.starts_with("$pbkdf2-sha256$i=2000,l=32$"),
        "{rehashed}"
    );
    let parsed = password::parse(&rehashed).expect("the new hash parses");
    let derived = parsed.derive_here("correct horse battery").expect("derive");
    assert!(parsed.matches(&derived));
    assert!(parsed.is_current(&rehashed, 2000));

    // The next login verifies against the new hash, and keeps it.
    let (status, body) = token(&run, "acme", Some(&auth), &login);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        effects(&srv),
        ["reset_login_failures", "store_refresh_token"]
    );
    assert_eq!(stored_hash().as_deref(), Some(rehashed.as_str()));
    // A wrong password fails against it as against any hash, and stores nothing.
    let wrong = [
        ("grant_type", "password"),
        ("username", "django"),
        ("password", "Correct horse battery"),
    ];
    let (status, _) = token(&run, "acme", Some(&auth), &wrong);
    assert_eq!(status, 400);
    assert_eq!(effects(&srv), ["record_login_failure"]);
    assert_eq!(stored_hash().as_deref(), Some(rehashed.as_str()));
}
