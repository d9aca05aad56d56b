//! T1: the raw HTTP request to the token endpoint, parsed per RFC 6749 §2.3.1, §3.2 and
//! the `application/x-www-form-urlencoded` rules; every malformation is named.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest request body the policy reads; hosts refuse larger ones before reading them whole.
pub const MAX_BODY: usize = 64 * 1024;

/// A raw HTTP request as the host received it.
#[derive(Clone, Deserialize, Serialize)]
pub struct HttpRequest {
    /// The method, as sent (`POST`).
    pub method: String,
    /// The `{tenant}` segment of the path.
    pub tenant: String,
    /// Header fields in order, names as sent.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body bytes, standard base64.
    #[serde(default)]
    pub body_base64: String,
}

impl std::fmt::Debug for HttpRequest {
    /// Header names only and the body's length: a password or a secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("tenant", &self.tenant)
            .field("headers", &names)
            .field("body_base64_len", &self.body_base64.len())
            .finish()
    }
}

/// How the client authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// `Authorization: Basic` (RFC 6749 §2.3.1).
    Basic,
    /// `client_id` and `client_secret` in the body.
    Body,
    /// No client credentials.
    None,
}

/// A well-formed token request: a [`ClientForm`] whose first parameter is `grant_type`.
pub type TokenRequest = ClientForm;

/// A T1 failure: what is wrong, for `error_description`, and whether Basic was attempted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// Says which rule of the request format was broken.
    pub description: String,
    /// The request carried an `Authorization` header.
    pub basic_attempted: bool,
}

/// The body was not base64: a host defect, not a client's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadBodyEncoding;

/// Parses and checks the request (T1). The outer error is the host's, the inner the client's.
pub fn parse(request: &HttpRequest) -> Result<Result<TokenRequest, Malformed>, BadBodyEncoding> {
    let body = STANDARD
        .decode(request.body_base64.as_bytes())
        .map_err(|_| BadBodyEncoding)?;
    let basic_attempted = header_values(request, "authorization").next().is_some();
    Ok(
        parse_checked(request, &body).map_err(|description| Malformed {
            description,
            basic_attempted,
        }),
    )
}

fn header_values<'a>(request: &'a HttpRequest, name: &'a str) -> impl Iterator<Item = &'a str> {
    request
        .headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn single_header<'a>(request: &'a HttpRequest, name: &'a str) -> Result<Option<&'a str>, String> {
    let mut values = header_values(request, name);
    let first = values.next();
    if values.next().is_some() {
        return Err(format!("the `{name}` header is repeated"));
    }
    Ok(first)
}

fn parse_checked(request: &HttpRequest, body: &[u8]) -> Result<TokenRequest, String> {
    parse_form(request, body, "token endpoint", "grant_type")
}

/// A well-formed request to an endpoint that takes a form and authenticates the client
/// (token, revocation, introspection).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientForm {
    /// The value of the endpoint's first required parameter (`grant_type`, `token`).
    pub first: String,
    /// Every other parameter with a non-empty value, except the client's.
    pub params: BTreeMap<String, String>,
    /// The client identifier, from Basic or the body.
    pub client_id: Option<String>,
    /// The client secret, from Basic or the body.
    pub client_secret: Option<String>,
    /// Where the client credentials came from.
    pub auth: AuthMethod,
}

impl ClientForm {
    /// The `grant_type` of a token request.
    pub fn grant_type(&self) -> &str {
        &self.first
    }

