//! What the tests that run the `granted` binary share: import the demo state, start
//! `granted serve` on a free loopback port, and a small HTTP client.
#![allow(dead_code)] // each test file uses some of these

use base64::Engine as _;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const GRANTED: &str = env!("CARGO_BIN_EXE_granted");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn import(db: &Path) {
    import_with(db, "1000")
}

pub fn import_with(db: &Path, iterations: &str) {
    let status = Command::new(GRANTED)
        .args(["import", "--kdf-iterations", iterations, "--db"])
        .arg(db)
        .arg("../tests/demo/state.json")
        .status()
        .unwrap();
    assert!(status.success());
}

pub struct Served {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

/// A server that has not been stopped by its test (an assertion failed) is killed on drop.
impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn serve(db: &Path, log: &Path) -> Served {
    serve_with(db, log, None, &[])
}

/// `granted serve` with its standard output in `out` (else discarded) and extra environment.
pub fn serve_with(db: &Path, log: &Path, out: Option<&Path>, env: &[(&str, &str)]) -> Served {
    let port = free_port();
    let stdout = match out {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::null(),
    };
    let child = Command::new(GRANTED)
        .args(["serve", "--kdf-iterations", "1000", "--db"])
        .arg(db)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("GRANTED_LOG", "info,granted=debug,granted_host=debug")
        .env("GRANTED_CACHE_DIR", db.parent().unwrap().join("cache"))
        .envs(env.iter().copied())
        .stdout(stdout)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while agent().get(format!("{base}/healthz")).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Served {
        child,
        base,
        log: log.to_path_buf(),
    }
}

/// A client whose timeout is only a ceiling for a server that hangs: a request that is slow on a
/// busy machine is not a failure.
pub fn agent() -> ureq::Agent {
    agent_with(Duration::from_secs(60))
}

/// A client for one slow request (a 600,000-iteration login on a busy machine).
pub fn patient_agent() -> ureq::Agent {
    agent_with(Duration::from_secs(300))
}

/// [`agent`] that answers a redirect instead of following it (the authorization code flow's
/// pages redirect to the app).
pub fn redirectless_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn agent_with(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// Waits until the file at `log` holds `line`: the cause a test waits for, with `ceiling` only
/// for a server that never writes it.
pub fn wait_for_log(log: &Path, line: &str, ceiling: Duration) {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(line) {
            return;
        }
        assert!(
            started.elapsed() < ceiling,
            "no `{line}` in the log after {ceiling:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

pub fn post(base: &str, path: &str, auth: &str, body: &str) -> Result<(u16, Value), ureq::Error> {
    post_with(&agent(), base, path, auth, body)
}

/// [`post`] through `agent`.
pub fn post_with(
    agent: &ureq::Agent,
    base: &str,
    path: &str,
    auth: &str,
    body: &str,
) -> Result<(u16, Value), ureq::Error> {
    let mut response = agent
        .post(format!("{base}{path}"))
        .header("Authorization", auth)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body.to_string())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// The tests' server settings: the fixed instant 2026-11-25T12:00:00Z and 1000 KDF iterations.
pub fn fixed_settings() -> granted_host::settings::ServerSettings {
    granted_host::settings::ServerSettings {
        kdf_iterations: 1000,
        clock: granted_host::settings::Clock::Fixed(
            granted_policy::model::Timestamp::parse("2026-11-25T12:00:00Z").expect("an instant"),
        ),
        ..Default::default()
    }
}

/// A demo server in this process (see [`demo`]); it stops when this is dropped.
pub struct Demo {
    /// Its base URL.
    pub base: String,
    _runtime: tokio::runtime::Runtime,
}

/// A server in this process on a new store with the demo state, [`fixed_settings`] and
/// `admin_token` as its admin token.
pub fn demo(admin_token: &str) -> Demo {
    let store = granted_host::testing::store().expect("store");
    let (base, runtime) = serve_in_process(store, fixed_settings(), admin_token, true);
    Demo {
        base,
        _runtime: runtime,
    }
}

/// A server in this process on `store`, on a free loopback port, with `admin_token` as its admin
/// token and, when `import_demo`, the demo state imported: its base URL and the runtime it runs
/// on (the server stops when the runtime is dropped).
pub fn serve_in_process(
    store: granted_host::store::Store,
    settings: granted_host::settings::ServerSettings,
    admin_token: &str,
    import_demo: bool,
) -> (String, tokio::runtime::Runtime) {
    let granted_host::settings::Clock::Fixed(now) = settings.clock else {
        panic!("in-process servers of the tests run on a fixed clock");
    };
    granted_host::admin_token::ensure_admin_token(&store, now, Some(admin_token))
        .expect("admin token");
    let guest = granted_host::guest::Guest::embedded().expect("module");
    let srv = granted_host::service::Service::new(guest, store, settings).expect("server");
    if import_demo {
        import_demo_state(&srv);
    }
    listen(srv)
}

/// Imports the demo state (`tests/demo/state.json`) into `service`.
pub fn import_demo_state(service: &granted_host::service::Service) {
    let text = std::fs::read_to_string("../tests/demo/state.json").expect("demo state");
    service
        .import(&granted_host::state::parse(&text).expect("demo state parses"))
        .expect("import");
}

/// Serves `service` on a free loopback port: its base URL and the runtime it runs on (the
/// server stops when the runtime is dropped).
pub fn listen(
    service: std::sync::Arc<granted_host::service::Service>,
) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(granted_host::http::serve(
        service,
        listener,
        std::future::pending(),
    ));
    (format!("http://{addr}"), runtime)
}

/// POSTs a form to `tenant`'s token endpoint at `base` with Basic credentials: status and JSON.
pub fn token(base: &str, tenant: &str, client: (&str, &str), form: &str) -> (u16, Value) {
    post(
        base,
        &format!("/tenants/{tenant}/connect/token"),
        &basic(client.0, client.1),
        form,
    )
    .expect("token endpoint answers")
}
