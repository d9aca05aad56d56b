//! What an admin handler answers: a status, maybe an `ETag`, and its typed body as JSON.

use super::errors::ApiError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// A handler's answer: `body` as JSON under `status`, never cached, with a revision as its
/// `ETag` when it has one.
pub(crate) struct Answer<T> {
    status: StatusCode,
    etag: Option<u32>,
    body: T,
}

/// What a handler returns: its typed answer, or an error.
pub(crate) type ApiResult<T> = Result<Answer<T>, ApiError>;

impl<T> Answer<T> {
    /// `body` under `status`.
    pub(crate) fn new(status: StatusCode, body: T) -> Answer<T> {
        Answer {
            status,
            etag: None,
            body,
        }
    }

    /// `body` under `200 OK`.
    pub(crate) fn ok(body: T) -> Answer<T> {
        Answer::new(StatusCode::OK, body)
    }

    /// `body` under `201 Created`.
    pub(crate) fn created(body: T) -> Answer<T> {
        Answer::new(StatusCode::CREATED, body)
    }

    /// The same answer with revision `rev` as its `ETag` (`"3"`).
    pub(crate) fn with_etag(mut self, rev: u32) -> Answer<T> {
        self.etag = Some(rev);
        self
    }
}

impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        let headers = response.headers_mut();
        headers.insert("cache-control", HeaderValue::from_static("no-store"));
        if let Some(rev) = self.etag {
            if let Ok(value) = HeaderValue::from_str(&format!("\"{rev}\"")) {
                headers.insert("etag", value);
            }
        }
        response
    }
}
