//! The client side of `granted vectors --http`: requests sent byte for byte on a plain socket,
//! the answer read whole, and compared with a vector's `expect` beside the decision the server
//! recorded for it.

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{Read, Write};

/// Compares an answer and the one decision recorded for it with `expect`.
pub(super) fn check_answer(
    (status, headers, body): Answer,
    decisions: &[Value],
    who: &str,
    expect: &granted_vectors::format::Expect,
) -> Result<Vec<String>> {
    let decision = match decisions {
        [one] => one,
        other => bail!(
            "the {who} recorded {} decisions for one request",
            other.len()
        ),
    };
    let step = json!({
        "response": {"status": status, "headers": headers, "body": body},
        "audit": decision["audit"],
        "effects": decision["effects"],
    });
    let mut mismatches = Vec::new();
    granted_vectors::driver::check_token(expect, &step, &mut mismatches)?;
    Ok(mismatches)
}

/// Sends the raw request over a plain socket, as given (method, repeated headers and all), and
/// reads the whole answer: status, headers, body.
/// Status, headers and body of an HTTP answer.
pub(super) type Answer = (u16, Vec<(String, String)>, String);

pub(super) fn send(addr: std::net::SocketAddr, request: &Value) -> Result<Answer> {
    let method = request["method"].as_str().unwrap_or("POST");
    let tenant = request["tenant"].as_str().unwrap_or_default();
    let body = STANDARD.decode(request["body_base64"].as_str().unwrap_or_default())?;
    let headers: Vec<(String, String)> = request["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| Some((h[0].as_str()?.to_string(), h[1].as_str()?.to_string())))
        .collect();
    let path = format!("/tenants/{}/connect/token", url_segment(tenant));
    http(addr, method, &path, &headers, &body)
}

/// One HTTP/1.1 exchange on a plain socket: the headers as given (repeated ones and all), then
/// the whole answer.
pub(super) fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Answer> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("the server's answer has no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = String::from_utf8_lossy(&raw[split + 4..]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok((status, headers, body))
}

/// A path segment percent-encoded: everything but RFC 3986's unreserved characters.
pub(super) fn url_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
