//! The `granted` command line: one module per subcommand, each a function that takes its parsed
//! arguments and returns the exit code.

mod admin_token;
mod audit;
mod export;
mod import;
mod keys;
mod preview;
mod report;
mod serve;
mod settings;
#[cfg(feature = "testing")]
mod testing;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use granted_host::guest::{Guest, GuestOptions};
use serde_json::{json, Value};
use settings::SettingFlags;
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
    /// Preview an app edit or creation: does it keep the password grant, for whom, for good?
    Preview(preview::PreviewArgs),
    /// Print the policy module's SHA-256 and ABI.
    Info,
    /// Serve the token endpoint.
    Serve(serve::ServeArgs),
    /// Load a VECTORS.md `state` file: one transaction, all or nothing, idempotent.
    Import(import::ImportArgs),
    /// Write the store as a `state` file, with no secret in clear.
    Export(export::ExportArgs),
    /// Server keys: rotate the signing key, rewrap under a new master key.
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
    /// Run every vector file of each directory through the policy module under wasmtime, or
    /// over HTTP (test builds only).
    #[cfg(feature = "testing")]
    Vectors(testing::VectorsArgs),
    /// A throwaway PostgreSQL server on loopback for `cargo xtask bench` (test builds only).
    #[cfg(feature = "testing")]
    #[command(name = "throwaway-postgres", hide = true)]
    ThrowawayPostgres {
        /// A database to make (letters, digits, `_`).
        #[arg(long = "database", value_name = "NAME")]
        databases: Vec<String>,
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
    /// Seal every server key under a new master key (`GRANTED_NEW_MASTER_KEY` or
    /// `--new-master-key-file`), in one transaction; keys in clear are sealed too.
    Rewrap(keys::RewrapArgs),
}

/// Parses the command line and runs the subcommand; an error is one line on standard error and
/// exit 2.
pub fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("granted: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let policy = cli.policy.as_deref();
    match cli.command {
        Command::Serve(args) => serve::run(policy, args),
        Command::Import(args) => import::run(policy, args),
        Command::Export(args) => export::run(policy, args),
        Command::Preview(args) => preview::run(policy, args),
        Command::Info => info(policy),
        Command::Audit {
            command: AuditCommand::Verify { settings },
        } => audit::verify(settings),
        Command::Keys {
            command: KeysCommand::Rotate { settings },
        } => keys::rotate(settings),
        Command::Keys {
            command: KeysCommand::Rewrap(args),
        } => keys::rewrap(args),
        Command::Report {
            command: ReportCommand::Sunset { settings, json },
        } => report::sunset(policy, settings, json),
        Command::AdminToken {
            command: AdminTokenCommand::Rotate { settings },
        } => admin_token::rotate(policy, settings),
        #[cfg(feature = "testing")]
        Command::Vectors(args) => testing::vectors(guest(policy, GuestOptions::default())?, args),
        #[cfg(feature = "testing")]
        Command::ThrowawayPostgres { databases } => testing::throwaway_postgres(&databases),
    }
}

/// The policy module: the file `--policy` names, else the one embedded in this binary.
fn guest(policy: Option<&Path>, options: GuestOptions) -> Result<Guest> {
    match policy {
        Some(path) => Guest::load_file(path, options),
        None => Guest::load(granted_host::guest::EMBEDDED_POLICY, options)
            .context("the embedded policy module"),
    }
}

/// The module's answer to `entry` for `input`: its `ok` value, or its refusal as an error.
fn call(guest: &Guest, entry: &str, input: &Value) -> Result<Value> {
    let out = guest.call(entry, &serde_json::to_vec(input)?)?;
    let mut envelope: Value = serde_json::from_slice(&out)
        .with_context(|| format!("`{entry}` answered something that is not JSON"))?;
    if let Some(err) = envelope.get("error") {
        bail!("`{entry}` refused: {err}");
    }
    envelope
        .get_mut("ok")
        .map(Value::take)
        .ok_or_else(|| anyhow!("`{entry}` answered neither `ok` nor `error`"))
}

/// `granted info`: the module's SHA-256, ABI and version.
fn info(policy: Option<&Path>) -> Result<ExitCode> {
    let guest = guest(policy, GuestOptions::default())?;
    let info = call(&guest, "info", &json!({}))?;
    println!("policy sha256: {}", guest.sha256());
    println!("abi version:   {}", info["abi_version"]);
    println!("version:       {}", info["version"].as_str().unwrap_or(""));
    Ok(ExitCode::SUCCESS)
}
