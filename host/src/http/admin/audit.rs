//! `/audit`: the audit log, searched by filters and read in pages.

use super::{auth::*, errors::*, module::*};
use axum::extract::Query;
use axum::http::StatusCode;
use granted_policy::model::Timestamp;
use serde_json::{json, Value};

/// The most entries one page holds.
pub const MAX_AUDIT_PAGE: usize = 1000;

#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(
        ("kind" = Option<String>, Query, description = "token, revocation, introspection or admin"),
        ("tenant" = Option<String>, Query, description = "The tenant"),
        ("app_id" = Option<String>, Query, description = "The app"),
        ("grant_type" = Option<String>, Query, description = "The grant type"),
        ("decision" = Option<String>, Query, description = "granted or denied"),
        ("since" = Option<String>, Query, format = DateTime, description = "At or after (RFC 3339)"),
        ("until" = Option<String>, Query, format = DateTime, description = "Before (RFC 3339)"),
        ("cursor" = Option<i64>, Query, minimum = 1, description = "The previous page's `next_cursor`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Entries per page (100)")
    ),
    responses(
        (status = 200, description = "A page of the audit log, newest first", body = super::openapi::AuditPage),
        super::openapi::CommonErrors
    )
)]
pub(crate) async fn audit_log(
    admin: Admin,
    Query(query): Query<Vec<(String, String)>>,
) -> ApiResult {
    let mut filter = crate::store::AuditFilter::default();
    let mut limit = 100usize;
    let mut seen = std::collections::HashSet::new();
    for (key, value) in query {
        if !seen.insert(key.clone()) {
            return Err(ApiError::bad_request(format!("`{key}` is given twice")));
        }
        let instant = |value: &str| {
            Timestamp::parse(value).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`{key}` must be an RFC 3339 instant, like 2026-11-25T12:00:00Z"
                ))
            })
        };
        match key.as_str() {
            "kind" => filter.kind = Some(value),
            "tenant" => filter.tenant = Some(value),
            "app_id" => filter.app_id = Some(value),
            "grant_type" => filter.grant_type = Some(value),
            "decision" => filter.decision = Some(value),
            "since" => filter.since = Some(instant(&value)?),
            "until" => filter.until = Some(instant(&value)?),
            "cursor" => {
                filter.before_seq = Some(value.parse::<i64>().ok().filter(|c| *c > 0).ok_or_else(|| {
                    ApiError::bad_request("`cursor` must be the `next_cursor` of the previous page")
                })?)
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_AUDIT_PAGE).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("`limit` must be 1 to {MAX_AUDIT_PAGE}"))
                    })?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter `{other}` (kind, tenant, app_id, grant_type, decision, since, until, cursor, limit)"
                )))
            }
        }
    }
    blocking(move || {
        let store = &admin.server.store;
        let rows = store
            .audit_search(&filter, limit)
            .map_err(|e| ApiError::unavailable("store", e))?;
        let next = (rows.len() == limit).then(|| rows.last().map(|r| r.seq)).flatten();
        let oldest = store.audit_oldest().map_err(|e| ApiError::unavailable("store", e))?;
        let entries: Vec<Value> = rows
            .into_iter()
            .map(|r| {
                json!({
                    "seq": r.seq,
                    "at": r.at,
                    "kind": r.kind,
                    "sha256": r.sha256,
                    "entry": serde_json::from_str::<Value>(&r.entry).unwrap_or(Value::String(r.entry)),
                })
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            json!({
                "entries": entries,
                "next_cursor": next,
                "oldest": oldest,
                "retention_days": admin.server.settings.audit_retention_days,
            }),
        ))
    })
    .await
}
