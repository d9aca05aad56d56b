//! The settings flags every subcommand that opens a database shares, layered over `GRANTED_*`
//! variables and the TOML file of `--config`.

use anyhow::{bail, Result};
use granted_host::config::{self, Layer, Resolved};
use granted_host::store::{Location, Store};
use std::path::PathBuf;

/// Settings given as flags (they beat `GRANTED_*` variables, which beat `--config`).
#[derive(clap::Args)]
pub struct SettingFlags {
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
    /// A file holding the master key that seals the server keys in the database (32 bytes in
    /// standard base64; the file readable by its owner only). Else `GRANTED_MASTER_KEY`.
    #[arg(long, value_name = "FILE")]
    master_key_file: Option<PathBuf>,
}

impl SettingFlags {
    /// The settings in force: these flags, then the environment, then the file, then defaults.
    pub fn resolve(&self) -> Result<Resolved> {
        let flags = Layer {
            db: self.db.clone(),
            listen: self.listen,
            issuer: self.issuer.clone(),
            kdf_iterations: self.kdf_iterations,
            sunset: self.sunset.clone(),
            master_key_file: self.master_key_file.clone(),
            ..Layer::default()
        };
        let file = match &self.config {
            Some(path) => config::from_file(path)?,
            None => Layer::default(),
        };
        config::resolve(&flags, &config::from_env()?, &file)
    }
}

/// The store `--db` names, created when new, with the master key when there is one: its sealed
/// keys must open under it, and keys still stored in clear are sealed now.
pub fn open_store(resolved: &Resolved) -> Result<Store> {
    let store = Store::at(&resolved.db, &resolved.pg)?;
    let Some(master) = &resolved.master_key else {
        return Ok(store);
    };
    let (store, done) = store.with_master_key(master.clone())?;
    if done.sealed_from_clear > 0 {
        tracing::info!(
            keys = done.sealed_from_clear,
            "sealed the server keys that were stored in clear"
        );
        eprintln!(
            "granted: sealed {} server keys and identity-provider secrets that were stored in clear under the master key",
            done.sealed_from_clear
        );
    }
    Ok(store)
}

/// The store `--db` names, which must exist already (a command that only reads it).
pub fn open_existing_store(resolved: &Resolved) -> Result<Store> {
    must_exist(resolved)?;
    open_store(resolved)
}

/// The store `--db` names, which must exist already, its keys left as they are (`keys
/// rewrap`, which opens them itself).
pub fn open_existing_store_as_is(resolved: &Resolved) -> Result<Store> {
    must_exist(resolved)?;
    Store::at(&resolved.db, &resolved.pg)
}

fn must_exist(resolved: &Resolved) -> Result<()> {
    if let Location::File(path) = &resolved.db {
        if !path.exists() {
            bail!("no database at {}", path.display());
        }
    }
    Ok(())
}
