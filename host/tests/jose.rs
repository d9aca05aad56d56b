//! Access tokens checked by JOSE libraries we did not write, as a resource server checks them:
//! PyJWT (`PyJWKClient`) and panva/jose (`createRemoteJWKSet`) against the tenant's JWKS, for
//! every asymmetric algorithm, before and after a rotation, and a token of a retired key refused
//! once that key leaves the JWKS. Introspection agrees with them on every token. Also: no
//! private key in the module's memory after signed requests.
//!
//! The libraries come from `tests/jose/` (`requirements.txt` in a venv whose python is
//! `GRANTED_JOSE_PYTHON`, `package-lock.json` through `npm ci`), installed by `cargo xtask test`,
//! which sets `GRANTED_JOSE_REQUIRED=1`: a library missing then fails the test. Run alone
//! without them, the library checks are skipped and say so.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use granted_host::guest::Guest;
use granted_host::service::Service;
use granted_host::settings::{Clock, ServerSettings};
use granted_host::signing::{generate, ServerKey};
use granted_host::store::Store;
use granted_policy::model::Timestamp;
use granted_policy::token::jwt::SigningAlg;
use serde_json::{json, Value};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Running {
    base: String,
    service: Arc<Service>,
    _runtime: tokio::runtime::Runtime,
}

