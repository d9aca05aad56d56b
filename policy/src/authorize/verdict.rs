//! How a check of the authorization endpoint ends: it goes on with what it found, or ends the
//! action with a final answer, a step for the host, or an error in the host's input.

use super::{AuthorizationStep, Page, PageDecision, SignedIn};
use crate::error::PolicyError;
use crate::token::steps::{Audit, Effect, Step};

/// How a check ends the action early: with its answer or a step for the host, or with an error
/// in the host's input.
pub(super) enum End {
    Step(Box<AuthorizationStep>),
    Failed(PolicyError),
}

impl End {
    pub(super) fn step(step: AuthorizationStep) -> End {
        End::Step(Box::new(step))
    }
}

impl From<PolicyError> for End {
    fn from(e: PolicyError) -> Self {
        End::Failed(e)
    }
}

/// A check's verdict: go on with what it found, or end the action.
pub(super) type Verdict<T> = Result<T, End>;

/// A final answer.
pub(super) fn decision(
    page: Page,
    audit: Audit,
    effects: Vec<Effect>,
    signed_in: Option<SignedIn>,
) -> AuthorizationStep {
    Step::Done(Box::new(PageDecision {
        page,
        audit,
        earlier: Vec::new(),
        effects,
        signed_in,
    }))
}
