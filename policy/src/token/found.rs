//! What T3 found for a request: the records the host looked up, and the client authenticated
//! and installed with the app revision its tenant pins. The rules after T3 (`rules.rs`, and the
//! code exchange's `exchange.rs`) read them.

use crate::model::{ClientRecord, CodeRecord, RefreshTokenRecord, Revision, TenantRecord};

/// The records a request needs, once the host has looked them up.
pub(super) struct Found<'a> {
    pub(super) tenant: &'a Option<TenantRecord>,
    pub(super) client: &'a Option<ClientRecord>,
    /// The refresh token presented, as found (`None`: not found); `None` for other grants.
    pub(super) refresh: Option<&'a RefreshTokenRecord>,
    pub(super) refresh_hash: Option<String>,
    /// The code presented, as found (`None`: not found); `None` for other grants.
    pub(super) code: Option<&'a CodeRecord>,
    pub(super) code_hash: Option<String>,
    /// The user the request is for: the `username` parameter, or the refresh token's or the
    /// code's user.
    pub(super) username: Option<&'a str>,
}

/// The client, authenticated and installed, and the app revision its tenant pins.
pub(super) struct Pinned<'a> {
    pub(super) tenant: &'a TenantRecord,
    pub(super) client: &'a ClientRecord,
    pub(super) index: usize,
    pub(super) revision: &'a Revision,
}
