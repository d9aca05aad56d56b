//! The sunset rules of RULES.md §2 and §3, and §5's admin edits: eligibility of a revision,
//! admin edits and redirect URIs.

pub mod edit;
pub mod eligibility;
pub mod redirect;
pub mod status;
