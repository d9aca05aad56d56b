//! The `granted` command line as a user runs it.

use std::path::Path;
use std::process::Command;

fn granted() -> Command {
    Command::new(env!("CARGO_BIN_EXE_granted"))
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn vectors_prints_a_line_each_and_the_summary() {
    let out = granted()
        .arg("vectors")
        .arg(root().join("tests/vectors"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert!(last.ends_with("passed, 0 failed"), "{last}");
    assert!(stdout.lines().filter(|l| l.starts_with("ok ")).count() >= 60);
}

#[test]
fn vectors_exits_1_and_counts_a_failing_vector() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(root().join(
        "tests/vectors/01-legacy-password-app-installed-before-the-sunset-keeps-the-pa.json",
    ))
    .unwrap();
    std::fs::write(dir.path().join("1-good.json"), &good).unwrap();
    // The same case, expecting the wrong answer.
    std::fs::write(
        dir.path().join("2-bad.json"),
        good.replace("\"status\": 200", "\"status\": 400"),
    )
    .unwrap();
    std::fs::write(dir.path().join("3-broken.json"), "{ not json").unwrap();
    let out = granted().arg("vectors").arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  2-bad.json: status: expected 400, got 200"),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL  3-broken.json"), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("1 passed, 2 failed"));
}

#[test]
fn preview_shows_an_irreversible_edit_for_people() {
    let demo = root().join("tests/demo");
    let out = granted()
        .args(["preview", "--now", "2026-11-25T12:00:00Z", "--state"])
        .arg(demo.join("state.json"))
        .arg("--edit")
        .arg(demo.join("edit.json"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("ACCEPTED, IRREVERSIBLE (rule A2, reason client_id_changed)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("tenants losing the password grant on update: acme, globex"),
        "{stdout}"
    );
    assert!(stdout.contains("THIS CANNOT BE UNDONE"), "{stdout}");
}

#[test]
fn preview_exits_3_on_a_rejected_edit_and_speaks_json() {
    let demo = root().join("tests/demo");
    let out = granted()
        .args([
            "preview",
            "--json",
            "--now",
            "2026-11-25T12:00:00Z",
            "--state",
        ])
        .arg(demo.join("state.json"))
        .arg("--edit")
        .arg(demo.join("revert.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["accepted"], false);
    assert_eq!(json["reason"], "grant_type_reverted");
}

#[test]
fn preview_names_a_missing_file_and_exits_2() {
    let out = granted()
        .args([
            "preview",
            "--state",
            "/nonexistent/state.json",
            "--create",
            "x.json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not read /nonexistent/state.json"),
        "{stderr}"
    );
}

#[test]
fn a_policy_file_with_another_abi_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.wasm");
    std::fs::write(&path, wat::parse_str("(module (memory (export \"memory\") 1) (func (export \"granted_abi_version\") (result i32) i32.const 9) (func (export \"granted_alloc\") (param i32) (result i32) i32.const 0))").unwrap()).unwrap();
    let out = granted()
        .arg("--policy")
        .arg(&path)
        .arg("info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ABI version 9"), "{stderr}");
}
