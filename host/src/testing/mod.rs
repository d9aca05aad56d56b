//! A throwaway PostgreSQL server for tests and benchmarks: Debian's `postgresql` package, started
//! once per process on loopback in a fresh data directory, with one new database per caller.
//!
//! `GRANTED_TEST_POSTGRES=postgres://…` uses a server that is already running instead (its user
//! must be allowed to create databases; the databases made there, `granted_<pid>_<n>`, stay
//! behind for whoever runs the tests to drop). Nothing here skips: when no server can be had, the
//! error says why, and the test that asked fails with it.
//!
//! All of `testing` is test machinery, built only with the `testing` feature (tests and xtask
//! turn it on): the release binary has no `initdb`, no user switching, no vector runner.

mod http_admin;
mod http_client;
mod http_code;
mod http_edge;
pub mod http_vectors;
mod vector_server;
pub mod wasmtime_runner;

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::store::{PgOptions, PgServer, Store};

/// The server this process uses: the URL of its `postgres` database, for an administrator.
fn server() -> Result<&'static str> {
    static SERVER: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| match std::env::var("GRANTED_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => Ok(url),
            _ => start().map_err(|e| format!("{e:#}")),
        })
        .as_deref()
        .map_err(|e| anyhow!("no PostgreSQL server for the tests: {e}"))
}

/// A new, empty database on the test server: its URL.
pub fn fresh_database() -> Result<String> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static ADMIN: OnceLock<std::result::Result<PgServer, String>> = OnceLock::new();
    let admin = ADMIN
        .get_or_init(|| {
            server()
                .and_then(PgServer::connect)
                .map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| anyhow!("{e}"))?;
    admin.create(&format!(
        "granted_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A store on a new, empty database of the test server.
pub fn postgres_store() -> Result<Store> {
    Store::connect(&fresh_database()?, PgOptions::default())
}

/// The URL of the test server's `postgres` database, for an administrator (`granted vectors
/// --http --postgres` with no URL): the one in `GRANTED_TEST_POSTGRES`, or a throwaway server
/// started now.
pub fn server_url() -> Result<String> {
    server().map(str::to_string)
}

/// The directory of Debian's PostgreSQL server programs (`initdb`, `postgres`): `GRANTED_PG_BIN`,
/// else the newest `/usr/lib/postgresql/*/bin` that has them.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("GRANTED_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!(
            "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb): \
             `apt-get install postgresql` (`cargo xtask test` does), or set GRANTED_TEST_POSTGRES \
             to a server's URL"
        )
    })
}

/// The user the server runs as: `postgres` when this process is root (initdb refuses root),
/// else this process's own.
fn server_user() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: `name` is a valid C string; the returned record is read at once, before any
    // other call that could reuse its storage.
    let record = unsafe { libc::getpwnam(name.as_ptr()) };
    if record.is_null() {
        bail!("running as root, and there is no `postgres` user to run the server as (Debian's postgresql package makes it)");
    }
    // SAFETY: non-null, from getpwnam just above.
    let (uid, gid) = unsafe { ((*record).pw_uid, (*record).pw_gid) };
    Ok(Some((uid, gid)))
}

