//! Admin edits A1–A5: validate a proposed revision and preview what it does to every installing tenant.

use crate::error::PolicyError;
use crate::model::{default_sunset, App, ClientType, GrantType, Revision, TenantRecord, Timestamp};
use crate::rules::eligibility::{password_eligibility, Ineligible};
use crate::rules::redirect::{self, MAX_REDIRECT_URIS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// The apps and tenants an edit is judged against (the VECTORS.md `state`; extra fields are ignored).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct EditState {
    /// Every app, or at least the edited one and those whose `client_id`s could clash.
    #[serde(default)]
    pub apps: Vec<App>,
    /// Tenants; only their installs of the edited app are read.
    #[serde(default)]
    pub tenants: Vec<TenantRecord>,
    /// `client_id`s in use by apps not listed in `apps` (a host may send these instead of every app).
    #[serde(default)]
    pub client_ids_in_use: Vec<String>,
}

/// A proposed next revision of an existing app: absent fields keep the latest revision's value.
#[derive(Clone, Deserialize, Serialize)]
pub struct EditProposal {
    /// The app being edited.
    pub app_id: String,
    /// A new `client_id`, if it changes.
    #[serde(default)]
    pub client_id: Option<String>,
    /// A new grant type, if it changes.
    #[serde(default)]
    pub grant_type: Option<GrantType>,
    /// New scopes, if they change.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// New redirect URIs, if they change; an `authorization_code` revision keeps the latest
    /// revision's when absent, other grant types have none.
    #[serde(default)]
    pub redirect_uris: Option<Vec<String>>,
    /// A new client type, if it changes.
    #[serde(default)]
    pub client_type: Option<ClientType>,
    /// The new client's secret; the policy never reads it (the host generates and stores it).
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
}

/// A proposed new app: its revision 1.
#[derive(Clone, Deserialize, Serialize)]
pub struct CreateProposal {
    /// The new app's id.
    pub app_id: String,
    /// Its `client_id`.
    pub client_id: String,
    /// Its grant type.
    pub grant_type: GrantType,
    /// Its scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Its redirect URIs (`authorization_code` only).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Its client type; `confidential` when absent.
    #[serde(default)]
    pub client_type: ClientType,
    /// The client's secret; the policy never reads it.
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
}

impl std::fmt::Debug for EditProposal {
    /// Everything but the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EditProposal")
            .field("app_id", &self.app_id)
            .field("client_id", &self.client_id)
            .field("grant_type", &self.grant_type)
            .field("scopes", &self.scopes)
            .field("redirect_uris", &self.redirect_uris)
            .field("client_type", &self.client_type)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for CreateProposal {
    /// Everything but the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateProposal")
            .field("app_id", &self.app_id)
            .field("client_id", &self.client_id)
            .field("grant_type", &self.grant_type)
            .field("scopes", &self.scopes)
            .field("redirect_uris", &self.redirect_uris)
            .field("client_type", &self.client_type)
            .finish_non_exhaustive()
    }
}

/// The input of the `preview` entry point: exactly one of `edit` and `create`.
#[derive(Clone, Debug, Deserialize)]
pub struct PreviewInput {
    /// Apps and tenants as they are now.
    pub state: EditState,
    /// When the edit is made.
    pub now: Timestamp,
    /// The sunset instant; RULES.md's default when absent.
    #[serde(default = "default_sunset")]
    pub sunset: Timestamp,
    /// A proposed edit.
    #[serde(default)]
    pub edit: Option<EditProposal>,
    /// A proposed new app.
    #[serde(default)]
    pub create: Option<CreateProposal>,
}

