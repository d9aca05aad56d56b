//! The VECTORS.md file format, with this project's extensions (marked below); parts the policy
//! judges stay JSON values, so the runner never interprets a rule.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;

/// One vector file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    /// What the case shows.
    pub name: String,
    /// RULES.md ids it exercises.
    #[serde(default)]
    pub rules: Vec<String>,
    /// RFC 3339 instant of the request.
    pub now: String,
    /// The sunset instant, when not the default.
    #[serde(default)]
    pub sunset: Option<String>,
    /// Apps and tenants.
    pub state: Value,
    /// A token request…
    #[serde(default)]
    pub token_request: Option<TokenRequestSpec>,
    /// …or an edit…
    #[serde(default)]
    pub edit: Option<Value>,
    /// …or a creation…
    #[serde(default)]
    pub create: Option<Value>,
    /// …or (extension) a sequence of token requests on one store…
    #[serde(default)]
    pub sequence: Option<Sequence>,
    /// …or an authorization request (§5), judged up to C8…
    #[serde(default)]
    pub authorize_request: Option<Value>,
    /// …or (extension) an authorization request followed through its pages and the exchange.
    #[serde(default)]
    pub flow: Option<Flow>,
    /// Extension: the lockout settings the runtime runs with (the token context's `lockout`:
    /// `threshold`, `first_seconds`, `max_seconds`); its defaults when absent.
    #[serde(default)]
    pub lockout: Option<Value>,
    /// What must hold; a sequence has its expectations in its steps.
    #[serde(default)]
    pub expect: Expect,
}

/// Extension: token requests sent one after the other to one store, each decision's effects
/// applied before the next request, as a host applies them (failures counted, locks set,
/// hashes replaced, refresh tokens stored and consumed).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sequence {
    /// The request every step sends, before the step's changes.
    pub token_request: TokenRequestSpec,
    /// The steps, in order.
    pub steps: Vec<SequenceStep>,
}

/// One step of a [`Sequence`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceStep {
    /// What the step shows.
    #[serde(default)]
    pub name: Option<String>,
    /// The instant it is judged at; the previous step's (the vector's `now` at first) when absent.
    #[serde(default)]
    pub at: Option<String>,
    /// Form parameters that replace the sequence's request's (`password`, `username`, …).
    #[serde(default)]
    pub form: BTreeMap<String, String>,
    /// How many times the request is sent, each answer checked against `expect`.
    #[serde(default = "one")]
    pub repeat: u32,
    /// What each answer must hold, as a token request's `expect`.
    #[serde(default)]
    pub expect: Expect,
    /// The lock in force on the request's user after the step, at its instant: its end, or
    /// `null` for none. Not checked when absent.
    #[serde(default, deserialize_with = "present")]
    pub locked_until: Option<Value>,
}

fn one() -> u32 {
    1
}

/// Extension: an authorization request (§5) followed by what the user does on each page and
/// then the code's exchange, on one store, each answer's effects applied before the next.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// The authorization request every page action carries.
    pub authorize_request: Value,
    /// The steps, in order.
    pub steps: Vec<FlowStep>,
}

/// One step of a [`Flow`]: exactly one of `action` and `exchange`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowStep {
    /// What the step shows.
    #[serde(default)]
    pub name: Option<String>,
    /// The instant it is judged at; the previous step's (the vector's `now` at first) when absent.
    #[serde(default)]
    pub at: Option<String>,
    /// A page action, as the `authorization` entry point takes it (`{"action": "sign_in", …}`).
    #[serde(default)]
    pub action: Option<Value>,
    /// A token request; a form value `{code}` is the code of the last redirect.
    #[serde(default)]
    pub exchange: Option<TokenRequestSpec>,
    /// What the answer must hold: a page's (`page`, `redirect`, `error`, `reason`, `cause`,
    /// `rule`, `effects`) or a token request's.
    #[serde(default)]
    pub expect: Expect,
}

impl Sequence {
    /// The request step `step` sends: the sequence's, with the step's form parameters.
    pub fn request(&self, step: &SequenceStep) -> TokenRequestSpec {
        let mut spec = self.token_request.clone();
        if let Some(form) = spec.form.as_mut() {
            for (k, v) in &step.form {
                form.insert(k.clone(), v.clone());
            }
        }
        spec
    }
}

/// `state`, as the runner reads it to build its store.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct State {
    /// Apps, with their secrets in clear.
    #[serde(default)]
    pub apps: Vec<AppSpec>,
    /// Tenants, with their users.
    #[serde(default)]
    pub tenants: Vec<TenantSpec>,
    /// Authorization codes already issued (§5), with the code in clear.
    #[serde(default)]
    pub codes: Vec<CodeSpec>,
}

