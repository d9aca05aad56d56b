//! `granted preview`: an app edit or creation as a person reads it (or the module's JSON).

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `granted preview`'s arguments.
#[derive(clap::Args)]
pub struct PreviewArgs {
    /// The apps and tenants, in the VECTORS.md `state` format.
    #[arg(long, value_name = "STATE.json")]
    state: PathBuf,
    /// The proposed edit (`app_id` and the changed fields).
    #[arg(
        long,
        value_name = "EDIT.json",
        conflicts_with = "create",
        required_unless_present = "create"
    )]
    edit: Option<PathBuf>,
    /// The proposed new app.
    #[arg(long, value_name = "CREATE.json")]
    create: Option<PathBuf>,
    /// When the edit is made (RFC 3339); now when absent.
    #[arg(long)]
    now: Option<String>,
    /// The sunset instant (RFC 3339); 2021-06-18T00:00:00Z when absent.
    #[arg(long)]
    sunset: Option<String>,
    /// Print the module's JSON answer.
    #[arg(long)]
    json: bool,
}

/// Prints the preview; exit 3 on a rejected edit, so that a review pipeline can stop on it.
pub fn run(policy: Option<&Path>, args: PreviewArgs) -> Result<ExitCode> {
    let state = read_json(&args.state)?;
    let now = match args.now {
        Some(n) => n,
        None => time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .context("formatting the clock")?,
    };
    let mut input = json!({"state": state, "now": now});
    if let Some(s) = args.sunset {
        input["sunset"] = json!(s);
    }
    let app_id = match (&args.edit, &args.create) {
        (Some(path), _) => {
            input["edit"] = read_json(path)?;
            input["edit"]["app_id"].as_str().unwrap_or("").to_string()
        }
        (None, Some(path)) => {
            input["create"] = read_json(path)?;
            input["create"]["app_id"].as_str().unwrap_or("").to_string()
        }
        (None, None) => bail!("give `--edit` or `--create`"),
    };
    let guest = super::guest(policy, Default::default())?;
    let preview = super::call(&guest, "preview", &input)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&preview)?);
    } else {
        print!("{}", granted_host::preview::render(&preview, &app_id));
    }
    Ok(if preview["accepted"].as_bool() == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}
