//! Any bytes to the admin API's input decoders (JSON bodies of every request type, `If-Match`,
//! names): each refusal is a 4xx with a stable code, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    granted_host::http::admin::decode_any(data);
});