    /// A parameter's value, if present and non-empty.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

impl std::fmt::Debug for ClientForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientForm")
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Parses a form request to `endpoint` whose parameter `first` is required (checked before the
/// client's credentials, as T1 orders its checks).
pub fn parse_client_form(
    request: &HttpRequest,
    endpoint: &str,
    first: &str,
) -> Result<Result<ClientForm, Malformed>, BadBodyEncoding> {
    let body = STANDARD
        .decode(request.body_base64.as_bytes())
        .map_err(|_| BadBodyEncoding)?;
    let basic_attempted = header_values(request, "authorization").next().is_some();
    Ok(
        parse_form(request, &body, endpoint, first).map_err(|description| Malformed {
            description,
            basic_attempted,
        }),
    )
}

fn parse_form(
    request: &HttpRequest,
    body: &[u8],
    endpoint: &str,
    first: &str,
) -> Result<ClientForm, String> {
    if request.method != "POST" {
        return Err(format!(
            "the {endpoint} takes `POST`, not `{}`",
            quote(&request.method)
        ));
    }
    check_content_type(single_header(request, "content-type")?)?;
    if body.is_empty() {
        return Err("the request body is empty".into());
    }
    if body.len() > MAX_BODY {
        return Err(format!("the request body is over {MAX_BODY} bytes"));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| "the request body is not UTF-8".to_string())?;
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    // Names sent with an empty value: not parameters, but a second one is still a repeat.
    let mut empty: Vec<String> = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_decode(raw_name).map_err(|why| format!("a parameter name {why}"))?;
        let value = form_decode(raw_value)
            .map_err(|why| format!("the value of `{}` {why}", quote(&name)))?;
        if params.contains_key(&name) || empty.contains(&name) {
            return Err(format!("the parameter `{}` is repeated", quote(&name)));
        }
        if value.is_empty() {
            empty.push(name);
        } else {
            params.insert(name, value);
        }
    }
    let first = params
        .remove(first)
        .ok_or_else(|| format!("the `{first}` parameter is missing"))?;

    let body_id = params.remove("client_id");
    let body_secret = params.remove("client_secret");
    let (client_id, client_secret, auth) = match single_header(request, "authorization")? {
        Some(value) => {
            let (id, secret) = parse_basic(value)?;
            if body_secret.is_some() {
                return Err("the client authenticated twice, with HTTP Basic and with `client_secret` in the body: use one method".into());
            }
            if body_id.as_ref().is_some_and(|b| *b != id) {
                return Err("the `client_id` in the body is not the one in HTTP Basic".into());
            }
            (Some(id), Some(secret), AuthMethod::Basic)
        }
        None if body_id.is_some() || body_secret.is_some() => {
            (body_id, body_secret, AuthMethod::Body)
        }
        None => (None, None, AuthMethod::None),
    };
    Ok(ClientForm {
        first,
        params,
        client_id,
        client_secret,
        auth,
    })
}

fn check_content_type(value: Option<&str>) -> Result<(), String> {
    const FORM: &str = "application/x-www-form-urlencoded";
    let Some(value) = value else {
        return Err(format!(
            "the `content-type` header is missing: send `{FORM}`"
        ));
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(FORM) {
        return Err(format!("the body must be `{FORM}`, not `{}`", quote(media)));
    }
    for param in parts {
        let (key, val) = param.split_once('=').unwrap_or((param, ""));
        let val = val.trim().trim_matches('"');
        if key.trim().eq_ignore_ascii_case("charset") && !val.eq_ignore_ascii_case("utf-8") {
            return Err(format!("the body must be UTF-8, not `{}`", quote(val)));
        }
    }
    Ok(())
}

/// RFC 7617 with RFC 6749 §2.3.1: base64 of `form-encoded(id):form-encoded(secret)`.
fn parse_basic(value: &str) -> Result<(String, String), String> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(format!(
            "the `authorization` scheme `{}` is not supported here: use `Basic`",
            quote(scheme)
        ));
    }
    let decoded = STANDARD
        .decode(token.trim().as_bytes())
        .map_err(|_| "the HTTP Basic credentials are not valid base64".to_string())?;
    let text = String::from_utf8(decoded)
        .map_err(|_| "the HTTP Basic credentials are not UTF-8".to_string())?;
    let (id, secret) = text.split_once(':').ok_or_else(|| {
        "the HTTP Basic credentials have no `:` between client id and secret".to_string()
    })?;
    let id = form_decode(id).map_err(|why| format!("the HTTP Basic client id {why}"))?;
    let secret =
        form_decode(secret).map_err(|why| format!("the HTTP Basic client secret {why}"))?;
    if id.is_empty() {
        return Err("the HTTP Basic client id is empty".into());
    }
    Ok((id, secret))
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; the bytes must be UTF-8.
pub fn form_decode(text: &str) -> Result<String, &'static str> {
    let bytes = text.as_bytes();
    if !bytes.iter().any(|&b| b == b'+' || b == b'%') {
        // Nothing to decode, and `text` is UTF-8 already.
        return Ok(text.to_string());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16));
                let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                    _ => return Err("has a malformed percent-escape"),
                }
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once decoded")
}

