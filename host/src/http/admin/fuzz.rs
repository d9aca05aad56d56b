//! The fuzz entry of the admin API's input (`fuzz/fuzz_targets/admin_input.rs`), built only with
//! the `testing` feature: every decoder of a request body on one input.

use super::errors::ApiError;
use super::input::{body, check_name, check_tenant_name, if_match};
use super::revisions::{CreateApp, EditApp};
use super::tenants::{CreateTenant, InstallApp};
use super::users::{CreateUser, SetPassword};
use axum::body::Bytes;
use axum::http::HeaderMap;

/// Every decoder of admin API input on one input, for fuzzing (`fuzz/fuzz_targets/
/// admin_input.rs`): the first byte picks the request type, then a line of `Content-Type`, one
/// of `If-Match`, and the body, decoded as that type and checked as a name. A refusal is a 4xx
/// error with a stable code; nothing panics.
pub fn decode_any(data: &[u8]) {
    let (pick, rest) = data.split_first().unwrap_or((&0, &[]));
    let mut lines = rest.splitn(3, |b| *b == b'\n');
    let content_type = lines.next().unwrap_or_default();
    let if_match_value = lines.next().unwrap_or_default();
    let bytes = Bytes::copy_from_slice(lines.next().unwrap_or_default());
    let mut headers = HeaderMap::new();
    if let Ok(v) = axum::http::HeaderValue::from_bytes(content_type) {
        headers.insert("content-type", v);
    }
    if let Ok(v) = axum::http::HeaderValue::from_bytes(if_match_value) {
        headers.insert("if-match", v);
    }
    let refused = |e: ApiError| {
        assert!(e.status.is_client_error(), "{} for bad input", e.status);
        assert!(!e.code.is_empty());
    };
    let decoded = match pick % 6 {
        0 => body::<CreateApp>(&headers, &bytes).map(drop),
        1 => body::<EditApp>(&headers, &bytes).map(drop),
        2 => body::<CreateTenant>(&headers, &bytes).map(drop),
        3 => body::<InstallApp>(&headers, &bytes).map(drop),
        4 => body::<CreateUser>(&headers, &bytes).map(drop),
        _ => body::<SetPassword>(&headers, &bytes).map(drop),
    };
    if let Err(e) = decoded {
        refused(e);
    }
    if let Err(e) = if_match(&headers) {
        refused(e);
    }
    let text = String::from_utf8_lossy(&bytes);
    for result in [check_name("username", &text), check_tenant_name(&text)] {
        if let Err(e) = result {
            refused(e);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fuzz_entry_decodes_its_seeds_and_garbage_without_panicking() {
        super::decode_any(b"\x03application/json\n\"3\"\n{\"app_id\":\"crm\"}");
        super::decode_any(b"\x05text/plain\nW/\"x\"\n\xff\xfe");
        super::decode_any(b"");
    }
}
