//! `granted audit verify`: checks the audit log's hash chain.

use super::settings::{open_existing_store, SettingFlags};
use anyhow::Result;
use std::process::ExitCode;

/// Checks the whole chain; names the first entry altered or removed (exit 1).
pub fn verify(settings: SettingFlags) -> Result<ExitCode> {
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
