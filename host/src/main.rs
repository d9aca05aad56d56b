//! `granted`: the token server's command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use granted_host::guest::{Guest, GuestOptions};
use granted_host::runtime::Wasmtime;
use granted_vectors::driver::{call_ok, Settings};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

fn guest(policy: Option<&Path>) -> Result<Guest> {
    match policy {
        Some(path) => Guest::load_file(path, GuestOptions::default()),
        None => Guest::embedded().context("the embedded policy module"),
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn run(cli: Cli) -> Result<ExitCode> {
    let guest = guest(cli.policy.as_deref())?;
    match cli.command {
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
            dirs,
        } => {
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
