//! The sunset rules of RULES.md §2 and §3: eligibility of a revision and admin edits.

pub mod edit;
pub mod eligibility;
pub mod status;
