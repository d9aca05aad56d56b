//! `vectors-native DIR…`: every vector of each directory through the natively linked policy.

use granted_vectors::{driver::Settings, run_dir, Native};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        anyhow::bail!("usage: vectors-native DIR...");
    }
    let mut failed = 0;
    for dir in &dirs {
        failed += run_dir(&Native, dir, &Settings::default(), &mut std::io::stdout())?.failed;
    }
    std::process::exit(i32::from(failed > 0));
}
