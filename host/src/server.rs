//! `granted serve`: the token endpoint over HTTP. The host does I/O only (store lookups, the
//! KDF on its own thread pool, effects in one transaction, the response); the policy module,
//! one fresh instance per request, makes every decision.

use crate::guest::{Guest, GuestError, Session};
use crate::store::{Applied, Job, LockoutPolicy, Store};
use anyhow::Result;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use granted_policy::credentials::kdf::KdfParams;
use granted_policy::model::Timestamp;
use granted_policy::token::endpoint::{Audit, Decision, KdfOutput, Lookup, Records, TokenStep};
use granted_policy::token::response::HttpResponse;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long keys read from the store are used before they are read again.
const KEYS_FRESH: Duration = Duration::from_secs(1);

/// Instances of the pool kept for the admin API and other single calls.
const RESERVED_INSTANCES: usize = 8;

/// The largest request body read (RFC 6749 requests are small).
pub const MAX_BODY: usize = 64 * 1024;

/// What the server needs besides the store and the module.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Base URL of this server (a tenant's issuer is `{issuer}/tenants/{tenant}`).
    pub issuer: String,
    /// PBKDF2 iterations of new hashes and of the unknown-user dummy.
    pub kdf_iterations: u32,
    /// KDF threads (the cores, by default).
    pub kdf_threads: usize,
    /// Password requests that may wait for a KDF thread before new ones get a 503.
    pub login_queue: usize,
    /// Lockout after failed logins.
    pub lockout: LockoutPolicy,
    /// A fixed clock (tests and `granted vectors --http`); the system clock when absent.
    pub fixed_now: Option<Timestamp>,
    /// The sunset instant; RULES.md's when absent.
    pub sunset: Option<Timestamp>,
    /// Access-token lifetime, seconds.
    pub access_token_ttl: u32,
    /// Refresh-token lifetime, seconds.
    pub refresh_token_ttl: u32,
    /// Keep every decision's audit record and effects in memory (`granted vectors --http`).
    pub record_decisions: bool,
    /// Failed client or user authentications from one client and source address within
    /// `throttle_window_seconds` before that pair gets 429s.
    pub throttle_failures: u32,
    /// The throttling window, seconds.
    pub throttle_window_seconds: u64,
    /// A header set by a trusted reverse proxy with the client's address (its last entry is
    /// taken); without it, the TCP peer is the source.
    pub trusted_proxy_header: Option<String>,
    /// Audit entries older than this many days are removed, hourly (kept forever when `None`).
    pub audit_retention_days: Option<u32>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            issuer: "http://127.0.0.1:8080".into(),
            kdf_iterations: 600_000,
            kdf_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            login_queue: 64,
            lockout: LockoutPolicy::default(),
            fixed_now: None,
            sunset: None,
            access_token_ttl: 3600,
            refresh_token_ttl: 30 * 24 * 3600,
            record_decisions: false,
            throttle_failures: 20,
            throttle_window_seconds: 60,
            trusted_proxy_header: None,
            audit_retention_days: None,
        }
    }
}

/// The server's shared state.
pub struct Server {
    pub(crate) guest: Arc<Guest>,
    pub(crate) store: Store,
    pub(crate) settings: ServerSettings,
    kdf: KdfPool,
    /// Every decision's audit record and effects, when `record_decisions` is set.
    decisions: std::sync::Mutex<Vec<Value>>,
    pub(crate) throttle: Throttle,
    committer: Committer,
    pub(crate) metrics: crate::metrics::Metrics,
    /// Instances token and manage requests may hold at once: beyond the pool's size a request
    /// waits for one instead of failing (a few are kept for the admin API).
    sessions: tokio::sync::Semaphore,
    /// The keys last read, and when.
    keys: std::sync::Mutex<Option<(Instant, (crate::store::SigningKey, String))>>,
}

impl Server {
    /// A server over `store` and `guest`; makes the server keys on first start.
    pub fn new(
        guest: impl Into<Arc<Guest>>,
        store: Store,
        settings: ServerSettings,
    ) -> Result<Arc<Server>> {
        let now = now(&settings);
        store.ensure_keys(now, || crate::state::random_base64(32))?;
        let kdf = KdfPool::start(settings.kdf_threads, settings.login_queue);
        let committer = Committer::start(store.clone(), settings.lockout);
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
        Ok(Arc::new(Server {
            guest,
            store,
            settings,
            kdf,
            decisions: std::sync::Mutex::new(Vec::new()),
            throttle,
            committer,
            metrics: crate::metrics::Metrics::default(),
            sessions,
            keys: std::sync::Mutex::new(None),
        }))
    }

