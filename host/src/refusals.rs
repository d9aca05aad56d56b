//! Audit entries of requests refused before any client authentication (malformed requests,
//! unsupported grant types), aggregated per source address and reason over a short window: the
//! first refusal of a window is written as usual, later ones are counted and written as one
//! entry when the window ends. A flood of garbage adds at most two entries per source, reason
//! and window, not one per request.

use granted_policy::model::Timestamp;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Windows open at once at most; past it, a refusal from a new source is written on its own.
const MAX_OPEN: usize = 10_000;

/// Whether a refusal's own audit entry is written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The first of its window (or no room to count it): write it as usual.
    Write,
    /// Counted in its window's aggregate entry.
    Counted,
}

/// One open window of one source and reason.
struct Tally {
    opened: Instant,
    rule: String,
    /// Refusals counted, not written one by one, and the first and last of them.
    counted: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
}

/// The open windows.
pub(crate) struct Refusals {
    open: Mutex<HashMap<(IpAddr, String), Tally>>,
    /// How long a window lasts; none: every refusal is written on its own.
    window: Option<Duration>,
}

/// Whether an audit record is a refusal before client authentication.
pub(crate) fn before_client_auth(rule: &str, decision: &str) -> bool {
    decision == "denied" && matches!(rule, "T1" | "T2")
}

impl Refusals {
    /// Windows of `window`; none writes every refusal on its own.
    pub(crate) fn new(window: Option<Duration>) -> Refusals {
        Refusals {
            open: Mutex::default(),
            window,
        }
    }

    /// Counts a refusal from `source` for `reason`, at `at` (`now` for the window).
    pub(crate) fn admit(
        &self,
        source: IpAddr,
        rule: &str,
        reason: &str,
        at: Timestamp,
        now: Instant,
    ) -> Admit {
        let Some(window) = self.window else {
            return Admit::Write;
        };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let key = (source, crate::throttle::clip(reason));
        if let Some(tally) = open.get_mut(&key) {
            // An open window counts; so does one that ended with counts not yet written (the
            // writer takes it within a second).
            if now.duration_since(tally.opened) < window || tally.counted > 0 {
                tally.counted += 1;
                tally.first.get_or_insert(at);
                tally.last = Some(at);
                return Admit::Counted;
            }
        } else if open.len() >= MAX_OPEN {
            return Admit::Write;
        }
        open.insert(
            key,
            Tally {
                opened: now,
                rule: crate::throttle::clip(rule),
                counted: 0,
                first: None,
                last: None,
            },
        );
        Admit::Write
    }

    /// The aggregate entries of the windows that ended by `now` (all of them when `all`), as
    /// audit entries to write; their windows are closed.
    pub(crate) fn take(
        &self,
        now: Instant,
        all: bool,
        policy_sha256: &str,
    ) -> Vec<(Timestamp, Value)> {
        let window = self.window.unwrap_or_default();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let ended: Vec<(IpAddr, String)> = open
            .iter()
            .filter(|(_, t)| all || now.duration_since(t.opened) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        let mut entries = Vec::new();
        for key in ended {
            let Some(tally) = open.remove(&key) else {
                continue;
            };
            let (Some(first), Some(last)) = (tally.first, tally.last) else {
                continue;
            };
            let (source, reason) = key;
            entries.push((
                last,
                json!({
                    "at": last,
                    "kind": "token",
                    "decision": "denied",
                    "rule": tally.rule,
                    "reason": reason,
                    "cause": reason,
                    "grant_type": null,
                    "tenant": null,
                    "app_id": null,
                    "client_id": null,
                    "username": null,
                    "pinned_rev": null,
                    "source": source.to_string(),
                    "policy_sha256": policy_sha256,
                    "aggregate": {"count": tally.counted, "first_at": first, "last_at": last},
                }),
            ));
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::AUDIT_AGGREGATE_WINDOW as WINDOW;

    #[test]
    fn a_flood_from_one_source_is_one_entry_and_one_aggregate_per_window() {
        let refusals = Refusals::new(Some(WINDOW));
        let source: IpAddr = [10, 0, 0, 1].into();
        let at = granted_policy::model::default_sunset();
        let start = Instant::now();
        let mut written = 0;
        for i in 0..1000u64 {
            let now = start + Duration::from_millis(i);
            if refusals.admit(source, "T2", "unsupported_grant_type", at, now) == Admit::Write {
                written += 1;
            }
        }
        assert_eq!(written, 1);
        assert!(refusals
            .take(start + Duration::from_secs(1), false, "x")
            .is_empty());
        let aggregates = refusals.take(start + WINDOW, false, "x");
        assert_eq!(aggregates.len(), 1);
        assert_eq!(aggregates[0].1["aggregate"]["count"], 999);
        assert_eq!(aggregates[0].1["source"], "10.0.0.1");
        // The next window starts with a written entry again.
        let later = start + WINDOW + Duration::from_secs(1);
        assert_eq!(
            refusals.admit(source, "T2", "unsupported_grant_type", at, later),
            Admit::Write
        );
    }

    #[test]
    fn without_a_window_every_refusal_is_written() {
        let refusals = Refusals::new(None);
        let source: IpAddr = [10, 0, 0, 1].into();
        let at = granted_policy::model::default_sunset();
        for _ in 0..3 {
            assert_eq!(
                refusals.admit(source, "T1", "malformed_request", at, Instant::now()),
                Admit::Write
            );
        }
    }
}
