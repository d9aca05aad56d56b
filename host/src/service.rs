//! The application state of `granted serve` ([`Service`]): what every request shares.

use crate::commit::Committer;
use crate::guest::Guest;
use crate::kdf::KdfPool;
use crate::settings::{now, ServerSettings};
use crate::signing::ServerKey;
use crate::store::Store;
use crate::throttle::Throttle;
use anyhow::Result;
use granted_policy::model::Timestamp;
use granted_policy::token::jwt::SigningAlg;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long keys read from the store are used before they are read again.
const KEYS_FRESH: Duration = Duration::from_secs(1);

/// Instances of the pool kept for the admin API and other single calls.
const RESERVED_INSTANCES: usize = 8;

/// What every request of `granted serve` shares: settings, store, the policy module, keys,
/// metrics, and the pools that work for requests (KDF threads, the group-commit writer, the
/// throttle).
pub struct Service {
    pub(crate) guest: Arc<Guest>,
    pub(crate) store: Store,
    pub(crate) settings: ServerSettings,
    pub(crate) kdf: KdfPool,
    /// Every decision's audit record and effects, when `record_decisions` is set.
    pub(crate) decisions: std::sync::Mutex<Vec<Value>>,
    pub(crate) throttle: Throttle,
    pub(crate) committer: Committer,
    pub(crate) metrics: crate::metrics::Metrics,
    /// Refusals before client authentication, counted for their aggregate audit entries.
    pub(crate) refusals: crate::refusals::Refusals,
    /// The connections held, refused and closed by their limits.
    pub(crate) connections: Arc<crate::metrics::ConnectionStats>,
    /// The client of requests to tenants' identity providers (deadline, answer cap, no
    /// redirects).
    pub(crate) upstream: crate::upstream::Upstream,
    /// Instances token and manage requests may hold at once: beyond the pool's size a request
    /// waits for one instead of failing (a few are kept for the admin API).
    pub(crate) sessions: tokio::sync::Semaphore,
    /// The keys last read, and when.
    keys: std::sync::Mutex<Option<(Instant, Arc<KeyRing>)>>,
    /// Copies of the module's memory at the end of each token and manage request, when a test
    /// asked for them ([`Service::probe_memory`]).
    #[cfg(feature = "testing")]
    memory_probe: std::sync::Mutex<Option<Vec<Vec<u8>>>>,
}

/// The server keys as requests use them, opened: the key that signs, every key published (the
/// JWKS, and what introspection verifies with), and the client-secret key.
pub struct KeyRing {
    /// The key that signs now.
    pub signing: Arc<ServerKey>,
    /// Every key whose tokens may still be live, newest first (the signing key among them).
    pub published: Vec<Arc<ServerKey>>,
    /// The key client secrets are HMACed under, base64.
    pub client_secret_key: String,
}

impl KeyRing {
    /// The published key `kid`, if its algorithm is `alg`.
    pub fn published(&self, kid: &str, alg: SigningAlg) -> Option<&ServerKey> {
        self.published
            .iter()
            .find(|k| k.kid() == kid && k.alg() == alg)
            .map(|k| &**k)
    }

    /// Reads the keys at `now` from `store`, opening only those `earlier` does not hold.
    pub fn read(store: &Store, now: Timestamp, earlier: Option<&KeyRing>) -> Result<KeyRing> {
        let (signing, client_secret_key) = store
            .current_keys(now)?
            .ok_or_else(|| anyhow::anyhow!("no server keys"))?;
        let open = |key: &crate::store::SigningKey| -> Result<Arc<ServerKey>> {
            let known = earlier
                .into_iter()
                .flat_map(|r| r.published.iter())
                .find(|k| k.kid() == key.kid && k.alg() == key.alg);
            if let Some(known) = known {
                return Ok(known.clone());
            }
            Ok(Arc::new(ServerKey::open(&key.kid, key.alg, &key.secret)?))
        };
        let published = store
            .verification_keys(now)?
            .iter()
            .map(open)
            .collect::<Result<Vec<_>>>()?;
        let signing = match published
            .iter()
            .find(|k| k.kid() == signing.kid && k.alg() == signing.alg)
        {
            Some(key) => key.clone(),
            None => open(&signing)?,
        };
        Ok(KeyRing {
            signing,
            published,
            client_secret_key,
        })
    }
}

impl Service {
    /// A server over `store` and `guest`; makes the server keys on first start.
    pub fn new(
        guest: impl Into<Arc<Guest>>,
        store: Store,
        settings: ServerSettings,
    ) -> Result<Arc<Service>> {
        let now = now(&settings)?;
        let (current, _) = store.ensure_keys(now, settings.signing_alg, || {
            crate::random::random_base64(32)
        })?;
        if current.alg != settings.signing_alg {
            tracing::warn!(
                current = current.alg.name(),
                configured = settings.signing_alg.name(),
                "access tokens are signed with the current key's algorithm; run `granted keys rotate` to move to the configured one"
            );
        }
        let kdf = KdfPool::start(settings.kdf_threads, settings.login_queue);
        let committer = Committer::start(store.clone());
        let guest: Arc<Guest> = guest.into();
        let sessions = tokio::sync::Semaphore::new(
            (guest.max_instances() as usize)
                .saturating_sub(RESERVED_INSTANCES)
                .max(1),
        );
        if let Some(days) = settings.audit_retention_days {
            start_retention(store.clone(), settings.clone(), days);
        }
        let throttle = Throttle::new(&store, &settings);
        let refusal_window = settings.audit_aggregate_window;
        Ok(Arc::new(Service {
            guest,
            store,
            settings,
            kdf,
            decisions: std::sync::Mutex::new(Vec::new()),
            throttle,
            committer,
            metrics: crate::metrics::Metrics::default(),
            connections: Arc::default(),
            upstream: crate::upstream::Upstream::default(),
            refusals: crate::refusals::Refusals::new(refusal_window),
            sessions,
            keys: std::sync::Mutex::new(None),
            #[cfg(feature = "testing")]
            memory_probe: std::sync::Mutex::new(None),
        }))
    }

