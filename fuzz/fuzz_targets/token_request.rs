//! Any bytes as a token request: as the JSON request a host builds, or as the body and
//! `Authorization` header of a form POST. The request parser and the whole step function must
//! answer without panicking or trapping.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use granted_policy::api;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fn context() -> Value {
    json!({
        "now": "2026-11-25T12:00:00Z",
        "issuer": "https://granted.test",
        "signing_key": {"kid": "k", "secret": STANDARD.encode([7u8; 32])},
        "client_secret_key": STANDARD.encode(b"key"),
        "kdf_iterations": 1,
        "entropy": STANDARD.encode([1u8; 64]),
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
    let records = json!({"tenant": null, "client": null, "user": null, "refresh_token": null});
    for records in [json!({}), records] {
        let input = json!({"request": request, "context": context(), "records": records});
        let out = api::call("token", &serde_json::to_vec(&input).unwrap_or_default());
        assert!(
            serde_json::from_slice::<Value>(&out).is_ok(),
            "the answer is always JSON"
        );
    }
});
