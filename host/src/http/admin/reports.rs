//! `/reports/sunset` (and `granted report sunset`): who still depends on the password grant.

use super::apps::*;
use super::{auth::*, errors::*, module::*};
use crate::guest::Guest;
use anyhow::anyhow;
use axum::http::StatusCode;
use granted_policy::model::Timestamp;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Who still depends on the password grant: per app, its status and per installing tenant
/// whether it has the grant now, what updating would take away, and the password-grant tokens
/// issued in the last 7 and 30 days (from the audit log, so as far back as it reaches).
pub fn sunset_report(
    store: &crate::store::Store,
    guest: &Guest,
    now: Timestamp,
    sunset: Option<Timestamp>,
) -> anyhow::Result<Value> {
    let apps = store.apps()?;
    let tenants = store.tenant_records()?;
    let installs = installs_by_app(&tenants);
    let uses: HashMap<(String, String), crate::store::UseCount> = store
        .password_use(now)?
        .into_iter()
        .map(|u| ((u.tenant.clone(), u.app_id.clone()), u))
        .collect();
    // The last 30 UTC days, oldest first, and each app's password-grant tokens on each.
    let days: Vec<String> = (0..30)
        .rev()
        .map(|back| {
            now.plus_seconds(-back * 86_400)
                .to_rfc3339()
                .chars()
                .take(10)
                .collect()
        })
        .collect();
    let since = granted_policy::model::Timestamp::parse(&format!(
        "{}T00:00:00Z",
        days.first().map(String::as_str).unwrap_or("1970-01-01")
    ))
    .unwrap_or(now);
    let mut daily: HashMap<(String, String), i64> = HashMap::new();
    for (app_id, day, count) in store.password_use_daily(since)? {
        daily.insert((app_id, day), count);
    }
    let mut out = Vec::with_capacity(apps.len());
    let (mut total_7, mut total_30) = (0i64, 0i64);
    for (app, _) in apps {
        let empty = Vec::new();
        let app_installs = installs.get(&app.app_id).unwrap_or(&empty);
        let status = status_with(guest, sunset, &app, app_installs)
            .map_err(|e| anyhow!("the policy module: {}", e.message))?;
        let rows: Vec<Value> = status["installs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|row| {
                let tenant = row["tenant"].as_str().unwrap_or_default().to_string();
                let used = uses.get(&(tenant, app.app_id.clone()));
                let (d7, d30) = used
                    .map(|u| (u.last_7_days, u.last_30_days))
                    .unwrap_or((0, 0));
                total_7 += d7;
                total_30 += d30;
                let now = row["password_now"] == true;
                let after = row["password_after_update"] == true;
                json!({
                    "tenant": row["tenant"],
                    "pinned_rev": row["rev"],
                    "sso_required": row["sso_required"],
                    "password_now": now,
                    "password_after_update": after,
                    "update_takes_away_password": now && !after,
                    "password_tokens_7_days": d7,
                    "password_tokens_30_days": d30,
                    "last_password_use": used.and_then(|u| u.last_use),
                })
            })
            .collect();
        out.push(json!({
            "app_id": app.app_id,
            "status": status["status"],
            "latest_rev": status["latest_rev"],
            "tenants_keeping": status["tenants_keeping"],
            "password_tokens_7_days": rows.iter().filter_map(|r| r["password_tokens_7_days"].as_i64()).sum::<i64>(),
            "password_tokens_30_days": rows.iter().filter_map(|r| r["password_tokens_30_days"].as_i64()).sum::<i64>(),
            "daily_password_tokens": days.iter().map(|day| json!({
                "date": day,
                "count": daily.get(&(app.app_id.clone(), day.clone())).copied().unwrap_or(0),
            })).collect::<Vec<_>>(),
            "tenants": rows,
        }));
    }
    Ok(json!({
        "generated_at": now,
        "audit_log_since": store.audit_oldest()?,
        "password_tokens_7_days": total_7,
        "password_tokens_30_days": total_30,
        "apps": out,
    }))
}

#[utoipa::path(
    get,
    path = "/reports/sunset",
    tag = "reports",
    responses(
        (status = 200, description = "Who still depends on the password grant", body = super::openapi::SunsetReport),
        super::openapi::CommonErrors
    )
)]
pub(crate) async fn sunset_report_route(admin: Admin) -> ApiResult {
    blocking(move || {
        let server = &admin.server;
        let report = sunset_report(
            &server.store,
            &server.guest,
            admin.audit.now,
            sunset(server),
        )
        .map_err(|e| ApiError::unavailable("report", format!("{e:#}")))?;
        Ok(json_response(StatusCode::OK, report))
    })
    .await
}
