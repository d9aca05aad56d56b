//! The admin API's OpenAPI 3 document, generated from the code: the request types the handlers
//! parse, the shapes they answer (below), and the `#[utoipa::path]` of each handler in
//! `admin.rs`. Served at `/admin/api/v1/openapi.json`; a test runs schemathesis against it.

#![allow(dead_code)] // the shapes below exist for the document

use granted_policy::model::{GrantType, Revision, SignIn};
use granted_policy::rules::edit::Preview;
use granted_policy::rules::status::{InstallStatus, PasswordStatus};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// An error: a stable code and a sentence; some errors add fields (`latest_rev` on a conflict;
/// `reason`, `rule` and `preview` on a rejected edit; `code` when the module refused the input).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The stable code.
    pub error: String,
    /// For people.
    pub message: String,
    /// The app's latest revision (`edit_conflict`).
    #[schema(nullable = false)]
    pub latest_rev: Option<u32>,
    /// Why the module rejected the change (`edit_rejected`).
    pub reason: Option<String>,
    /// The rule that decided (`edit_rejected`).
    #[schema(nullable = false)]
    pub rule: Option<String>,
    /// The module's preview of the rejected change.
    #[schema(nullable = false)]
    pub preview: Option<Preview>,
    /// The module's error code (`invalid_input`).
    pub code: Option<String>,
}

/// What `POST /tenants/{tenant}/users/{username}/{action}` does.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserAction {
    /// The user gets no tokens.
    Disable,
    /// The user may get tokens again.
    Enable,
    /// Forget the failed logins and lift the lock.
    Unlock,
}

/// An app's password-grant status, briefly.
#[derive(Serialize, ToSchema)]
pub struct PasswordGrant {
    /// The status.
    pub status: PasswordStatus,
    /// Tenants that keep it until they update.
    pub tenants_keeping: Vec<String>,
}

/// An app in the list.
#[derive(Serialize, ToSchema)]
pub struct AppSummary {
    /// The app.
    pub app_id: String,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Its latest revision.
    pub latest: Option<Revision>,
    /// Its clients.
    pub client_ids: Vec<String>,
    /// How many tenants install it.
    pub installs: u64,
    /// The password grant.
    pub password_grant: PasswordGrant,
}

/// Every app.
#[derive(Serialize, ToSchema)]
pub struct AppList {
    /// The apps, by id.
    pub apps: Vec<AppSummary>,
}

/// A revision in an app's history.
#[derive(Serialize, ToSchema)]
pub struct RevisionView {
    /// Its number.
    pub rev: u32,
    /// When.
    #[schema(format = DateTime)]
    pub at: String,
    /// Its `client_id`.
    pub client_id: String,
    /// Its grant type.
    pub grant_type: GrantType,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Password-eligible (R1–R4).
    pub password_eligible: bool,
    /// Why not, when not.
    pub ineligible_because: Option<String>,
}

/// An app with its history and installs.
#[derive(Serialize, ToSchema)]
pub struct AppView {
    /// The app.
    pub app_id: String,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Its latest revision (also the `ETag`).
    pub latest_rev: u32,
    /// Every revision, oldest first.
    pub revisions: Vec<RevisionView>,
    /// Its clients.
    pub client_ids: Vec<String>,
    /// Its installs, by tenant.
    pub installs: Vec<InstallStatus>,
    /// The password grant.
    pub password_grant: PasswordGrant,
}

/// A client secret, shown only in this answer.
#[derive(Serialize, ToSchema)]
pub struct ClientSecret {
    /// The client.
    pub client_id: String,
    /// The secret.
    pub secret: String,
}

/// A saved creation or edit.
#[derive(Serialize, ToSchema)]
pub struct Saved {
    /// The app.
    pub app_id: String,
    /// The revision appended.
    pub revision: Revision,
    /// The preview it was saved under.
    pub preview: Preview,
    /// The new client's secret, when the change made a client.
    #[schema(nullable = false)]
    pub client_secret: Option<ClientSecret>,
}

