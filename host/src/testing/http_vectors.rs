//! `granted vectors --http DIR`: every vector over real HTTP. For each one, a fresh temporary
//! database file loaded with its `state` and a server started in-process with the vector's `now`
//! as its clock. A token vector's request is sent byte for byte as the vector gives it over
//! loopback, and the answer (status, error, scope, refresh token, cache headers) and the recorded
//! audit reason and effects are compared with `expect`, by the same checks as the in-module
//! runners. An `edit` or `create` vector goes through the admin API: its preview is compared with
//! `expect` like the module's, then it is saved, and an accepted one must be stored under that
//! same preview (201, one more revision), a rejected one refused with its reason (422, or 409 for
//! an existing app) with nothing stored. A `sequence` vector sends its steps' requests to one
//! database, the server started again with each step's instant as its clock, and reads the
//! user's lock from the store after each step; the edge, whose clock is fixed per process, skips
//! them (`tests/edge/sequences.test.mjs` runs them through its handler). The authorization code
//! vectors go through the sign-in pages as a browser does (`http_code.rs`); the edge serves no
//! pages and keeps no codes, and skips them and the exchanges of codes in a vector's state.

use crate::guest::Guest;
use crate::service::Service;
use crate::settings::ServerSettings;
use crate::store::{PgOptions, PgServer, Store};
use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use granted_policy::model::Timestamp;
use granted_vectors::format::Vector;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use super::http_admin::{run_edit, url_segment};
use super::http_edge::run_edge;

/// What the vectors are sent to.
#[derive(Clone)]
pub enum Target {
    /// `granted serve`, in-process, on a SQLite file.
    Host,
    /// `granted serve`, in-process, on a new database of this PostgreSQL server per vector.
    HostOnPostgres(Arc<PgServer>),
    /// The edge handler, `node` running this `serve.mjs` on the vector's state exported as an
    /// edge snapshot.
    Edge(std::path::PathBuf),
}

/// Vectors passed, failed and skipped.
#[derive(Debug, Default)]
pub struct HttpSummary {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Neither a token request nor an edit, a creation or a sequence; or a sequence on the edge.
    pub skipped: usize,
}