/// Why an edit is rejected, or what an accepted one ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EditReason {
    /// A1, R1.
    AppCreatedAfterSunset,
    /// A1 or A2, R3.
    ClientIdChanged,
    /// A1, R4.
    GrantTypeReverted,
    /// A2: leaves the password grant with the same `client_id`.
    GrantTypeChanged,
    /// A5.
    ClientIdTaken,
    /// Creating an app whose id exists.
    AppIdTaken,
    /// A field breaks the model of §1 (empty id, bad scope, clock before the latest revision).
    InvalidRevision,
    /// A6: an `authorization_code` revision without redirect URIs.
    RedirectUriRequired,
    /// A6: a redirect URI that may not be registered, or redirect URIs on another grant type.
    InvalidRedirectUri,
    /// A7: a public client with another grant type than `authorization_code`.
    PublicClientGrant,
    /// A8: the implicit grant is never issued.
    ImplicitNotIssued,
}

impl EditReason {
    fn from_ineligible(reason: Ineligible) -> Option<Self> {
        match reason {
            Ineligible::NotPasswordApp => None,
            Ineligible::AppCreatedAfterSunset => Some(EditReason::AppCreatedAfterSunset),
            Ineligible::GrantTypeReverted => Some(EditReason::GrantTypeReverted),
            Ineligible::ClientIdChanged => Some(EditReason::ClientIdChanged),
        }
    }

    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            EditReason::AppCreatedAfterSunset => "app_created_after_sunset",
            EditReason::ClientIdChanged => "client_id_changed",
            EditReason::GrantTypeReverted => "grant_type_reverted",
            EditReason::GrantTypeChanged => "grant_type_changed",
            EditReason::ClientIdTaken => "client_id_taken",
            EditReason::AppIdTaken => "app_id_taken",
            EditReason::InvalidRevision => "invalid_revision",
            EditReason::RedirectUriRequired => "redirect_uri_required",
            EditReason::InvalidRedirectUri => "invalid_redirect_uri",
            EditReason::PublicClientGrant => "public_client_grant",
            EditReason::ImplicitNotIssued => "implicit_not_issued",
        }
    }
}

/// One installing tenant in a preview (A3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantImpact {
    /// The tenant.
    pub tenant: String,
    /// The revision its install pins.
    pub pinned_rev: u32,
    /// The pinned revision is password-eligible.
    pub password_now: bool,
    /// The proposed revision would be password-eligible, were the tenant to update to it.
    pub password_after_update: bool,
    /// The tenant requires SSO, so no password login works there whatever the app allows (T7).
    pub sso_required: bool,
}

/// What an edit would do, before anything is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Preview {
    /// The edit may be saved.
    pub accepted: bool,
    /// The reason code: why it is rejected, or what an accepted edit ends; null when nothing.
    pub reason: Option<EditReason>,
    /// The rule that decides (`A1`, `A2`, `A5`, …).
    pub rule: String,
    /// The decision in plain words, naming the rule.
    pub explanation: String,
    /// The revision that would be appended.
    pub revision: Option<Revision>,
    /// The latest revision is password-eligible now.
    pub password_eligible_before: bool,
    /// The proposed revision is password-eligible.
    pub password_eligible_after: bool,
    /// Accepting it ends the password grant for good.
    pub irreversible: bool,
    /// Every installing tenant, sorted by name.
    pub tenants: Vec<TenantImpact>,
    /// Tenants that have the password grant now and would lose it by updating, sorted.
    pub tenants_losing_password_on_update: Vec<String>,
    /// The grant type an app that acts for a user moves to (§5): named when the edit is the
    /// implicit grant (refused, A8) or moves to `authorization_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub way_forward: Option<GrantType>,
}

/// Judges a proposed edit or creation (A1–A5) and previews its effect.
pub fn preview(input: &PreviewInput) -> Result<Preview, PolicyError> {
    match (&input.edit, &input.create) {
        (Some(edit), None) => preview_edit(&input.state, edit, input.now, input.sunset),
        (None, Some(create)) => Ok(preview_create(
            &input.state,
            create,
            input.now,
            input.sunset,
        )),
        _ => Err(PolicyError::InvalidInput(
            "give exactly one of `edit` and `create`".into(),
        )),
    }
}