/// A preview, nothing stored.
#[derive(Serialize, ToSchema)]
pub struct PreviewAnswer {
    /// The module's preview.
    pub preview: Preview,
}

/// The module's `preview` input for an edit or a new app, without the edit or the app.
#[derive(Serialize, ToSchema)]
pub struct EditContextAnswer {
    /// The app, the tenants that install it, the `client_id`s other apps use.
    pub state: serde_json::Map<String, serde_json::Value>,
    /// The instant the server judges at.
    #[schema(format = DateTime)]
    pub now: String,
    /// The configured sunset, when not RULES.md's.
    #[schema(format = DateTime, nullable = false)]
    pub sunset: Option<String>,
}

/// A rotated client secret.
#[derive(Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new secret.
    pub client_secret: ClientSecret,
}

/// A tenant's install.
#[derive(Serialize, ToSchema)]
pub struct TenantInstall {
    /// The app.
    pub app_id: String,
    /// The pinned revision.
    pub rev: u32,
    /// The app's latest revision.
    pub latest_rev: u32,
    /// The tenant requires SSO.
    pub sso_required: bool,
    /// The pinned revision is password-eligible.
    pub password_now: bool,
    /// The latest revision is.
    pub password_after_update: bool,
    /// The pin is the latest revision.
    pub up_to_date: bool,
}

/// A tenant with its installs.
#[derive(Serialize, ToSchema)]
pub struct TenantView {
    /// The tenant.
    pub tenant: String,
    /// Password logins are refused.
    pub sso_required: bool,
    /// Passwords expire after this many days.
    pub password_max_age_days: Option<u32>,
    /// Its installs.
    pub installs: Vec<TenantInstall>,
}

/// Every tenant.
#[derive(Serialize, ToSchema)]
pub struct TenantList {
    /// The tenants, by name.
    pub tenants: Vec<TenantView>,
}

/// An install pinned to the latest revision.
#[derive(Serialize, ToSchema)]
pub struct Pinned {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app_id: String,
    /// The pinned revision now.
    pub rev: u32,
    /// The revision pinned before.
    pub previous_rev: Option<u32>,
    /// The tenant requires SSO.
    pub sso_required: bool,
    /// The password grant before.
    pub password_before: bool,
    /// After.
    pub password_after: bool,
    /// Updating took it away, for good.
    pub password_lost: bool,
}

/// A user, without any hash.
#[derive(Serialize, ToSchema)]
pub struct UserView {
    /// The username.
    pub username: String,
    /// How the user signs in.
    pub sign_in: SignIn,
    /// Disabled users get no tokens.
    pub disabled: bool,
    /// A password is set.
    pub password_set: bool,
    /// When it was set.
    #[schema(format = DateTime)]
    pub password_changed_at: Option<String>,
    /// Locked out by failed logins until.
    #[schema(format = DateTime)]
    pub locked_until: Option<String>,
}

/// The users of a tenant.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    /// By username.
    pub users: Vec<UserView>,
}

/// One audit entry.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    /// Its place in the hash chain.
    pub seq: i64,
    /// When.
    #[schema(format = DateTime)]
    pub at: String,
    /// `token`, `revocation`, `introspection`, `admin`.
    pub kind: String,
    /// Its chain hash.
    pub sha256: String,
    /// The entry as stored.
    pub entry: serde_json::Map<String, serde_json::Value>,
}

/// A page of the audit log, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// The entries.
    pub entries: Vec<AuditEntry>,
    /// The `cursor` of the next page; null on the last one.
    pub next_cursor: Option<i64>,
    /// The oldest entry kept.
    #[schema(format = DateTime)]
    pub oldest: Option<String>,
    /// The retention setting.
    pub retention_days: Option<u32>,
}

