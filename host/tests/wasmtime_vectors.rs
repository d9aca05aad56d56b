//! Every vector through the embedded `_bg.wasm` under wasmtime, a fresh instance per call.

use granted_host::guest::Guest;
use granted_host::runtime::Wasmtime;
use granted_vectors::{default_dirs, driver::Settings, run_dir, Native, Runtime};

#[test]
fn every_vector_passes_under_wasmtime() {
    let runtime = Wasmtime::new(Guest::embedded().expect("the embedded module loads"));
    let mut report = Vec::new();
    let mut failed = 0;
    let mut passed = 0;
    for dir in default_dirs() {
        let summary =
            run_dir(&runtime, &dir, &Settings::default(), &mut report).expect("vector directory");
        failed += summary.failed;
        passed += summary.passed;
    }
    let report = String::from_utf8_lossy(&report);
    assert_eq!(failed, 0, "{report}");
    assert!(passed >= 60, "only {passed} vectors ran:\n{report}");
}

/// The module's own PBKDF2 gives the same decisions as the host's KDF step.
#[test]
fn every_vector_passes_with_the_kdf_inside_the_module() {
    let runtime = Wasmtime::new(Guest::embedded().expect("the embedded module loads"));
    let settings = Settings {
        kdf_in_module: true,
        ..Settings::default()
    };
    let mut report = Vec::new();
    let mut failed = 0;
    for dir in default_dirs() {
        failed += run_dir(&runtime, &dir, &settings, &mut report)
            .expect("vector directory")
            .failed;
    }
    assert_eq!(failed, 0, "{}", String::from_utf8_lossy(&report));
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