fn preview_create(
    state: &EditState,
    create: &CreateProposal,
    now: Timestamp,
    sunset: Timestamp,
) -> Preview {
    let revision = Revision {
        rev: 1,
        at: now,
        client_id: create.client_id.clone(),
        grant_type: create.grant_type,
        scopes: create.scopes.clone(),
        redirect_uris: create.redirect_uris.clone(),
        client_type: create.client_type,
    };
    if let Some(problem) = field_problem(&create.app_id, &revision) {
        return rejected(
            EditReason::InvalidRevision,
            "§1",
            problem,
            Some(revision),
            false,
        );
    }
    if let Some((reason, rule, why)) = section5_problem(&revision) {
        return rejected(reason, rule, why, Some(revision), false);
    }
    if state.apps.iter().any(|a| a.app_id == create.app_id) {
        let why = format!("an app with id `{}` exists already", create.app_id);
        return rejected(EditReason::AppIdTaken, "§1", why, Some(revision), false);
    }
    if client_id_in_use(state, &revision.client_id, None) {
        return rejected(
            EditReason::ClientIdTaken,
            "A5",
            client_id_taken_words(&revision.client_id),
            Some(revision),
            false,
        );
    }
    let eligibility = password_eligibility(std::slice::from_ref(&revision), 0, sunset);
    if let Some(reason) = eligibility.err().and_then(EditReason::from_ineligible) {
        return rejected(
            reason,
            "A1",
            a1_words(reason, &revision, sunset),
            Some(revision),
            false,
        );
    }
    let eligible = eligibility.is_ok();
    let explanation = if eligible {
        format!(
            "A1: accepted; before the sunset ({sunset}) a new app may still choose the password grant"
        )
    } else {
        format!(
            "accepted: a new app with the `{}` grant type",
            revision.grant_type.as_str()
        )
    };
    Preview {
        accepted: true,
        reason: None,
        rule: if eligible { "A1" } else { "A4" }.into(),
        explanation,
        revision: Some(revision),
        password_eligible_before: false,
        password_eligible_after: eligible,
        irreversible: false,
        tenants: Vec::new(),
        tenants_losing_password_on_update: Vec::new(),
        way_forward: None,
    }
}

/// An edit of an existing app (§3): the proposed revision, the checks that reject it (§1, §5,
/// A5, A1), then what accepting it does to each tenant (A2, A3) and in which words.
fn preview_edit(
    state: &EditState,
    edit: &EditProposal,
    now: Timestamp,
    sunset: Timestamp,
) -> Result<Preview, PolicyError> {
    let app = state
        .apps
        .iter()
        .find(|a| a.app_id == edit.app_id)
        .ok_or_else(|| PolicyError::InvalidState(format!("no app `{}`", edit.app_id)))?;
    let latest = app.latest().ok_or_else(|| {
        PolicyError::InvalidState(format!("app `{}` has no revision", app.app_id))
    })?;
    let revision = proposed_revision(latest, edit, now);
    let latest_index = app.revisions.len().saturating_sub(1);
    let eligible_before = password_eligibility(&app.revisions, latest_index, sunset).is_ok();
    if let Some((reason, rule, why)) = edit_problem(state, app, latest, &revision, now) {
        return Ok(rejected(reason, rule, why, Some(revision), eligible_before));
    }

    let mut history = app.revisions.clone();
    history.push(revision.clone());
    let after = password_eligibility(&history, history.len().saturating_sub(1), sunset);
    if let Some(reason) = after.err().and_then(EditReason::from_ineligible) {
        return Ok(rejected(
            reason,
            "A1",
            a1_words(reason, &revision, sunset),
            Some(revision),
            eligible_before,
        ));
    }
    let eligible_after = after.is_ok();
    let irreversible = eligible_before && !eligible_after && now >= sunset;

    let tenants = tenant_impacts(app, state, sunset, eligible_after);
    let losing: Vec<String> = tenants
        .iter()
        .filter(|t| t.password_now && !t.password_after_update)
        .map(|t| t.tenant.clone())
        .collect();
    let change = Change {
        revision: &revision,
        latest,
        now,
        sunset,
        eligible_before,
        eligible_after,
        irreversible,
        losing: losing.len(),
    };
    let (reason, rule, explanation) = change.words();
    let moves_to_code = revision.grant_type == GrantType::AuthorizationCode
        && latest.grant_type != GrantType::AuthorizationCode;
    let explanation = if moves_to_code {
        format!("{explanation}. §5: this is the way forward for an app that acts for a user; once a tenant updates, its users sign in on this server's page (authorization code with PKCE) instead of giving the app their password")
    } else {
        explanation
    };
    Ok(Preview {
        accepted: true,
        reason,
        rule: rule.into(),
        explanation,
        revision: Some(revision),
        password_eligible_before: eligible_before,
        password_eligible_after: eligible_after,
        irreversible,
        tenants,
        tenants_losing_password_on_update: losing,
        way_forward: moves_to_code.then_some(GrantType::AuthorizationCode),
    })
}

