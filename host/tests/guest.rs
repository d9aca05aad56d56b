//! Bad modules: a guest that loops, takes too much memory, traps, lies about its output, lacks
//! an export or speaks another ABI is an error value, and the host keeps serving.

use granted_host::guest::{Guest, GuestError, GuestOptions};
use std::time::{Duration, Instant};

const BAD: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "granted_abi_version") (result i32) i32.const 2)
  (func (export "granted_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "granted_free") (param i32 i32))
  ;; answers "{}" at 2048
  (data (i32.const 2048) "{}")
  (func (export "granted_info") (param i32 i32) (result i64) i64.const 0x0000080000000002)
  (func (export "granted_token") (param i32 i32) (result i64) (loop (br 0)) i64.const 0)
  (func (export "granted_preview") (param i32 i32) (result i64)
    (if (i32.eq (memory.grow (i32.const 20000)) (i32.const -1)) (then unreachable))
    i64.const 0)
  (func (export "granted_eligibility") (param i32 i32) (result i64) unreachable)
  (func (export "granted_hash_password") (param i32 i32) (result i64) i64.const 0xffff000000000010)
  ;; the wrong type for an entry point: never called
  (func (export "granted_preview_json") (param i32) (result i32) unreachable)
)"#;

fn options() -> GuestOptions {
    GuestOptions {
        max_instances: 4,
        memory_limit: 16 << 20,
        deadline: Duration::from_millis(100),
        ..GuestOptions::default()
    }
}

fn bad() -> Guest {
    let bytes = wat::parse_str(BAD).expect("valid wat");
    Guest::load(&bytes, options()).expect("the bad module still loads")
}

#[test]
fn an_endless_loop_hits_the_deadline_and_the_host_keeps_serving() {
    let guest = bad();
    let started = Instant::now();
    let err = guest.call("token", b"{}").unwrap_err();
    assert!(matches!(err, GuestError::Deadline), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(guest.call("info", b"{}").unwrap(), b"{}");
}

#[test]
fn a_huge_allocation_is_refused_as_out_of_memory() {
    let guest = bad();
    let err = guest.call("preview", b"{}").unwrap_err();
    assert!(matches!(err, GuestError::OutOfMemory), "{err}");
    assert_eq!(guest.call("info", b"{}").unwrap(), b"{}");
}

#[test]
fn a_trap_is_an_error_value() {
    let guest = bad();
    let err = guest.call("eligibility", b"{}").unwrap_err();
    assert!(matches!(err, GuestError::Trap(_)), "{err}");
    assert_eq!(err.code(), "policy_trap");
}

#[test]
fn an_answer_outside_memory_is_refused() {
    let err = bad().call("hash_password", b"{}").unwrap_err();
    assert!(matches!(err, GuestError::BadOutput(_)), "{err}");
}

#[test]
fn a_missing_export_or_one_of_the_wrong_type_is_named() {
    // `preview_json` exists with the wrong type. Entry points are called without a type check
    // per call: their types are checked at load, and one that does not fit is not called.
    for entry in ["pbkdf2", "preview_json"] {
        let err = bad().call(entry, b"{}").unwrap_err();
        assert!(
            matches!(&err, GuestError::MissingExport(name) if *name == format!("granted_{entry}")),
            "{err}"
        );
    }
}

#[test]
fn an_unknown_abi_version_is_refused_at_load() {
    let wat = BAD.replace("(result i32) i32.const 2)", "(result i32) i32.const 7)");
    let err = Guest::load(&wat::parse_str(&wat).unwrap(), options()).unwrap_err();
    assert!(matches!(err, GuestError::AbiMismatch { found: 7 }), "{err}");
    assert!(err.to_string().contains("ABI version 7"), "{err}");
}

#[test]
fn a_module_without_the_abi_export_is_refused_at_load() {
    let err = Guest::load(
        &wat::parse_str("(module (memory (export \"memory\") 1))").unwrap(),
        options(),
    )
    .unwrap_err();
    assert!(matches!(err, GuestError::MissingExport(_)), "{err}");
}

#[test]
fn bytes_that_are_not_wasm_are_refused_at_load() {
    let err = Guest::load(b"not wasm at all", options()).unwrap_err();
    assert!(matches!(err, GuestError::Load(_)), "{err}");
}

#[test]
fn the_embedded_module_is_the_one_xtask_built() {
    let recorded = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../www/pkg/granted_policy_bg.wasm.sha256"
    ))
    .unwrap();
    assert_eq!(Guest::embedded().unwrap().sha256(), recorded.trim());
}

/// The compiled module is cached by SHA-256; a second load takes it from there, and a damaged
/// cache file is compiled afresh rather than trusted or fatal.
#[test]
fn the_compiled_module_is_cached_and_a_damaged_cache_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let options = || GuestOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        ..GuestOptions::default()
    };
    let first = Guest::load(granted_host::guest::EMBEDDED_POLICY, options()).unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with(first.sha256()), "{name}");
    let started = Instant::now();
    let second = Guest::load(granted_host::guest::EMBEDDED_POLICY, options()).unwrap();
    println!("load from the cache: {:?}", started.elapsed());
    assert_eq!(
        second.call("info", b"{}").unwrap(),
        first.call("info", b"{}").unwrap()
    );
    std::fs::write(&files[0], b"not a compiled module").unwrap();
    let third = Guest::load(granted_host::guest::EMBEDDED_POLICY, options()).unwrap();
    assert_eq!(
        third.call("info", b"{}").unwrap(),
        first.call("info", b"{}").unwrap()
    );
}

#[test]
fn the_pool_holds_max_instances_sessions_at_once() {
    let guest = granted_host::guest::Guest::load(
        granted_host::guest::EMBEDDED_POLICY,
        granted_host::guest::GuestOptions {
            max_instances: 10,
            ..Default::default()
        },
    )
    .expect("module");
    let sessions: Vec<_> = (0..10)
        .map(|i| {
            guest
                .session()
                .unwrap_or_else(|e| panic!("session {i}: {e}"))
        })
        .collect();
    assert!(guest.session().is_err(), "the eleventh is refused");
    drop(sessions);
    let again: Vec<_> = (0..10)
        .map(|i| guest.session().unwrap_or_else(|e| panic!("again {i}: {e}")))
        .collect();
    drop(again);
}