    /// Imports a state file: client secrets HMACed by the module under the server key,
    /// clear passwords hashed natively with the configured iterations.
    pub fn import(&self, state: &crate::state::StateFile) -> Result<crate::state::Imported> {
        let (_, key) = self
            .store
            .current_keys()?
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
            random: &crate::state::random_bytes,
        };
        crate::state::import(&self.store, state, &sealer)
    }

    /// The decisions recorded so far (with `record_decisions`), oldest first; emptied.
    pub fn take_decisions(&self) -> Vec<Value> {
        std::mem::take(&mut *self.decisions.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The signing key and the client-secret key, read from the store at most once per
    /// [`KEYS_FRESH`]: a key rotated with `granted keys rotate` is used within that time.
    async fn current_keys(&self) -> Result<(crate::store::SigningKey, String), Failure> {
        {
            let cached = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((read_at, keys)) = cached.as_ref() {
                if read_at.elapsed() < KEYS_FRESH {
                    return Ok(keys.clone());
                }
            }
        }
        let store = self.store.clone();
        let keys = tokio::task::spawn_blocking(move || store.current_keys())
            .await
            .map_err(|e| Failure::Store(e.into()))?
            .map_err(Failure::Store)?
            .ok_or_else(|| Failure::Store(anyhow::anyhow!("no server keys")))?;
        *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// Counts a failure in the metrics and answers it.
    fn failed(&self, failure: &Failure) -> Response {
        match failure {
            Failure::Guest(e) => self.metrics.module_failure(e.code()),
            Failure::Module(_) => self.metrics.module_failure("policy_refused_host_input"),
            Failure::LoginQueueFull => self.metrics.login_queue_full(),
            Failure::Store(_) => {}
        }
        failure.response()
    }

    /// The policy module's SHA-256.
    pub fn policy_sha256(&self) -> &str {
        self.guest.sha256()
    }
}

pub fn now(settings: &ServerSettings) -> Timestamp {
    settings.fixed_now.unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Timestamp::from_unix(secs).unwrap_or_else(granted_policy::model::default_sunset)
    })
}

/// Removes audit entries older than `days`, at start and then hourly, on its own thread.
fn start_retention(store: Store, settings: ServerSettings, days: u32) {
    let _ = std::thread::Builder::new()
        .name("audit-retention".into())
        .spawn(move || loop {
            let cutoff = now(&settings).plus_seconds(-(i64::from(days) * 86_400));
            match store.prune_audit(cutoff) {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, days, "audit retention removed old entries"),
                Err(e) => tracing::error!("audit retention failed: {e:#}"),
            }
            std::thread::sleep(Duration::from_secs(3600));
        });
}

/// The HTTP routes.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/tenants/{tenant}/connect/token", any(token))
        .route(
            "/tenants/{tenant}/connect/revocation",
            manage_route("revocation"),
        )
        .route(
            "/tenants/{tenant}/connect/introspect",
            manage_route("introspection"),
        )
        .route(
            "/tenants/{tenant}/.well-known/oauth-authorization-server",
            get(metadata),
        )
        // RFC 8414 §3.1: the well-known segment goes before the issuer's path.
        .route(
            "/.well-known/oauth-authorization-server/tenants/{tenant}",
            get(metadata),
        )
        .route("/metrics", get(metrics))
        .nest("/admin/api/v1", crate::admin::routes())
        .merge(crate::page::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(server.clone(), timed))
        .with_state(server)
}

/// Times every request for the latency histograms, by endpoint.
async fn timed(
    State(server): State<Arc<Server>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let endpoint = if path.starts_with("/admin/api/") {
        "admin"
    } else if path.ends_with("/connect/token") {
        "token"
    } else if path.ends_with("/connect/revocation") {
        "revocation"
    } else if path.ends_with("/connect/introspect") {
        "introspection"
    } else if path.contains("/.well-known/") {
        "metadata"
    } else if path == "/healthz" {
        "health"
    } else if path == "/metrics" {
        "metrics"
    } else {
        "other"
    };
    let started = Instant::now();
    let response = next.run(request).await;
    server.metrics.observe(endpoint, started.elapsed());
    response
}

