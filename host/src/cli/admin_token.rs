//! `granted admin-token rotate`: a new admin token, printed once; every earlier one stops working.

use super::settings::{open_store, SettingFlags};
use anyhow::Result;
use granted_host::admin_token::{admin_token_sha256, new_admin_token};
use std::path::Path;
use std::process::ExitCode;

/// Makes the new token, records the rotation in the audit chain and prints the token.
pub fn rotate(policy: Option<&Path>, settings: SettingFlags) -> Result<ExitCode> {
    let resolved = settings.resolve()?;
    let guest = super::guest(policy, Default::default())?;
    let store = open_store(&resolved)?;
    let token = new_admin_token()?;
    let audit = granted_host::store::AdminAudit {
        actor: "cli".into(),
        source: "local".into(),
        policy_sha256: guest.sha256().to_string(),
        now: granted_host::settings::now(&resolved.server)?,
    };
    let id = store.rotate_admin_token(&admin_token_sha256(&token), &audit)?;
    eprintln!("granted: new admin token {id}; every earlier one is retired. Shown only this once:");
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