fn start(store: Store, alg: SigningAlg) -> Running {
    let settings = ServerSettings {
        kdf_iterations: 1000,
        // The libraries judge `exp` by the real clock.
        clock: Clock::System,
        signing_alg: alg,
        ..ServerSettings::default()
    };
    let service =
        Service::new(Guest::embedded().expect("module"), store, settings).expect("server");
    common::import_demo_state(&service);
    let (base, runtime) = common::listen(service.clone());
    Running {
        base,
        service,
        _runtime: runtime,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn get(url: &str) -> Value {
    let mut response = agent().get(url).call().expect("request");
    assert_eq!(response.status().as_u16(), 200, "{url}");
    serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("json")
}

fn post(run: &Running, endpoint: &str, form: &[(&str, &str)]) -> Value {
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| {
            let enc = granted_policy::token::request::form_encode;
            format!("{}={}", enc(k), enc(v))
        })
        .collect();
    let mut response = agent()
        .post(format!("{}/tenants/acme/connect/{endpoint}", run.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header(
            "Authorization",
            format!("Basic {}", STANDARD.encode("crm-1:crm-1-secret")),
        )
        .send(body.join("&"))
        .expect("request");
    assert_eq!(response.status().as_u16(), 200, "{endpoint}");
    serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("json")
}

fn access_token(run: &Running) -> String {
    let body = post(
        run,
        "token",
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "correct horse battery"),
        ],
    );
    body["access_token"].as_str().expect("a token").to_string()
}

fn kid(token: &str) -> String {
    let header = token.split('.').next().expect("a header");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("json");
    header["kid"].as_str().expect("a kid").to_string()
}

fn now() -> Timestamp {
    let text = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole seconds")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    Timestamp::parse(&text).expect("an instant")
}

/// Waits for `done` (checked every 100 ms), with a ceiling for a server that never gets there.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: not after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A verifier we did not write: its name and the command that runs it.
struct Library {
    name: &'static str,
    command: Vec<String>,
}

fn libraries() -> Vec<Library> {
    let required = std::env::var("GRANTED_JOSE_REQUIRED").as_deref() == Ok("1");
    let mut found = Vec::new();
    match std::env::var("GRANTED_JOSE_PYTHON") {
        Ok(python) => found.push(Library {
            name: "PyJWT",
            command: vec![python, "../tests/jose/verify.py".into()],
        }),
        Err(_) if required => panic!("GRANTED_JOSE_PYTHON is not set: `cargo xtask test` makes the venv"),
        Err(_) => eprintln!(
            "SKIPPED: PyJWT checks (GRANTED_JOSE_PYTHON is not set; `cargo xtask test` makes the venv from tests/jose/requirements.txt)"
        ),
    }
    if std::path::Path::new("../tests/jose/node_modules/jose").is_dir() {
        found.push(Library {
            name: "jose",
            command: vec!["node".into(), "../tests/jose/verify.mjs".into()],
        });
    } else if required {
        panic!("tests/jose/node_modules is missing: `cargo xtask test` runs `npm ci` there");
    } else {
        eprintln!("SKIPPED: panva/jose checks (run `npm ci` in tests/jose)");
    }
    found
}

/// Each library's verdict on each token: `Some(claims)` when valid.
fn verdicts(library: &Library, run: &Running, tokens: &[&str]) -> Vec<Option<Value>> {
    let issuer = format!("{}/tenants/acme", run.service_issuer());
    let job = json!({
        "jwks_uri": format!("{}/tenants/acme/.well-known/jwks.json", run.base),
        "issuer": issuer,
        "audience": run.service_issuer(),
        "tokens": tokens,
    });
    let mut child = Command::new(&library.command[0])
        .args(&library.command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", library.name));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(job.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("the verifier ends");
    assert!(
        out.status.success(),
        "{} failed: {}",
        library.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), tokens.len(), "{}: {lines:?}", library.name);
    lines
        .into_iter()
        .map(|l| (l["valid"] == true).then(|| l["claims"].clone()))
        .collect()
}

impl Running {
    fn service_issuer(&self) -> String {
        ServerSettings::default().issuer
    }
}

/// Every library and introspection say the same of each token: `expected` (valid or not), and
/// for a valid one the same claims.
fn all_agree(run: &Running, libraries: &[Library], tokens: &[(&str, bool)]) {
    let list: Vec<&str> = tokens.iter().map(|(t, _)| *t).collect();
    for library in libraries {
        for ((token, expected), verdict) in tokens.iter().zip(verdicts(library, run, &list)) {
            assert_eq!(
                verdict.is_some(),
                *expected,
                "{} on a token of key {}",
                library.name,
                kid(token)
            );
            let seen = post(run, "introspect", &[("token", token)]);
            assert_eq!(seen["active"], *expected, "introspection: {seen}");
            if let Some(claims) = verdict {
                for claim in [
                    "sub",
                    "client_id",
                    "scope",
                    "iss",
                    "aud",
                    "iat",
                    "exp",
                    "jti",
                ] {
                    assert_eq!(
                        claims[claim], seen[claim],
                        "{} and introspection on `{claim}`",
                        library.name
                    );
                }
            }
        }
    }
}

/// How long the first key verifies after a rotation in the test below.
const VERIFY_SECONDS: i64 = 20;

#[test]
fn jose_libraries_verify_every_algorithm_before_and_after_a_rotation() {
    let libraries = libraries();
    for alg in [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256] {
        let store = granted_host::testing::store().expect("store");
        let run = start(store.clone(), alg);
        let jwks_uri = format!("{}/tenants/acme/.well-known/jwks.json", run.base);
        let metadata = get(&format!(
            "{}/tenants/acme/.well-known/oauth-authorization-server",
            run.base
        ));
        assert_eq!(
            metadata["jwks_uri"],
            format!(
                "{}/tenants/acme/.well-known/jwks.json",
                run.service_issuer()
            )
        );
        let first = access_token(&run);
        let jwks = get(&jwks_uri);
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
        assert_eq!(jwks["keys"][0]["alg"], alg.name());
        assert_eq!(jwks["keys"][0]["kid"], kid(&first).as_str());
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                jwks["keys"][0].get(private).is_none(),
                "{private} in {jwks}"
            );
        }
        all_agree(&run, &libraries, &[(&first, true)]);
        // Rotated: published at once, signing two seconds later, the first key verifying for
        // twenty (a test's lifetimes: the server's own are an hour and the access-token TTL).
        // Twenty, not five: each check below starts Python and Node once per library, and on a
        // slow machine five seconds ran out before the first token's check (CI, stop 27).
        let at = now();
        let verify_until = at.plus_seconds(VERIFY_SECONDS);
        let new = store
            .rotate_signing_key(
                at,
                at.plus_seconds(2),
                verify_until,
                alg,
                &generate(alg).expect("a key"),
                "rotated",
            )
            .expect("rotate");
        wait_for("the new key in the JWKS", || {
            get(&jwks_uri)["keys"].as_array().map(Vec::len) == Some(2)
        });
        let mut second = access_token(&run);
        wait_for("the new key signing", || {
            second = access_token(&run);
            kid(&second) == new.kid
        });
        all_agree(&run, &libraries, &[(&first, true), (&second, true)]);
        wait_for("the first key out of the JWKS", || {
            get(&jwks_uri)["keys"].as_array().map(Vec::len) == Some(1)
        });
        // Its token has not expired, but nothing publishes its key any more.
        all_agree(&run, &libraries, &[(&first, false), (&second, true)]);
    }
}