    /// Imports a state file: client secrets HMACed by the module under the server key,
    /// clear passwords hashed natively with the configured iterations.
    pub fn import(&self, state: &crate::state::StateFile) -> Result<crate::state::Imported> {
        let key = self
            .store
            .client_secret_key()?
            .ok_or_else(|| anyhow::anyhow!("no server keys"))?;
        let guest = &self.guest;
        let hmac = move |secret: &str| -> Result<String> {
            let input = serde_json::to_vec(&json!({"key": key, "secret": secret}))?;
            let out: Value = serde_json::from_slice(&guest.call("hash_client_secret", &input)?)?;
            out["ok"]["secret_hmac"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| {
                    anyhow::anyhow!("the module refused a client secret: {}", out["error"])
                })
        };
        let sealer = crate::state::Sealer {
            iterations: self.settings.kdf_iterations,
            hmac: &hmac,
            random: &crate::random::random_bytes,
        };
        crate::state::import(&self.store, state, &sealer)
    }

    /// Keeps a decision for [`Service::take_decisions`] (with `record_decisions`).
    pub(crate) fn record_decision(&self, decision: Value) {
        self.decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(decision);
    }

    /// The decisions recorded so far (with `record_decisions`), oldest first; emptied.
    pub fn take_decisions(&self) -> Vec<Value> {
        std::mem::take(&mut *self.decisions.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The server keys, read from the store at most once per [`KEYS_FRESH`]: a key rotated
    /// with `granted keys rotate` is published, and starts signing when its time comes, within
    /// that time.
    pub(crate) async fn keys(&self) -> Result<Arc<KeyRing>> {
        let earlier = {
            let cached = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            match cached.as_ref() {
                Some((read_at, keys)) if read_at.elapsed() < KEYS_FRESH => return Ok(keys.clone()),
                Some((_, keys)) => Some(keys.clone()),
                None => None,
            }
        };
        let store = self.store.clone();
        let at = now(&self.settings)?;
        let keys = tokio::task::spawn_blocking(move || {
            KeyRing::read(&store, at, earlier.as_deref()).map(Arc::new)
        })
        .await??;
        *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// Keeps a copy of the module's linear memory at the end of every token and manage request
    /// from now on (tests: no private key ever enters it).
    #[cfg(feature = "testing")]
    pub fn probe_memory(&self) {
        *self.memory_probe.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
    }

    /// The memory copies kept since [`Service::probe_memory`]; emptied.
    #[cfg(feature = "testing")]
    pub fn take_memory(&self) -> Vec<Vec<u8>> {
        self.memory_probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// A copy of `session`'s memory for [`Service::take_memory`], when a test asked for it.
    pub(crate) fn note_memory(&self, session: &crate::guest::Session) {
        #[cfg(feature = "testing")]
        if let Some(kept) = self
            .memory_probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            kept.push(session.memory_snapshot());
        }
        #[cfg(not(feature = "testing"))]
        let _ = session;
    }

    /// The policy module's SHA-256.
    pub fn policy_sha256(&self) -> &str {
        self.guest.sha256()
    }
}

/// Removes audit entries older than `days`, at start and then hourly, on its own thread.
fn start_retention(store: Store, settings: ServerSettings, days: u32) {
    let _ = std::thread::Builder::new()
        .name("audit-retention".into())
        .spawn(move || loop {
            let cutoff = match now(&settings) {
                Ok(at) => at.plus_seconds(-(i64::from(days) * 86_400)),
                Err(e) => {
                    tracing::error!("audit retention skipped: {e}");
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                    continue;
                }
            };
            match store.prune_audit(cutoff) {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, days, "audit retention removed old entries"),
                Err(e) => tracing::error!("audit retention failed: {e:#}"),
            }
            std::thread::sleep(Duration::from_secs(3600));
        });
}

impl Service {
    /// Writes the aggregate audit entries of refusals whose window ended (all of them when
    /// `all`, at shutdown).
    pub(crate) async fn write_refusals(&self, all: bool) {
        let entries = self
            .refusals
            .take(Instant::now(), all, self.policy_sha256());
        for (at, entry) in entries {
            let job = crate::store::Job {
                effects: Vec::new(),
                audits: vec![("token".to_string(), entry.to_string())],
                now: at,
            };
            if let Err(e) = self.committer.submit(job).await {
                tracing::error!("could not write an aggregate audit entry: {e:#}");
            }
        }
    }
}
