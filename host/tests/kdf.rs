//! The module's own PBKDF2 (under wasmtime) and the host's native one give the same bytes, on
//! published vectors and on ours.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use granted_host::guest::Guest;
use granted_host::testing::wasmtime_runner::Wasmtime;
use granted_vectors::driver::{call_ok, native_kdf};
use serde_json::json;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Case {
    algorithm: &'static str,
    password: &'static str,
    salt: &'static [u8],
    iterations: u32,
    length: usize,
    published: Option<&'static str>,
}

const CASES: &[Case] = &[
    // RFC 7914 §11, PBKDF2-HMAC-SHA256.
    Case { algorithm: "pbkdf2-sha256", password: "passwd", salt: b"salt", iterations: 1, length: 64,
        published: Some("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783") },
    Case { algorithm: "pbkdf2-sha256", password: "Password", salt: b"NaCl", iterations: 80000, length: 64,
        published: Some("4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d") },
    // The RFC 6070 inputs with SHA-256 (widely published).
    Case { algorithm: "pbkdf2-sha256", password: "password", salt: b"salt", iterations: 4096, length: 32,
        published: Some("c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a") },
    // The RFC 6070 inputs with SHA-512 (widely published).
    Case { algorithm: "pbkdf2-sha512", password: "password", salt: b"salt", iterations: 1, length: 64,
        published: Some("867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce") },
    Case { algorithm: "pbkdf2-sha512", password: "passwordPASSWORDpassword", salt: b"saltSALTsaltSALTsaltSALTsaltSALTsalt", iterations: 4096, length: 64,
        published: Some("8c0511f4c6e597c6ac6315d8f0362e225f3c501495ba23b868c005174dc4ee71115b59f9e60cd9532fa33e0f75aefe30225c583a186cd82bd4daea9724a3d3b8") },
    // Ours: non-ASCII passwords, a 16-byte random-looking salt, the vectors' iteration count.
    Case { algorithm: "pbkdf2-sha256", password: "correct horse battery ✓", salt: b"\x8f\x01\xfe\x10granted-salt", iterations: 1000, length: 32, published: None },
    Case { algorithm: "pbkdf2-sha512", password: "pässwörd", salt: b"\x00\x01\x02", iterations: 1000, length: 64, published: None },
    Case { algorithm: "pbkdf2-sha256", password: "", salt: b"", iterations: 1, length: 1, published: None },
];

#[test]
fn module_and_native_pbkdf2_agree_on_published_and_our_vectors() {
    let wasm = Wasmtime::new(Guest::embedded().expect("the embedded module loads"));
    for case in CASES {
        let params = json!({"algorithm": case.algorithm, "salt": STANDARD.encode(case.salt), "iterations": case.iterations, "length": case.length});
        let native = native_kdf(&params, case.password).expect("native pbkdf2");
        let mut input = params.clone();
        input["password"] = json!(case.password);
        let derived = call_ok(&wasm, "pbkdf2", &input).expect("module pbkdf2");
        let module = STANDARD
            .decode(derived["derived"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            hex(&module),
            hex(&native),
            "{} {:?}",
            case.algorithm,
            case.password
        );
        if let Some(published) = case.published {
            assert_eq!(
                hex(&native),
                published,
                "{} {:?}",
                case.algorithm,
                case.password
            );
        }
    }
}

#[test]
fn out_of_bounds_kdf_parameters_are_refused_not_run() {
    let wasm = Wasmtime::new(Guest::embedded().expect("the embedded module loads"));
    let input = json!({"algorithm": "pbkdf2-sha256", "password": "p", "salt": "", "iterations": 4_000_000_000u32, "length": 32});
    let err = call_ok(&wasm, "pbkdf2", &input).unwrap_err();
    assert!(format!("{err}").contains("out of bounds"), "{err}");
}