/// The next revision an edit proposes: every field it leaves out kept from the latest one (the
/// redirect URIs only while the app stays on the authorization code grant).
fn proposed_revision(latest: &Revision, edit: &EditProposal, now: Timestamp) -> Revision {
    let grant_type = edit.grant_type.unwrap_or(latest.grant_type);
    Revision {
        rev: latest.rev.saturating_add(1),
        at: now,
        client_id: edit
            .client_id
            .clone()
            .unwrap_or_else(|| latest.client_id.clone()),
        grant_type,
        scopes: edit.scopes.clone().unwrap_or_else(|| latest.scopes.clone()),
        redirect_uris: match &edit.redirect_uris {
            Some(uris) => uris.clone(),
            None if grant_type == GrantType::AuthorizationCode => latest.redirect_uris.clone(),
            None => Vec::new(),
        },
        client_type: edit.client_type.unwrap_or(latest.client_type),
    }
}

/// Why an edit is rejected before eligibility is judged: its fields (§1), §5's rules, a date
/// before the latest revision, a `client_id` another app holds (A5).
fn edit_problem(
    state: &EditState,
    app: &App,
    latest: &Revision,
    revision: &Revision,
    now: Timestamp,
) -> Option<(EditReason, &'static str, String)> {
    if let Some(problem) = field_problem(&app.app_id, revision) {
        return Some((EditReason::InvalidRevision, "§1", problem));
    }
    if let Some(problem) = section5_problem(revision) {
        return Some(problem);
    }
    if now < latest.at {
        let why = format!(
            "the edit is dated {now}, before the latest revision ({}): revisions only move forward",
            latest.at
        );
        return Some((EditReason::InvalidRevision, "§1", why));
    }
    if revision.client_id != latest.client_id
        && client_id_in_use(state, &revision.client_id, Some(&app.app_id))
    {
        return Some((
            EditReason::ClientIdTaken,
            "A5",
            client_id_taken_words(&revision.client_id),
        ));
    }
    None
}

/// What an accepted edit does to the password grant, as [`Change::words`] says it.
struct Change<'a> {
    revision: &'a Revision,
    latest: &'a Revision,
    now: Timestamp,
    sunset: Timestamp,
    eligible_before: bool,
    eligible_after: bool,
    irreversible: bool,
    /// Tenants that lose the password grant when they update.
    losing: usize,
}

