//! The records that change only by an admin write (tenants with their installs, clients with
//! their apps), kept in memory between token requests.
//!
//! Every write to `tenants`, `installs`, `apps`, `revisions` or `clients` bumps the one row of
//! `records_version`, by triggers in the database (migration 8), in the writing transaction
//! itself: whoever writes (this host, another host on the same PostgreSQL database, an import,
//! an operator with `psql`), the version moves when the change commits. A token request reads
//! the version in the same snapshot as the rest of its records, and takes a cached record only
//! when it was read at that same version. So a request that begins after an admin write was
//! acknowledged never sees what the write replaced, on any host.
//!
//! Only records that exist are kept, at most [`CACHED_MAX`] of each kind: requests that name
//! unknown tenants or clients (anyone can send them) never grow the cache.

use granted_policy::model::{ClientRecord, TenantRecord};
use std::collections::HashMap;
use std::sync::Mutex;

/// The most tenants, and the most clients, kept; beyond them records are read each time.
pub(super) const CACHED_MAX: usize = 10_000;

/// The cache: records read at one version of the database.
#[derive(Default)]
pub(super) struct RecordsCache {
    inner: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// The version every record here was read at.
    version: i64,
    tenants: HashMap<String, TenantRecord>,
    clients: HashMap<String, ClientRecord>,
}

impl Cached {
    /// Moves to `version` when it is newer (forgetting everything read before); whether the
    /// cache now holds records of `version` (false for a snapshot older than the cache).
    fn at(&mut self, version: i64) -> bool {
        if version > self.version {
            self.version = version;
            self.tenants.clear();
            self.clients.clear();
        }
        version == self.version
    }
}

impl RecordsCache {
    fn cached(&self) -> std::sync::MutexGuard<'_, Cached> {
        // Nothing here is left half done by a panic: a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The tenant `name` as read at `version`, if the cache holds it.
    pub(super) fn tenant(&self, version: i64, name: &str) -> Option<TenantRecord> {
        let mut cached = self.cached();
        if !cached.at(version) {
            return None;
        }
        cached.tenants.get(name).cloned()
    }

    /// The client `client_id` as read at `version`, if the cache holds it.
    pub(super) fn client(&self, version: i64, client_id: &str) -> Option<ClientRecord> {
        let mut cached = self.cached();
        if !cached.at(version) {
            return None;
        }
        cached.clients.get(client_id).cloned()
    }

    /// Keeps `tenant`, read at `version` (unless the cache has moved past it, or is full).
    pub(super) fn keep_tenant(&self, version: i64, tenant: &TenantRecord) {
        let mut cached = self.cached();
        if cached.at(version) && cached.tenants.len() < CACHED_MAX {
            cached.tenants.insert(tenant.tenant.clone(), tenant.clone());
        }
    }

    /// Keeps `client`, read at `version` (unless the cache has moved past it, or is full).
    pub(super) fn keep_client(&self, version: i64, client: &ClientRecord) {
        let mut cached = self.cached();
        if cached.at(version) && cached.clients.len() < CACHED_MAX {
            cached
                .clients
                .insert(client.client_id.clone(), client.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, sso: bool) -> TenantRecord {
        TenantRecord {
            tenant: name.to_string(),
            sso_required: sso,
            password_max_age_days: None,
            installs: Vec::new(),
            identity_provider: None,
        }
    }

    #[test]
    fn a_record_is_served_only_at_the_version_it_was_read_at() {
        let cache = RecordsCache::default();
        cache.keep_tenant(3, &tenant("acme", false));
        assert_eq!(cache.tenant(3, "acme"), Some(tenant("acme", false)));
        // A newer version forgets it.
        assert_eq!(cache.tenant(4, "acme"), None);
        assert_eq!(cache.tenant(3, "acme"), None);
    }

    #[test]
    fn a_record_read_in_an_older_snapshot_is_not_kept_after_a_newer_one_was_seen() {
        let cache = RecordsCache::default();
        // One request's snapshot is at version 5 …
        assert_eq!(cache.tenant(5, "acme"), None);
        // … another's, begun after an admin write, at 6;
        assert_eq!(cache.tenant(6, "acme"), None);
        // the first one's record (read at 5) must not be served at 6.
        cache.keep_tenant(5, &tenant("acme", false));
        assert_eq!(cache.tenant(6, "acme"), None);
        cache.keep_tenant(6, &tenant("acme", true));
        assert_eq!(cache.tenant(6, "acme"), Some(tenant("acme", true)));
    }

    #[test]
    fn the_cache_holds_at_most_its_limit() {
        let cache = RecordsCache::default();
        for i in 0..CACHED_MAX + 10 {
            cache.keep_tenant(1, &tenant(&format!("t{i}"), false));
        }
        assert_eq!(cache.cached().tenants.len(), CACHED_MAX);
        assert_eq!(cache.tenant(1, &format!("t{}", CACHED_MAX + 5)), None);
    }
}
