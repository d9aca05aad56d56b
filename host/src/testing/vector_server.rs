//! The server `granted vectors --http` starts for one vector: the vector's state in a fresh
//! database (a temporary SQLite file or a new PostgreSQL database, removed after), its `now` as
//! the clock, served in-process on a free loopback port.

use crate::guest::Guest;
use crate::service::Service;
use crate::settings::ServerSettings;
use crate::store::{PgOptions, PgServer, Store};
use anyhow::{anyhow, Context, Result};
use granted_policy::model::Timestamp;
use granted_vectors::format::Vector;
use std::sync::Arc;

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
