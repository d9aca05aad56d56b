//! Subcommands of test builds only (`--features testing`): the vector runners and a throwaway
//! PostgreSQL server for the bench. The release binary has none of them.

use anyhow::Result;
use granted_host::guest::Guest;
use granted_host::testing::http_vectors::{self, Target};
use granted_host::testing::wasmtime_runner::Wasmtime;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `granted vectors`'s arguments.
#[derive(clap::Args)]
pub struct VectorsArgs {
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
}

/// Every vector of each directory: through the module, or over HTTP; exit 1 on any failure.
pub fn vectors(guest: Guest, args: VectorsArgs) -> Result<ExitCode> {
    eprintln!("policy sha256: {}", guest.sha256());
    let failed = if args.http {
        over_http(guest, &args)?
    } else {
        through_module(guest, &args)?
    };
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn through_module(guest: Guest, args: &VectorsArgs) -> Result<usize> {
    let runtime = Wasmtime::new(guest);
    let settings = granted_vectors::driver::Settings {
        iterations: args.iterations,
        kdf_in_module: args.kdf_in_module,
        flow: !args.stateless,
    };
    let mut failed = 0;
    for dir in &args.dirs {
        println!("# {}", dir.display());
        failed +=
            granted_vectors::run_dir(&runtime, dir, &settings, &mut std::io::stdout())?.failed;
    }
    Ok(failed)
}

fn over_http(guest: Guest, args: &VectorsArgs) -> Result<usize> {
    let guest = Arc::new(guest);
    let pg = match args.postgres.as_deref() {
        None => None,
        Some(url) => {
            let url = if url.is_empty() {
                granted_host::testing::server_url()?
            } else {
                url.to_string()
            };
            Some(Arc::new(granted_host::store::PgServer::connect(&url)?))
        }
    };
    let mut failed = 0;
    for dir in &args.dirs {
        let target = match (&args.edge, &pg) {
            (Some(serve), _) => {
                println!("# {} (over HTTP, the edge handler)", dir.display());
                Target::Edge(serve.clone())
            }
            (None, Some(pg)) => {
                println!("# {} (over HTTP, on PostgreSQL)", dir.display());
                Target::HostOnPostgres(pg.clone())
            }
            (None, None) => {
                println!("# {} (over HTTP)", dir.display());
                Target::Host
            }
        };
        failed +=
            http_vectors::run_dir(guest.clone(), dir, &target, &mut std::io::stdout())?.failed;
    }
    Ok(failed)
}

/// A throwaway PostgreSQL server (Debian's package) on loopback, for `cargo xtask bench`:
/// makes the named databases, prints one URL per line, and runs until standard input closes
/// (then stops the server and removes its files).
pub fn throwaway_postgres(databases: &[String]) -> Result<ExitCode> {
    let cluster = granted_host::testing::Cluster::new()?;
    cluster.start()?;
    let admin = granted_host::store::PgServer::connect(&cluster.url())?;
    for name in databases {
        println!("{}", admin.create(name)?);
    }
    use std::io::Write as _;
    std::io::stdout().flush()?;
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    drop(admin);
    drop(cluster);
    Ok(ExitCode::SUCCESS)
}
