//! `granted report sunset`: who still depends on the password grant, as a table or as JSON.

use super::settings::{open_store, SettingFlags};
use anyhow::Result;
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;

/// Prints the report: a table for the terminal, or the admin API's JSON.
pub fn sunset(policy: Option<&Path>, settings: SettingFlags, json: bool) -> Result<ExitCode> {
    let resolved = settings.resolve()?;
    let guest = super::guest(policy, Default::default())?;
    let store = open_store(&resolved)?;
    let report = serde_json::to_value(granted_host::http::admin::reports::sunset_report(
        &store,
        &guest,
        granted_host::settings::now(&resolved.server)?,
        resolved.server.sunset,
    )?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", sunset_table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The sunset report as a table for the terminal.
fn sunset_table(report: &Value) -> String {
    let mut rows = vec![[
        "app".to_string(),
        "status".into(),
        "tenant".into(),
        "pin".into(),
        "password now".into(),
        "after update".into(),
        "tokens 7 d".into(),
        "tokens 30 d".into(),
        "last use".into(),
    ]];
    let yes_no = |v: &Value| if *v == true { "yes" } else { "no" }.to_string();
    for app in report["apps"].as_array().into_iter().flatten() {
        let tenants = app["tenants"].as_array().cloned().unwrap_or_default();
        let status = app["status"].as_str().unwrap_or_default().to_string();
        if tenants.is_empty() {
            rows.push([
                app["app_id"].as_str().unwrap_or_default().to_string(),
                status.clone(),
                "(no installs)".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for t in tenants {
            let after = if t["update_takes_away_password"] == true {
                "LOSES it".to_string()
            } else {
                yes_no(&t["password_after_update"])
            };
            rows.push([
                app["app_id"].as_str().unwrap_or_default().to_string(),
                status.clone(),
                t["tenant"].as_str().unwrap_or_default().to_string(),
                format!("{}/{}", t["pinned_rev"], app["latest_rev"]),
                yes_no(&t["password_now"]),
                after,
                t["password_tokens_7_days"].to_string(),
                t["password_tokens_30_days"].to_string(),
                t["last_password_use"].as_str().unwrap_or("-").to_string(),
            ]);
        }
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "\npassword-grant tokens: {} in the last 7 days, {} in the last 30 days (audit log since {})\n",
        report["password_tokens_7_days"],
        report["password_tokens_30_days"],
        report["audit_log_since"].as_str().unwrap_or("-")
    ));
    out
}
