//! Every vector through the embedded `_bg.wasm` under wasmtime, a fresh instance per call.

use granted_host::guest::Guest;
use granted_host::testing::wasmtime_runner::Wasmtime;
use granted_vectors::{default_dirs, driver::Settings, run_dir, Native, Runtime};

/// Runs every vector directory under wasmtime with `settings`; fails on any mismatch.
fn all_vectors_pass(settings: &Settings) {
    let runtime = Wasmtime::new(Guest::embedded().expect("the embedded module loads"));
    let mut report = Vec::new();
    let mut failed = 0;
    let mut passed = 0;
    for dir in default_dirs() {
        let summary = run_dir(&runtime, &dir, settings, &mut report).expect("vector directory");
        failed += summary.failed;
        passed += summary.passed;
    }
    let report = String::from_utf8_lossy(&report);
    assert_eq!(failed, 0, "{report}");
    assert!(passed >= 60, "only {passed} vectors ran:\n{report}");
}

#[test]
fn every_vector_passes_under_wasmtime() {
    all_vectors_pass(&Settings::default());
}

/// One flow per request, as the server runs it: `token_start`, then `token_resume` with only
/// what each step adds, all on one fresh instance.
#[test]
fn every_vector_passes_as_one_flow_per_instance() {
    all_vectors_pass(&Settings {
        flow: true,
        ..Settings::default()
    });
}

/// `token_resume` on an instance where no request started is an error, not a guess.
#[test]
fn a_resume_without_a_start_is_refused() {
    let guest = Guest::embedded().expect("the embedded module loads");
    let out = guest
        .call("token_resume", br#"{"records": {}}"#)
        .expect("the call answers");
    let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(value["error"]["code"], "invalid_state", "{value}");
}

/// The module's own PBKDF2 gives the same decisions as the host's KDF step.
#[test]
fn every_vector_passes_with_the_kdf_inside_the_module() {
    all_vectors_pass(&Settings {
        kdf_in_module: true,
        ..Settings::default()
    });
}

/// The same input gives the same bytes natively and in wasm, for every entry point.
#[test]
fn native_and_wasm_answer_byte_for_byte_alike() {
    let wasm = Wasmtime::new(Guest::embedded().expect("the embedded module loads"));
    let preview = std::fs::read("../tests/demo/preview-input.json").expect("demo preview input");
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("info", b"{}".to_vec()),
        ("preview", preview),
        ("preview", b"{\"state\": {}, \"now\": \"not a time\"}".to_vec()),
        ("token", b"[1,2,3]".to_vec()),
        ("pbkdf2", br#"{"algorithm":"pbkdf2-sha512","password":"p","salt":"c2FsdA==","iterations":3,"length":64}"#.to_vec()),
    ];
    for (entry, input) in inputs {
        let native = String::from_utf8(Native.call(entry, &input).unwrap()).unwrap();
        let guest = String::from_utf8(
            wasm.call(entry, &input)
                .unwrap_or_else(|e| format!("{e}").into_bytes()),
        )
        .unwrap();
        assert_eq!(native, guest, "entry point `{entry}`");
    }
}

/// Records the token-endpoint calls a vector makes natively, to replay them on one instance.
struct Recorder(std::cell::RefCell<Vec<(String, Vec<u8>)>>);

impl Runtime for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn call(&self, entry: &str, input: &[u8]) -> anyhow::Result<Vec<u8>> {
        if entry.starts_with("token") {
            self.0
                .borrow_mut()
                .push((entry.to_string(), input.to_vec()));
        }
        Native.call(entry, input)
    }
}

/// The module starts its heap in the memory it already has: a whole password request runs
/// without `memory.grow`, so a fresh instance costs no `mprotect` (see ARCHITECTURE.md).
#[test]
fn a_password_request_never_grows_the_modules_memory() {
    let vector = granted_vectors::load(std::path::Path::new(
        "../tests/vectors/01-legacy-password-app-installed-before-the-sunset-keeps-the-pa.json",
    ))
    .expect("vector");
    let recorder = Recorder(Default::default());
    let settings = Settings {
        flow: true,
        ..Settings::default()
    };
    granted_vectors::driver::run_vector(&recorder, &vector, &settings).expect("vector runs");
    let calls = recorder.0.into_inner();
    assert_eq!(calls.len(), 4, "start, records, KDF, signature");
    let guest = Guest::embedded().expect("the embedded module loads");
    let mut session = guest.session().expect("instance");
    let before = session.memory_size();
    for (entry, input) in &calls {
        let out = session.call(entry, input).expect("call");
        assert!(
            out.starts_with(b"{\"ok\""),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(session.memory_size(), before);
}

/// The module's stack is 128 KiB (`policy/build.rs`): JSON nested as deep as serde_json allows,
/// and deeper, is refused with an error envelope, never a trap.
#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let guest = Guest::embedded().expect("the embedded module loads");
    for depth in [100usize, 127, 128, 1_000, 100_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        for entry in [
            "preview",
            "eligibility",
            "token",
            "token_start",
            "introspection",
        ] {
            let input = format!("{{\"state\":{nested},\"request\":{nested},\"records\":{nested}}}");
            let out = guest
                .call(entry, input.as_bytes())
                .unwrap_or_else(|e| panic!("{entry} at depth {depth}: {e}"));
            assert!(
                out.starts_with(b"{\"error\""),
                "{entry} at depth {depth}: {}",
                String::from_utf8_lossy(&out)
            );
        }
    }
}
