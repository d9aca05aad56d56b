//! `granted import`: a VECTORS.md `state` file into the store, all or nothing.

use super::settings::{open_store, SettingFlags};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `granted import`'s arguments.
#[derive(clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    settings: SettingFlags,
    /// The state file.
    file: PathBuf,
}

/// Loads the file in one transaction; says how many passwords were hashed and which users keep
/// a hash this server cannot verify.
pub fn run(policy: Option<&Path>, args: ImportArgs) -> Result<ExitCode> {
    let ImportArgs { settings, file } = args;
    let resolved = settings.resolve()?;
    let guest = super::guest(policy, Default::default())?;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("could not read {}", file.display()))?;
    let state = granted_host::state::parse(&text)
        .with_context(|| format!("{} was refused; nothing was written", file.display()))?;
    let store = open_store(&resolved)?;
    let server =
        granted_host::service::Service::new(guest, store.clone(), resolved.server.clone())?;
    let imported = server.import(&state)?;
    // The import is durable already (in SQLite's write-ahead log); this puts it in the database
    // file itself, so that a copy of the file alone holds it.
    if !store.checkpoint()? {
        eprintln!(
            "note: another process is reading {}: part of the import stays in its write-ahead log (`-wal`) until a later checkpoint; copy the database with its `-wal` file until then",
            resolved.db
        );
    }
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
