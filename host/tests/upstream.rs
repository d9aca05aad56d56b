//! The client of requests to identity providers (`upstream.rs`) against a stub provider on
//! loopback that answers well, slowly, hugely, with a redirect, with garbage, or not at all:
//! each ends in its typed error within the deadline, and nothing but `https` or loopback `http`
//! is ever asked.

use granted_host::upstream::{Upstream, UpstreamError, MAX_ANSWER_BYTES};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A stub provider: each connection's request line picks the answer. Runs until the test ends.
fn stub() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = base.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let issuer = issuer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap_or_default();
                let mut header = String::new();
                let mut length = 0usize;
                let mut authorization = String::new();
                while reader.read_line(&mut header).unwrap_or(0) > 2 {
                    let lower = header.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        authorization = header["authorization:".len()..].trim().to_string();
                    }
                    header.clear();
                }
                let mut body = vec![0; length];
                std::io::Read::read_exact(&mut reader, &mut body).unwrap_or_default();
                let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                let mut out = stream;
                let answer = |out: &mut std::net::TcpStream,
                              status: &str,
                              extra: &str,
                              body: &[u8]| {
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
                        body.len()
                    );
                    let _ = out.write_all(head.as_bytes());
                    let _ = out.write_all(body);
                };
                match path.as_str() {
                    "/.well-known/openid-configuration" => {
                        let doc = serde_json::json!({
                            "issuer": issuer,
                            "authorization_endpoint": format!("{issuer}/authorize"),
                            "token_endpoint": format!("{issuer}/token"),
                            "jwks_uri": format!("{issuer}/jwks"),
                            "id_token_signing_alg_values_supported": ["RS256"],
                        });
                        answer(&mut out, "200 OK", "", doc.to_string().as_bytes());
                    }
                    "/other/.well-known/openid-configuration" => {
                        let doc = serde_json::json!({"issuer": "https://someone.else"});
                        answer(&mut out, "200 OK", "", doc.to_string().as_bytes());
                    }
                    "/token" => {
                        // Echo what a token request sent: the form and the Basic credentials.
                        let doc = serde_json::json!({
                            "form": String::from_utf8_lossy(&body),
                            "authorization": authorization,
                        });
                        answer(&mut out, "200 OK", "", doc.to_string().as_bytes());
                    }
                    "/slow" => {
                        std::thread::sleep(Duration::from_secs(3));
                        answer(&mut out, "200 OK", "", b"{}");
                    }
                    "/big" => {
                        let mut big = b"{\"x\":\"".to_vec();
                        big.resize(MAX_ANSWER_BYTES as usize + 10, b'a');
                        big.extend_from_slice(b"\"}");
                        answer(&mut out, "200 OK", "", &big);
                    }
                    "/redirect" => answer(
                        &mut out,
                        "302 Found",
                        "Location: http://127.0.0.1:1/elsewhere\r\n",
                        b"{}",
                    ),
                    "/garbage" => answer(&mut out, "200 OK", "", b"<html>no</html>"),
                    "/array" => answer(&mut out, "200 OK", "", b"[1, 2]"),
                    "/down" => answer(
                        &mut out,
                        "500 Internal Server Error",
                        "",
                        b"{\"error\":\"down\"}",
                    ),
                    _ => answer(&mut out, "404 Not Found", "", b"{}"),
                }
            });
        }
    });
    base
}

