//! Throttling of failed client and user authentications per (client, source address).

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
    failures: std::sync::Mutex<HashMap<(String, IpAddr), VecDeque<Instant>>>,
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

    /// Pairs kept at most; past it, the map is cleared (an attacker spraying sources cannot
    /// grow it without bound; throttling restarts from zero for everyone).
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
            failures: std::sync::Mutex::default(),
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
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut wait = None;
        for key in [clip(client_id), String::new()] {
            let Some(times) = map.get_mut(&(key, source)) else {
                continue;
            };
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                times.pop_front();
            }
            if times.len() >= settings.throttle_failures.max(1) as usize {
                let left = times
                    .front()
                    .map(|oldest| window.saturating_sub(now.duration_since(*oldest)));
                wait = wait.max(left);
            }
        }
        wait
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
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() >= Self::MAX_PAIRS {
            map.clear();
        }
        let times = map.entry((clip(client_id), source)).or_default();
        times.push_back(now);
        while times.len() > settings.throttle_failures.max(1) as usize {
            times.pop_front();
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
