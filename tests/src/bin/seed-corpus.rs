//! `seed-corpus DIR`: writes the fuzz corpora from the vectors: the HTTP requests (for
//! `token_request`) and the entry points' JSON inputs (for `entry_points`), and a few admin API
//! requests (for `admin_input`).

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
    // The `admin_input` target: a line of `Content-Type`, one of `If-Match`, then a body of the
    // request type its first byte picks (0 create app, 1 edit app, 2 create tenant, 3 install,
    // 4 create user, 5 set password).
    let admin = out.join("admin_input");
    std::fs::create_dir_all(&admin)?;
    let seeds: [(u8, &str); 6] = [
        (
            0,
            r#"{"app_id":"crm","client_id":"crm-2","grant_type":"password","scopes":["read"]}"#,
        ),
        (
            1,
            r#"{"grant_type":"client_credentials","scopes":["read","write"]}"#,
        ),
        (
            2,
            r#"{"tenant":"acme","sso_required":false,"password_max_age_days":90}"#,
        ),
        (3, r#"{"app_id":"crm"}"#),
        (
            4,
            r#"{"username":"alice","sign_in":"direct","password":"correct horse battery"}"#,
        ),
        (5, r#"{"password":"correct horse battery"}"#),
    ];
    for (pick, body) in seeds {
        let mut input = vec![pick];
        input.extend_from_slice(b"application/json\n\"3\"\n");
        input.extend_from_slice(body.as_bytes());
        std::fs::write(admin.join(format!("seed-{pick}")), input)?;
    }
    println!("seeded {n} vectors into {}", out.display());
    Ok(())
}
