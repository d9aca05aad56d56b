//! A real client we did not write completes the authorization code flow with PKCE against a
//! running `granted serve` (the binary, on the demo state): Authlib's `OAuth2Session` (Python,
//! through `tests/clients/authlib_flow.py`; the `oauth2` crate's run is in `oauth2_client.rs`).
//! It signs in through the server's pages with real HTTP form posts (requests' cookie jar, the
//! CSRF token read from each page), exchanges the code with its own PKCE verifier, calls
//! UserInfo and refreshes; the ID token is checked against the tenant's JWKS by PyJWT and must
//! carry the nonce sent.
//!
//! Authlib comes from `tests/jose/requirements.txt` in the venv whose python is
//! `GRANTED_JOSE_PYTHON`, made by `cargo xtask test`, which sets `GRANTED_JOSE_REQUIRED=1`: a
//! missing venv then fails the test. Run alone without it, the Authlib check is skipped and says
//! so.

#![cfg(unix)]

mod common;

use serde_json::{json, Value};
use std::io::Write as _;
use std::process::{Command, Stdio};

const REDIRECT: &str = "http://127.0.0.1:8765/callback";

#[test]
fn authlib_completes_the_code_flow_and_pyjwt_verifies_the_id_token() {
    let required = std::env::var("GRANTED_JOSE_REQUIRED").as_deref() == Ok("1");
    let python = match std::env::var("GRANTED_JOSE_PYTHON") {
        Ok(python) => python,
        Err(_) if required => {
            panic!("GRANTED_JOSE_PYTHON is not set: `cargo xtask test` makes the venv")
        }
        Err(_) => {
            eprintln!("SKIPPED: Authlib (GRANTED_JOSE_PYTHON is not set; `cargo xtask test` makes the venv from tests/jose/requirements.txt)");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    common::import(&db);
    let served = common::serve(&db, &dir.path().join("serve.log"));
    let job = json!({
        "base": served.base,
        "tenant": "globex",
        "client_id": "notes-1",
        "client_secret": "notes-1-secret",
        "redirect_uri": REDIRECT,
        "username": "bob",
        "password": "tr0ub4dor&3",
        "scope": "openid read",
    });
    let mut child = Command::new(python)
        .arg("../tests/clients/authlib_flow.py")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(text.trim()).expect("one JSON object");
    assert_eq!(seen["pages"], json!(["sign_in", "consent"]));
    assert_eq!(seen["scope"], "openid read");
    let claims = &seen["id_token_claims"];
    assert_eq!(claims["aud"], "notes-1");
    assert_eq!(claims["sub"], seen["userinfo"]["sub"]);
    assert_eq!(seen["userinfo"]["preferred_username"], "bob");
    assert_eq!(seen["refreshed"], true);
}
