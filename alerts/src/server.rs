//! The HTTP/1.1 server every process's listener runs: the alert API and console, and
//! each deployable's `/metrics` and `/healthz`.
//!
//! [`serve_with`] bounds what a client can hold: the request head must arrive within
//! the header-read timeout (also the longest wait for the next request on a kept-alive
//! connection), a request must be answered within the request timeout, a connection on
//! which nothing moves for the idle timeout is closed, at most `max_connections` are
//! open (more are refused with 503), and shutdown waits for open connections at most
//! the shutdown grace. Each connection a limit cuts is reported as a [`Closed`] event
//! to the caller's callback (the process counts them in a metric).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

/// Why the server closed a connection before its client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Refused at once: `max_connections` were open.
    Limit,
    /// The request head did not arrive within the header-read timeout.
    HeaderTimeout,
    /// Nothing moved for the idle timeout.
    IdleTimeout,
    /// Still open at the end of the shutdown grace.
    Shutdown,
}

impl Closed {
    /// Every reason, for metrics that show each from start-up.
    pub const ALL: [Closed; 4] = [
        Closed::Limit,
        Closed::HeaderTimeout,
        Closed::IdleTimeout,
        Closed::Shutdown,
    ];

    /// The reason's name (the metric's `reason` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Limit => "limit",
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Shutdown => "shutdown",
        }
    }
}

/// Told of connections a limit closed: the reason and how many.
pub type OnClosed = Arc<dyn Fn(Closed, u64) + Send + Sync>;

/// Limits of a listener (`[http]` in the configuration; `docs/operations.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's line and headers must arrive within this, counted from the
    /// connection's opening or its previous response: a kept-alive connection
    /// waiting for its next request is closed after it too.
    pub header_read_timeout: Duration,
    /// A request (its body read and the handler's answer) must be done within this,
    /// else 408 and the connection closes.
    pub request_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed
    /// (a client that stops reading an answer, or stalls in the middle of a body).
    pub idle_timeout: Duration,
    /// Open connections at most; more are answered 503 and closed at once.
    pub max_connections: usize,
    /// On shutdown, how long open connections may take to finish their requests
    /// before they are closed.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 256,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// HTTP endpoints and the limits of their connections (`docs/operations.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Listen address.
    pub addr: SocketAddr,
    /// A request's line and headers must arrive within this (ms), counted from the
    /// connection's opening or its previous response (so it also closes kept-alive
    /// connections that send nothing).
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// A request must be read and answered within this (ms), else 408.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// A connection on which no byte moves for this long (ms) is closed.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Open connections at most; more are refused with 503.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// On shutdown, how long (ms) open connections may take to finish.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
}

fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}
fn default_max_connections() -> usize {
    256
}
fn default_shutdown_grace_ms() -> u64 {
    5_000
}

impl HttpSettings {
    /// The limits [`serve_with`] takes.
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections: self.max_connections,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
        }
    }

    /// Checks each limit's range.
    ///
    /// # Errors
    /// A message naming the setting (`http.…`) that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        let h = self;
        for (name, v, max) in [
            (
                "http.header_read_timeout_ms",
                h.header_read_timeout_ms,
                600_000,
            ),
            ("http.request_timeout_ms", h.request_timeout_ms, 600_000),
            ("http.idle_timeout_ms", h.idle_timeout_ms, 3_600_000),
            ("http.shutdown_grace_ms", h.shutdown_grace_ms, 60_000),
        ] {
            if !(1..=max).contains(&v) {
                return Err(format!("{name} {v} is outside 1..={max}"));
            }
        }
        if !(1..=65_536).contains(&h.max_connections) {
            return Err(format!(
                "http.max_connections {} is outside 1..=65536",
                h.max_connections
            ));
        }
        Ok(())
    }
}

/// Serves a router on `listener` with the default
/// [`HttpLimits`] until `shutdown` turns true.
///
/// # Errors
/// None in practice: accept errors are logged and retried.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_with(listener, router, HttpLimits::default(), None, shutdown).await
}