/// `application/x-www-form-urlencoded` encoding (the WHATWG set), as §2.3.1 asks of Basic credentials.
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Client input made safe for `error_description` (RFC 6749 §5.2: `%x20-21 / %x23-5B / %x5D-7E`),
/// shortened to 64 characters.
pub fn quote(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(64)
        .map(|c| match c {
            '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e' => c,
            _ => '?',
        })
        .collect();
    if text.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)], body: &[u8]) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            tenant: "acme".into(),
            headers: headers
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            body_base64: STANDARD.encode(body),
        }
    }

    const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

    fn basic(id: &str, secret: &str) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", form_encode(id), form_encode(secret)))
        )
    }

    #[test]
    fn basic_credentials_are_form_decoded_both_ways() {
        for secret in ["a%b", "a+b c", "p:q:r", "pässwörd ✓", "%41"] {
            let auth = basic("crm:1", secret);
            let parsed = parse(&req(
                &[FORM, ("Authorization", &auth)],
                b"grant_type=client_credentials",
            ))
            .unwrap()
            .unwrap();
            assert_eq!(parsed.client_id.as_deref(), Some("crm:1"));
            assert_eq!(parsed.client_secret.as_deref(), Some(secret));
            assert_eq!(form_decode(&form_encode(secret)).unwrap(), secret);
        }
    }

    #[test]
    fn every_malformation_is_named() {
        let cases: Vec<(HttpRequest, &str)> = vec![
            (req(&[FORM], b""), "empty"),
            (
                req(&[FORM], b"grant_type=password&scope=a&scope=b"),
                "`scope` is repeated",
            ),
            (
                req(&[FORM], b"scope=a"),
                "`grant_type` parameter is missing",
            ),
            (
                req(&[FORM], b"grant_type=password&username=%FF"),
                "not UTF-8",
            ),
            (
                req(&[FORM], b"grant_type=password&username=%G1"),
                "percent-escape",
            ),
            (req(&[FORM], b"grant_type=\xff"), "not UTF-8"),
            (
                req(&[("Content-Type", "application/json")], b"{}"),
                "must be `application/x-www-form-urlencoded`",
            ),
            (
                req(&[], b"grant_type=password"),
                "`content-type` header is missing",
            ),
            (
                req(
                    &[FORM, ("Authorization", "Basic !!!")],
                    b"grant_type=password",
                ),
                "not valid base64",
            ),
            (
                req(
                    &[FORM, ("Authorization", "Basic Y3JtLTE=")],
                    b"grant_type=password",
                ),
                "no `:`",
            ),
            (
                req(
                    &[FORM, ("Authorization", &basic("a", "b"))],
                    b"grant_type=password&client_secret=b",
                ),
                "authenticated twice",
            ),
            (
                req(
                    &[FORM, ("Authorization", "Bearer x")],
                    b"grant_type=password",
                ),
                "scheme `Bearer`",
            ),
        ];
        for (request, needle) in cases {
            let err = parse(&request).unwrap().expect_err(needle);
            assert!(
                err.description.contains(needle),
                "{needle}: {}",
                err.description
            );
        }
        let mut get = req(&[FORM], b"grant_type=password");
        get.method = "GET".into();
        assert!(parse(&get)
            .unwrap()
            .unwrap_err()
            .description
            .contains("`GET`"));
    }

    #[test]
    fn empty_values_count_as_omitted() {
        let parsed = parse(&req(
            &[FORM],
            b"grant_type=client_credentials&scope=&client_id=a&client_secret=b",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(parsed.param("scope"), None);
        assert_eq!(parsed.auth, AuthMethod::Body);
    }

    #[test]
    fn descriptions_never_carry_quotes_or_non_ascii() {
        assert_eq!(quote("a\"b\\c\u{e9}"), "a?b?c?");
    }
}
