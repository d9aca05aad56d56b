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
use crate::store::PgServer;
use anyhow::{anyhow, Context, Result};
use granted_policy::model::Timestamp;
use granted_vectors::format::Vector;
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::http_admin::run_edit;
use super::http_client::{check_answer, send};
use super::http_edge::run_edge;
use super::vector_server::start;

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
        let outcome = granted_vectors::load(&path)
            .and_then(|vector| run_vector(&runtime, guest.clone(), &vector, target));
        match outcome {
            Ok(Outcome::Skipped(why)) => {
                summary.skipped += 1;
                writeln!(out, "skip {name}: {why}")?;
            }
            Ok(Outcome::Checked(mismatches)) if mismatches.is_empty() => {
                summary.passed += 1;
                writeln!(out, "ok   {name}")?;
            }
            Ok(Outcome::Checked(mismatches)) => {
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

/// What running one vector came to: its mismatches (none: it passed), or why it was skipped.
enum Outcome {
    Checked(Vec<String>),
    Skipped(&'static str),
}

/// One vector against `target`, by its kind: a sequence, the sign-in pages, a token request,
/// an edit or a creation.
fn run_vector(
    runtime: &tokio::runtime::Runtime,
    guest: Arc<Guest>,
    vector: &Vector,
    target: &Target,
) -> Result<Outcome> {
    let pg = match target {
        Target::HostOnPostgres(pg) => Some(pg),
        Target::Host | Target::Edge(_) => None,
    };
    let edge = match target {
        Target::Edge(serve) => Some(serve),
        Target::Host | Target::HostOnPostgres(_) => None,
    };
    let checked = if vector.sequence.is_some() {
        if edge.is_some() {
            return Ok(Outcome::Skipped(
                "a sequence needs a clock per step, and the edge's is fixed per process \
                 (tests/edge/sequences.test.mjs runs it through the handler)",
            ));
        }
        run_sequence(runtime, guest, vector, pg)?
    } else if vector.authorize_request.is_some() || vector.flow.is_some() {
        if edge.is_some() {
            return Ok(Outcome::Skipped(
                "the edge serves the token endpoint, not the sign-in pages",
            ));
        }
        if vector.flow.is_some() {
            super::http_code::run_flow(runtime, guest, vector, pg)?
        } else {
            super::http_code::run_authorize(runtime, guest, vector, pg)?
        }
    } else if vector.token_request.is_some() {
        match edge {
            None => run_one(runtime, guest, vector, pg)?,
            Some(_) if vector.state.get("codes").is_some() => {
                return Ok(Outcome::Skipped(
                    "the edge keeps no authorization codes (granted serve's pages issue them)",
                ))
            }
            Some(serve) => run_edge(runtime, guest, vector, serve)?,
        }
    } else if edge.is_some() {
        return Ok(Outcome::Skipped("edit/create (the edge has no admin API)"));
    } else if vector.edit.is_some() || vector.create.is_some() {
        run_edit(runtime, guest, vector, pg)?
    } else {
        return Ok(Outcome::Skipped("no token request, edit or create"));
    };
    Ok(Outcome::Checked(checked))
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
