//! `GET /metrics` in the Prometheus text format (version 0.0.4): token decisions by kind, grant
//! type, decision, reason and cause; request latency histograms per endpoint; the KDF queue;
//! policy-module failures by code; throttled requests; users locked out now. Labels hold only
//! bounded values (no tenant, client or user names).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Connections the server holds now, and those it closed, for `/metrics`.
#[derive(Default)]
pub struct ConnectionStats {
    /// Open now.
    pub open: AtomicUsize,
    /// Closed at once because `max_connections` were open.
    pub refused: AtomicU64,
    /// Closed because a request head did not arrive within `header_timeout`.
    pub header_timeouts: AtomicU64,
    /// Closed because they were idle for `idle_timeout`.
    pub idle_closed: AtomicU64,
}

/// Latency bucket bounds, seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// The counters, kept in memory (a restart starts them from zero, as Prometheus expects).
#[derive(Default)]
pub struct Metrics {
    decisions: Mutex<BTreeMap<[String; 5], u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    module_failures: Mutex<BTreeMap<String, u64>>,
    throttled: AtomicU64,
    login_queue_full: AtomicU64,
}

/// Gauges read when scraped.
pub struct Gauges {
    /// Password requests waiting for a KDF thread.
    pub kdf_waiting: usize,
    /// The most that may wait.
    pub kdf_queue_capacity: usize,
    /// KDF threads.
    pub kdf_threads: usize,
    /// Users whose lock has not ended, when the store answered.
    pub users_locked: Option<i64>,
    /// Locks set by failed logins since the start.
    pub lockouts: u64,
    /// Connections open now, and closed by their limits since the start: refused at the cap,
    /// timed out before a request head, idle too long.
    pub connections: [u64; 4],
}

/// The `grant_type` label: one of a closed set, whatever a client sends, so that made-up grant
/// types cannot add series (`unsupported`; `none` when the request named none).
fn grant_type_label(grant_type: &str) -> &'static str {
    match grant_type {
        "password" => "password",
        "client_credentials" => "client_credentials",
        "refresh_token" => "refresh_token",
        "authorization_code" => "authorization_code",
        "" => "none",
        _ => "unsupported",
    }
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts a decision of the module (`kind`: token, revocation, introspection).
    pub fn decision(
        &self,
        kind: &str,
        grant_type: &str,
        decision: &str,
        reason: &str,
        cause: &str,
    ) {
        let grant_type = grant_type_label(grant_type);
        let key = [kind, grant_type, decision, reason, cause].map(|s| s.chars().take(64).collect());
        let mut map = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(key).or_default() += 1;
    }

    /// Records how long a request to `endpoint` took.
    pub fn observe(&self, endpoint: &'static str, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut map = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = map.entry(endpoint).or_default();
        for (count, bound) in h.counts.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *count += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Counts a failure of the policy module (trap, deadline, memory, bad answer) by its code.
    pub fn module_failure(&self, code: &str) {
        let mut map = self
            .module_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *map.entry(code.to_string()).or_default() += 1;
    }

    /// Counts a request answered 429 by throttling.
    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a password request turned away because the login queue was full.
    pub fn login_queue_full(&self) {
        self.login_queue_full.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        self.render_decisions(&mut out);
        self.render_latency(&mut out);
        self.render_pools(gauges, &mut out);
        render_connections(gauges, &mut out);
        out
    }

    /// `granted_token_decisions_total`.
    fn render_decisions(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP granted_token_decisions_total Decisions of the policy module, by endpoint kind, grant type, decision, reason and true cause.");
        let _ = writeln!(out, "# TYPE granted_token_decisions_total counter");
        for ([kind, grant, decision, reason, cause], n) in self
            .decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "granted_token_decisions_total{{kind=\"{}\",grant_type=\"{}\",decision=\"{}\",reason=\"{}\",cause=\"{}\"}} {n}",
                label(kind), label(grant), label(decision), label(reason), label(cause)
            );
        }
    }

    /// `granted_request_duration_seconds`, a histogram per endpoint.
    fn render_latency(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP granted_request_duration_seconds Time to answer a request, by endpoint."
        );
        let _ = writeln!(out, "# TYPE granted_request_duration_seconds histogram");
        for (endpoint, h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for (count, bound) in h.counts.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "granted_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "granted_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "granted_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "granted_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {}",
                h.count
            );
        }
    }

    /// The KDF pool, the module's failures, throttling and lockouts.
    fn render_pools(&self, gauges: &Gauges, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP granted_kdf_queue_depth Password requests waiting for a KDF thread."
        );
        let _ = writeln!(out, "# TYPE granted_kdf_queue_depth gauge");
        let _ = writeln!(out, "granted_kdf_queue_depth {}", gauges.kdf_waiting);
        let _ = writeln!(out, "# HELP granted_kdf_queue_capacity Password requests that may wait before new ones get 503.");
        let _ = writeln!(out, "# TYPE granted_kdf_queue_capacity gauge");
        let _ = writeln!(
            out,
            "granted_kdf_queue_capacity {}",
            gauges.kdf_queue_capacity
        );
        let _ = writeln!(out, "# HELP granted_kdf_threads Threads running the KDF.");
        let _ = writeln!(out, "# TYPE granted_kdf_threads gauge");
        let _ = writeln!(out, "granted_kdf_threads {}", gauges.kdf_threads);
        let _ = writeln!(out, "# HELP granted_login_queue_full_total Password requests answered 503 because the KDF queue was full.");
        let _ = writeln!(out, "# TYPE granted_login_queue_full_total counter");
        let _ = writeln!(
            out,
            "granted_login_queue_full_total {}",
            self.login_queue_full.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP granted_module_failures_total Failures of the policy module (traps, deadlines, memory, bad answers), by code.");
        let _ = writeln!(out, "# TYPE granted_module_failures_total counter");
        for (code, n) in self
            .module_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "granted_module_failures_total{{code=\"{}\"}} {n}",
                label(code)
            );
        }
        let _ = writeln!(out, "# HELP granted_throttled_total Requests answered 429 after too many failed authentications.");
        let _ = writeln!(out, "# TYPE granted_throttled_total counter");
        let _ = writeln!(
            out,
            "granted_throttled_total {}",
            self.throttled.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP granted_lockouts_total Users (and unknown names) locked out by failed logins since the start.");
        let _ = writeln!(out, "# TYPE granted_lockouts_total counter");
        let _ = writeln!(out, "granted_lockouts_total {}", gauges.lockouts);
        if let Some(locked) = gauges.users_locked {
            let _ = writeln!(
                out,
                "# HELP granted_users_locked Users locked out by failed logins now."
            );
            let _ = writeln!(out, "# TYPE granted_users_locked gauge");
            let _ = writeln!(out, "granted_users_locked {locked}");
        }
    }
}

/// `granted_connections_open` and the connections closed by their limits.
fn render_connections(gauges: &Gauges, out: &mut String) {
    let [open, refused, header, idle] = gauges.connections;
    let _ = writeln!(out, "# HELP granted_connections_open Connections open now.");
    let _ = writeln!(out, "# TYPE granted_connections_open gauge");
    let _ = writeln!(out, "granted_connections_open {open}");
    let _ = writeln!(out, "# HELP granted_connections_closed_total Connections closed by the server's limits, by limit.");
    let _ = writeln!(out, "# TYPE granted_connections_closed_total counter");
    for (limit, n) in [
        ("max_connections", refused),
        ("header_timeout", header),
        ("idle_timeout", idle),
    ] {
        let _ = writeln!(
            out,
            "granted_connections_closed_total{{limit=\"{limit}\"}} {n}"
        );
    }
}
