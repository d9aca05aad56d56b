//! `granted export`: the store as a `state` file with no secret in clear, or a snapshot (and,
//! separately, the keys) for the edge handler.

use super::settings::{open_existing_store, SettingFlags};
use anyhow::{Context, Result};
use granted_host::store::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `granted export`'s arguments.
#[derive(clap::Args)]
pub struct ExportArgs {
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
}

/// Writes the export asked for.
pub fn run(policy: Option<&Path>, args: ExportArgs) -> Result<ExitCode> {
    let resolved = args.settings.resolve()?;
    let store = open_existing_store(&resolved)?;
    if let Some(path) = &args.edge {
        let guest = super::guest(policy, Default::default())?;
        let now = granted_host::settings::now(&resolved.server)?;
        edge(
            &store,
            now,
            guest.sha256(),
            path,
            args.edge_secrets.as_deref(),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let state = granted_host::state::export(&store)?;
    let text = serde_json::to_string_pretty(&state)? + "\n";
    match args.out {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("could not write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The edge snapshot at `path`, and its keys in an owner-only file at `secrets`.
fn edge(
    store: &Store,
    now: granted_policy::model::Timestamp,
    policy_sha256: &str,
    path: &Path,
    secrets: Option<&Path>,
) -> Result<()> {
    let snapshot = granted_host::edge_snapshot::export_edge(store, now, policy_sha256)?;
    std::fs::write(path, serde_json::to_string_pretty(&snapshot)? + "\n")
        .with_context(|| format!("could not write {}", path.display()))?;
    eprintln!("granted: edge snapshot written to {}", path.display());
    if let Some(secrets) = secrets {
        let keys = granted_host::edge_snapshot::edge_secrets(store, now)?;
        write_private(secrets, &(serde_json::to_string_pretty(&keys)? + "\n"))?;
        eprintln!(
            "granted: edge secrets written to {} (owner-only; keep them in the platform's secret store)",
            secrets.display()
        );
    }
    Ok(())
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
