//! `granted vectors --http DIR`: every token vector over real HTTP. For each one, a fresh
//! temporary database file loaded with its `state`, a server started in-process with the vector's
//! `now` as its clock, the request sent byte for byte as the vector gives it over loopback, and
//! the answer (status, error, scope, refresh token, cache headers) and the recorded audit reason
//! and effects compared with `expect`, by the same checks as the in-module runners.

use crate::guest::Guest;
use crate::server::{self, Server, ServerSettings};
use crate::store::Store;
use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use granted_policy::model::Timestamp;
use granted_vectors::format::Vector;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

/// Vectors passed, failed and skipped (no token request: previews have no HTTP face yet).
#[derive(Debug, Default)]
pub struct HttpSummary {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Not token vectors.
    pub skipped: usize,
}

/// Runs every vector file of `dir` over HTTP, one line each, then the summary line.
pub fn run_dir(guest: Arc<Guest>, dir: &Path, out: &mut dyn Write) -> Result<HttpSummary> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("could not read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut summary = HttpSummary::default();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let vector = match granted_vectors::load(&path) {
            Ok(v) => v,
            Err(e) => {
                summary.failed += 1;
                writeln!(out, "FAIL {name}: {e:#}")?;
                continue;
            }
        };
        if vector.token_request.is_none() {
            summary.skipped += 1;
            writeln!(out, "skip {name}: not a token request")?;
            continue;
        }
        match run_one(&runtime, guest.clone(), &vector) {
            Ok(mismatches) if mismatches.is_empty() => {
                summary.passed += 1;
                writeln!(out, "ok   {name}")?;
            }
            Ok(mismatches) => {
                summary.failed += 1;
                writeln!(out, "FAIL {name}: {}", mismatches.join("; "))?;
            }
            Err(e) => {
                summary.failed += 1;
                writeln!(out, "FAIL {name}: {e:#}")?;
            }
        }
    }
    writeln!(
        out,
        "{} passed, {} failed ({} skipped: not token requests)",
        summary.passed, summary.failed, summary.skipped
    )?;
    Ok(summary)
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Removes a directory when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_one(
    runtime: &tokio::runtime::Runtime,
    guest: Arc<Guest>,
    vector: &Vector,
) -> Result<Vec<String>> {
    let spec = vector
        .token_request
        .as_ref()
        .ok_or_else(|| anyhow!("not a token vector"))?;
    let now = Timestamp::parse(&vector.now).ok_or_else(|| anyhow!("bad `now`"))?;
    let sunset = match &vector.sunset {
        Some(s) => Some(Timestamp::parse(s).ok_or_else(|| anyhow!("bad `sunset`"))?),
        None => None,
    };
    let settings = ServerSettings {
        kdf_iterations: granted_vectors::driver::Settings::default().iterations,
        fixed_now: Some(now),
        sunset,
        record_decisions: true,
        ..ServerSettings::default()
    };
    // A fresh database file per vector, as `granted serve` keeps one (WAL and all); removed after.
    let dir = std::env::temp_dir().join(format!(
        "granted-vectors-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = RemoveOnDrop(dir.clone());
    let server = Server::new(guest, Store::open(&dir.join("granted.db"))?, settings)?;
    let state = crate::state::parse(&serde_json::to_string(&vector.state)?)
        .context("the vector's state does not import")?;
    server.import(&state)?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server::serve(server.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let request = granted_vectors::driver::http_request(spec)?;
    let answer = send(addr, &request);
    let _ = stop.send(());
    let _ = runtime.block_on(serving);
    let (status, headers, body) = answer?;
    let decisions = server.take_decisions();
    let decision = match decisions.as_slice() {
        [one] => one.clone(),
        other => bail!(
            "the server recorded {} decisions for one request",
            other.len()
        ),
    };
    let step = json!({
        "response": {"status": status, "headers": headers, "body": body},
        "audit": decision["audit"],
        "effects": decision["effects"],
    });
    let mut mismatches = Vec::new();
    granted_vectors::driver::check_token(&vector.expect, &step, &mut mismatches)?;
    Ok(mismatches)
}

/// Sends the raw request over a plain socket, as given (method, repeated headers and all), and
/// reads the whole answer: status, headers, body.
/// Status, headers and body of an HTTP answer.
type Answer = (u16, Vec<(String, String)>, String);

fn send(addr: std::net::SocketAddr, request: &Value) -> Result<Answer> {
    let method = request["method"].as_str().unwrap_or("POST");
    let tenant = request["tenant"].as_str().unwrap_or_default();
    let body = STANDARD.decode(request["body_base64"].as_str().unwrap_or_default())?;
    let path: String = tenant
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut head = format!("{method} /tenants/{path}/connect/token HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for header in request["headers"].as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (header[0].as_str(), header[1].as_str()) else {
            continue;
        };
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
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
