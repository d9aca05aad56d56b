//! What the admin API reads from a request: JSON bodies, names, `If-Match`.

use super::errors::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

/// A JSON body of type `T`; the error names the field at fault.
pub(crate) fn body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> Result<T, ApiError> {
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if json.as_deref() != Some("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send a JSON body with `Content-Type: application/json`",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::bad_request(format!("the body is not a valid request: {inner}"))
        } else {
            ApiError::bad_request(format!("`{path}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("the body is not a valid request: {e}")))?;
    Ok(value)
}

/// A username: 1 to 128 characters, no control characters, no surrounding spaces. (App ids,
/// `client_id`s and scopes are the module's to judge: `invalid_revision`.)
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 128
        && !name.chars().any(char::is_control)
        && name.trim() == name;
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_name",
            format!("`{what}` must be 1 to 128 characters, without control characters or surrounding spaces"),
        ))
    }
}

/// A tenant's name is part of its URLs: letters, digits, `.`, `_`, `-`, at most 64.
pub(crate) fn check_tenant_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_name",
            "`tenant` must be 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.`",
        ))
    }
}

/// The revision an edit is based on, from `If-Match` (`"3"`, `W/"3"` or `3`).
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
    let Some(value) = headers.get("if-match") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse::<u32>().map(Some).map_err(|_| {
        ApiError::bad_request(
            "`If-Match` must name a revision, as the app's `ETag` gives it (\"3\")",
        )
    })
}

/// Every decoder of admin API input on one input, for fuzzing (`fuzz/fuzz_targets/
/// admin_input.rs`): the first byte picks the request type, then a line of `Content-Type`, one
/// of `If-Match`, and the body, decoded as that type and checked as a name. A refusal is a 4xx
/// error with a stable code; nothing panics.
#[cfg(feature = "testing")]
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
        0 => body::<super::revisions::CreateApp>(&headers, &bytes).map(drop),
        1 => body::<super::revisions::EditApp>(&headers, &bytes).map(drop),
        2 => body::<super::tenants::CreateTenant>(&headers, &bytes).map(drop),
        3 => body::<super::tenants::InstallApp>(&headers, &bytes).map(drop),
        4 => body::<super::users::CreateUser>(&headers, &bytes).map(drop),
        _ => body::<super::users::SetPassword>(&headers, &bytes).map(drop),
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

#[cfg(all(test, feature = "testing"))]
mod tests {
    #[test]
    fn the_fuzz_entry_decodes_its_seeds_and_garbage_without_panicking() {
        super::decode_any(b"\x03application/json\n\"3\"\n{\"app_id\":\"crm\"}");
        super::decode_any(b"\x05text/plain\nW/\"x\"\n\xff\xfe");
        super::decode_any(b"");
    }
}
