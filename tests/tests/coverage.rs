//! What the vector set must cover, and a property no single vector can show: the unknown-user
//! path asks for the same KDF work as a real user's.

use granted_vectors::driver::{call_ok, http_request};
use granted_vectors::format::TokenRequestSpec;
use granted_vectors::{load, vector_files, Native};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;

fn ours() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/vectors"))
}

#[test]
fn every_rule_id_has_a_vector_and_there_are_sixty_or_more() {
    let files = vector_files(ours()).unwrap();
    assert!(files.len() >= 60, "only {} vectors", files.len());
    let mut seen = BTreeSet::new();
    for path in &files {
        seen.extend(load(path).unwrap().rules);
    }
    for id in [
        "R1", "R2", "R3", "R4", "A1", "A2", "A3", "A4", "A5", "T1", "T2", "T3", "T4", "T5", "T6",
        "T7", "T8", "T9",
    ] {
        assert!(seen.contains(id), "no vector exercises {id}");
    }
}

#[test]
fn every_t1_malformation_has_a_vector() {
    let mut descriptions = Vec::new();
    for path in vector_files(ours()).unwrap() {
        let v = load(&path).unwrap();
        if let Some(fragment) = v.expect.error_description_contains {
            if v.expect.error.as_deref() == Some("invalid_request") {
                descriptions.push(fragment);
            }
        }
    }
    let all = descriptions.join(" | ");
    for case in [
        "`GET`",
        "`content-type` header is missing",
        "application/x-www-form-urlencoded",
        "empty",
        "not UTF-8",
        "percent-escape",
        "is repeated",
        "`grant_type` parameter is missing",
        "authenticated twice",
        "not valid base64",
        "no `:`",
        "scheme",
    ] {
        assert!(
            all.contains(case),
            "no T1 vector checks {case:?}; have: {all}"
        );
    }
}

fn kdf_step(username: &str) -> serde_json::Value {
    let spec: TokenRequestSpec = serde_json::from_value(json!({
        "tenant": "acme", "auth": "basic",
        "form": {"grant_type": "password", "client_id": "crm-1", "client_secret": "s", "username": username, "password": "pw"}
    }))
    .unwrap();
    let key = "a2V5";
    let secret_hmac = call_ok(
        &Native,
        "hash_client_secret",
        &json!({"key": key, "secret": "s"}),
    )
    .unwrap()["secret_hmac"]
        .clone();
    // A real user's hash at the default cost (the derived key itself does not matter here).
    let hash = "$pbkdf2-sha256$i=600000,l=32$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let revision = json!({"rev": 1, "at": "2020-01-01T00:00:00Z", "client_id": "crm-1", "grant_type": "password", "scopes": ["read"]});
    let user = if username == "alice" {
        json!({"username": "alice", "sign_in": "direct", "password_hash": hash, "password_changed_at": "2026-01-01T00:00:00Z"})
    } else {
        serde_json::Value::Null
    };
    let input = json!({
        "request": http_request(&spec).unwrap(),
        "context": {
            "now": "2026-11-25T12:00:00Z", "issuer": "https://granted.test",
            "signing_key": {"kid": "k", "alg": "ES256"},
            "client_secret_key": key, "entropy": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjMwMTIzNDU2Nzg5MDEyMzQ1",
        },
        "records": {
            "tenant": {"tenant": "acme", "sso_required": false, "installs": [{"app_id": "crm", "rev": 1}]},
            "client": {"client_id": "crm-1", "secret_hmac": secret_hmac, "app": {"app_id": "crm", "created_at": "2020-01-01T00:00:00Z", "revisions": [revision]}},
            "user": user,
        },
    });
    call_ok(&Native, "token", &input).unwrap()
}

#[test]
fn an_unknown_user_costs_the_same_kdf_work_as_a_real_one() {
    let known = kdf_step("alice");
    let unknown = kdf_step("mallory");
    assert_eq!(known["step"], "need_kdf", "{known}");
    assert_eq!(unknown["step"], "need_kdf", "{unknown}");
    for field in ["algorithm", "iterations", "length"] {
        assert_eq!(known["kdf"][field], unknown["kdf"][field], "{field}");
    }
    assert_eq!(unknown["kdf"]["iterations"], 600000);
}
