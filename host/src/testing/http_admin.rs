//! An `edit` or `create` vector through the admin API (`granted vectors --http`): its preview
//! compared with `expect`, then saved, and what was stored checked.

use super::http_client::{http, url_segment};
use super::vector_server::{start, ADMIN_TOKEN};
use crate::guest::Guest;
use crate::store::PgServer;
use anyhow::{anyhow, bail, Context, Result};
use granted_vectors::format::Vector;
use serde_json::Value;
use std::sync::Arc;

/// Status, headers and JSON body of an admin API answer.
type JsonAnswer = (u16, Vec<(String, String)>, Value);

/// An admin API call: status, headers, body as JSON.
fn admin(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, String)],
    body: Option<&Value>,
) -> Result<JsonAnswer> {
    let mut headers = vec![("Authorization".to_string(), format!("Bearer {ADMIN_TOKEN}"))];
    if body.is_some() {
        headers.push(("Content-Type".into(), "application/json".into()));
    }
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (status, headers, text) = http(
        addr,
        method,
        &format!("/admin/api/v1{path}"),
        &headers,
        &bytes,
    )?;
    let value = serde_json::from_str(&text)
        .with_context(|| format!("{method} {path} answered {status} with no JSON: {text}"))?;
    Ok((status, headers, value))
}

/// An `edit` or `create` vector through the admin API: preview, then save.
pub(super) fn run_edit(
    runtime: &tokio::runtime::Runtime,
    guest: Arc<Guest>,
    vector: &Vector,
    pg: Option<&Arc<PgServer>>,
) -> Result<Vec<String>> {
    let running = start(runtime, guest, vector, pg)?;
    let outcome = edit_over_http(running.addr, vector);
    running.stop(runtime);
    outcome
}

fn edit_over_http(addr: std::net::SocketAddr, vector: &Vector) -> Result<Vec<String>> {
    let mut mismatches = Vec::new();
    // What the API takes: the proposal without the secret (the server makes secrets).
    let (proposal, app_id) = match (&vector.edit, &vector.create) {
        (Some(p), None) | (None, Some(p)) => {
            let mut body = p.clone();
            let app_id = body["app_id"].as_str().unwrap_or_default().to_string();
            if let Some(map) = body.as_object_mut() {
                map.remove("secret");
                if vector.edit.is_some() {
                    map.remove("app_id");
                }
            }
            (body, app_id)
        }
        _ => bail!("neither `edit` nor `create`"),
    };
    let segment = url_segment(&app_id);
    let before = admin(addr, "GET", &format!("/apps/{segment}"), &[], None)?;
    let (preview_path, save_path) = if vector.edit.is_some() {
        (
            format!("/apps/{segment}/preview"),
            format!("/apps/{segment}/revisions"),
        )
    } else {
        ("/previews/create".to_string(), "/apps".to_string())
    };
    let (status, _, answer) = admin(addr, "POST", &preview_path, &[], Some(&proposal))?;
    if status != 200 {
        mismatches.push(format!("preview: status {status}: {answer}"));
        return Ok(mismatches);
    }
    let preview = &answer["preview"];
    granted_vectors::driver::check_preview(&vector.expect, preview, &mut mismatches);

    let mut extra = Vec::new();
    if vector.edit.is_some() {
        let etag = before
            .1
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow!("GET /apps/{app_id} has no ETag ({})", before.0))?;
        extra.push(("If-Match", etag));
    }
    let (status, _, saved) = admin(addr, "POST", &save_path, &extra, Some(&proposal))?;
    let after = admin(addr, "GET", &format!("/apps/{segment}"), &[], None)?;
    let revisions = |answer: &Value| answer["revisions"].as_array().map(Vec::len).unwrap_or(0);
    if preview["accepted"] == true {
        if status != 201 {
            mismatches.push(format!("save: status {status}, expected 201: {saved}"));
        }
        if saved["preview"] != *preview {
            mismatches.push("save: stored under another preview than the one shown".into());
        }
        if revisions(&after.2) != revisions(&before.2) + 1 {
            mismatches.push(format!(
                "save: {} revisions before, {} after",
                revisions(&before.2),
                revisions(&after.2)
            ));
        }
    } else {
        let wanted = if preview["reason"] == "app_id_taken" {
            409
        } else {
            422
        };
        if status != wanted {
            mismatches.push(format!("save: status {status}, expected {wanted}: {saved}"));
        }
        if saved["reason"] != preview["reason"] {
            mismatches.push(format!(
                "save: reason {} differs from the preview's {}",
                saved["reason"], preview["reason"]
            ));
        }
        if after.0 != before.0 || revisions(&after.2) != revisions(&before.2) {
            mismatches.push("save: a rejected change changed the app".into());
        }
    }
    Ok(mismatches)
}
