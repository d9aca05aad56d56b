//! `granted serve`: the token server, until SIGTERM or Ctrl-C.

use super::settings::{open_store, SettingFlags};
use anyhow::{Context, Result};
use granted_host::admin_token::{ensure_admin_token, FirstToken};
use granted_host::config::Resolved;
use granted_host::guest::GuestOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `granted serve`'s arguments.
#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    settings: SettingFlags,
    /// Judge every request at this instant instead of the clock (test builds only).
    #[cfg(feature = "testing")]
    #[arg(long, hide = true)]
    fixed_now: Option<String>,
}

/// Serves until SIGTERM or Ctrl-C; requests in flight finish first.
pub fn run(policy: Option<&Path>, args: ServeArgs) -> Result<ExitCode> {
    #[allow(unused_mut)] // a test build may fix the clock
    let mut resolved = args.settings.resolve()?;
    #[cfg(feature = "testing")]
    if let Some(text) = &args.fixed_now {
        resolved.server.clock = granted_host::settings::Clock::Fixed(
            granted_policy::model::Timestamp::parse(text)
                .with_context(|| format!("`{text}` is not an RFC 3339 instant"))?,
        );
    }
    // A password request holds its instance while it waits for the KDF: room for every login
    // that may wait, and as many again for everything else.
    let defaults = GuestOptions::default();
    let logins = resolved.server.login_queue + resolved.server.kdf_threads;
    let options = GuestOptions {
        cache_dir: cache_dir(),
        max_instances: defaults.max_instances.max(logins.saturating_mul(2) as u32),
        ..defaults
    };
    let guest = super::guest(policy, options)?;
    init_logging();
    let store = open_store(&resolved)?;
    if store.master_key().is_none() {
        tracing::warn!(
            db = %resolved.db,
            "no master key: the signing and client-secret keys are stored in clear, and whoever reads the database can mint tokens (set GRANTED_MASTER_KEY or --master-key-file)"
        );
    }
    let sealed = store.master_key().map(|key| key.id().to_string());
    let sha = guest.sha256().to_string();
    let from_env = std::env::var("GRANTED_ADMIN_TOKEN").ok();
    let first = ensure_admin_token(
        &store,
        granted_host::settings::now(&resolved.server)?,
        from_env.as_deref(),
    )?;
    let server = granted_host::service::Service::new(guest, store, resolved.server.clone())?;
    announce_admin_token(first, from_env.is_some());
    listen(server, &resolved, &sha, sealed.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRANTED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Says where the admin token came from; a new one is shown once, on standard output, never in
/// the log (standard error): only its hash is stored.
fn announce_admin_token(first: FirstToken, in_environment: bool) {
    match first {
        FirstToken::Made(token) => {
            eprintln!(
                "granted: made the admin token; it is on standard output, shown only this once (keep it; `granted admin-token rotate` makes a new one)"
            );
            println!("admin token: {token}");
        }
        FirstToken::FromEnvironment => {
            eprintln!("granted: the admin token is the one in GRANTED_ADMIN_TOKEN");
        }
        FirstToken::Existing => {
            if in_environment {
                eprintln!("granted: GRANTED_ADMIN_TOKEN is read at first start only; the admin token in the database stays (`granted admin-token rotate` replaces it)");
            }
        }
    }
}

/// Binds the listen address and serves on the async runtime until shutdown. `sealed`: the id
/// of the master key the server keys are sealed under, if any.
fn listen(
    server: std::sync::Arc<granted_host::service::Service>,
    resolved: &Resolved,
    sha: &str,
    sealed: Option<&str>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (listen, db) = (resolved.listen, resolved.db.clone());
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("could not listen on {listen}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(policy_sha256 = %sha, db = %db, "granted listening on http://{addr}");
        eprintln!("granted: listening on http://{addr} (policy {sha})");
        match sealed {
            Some(id) => eprintln!("granted: the server keys are sealed under master key {id}"),
            None => eprintln!(
                "granted: WARNING: no master key: the signing and client-secret keys are stored in clear in {db}; whoever reads it can mint tokens (set GRANTED_MASTER_KEY or --master-key-file)"
            ),
        }
        granted_host::http::serve(server, listener, shutdown_signal()).await
    })
}

/// Where `granted serve` keeps the compiled module: `GRANTED_CACHE_DIR`, else the user's cache.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("GRANTED_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("granted"))
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
