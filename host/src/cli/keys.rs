//! `granted keys rotate`: a new signing key; the previous one verifies until its last access
//! token expires.

use super::settings::{open_store, SettingFlags};
use anyhow::{Context, Result};
use granted_host::state::random_base64;
use granted_policy::model::Timestamp;
use std::process::ExitCode;

/// Adds a new signing key, which a running server uses within a second.
pub fn rotate(settings: SettingFlags) -> Result<ExitCode> {
    let resolved = settings.resolve()?;
    let store = open_store(&resolved)?;
    let now = Timestamp::parse(
        &time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
    )
    .context("the clock")?;
    store.ensure_keys(now, || random_base64(32))?;
    // The old key verifies until the last access token it signed expires.
    let until = now.plus_seconds(i64::from(resolved.server.access_token_ttl));
    let key = store.rotate_signing_key(now, until, &random_base64(32)?, &random_base64(9)?)?;
    println!(
        "new signing key {}; the previous one verifies until {until}",
        key.kid
    );
    Ok(ExitCode::SUCCESS)
}