/// Removes the data directories of earlier test servers whose process is gone.
fn remove_stale(tmp: &Path) {
    for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("granted-pg-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `command` set to run as `user`, and to be told to stop (SIGINT: a fast shutdown) when the
/// thread that started it ends.
fn as_user(mut command: Command, user: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Makes a data directory and starts a server on it, for the rest of the process; the URL of
/// its `postgres` database.
fn start() -> Result<String> {
    let cluster = Cluster::new()?;
    cluster.start()?;
    let url = cluster.url();
    // Kept running until the process ends (its data directory goes with the next run).
    std::mem::forget(cluster);
    Ok(url)
}

/// A throwaway PostgreSQL server of this process's own, which a test may stop and start again
/// (to see hosts ride out a database restart). Stopped when dropped, and when the process ends.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    pid: std::sync::Mutex<Option<u32>>,
    /// With TLS: its certificate and key (self-signed, for `localhost` and 127.0.0.1).
    tls: Option<(PathBuf, PathBuf)>,
}

static CLUSTERS: AtomicU64 = AtomicU64::new(0);

impl Cluster {
    /// A new data directory (initdb), on a free port; not started.
    pub fn new() -> Result<Cluster> {
        let bin = bin_dir()?;
        let user = server_user()?;
        let tmp = std::env::temp_dir();
        remove_stale(&tmp);
        let dir = tmp.join(format!(
            "granted-pg-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the postgres user", dir.display()))?;
        }
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = as_user(initdb, user)
            .output()
            .with_context(|| format!("running {}", bin.join("initdb").display()))?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Cluster {
            bin,
            dir,
            data,
            port: free_port()?,
            user,
            pid: std::sync::Mutex::new(None),
            tls: None,
        })
    }

    /// Turns TLS on for the next start: a new certificate authority, and a server certificate
    /// it signs for `localhost` and 127.0.0.1 (made by Debian's `openssl`). The authority's
    /// certificate's path, which a client trusts.
    pub fn enable_tls(&mut self) -> Result<PathBuf> {
        let file = |name: &str| self.dir.join(name);
        let (ca, ca_key) = (file("ca.crt"), file("ca.key"));
        let (cert, key, csr, ext) = (
            file("server.crt"),
            file("server.key"),
            file("server.csr"),
            file("server.ext"),
        );
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )?;
        let openssl = |args: &[&std::ffi::OsStr]| -> Result<()> {
            let out = Command::new("openssl")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .context("running openssl (Debian's openssl package)")?;
            if !out.status.success() {
                bail!(
                    "openssl failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(())
        };
        let os = |s: &'static str| std::ffi::OsStr::new(s);
        openssl(&[
            os("req"),
            os("-x509"),
            os("-newkey"),
            os("rsa:2048"),
            os("-nodes"),
            os("-days"),
            os("2"),
            os("-subj"),
            os("/CN=granted test CA"),
            os("-keyout"),
            ca_key.as_os_str(),
            os("-out"),
            ca.as_os_str(),
        ])?;
        openssl(&[
            os("req"),
            os("-newkey"),
            os("rsa:2048"),
            os("-nodes"),
            os("-subj"),
            os("/CN=localhost"),
            os("-keyout"),
            key.as_os_str(),
            os("-out"),
            csr.as_os_str(),
        ])?;
        openssl(&[
            os("x509"),
            os("-req"),
            os("-in"),
            csr.as_os_str(),
            os("-CA"),
            ca.as_os_str(),
            os("-CAkey"),
            ca_key.as_os_str(),
            os("-CAcreateserial"),
            os("-days"),
            os("2"),
            os("-extfile"),
            ext.as_os_str(),
            os("-out"),
            cert.as_os_str(),
        ])?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(&key, Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&cert, Some(uid), Some(gid))?;
        }
        self.tls = Some((cert, key));
        Ok(ca)
    }

    /// The URL of its `postgres` database, for an administrator.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it takes connections.
    pub fn start(&self) -> Result<()> {
        let log = self.dir.join("server.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid))?;
        }
        let mut postgres = Command::new(self.bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                // A test database is thrown away: nothing is worth an fsync.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Some((cert, key)) = &self.tls {
            postgres
                .args(["-c", "ssl=on", "-c"])
                .arg(format!("ssl_cert_file={}", cert.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()));
        }
        let mut postgres = as_user(postgres, self.user);
        // Started from a thread that never ends: the server gets its signal when the process
        // ends, not when the test that happened to start it does.
        let (started, child) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("test-postgres".into())
            .spawn(move || {
                let child = postgres.spawn();
                let ok = child.is_ok();
                let _ = started.send(child.map(|c| c.id()));
                if ok {
                    loop {
                        std::thread::park();
                    }
                }
            })?;
        let pid = child
            .recv()?
            .with_context(|| format!("starting {}", self.bin.join("postgres").display()))?;
        *self.pid.lock().unwrap_or_else(|p| p.into_inner()) = Some(pid);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match postgres::Client::connect(&self.url(), postgres::NoTls) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    if !alive(pid) || Instant::now() > deadline {
                        let log = std::fs::read_to_string(&log).unwrap_or_default();
                        bail!(
                            "the PostgreSQL server did not start ({e}); its log:\n{}",
                            log.trim()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Stops the server (a fast shutdown: sessions are cut) and waits until it is gone.
    pub fn stop(&self) -> Result<()> {
        let Some(pid) = self.pid.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        // SAFETY: kill has no memory effects; `pid` is the server this cluster started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(pid) {
            if Instant::now() > deadline {
                bail!("the PostgreSQL server {pid} did not stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether process `pid` is running (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The store an integration test runs on: in memory (SQLite), or with
/// `GRANTED_TEST_STORE=postgres` a new database on the test server, so that the same tests
/// cover both backends (`cargo xtask test` runs them both ways).
pub fn store() -> Result<Store> {
    match std::env::var("GRANTED_TEST_STORE").as_deref() {
        Ok("postgres") => postgres_store(),
        Ok("sqlite") | Err(std::env::VarError::NotPresent) => Store::in_memory(),
        Ok(other) => bail!("GRANTED_TEST_STORE is `{other}`: `sqlite` or `postgres`"),
        Err(e) => bail!("GRANTED_TEST_STORE: {e}"),
    }
}