/// `GET /metrics`: the Prometheus text format.
async fn metrics(State(server): State<Arc<Server>>) -> Response {
    let store = server.store.clone();
    let at = now(&server.settings);
    let locked = tokio::task::spawn_blocking(move || store.users_locked(at))
        .await
        .ok()
        .and_then(Result::ok);
    let gauges = crate::metrics::Gauges {
        kdf_waiting: server.kdf.waiting(),
        kdf_queue_capacity: server.settings.login_queue.max(1),
        kdf_threads: server.settings.kdf_threads.max(1),
        users_locked: locked,
        lockouts: server.store.lockouts(),
    };
    let mut response = server.metrics.render(&gauges).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn healthz(State(server): State<Arc<Server>>) -> Response {
    Json(json!({
        "status": "ok",
        "policy_sha256": server.policy_sha256(),
        "abi_version": crate::guest::HOST_ABI_VERSION,
        "store": server.store.backend(),
        // Token requests get 503s while it is not (the host itself is up).
        "database_reachable": server.store.reachable(),
    }))
    .into_response()
}

async fn metadata(State(server): State<Arc<Server>>, Path(tenant): Path<String>) -> Response {
    let exists = {
        let store = server.store.clone();
        let t = tenant.clone();
        tokio::task::spawn_blocking(move || store.tenant(&t)).await
    };
    match exists {
        Ok(Ok(Some(_))) => {}
        Ok(Ok(None)) => return oauth_error(StatusCode::NOT_FOUND, "not_found", "no such tenant"),
        _ => return unavailable("the store is not answering"),
    }
    let issuer = format!("{}/tenants/{}", server.settings.issuer, tenant);
    Json(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/connect/token"),
        "revocation_endpoint": format!("{issuer}/connect/revocation"),
        "introspection_endpoint": format!("{issuer}/connect/introspect"),
        "grant_types_supported": ["password", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
    }))
    .into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

fn unavailable(description: &str) -> Response {
    let mut response = oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        description,
    );
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    response
}

/// Why a request could not be decided.
enum Failure {
    Guest(GuestError),
    Store(anyhow::Error),
    LoginQueueFull,
    Module(String),
}

impl Failure {
    fn response(&self) -> Response {
        match self {
            Failure::Guest(e) => {
                tracing::error!(code = e.code(), "policy module failed: {e}");
                unavailable("the policy module could not answer; try again")
            }
            Failure::Store(e) => {
                tracing::error!("store failed: {e:#}");
                unavailable("the store could not answer; try again")
            }
            Failure::LoginQueueFull => {
                tracing::warn!("login queue full: a password request was turned away");
                unavailable("too many sign-ins are waiting; try again shortly")
            }
            Failure::Module(message) => {
                tracing::error!("policy module refused the host's input: {message}");
                unavailable("the policy module could not answer; try again")
            }
        }
    }
}

impl From<GuestError> for Failure {
    fn from(e: GuestError) -> Self {
        Failure::Guest(e)
    }
}

/// The raw request as the module reads it, or the response for an unreadable body.
#[allow(clippy::result_large_err)] // the error is the response itself, built once per request
fn raw_request(
    tenant: &str,
    method: &Method,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Value, Response> {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is over 64 KiB",
            ))
        }
        Err(_) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request body could not be read",
            ))
        }
    };
    Ok(json!({
        "method": method.as_str(),
        "tenant": tenant,
        "headers": headers
            .iter()
            .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
            .collect::<Vec<_>>(),
        "body_base64": STANDARD.encode(&body),
    }))
}