/// Serves a router on `listener` within `limits` until `shutdown` turns true (or its
/// sender is dropped): then stops accepting, lets open connections finish the
/// request they are in (idle ones close at once), and closes what is left after
/// `limits.shutdown_grace`. HTTP/1.1 only. Connections refused or cut by a limit
/// are counted in `cardiostream_http_connections_closed_total{reason}`.
///
/// # Errors
/// None in practice: accept errors are logged and retried.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    on_closed: Option<OnClosed>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let limit = limits.request_timeout;
    let router = router.layer(middleware::from_fn(move |req: Request, next: Next| {
        request_timeout(limit, req, next)
    }));
    let svc = hyper_util::service::TowerToHyperService::new(router);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (close_tx, close_rx) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let (mut refused, mut last_refusal_log) = (0u64, None);
    let closed = |reason: Closed, n: u64| {
        if let Some(f) = &on_closed {
            f(reason, n);
        }
    };
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        tokio::select! {
            r = shutdown.changed() => {
                if r.is_err() {
                    break;
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => {
                let (stream, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "http accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    closed(Closed::Limit, 1);
                    refused += 1;
                    // At most one line every 10 s, however many are refused.
                    if last_refusal_log.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(max = limits.max_connections, refused, "http connections refused: connection limit reached");
                        last_refusal_log = Some(Instant::now());
                        refused = 0;
                    }
                    refuse(stream);
                    continue;
                };
                // The peer's address for the handlers (refused requests are logged
                // with it).
                let inner = svc.clone();
                let svc = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(peer));
                        hyper::service::Service::call(&inner, req)
                    },
                );
                let close = close_rx.clone();
                let on_closed = on_closed.clone();
                conns.spawn(async move {
                    connection(stream, svc, limits, close, on_closed).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    let _ = close_tx.send(true);
    let grace = tokio::time::sleep(limits.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            r = conns.join_next() => {
                if r.is_none() {
                    break;
                }
            }
            () = &mut grace => {
                let left = conns.len();
                closed(Closed::Shutdown, left as u64);
                tracing::info!(connections = left, grace_ms = limits.shutdown_grace.as_millis() as u64, "http connections closed at the end of the shutdown grace");
                conns.shutdown().await;
                break;
            }
        }
    }
    Ok(())
}

/// A connection over the limit: 503 if the socket takes it at once, then closed.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n",
    );
}

/// One connection, until it ends, a limit cuts it, or (after `close`) its current
/// request is done.
async fn connection<S>(
    stream: TcpStream,
    svc: S,
    limits: HttpLimits,
    mut close: watch::Receiver<bool>,
    on_closed: Option<OnClosed>,
) where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let io = Activity::new(stream);
    let last = io.last.clone();
    let epoch = io.epoch;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let count = |reason: Closed| {
        if let Some(f) = &on_closed {
            f(reason, 1);
        }
    };
    let mut closing = *close.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let idle_since = epoch + Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::from_std(idle_since + limits.idle_timeout);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        count(Closed::HeaderTimeout);
                    }
                    tracing::debug!(error = %e, "http connection ended with an error");
                }
                return;
            }
            r = close.changed(), if !closing => {
                closing = true;
                let _ = r;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(deadline) => {
                let idle = epoch.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if idle >= limits.idle_timeout {
                    count(Closed::IdleTimeout);
                    tracing::debug!(idle_ms = idle.as_millis() as u64, "http connection closed: idle");
                    return;
                }
            }
        }
    }
}

/// Middleware: a request not answered within `limit` gets 408 and its connection
/// closes.
async fn request_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            format!("request not completed within {} ms\n", limit.as_millis()),
        )
            .into_response(),
    }
}

/// A socket that notes when a byte last moved, for the idle timeout.
struct Activity {
    inner: TcpStream,
    /// Milliseconds after `epoch` of the last byte read or written.
    last: Arc<AtomicU64>,
    epoch: Instant,
}

impl Activity {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            last: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Activity {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Activity {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{Read as _, Write as _};
    use std::sync::Mutex;

    use axum::routing::get;

    use super::*;

    type Server = (
        SocketAddr,
        watch::Sender<bool>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    );

    fn app() -> Router {
        Router::new().route("/healthz", get(|| async { "ok" }))
    }

    async fn start(router: Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(false);
        let h = tokio::spawn(serve(listener, router, rx));
        (addr, tx, h)
    }

