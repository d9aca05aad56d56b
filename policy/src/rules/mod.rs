//! The sunset rules of RULES.md §2 and §3, §5's and §6's admin edits: eligibility of a
//! revision, admin edits, redirect URIs and a tenant's identity provider (A9).

pub mod edit;
pub mod eligibility;
pub mod identity_provider;
pub mod redirect;
pub mod status;
