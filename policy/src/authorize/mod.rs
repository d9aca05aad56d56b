//! The authorization endpoint and its pages, RULES.md §5 (C1–C12), as a pure step function like
//! the token endpoint's: the host calls [`authorization`] with the request, what the user did on
//! the page (the [`Action`]), what its transaction holds ([`SignedIn`]) and the records it looked
//! up, and is told which records to fetch, which KDF to run, or which page to show (or where to
//! send the user back), with the audit record and the effects to apply. The host renders the
//! pages and keeps the transaction; it decides nothing.

mod checks;
pub mod federation;
mod pages;
pub mod userinfo;
mod verdict;

use crate::error::PolicyError;
use crate::token::steps::{Audit, Effect, KdfOutput, Records, Step, TokenContext};
use serde::{Deserialize, Serialize};

pub use checks::Authorized;
pub use pages::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};

/// A request to `GET /tenants/{tenant}/connect/authorize`: its query as decoded pairs, in the
/// order sent (so that repeats are seen).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AuthorizeRequest {
    /// The tenant in the path.
    pub tenant: String,
    /// The query's parameters.
    pub query: Vec<(String, String)>,
}

/// What the user did: opened the authorization URL, or posted one of the pages. Every action
/// judges the authorization request again (C1–C8) with the records as they are now.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Opened the authorization URL: C1–C8, then the sign-in page.
    #[default]
    Authorize,
    /// Posted the sign-in page (C9, C10).
    SignIn {
        /// As typed.
        username: String,
        /// As typed.
        password: String,
    },
    /// Posted the change-password page for an expired password (C10).
    ChangePassword {
        /// The new password.
        new_password: String,
        /// The new password again.
        confirm_password: String,
    },
    /// Answered the consent page (C11).
    Consent {
        /// Allowed (true) or refused.
        approve: bool,
    },
    /// Came back after changing the password: on to consent (C11) or the code (C12).
    Resume,
}

impl std::fmt::Debug for Action {
    /// Never the passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Authorize => f.write_str("Authorize"),
            Action::SignIn { username, .. } => f
                .debug_struct("SignIn")
                .field("username", username)
                .finish_non_exhaustive(),
            Action::ChangePassword { .. } => f.write_str("ChangePassword(..)"),
            Action::Consent { approve } => {
                f.debug_struct("Consent").field("approve", approve).finish()
            }
            Action::Resume => f.write_str("Resume"),
        }
    }
}

/// Who signed in during this transaction, as the module said after C9; the host keeps it with
/// the transaction (server side, behind its cookie) and sends it back with the next action.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct SignedIn {
    /// The user.
    pub username: String,
    /// When the password verified (`auth_time`), seconds since the epoch.
    pub auth_time: i64,
    /// The password had expired: it must be changed before going on (C10).
    #[serde(default)]
    pub must_change_password: bool,
}

/// The input of the `authorization` entry point.
#[derive(Clone, Debug, Deserialize)]
pub struct AuthorizationInput {
    /// The authorization request.
    pub request: AuthorizeRequest,
    /// What the user did; opening the URL when absent.
    #[serde(default)]
    pub action: Action,
    /// What the transaction holds, if the user signed in during it.
    #[serde(default)]
    pub signed_in: Option<SignedIn>,
    /// Time, keys, entropy and settings, as for the token endpoint.
    pub context: TokenContext,
    /// Records looked up so far.
    #[serde(default)]
    pub records: Records,
    /// The KDF's output, once the host ran it.
    #[serde(default)]
    pub kdf: Option<KdfOutput>,
    /// The output of the KDF step whose purpose is `rehash`, once the host ran it.
    #[serde(default)]
    pub rehash_kdf: Option<KdfOutput>,
}

/// The page to show, or where to send the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "page", rename_all = "snake_case")]
pub enum Page {
    /// C1–C3 failed: an error page on this server; the user is never sent to an unchecked
    /// address.
    Error {
        /// The HTTP status.
        status: u16,
        /// The RFC 6749 error code.
        error: String,
        /// For people.
        description: String,
    },
    /// Send the user to `location` (HTTP 303): an error from C4 on, a refusal of consent, or the
    /// code (C12).
    Redirect {
        /// The redirect URI with the response's parameters.
        location: String,
    },
    /// The sign-in page, with one message after a failed attempt.
    SignIn {
        /// The app and tenant to name on the page.
        client: PageClient,
        /// The one message for every failure (C9), or none.
        message: Option<String>,
    },
    /// The change-password page (C10).
    ChangePassword {
        /// The app and tenant to name on the page.
        client: PageClient,
        /// The user.
        username: String,
        /// Why the last attempt was refused, or none.
        message: Option<String>,
    },
    /// The consent page (C11).
    Consent {
        /// The app and tenant to name on the page.
        client: PageClient,
        /// The user.
        username: String,
    },
}

/// What a page names: the tenant, the app, the scopes asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageClient {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app_id: String,
    /// The `client_id`.
    pub client_id: String,
    /// The scopes asked for (C7), in the order asked.
    pub scopes: Vec<String>,
    /// Where the user goes back to (C3 checked it): the page's `form-action` must allow it,
    /// since a form's answer redirects there.
    pub redirect_uri: String,
}

/// The answer to one action: the page, the audit record, the effects, and what the transaction
/// holds from now on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageDecision {
    /// What to show or where to go.
    pub page: Page,
    /// What the audit log records; `decision` is `pending` while the user is on the way (a page
    /// shown), which a host may leave out of its durable log.
    pub audit: Audit,
    /// Audit records of the same answer that come before `audit` (C10's `password_changed`
    /// when the code follows at once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<Audit>,
    /// What the host must apply, in one transaction with the audit entry.
    pub effects: Vec<Effect>,
    /// What the transaction holds from now on (null: nobody signed in, or the transaction is
    /// over).
    pub signed_in: Option<SignedIn>,
}

/// One step of the authorization endpoint.
pub type AuthorizationStep = Step<PageDecision>;

/// One step of the authorization endpoint for `input` (see the module's documentation).
pub fn authorization(input: &AuthorizationInput) -> Result<AuthorizationStep, PolicyError> {
    match pages::judge(input) {
        Ok(decision) => Ok(Step::Done(Box::new(decision))),
        Err(verdict::End::Step(step)) => Ok(*step),
        Err(verdict::End::Failed(e)) => Err(e),
    }
}