    /// A GET over a fresh connection: status and body.
    async fn get_once(addr: SocketAddr, path: &str) -> (u16, String) {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let r = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("response");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// a connection that sends half its request headers and then
    /// nothing is closed within the header-read timeout (default 10 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_sent_request_is_closed_within_the_header_read_timeout() {
        let (addr, _tx, _h) = start(app()).await;
        let t = Instant::now();
        let read = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .expect("write");
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).map(|_| buf)
        })
        .await
        .expect("join");
        let took = t.elapsed();
        assert!(read.is_ok(), "still open after {took:?}: {read:?}");
        assert!(took < Duration::from_secs(12), "closed after {took:?}");
    }

    /// shutdown completes promptly (default bound 5 s) with an idle
    /// kept-alive connection, a silent one and a half-sent request open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_completes_promptly_with_idle_and_slow_connections_open() {
        let (addr, tx, h) = start(app()).await;
        let conns = tokio::task::spawn_blocking(move || {
            let mut idle = std::net::TcpStream::connect(addr).expect("connect");
            idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                .expect("write");
            let mut buf = [0u8; 512];
            let n = idle.read(&mut buf).expect("response");
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            let silent = std::net::TcpStream::connect(addr).expect("connect");
            let mut slow = std::net::TcpStream::connect(addr).expect("connect");
            slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
                .expect("write");
            (idle, silent, slow)
        })
        .await
        .expect("join");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        tx.send(true).expect("shutdown");
        let r = tokio::time::timeout(Duration::from_secs(8), h).await;
        let took = t.elapsed();
        assert!(r.is_ok(), "server still running {took:?} after shutdown");
        assert!(took < Duration::from_secs(7), "shutdown took {took:?}");
        drop(conns);
    }

    /// The limits of `serve_with`, each with a short setting: connections over the cap
    /// are refused with 503, a request slower than the request timeout gets 408, a
    /// connection on which nothing moves closes after the idle timeout; all counted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limits_refuse_over_the_cap_time_out_slow_requests_and_close_idle_ones() {
        let counts: Arc<Mutex<HashMap<&'static str, u64>>> = Arc::default();
        let seen = counts.clone();
        let on_closed: OnClosed = Arc::new(move |reason, n| {
            *seen
                .lock()
                .expect("lock")
                .entry(reason.as_str())
                .or_default() += n;
        });
        let app = app().route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        );
        let limits = HttpLimits {
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(800),
            max_connections: 2,
            shutdown_grace: Duration::from_secs(1),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(false);
        let h = tokio::spawn(serve_with(listener, app, limits, Some(on_closed), rx));

        let t = Instant::now();
        let (s, body) = get_once(addr, "/slow").await;
        assert_eq!(s, 408, "{body}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

        let outcome = tokio::task::spawn_blocking(move || {
            let a = std::net::TcpStream::connect(addr).expect("a");
            let b = std::net::TcpStream::connect(addr).expect("b");
            std::thread::sleep(Duration::from_millis(200));
            // A third while two are open: 503 at once.
            let mut c = std::net::TcpStream::connect(addr).expect("c");
            c.set_read_timeout(Some(Duration::from_secs(5))).expect("t");
            let mut refused = String::new();
            let _ = c.read_to_string(&mut refused);
            // The two silent ones close after the idle timeout, well before the
            // header-read timeout.
            let t = Instant::now();
            let mut closed = Vec::new();
            for mut s in [a, b] {
                s.set_read_timeout(Some(Duration::from_secs(5))).expect("t");
                let mut buf = Vec::new();
                closed.push(s.read_to_end(&mut buf).is_ok());
            }
            (refused, closed, t.elapsed())
        })
        .await
        .expect("join");
        let (refused, closed, took) = outcome;
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");
        assert_eq!(closed, [true, true]);
        assert!(
            took < Duration::from_secs(3),
            "idle connections closed after {took:?}"
        );
        let count = |r: &str| counts.lock().expect("lock").get(r).copied().unwrap_or(0);
        assert_eq!(count("limit"), 1);
        assert_eq!(count("idle_timeout"), 2);
        // Room again once they closed.
        assert_eq!(get_once(addr, "/healthz").await.0, 200);
        tx.send(true).expect("shutdown");
        tokio::time::timeout(Duration::from_secs(3), h)
            .await
            .expect("stops")
            .expect("join")
            .expect("serve");
    }
}
