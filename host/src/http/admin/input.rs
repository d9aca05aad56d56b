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