/// One (app, tenant) row of the sunset report.
#[derive(Serialize, ToSchema)]
pub struct SunsetTenant {
    /// The tenant.
    pub tenant: String,
    /// Its pin.
    pub pinned_rev: u32,
    /// It requires SSO.
    pub sso_required: bool,
    /// The password grant now.
    pub password_now: bool,
    /// After updating.
    pub password_after_update: bool,
    /// Updating would take it away.
    pub update_takes_away_password: bool,
    /// Password-grant tokens in the last 7 days.
    pub password_tokens_7_days: i64,
    /// In the last 30 days.
    pub password_tokens_30_days: i64,
    /// The last one.
    #[schema(format = DateTime)]
    pub last_password_use: Option<String>,
}

/// One app in the sunset report.
#[derive(Serialize, ToSchema)]
pub struct SunsetApp {
    /// The app.
    pub app_id: String,
    /// Its password-grant status.
    pub status: PasswordStatus,
    /// Its latest revision.
    pub latest_rev: u32,
    /// Tenants keeping the grant until they update.
    pub tenants_keeping: Vec<String>,
    /// Password-grant tokens in the last 7 days.
    pub password_tokens_7_days: i64,
    /// In the last 30 days.
    pub password_tokens_30_days: i64,
    /// Password-grant tokens per UTC day, the last 30 days, oldest first.
    pub daily_password_tokens: Vec<DayCount>,
    /// Per installing tenant.
    pub tenants: Vec<SunsetTenant>,
}

/// A count for one UTC day.
#[derive(Serialize, ToSchema)]
pub struct DayCount {
    /// The day (`YYYY-MM-DD`).
    pub date: String,
    /// How many.
    pub count: i64,
}

/// Who still depends on the password grant.
#[derive(Serialize, ToSchema)]
pub struct SunsetReport {
    /// When.
    #[schema(format = DateTime)]
    pub generated_at: String,
    /// The audit log's oldest entry: the counts reach back to it at most.
    #[schema(format = DateTime)]
    pub audit_log_since: Option<String>,
    /// Password-grant tokens in the last 7 days, all apps.
    pub password_tokens_7_days: i64,
    /// In the last 30 days.
    pub password_tokens_30_days: i64,
    /// Every app.
    pub apps: Vec<SunsetApp>,
}

/// The errors every route may answer.
#[derive(utoipa::IntoResponses)]
pub enum CommonErrors {
    /// Bad input: the message names the field.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No valid admin token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Too many failed sign-ins from this address.
    #[response(status = 429)]
    TooManyAttempts(ErrorBody),
    /// The store or the policy module could not answer; retry.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The errors of a route that reads a JSON body.
#[derive(utoipa::IntoResponses)]
pub enum BodyErrors {
    /// The body is over 64 KiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not a JSON body.
    #[response(status = 415)]
    NotJson(ErrorBody),
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Granted admin API",
        description = "Apps, tenants, installs and users of a Granted token server; the audit log and the sunset report. Every app edit is judged by the same policy module the token endpoint runs.",
        version = "1"
    ),
    servers((url = "/admin/api/v1")),
    security(("admin_token" = [])),
    modifiers(&BearerAuth),
    components(schemas(UserAction)),
    paths(
        super::apps::list_apps,
        super::apps::create_app,
        super::apps::get_app,
        super::apps::preview_edit,
        super::apps::edit_context,
        super::apps::preview_create,
        super::apps::create_context_route,
        super::apps::append_revision,
        super::apps::rotate_client_secret,
        super::tenants::list_tenants,
        super::tenants::create_tenant,
        super::tenants::get_tenant,
        super::tenants::install,
        super::tenants::update_install,
        super::users::list_users,
        super::users::create_user,
        super::users::set_password,
        super::users::user_action,
        super::audit::audit_log,
        super::reports::sunset_report_route,
    )
)]
pub struct AdminApi;

/// The document as JSON.
pub fn document() -> String {
    AdminApi::openapi()
        .to_json()
        .unwrap_or_else(|_| "{}".to_string())
}