/// An authorization code in `state`, with the code in clear.
#[derive(Clone, Debug, Deserialize)]
pub struct CodeSpec {
    /// The code as a client holds it.
    pub code: String,
    /// Everything it is bound to, as C12 stores it.
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}

/// An app in `state`.
#[derive(Clone, Debug, Deserialize)]
pub struct AppSpec {
    /// Its id.
    pub app_id: String,
    /// `client_id` to secret in clear.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Revisions, passed to the policy as they are.
    #[serde(default)]
    pub revisions: Vec<Value>,
    /// Everything else (`created_at`), passed on as it is.
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}

/// A tenant in `state`.
#[derive(Clone, Debug, Deserialize)]
pub struct TenantSpec {
    /// Its name.
    pub tenant: String,
    /// Users, passwords in clear or hashed.
    #[serde(default)]
    pub users: Vec<UserSpec>,
    /// Extension: refresh tokens already issued, in clear.
    #[serde(default)]
    pub refresh_tokens: Vec<RefreshSpec>,
    /// `sso_required`, `password_max_age_days`, `installs`: passed on as they are.
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}

/// A user in `state`.
#[derive(Clone, Debug, Deserialize)]
pub struct UserSpec {
    /// The username.
    pub username: String,
    /// The password in clear, hashed when the state is loaded.
    #[serde(default)]
    pub password: Option<String>,
    /// Or a PHC / Django hash, taken as it is.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// `sign_in`, `password_changed_at`, `disabled`, and the extension `locked_until`.
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}

/// Extension: a refresh token in `state`, with the token in clear.
#[derive(Clone, Debug, Deserialize)]
pub struct RefreshSpec {
    /// The token as a client holds it.
    pub token: String,
    /// `family_id`, `client_id`, `username`, `scope`, `grant_type`, `issued_at`, `expires_at`, `status`.
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}

/// `token_request`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequestSpec {
    /// The tenant in the path.
    pub tenant: String,
    /// `basic` or `body`; absent with `raw`.
    #[serde(default)]
    pub auth: Option<String>,
    /// The form parameters.
    #[serde(default)]
    pub form: Option<BTreeMap<String, String>>,
    /// Or a request sent as it is.
    #[serde(default)]
    pub raw: Option<RawRequest>,
}

/// `raw`: a request sent as it is.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    /// The method.
    #[serde(default = "post")]
    pub method: String,
    /// Header fields; a list value sends the header once per item (extension).
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    /// The body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// Extension: the body as base64, for bytes that are not UTF-8.
    #[serde(default)]
    pub body_base64: Option<String>,
}

fn post() -> String {
    "POST".into()
}

/// A header's value, or several values for a repeated header.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum HeaderValue {
    /// Sent once.
    One(String),
    /// Sent once per item.
    Many(Vec<String>),
}

/// `expect`: fields that are absent are not checked.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// HTTP status.
    pub status: Option<u16>,
    /// RFC 6749 error code.
    pub error: Option<String>,
    /// Reason code; `null` is checked too (an accepted edit with no reason).
    #[serde(default, deserialize_with = "present")]
    pub reason: Option<Value>,
    /// Granted scope.
    pub scope: Option<String>,
    /// A refresh token is issued.
    pub refresh_token: Option<bool>,
    /// Edit: accepted.
    pub accepted: Option<bool>,
    /// Edit: the proposed revision is password-eligible.
    pub password_eligible_after: Option<bool>,
    /// Edit: tenants that lose the password grant on update, sorted.
    pub tenants_losing_password_on_update: Option<Vec<String>>,
    /// Edit: accepting it ends the password grant for good.
    pub irreversible: Option<bool>,
    /// Extension: the audit's true cause.
    pub cause: Option<String>,
    /// Extension: the rule id that decided.
    pub rule: Option<String>,
    /// Extension: a fragment the `error_description` must contain.
    pub error_description_contains: Option<String>,
    /// Extension: a `WWW-Authenticate: Basic` header is sent.
    pub www_authenticate: Option<bool>,
    /// Extension: the kinds of effects, in order.
    pub effects: Option<Vec<String>>,
    /// Authorization request: the answer goes back to the redirect URI (false: an error page).
    pub redirect: Option<bool>,
    /// Code exchange: an `id_token` is issued.
    pub id_token: Option<bool>,
    /// Extension: the page shown (`error`, `redirect`, `sign_in`, `change_password`, `consent`).
    pub page: Option<String>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}
