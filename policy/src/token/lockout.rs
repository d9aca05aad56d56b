//! The lockout of RULES.md §4 (RFC 6749 §4.3.2): how long failed logins lock a user out. A host
//! gives its settings in the token context; a failed login's effect carries the [`LockSchedule`]
//! they make, so that a store only counts and looks the length up.

use serde::{Deserialize, Serialize};

/// Longest schedule: locks double at most this many times before the length stays the same.
const MAX_DOUBLINGS: u32 = 30;

/// How failed logins lock a user out: `threshold` consecutive failures lock for
/// `first_seconds`, each further lock (with no success between) twice as long, up to
/// `max_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutSettings {
    /// Failures before a lock.
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// The first lock, in seconds.
    #[serde(default = "default_first")]
    pub first_seconds: i64,
    /// The longest lock, in seconds.
    #[serde(default = "default_max")]
    pub max_seconds: i64,
}

fn default_threshold() -> u32 {
    5
}
fn default_first() -> i64 {
    60
}
fn default_max() -> i64 {
    3600
}

impl Default for LockoutSettings {
    fn default() -> Self {
        LockoutSettings {
            threshold: default_threshold(),
            first_seconds: default_first(),
            max_seconds: default_max(),
        }
    }
}

/// What a store does with a failed login: it adds one to the user's failure count; when the
/// count reaches `lock_after`, it sets the count back to 0, locks the user until now plus
/// `lock_seconds[locks]` (the last entry for every later lock, see [`LockSchedule::length`]),
/// and adds one to the user's lock count. A success clears both counts. The count and the lock
/// are the store's, updated atomically, so concurrent failures are neither lost nor judged
/// against a stale count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockSchedule {
    /// Failures that make a lock (at least 1).
    pub lock_after: u32,
    /// Length in seconds of the first, second, … lock since the last success; the last entry
    /// holds for every lock after it. Never empty, each at least 1.
    pub lock_seconds: Vec<i64>,
}

impl LockSchedule {
    /// The length of a lock, in seconds, given how many locks came before it since the last
    /// success; `None` only for an empty schedule, which this module never makes.
    pub fn length(&self, locks_before: u64) -> Option<i64> {
        let index = usize::try_from(locks_before).unwrap_or(usize::MAX);
        self.lock_seconds
            .get(index)
            .or(self.lock_seconds.last())
            .copied()
    }
}

/// The schedule `settings` make: the first lock `first_seconds`, each next one doubled, capped
/// at `max_seconds`, at least 1 second; listed until the length stops changing.
pub fn schedule(settings: &LockoutSettings) -> LockSchedule {
    let mut lock_seconds: Vec<i64> = Vec::new();
    for doublings in 0..=MAX_DOUBLINGS {
        let length = settings
            .first_seconds
            .saturating_mul(1i64 << doublings)
            .min(settings.max_seconds)
            .max(1);
        if lock_seconds.last() == Some(&length) {
            break;
        }
        lock_seconds.push(length);
    }
    LockSchedule {
        lock_after: settings.threshold.max(1),
        lock_seconds,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_doubles_from_a_minute_to_an_hour() {
        let s = schedule(&LockoutSettings::default());
        assert_eq!(s.lock_after, 5);
        assert_eq!(s.lock_seconds, vec![60, 120, 240, 480, 960, 1920, 3600]);
        assert_eq!(s.length(0), Some(60));
        assert_eq!(s.length(6), Some(3600));
        assert_eq!(s.length(u64::MAX), Some(3600));
    }

    /// The lengths the stores computed before the rule moved here:
    /// `first * 2^min(locks, 30)`, capped at `max`, at least 1.
    #[test]
    fn lengths_match_the_former_formula() {
        for (first, max) in [
            (60, 3600),
            (1, i64::MAX),
            (0, 10),
            (-5, 10),
            (100, 50),
            (7, 7),
        ] {
            let s = schedule(&LockoutSettings {
                threshold: 0,
                first_seconds: first,
                max_seconds: max,
            });
            assert_eq!(s.lock_after, 1);
            assert!(!s.lock_seconds.is_empty() && s.lock_seconds.len() <= 31);
            for locks in 0u32..40 {
                let former = first.saturating_mul(1i64 << locks.min(30)).min(max).max(1);
                assert_eq!(
                    s.length(u64::from(locks)),
                    Some(former),
                    "{first} {max} {locks}"
                );
            }
        }
    }
}
