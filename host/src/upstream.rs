//! Requests to a tenant's identity provider (RULES.md §6): its discovery document, its JWKS, and
//! the token request of a federated sign-in. A provider may be down, slow, broken or hostile, so
//! every request has a deadline (10 s) and an answer cap (1 MiB), follows no redirect, and goes
//! only to `https`, or to `http` on a loopback host. Failures are typed, with stable codes; the
//! caller answers them (a page, HTTP 502 at F4) and stores nothing.

use granted_policy::rules::identity_provider;
use serde_json::Value;
use std::time::Duration;

/// How long one request may take, from connecting to the answer's last byte.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The most bytes of an answer read.
pub const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// Why a request to a provider gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// The URL is not `https` (nor `http` on a loopback host): nothing was sent.
    NotAllowed(String),
    /// No connection, a TLS failure, or the connection broke.
    Unreachable(String),
    /// No whole answer within the deadline.
    Timeout,
    /// An answer over [`MAX_ANSWER_BYTES`].
    TooLarge,
    /// A redirect (never followed), with its status.
    Redirect(u16),
    /// An answer that is not a JSON object.
    NotJson,
    /// A discovery document that names another issuer than the one asked (Discovery §4.3).
    IssuerMismatch(String),
    /// A discovery document without an endpoint the sign-in needs.
    Incomplete(&'static str),
}

impl UpstreamError {
    /// A stable code (audit causes, metrics labels, the admin API).
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::NotAllowed(_) => "url_not_allowed",
            UpstreamError::Unreachable(_) => "unreachable",
            UpstreamError::Timeout => "timeout",
            UpstreamError::TooLarge => "answer_too_large",
            UpstreamError::Redirect(_) => "redirect",
            UpstreamError::NotJson => "not_json",
            UpstreamError::IssuerMismatch(_) => "issuer_mismatch",
            UpstreamError::Incomplete(_) => "incomplete_metadata",
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::NotAllowed(url) => write!(
                f,
                "`{url}` is neither `https` nor `http` on a loopback host: nothing was sent"
            ),
            UpstreamError::Unreachable(why) => {
                write!(f, "the provider could not be reached: {why}")
            }
            UpstreamError::Timeout => write!(
                f,
                "the provider did not answer within {} s",
                DEADLINE.as_secs()
            ),
            UpstreamError::TooLarge => write!(
                f,
                "the provider's answer is over {} KiB",
                MAX_ANSWER_BYTES / 1024
            ),
            UpstreamError::Redirect(status) => {
                write!(
                    f,
                    "the provider answered a redirect ({status}), which is not followed"
                )
            }
            UpstreamError::NotJson => write!(f, "the provider's answer is not a JSON object"),
            UpstreamError::IssuerMismatch(found) => write!(
                f,
                "the discovery document names the issuer `{}`, not the one configured",
                found.escape_default()
            ),
            UpstreamError::Incomplete(field) => {
                write!(f, "the discovery document has no `{field}`")
            }
        }
    }
}

impl std::error::Error for UpstreamError {}

/// An answer: its status and its body as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body, a JSON object.
    pub body: Value,
}

/// What a provider's discovery document says that the sign-in uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Discovery {
    /// Its issuer, equal to the configured one.
    pub issuer: String,
    /// Where the browser is sent (F0).
    pub authorization_endpoint: String,
    /// Where the code is exchanged (F4).
    pub token_endpoint: String,
    /// Its keys (F5).
    pub jwks_uri: String,
    /// The ID token algorithms it announces.
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Whether its callbacks carry `iss` (RFC 9207): then F2 requires it.
    pub authorization_response_iss_parameter_supported: bool,
    /// The PKCE methods it announces (empty: it did not say).
    pub code_challenge_methods_supported: Vec<String>,
}

/// The client every provider request goes through.
#[derive(Clone)]
pub struct Upstream {
    agent: ureq::Agent,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream::with_deadline(DEADLINE)
    }
}

impl Upstream {
    /// A client whose requests end after `deadline` (tests shorten it).
    pub fn with_deadline(deadline: Duration) -> Upstream {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(deadline))
            .max_redirects(0)
            .http_status_as_error(false)
            .proxy(None)
            .user_agent("granted")
            .build();
        Upstream {
            agent: config.new_agent(),
        }
    }

    /// `GET url`, its answer as JSON.
    pub fn get_json(&self, url: &str) -> Result<JsonAnswer, UpstreamError> {
        allowed(url)?;
        let response = self
            .agent
            .get(url)
            .header("Accept", "application/json")
            .call();
        read_json(response)
    }

    /// `POST url` of a form, authenticated with HTTP Basic (`client_secret_basic`: both parts
    /// form-url-encoded first, RFC 6749 §2.3.1), its answer as JSON.
    pub fn post_form(
        &self,
        url: &str,
        (client_id, secret): (&str, &str),
        form: &[(&str, &str)],
    ) -> Result<JsonAnswer, UpstreamError> {
        allowed(url)?;
        use base64::Engine as _;
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            encode(client_id),
            encode(secret)
        ));
        let response = self
            .agent
            .post(url)
            .header("Accept", "application/json")
            .header("Authorization", format!("Basic {basic}"))
            .send_form(form.iter().copied());
        read_json(response)
    }

    /// The provider's discovery document (OpenID Connect Discovery 1.0 §4), whose `issuer` must
    /// be `issuer` itself.
    pub fn discover(&self, issuer: &str) -> Result<Discovery, UpstreamError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let answer = self.get_json(&url)?;
        if answer.status != 200 {
            return Err(UpstreamError::Unreachable(format!(
                "the discovery document answered {}",
                answer.status
            )));
        }
        discovery(issuer, &answer.body)
    }
}

