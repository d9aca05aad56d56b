//! A request driven as one flow (`token_start`, `token_resume`) gets byte for byte the answer
//! it gets from stateless `token` calls, for every vector; a resume with nothing started fails.

use anyhow::Result;
use granted_vectors::driver::{run_vector, Settings};
use granted_vectors::{default_dirs, load, Native, Runtime};
use std::cell::RefCell;

/// Native, keeping every token-endpoint answer.
struct Recording {
    answers: RefCell<Vec<String>>,
}

impl Runtime for Recording {
    fn name(&self) -> &str {
        "recording"
    }
    fn call(&self, entry: &str, input: &[u8]) -> Result<Vec<u8>> {
        let out = Native.call(entry, input)?;
        if entry.starts_with("token") {
            self.answers
                .borrow_mut()
                .push(String::from_utf8_lossy(&out).into_owned());
        }
        Ok(out)
    }
}

fn answers(path: &std::path::Path, flow: bool) -> Vec<String> {
    let vector = load(path).expect("vector loads");
    let rt = Recording {
        answers: RefCell::new(Vec::new()),
    };
    let settings = Settings {
        flow,
        ..Settings::default()
    };
    let outcome = run_vector(&rt, &vector, &settings).expect("vector runs");
    assert!(
        outcome.mismatches.is_empty(),
        "{}: {:?}",
        path.display(),
        outcome.mismatches
    );
    rt.answers.into_inner()
}

#[test]
fn a_flow_answers_exactly_as_stateless_calls_do() {
    let mut compared = 0;
    for dir in default_dirs() {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("vector directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for path in files {
            let stateless = answers(&path, false);
            let flow = answers(&path, true);
            assert_eq!(stateless, flow, "{}", path.display());
            compared += usize::from(!flow.is_empty());
        }
    }
    assert!(compared >= 60, "only {compared} vectors had token requests");
}

#[test]
fn a_resume_with_nothing_started_or_after_the_end_is_refused() {
    let out = Native
        .call("token_resume", br#"{"kdf": {"derived": "AA=="}}"#)
        .expect("answers");
    let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(value["error"]["code"], "invalid_state", "{value}");
    // A request that ends in its first step leaves nothing to resume.
    let start = serde_json::json!({
        "request": {"method": "GET", "tenant": "acme", "headers": [], "body_base64": ""},
        "context": {
            "now": "2026-11-25T12:00:00Z",
            "issuer": "https://granted.test",
            "signing_key": {"kid": "k", "alg": "ES256"},
            "client_secret_key": "a2V5",
            "entropy": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
        }
    });
    let out = Native
        .call("token_start", &serde_json::to_vec(&start).expect("json"))
        .expect("answers");
    let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(value["ok"]["step"], "done", "{value}");
    assert_eq!(value["ok"]["response"]["status"], 400, "{value}");
    let out = Native
        .call("token_resume", br#"{"records": {}}"#)
        .expect("answers");
    let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(value["error"]["code"], "invalid_state", "{value}");
    // Unknown fields in a resume are refused rather than ignored.
    let out = Native
        .call("token_resume", br#"{"recrods": {}}"#)
        .expect("answers");
    let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(value["error"]["code"], "invalid_input", "{value}");
}