async fn token(
    State(server): State<Arc<Server>>,
    Path(tenant): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let source = source_address(&server.settings, peer, &headers);
    let request = match raw_request(&tenant, &method, &headers, body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    // A refresh token consumed by a concurrent request between lookup and write: decide again,
    // now that the store shows it used (the module then answers reuse).
    for _ in 0..2 {
        match decide(&server, &request, source).await {
            Ok(Some(response)) => return response,
            Ok(None) => continue,
            Err(failure) => return server.failed(&failure),
        }
    }
    unavailable("the request could not be decided; try again")
}

/// The route of revocation or introspection: the module's `entry` point decides.
fn manage_route(entry: &'static str) -> axum::routing::MethodRouter<Arc<Server>> {
    any(
        move |State(server): State<Arc<Server>>,
              Path(tenant): Path<String>,
              ConnectInfo(peer): ConnectInfo<SocketAddr>,
              method: Method,
              headers: HeaderMap,
              body: Result<Bytes, axum::extract::rejection::BytesRejection>| async move {
            let source = source_address(&server.settings, peer, &headers);
            manage(&server, entry, &tenant, source, &method, &headers, body).await
        },
    )
}

/// Revocation and introspection: stateless module calls, records looked up between them.
async fn manage(
    server: &Arc<Server>,
    entry: &str,
    tenant: &str,
    source: IpAddr,
    method: &Method,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let request = match raw_request(tenant, method, headers, body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match decide_manage(server, entry, request, source).await {
        Ok(response) => response,
        Err(failure) => server.failed(&failure),
    }
}

async fn decide_manage(
    server: &Arc<Server>,
    entry: &str,
    request: Value,
    source: IpAddr,
) -> Result<Response, Failure> {
    let at = now(&server.settings);
    let store = server.store.clone();
    let (keys, verification) = tokio::task::spawn_blocking(move || {
        Ok::<_, anyhow::Error>((store.current_keys()?, store.verification_keys(at)?))
    })
    .await
    .map_err(|e| Failure::Store(e.into()))?
    .map_err(Failure::Store)?;
    let (_, client_secret_key) =
        keys.ok_or_else(|| Failure::Store(anyhow::anyhow!("no server keys")))?;
    let verification_keys: Vec<Value> = verification
        .into_iter()
        .map(|k| json!({"kid": k.kid, "secret": k.secret}))
        .collect();
    let mut input = json!({
        "request": request,
        "context": {
            "now": at,
            "client_secret_key": client_secret_key,
            "verification_keys": verification_keys,
        },
        "records": {},
    });
    let _instance = server
        .sessions
        .acquire()
        .await
        .map_err(|_| Failure::Guest(GuestError::Busy))?;
    let mut session = server.guest.session()?;
    for _ in 0..3 {
        let step: Value = call_as(&mut session, entry, &input)?;
        match step["step"].as_str() {
            Some("need_records") => {
                let lookup: Lookup = serde_json::from_value(step["lookup"].clone())
                    .map_err(|e| Failure::Module(format!("lookup: {e}")))?;
                let found = match records(server, lookup, source).await? {
                    Ok(found) => found,
                    Err(wait) => {
                        server.metrics.throttled();
                        return Ok(throttled(wait));
                    }
                };
                input["records"] =
                    serde_json::to_value(found).map_err(|e| Failure::Module(e.to_string()))?;
            }
            Some("done") => {
                let decision: Decision = serde_json::from_value(step)
                    .map_err(|e| Failure::Module(format!("decision: {e}")))?;
                note_failure(server, &decision.audit, source);
                return finish(server, decision, at, entry, source)
                    .await?
                    .ok_or_else(|| {
                        Failure::Module("a refresh race outside the token endpoint".into())
                    });
            }
            _ => return Err(Failure::Module(format!("unknown step {}", step["step"]))),
        }
    }
    Err(Failure::Module(
        "the module did not finish in 3 steps".into(),
    ))
}

/// One request through the module; `None` when it must be decided again.
async fn decide(
    server: &Arc<Server>,
    request: &Value,
    source: IpAddr,
) -> Result<Option<Response>, Failure> {
    let settings = &server.settings;
    let at = now(settings);
    let (signing, client_secret_key) = server.current_keys().await?;
    let entropy = crate::state::random_base64(64).map_err(Failure::Store)?;
    let mut context = json!({
        "now": at,
        "issuer": settings.issuer,
        "access_token_ttl": settings.access_token_ttl,
        "refresh_token_ttl": settings.refresh_token_ttl,
        "signing_key": {"kid": signing.kid, "secret": signing.secret},
        "client_secret_key": client_secret_key,
        "kdf_iterations": settings.kdf_iterations,
        "entropy": entropy,
    });
    if let Some(sunset) = settings.sunset {
        context["sunset"] = json!(sunset);
    }
    let input = json!({"request": request, "context": context});
    let _instance = server
        .sessions
        .acquire()
        .await
        .map_err(|_| Failure::Guest(GuestError::Busy))?;
    let mut session = server.guest.session()?;
    let mut step: TokenStep = call_as(&mut session, "token_start", &input)?;
    for _ in 0..6 {
        let more = match step {
            TokenStep::NeedRecords { lookup } => {
                let found = match records(server, lookup, source).await? {
                    Ok(found) => found,
                    Err(wait) => {
                        server.metrics.throttled();
                        return Ok(Some(throttled(wait)));
                    }
                };
                Resume {
                    records: Some(found),
                    kdf: None,
                }
            }
            TokenStep::NeedKdf { kdf, password } => {
                let derived = server.kdf.run(kdf, password).await?;
                Resume {
                    records: None,
                    kdf: Some(KdfOutput {
                        derived: STANDARD.encode(derived),
                    }),
                }
            }
            TokenStep::Done(decision) => {
                note_failure(server, &decision.audit, source);
                return finish(server, *decision, at, "token", source).await;
            }
        };
        step = call_as(&mut session, "token_resume", &more)?;
    }
    Err(Failure::Module(
        "the module did not finish in 6 steps".into(),
    ))
}

/// The input of `token_resume`: what the host adds after a step.
#[derive(serde::Serialize)]
struct Resume {
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<Records>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kdf: Option<KdfOutput>,
}

/// The module's answer to `entry`, read straight into `T` (the `ok` of its envelope).
fn call_as<T: DeserializeOwned>(
    session: &mut Session,
    entry: &str,
    input: &impl serde::Serialize,
) -> Result<T, Failure> {
    /// `{"ok": …}` or `{"error": …}`.
    #[derive(serde::Deserialize)]
    struct Envelope<T> {
        ok: Option<T>,
        error: Option<Value>,
    }
    let bytes = serde_json::to_vec(input).map_err(|e| Failure::Module(e.to_string()))?;
    let out = session.call(entry, &bytes)?;
    let envelope: Envelope<T> = serde_json::from_slice(&out).map_err(|e| {
        Failure::Guest(GuestError::BadOutput(format!(
            "not the expected answer: {e}"
        )))
    })?;
    match envelope {
        Envelope {
            error: Some(err), ..
        } => Err(Failure::Module(err.to_string())),
        Envelope { ok: Some(ok), .. } => Ok(ok),
        _ => Err(Failure::Guest(GuestError::BadOutput(
            "neither ok nor error".into(),
        ))),
    }
}

/// The records a `need_records` step asks for (`null` where nothing was found), or how long
/// this client and source must wait when failed authentications throttle them. On SQLite, on
/// the request's own thread: a few primary-key reads in one read transaction on a read-only
/// connection (WAL readers never wait for the writer), cheaper than handing the work to another
/// thread and back; the throttle is in memory. On PostgreSQL, on the blocking pool (its client
/// cannot run on the runtime's threads), the shared throttle read in the same snapshot.
async fn records(
    server: &Server,
    lookup: Lookup,
    source: IpAddr,
) -> Result<std::result::Result<Records, Duration>, Failure> {
    let settings = &server.settings;
    if let Some(wait) = server
        .throttle
        .blocked_here(&lookup.client_id, source, settings)
    {
        return Ok(Err(wait));
    }
    let store = server.store.clone();
    if !store.blocks_runtime() {
        return store.records(&lookup).map(Ok).map_err(Failure::Store);
    }
    let check = Throttle::check(&lookup.client_id, source, settings);
    let found =
        tokio::task::spawn_blocking(move || store.records_unless_throttled(&lookup, &check))
            .await
            .map_err(|e| Failure::Store(e.into()))?
            .map_err(Failure::Store)?;
    Ok(found.map_err(|ms| Duration::from_millis(ms.max(0) as u64)))
}

/// Applies the decision's effects (durably) and answers; `None` when a concurrent request
/// consumed the same refresh token first.
async fn finish(
    server: &Arc<Server>,
    decision: Decision,
    at: Timestamp,
    kind: &str,
    source: IpAddr,
) -> Result<Option<Response>, Failure> {
    let Decision {
        response,
        audit,
        effects,
    } = decision;
    // What `record_decisions` keeps, taken before the effects go to the writer.
    let recorded = server
        .settings
        .record_decisions
        .then(|| json!({"audit": &audit, "effects": &effects}));
    // The audit entry as stored and hashed: the module's record, where the request came from,
    // and which module decided.
    let entry = json!({
        "at": at,
        "kind": kind,
        "decision": audit.decision,
        "rule": audit.rule,
        "reason": audit.reason,
        "cause": audit.cause,
        "grant_type": audit.grant_type,
        "tenant": audit.tenant,
        "app_id": audit.app_id,
        "client_id": audit.client_id.as_deref().map(clip),
        "username": audit.username.as_deref().map(clip),
        "pinned_rev": audit.pinned_rev,
        "source": source.to_string(),
        "policy_sha256": server.policy_sha256(),
    });
    let job = Job {
        effects,
        audit: Some((kind.to_string(), entry.to_string())),
        now: at,
    };
    // Group commit: the answer goes out only once the effects and the audit entry are durable.
    match server.committer.submit(job).await? {
        Applied::Done => {}
        Applied::RefreshRace | Applied::LockRace => return Ok(None),
        Applied::Failed(e) => return Err(Failure::Store(anyhow::anyhow!(e))),
    }
    server.metrics.decision(
        kind,
        audit.grant_type.as_deref().unwrap_or(""),
        &audit.decision,
        &audit.reason,
        &audit.cause,
    );
    if let Some(recorded) = recorded {
        server
            .decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(recorded);
    }
    tracing::info!(
        target: "granted::audit",
        kind,
        decision = audit.decision.as_str(),
        rule = audit.rule.as_str(),
        reason = audit.reason.as_str(),
        cause = audit.cause.as_str(),
        grant_type = audit.grant_type.as_deref().unwrap_or_default(),
        tenant = audit.tenant.as_str(),
        client_id = audit.client_id.as_deref().unwrap_or_default(),
        username = audit.username.as_deref().unwrap_or_default(),
        source = %source,
        policy = server.policy_sha256(),
        "token decision"
    );
    Ok(Some(http_response(&response)))
}

/// Group commit: one writer thread takes every decision waiting and makes them durable in one
/// transaction, then answers each. Concurrent requests share the fsync; one alone pays it.
struct Committer {
    jobs: tokio::sync::mpsc::Sender<(Job, tokio::sync::oneshot::Sender<Result<Applied, String>>)>,
}

impl Committer {
    const MAX_BATCH: usize = 256;

    fn start(store: Store, lockout: LockoutPolicy) -> Committer {
        let (jobs, mut receiver) = tokio::sync::mpsc::channel::<(
            Job,
            tokio::sync::oneshot::Sender<Result<Applied, String>>,
        )>(4096);
        let _ = std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || {
                while let Some(first) = receiver.blocking_recv() {
                    let mut batch = vec![first];
                    while batch.len() < Self::MAX_BATCH {
                        match receiver.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let (work, replies): (Vec<Job>, Vec<_>) = batch.into_iter().unzip();
                    match store.apply_batch(&work, lockout) {
                        Ok(outcomes) => {
                            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                                let _ = reply.send(Ok(outcome));
                            }
                        }
                        Err(e) => {
                            let message = format!("{e:#}");
                            for reply in replies {
                                let _ = reply.send(Err(message.clone()));
                            }
                        }
                    }
                }
            });
        Committer { jobs }
    }

    async fn submit(&self, job: Job) -> Result<Applied, Failure> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send((job, reply))
            .await
            .map_err(|_| Failure::Store(anyhow::anyhow!("the group-commit writer stopped")))?;
        answer
            .await
            .map_err(|_| Failure::Store(anyhow::anyhow!("the group-commit writer stopped")))?
            .map_err(|e| Failure::Store(anyhow::anyhow!(e)))
    }
}

