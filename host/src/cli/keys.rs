//! `granted keys rotate`: a new signing key, published at once and signing after the publication
//! delay; the previous one verifies until its last access token expires. `granted keys rewrap`: every server key sealed under a new master key.

use super::settings::{open_existing_store_as_is, open_store, SettingFlags};
use anyhow::{Context, Result};
use granted_host::random::random_base64;
use granted_policy::model::Timestamp;
use granted_policy::token::jwt::SigningAlg;
use std::path::PathBuf;
use std::process::ExitCode;

/// `granted keys rewrap`'s arguments.
#[derive(clap::Args)]
pub struct RewrapArgs {
    #[command(flatten)]
    settings: SettingFlags,
    /// A file holding the new master key (32 bytes in standard base64; the file readable by
    /// its owner only). Else `GRANTED_NEW_MASTER_KEY`.
    #[arg(long, value_name = "FILE")]
    new_master_key_file: Option<PathBuf>,
}

/// Adds a new signing key of the configured algorithm (`signing_alg`): published at once (a
/// running server's JWKS lists it within a second), signing after `key_publish_seconds`; the
/// keys it replaces verify until their last access token expires.
pub fn rotate(settings: SettingFlags) -> Result<ExitCode> {
    let resolved = settings.resolve()?;
    let store = open_store(&resolved)?;
    let now = Timestamp::parse(
        &time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)?
            .format(&time::format_description::well_known::Rfc3339)?,
    )
    .context("the clock")?;
    let server = &resolved.server;
    store.ensure_keys(now, server.signing_alg, || random_base64(32))?;
    let sign_from = now.plus_seconds(i64::from(server.key_publish_seconds));
    let until = verify_until(sign_from, server.access_token_ttl);
    let secret = match server.signing_alg {
        SigningAlg::HS256 => zeroize::Zeroizing::new(random_base64(32)?),
        alg => granted_host::signing::generate(alg)?,
    };
    let key = store.rotate_signing_key(
        now,
        sign_from,
        until,
        server.signing_alg,
        &secret,
        &random_base64(9)?,
    )?;
    println!(
        "new signing key {} ({}), published now, signing from {sign_from}; the keys it replaces verify until {until}",
        key.kid,
        key.alg.name()
    );
    Ok(ExitCode::SUCCESS)
}

/// When keys replaced by one that signs from `sign_from` stop verifying: the last token they
/// may sign expires `access_token_ttl` later, and a minute covers servers that read the keys
/// up to a second late and clocks a little apart.
pub fn verify_until(sign_from: Timestamp, access_token_ttl: u32) -> Timestamp {
    sign_from.plus_seconds(i64::from(access_token_ttl) + 60)
}

/// Seals every server key under the new master key, in one transaction: keys sealed under the
/// current one (`GRANTED_MASTER_KEY` or `--master-key-file`) are opened and sealed again, keys
/// stored in clear are sealed.
pub fn rewrap(args: RewrapArgs) -> Result<ExitCode> {
    let resolved = args.settings.resolve()?;
    let new = granted_host::config::new_master_key(args.new_master_key_file.as_deref())?;
    let store = open_existing_store_as_is(&resolved)?;
    let done = store.rewrap_keys(resolved.master_key.as_ref(), &new)?;
    println!(
        "the server keys are sealed under master key {}: {} moved from the old master key, {} sealed that were in clear, {} were already under it",
        new.id(),
        done.resealed,
        done.sealed_from_clear,
        done.unchanged
    );
    if done.changed() {
        eprintln!(
            "granted: start every server on {} with the new master key: one still running with the old key cannot read the keys",
            resolved.db
        );
        if store.backend() == "postgres" {
            eprintln!(
                "granted: PostgreSQL keeps the rows' earlier versions until it vacuums them: run `VACUUM server_keys` to remove them now"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