/// The fields of a discovery document, checked: the issuer the one asked, the endpoints there.
pub fn discovery(issuer: &str, doc: &Value) -> Result<Discovery, UpstreamError> {
    let text = |field: &'static str| -> Result<String, UpstreamError> {
        doc.get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(UpstreamError::Incomplete(field))
    };
    let strings = |field: &str| -> Vec<String> {
        doc.get(field)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let found = text("issuer")?;
    if found != issuer {
        return Err(UpstreamError::IssuerMismatch(found));
    }
    Ok(Discovery {
        issuer: found,
        authorization_endpoint: text("authorization_endpoint")?,
        token_endpoint: text("token_endpoint")?,
        jwks_uri: text("jwks_uri")?,
        id_token_signing_alg_values_supported: strings("id_token_signing_alg_values_supported"),
        authorization_response_iss_parameter_supported: doc
            .get("authorization_response_iss_parameter_supported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        code_challenge_methods_supported: strings("code_challenge_methods_supported"),
    })
}

/// Whether `url` may be asked: `https`, or `http` on a loopback host (A9's rule for issuers,
/// applied to every URL a provider's metadata names).
pub fn allowed(url: &str) -> Result<(), UpstreamError> {
    let refused = || UpstreamError::NotAllowed(url.escape_default().to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(refused)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(refused());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or_default()),
        None => authority.split(':').next().unwrap_or_default().to_string(),
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" if !host.is_empty() => Ok(()),
        "http" if identity_provider::is_loopback_host(&host) => Ok(()),
        _ => Err(refused()),
    }
}

/// The answer read whole (at most [`MAX_ANSWER_BYTES`]) and parsed as a JSON object.
fn read_json(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<JsonAnswer, UpstreamError> {
    let mut response = response.map_err(failure)?;
    let status = response.status().as_u16();
    if (300..400).contains(&status) {
        return Err(UpstreamError::Redirect(status));
    }
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(failure)?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| UpstreamError::NotJson)?;
    if !body.is_object() {
        return Err(UpstreamError::NotJson);
    }
    Ok(JsonAnswer { status, body })
}

fn failure(e: ureq::Error) -> UpstreamError {
    match e {
        ureq::Error::Timeout(_) => UpstreamError::Timeout,
        ureq::Error::BodyExceedsLimit(_) => UpstreamError::TooLarge,
        other => UpstreamError::Unreachable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_and_loopback_http_are_asked() {
        for url in [
            "https://idp.example/.well-known/openid-configuration",
            "https://idp.example:8443/token",
            "http://127.0.0.1:9000/jwks",
            "http://localhost/x",
            "http://[::1]:8080/",
        ] {
            assert_eq!(allowed(url), Ok(()), "{url}");
        }
        for url in [
            "http://idp.example/token",
            "http://10.0.0.1/token",
            "ftp://idp.example/",
            "https:///path",
            "https://user@idp.example/",
            "file:///etc/passwd",
            "idp.example/token",
            "http://127.0.0.1.evil.example/",
        ] {
            assert!(allowed(url).is_err(), "{url}");
        }
    }

    #[test]
    fn a_discovery_document_must_name_the_issuer_asked_and_the_endpoints() {
        let doc = serde_json::json!({
            "issuer": "https://idp.example",
            "authorization_endpoint": "https://idp.example/authorize",
            "token_endpoint": "https://idp.example/token",
            "jwks_uri": "https://idp.example/jwks",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "authorization_response_iss_parameter_supported": true
        });
        let found = discovery("https://idp.example", &doc).unwrap();
        assert!(found.authorization_response_iss_parameter_supported);
        assert_eq!(
            found.id_token_signing_alg_values_supported,
            ["RS256", "ES256"]
        );
        assert_eq!(
            discovery("https://other.example", &doc),
            Err(UpstreamError::IssuerMismatch("https://idp.example".into()))
        );
        let mut incomplete = doc.clone();
        incomplete.as_object_mut().unwrap().remove("jwks_uri");
        assert_eq!(
            discovery("https://idp.example", &incomplete),
            Err(UpstreamError::Incomplete("jwks_uri"))
        );
    }
}