fn http_response(response: &HttpResponse) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = Response::new(Body::from(response.body.clone()));
    *out.status_mut() = status;
    for (name, value) in &response.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    out
}

/// The KDF step on its own threads, never on the async runtime: a bounded queue, and a quick
/// refusal when it is full.
struct KdfPool {
    jobs: tokio::sync::mpsc::Sender<KdfJob>,
}

struct KdfJob {
    params: KdfParams,
    password: String,
    reply: tokio::sync::oneshot::Sender<Result<Vec<u8>, String>>,
}

impl KdfPool {
    fn start(threads: usize, queue: usize) -> KdfPool {
        let (jobs, receiver) = tokio::sync::mpsc::channel::<KdfJob>(queue.max(1));
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for i in 0..threads.max(1) {
            let receiver = receiver.clone();
            let _ = std::thread::Builder::new()
                .name(format!("kdf-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = {
                            let mut guard = receiver.lock().unwrap_or_else(|p| p.into_inner());
                            guard.blocking_recv()
                        };
                        let Some(job) = job else { return };
                        // Tests wait for this line to know a login is in flight (no secret in it).
                        tracing::debug!("a password check started on a KDF thread");
                        let _ = job.reply.send(native_kdf(&job.params, &job.password));
                    }
                });
        }
        KdfPool { jobs }
    }

    /// Password requests waiting for a thread.
    fn waiting(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    async fn run(&self, params: KdfParams, password: String) -> Result<Vec<u8>, Failure> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(KdfJob {
                params,
                password,
                reply,
            })
            .map_err(|_| Failure::LoginQueueFull)?;
        match tokio::time::timeout(Duration::from_secs(30), answer).await {
            Ok(Ok(Ok(derived))) => Ok(derived),
            Ok(Ok(Err(message))) => Err(Failure::Module(message)),
            _ => Err(Failure::LoginQueueFull),
        }
    }
}

