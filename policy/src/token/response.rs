//! The complete HTTP response of the token endpoint: status, headers, JSON body (RFC 6749 §5).

use serde::{Deserialize, Serialize};

/// An HTTP response for the host to send as it is.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header fields in order.
    pub headers: Vec<(String, String)>,
    /// The body, JSON text.
    pub body: String,
}

impl std::fmt::Debug for HttpResponse {
    /// The body's length only: a success carries tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The realm named in `WWW-Authenticate` after a failed Basic authentication.
pub const REALM: &str = "granted";

fn headers(www_authenticate: bool) -> Vec<(String, String)> {
    let mut h = vec![
        (
            "Content-Type".to_string(),
            "application/json;charset=UTF-8".to_string(),
        ),
        ("Cache-Control".to_string(), "no-store".to_string()),
        ("Pragma".to_string(), "no-cache".to_string()),
    ];
    if www_authenticate {
        h.push((
            "WWW-Authenticate".to_string(),
            format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""),
        ));
    }
    h
}

/// An RFC 6749 §5.2 error.
pub fn error(status: u16, code: &str, description: &str, www_authenticate: bool) -> HttpResponse {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        error: &'a str,
        error_description: &'a str,
    }
    let body = ErrorBody {
        error: code,
        error_description: description,
    };
    HttpResponse {
        status,
        headers: headers(www_authenticate),
        body: crate::json::to_string(&body).unwrap_or_default(),
    }
}

/// The successful response of RFC 6749 §5.1.
#[derive(Serialize)]
pub struct TokenBody<'a> {
    /// The JWT.
    pub access_token: &'a str,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Lifetime in seconds.
    pub expires_in: u32,
    /// Granted scope.
    pub scope: &'a str,
    /// The refresh token, where the grant issues one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<&'a str>,
    /// The OpenID Connect ID token, when the scope holds `openid` (RULES.md §5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<&'a str>,
}

/// A 200 with the token body.
pub fn success(body: &TokenBody<'_>) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: headers(false),
        body: crate::json::to_string(body).unwrap_or_default(),
    }
}

/// A 200 with a JSON body (introspection), or with an empty one (`body` `None`: revocation).
pub fn json_ok(body: Option<&serde_json::Value>) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: headers(false),
        body: body
            .and_then(|b| crate::json::to_string(b).ok())
            .unwrap_or_default(),
    }
}