impl Change<'_> {
    /// The reason, the rule and the sentence of an accepted edit's preview.
    fn words(&self) -> (Option<EditReason>, &'static str, String) {
        let sunset = self.sunset;
        if self.irreversible {
            let reason = if self.revision.client_id != self.latest.client_id {
                EditReason::ClientIdChanged
            } else {
                EditReason::GrantTypeChanged
            };
            (
                Some(reason),
                "A2",
                a2_words(reason, self.revision, self.losing),
            )
        } else if self.eligible_after && self.now < sunset {
            (
                None,
                "A1",
                format!("A1: accepted; before the sunset ({sunset}) an app may still choose the password grant and change its `client_id`"),
            )
        } else if self.eligible_after {
            (
                None,
                "R2",
                "R2: accepted; the `client_id` and the password grant stay the same, so the app keeps the password grant".to_string(),
            )
        } else if self.eligible_before {
            (
                None,
                "A2",
                format!("A2: accepted; before the sunset ({sunset}) apps may still switch grant types, so this can be undone"),
            )
        } else if self.losing == 0 {
            (
                None,
                "A4",
                "A4: accepted; the app does not have the password grant, and this edit changes nothing about that".to_string(),
            )
        } else {
            (
                None,
                "R3",
                format!(
                    "R3: accepted; the latest revision already left the password grant, and {} tenant(s) pinned to an older revision keep it until they update",
                    self.losing
                ),
            )
        }
    }
}

/// Every tenant installing `app`, with what it has now and after updating; eligibility is
/// computed once per pinned revision, so 10,000 tenants cost one walk per distinct pin.
fn tenant_impacts(
    app: &App,
    state: &EditState,
    sunset: Timestamp,
    eligible_after: bool,
) -> Vec<TenantImpact> {
    let mut by_rev: HashMap<u32, bool> = HashMap::new();
    let mut out: Vec<TenantImpact> = state
        .tenants
        .iter()
        .filter_map(|t| {
            let install = t.installs.iter().find(|i| i.app_id == app.app_id)?;
            let password_now = *by_rev.entry(install.rev).or_insert_with(|| {
                app.revision(install.rev)
                    .map(|(index, _)| password_eligibility(&app.revisions, index, sunset).is_ok())
                    .unwrap_or(false)
            });
            Some(TenantImpact {
                tenant: t.tenant.clone(),
                pinned_rev: install.rev,
                password_now,
                password_after_update: eligible_after,
                sso_required: t.sso_required,
            })
        })
        .collect();
    out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    out
}

fn rejected(
    reason: EditReason,
    rule: &str,
    explanation: String,
    revision: Option<Revision>,
    eligible_before: bool,
) -> Preview {
    Preview {
        accepted: false,
        reason: Some(reason),
        rule: rule.into(),
        explanation,
        revision,
        password_eligible_before: eligible_before,
        password_eligible_after: false,
        irreversible: false,
        tenants: Vec::new(),
        tenants_losing_password_on_update: Vec::new(),
        way_forward: (reason == EditReason::ImplicitNotIssued)
            .then_some(GrantType::AuthorizationCode),
    }
}

/// A8, A7 and A6: what §5 asks of a revision's grant type, client type and redirect URIs.
fn section5_problem(revision: &Revision) -> Option<(EditReason, &'static str, String)> {
    let code = revision.grant_type == GrantType::AuthorizationCode;
    if revision.grant_type == GrantType::Implicit {
        return Some((
            EditReason::ImplicitNotIssued,
            "A8",
            "A8: rejected; the implicit grant puts tokens in URLs and is never issued (RFC 9700 §2.1.2): an app that acts for a user moves to `authorization_code` with PKCE".into(),
        ));
    }
    if revision.client_type == ClientType::Public && !code {
        return Some((
            EditReason::PublicClientGrant,
            "A7",
            format!(
                "A7: rejected; a public client holds no secret, so it may only use `authorization_code` with PKCE, not `{}`",
                revision.grant_type.as_str()
            ),
        ));
    }
    let uris = &revision.redirect_uris;
    if !code {
        return (!uris.is_empty()).then(|| {
            (
                EditReason::InvalidRedirectUri,
                "A6",
                format!(
                    "A6: rejected; only `authorization_code` apps have redirect URIs, not `{}` ones",
                    revision.grant_type.as_str()
                ),
            )
        });
    }
    if uris.is_empty() || uris.len() > MAX_REDIRECT_URIS {
        return Some((
            EditReason::RedirectUriRequired,
            "A6",
            format!("A6: rejected; an `authorization_code` app registers 1 to {MAX_REDIRECT_URIS} redirect URIs, not {}", uris.len()),
        ));
    }
    let mut seen = BTreeSet::new();
    for uri in uris {
        if let Some(problem) = redirect::registration_problem(uri) {
            return Some((
                EditReason::InvalidRedirectUri,
                "A6",
                format!("A6: rejected; {problem}"),
            ));
        }
        if !seen.insert(uri.as_str()) {
            return Some((
                EditReason::InvalidRedirectUri,
                "A6",
                format!("A6: rejected; the redirect URI `{uri}` is listed twice"),
            ));
        }
    }
    None
}

