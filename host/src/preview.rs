//! `granted preview`: an app edit judged by the module, written for a person reading a review.

use serde_json::Value;
use std::fmt::Write as _;

fn yes(v: &Value) -> &'static str {
    if v.as_bool().unwrap_or(false) {
        "yes"
    } else {
        "no"
    }
}

/// The preview as a person reads it.
pub fn render(preview: &Value, app_id: &str) -> String {
    let mut out = String::new();
    let accepted = preview["accepted"].as_bool().unwrap_or(false);
    let irreversible = preview["irreversible"].as_bool().unwrap_or(false);
    let verdict = match (accepted, irreversible) {
        (false, _) => "REJECTED",
        (true, true) => "ACCEPTED, IRREVERSIBLE",
        (true, false) => "ACCEPTED",
    };
    let reason = preview["reason"].as_str().unwrap_or("none");
    let _ = writeln!(
        out,
        "app `{app_id}`: {verdict} (rule {}, reason {reason})",
        preview["rule"].as_str().unwrap_or("?")
    );
    let _ = writeln!(out, "  {}", preview["explanation"].as_str().unwrap_or(""));
    let rev = &preview["revision"];
    if rev.is_object() {
        let scopes: Vec<&str> = rev["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let _ = writeln!(
            out,
            "  proposed revision {}: client_id `{}`, grant type `{}`, scopes `{}`",
            rev["rev"],
            rev["client_id"].as_str().unwrap_or(""),
            rev["grant_type"].as_str().unwrap_or(""),
            scopes.join(" ")
        );
    }
    let _ = writeln!(
        out,
        "  password grant: latest revision {}, proposed revision {}",
        yes(&preview["password_eligible_before"]),
        yes(&preview["password_eligible_after"])
    );
    let tenants = preview["tenants"].as_array().cloned().unwrap_or_default();
    if accepted && !tenants.is_empty() {
        tenant_table(&tenants, &mut out);
    }
    let losing: Vec<&str> = preview["tenants_losing_password_on_update"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if accepted {
        let _ = writeln!(
            out,
            "\n  tenants losing the password grant on update: {}",
            if losing.is_empty() {
                "none".to_string()
            } else {
                losing.join(", ")
            }
        );
    }
    if irreversible {
        let _ = writeln!(out, "\n  THIS CANNOT BE UNDONE: once saved, no later revision of `{app_id}` can return to the password grant.");
    }
    out
}

/// The installing tenants: pin, the password grant now and after updating.
fn tenant_table(tenants: &[Value], out: &mut String) {
    let width = tenants
        .iter()
        .filter_map(|t| t["tenant"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(out, "\n  installing tenants ({}):", tenants.len());
    let _ = writeln!(
        out,
        "  {:width$}  pinned  password now  after update",
        "tenant"
    );
    for t in tenants {
        let losing = t["password_now"].as_bool() == Some(true)
            && t["password_after_update"].as_bool() == Some(false);
        let _ = writeln!(
            out,
            "  {:width$}  {:<6}  {:<12}  {:<12}{}{}",
            t["tenant"].as_str().unwrap_or(""),
            format!("rev {}", t["pinned_rev"]),
            yes(&t["password_now"]),
            yes(&t["password_after_update"]),
            if losing {
                " keeps it until it updates, then loses it"
            } else {
                ""
            },
            if t["sso_required"].as_bool() == Some(true) {
                " (requires SSO)"
            } else {
                ""
            },
        );
    }
}
