//! The server's connections: accepted up to a cap, each watched so that a slow or idle client
//! cannot hold a socket (a request head must arrive within `header_timeout`, a kept-alive
//! connection may wait `idle_timeout` for its next request), and drained on shutdown.

use crate::metrics::ConnectionStats;
use crate::settings::ConnectionLimits;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt as _;

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets the
/// requests in flight finish and closes idle connections.
pub async fn serve_connections(
    router: Router,
    listener: TcpListener,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: wait a
                    // moment rather than spin.
                    tracing::warn!("could not accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            router: router.clone(),
            limits,
            stats: stats.clone(),
            stop: stop_rx.clone(),
        };
        tokio::spawn(async move {
            connection.run(stream, peer).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: all slots back means all connections done.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
}

/// One accepted connection and what it needs.
struct Connection {
    router: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream, peer: SocketAddr) {
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
        });
        let router = self.router.clone();
        let counted = activity.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            let counted = counted.clone();
            counted.request_started();
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                counted.request_answered();
                response
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.keep_alive(true);
        let mut conn = pin!(builder.serve_connection(io, service));
        let mut draining = *self.stop.borrow();
        if draining {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            let deadline = activity.deadline(&self.limits);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection from {peer} ended: {e}");
                    }
                    break;
                }
                changed = self.stop.changed(), if !draining => {
                    draining = true;
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    match activity.overdue(&self.limits, Instant::now()) {
                        Some(Overdue::Header) => {
                            self.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Some(Overdue::Idle) => {
                            self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        None => {}
                    }
                }
            }
        }
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection is closed by its watch.
#[derive(Debug, PartialEq, Eq)]
enum Overdue {
    /// A request head started (or the connection opened) and did not finish in time.
    Header,
    /// No request for `idle_timeout` after the last answer.
    Idle,
}

/// What a connection did and when, in milliseconds since it opened.
struct Activity {
    opened: Instant,
    /// Requests being answered now (their bodies are bounded by the body timeout).
    in_flight: AtomicUsize,
    /// When the last answer was handed back, or 0 before the first (the first request waits
    /// under `header_timeout` from the opening).
    answered_ms: AtomicU64,
    /// When the first byte after the last answer was read (0: none yet), so when a request
    /// head began.
    head_began_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            answered_ms: AtomicU64::new(0),
            head_began_ms: AtomicU64::new(0),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        // At least 1, so that 0 keeps meaning "not yet".
        (at.saturating_duration_since(self.opened).as_millis() as u64).max(1)
    }

    fn read_bytes(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_began_ms.load(Ordering::Acquire) == 0
        {
            let now = self.ms(Instant::now());
            let _ =
                self.head_began_ms
                    .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn request_answered(&self) {
        self.answered_ms
            .store(self.ms(Instant::now()), Ordering::Release);
        self.head_began_ms.store(0, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether the connection is past a limit at `now`.
    fn overdue(&self, limits: &ConnectionLimits, now: Instant) -> Option<Overdue> {
        let (kind, since, limit) = self.clock(limits)?;
        (now.saturating_duration_since(self.opened) >= since + limit).then_some(kind)
    }

    /// When the connection would next be past a limit, if nothing happens meanwhile.
    fn deadline(&self, limits: &ConnectionLimits) -> Instant {
        match self.clock(limits) {
            Some((_, since, limit)) => self.opened + since + limit,
            // A request in flight: look again after the longest limit.
            None => Instant::now() + limits.idle_timeout.max(limits.header_timeout),
        }
    }

    /// Which limit runs now, from when, and how long it is; none while a request is in flight.
    fn clock(&self, limits: &ConnectionLimits) -> Option<(Overdue, Duration, Duration)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let began = self.head_began_ms.load(Ordering::Acquire);
        if began > 0 {
            return Some((
                Overdue::Header,
                Duration::from_millis(began),
                limits.header_timeout,
            ));
        }
        let answered = self.answered_ms.load(Ordering::Acquire);
        if answered == 0 {
            // A new connection must send its first request head in time.
            return Some((Overdue::Header, Duration::ZERO, limits.header_timeout));
        }
        Some((
            Overdue::Idle,
            Duration::from_millis(answered),
            limits.idle_timeout,
        ))
    }
}

/// A TCP stream that tells its [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_bytes();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(2),
            body_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            max_connections: 16,
        }
    }

    #[test]
    fn a_silent_new_connection_is_due_after_the_header_timeout() {
        let a = Activity::new();
        let l = limits();
        assert_eq!(a.overdue(&l, a.opened + Duration::from_millis(1999)), None);
        assert_eq!(
            a.overdue(&l, a.opened + Duration::from_secs(2)),
            Some(Overdue::Header)
        );
    }

    #[test]
    fn a_request_in_flight_is_never_due_and_idle_counts_from_its_answer() {
        let a = Activity::new();
        let l = limits();
        a.read_bytes();
        a.request_started();
        assert_eq!(a.overdue(&l, a.opened + Duration::from_secs(60)), None);
        a.request_answered();
        let answered = Duration::from_millis(a.answered_ms.load(Ordering::Acquire));
        assert_eq!(
            a.overdue(&l, a.opened + answered + Duration::from_millis(4999)),
            None
        );
        assert_eq!(
            a.overdue(&l, a.opened + answered + Duration::from_secs(5)),
            Some(Overdue::Idle)
        );
        // A byte of the next request starts the header clock.
        a.read_bytes();
        let began = Duration::from_millis(a.head_began_ms.load(Ordering::Acquire));
        assert_eq!(
            a.overdue(&l, a.opened + began + Duration::from_secs(2)),
            Some(Overdue::Header)
        );
    }
}