/// Runs every vector file of `dir` over HTTP, one line each, then the summary line.
pub fn run_dir(
    guest: Arc<Guest>,
    dir: &Path,
    target: &Target,
    out: &mut dyn Write,
) -> Result<HttpSummary> {
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
        let outcome = if vector.sequence.is_some() {
            match target {
                Target::Host => run_sequence(&runtime, guest.clone(), &vector, None),
                Target::HostOnPostgres(pg) => {
                    run_sequence(&runtime, guest.clone(), &vector, Some(pg))
                }
                Target::Edge(_) => {
                    summary.skipped += 1;
                    writeln!(
                        out,
                        "skip {name}: a sequence needs a clock per step, and the edge's is fixed \
                         per process (tests/edge/sequences.test.mjs runs it through the handler)"
                    )?;
                    continue;
                }
            }
        } else if vector.authorize_request.is_some() || vector.flow.is_some() {
            let pg = match target {
                Target::Host => None,
                Target::HostOnPostgres(pg) => Some(pg),
                Target::Edge(_) => {
                    summary.skipped += 1;
                    writeln!(
                        out,
                        "skip {name}: the edge serves the token endpoint, not the sign-in pages"
                    )?;
                    continue;
                }
            };
            if vector.flow.is_some() {
                super::http_code::run_flow(&runtime, guest.clone(), &vector, pg)
            } else {
                super::http_code::run_authorize(&runtime, guest.clone(), &vector, pg)
            }
        } else if vector.token_request.is_some() {
            match target {
                Target::Host => run_one(&runtime, guest.clone(), &vector, None),
                Target::HostOnPostgres(pg) => run_one(&runtime, guest.clone(), &vector, Some(pg)),
                Target::Edge(_) if vector.state.get("codes").is_some() => {
                    summary.skipped += 1;
                    writeln!(
                        out,
                        "skip {name}: the edge keeps no authorization codes (granted serve's pages issue them)"
                    )?;
                    continue;
                }
                Target::Edge(serve) => run_edge(&runtime, guest.clone(), &vector, serve),
            }
        } else if matches!(target, Target::Edge(_)) {
            summary.skipped += 1;
            writeln!(out, "skip {name}: edit/create (the edge has no admin API)")?;
            continue;
        } else if vector.edit.is_some() || vector.create.is_some() {
            let pg = match target {
                Target::HostOnPostgres(pg) => Some(pg),
                _ => None,
            };
            run_edit(&runtime, guest.clone(), &vector, pg)
        } else {
            summary.skipped += 1;
            writeln!(out, "skip {name}: no token request, edit or create")?;
            continue;
        };
        match outcome {
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
    if summary.skipped > 0 {
        writeln!(
            out,
            "{} passed, {} failed ({} skipped)",
            summary.passed, summary.failed, summary.skipped
        )?;
    } else {
        writeln!(out, "{} passed, {} failed", summary.passed, summary.failed)?;
    }
    Ok(summary)
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A vector's database, removed when dropped: a directory, or a PostgreSQL database.
pub(super) enum RemoveOnDrop {
    Dir(std::path::PathBuf),
    Database(Arc<PgServer>, String),
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        match self {
            RemoveOnDrop::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            RemoveOnDrop::Database(server, name) => {
                let _ = server.drop_database(name);
            }
        }
    }
}

/// A server for one vector: its state in a fresh database file, its `now` as the clock.
pub(super) struct VectorServer {
    pub(super) server: Arc<Service>,
    pub(super) addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<Result<()>>,
    pub(super) _cleanup: RemoveOnDrop,
}

/// The admin token of the servers `granted vectors --http` starts.
pub(super) const ADMIN_TOKEN: &str = "granted-vectors-admin-token-0123456789abcdef";

pub(super) fn start(
    runtime: &tokio::runtime::Runtime,
    guest: Arc<Guest>,
    vector: &Vector,
    pg: Option<&Arc<PgServer>>,
) -> Result<VectorServer> {
    let now = Timestamp::parse(&vector.now).ok_or_else(|| anyhow!("bad `now`"))?;
    let sunset = match &vector.sunset {
        Some(s) => Some(Timestamp::parse(s).ok_or_else(|| anyhow!("bad `sunset`"))?),
        None => None,
    };
    let lockout = match &vector.lockout {
        Some(settings) => serde_json::from_value(settings.clone()).context("bad `lockout`")?,
        None => Default::default(),
    };
    let settings = ServerSettings {
        kdf_iterations: granted_vectors::driver::Settings::default().iterations,
        clock: crate::settings::Clock::Fixed(now),
        sunset,
        lockout,
        record_decisions: true,
        // The host's throttle (per client and source address, not a rule of the module) is
        // set out of reach: a sequence sends more failures from one address than it allows.
        throttle_failures: 1_000_000,
        ..ServerSettings::default()
    };
    // A fresh database per vector, as `granted serve` keeps one (a file with its WAL, or a
    // PostgreSQL database); removed after.
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (store, cleanup) = match pg {
        None => {
            let dir =
                std::env::temp_dir().join(format!("granted-vectors-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let cleanup = RemoveOnDrop::Dir(dir.clone());
            (Store::open(&dir.join("granted.db"))?, cleanup)
        }
        Some(server) => {
            let name = format!("granted_vectors_{}_{n}", std::process::id());
            let url = server.create(&name)?;
            let cleanup = RemoveOnDrop::Database(server.clone(), name);
            let options = PgOptions {
                max_connections: 4,
                ..PgOptions::default()
            };
            (Store::connect(&url, options)?, cleanup)
        }
    };
    crate::admin_token::ensure_admin_token(&store, now, Some(ADMIN_TOKEN))?;
    let server = Service::new(guest, store, settings)?;
    let state = crate::state::parse(&serde_json::to_string(&vector.state)?)
        .context("the vector's state does not import")?;
    server.import(&state)?;
    serve(runtime, server, cleanup)
}

/// Serves `server` on a free loopback port.
fn serve(
    runtime: &tokio::runtime::Runtime,
    server: Arc<Service>,
    cleanup: RemoveOnDrop,
) -> Result<VectorServer> {
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(crate::http::serve(server.clone(), listener, async move {
        let _ = stopped.await;
    }));
    Ok(VectorServer {
        server,
        addr,
        stop,
        serving,
        _cleanup: cleanup,
    })
}

impl VectorServer {
    pub(super) fn stop(self, runtime: &tokio::runtime::Runtime) -> Arc<Service> {
        let _ = self.stop.send(());
        let _ = runtime.block_on(self.serving);
        self.server
    }

    /// The same database served again by a server whose clock is `now`.
    pub(super) fn restart_at(
        self,
        runtime: &tokio::runtime::Runtime,
        guest: Arc<Guest>,
        now: Timestamp,
    ) -> Result<VectorServer> {
        let VectorServer {
            server,
            stop,
            serving,
            _cleanup: cleanup,
            ..
        } = self;
        let _ = stop.send(());
        let _ = runtime.block_on(serving);
        let settings = ServerSettings {
            clock: crate::settings::Clock::Fixed(now),
            ..server.settings.clone()
        };
        let store = server.store.clone();
        drop(server);
        serve(runtime, Service::new(guest, store, settings)?, cleanup)
    }
}

/// A sequence vector over HTTP: each step's requests to one database, the server's clock at the
/// step's instant; the answers and recorded decisions checked as a token vector's, and the
/// user's lock read from the store after the step.
fn run_sequence(
    runtime: &tokio::runtime::Runtime,
    guest: Arc<Guest>,
    vector: &Vector,
    pg: Option<&Arc<PgServer>>,
) -> Result<Vec<String>> {
    let sequence = vector
        .sequence
        .as_ref()
        .ok_or_else(|| anyhow!("not a sequence vector"))?;
    let mut running = start(runtime, guest.clone(), vector, pg)?;
    let mut at = Timestamp::parse(&vector.now).ok_or_else(|| anyhow!("bad `now`"))?;
    let mut mismatches = Vec::new();
    for (i, step) in sequence.steps.iter().enumerate() {
        if let Some(text) = &step.at {
            let step_at = Timestamp::parse(text).ok_or_else(|| anyhow!("bad `at` `{text}`"))?;
            if step_at != at {
                at = step_at;
                running = running.restart_at(runtime, guest.clone(), at)?;
            }
        }
        let spec = sequence.request(step);
        let request = granted_vectors::driver::http_request(&spec)?;
        for n in 1..=step.repeat {
            let answer = send(running.addr, &request)?;
            let decisions = running.server.take_decisions();
            let mut out = check_answer(answer, &decisions, "server", &step.expect)?;
            if let (Some(expected), true) = (&step.locked_until, n == step.repeat) {
                let username = spec.form.as_ref().and_then(|f| f.get("username"));
                let until = running
                    .server
                    .store
                    .locked_until(&spec.tenant, username.map_or("", String::as_str))?
                    .filter(|until| at < *until)
                    .map(Timestamp::to_rfc3339);
                if *expected != json!(until) {
                    out.push(format!(
                        "locked_until: expected {expected}, got {}",
                        json!(until)
                    ));
                }
            }
            let label = step.name.as_deref().unwrap_or_default();
            mismatches.extend(
                out.into_iter()
                    .map(|m| format!("step {} ({label}) #{n}: {m}", i + 1)),
            );
        }
    }
    running.stop(runtime);
    Ok(mismatches)
}

fn run_one(
    runtime: &tokio::runtime::Runtime,
    guest: Arc<Guest>,
    vector: &Vector,
    pg: Option<&Arc<PgServer>>,
) -> Result<Vec<String>> {
    let spec = vector
        .token_request
        .as_ref()
        .ok_or_else(|| anyhow!("not a token vector"))?;
    let running = start(runtime, guest, vector, pg)?;
    let request = granted_vectors::driver::http_request(spec)?;
    let answer = send(running.addr, &request);
    let server = running.stop(runtime);
    check_answer(answer?, &server.take_decisions(), "server", &vector.expect)
}

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