#[test]
fn a_broken_or_hostile_provider_ends_in_a_typed_error_within_the_deadline() {
    let base = stub();
    let client = Upstream::with_deadline(Duration::from_secs(1));
    let found = client.discover(&base).unwrap();
    assert_eq!(found.token_endpoint, format!("{base}/token"));
    assert_eq!(
        client.discover(&format!("{base}/other")),
        Err(UpstreamError::IssuerMismatch("https://someone.else".into()))
    );
    let started = Instant::now();
    assert_eq!(
        client.get_json(&format!("{base}/slow")),
        Err(UpstreamError::Timeout)
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the deadline held"
    );
    assert_eq!(
        client.get_json(&format!("{base}/big")),
        Err(UpstreamError::TooLarge)
    );
    assert_eq!(
        client.get_json(&format!("{base}/redirect")),
        Err(UpstreamError::Redirect(302))
    );
    assert_eq!(
        client.get_json(&format!("{base}/garbage")),
        Err(UpstreamError::NotJson)
    );
    assert_eq!(
        client.get_json(&format!("{base}/array")),
        Err(UpstreamError::NotJson)
    );
    // A provider error is an answer: the caller reads its status.
    let down = client.get_json(&format!("{base}/down")).unwrap();
    assert_eq!(down.status, 500);
    // Nobody listening.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = client.get_json(&format!("http://127.0.0.1:{port}/x"));
    assert!(
        matches!(unreachable, Err(UpstreamError::Unreachable(_))),
        "{unreachable:?}"
    );
    // Plain http off loopback is never asked.
    assert!(matches!(
        client.get_json("http://idp.example/.well-known/openid-configuration"),
        Err(UpstreamError::NotAllowed(_))
    ));
}

#[test]
fn a_token_request_sends_its_form_with_client_secret_basic() {
    let base = stub();
    let client = Upstream::with_deadline(Duration::from_secs(2));
    let answer = client
        .post_form(
            &format!("{base}/token"),
            ("granted acme", "s3cret:+"),
            &[("grant_type", "authorization_code"), ("code", "up code")],
        )
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body["form"],
        "grant_type=authorization_code&code=up+code"
    );
    // RFC 6749 §2.3.1: both parts form-url-encoded, then `id:secret` in base64.
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD.encode("granted+acme:s3cret%3A%2B");
    assert_eq!(answer.body["authorization"], format!("Basic {expected}"));
}

/// A provider's keys are fetched once, kept, and fetched again for a `kid` they lack only once
/// they are older than the refetch interval: a rotation is followed, a flood of unknown `kid`s
/// costs no request.
#[test]
fn an_unknown_kid_fetches_the_keys_again_at_most_once_per_interval() {
    use granted_host::provider_keys::{IdTokenAlg, KeyError, ProviderKeys};
    use granted_host::signing::{generate, ServerKey};
    use granted_policy::token::jwt::SigningAlg;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let public = |kid: &str| {
        let secret = generate(SigningAlg::ES256).unwrap();
        ServerKey::open(kid, SigningAlg::ES256, &secret)
            .unwrap()
            .public_jwk()
            .unwrap()
    };
    let published = Arc::new(Mutex::new(serde_json::json!({"keys": [public("k1")]})));
    let fetches = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let jwks_uri = format!("http://{}/jwks", listener.local_addr().unwrap());
    {
        let (published, fetches) = (published.clone(), fetches.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = published.lock().unwrap().to_string();
                let mut out = stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
    }
    let client = Upstream::with_deadline(Duration::from_secs(2));
    let patient = ProviderKeys::new(client.clone(), Duration::from_secs(3600));
    assert!(patient
        .key(&jwks_uri, IdTokenAlg::ES256, Some("k1"))
        .is_ok());
    assert!(patient
        .key(&jwks_uri, IdTokenAlg::ES256, Some("k1"))
        .is_ok());
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "kept");
    for n in 0..20 {
        let made_up = format!("made-up-{n}");
        assert_eq!(
            patient.key(&jwks_uri, IdTokenAlg::ES256, Some(&made_up)),
            Err(KeyError::NoKey)
        );
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "unknown kids within the interval fetch nothing"
    );
    // The provider rotates: a keeper whose keys are old enough fetches once and finds k2.
    *published.lock().unwrap() = serde_json::json!({"keys": [public("k2")]});
    let eager = ProviderKeys::new(client, Duration::ZERO);
    assert!(eager.key(&jwks_uri, IdTokenAlg::ES256, Some("k1")).is_err());
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert!(eager.key(&jwks_uri, IdTokenAlg::ES256, Some("k2")).is_ok());
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "k2 came with the keys fetched for k1"
    );
    assert!(
        eager.key(&jwks_uri, IdTokenAlg::RS256, Some("k2")).is_err(),
        "not an RSA key"
    );
}
