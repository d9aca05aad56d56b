//! Any bytes to any entry point: the first line names it, the rest is its JSON input. Every
//! answer is the JSON envelope, never a panic.
#![no_main]

use granted_policy::api;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (name, input) = data.split_at(split);
    let input = input.get(1..).unwrap_or_default();
    let names = api::ENTRY_POINTS;
    // Map any name onto a real entry point, so that every input reaches one.
    let entry = names
        .iter()
        .find(|n| n.as_bytes() == name)
        .copied()
        .unwrap_or_else(|| names[name.iter().map(|b| *b as usize).sum::<usize>() % names.len()]);
    let out = api::call(entry, input);
    assert!(
        serde_json::from_slice::<serde_json::Value>(&out).is_ok(),
        "the answer is always JSON"
    );
});
