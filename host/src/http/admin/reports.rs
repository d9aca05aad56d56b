//! `/reports/sunset` (and `granted report sunset`): who still depends on the password grant.
//!
//! The answers' fields are in alphabetical order, the order of the `json!` objects they replaced;
//! the policy module's types embedded in them keep their own.

use super::apps::installs_by_app;
use super::{answer::*, auth::*, errors::*, module::*};
use crate::guest::Guest;
use crate::store::{Store, UseCount};
use anyhow::anyhow;
use granted_policy::model::Timestamp;
use granted_policy::rules::status::{AppStatus, PasswordStatus};
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;

/// Who still depends on the password grant.
#[derive(Serialize, ToSchema)]
pub struct SunsetReport {
    /// Every app.
    apps: Vec<SunsetApp>,
    /// The audit log's oldest entry: the counts reach back to it at most.
    #[schema(value_type = Option<String>, format = DateTime)]
    audit_log_since: Option<Timestamp>,
    /// Authorization-code tokens (the way forward, RULES.md §5) in the last 30 days, all apps.
    code_tokens_30_days: i64,
    /// Authorization-code tokens in the last 7 days, all apps.
    code_tokens_7_days: i64,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    generated_at: Timestamp,
    /// In the last 30 days.
    password_tokens_30_days: i64,
    /// Password-grant tokens in the last 7 days, all apps.
    password_tokens_7_days: i64,
}

/// One app in the sunset report.
#[derive(Serialize, ToSchema)]
pub struct SunsetApp {
    /// The app.
    app_id: String,
    /// Tokens from the authorization code flow in the last 30 days: its users who moved.
    code_tokens_30_days: i64,
    /// Authorization-code tokens in the last 7 days.
    code_tokens_7_days: i64,
    /// Password-grant tokens per UTC day, the last 30 days, oldest first.
    daily_password_tokens: Vec<DayCount>,
    /// Its latest revision.
    latest_rev: u32,
    /// In the last 30 days.
    password_tokens_30_days: i64,
    /// Password-grant tokens in the last 7 days.
    password_tokens_7_days: i64,
    /// Its password-grant status.
    status: PasswordStatus,
    /// Per installing tenant.
    tenants: Vec<SunsetTenant>,
    /// Tenants keeping the grant until they update.
    tenants_keeping: Vec<String>,
}

/// A count for one UTC day.
#[derive(Serialize, ToSchema)]
pub struct DayCount {
    /// How many.
    count: i64,
    /// The day (`YYYY-MM-DD`).
    date: String,
}

/// One (app, tenant) row of the sunset report.
#[derive(Serialize, ToSchema)]
pub struct SunsetTenant {
    /// Authorization-code tokens in the last 30 days.
    code_tokens_30_days: i64,
    /// Authorization-code tokens in the last 7 days.
    code_tokens_7_days: i64,
    /// The last password-grant token.
    #[schema(value_type = Option<String>, format = DateTime)]
    last_password_use: Option<Timestamp>,
    /// After updating.
    password_after_update: bool,
    /// The password grant now.
    password_now: bool,
    /// In the last 30 days.
    password_tokens_30_days: i64,
    /// Password-grant tokens in the last 7 days.
    password_tokens_7_days: i64,
    /// Its pin.
    pinned_rev: u32,
    /// It requires SSO.
    sso_required: bool,
    /// The tenant.
    tenant: String,
    /// Updating would take it away.
    update_takes_away_password: bool,
}

/// Password-grant tokens per (tenant, app) in the last 7 and 30 days.
type Uses = HashMap<(String, String), UseCount>;
/// Password-grant tokens per (app, UTC day).
type Daily = HashMap<(String, String), i64>;

