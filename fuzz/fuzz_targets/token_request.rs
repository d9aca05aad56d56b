//! Any bytes as a token request: as the JSON request a host builds, or as the body and
//! `Authorization` header of a form POST. The request parser and the whole step function must
//! answer without panicking or trapping.
#![no_main]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use granted_policy::api;
use granted_policy::token::endpoint::refresh_token_sha256;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fn context() -> Value {
    json!({
        "now": "2026-11-25T12:00:00Z",
        "issuer": "https://granted.test",
        "signing_key": {"kid": "k", "alg": "ES256"},
        "client_secret_key": STANDARD.encode(b"key"),
        "kdf_iterations": 1,
        "entropy": STANDARD.encode([1u8; 80]),
    })
}

/// A tenant installing `crm` (client `crm-1`, secret `s`), user `alice` (password `pw`, 1 iteration),
/// and an active refresh token `rt` of hers.
fn found() -> Value {
    let key = STANDARD.encode(b"key");
    let hmac = api::call(
        "hash_client_secret",
        json!({"key": key, "secret": "s"}).to_string().as_bytes(),
    );
    let hmac: Value = serde_json::from_slice(&hmac).unwrap_or_default();
    let hash = api::call(
        "hash_password",
        json!({"password": "pw", "salt": "c2FsdA==", "iterations": 1})
            .to_string()
            .as_bytes(),
    );
    let hash: Value = serde_json::from_slice(&hash).unwrap_or_default();
    json!({
        "tenant": {"tenant": "acme", "sso_required": false, "password_max_age_days": 90, "installs": [{"app_id": "crm", "rev": 2}]},
        "client": {"client_id": "crm-1", "secret_hmac": hmac["ok"]["secret_hmac"], "app": {"app_id": "crm", "created_at": "2020-01-01T00:00:00Z", "revisions": [
            {"rev": 1, "at": "2020-01-01T00:00:00Z", "client_id": "crm-1", "grant_type": "password", "scopes": ["read", "write"]},
            {"rev": 2, "at": "2023-01-01T00:00:00Z", "client_id": "crm-1", "grant_type": "password", "scopes": ["read"]}]}},
        "user": {"username": "alice", "sign_in": "direct", "password_hash": hash["ok"]["hash"], "password_changed_at": "2026-11-01T00:00:00Z"},
        "refresh_token": {"token_sha256": refresh_token_sha256("rt"), "family_id": "f", "tenant": "acme", "client_id": "crm-1", "username": "alice",
            "scope": "read", "grant_type": "password", "issued_at": "2026-11-20T00:00:00Z", "expires_at": "2026-12-20T00:00:00Z", "status": "active"},
    })
}

fuzz_target!(|data: &[u8]| {
    let request: Value = match serde_json::from_slice::<Value>(data) {
        Ok(v) if v.is_object() => v,
        _ => {
            let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
            let (auth, body) = data.split_at(split);
            json!({
                "method": "POST",
                "tenant": "acme",
                "headers": [["Content-Type", "application/x-www-form-urlencoded"], ["Authorization", String::from_utf8_lossy(auth)]],
                "body_base64": STANDARD.encode(body),
            })
        }
    };
    // Nothing found, then a real tenant, client and user (so that T3–T9 and refresh are reached).
    let empty = json!({"tenant": null, "client": null, "user": null, "refresh_token": null});
    // With the host's signature too, so that a success is answered in full.
    let signature = URL_SAFE_NO_PAD.encode([7u8; 64]);
    for (records, signed) in [(json!({}), false), (empty, false), (found(), false), (found(), true)] {
        let mut context = context();
        context["kdf_in_module"] = json!(true);
        let mut input = json!({"request": request, "context": context, "records": records});
        if signed {
            input["signature"] = json!(signature);
        }
        let out = api::call("token", &serde_json::to_vec(&input).unwrap_or_default());
        assert!(
            serde_json::from_slice::<Value>(&out).is_ok(),
            "the answer is always JSON"
        );
    }
});
