//! Errors of the admin API: JSON with a stable code, for axum's own errors too, and how the
//! OpenAPI document describes them.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use granted_policy::rules::edit::Preview;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Every error answer of the admin API is JSON, also axum's own (a path that does not decode, a
/// body over the limit, a method the route lacks).
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let code = match status.as_u16() {
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        400..=499 => "invalid_request",
        _ => "unavailable",
    };
    let allow = response.headers().get("allow").cloned();
    let bytes = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        message
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    if let Some(allow) = allow {
        answer.headers_mut().insert("allow", allow);
    }
    answer
}

/// An error answer: status, stable code, a sentence, and more fields where useful.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) extra: Value,
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Value::Null,
            retry_after: None,
        }
    }

    pub(crate) fn with(mut self, extra: Value) -> ApiError {
        self.extra = extra;
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!("admin API: {what} failed: {e}");
        let mut err = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the {what} could not answer; try again"),
        );
        err.retry_after = Some(1);
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body =
            serde_json::to_value(ErrorBody::new(self.code, self.message)).unwrap_or_default();
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), self.extra) {
            body.extend(extra);
        }
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("cache-control", HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                headers.insert("retry-after", value);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"granted-admin\""),
            );
        }
        response
    }
}

/// An error: a stable code and a sentence; some errors add fields (`latest_rev` on a conflict;
/// `reason`, `rule` and `preview` on a rejected edit; `code` when the module refused the input).
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// The stable code.
    error: String,
    /// For people.
    message: String,
    /// The app's latest revision (`edit_conflict`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    latest_rev: Option<u32>,
    /// Why the module rejected the change (`edit_rejected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The rule that decided (`edit_rejected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    rule: Option<String>,
    /// The module's preview of the rejected change.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    preview: Option<Preview>,
    /// The module's error code (`invalid_input`).
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
}

impl ErrorBody {
    /// The code and the sentence; an error's extra fields are added to it as JSON.
    fn new(code: &str, message: String) -> ErrorBody {
        ErrorBody {
            error: code.to_string(),
            message,
            latest_rev: None,
            reason: None,
            rule: None,
            preview: None,
            code: None,
        }
    }
}

/// The errors every route may answer.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "never built: it only lists responses for the document"
)]
pub(crate) enum CommonErrors {
    /// Bad input: the message names the field.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No valid admin token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Too many failed sign-ins from this address.
    #[response(status = 429)]
    TooManyAttempts(ErrorBody),
    /// The store or the policy module could not answer; retry.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The errors of a route that reads a JSON body.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "never built: it only lists responses for the document"
)]
pub(crate) enum BodyErrors {
    /// The body is over 64 KiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not a JSON body.
    #[response(status = 415)]
    NotJson(ErrorBody),
}