fn client_id_in_use(state: &EditState, client_id: &str, except_app: Option<&str>) -> bool {
    state.client_ids_in_use.iter().any(|c| c == client_id)
        || state
            .apps
            .iter()
            .filter(|a| Some(a.app_id.as_str()) != except_app)
            .any(|a| a.revisions.iter().any(|r| r.client_id == client_id))
}

fn client_id_taken_words(client_id: &str) -> String {
    format!("A5: rejected; the `client_id` `{client_id}` belongs to another app, and a `client_id` belongs to one app only")
}

fn a1_words(reason: EditReason, revision: &Revision, sunset: Timestamp) -> String {
    match reason {
        EditReason::AppCreatedAfterSunset => format!(
            "A1 (R1): rejected; apps created on or after the sunset ({sunset}) cannot use the password grant: choose `client_credentials` or `authorization_code`"
        ),
        EditReason::ClientIdChanged => format!(
            "A1 (R3): rejected; a revision with a new `client_id` (`{}`) made on or after the sunset cannot use the password grant: choose another grant type",
            revision.client_id
        ),
        EditReason::GrantTypeReverted => "A1 (R4): rejected; this app left the password grant on or after the sunset (or never had it then), and there is no way back".into(),
        _ => "A1: rejected".into(),
    }
}

fn a2_words(reason: EditReason, revision: &Revision, losing: usize) -> String {
    let what = match reason {
        EditReason::ClientIdChanged => format!(
            "the new `client_id` `{}` with the `{}` grant type",
            revision.client_id,
            revision.grant_type.as_str()
        ),
        _ => format!("the `{}` grant type", revision.grant_type.as_str()),
    };
    format!(
        "A2: accepted, and irreversible; {what} ends the password grant for good: no later revision can return to it. {losing} tenant(s) keep the password grant until they update, then lose it"
    )
}

/// The first field that breaks the model of §1, in words.
fn field_problem(app_id: &str, revision: &Revision) -> Option<String> {
    if !is_identifier(app_id) {
        return Some(format!(
            "the app id `{app_id}` must be 1 to 128 letters, digits, `.`, `_` or `-`"
        ));
    }
    let client_ok = !revision.client_id.is_empty()
        && revision.client_id.len() <= 128
        && revision
            .client_id
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b));
    if !client_ok {
        return Some(format!(
            "the `client_id` `{}` must be 1 to 128 visible ASCII characters",
            revision.client_id.escape_default()
        ));
    }
    let mut seen = BTreeSet::new();
    for scope in &revision.scopes {
        if !is_scope_token(scope) {
            return Some(format!(
                "the scope `{}` is not a scope token (RFC 6749 §3.3)",
                scope.escape_default()
            ));
        }
        if !seen.insert(scope.as_str()) {
            return Some(format!("the scope `{scope}` is listed twice"));
        }
    }
    None
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// RFC 6749 §3.3: `1*( %x21 / %x23-5B / %x5D-7E )`.
pub(crate) fn is_scope_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}
