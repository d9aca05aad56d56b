//! Throttling of failed client and user authentications per (client, source address), and of
//! requests refused before any client authentication per source address. Both tables are
//! bounded: past their size the oldest entries go, but never one that is throttling now.

use crate::settings::ServerSettings;
use crate::store::Store;
use anyhow::Result;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed authentications per (client, source address) in a sliding window: in memory for one
/// host on SQLite; in the database for hosts that share PostgreSQL, so that a client failing on
/// one host is throttled on all of them.
pub(crate) struct Throttle {
    failures: std::sync::Mutex<Recent<(String, IpAddr)>>,
    /// Requests refused before client authentication (malformed, unsupported), per source.
    refused: std::sync::Mutex<Recent<IpAddr>>,
    /// On a shared database: the store it reads, and the writer thread it hands failures to.
    shared: Option<(
        Store,
        std::sync::mpsc::SyncSender<crate::store::ThrottleFailure>,
    )>,
}

impl Throttle {
    fn window(settings: &ServerSettings) -> Duration {
        Duration::from_secs(settings.throttle_window_seconds.max(1))
    }

    /// Pairs (and sources) kept at most; past it, the oldest that throttle nobody go.
    const MAX_PAIRS: usize = 100_000;

    /// Failures waiting for the shared writer at most; past it, more are dropped (and logged).
    const SHARED_QUEUE: usize = 10_000;

    /// In memory, or in `store` when other hosts may share it.
    pub(crate) fn new(store: &Store, settings: &ServerSettings) -> Throttle {
        let shared = store.blocks_runtime().then(|| {
            let (sender, receiver) =
                std::sync::mpsc::sync_channel::<crate::store::ThrottleFailure>(Self::SHARED_QUEUE);
            let writer = store.clone();
            let window_ms = Self::window(settings).as_millis() as i64;
            let _ = std::thread::Builder::new()
                .name("throttle-writer".into())
                .spawn(move || {
                    while let Ok(first) = receiver.recv() {
                        let mut batch = vec![first];
                        batch.extend(receiver.try_iter().take(255));
                        if let Err(e) = writer.throttle_record(&batch, epoch_ms(), window_ms) {
                            tracing::warn!(
                                "could not record {} failed authentications for throttling: {e:#}",
                                batch.len()
                            );
                        }
                    }
                });
            (store.clone(), sender)
        });
        Throttle {
            failures: std::sync::Mutex::new(Recent::new(Self::MAX_PAIRS)),
            refused: std::sync::Mutex::new(Recent::new(Self::MAX_PAIRS)),
            shared,
        }
    }

    /// How long this client and source must wait, if they are over the limit. Failures of
    /// unknown clients from a source count in one bucket (`""`), so that spraying made-up
    /// `client_id`s is throttled too.
    pub(crate) async fn blocked(
        &self,
        client_id: &str,
        source: IpAddr,
        settings: &ServerSettings,
    ) -> Result<Option<Duration>> {
        // This host's own failures count at once; the other hosts' once their writer has
        // stored them (milliseconds later).
        let local = self.blocked_here(client_id, source, settings);
        let Some((store, _)) = &self.shared else {
            return Ok(local);
        };
        let store = store.clone();
        let check = Self::check(client_id, source, settings);
        let shared = tokio::task::spawn_blocking(move || store.throttle_wait(&check)).await??;
        Ok(local.max(shared.map(|ms| Duration::from_millis(ms.max(0) as u64))))
    }

    /// What the shared throttle is asked about this client and source, now.
    pub(crate) fn check(
        client_id: &str,
        source: IpAddr,
        settings: &ServerSettings,
    ) -> crate::store::ThrottleCheck {
        crate::store::ThrottleCheck {
            client_id: clip(client_id),
            source: source.to_string(),
            now_ms: epoch_ms(),
            window_ms: Self::window(settings).as_millis() as i64,
            limit: settings.throttle_failures,
        }
    }

    /// The wait from this host's own failures (in memory).
    pub(crate) fn blocked_here(
        &self,
        client_id: &str,
        source: IpAddr,
        settings: &ServerSettings,
    ) -> Option<Duration> {
        let window = Self::window(settings);
        let limit = settings.throttle_failures.max(1) as usize;
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut wait = None;
        for key in [clip(client_id), String::new()] {
            wait = wait.max(map.wait(&(key, source), now, window, limit));
        }
        wait
    }

    /// How long `source` must wait after too many requests refused before client
    /// authentication (malformed, unsupported grant type), if it is over the limit.
    pub(crate) fn source_blocked(
        &self,
        source: IpAddr,
        settings: &ServerSettings,
    ) -> Option<Duration> {
        let window = Self::window(settings);
        let limit = settings.throttle_source_failures.max(1) as usize;
        let mut map = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        map.wait(&source, Instant::now(), window, limit)
    }

