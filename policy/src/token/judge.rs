//! Who is asking and how far the request got: the audit fields every decision carries, the
//! refusals that more than one rule gives, and how a rule ends a request early.

use super::request::quote;
use super::response;
use super::steps::{Audit, Decision, Effect, TokenStep};
use crate::error::PolicyError;
use crate::model::{Revision, Timestamp};
use crate::rules::eligibility::Ineligible;

/// Builds denials and successes with the audit fields filled in as far as the request got.
/// What the audit record says of the request so far; borrowed from the input until an audit
/// record is made (most steps end in a lookup or the KDF, not in an audit record).
pub(crate) struct Judge<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) grant_type: Option<&'a str>,
    pub(crate) basic: bool,
    pub(crate) app_id: Option<&'a str>,
    pub(crate) client_id: Option<&'a str>,
    pub(crate) username: Option<&'a str>,
    pub(crate) pinned_rev: Option<u32>,
}

impl<'a> Judge<'a> {
    /// Nothing known yet but the tenant in the URL.
    pub(crate) fn new(tenant: &'a str) -> Self {
        Judge {
            tenant,
            grant_type: None,
            basic: false,
            app_id: None,
            client_id: None,
            username: None,
            pinned_rev: None,
        }
    }

    pub(crate) fn audit(&self, decision: &str, rule: &str, reason: &str, cause: &str) -> Audit {
        Audit {
            decision: decision.into(),
            rule: rule.into(),
            reason: reason.into(),
            cause: cause.into(),
            grant_type: self.grant_type.map(str::to_string),
            tenant: self.tenant.into(),
            app_id: self.app_id.map(str::to_string),
            client_id: self.client_id.map(str::to_string),
            username: self.username.map(str::to_string),
            pinned_rev: self.pinned_rev,
        }
    }

    #[allow(clippy::too_many_arguments)] // one place builds every denial
    pub(super) fn deny(
        &self,
        rule: &str,
        status: u16,
        error: &str,
        description: &str,
        reason: &str,
        cause: &str,
        effects: Vec<Effect>,
    ) -> TokenStep {
        let www = status == 401 && self.basic;
        TokenStep::Done(Box::new(Decision {
            response: response::error(status, error, description, www),
            audit: self.audit("denied", rule, reason, cause),
            effects,
        }))
    }
}

/// The description of every T3 refusal.
pub(crate) const INVALID_CLIENT: &str = "client authentication failed";
pub(crate) const INVALID_USER: &str =
    "the user name or password is wrong, or the account cannot sign in";
pub(super) const INVALID_REFRESH: &str = "the refresh token is invalid, expired or revoked";

/// How a rule ends a request early: with its answer (a denial, or a step for the host), or with
/// an error in the host's input.
pub(super) enum End {
    Step(Box<TokenStep>),
    Failed(PolicyError),
}

impl End {
    pub(super) fn step(step: TokenStep) -> End {
        End::Step(Box::new(step))
    }
}

impl From<PolicyError> for End {
    fn from(e: PolicyError) -> Self {
        End::Failed(e)
    }
}

impl From<TokenStep> for End {
    fn from(step: TokenStep) -> Self {
        End::Step(Box::new(step))
    }
}

/// A rule's verdict: go on with what it found, or end the request.
pub(super) type Verdict<T> = Result<T, End>;

/// The step a request's rules came to, however they ended.
pub(super) fn settle(verdict: Verdict<TokenStep>) -> Result<TokenStep, PolicyError> {
    match verdict {
        Ok(step) => Ok(step),
        Err(End::Step(step)) => Ok(*step),
        Err(End::Failed(e)) => Err(e),
    }
}

pub(super) fn deny_client(judge: &Judge<'_>, reason: &str, cause: &str) -> TokenStep {
    judge.deny(
        "T3",
        401,
        "invalid_client",
        INVALID_CLIENT,
        reason,
        cause,
        Vec::new(),
    )
}

pub(super) fn deny_mismatch(judge: &Judge<'_>, pinned: &Revision, asked: &str) -> TokenStep {
    let description = format!(
        "this client's app (revision {}) uses the `{}` grant type, which does not allow `{}`",
        pinned.rev,
        pinned.grant_type.as_str(),
        quote(asked)
    );
    judge.deny(
        "T4",
        400,
        "unauthorized_client",
        &description,
        "grant_type_mismatch",
        "grant_type_mismatch",
        Vec::new(),
    )
}

pub(super) fn deny_ineligible(
    judge: &Judge<'_>,
    reason: Ineligible,
    sunset: Timestamp,
) -> TokenStep {
    let description = match reason {
        Ineligible::AppCreatedAfterSunset => format!(
            "the password grant was retired for apps created on or after {sunset} (R1): use `client_credentials`"
        ),
        Ineligible::ClientIdChanged => "the password grant is not available to this `client_id`, made after the sunset (R3): use `client_credentials`".to_string(),
        Ineligible::GrantTypeReverted => "this app left the password grant after the sunset and cannot return to it (R4): use `client_credentials`".to_string(),
        Ineligible::NotPasswordApp => "this app does not use the password grant".to_string(),
    };
    judge.deny(
        "T5",
        400,
        "unauthorized_client",
        &description,
        reason.code(),
        reason.code(),
        Vec::new(),
    )
}