/// Runs this thread (a KDF thread) at a lower priority than the request threads, so that a
/// flood of logins, which keeps every KDF thread busy, does not starve the other requests of
/// CPU: they still answer within a few milliseconds while the logins take their turn.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority with PRIO_PROCESS and 0 changes only the calling thread's nice
        // value on Linux; it touches no memory.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        if rc != 0 {
            tracing::warn!("could not lower the KDF thread's priority");
        }
    }
}

/// PBKDF2 natively, with the module's parameters: the policy crate's own KDF compiled for this
/// machine (SHA-NI where the CPU has it), not the wasm copy.
fn native_kdf(params: &KdfParams, password: &str) -> Result<Vec<u8>, String> {
    params
        .derive(password.as_bytes())
        .ok_or_else(|| "KDF parameters out of bounds".to_string())
}

/// Serves until `shutdown` resolves; in-flight requests finish, new ones are refused.
pub async fn serve(
    server: Arc<Server>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(
        listener,
        router(server).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}

/// The request's source: the trusted proxy's header when one is configured and present (its last
/// entry, the one that proxy added), else the TCP peer.
pub(crate) fn source_address(
    settings: &ServerSettings,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> IpAddr {
    settings
        .trusted_proxy_header
        .as_deref()
        .and_then(|name| headers.get_all(name).iter().next_back())
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or_else(|| peer.ip())
}

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
    fn new(store: &Store, settings: &ServerSettings) -> Throttle {
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
    fn check(
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
    fn blocked_here(
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

/// Counts a failed client or user authentication toward throttling.
fn note_failure(server: &Server, audit: &Audit, source: IpAddr) {
    if audit.decision != "denied"
        || !matches!(
            audit.reason.as_str(),
            "invalid_client" | "invalid_credentials"
        )
    {
        return;
    }
    // An unknown client's failures go to the source's shared bucket.
    let client_id = match audit.cause.as_str() {
        "unknown_client" | "unknown_tenant" => "",
        _ => audit.client_id.as_deref().unwrap_or_default(),
    };
    server.throttle.failed(client_id, source, &server.settings);
}

/// Client input kept to 128 characters (throttle keys, audit entries).
fn clip(text: &str) -> String {
    text.chars().take(128).collect()
}

pub(crate) fn throttled(wait: Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    let mut response = oauth_error(
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
        &format!("too many failed attempts from this client and address: retry in {seconds} s"),
    );
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert("retry-after", value);
    }
    response
}