    /// Counts a request from `source` refused before client authentication.
    pub(crate) fn refused_before_auth(&self, source: IpAddr, settings: &ServerSettings) {
        let window = Self::window(settings);
        let limit = settings.throttle_source_failures.max(1) as usize;
        let mut map = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        map.add(source, Instant::now(), window, limit);
    }

    pub(crate) fn failed(&self, client_id: &str, source: IpAddr, settings: &ServerSettings) {
        if let Some((_, writer)) = &self.shared {
            if writer
                .try_send((clip(client_id), source.to_string(), epoch_ms()))
                .is_err()
            {
                tracing::warn!(
                    "the throttle's writer is behind: a failed authentication was not shared with the other hosts"
                );
            }
        }
        let window = Self::window(settings);
        let limit = settings.throttle_failures.max(1) as usize;
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.add((clip(client_id), source), Instant::now(), window, limit);
    }
}

/// Recent failures per key, in a sliding window, for at most `capacity` keys. A new key past
/// the capacity evicts the oldest key that throttles nobody now; a key that is over its limit is
/// kept (moved to the back), so a spray of new keys cannot lift a throttle.
pub(crate) struct Recent<K> {
    times: HashMap<K, VecDeque<Instant>>,
    /// Keys in the order they were added (a kept key goes to the back again).
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: std::hash::Hash + Eq + Clone> Recent<K> {
    /// Keys looked at, at most, to find one to evict before the oldest goes whatever it holds.
    const EVICTION_SCAN: usize = 64;

    pub(crate) fn new(capacity: usize) -> Self {
        Recent {
            times: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.times.len()
    }

    /// How long `key` must wait, if it has `limit` failures within `window` of `now`.
    pub(crate) fn wait(
        &mut self,
        key: &K,
        now: Instant,
        window: Duration,
        limit: usize,
    ) -> Option<Duration> {
        let times = self.times.get_mut(key)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.len() < limit {
            return None;
        }
        times
            .front()
            .map(|oldest| window.saturating_sub(now.duration_since(*oldest)))
    }

    /// Counts a failure of `key` at `now` (the last `limit` are kept).
    pub(crate) fn add(&mut self, key: K, now: Instant, window: Duration, limit: usize) {
        if !self.times.contains_key(&key) {
            if self.times.len() >= self.capacity {
                self.evict(now, window, limit);
            }
            self.order.push_back(key.clone());
        }
        let times = self.times.entry(key).or_default();
        times.push_back(now);
        while times.len() > limit {
            times.pop_front();
        }
    }

    /// Removes one key: the oldest that is not throttled now, among the first few; else the
    /// oldest.
    fn evict(&mut self, now: Instant, window: Duration, limit: usize) {
        for _ in 0..Self::EVICTION_SCAN {
            let Some(key) = self.order.pop_front() else {
                return;
            };
            let throttling = self.times.get(&key).is_some_and(|times| {
                times.len() >= limit
                    && times
                        .front()
                        .is_some_and(|t| now.duration_since(*t) < window)
            });
            if throttling {
                self.order.push_back(key);
            } else if self.times.remove(&key).is_some() {
                return;
            }
        }
        if let Some(key) = self.order.pop_front() {
            self.times.remove(&key);
        }
    }
}

/// This host's clock, in milliseconds since the Unix epoch (throttling shared between hosts).
fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Client input kept to 128 characters (throttle keys, audit entries).
pub(crate) fn clip(text: &str) -> String {
    text.chars().take(128).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_key_stays_throttled_through_a_spray_of_new_keys() {
        let window = Duration::from_secs(60);
        let now = Instant::now();
        let mut recent = Recent::new(1_000);
        for _ in 0..3 {
            recent.add(0u32, now, window, 3);
        }
        assert!(recent.wait(&0, now, window, 3).is_some());
        for key in 1..200_000u32 {
            recent.add(key, now, window, 3);
            assert!(recent.len() <= 1_000);
        }
        assert!(recent.wait(&0, now, window, 3).is_some());
        // A sprayed key that has gone was one of the oldest.
        assert!(recent.wait(&1, now, window, 3).is_none());
    }

    #[test]
    fn a_throttled_client_and_source_stay_throttled_through_a_spray_of_200000_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(
            &crate::store::Location::File(dir.path().join("t.db")),
            &crate::store::PgOptions::default(),
        )
        .unwrap();
        let settings = ServerSettings::default();
        let throttle = Throttle::new(&store, &settings);
        let victim: IpAddr = [192, 0, 2, 1].into();
        for _ in 0..settings.throttle_failures {
            throttle.failed("crm-1", victim, &settings);
        }
        assert!(throttle.blocked_here("crm-1", victim, &settings).is_some());
        for i in 0..200_000u32 {
            let source = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            throttle.failed(&format!("spray-{i}"), source, &settings);
        }
        let held = throttle.failures.lock().unwrap().len();
        assert!(held <= Throttle::MAX_PAIRS, "{held} pairs held");
        assert!(throttle.blocked_here("crm-1", victim, &settings).is_some());
    }
}
