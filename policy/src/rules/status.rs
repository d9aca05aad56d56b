//! An app's password-grant status for the people who run it (RULES.md §2 applied to every
//! revision and every install): available to new installs, kept by tenants pinned on an older
//! eligible revision until they update, retired, or never had.

use crate::model::{default_sunset, App, Timestamp};
use crate::rules::eligibility::{password_eligibility, Ineligible};
use serde::{Deserialize, Serialize};

/// Input of `app_status`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusInput {
    /// The app with its whole revision history.
    pub app: App,
    /// The tenants that install it.
    #[serde(default)]
    pub installs: Vec<InstallOf>,
    /// The sunset; RULES.md's default when absent.
    #[serde(default = "default_sunset")]
    pub sunset: Timestamp,
}

/// One tenant's install of the app.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallOf {
    /// The tenant.
    pub tenant: String,
    /// The revision its install pins.
    pub rev: u32,
    /// The tenant requires SSO.
    #[serde(default)]
    pub sso_required: bool,
}

/// The password grant's status for an app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PasswordStatus {
    /// The latest revision is password-eligible: installing or updating gets the grant.
    Available,
    /// The latest revision is not; tenants pinned on an older eligible one keep the grant until
    /// they update.
    Kept,
    /// A revision was eligible once; no tenant keeps it now.
    Retired,
    /// No revision was ever eligible.
    Never,
}

/// One revision's eligibility.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionStatus {
    /// The revision.
    pub rev: u32,
    /// Password-eligible (R1–R4).
    pub password_eligible: bool,
    /// Why not, when not.
    pub reason: Option<Ineligible>,
}

/// One install.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallStatus {
    /// The tenant.
    pub tenant: String,
    /// The pinned revision.
    pub rev: u32,
    /// The tenant requires SSO (then no password login works there, whatever the app allows).
    pub sso_required: bool,
    /// The pinned revision is password-eligible.
    pub password_now: bool,
    /// The latest revision is password-eligible: what updating leaves.
    pub password_after_update: bool,
    /// The pin is the latest revision.
    pub up_to_date: bool,
}

/// What `app_status` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    /// The app.
    pub app_id: String,
    /// The password grant's status.
    pub status: PasswordStatus,
    /// The latest revision.
    pub latest_rev: u32,
    /// Every revision, oldest first.
    pub revisions: Vec<RevisionStatus>,
    /// Every install, by tenant.
    pub installs: Vec<InstallStatus>,
    /// Tenants that have the password grant only until they update, sorted.
    pub tenants_keeping: Vec<String>,
}

/// Every revision of `app`, judged by §2.
pub fn revision_statuses(app: &App, sunset: Timestamp) -> Vec<RevisionStatus> {
    app.revisions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let verdict = password_eligibility(&app.revisions, i, sunset);
            RevisionStatus {
                rev: r.rev,
                password_eligible: verdict.is_ok(),
                reason: verdict.err(),
            }
        })
        .collect()
}

/// `app_status`: every revision's eligibility, every install's grant now and after updating,
/// and the app's status. The preview's per-tenant rows mean the same (A3).
pub fn app_status(input: &StatusInput) -> AppStatus {
    let revisions = revision_statuses(&input.app, input.sunset);
    let eligible = |rev: u32| {
        revisions
            .iter()
            .any(|r| r.rev == rev && r.password_eligible)
    };
    let latest_rev = input.app.revisions.last().map(|r| r.rev).unwrap_or(0);
    let latest_eligible = eligible(latest_rev);
    let mut installs: Vec<InstallStatus> = input
        .installs
        .iter()
        .map(|i| InstallStatus {
            tenant: i.tenant.clone(),
            rev: i.rev,
            sso_required: i.sso_required,
            password_now: eligible(i.rev),
            password_after_update: latest_eligible,
            up_to_date: i.rev == latest_rev,
        })
        .collect();
    installs.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    let tenants_keeping: Vec<String> = if latest_eligible {
        Vec::new()
    } else {
        installs
            .iter()
            .filter(|i| i.password_now)
            .map(|i| i.tenant.clone())
            .collect()
    };
    let status = if latest_eligible {
        PasswordStatus::Available
    } else if !tenants_keeping.is_empty() {
        PasswordStatus::Kept
    } else if revisions.iter().any(|r| r.password_eligible) {
        PasswordStatus::Retired
    } else {
        PasswordStatus::Never
    };
    AppStatus {
        app_id: input.app.app_id.clone(),
        status,
        latest_rev,
        revisions,
        installs,
        tenants_keeping,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests
mod tests {
    use super::*;
    use serde_json::json;

    fn status(app: serde_json::Value, installs: serde_json::Value) -> AppStatus {
        app_status(&serde_json::from_value(json!({"app": app, "installs": installs})).unwrap())
    }

    fn rev(rev: u32, at: &str, client_id: &str, grant: &str) -> serde_json::Value {
        json!({"rev": rev, "at": at, "client_id": client_id, "grant_type": grant, "scopes": ["read"]})
    }

    #[test]
    fn each_status_and_who_keeps_the_grant() {
        let legacy = json!({"app_id": "crm", "created_at": "2020-01-01T00:00:00Z", "revisions": [
            rev(1, "2020-01-01T00:00:00Z", "crm-1", "password")]});
        let s = status(legacy, json!([{"tenant": "a", "rev": 1}]));
        assert_eq!(s.status, PasswordStatus::Available);
        assert!(s.tenants_keeping.is_empty());
        assert!(s.installs[0].password_now && s.installs[0].password_after_update);

        let moved = json!({"app_id": "rep", "created_at": "2019-01-01T00:00:00Z", "revisions": [
            rev(1, "2019-01-01T00:00:00Z", "rep-1", "password"),
            rev(2, "2023-01-01T00:00:00Z", "rep-2", "client_credentials")]});
        let s = status(
            moved.clone(),
            json!([{"tenant": "b", "rev": 2}, {"tenant": "a", "rev": 1, "sso_required": true}]),
        );
        assert_eq!(s.status, PasswordStatus::Kept);
        assert_eq!(s.tenants_keeping, vec!["a".to_string()]);
        assert_eq!(s.installs[0].tenant, "a", "sorted by tenant");
        assert!(s.installs[0].sso_required && !s.installs[0].up_to_date);
        assert_eq!(s.revisions[1].reason, Some(Ineligible::NotPasswordApp));
        assert_eq!(
            status(moved, json!([{"tenant": "b", "rev": 2}])).status,
            PasswordStatus::Retired
        );

        let late = json!({"app_id": "new", "created_at": "2024-01-01T00:00:00Z", "revisions": [
            rev(1, "2024-01-01T00:00:00Z", "new-1", "password")]});
        let s = status(late, json!([]));
        assert_eq!(s.status, PasswordStatus::Never);
        assert_eq!(
            s.revisions[0].reason,
            Some(Ineligible::AppCreatedAfterSunset)
        );
    }

    #[test]
    fn a_pin_on_a_revision_the_app_lacks_has_no_password_grant() {
        let app = json!({"app_id": "crm", "created_at": "2020-01-01T00:00:00Z", "revisions": [
            rev(1, "2020-01-01T00:00:00Z", "crm-1", "client_credentials")]});
        let s = status(app, json!([{"tenant": "a", "rev": 7}]));
        assert!(!s.installs[0].password_now);
        assert_eq!(s.status, PasswordStatus::Never);
    }
}
