//! `seed-corpus DIR`: writes the fuzz corpora from the vectors: the HTTP requests (for
//! `token_request`) and the entry points' JSON inputs (for `entry_points`).

use anyhow::Context;
use granted_vectors::{default_dirs, driver::http_request, load, vector_files};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: seed-corpus DIR")?;
    let requests = out.join("token_request");
    let inputs = out.join("entry_points");
    std::fs::create_dir_all(&requests)?;
    std::fs::create_dir_all(&inputs)?;
    let mut n = 0;
    for dir in default_dirs() {
        for path in vector_files(&dir)? {
            let vector = load(&path)?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(spec) = &vector.token_request {
                let request = http_request(spec)?;
                std::fs::write(requests.join(&name), serde_json::to_vec(&request)?)?;
            }
            let preview = serde_json::json!({"state": vector.state, "now": vector.now, "edit": vector.edit, "create": vector.create});
            // The `entry_points` target reads a first line naming the entry point, then the input.
            std::fs::write(inputs.join(&name), format!("preview\n{preview}"))?;
            n += 1;
        }
    }
    println!("seeded {n} vectors into {}", out.display());
    Ok(())
}
