//! The module scans strings for what ends or must be escaped sixteen bytes per wasm SIMD compare
//! (`policy/src/json/strings.rs`, `find_escape`); natively the same function runs on two 64-bit words.
//! The policy crate's own tests cover only the native code, so here the `_bg.wasm` under wasmtime
//! must give the native build's answer, byte for byte, for a string with a character to escape at
//! every offset of every length across the sixteen-byte steps and the tails. The string goes in
//! twice: as the tenant, JSON-escaped in the input (the reader), and as the username, percent-
//! encoded in the form (both come back in the lookup, through the writer).

use base64::Engine as _;
use granted_host::guest::Guest;

fn token_start_input(text: &str) -> String {
    let username: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
    let body = format!("grant_type=password&username={username}&password=pw");
    let basic = base64::engine::general_purpose::STANDARD.encode("crm-1:crm-1-secret");
    serde_json::json!({
        "context": {
            "client_secret_key": "Z3JhbnRlZC12ZWN0b3JzLWNsaWVudC1zZWNyZXQta2V5",
            "entropy": base64::engine::general_purpose::STANDARD.encode([7u8; 80]),
            "issuer": "https://granted.test",
            "kdf_in_module": false,
            "kdf_iterations": 1000,
            "now": "2026-11-25T12:00:00Z",
            "signing_key": {"kid": "k1", "alg": "ES256"}
        },
        "records": {},
        "request": {
            "body_base64": base64::engine::general_purpose::STANDARD.encode(body),
            "headers": [
                ["Content-Type", "application/x-www-form-urlencoded"],
                ["Authorization", format!("Basic {basic}")]
            ],
            "method": "POST",
            "tenant": text
        }
    })
    .to_string()
}

#[test]
fn strings_with_an_escape_at_every_offset_read_and_write_as_natively() {
    let guest = Guest::embedded().unwrap();
    let mut checked = 0;
    for special in [
        '"', '\\', '\u{0}', '\u{1f}', ' ', '\u{7f}', 'é', '😀', '/', 'x',
    ] {
        for len in 1..=40 {
            for at in 0..len {
                let text = "a".repeat(at) + &special.to_string() + &"b".repeat(len - 1 - at);
                let input = token_start_input(&text);
                let native = granted_policy::api::call("token_start", input.as_bytes());
                let wasm = guest.call("token_start", input.as_bytes()).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&wasm),
                    String::from_utf8_lossy(&native),
                    "{text:?}"
                );
                // The string came back twice (tenant and username), escaped as JSON.
                let answer: serde_json::Value = serde_json::from_slice(&wasm).unwrap();
                let lookup = &answer["ok"]["lookup"];
                assert_eq!(lookup["tenant"], text.as_str(), "{answer}");
                assert_eq!(lookup["username"], text.as_str(), "{answer}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 10 * (40 * 41 / 2));
}

#[test]
fn a_string_cut_short_or_with_a_raw_control_character_is_refused_as_natively() {
    let guest = Guest::embedded().unwrap();
    let good = token_start_input("tenant-with-a-long-name-that-spans-sixteen-bytes");
    for len in 0..=40 {
        let name = "t".repeat(len);
        let input = good.replace("tenant-with-a-long-name-that-spans-sixteen-bytes", &name);
        // A raw control character inside the string, at each offset.
        for at in 0..len {
            let mut bad = name.clone();
            bad.replace_range(at..at + 1, "\u{1}");
            let bad_input = input.replace(&format!("\"{name}\""), &format!("\"{bad}\""));
            let native = granted_policy::api::call("token_start", bad_input.as_bytes());
            let wasm = guest.call("token_start", bad_input.as_bytes()).unwrap();
            assert_eq!(wasm, native, "{bad:?}");
            assert!(String::from_utf8_lossy(&wasm).contains("control character"));
        }
        // The input cut inside the tenant's string.
        let start = input.find(&format!("\"tenant\":\"{name}")).unwrap() + 10;
        for cut in start..=start + len {
            let native = granted_policy::api::call("token_start", &input.as_bytes()[..cut]);
            let wasm = guest.call("token_start", &input.as_bytes()[..cut]).unwrap();
            assert_eq!(wasm, native, "cut at {cut}");
            assert!(String::from_utf8_lossy(&wasm).contains("\"error\""));
        }
    }
}