/// Who still depends on the password grant: per app, its status and per installing tenant
/// whether it has the grant now, what updating would take away, and the password-grant tokens
/// issued in the last 7 and 30 days (from the audit log, so as far back as it reaches).
pub fn sunset_report(
    store: &Store,
    guest: &Guest,
    now: Timestamp,
    sunset: Option<Timestamp>,
) -> anyhow::Result<SunsetReport> {
    let apps = store.apps()?;
    let tenants = store.tenant_records()?;
    let installs = installs_by_app(&tenants);
    let uses: Uses = store
        .password_use(now)?
        .into_iter()
        .map(|u| ((u.tenant.clone(), u.app_id.clone()), u))
        .collect();
    let code_uses: Uses = store
        .grant_use(now, "authorization_code")?
        .into_iter()
        .map(|u| ((u.tenant.clone(), u.app_id.clone()), u))
        .collect();
    let uses = [uses, code_uses];
    let days = last_30_days(now);
    let since = Timestamp::parse(&format!(
        "{}T00:00:00Z",
        days.first().map(String::as_str).unwrap_or("1970-01-01")
    ))
    .unwrap_or(now);
    let mut daily = Daily::new();
    for (app_id, day, count) in store.password_use_daily(since)? {
        daily.insert((app_id, day), count);
    }
    let mut out = Vec::with_capacity(apps.len());
    for (app, _) in apps {
        let empty = Vec::new();
        let app_installs = installs.get(&app.app_id).unwrap_or(&empty);
        let status = status_with(guest, sunset, &app, app_installs)
            .map_err(|e| anyhow!("the policy module: {}", e.message))?;
        out.push(sunset_app(app.app_id, status, &uses, &days, &daily));
    }
    Ok(SunsetReport {
        code_tokens_30_days: out.iter().map(|a| a.code_tokens_30_days).sum(),
        code_tokens_7_days: out.iter().map(|a| a.code_tokens_7_days).sum(),
        password_tokens_30_days: out.iter().map(|a| a.password_tokens_30_days).sum(),
        password_tokens_7_days: out.iter().map(|a| a.password_tokens_7_days).sum(),
        apps: out,
        audit_log_since: store.audit_oldest()?,
        generated_at: now,
    })
}

/// The last 30 UTC days up to `now`'s, oldest first (`YYYY-MM-DD`).
fn last_30_days(now: Timestamp) -> Vec<String> {
    (0..30)
        .rev()
        .map(|back| {
            now.plus_seconds(-back * 86_400)
                .to_rfc3339()
                .chars()
                .take(10)
                .collect()
        })
        .collect()
}

/// One app of the report: its status, each install's grant and use, its tokens per day.
fn sunset_app(
    app_id: String,
    status: AppStatus,
    [uses, code_uses]: &[Uses; 2],
    days: &[String],
    daily: &Daily,
) -> SunsetApp {
    let tenants: Vec<SunsetTenant> = status
        .installs
        .iter()
        .map(|row| {
            let used = uses.get(&(row.tenant.clone(), app_id.clone()));
            let (d7, d30) = used
                .map(|u| (u.last_7_days, u.last_30_days))
                .unwrap_or((0, 0));
            let (code_d7, code_d30) = code_uses
                .get(&(row.tenant.clone(), app_id.clone()))
                .map(|u| (u.last_7_days, u.last_30_days))
                .unwrap_or((0, 0));
            SunsetTenant {
                code_tokens_30_days: code_d30,
                code_tokens_7_days: code_d7,
                last_password_use: used.and_then(|u| u.last_use),
                password_after_update: row.password_after_update,
                password_now: row.password_now,
                password_tokens_30_days: d30,
                password_tokens_7_days: d7,
                pinned_rev: row.rev,
                sso_required: row.sso_required,
                tenant: row.tenant.clone(),
                update_takes_away_password: row.password_now && !row.password_after_update,
            }
        })
        .collect();
    let daily_password_tokens = days
        .iter()
        .map(|day| DayCount {
            count: daily
                .get(&(app_id.clone(), day.clone()))
                .copied()
                .unwrap_or(0),
            date: day.clone(),
        })
        .collect();
    SunsetApp {
        code_tokens_30_days: tenants.iter().map(|t| t.code_tokens_30_days).sum(),
        code_tokens_7_days: tenants.iter().map(|t| t.code_tokens_7_days).sum(),
        daily_password_tokens,
        latest_rev: status.latest_rev,
        password_tokens_30_days: tenants.iter().map(|t| t.password_tokens_30_days).sum(),
        password_tokens_7_days: tenants.iter().map(|t| t.password_tokens_7_days).sum(),
        status: status.status,
        tenants,
        tenants_keeping: status.tenants_keeping,
        app_id,
    }
}

#[utoipa::path(
    get,
    path = "/reports/sunset",
    tag = "reports",
    responses(
        (status = 200, description = "Who still depends on the password grant", body = SunsetReport),
        CommonErrors
    )
)]
pub(crate) async fn sunset_report_route(admin: Admin) -> ApiResult<SunsetReport> {
    blocking(move || {
        let server = &admin.server;
        let report = sunset_report(
            &server.store,
            &server.guest,
            admin.audit.now,
            sunset(server),
        )
        .map_err(|e| ApiError::unavailable("report", format!("{e:#}")))?;
        Ok(Answer::ok(report))
    })
    .await
}
