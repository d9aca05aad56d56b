//! `/audit`: the audit log, searched by filters and read in pages.
//!
//! The answers' fields are in alphabetical order, the order of the `json!` objects they replaced;
//! the policy module's types embedded in them keep their own.

use super::{answer::*, auth::*, errors::*, module::*};
use crate::store::{AuditFilter, AuditRow};
use axum::extract::Query;
use granted_policy::model::Timestamp;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The most entries one page holds.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// A page of the audit log, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditPage {
    /// The entries.
    entries: Vec<AuditEntry>,
    /// The `cursor` of the next page; null on the last one.
    next_cursor: Option<i64>,
    /// The oldest entry kept.
    #[schema(value_type = Option<String>, format = DateTime)]
    oldest: Option<Timestamp>,
    /// The retention setting.
    retention_days: Option<u32>,
}

/// One audit entry.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditEntry {
    /// When.
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    /// The entry as stored.
    #[schema(value_type = serde_json::Map<String, Value>)]
    entry: Value,
    /// `token`, `revocation`, `introspection`, `admin`.
    kind: String,
    /// Its place in the hash chain.
    seq: i64,
    /// Its chain hash.
    sha256: String,
}

impl AuditEntry {
    /// A stored row, its entry parsed (kept as a string in the unlikely case it is not JSON).
    fn of(row: AuditRow) -> AuditEntry {
        AuditEntry {
            at: row.at,
            entry: serde_json::from_str::<Value>(&row.entry).unwrap_or(Value::String(row.entry)),
            kind: row.kind,
            seq: row.seq,
            sha256: row.sha256,
        }
    }
}

/// The search a query asks for, and the page size.
fn search_of(query: Vec<(String, String)>) -> Result<(AuditFilter, usize), ApiError> {
    let mut filter = AuditFilter::default();
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
    Ok((filter, limit))
}

#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(
        ("kind" = Option<String>, Query, description = "token, revocation, introspection, userinfo, authorization (the sign-in pages) or admin"),
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
        (status = 200, description = "A page of the audit log, newest first", body = AuditPage),
        CommonErrors
    )
)]
pub(crate) async fn audit_log(
    admin: Admin,
    Query(query): Query<Vec<(String, String)>>,
) -> ApiResult<AuditPage> {
    let (filter, limit) = search_of(query)?;
    blocking(move || {
        let store = &admin.server.store;
        let rows = store
            .audit_search(&filter, limit)
            .map_err(|e| ApiError::unavailable("store", e))?;
        let next_cursor = (rows.len() == limit)
            .then(|| rows.last().map(|r| r.seq))
            .flatten();
        let oldest = store
            .audit_oldest()
            .map_err(|e| ApiError::unavailable("store", e))?;
        Ok(Answer::ok(AuditPage {
            entries: rows.into_iter().map(AuditEntry::of).collect(),
            next_cursor,
            oldest,
            retention_days: admin.server.settings.audit_retention_days,
        }))
    })
    .await
}