/// Every form of a key's private half: its stored text, its private JWK's text, and each
/// private JWK member's bytes.
fn private_forms(key: &ServerKey, stored: &str) -> Vec<Vec<u8>> {
    let jwk = key.private_jwk().expect("private jwk");
    let parsed: Value = serde_json::from_str(&jwk).expect("json");
    let mut forms = vec![stored.as_bytes().to_vec(), jwk.as_bytes().to_vec()];
    forms.extend(STANDARD.decode(stored).ok());
    for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        if let Some(text) = parsed[member].as_str() {
            forms.push(text.as_bytes().to_vec());
            forms.push(URL_SAFE_NO_PAD.decode(text).expect("base64url"));
        }
    }
    forms
}

#[test]
fn no_private_key_enters_the_modules_memory() {
    for alg in [
        SigningAlg::ES256,
        SigningAlg::EdDSA,
        SigningAlg::RS256,
        SigningAlg::HS256,
    ] {
        let store = granted_host::testing::store().expect("store");
        let run = start(store.clone(), alg);
        run.service.probe_memory();
        let token = access_token(&run);
        let seen = post(&run, "introspect", &[("token", &token)]);
        assert_eq!(seen["active"], true, "{seen}");
        let memories = run.service.take_memory();
        assert_eq!(memories.len(), 2, "a token request and an introspection");
        let (stored, _) = store.current_keys(now()).expect("keys").expect("made");
        let key = ServerKey::open(&stored.kid, stored.alg, &stored.secret).expect("opens");
        // The probe sees what the module saw: the token it wrote is in its memory.
        assert!(
            memories[0]
                .windows(token.len())
                .any(|w| w == token.as_bytes()),
            "the probe does not show the module's memory"
        );
        for form in private_forms(&key, &stored.secret) {
            for memory in &memories {
                assert!(
                    !memory.windows(form.len()).any(|w| w == form.as_slice()),
                    "{}: a private key form of {} bytes is in the module's memory",
                    alg.name(),
                    form.len()
                );
            }
        }
    }
}

#[test]
fn an_hs256_key_is_never_published() {
    let run = start(
        granted_host::testing::store().expect("store"),
        SigningAlg::HS256,
    );
    let token = access_token(&run);
    assert_eq!(
        get(&format!("{}/tenants/acme/.well-known/jwks.json", run.base)),
        json!({"keys": []})
    );
    let seen = post(&run, "introspect", &[("token", &token)]);
    assert_eq!(seen["active"], true, "{seen}");
}

mod common;

#[test]
fn no_private_key_in_the_servers_log_or_in_export() {
    for alg in ["ES256", "RS256"] {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("g.db");
        let log = dir.path().join("serve.log");
        let status = Command::new(common::GRANTED)
            .args(["import", "--kdf-iterations", "1000", "--db"])
            .arg(&db)
            .arg("../tests/demo/state.json")
            .env("GRANTED_SIGNING_ALG", alg)
            .status()
            .expect("import");
        assert!(status.success());
        let served = common::serve_with(&db, &log, None, &[("GRANTED_SIGNING_ALG", alg)]);
        let (status, body) = common::token(
            &served.base,
            "acme",
            ("sync-1", "sync-1-secret"),
            "grant_type=client_credentials",
        );
        assert_eq!(status, 200, "{body}");
        let token = body["access_token"].as_str().expect("a token");
        let (status, seen) = common::post(
            &served.base,
            "/tenants/acme/connect/introspect",
            &common::basic("sync-1", "sync-1-secret"),
            &format!("token={token}"),
        )
        .expect("introspection");
        assert_eq!((status, &seen["active"]), (200, &json!(true)), "{seen}");
        drop(served);
        let out = Command::new(common::GRANTED)
            .args(["export", "--db"])
            .arg(&db)
            .output()
            .expect("export");
        assert!(out.status.success());
        let store = Store::open(&db).expect("store");
        let keys = store.verification_keys(now()).expect("keys");
        assert!(!keys.is_empty());
        let log = std::fs::read(&log).expect("log");
        assert!(!log.is_empty(), "the server logged nothing");
        for key in keys {
            let opened = ServerKey::open(&key.kid, key.alg, &key.secret).expect("opens");
            for form in private_forms(&opened, &key.secret) {
                let found = |bytes: &[u8]| bytes.windows(form.len()).any(|w| w == form.as_slice());
                assert!(!found(&log), "{alg}: a private key form is in the log");
                assert!(
                    !found(&out.stdout),
                    "{alg}: a private key form is in the export"
                );
            }
        }
    }
}
