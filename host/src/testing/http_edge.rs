//! A token vector over HTTP against the edge handler (`granted vectors --http --edge`): the
//! vector's state exported as an edge snapshot, served by `node serve.mjs`.

use super::http_client::{check_answer, send};
use super::vector_server::{start, RemoveOnDrop};
use crate::guest::Guest;
use crate::settings::ServerSettings;
use anyhow::{anyhow, bail, Context, Result};
use granted_policy::model::Timestamp;
use granted_vectors::format::Vector;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A token vector against the edge handler: the vector's state, imported as the host does,
/// exported as an edge snapshot with the host's keys, served by `node serve.mjs` with the
/// vector's `now`; the request sent byte for byte, the decision read from its decisions log.
pub(super) fn run_edge(
    runtime: &tokio::runtime::Runtime,
    guest: Arc<Guest>,
    vector: &Vector,
    serve: &Path,
) -> Result<Vec<String>> {
    let spec = vector
        .token_request
        .as_ref()
        .ok_or_else(|| anyhow!("not a token vector"))?;
    let running = start(runtime, guest, vector, None)?;
    let RemoveOnDrop::Dir(dir) = &running._cleanup else {
        bail!("the edge's files need a directory");
    };
    let dir = dir.clone();
    let now = Timestamp::parse(&vector.now).ok_or_else(|| anyhow!("bad `now`"))?;
    let store = &running.server.store;
    let snapshot = crate::edge_snapshot::export_edge(store, now, running.server.policy_sha256())?;
    let secrets = crate::edge_snapshot::edge_secrets(store, now)?;
    let (snapshot_file, secrets_file, decisions_file) = (
        dir.join("edge-snapshot.json"),
        dir.join("edge-secrets.json"),
        dir.join("edge-decisions.jsonl"),
    );
    std::fs::write(&snapshot_file, snapshot.to_string())?;
    std::fs::write(&secrets_file, secrets.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = std::process::Command::new("node");
    command
        .arg(serve)
        .arg("--snapshot")
        .arg(&snapshot_file)
        .arg("--secrets")
        .arg(&secrets_file)
        .args([
            "--listen",
            &listen,
            "--issuer",
            &ServerSettings::default().issuer,
        ])
        .args([
            "--kdf-iterations",
            &granted_vectors::driver::Settings::default()
                .iterations
                .to_string(),
        ])
        .args(["--fixed-now", &vector.now])
        .arg("--decisions-log")
        .arg(&decisions_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(sunset) = &vector.sunset {
        command.env("GRANTED_SUNSET", sunset);
    }
    let _edge = Child(
        command
            .spawn()
            .context("could not start node (Node.js 20 is needed)")?,
    );
    let addr: std::net::SocketAddr = listen.parse()?;
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            bail!("the edge handler did not start on {listen}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let request = granted_vectors::driver::http_request(spec)?;
    let (status, headers, body) = send(addr, &request)?;
    // The edge writes each decision before it answers; read it before the directory goes.
    let log = std::fs::read_to_string(&decisions_file).unwrap_or_default();
    running.stop(runtime);
    let decisions: Vec<Value> = log
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    check_answer((status, headers, body), &decisions, "edge", &vector.expect)
}
