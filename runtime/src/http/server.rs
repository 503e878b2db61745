//! Serving HTTP so that slow or hostile clients cannot hold the server: a time limit on
//! request headers, a time limit on connections that make no progress, and a bound on open
//! connections.
//!
//! `axum::serve` keeps a connection for as long as the client likes: 2,000 connections that
//! each sent half a request line stayed open indefinitely, and with a common limit of 1,024
//! file descriptors far fewer lock everyone else out. Here:
//! - a connection must deliver each request's headers within `header_read_timeout`, counted
//!   from when it opens or finished its previous request (hyper's header timer, which also
//!   closes a kept-alive connection that sends nothing for that long);
//! - a connection on which no byte moves either way for `idle_timeout` is closed, whatever it
//!   is in the middle of (a body that never arrives, a response nobody reads);
//! - at most `max_connections` are open at once; further clients wait in the listen backlog
//!   until one closes, and are then served.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The limits, as resolved from [`ServerLimitsArgs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimitsArgs::default().resolve()
    }
}

/// The HTTP server's protection against slow clients, as every service reads it.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerLimitsArgs {
    /// How long a client may take to send a request's headers, counted from when its
    /// connection opens or its previous request is answered; then the connection is closed.
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT_SECS", default_value = "10", value_parser = crate::config::secs)]
    pub http_header_read_timeout_secs: Duration,
    /// How long a connection may go without a byte moving either way (a body that never
    /// arrives, a response nobody reads) before it is closed.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT_SECS", default_value = "60", value_parser = crate::config::secs)]
    pub http_idle_timeout_secs: Duration,
    /// Open HTTP connections at most; further clients wait in the listen backlog until one
    /// closes. Keep it under the process's file limit (`ulimit -n`, often 1,024).
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 512)]
    pub http_max_connections: usize,
}

impl Default for ServerLimitsArgs {
    fn default() -> Self {
        ServerLimitsArgs {
            http_header_read_timeout_secs: Duration::from_secs(10),
            http_idle_timeout_secs: Duration::from_secs(60),
            http_max_connections: 512,
        }
    }
}

impl ServerLimitsArgs {
    pub fn resolve(&self) -> ServerLimits {
        ServerLimits {
            // At least a second: zero would close every connection at once.
            header_read_timeout: self
                .http_header_read_timeout_secs
                .max(Duration::from_secs(1)),
            idle_timeout: self.http_idle_timeout_secs.max(Duration::from_secs(1)),
            max_connections: self.http_max_connections.max(1),
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown`; then stops accepting, lets
/// every open connection finish its request in hand, and returns once all have closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    // HTTP/1.1 only. Serving HTTP/2 as well would mean first sniffing each connection for its
    // preface, with no timer on that read (a silent client would hold its slot for the idle
    // time-out rather than the header time-out), and h2's keep-alive pings would count as
    // progress on an idle connection. Nothing here needs HTTP/2.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    loop {
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors and the like: pass, rather than spin.
                    tracing::warn!(error = %err, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let service = TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        let idle_timeout = limits.idle_timeout;
        connections.spawn(async move {
            let _slot = slot;
            let progress = Progress::new();
            let io = TokioIo::new(Watched {
                inner: stream,
                progress: progress.clone(),
            });
            let connection = builder.serve_connection(io, service);
            tokio::pin!(connection);
            let mut shutting_down = false;
            loop {
                let stalled = progress.stalled_for(idle_timeout);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(err) = result {
                            tracing::debug!(error = %err, "HTTP connection ended");
                        }
                        break;
                    }
                    () = shutdown.cancelled(), if !shutting_down => {
                        shutting_down = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    () = tokio::time::sleep(stalled) => {
                        if progress.idle() >= idle_timeout {
                            tracing::debug!("closing an HTTP connection that made no progress");
                            break;
                        }
                    }
                }
            }
        });
    }
    // New clients are refused at once rather than left waiting in the backlog of a listener
    // that will never accept them.
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// When a connection last moved a byte, in milliseconds since it opened.
#[derive(Clone)]
struct Progress {
    opened: Instant,
    last: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            opened: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.opened
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }

    /// How long until the connection will have been idle for `limit`.
    fn stalled_for(&self, limit: Duration) -> Duration {
        limit
            .saturating_sub(self.idle())
            .max(Duration::from_millis(10))
    }
}

/// A socket that notes every byte it moves.
struct Watched<S> {
    inner: S,
    progress: Progress,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.progress.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.progress.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.progress.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
