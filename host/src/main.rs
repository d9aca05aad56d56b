//! `granted`: the token server's command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use granted_host::guest::{Guest, GuestOptions};
use granted_host::runtime::Wasmtime;
use granted_vectors::driver::{call_ok, Settings};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: under load the server's threads (tokio's workers, the
/// group commit, the KDF pool) allocate and free across threads, and glibc's malloc, free and
/// consolidation were about 12% of the server's CPU per request (`perf`, client_credentials).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "granted",
    version,
    about = "Granted: the token service for retiring the OAuth 2.0 password grant"
)]
struct Cli {
    /// Load this policy module instead of the embedded one.
    #[arg(long, global = true, value_name = "FILE")]
    policy: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every vector file of each directory through the policy module under wasmtime.
    Vectors {
        /// PBKDF2 iterations for clear passwords in the vectors' state.
        #[arg(long, default_value_t = 1000)]
        iterations: u32,
        /// Run PBKDF2 inside the module instead of natively (the path of runtimes with no fast KDF).
        #[arg(long)]
        kdf_in_module: bool,
        /// Send every step the whole input (`token`) instead of one flow per request
        /// (`token_start`, then `token_resume` on the same instance, as the server does).
        #[arg(long)]
        stateless: bool,
        /// Over real HTTP: for each vector a fresh database with its state and a server on
        /// loopback with its `now` as the clock.
        #[arg(long, conflicts_with_all = ["stateless", "kdf_in_module", "iterations"])]
        http: bool,
        /// With `--http`: against the edge handler instead of `granted serve`, run by
        /// `node SERVE_MJS` (`www/edge/serve.mjs`) on the vector's state exported with
        /// `granted export --edge`; token vectors only (the edge has no admin API).
        #[arg(long, value_name = "SERVE_MJS", requires = "http")]
        edge: Option<PathBuf>,
        /// With `--http`: each vector's database on PostgreSQL, `--postgres=URL` (a new database per
        /// vector, dropped after; the user must be allowed to create databases). Without a
        /// URL: a throwaway server from Debian's postgresql package, started on loopback.
        #[arg(long, value_name = "URL", requires = "http", conflicts_with = "edge", num_args = 0..=1, require_equals = true, default_missing_value = "")]
        postgres: Option<String>,
        /// Directories of VECTORS.md files.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Preview an app edit or creation: does it keep the password grant, for whom, for good?
    Preview {
        /// The apps and tenants, in the VECTORS.md `state` format.
        #[arg(long, value_name = "STATE.json")]
        state: PathBuf,
        /// The proposed edit (`app_id` and the changed fields).
        #[arg(
            long,
            value_name = "EDIT.json",
            conflicts_with = "create",
            required_unless_present = "create"
        )]
        edit: Option<PathBuf>,
        /// The proposed new app.
        #[arg(long, value_name = "CREATE.json")]
        create: Option<PathBuf>,
        /// When the edit is made (RFC 3339); now when absent.
        #[arg(long)]
        now: Option<String>,
        /// The sunset instant (RFC 3339); 2021-06-18T00:00:00Z when absent.
        #[arg(long)]
        sunset: Option<String>,
        /// Print the module's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Print the policy module's SHA-256 and ABI.
    Info,
    /// Time one native PBKDF2-HMAC-SHA256 derivation, as the server's KDF threads run it
    /// (for `cargo xtask bench`: the physical limit of logins per second).
    #[command(name = "kdf-time", hide = true)]
    KdfTime {
        /// Iterations.
        #[arg(long, default_value_t = 600_000)]
        iterations: u32,
        /// Derivations timed; the median is printed, in milliseconds.
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
    /// A throwaway PostgreSQL server (Debian's package) on loopback, for `cargo xtask bench`:
    /// makes the named databases, prints one URL per line, and runs until standard input
    /// closes (then stops the server and removes its files).
    #[command(name = "throwaway-postgres", hide = true)]
    ThrowawayPostgres {
        /// A database to make (letters, digits, `_`).
        #[arg(long = "database", value_name = "NAME")]
        databases: Vec<String>,
    },
    /// Serve the token endpoint.
    Serve {
        #[command(flatten)]
        settings: SettingFlags,
        /// Judge every request at this instant instead of the clock (tests, demos).
        #[arg(long, hide = true)]
        fixed_now: Option<String>,
    },
    /// Load a VECTORS.md `state` file: one transaction, all or nothing, idempotent.
    Import {
        #[command(flatten)]
        settings: SettingFlags,
        /// The state file.
        file: PathBuf,
    },
    /// Write the store as a `state` file, with no secret in clear.
    Export {
        #[command(flatten)]
        settings: SettingFlags,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE", conflicts_with = "edge")]
        out: Option<PathBuf>,
        /// Write a snapshot for the edge handler (`www/edge/`) instead: the records as the
        /// policy module reads them, with hashed secrets only.
        #[arg(long, value_name = "FILE")]
        edge: Option<PathBuf>,
        /// With `--edge`: also write the keys the edge needs in its environment (signing keys,
        /// the client-secret key) to this file, readable by its owner only. Secret material:
        /// put it in the platform's secret store, never next to the snapshot.
        #[arg(long, value_name = "FILE", requires = "edge")]
        edge_secrets: Option<PathBuf>,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Reports for operators.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// The admin API's bearer token.
    #[command(name = "admin-token")]
    AdminToken {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Who still depends on the password grant: per app and tenant, the grant now, what an
    /// update would take away, password-grant tokens in the last 7 and 30 days, the last use.
    Sunset {
        #[command(flatten)]
        settings: SettingFlags,
        /// Print JSON (the admin API's `/reports/sunset`) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AdminTokenCommand {
    /// Make a new admin token, print it once, and retire the one in use (at once, also for a
    /// running server).
    Rotate {
        #[command(flatten)]
        settings: SettingFlags,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain; names the first entry that was altered or removed (exit 1).
    Verify {
        #[command(flatten)]
        settings: SettingFlags,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key; the old one verifies until its last token expires.
    Rotate {
        #[command(flatten)]
        settings: SettingFlags,
    },
}

/// Settings given as flags (they beat `GRANTED_*` variables, which beat `--config`).
#[derive(clap::Args)]
struct SettingFlags {
    /// A TOML file of settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The database: a SQLite file (created on first start), or a PostgreSQL URL
    /// (`postgres://user:password@host/db`) that several hosts share.
    #[arg(long, value_name = "FILE|URL")]
    db: Option<String>,
    /// Listen address.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// The server's base URL, as clients reach it.
    #[arg(long)]
    issuer: Option<String>,
    /// PBKDF2 iterations (default 600000).
    #[arg(long)]
    kdf_iterations: Option<u32>,
    /// The sunset instant (RFC 3339).
    #[arg(long)]
    sunset: Option<String>,
}

impl SettingFlags {
    fn resolve(&self) -> Result<granted_host::config::Resolved> {
        use granted_host::config::{self, Layer};
        let flags = Layer {
            db: self.db.clone(),
            listen: self.listen,
            issuer: self.issuer.clone(),
            kdf_iterations: self.kdf_iterations,
            sunset: self.sunset.clone(),
            ..Layer::default()
        };
        let file = match &self.config {
            Some(path) => config::from_file(path)?,
            None => Layer::default(),
        };
        config::resolve(&flags, &config::from_env()?, &file)
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("granted: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn guest(policy: Option<&Path>, options: GuestOptions) -> Result<Guest> {
    match policy {
        Some(path) => Guest::load_file(path, options),
        None => Guest::load(granted_host::guest::EMBEDDED_POLICY, options)
            .context("the embedded policy module"),
    }
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

fn serve(guest: Guest, resolved: granted_host::config::Resolved) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRANTED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let store = open_store(&resolved)?;
    let sha = guest.sha256().to_string();
    let from_env = std::env::var("GRANTED_ADMIN_TOKEN").ok();
    let first = granted_host::admin::ensure_admin_token(
        &store,
        granted_host::server::now(&resolved.server),
        from_env.as_deref(),
    )?;
    let server = granted_host::server::Server::new(guest, store, resolved.server.clone())?;
    match first {
        granted_host::admin::FirstToken::Made(token) => {
            // Shown once, on standard output, never in the log (standard error): only its hash
            // is stored.
            eprintln!(
                "granted: made the admin token; it is on standard output, shown only this once (keep it; `granted admin-token rotate` makes a new one)"
            );
            println!("admin token: {token}");
        }
        granted_host::admin::FirstToken::FromEnvironment => {
            eprintln!("granted: the admin token is the one in GRANTED_ADMIN_TOKEN");
        }
        granted_host::admin::FirstToken::Existing => {
            if from_env.is_some() {
                eprintln!("granted: GRANTED_ADMIN_TOKEN is read at first start only; the admin token in the database stays (`granted admin-token rotate` replaces it)");
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(resolved.listen)
            .await
            .with_context(|| format!("could not listen on {}", resolved.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(policy_sha256 = %sha, db = %resolved.db, "granted listening on http://{addr}");
        eprintln!("granted: listening on http://{addr} (policy {sha})");
        granted_host::server::serve(server, listener, shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The store `--db` names, created when new.
fn open_store(resolved: &granted_host::config::Resolved) -> Result<granted_host::store::Store> {
    granted_host::store::Store::at(&resolved.db, &resolved.pg)
}

/// The store `--db` names, which must exist already (a command that only reads it).
fn open_existing_store(
    resolved: &granted_host::config::Resolved,
) -> Result<granted_host::store::Store> {
    if let granted_host::store::Location::File(path) = &resolved.db {
        if !path.exists() {
            bail!("no database at {}", path.display());
        }
    }
    open_store(resolved)
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

/// The sunset report as a table for the terminal.
fn sunset_table(report: &Value) -> String {
    let mut rows = vec![[
        "app".to_string(),
        "status".into(),
        "tenant".into(),
        "pin".into(),
        "password now".into(),
        "after update".into(),
        "tokens 7 d".into(),
        "tokens 30 d".into(),
        "last use".into(),
    ]];
    let yes_no = |v: &Value| if *v == true { "yes" } else { "no" }.to_string();
    for app in report["apps"].as_array().into_iter().flatten() {
        let tenants = app["tenants"].as_array().cloned().unwrap_or_default();
        let status = app["status"].as_str().unwrap_or_default().to_string();
        if tenants.is_empty() {
            rows.push([
                app["app_id"].as_str().unwrap_or_default().to_string(),
                status.clone(),
                "(no installs)".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for t in tenants {
            let after = if t["update_takes_away_password"] == true {
                "LOSES it".to_string()
            } else {
                yes_no(&t["password_after_update"])
            };
            rows.push([
                app["app_id"].as_str().unwrap_or_default().to_string(),
                status.clone(),
                t["tenant"].as_str().unwrap_or_default().to_string(),
                format!("{}/{}", t["pinned_rev"], app["latest_rev"]),
                yes_no(&t["password_now"]),
                after,
                t["password_tokens_7_days"].to_string(),
                t["password_tokens_30_days"].to_string(),
                t["last_password_use"].as_str().unwrap_or("-").to_string(),
            ]);
        }
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "\npassword-grant tokens: {} in the last 7 days, {} in the last 30 days (audit log since {})\n",
        report["password_tokens_7_days"],
        report["password_tokens_30_days"],
        report["audit_log_since"].as_str().unwrap_or("-")
    ));
    out
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("could not write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn run(cli: Cli) -> Result<ExitCode> {
    let mut options = GuestOptions {
        cache_dir: match cli.command {
            Command::Serve { .. } => cache_dir(),
            _ => None,
        },
        ..GuestOptions::default()
    };
    if let Command::Serve { settings, .. } = &cli.command {
        // A password request holds its instance while it waits for the KDF: room for every
        // login that may wait, and as many again for everything else.
        let server = settings.resolve()?.server;
        let logins = server.login_queue + server.kdf_threads;
        options.max_instances = options.max_instances.max(logins.saturating_mul(2) as u32);
    }
    let guest = guest(cli.policy.as_deref(), options)?;
    match cli.command {
        Command::Serve {
            settings,
            fixed_now,
        } => {
            let mut resolved = settings.resolve()?;
            if let Some(text) = fixed_now {
                resolved.server.fixed_now = Some(
                    granted_policy::model::Timestamp::parse(&text)
                        .with_context(|| format!("`{text}` is not an RFC 3339 instant"))?,
                );
            }
            serve(guest, resolved)
        }
        Command::Import { settings, file } => {
            let resolved = settings.resolve()?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("could not read {}", file.display()))?;
            let state = granted_host::state::parse(&text)
                .with_context(|| format!("{} was refused; nothing was written", file.display()))?;
            let store = open_store(&resolved)?;
            let server =
                granted_host::server::Server::new(guest, store.clone(), resolved.server.clone())?;
            let imported = server.import(&state)?;
            eprintln!(
                "imported {} apps and {} tenants into {} ({} passwords hashed)",
                state.apps.len(),
                state.tenants.len(),
                resolved.db,
                imported.hashed
            );
            if !imported.unverifiable.is_empty() {
                eprintln!(
                    "warning: {} users have a password hash this server cannot verify (not PBKDF2); they keep it, and cannot sign in with a password until it is set again: {}",
                    imported.unverifiable.len(),
                    imported.unverifiable.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export {
            settings,
            out,
            edge,
            edge_secrets,
        } => {
            let resolved = settings.resolve()?;
            let store = open_existing_store(&resolved)?;
            if let Some(path) = edge {
                let now = granted_host::server::now(&resolved.server);
                let snapshot = granted_host::state::export_edge(&store, now, guest.sha256())?;
                std::fs::write(&path, serde_json::to_string_pretty(&snapshot)? + "\n")
                    .with_context(|| format!("could not write {}", path.display()))?;
                eprintln!("granted: edge snapshot written to {}", path.display());
                if let Some(secrets) = edge_secrets {
                    let keys = granted_host::state::edge_secrets(&store, now)?;
                    write_private(&secrets, &(serde_json::to_string_pretty(&keys)? + "\n"))?;
                    eprintln!(
                        "granted: edge secrets written to {} (owner-only; keep them in the platform's secret store)",
                        secrets.display()
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let state = granted_host::state::export(&store)?;
            let text = serde_json::to_string_pretty(&state)? + "\n";
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("could not write {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { settings },
        } => {
            let resolved = settings.resolve()?;
            let store = open_existing_store(&resolved)?;
            match store.verify_audit()? {
                (count, None) => {
                    println!("audit log: {count} entries, the chain is intact");
                    Ok(ExitCode::SUCCESS)
                }
                (_, Some(broken)) => {
                    println!(
                        "audit log: BROKEN at entry {}: {}; entries before it check out",
                        broken.seq, broken.why
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Keys {
            command: KeysCommand::Rotate { settings },
        } => {
            let resolved = settings.resolve()?;
            let store = open_store(&resolved)?;
            let now = granted_policy::model::Timestamp::parse(
                &time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)?,
            )
            .context("the clock")?;
            store.ensure_keys(now, || granted_host::state::random_base64(32))?;
            // The old key verifies until the last access token it signed expires.
            let until = now.plus_seconds(i64::from(resolved.server.access_token_ttl));
            let key = store.rotate_signing_key(
                now,
                until,
                &granted_host::state::random_base64(32)?,
                &granted_host::state::random_base64(9)?,
            )?;
            println!(
                "new signing key {}; the previous one verifies until {until}",
                key.kid
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            command: ReportCommand::Sunset { settings, json },
        } => {
            let resolved = settings.resolve()?;
            let store = open_store(&resolved)?;
            let report = granted_host::admin::sunset_report(
                &store,
                &guest,
                granted_host::server::now(&resolved.server),
                resolved.server.sunset,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", sunset_table(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::AdminToken {
            command: AdminTokenCommand::Rotate { settings },
        } => {
            let resolved = settings.resolve()?;
            let store = open_store(&resolved)?;
            let token = granted_host::admin::new_admin_token()?;
            let audit = granted_host::store::AdminAudit {
                actor: "cli".into(),
                source: "local".into(),
                policy_sha256: guest.sha256().to_string(),
                now: granted_host::server::now(&resolved.server),
            };
            let id = store
                .rotate_admin_token(&granted_host::admin::admin_token_sha256(&token), &audit)?;
            eprintln!("granted: new admin token {id}; every earlier one is retired. Shown only this once:");
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::ThrowawayPostgres { databases } => {
            let cluster = granted_host::testing::Cluster::new()?;
            cluster.start()?;
            let admin = granted_host::store::PgServer::connect(&cluster.url())?;
            for name in &databases {
                println!("{}", admin.create(name)?);
            }
            use std::io::Write as _;
            std::io::stdout().flush()?;
            std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
            drop(admin);
            drop(cluster);
            Ok(ExitCode::SUCCESS)
        }
        Command::KdfTime { iterations, runs } => {
            let mut times: Vec<f64> = (0..runs.max(1))
                .map(|i| {
                    let started = std::time::Instant::now();
                    let derived = granted_policy::credentials::kdf::derive(
                        granted_policy::credentials::kdf::KdfAlgorithm::Pbkdf2Sha256,
                        format!("password {i}").as_bytes(),
                        b"granted-bench-salt",
                        iterations,
                        32,
                    );
                    std::hint::black_box(derived);
                    started.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!("{:.2}", times[times.len() / 2]);
            Ok(ExitCode::SUCCESS)
        }
        Command::Info => {
            let runtime = Wasmtime::new(guest);
            let info = call_ok(&runtime, "info", &json!({}))?;
            println!("policy sha256: {}", runtime.guest().sha256());
            println!("abi version:   {}", info["abi_version"]);
            println!("version:       {}", info["version"].as_str().unwrap_or(""));
            Ok(ExitCode::SUCCESS)
        }
        Command::Vectors {
            iterations,
            kdf_in_module,
            stateless,
            http,
            edge,
            postgres,
            dirs,
        } => {
            if http {
                eprintln!("policy sha256: {}", guest.sha256());
                let guest = std::sync::Arc::new(guest);
                let pg = match postgres.as_deref() {
                    None => None,
                    Some(url) => {
                        let url = if url.is_empty() {
                            granted_host::testing::server_url()?
                        } else {
                            url.to_string()
                        };
                        Some(std::sync::Arc::new(granted_host::store::PgServer::connect(
                            &url,
                        )?))
                    }
                };
                let mut failed = 0;
                for dir in &dirs {
                    let target = match &edge {
                        Some(serve) => {
                            println!("# {} (over HTTP, the edge handler)", dir.display());
                            granted_host::http_vectors::Target::Edge(serve.clone())
                        }
                        None => match &pg {
                            Some(pg) => {
                                println!("# {} (over HTTP, on PostgreSQL)", dir.display());
                                granted_host::http_vectors::Target::HostOnPostgres(pg.clone())
                            }
                            None => {
                                println!("# {} (over HTTP)", dir.display());
                                granted_host::http_vectors::Target::Host
                            }
                        },
                    };
                    failed += granted_host::http_vectors::run_dir(
                        guest.clone(),
                        dir,
                        &target,
                        &mut std::io::stdout(),
                    )?
                    .failed;
                }
                return Ok(if failed > 0 {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                });
            }
            eprintln!("policy sha256: {}", guest.sha256());
            let runtime = Wasmtime::new(guest);
            let settings = Settings {
                iterations,
                kdf_in_module,
                flow: !stateless,
            };
            let mut failed = 0;
            for dir in &dirs {
                println!("# {}", dir.display());
                failed +=
                    granted_vectors::run_dir(&runtime, dir, &settings, &mut std::io::stdout())?
                        .failed;
            }
            Ok(if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Preview {
            state,
            edit,
            create,
            now,
            sunset,
            json,
        } => {
            let state = read_json(&state)?;
            let now = match now {
                Some(n) => n,
                None => time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .context("formatting the clock")?,
            };
            let mut input = json!({"state": state, "now": now});
            if let Some(s) = sunset {
                input["sunset"] = json!(s);
            }
            let app_id = match (&edit, &create) {
                (Some(path), _) => {
                    input["edit"] = read_json(path)?;
                    input["edit"]["app_id"].as_str().unwrap_or("").to_string()
                }
                (None, Some(path)) => {
                    input["create"] = read_json(path)?;
                    input["create"]["app_id"].as_str().unwrap_or("").to_string()
                }
                (None, None) => bail!("give `--edit` or `--create`"),
            };
            let runtime = Wasmtime::new(guest);
            let preview = call_ok(&runtime, "preview", &input)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&preview)?);
            } else {
                print!("{}", granted_host::preview::render(&preview, &app_id));
            }
            // Exit 3 on a rejected edit, so that a review pipeline can stop on it.
            Ok(if preview["accepted"].as_bool() == Some(true) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}
