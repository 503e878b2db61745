//! Slow and half-open HTTP clients are dropped, and well-behaved ones are served meanwhile:
//! the header time-out, the idle time-out and the connection bound of every service's server.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use shop_runtime::http::{self, ServerLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const LIMITS: ServerLimits = ServerLimits {
    header_read_timeout: Duration::from_secs(1),
    idle_timeout: Duration::from_secs(2),
    max_connections: 16,
};

async fn start() -> (std::net::SocketAddr, CancellationToken) {
    start_with(LIMITS).await
}

async fn start_with(limits: ServerLimits) -> (std::net::SocketAddr, CancellationToken) {
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/echo", post(|body: String| async move { body }));
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(http::serve(listener, app, limits, stop.clone()));
    (addr, stop)
}

/// A client that opens a connection and sends only part of a request's headers.
async fn half_sent(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: shop\r\nX-Slow: ")
        .await
        .unwrap();
    stream
}

/// Whether the server closed `stream` within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A 408 or similar before closing is fine; keep reading until the close.
            Ok(Ok(_)) => {}
        }
    }
}

/// A whole request; the response's status line.
async fn well_behaved(addr: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn clients_that_never_finish_their_headers_are_dropped_and_others_are_served_meanwhile() {
    let (addr, stop) = start().await;
    // Ten times the connection bound: the server holds 16, the rest wait to be accepted.
    let mut slow = Vec::new();
    for _ in 0..160 {
        slow.push(half_sent(addr).await);
    }
    let started = Instant::now();
    for _ in 0..3 {
        let status = tokio::time::timeout(Duration::from_secs(30), well_behaved(addr))
            .await
            .expect("a well-behaved client is served while slow ones wait");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "served after {:?}",
        started.elapsed()
    );
    // Each slow client is closed once its time is up, the accepted ones first.
    for stream in &mut slow[..16] {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "a half-sent request was still open after the header time-out"
        );
    }
    stop.cancel();
}

#[tokio::test]
async fn a_body_that_never_arrives_and_a_silent_connection_are_closed_after_the_idle_time_out() {
    let (addr, stop) = start().await;
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"POST /echo HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\nonly some")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut stalled, Duration::from_secs(6)).await,
        "a request whose body stopped coming was kept open"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(6)).await,
        "a connection that never sent anything was kept open"
    );
    // The server still answers.
    assert!(well_behaved(addr).await.starts_with("HTTP/1.1 200"));
    stop.cancel();
}

#[tokio::test]
async fn a_kept_alive_connection_serves_several_requests_in_time() {
    let (addr, stop) = start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for _ in 0..3 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.cancel();
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_time_out_not_the_idle_one() {
    let (addr, stop) = start_with(ServerLimits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(60),
        max_connections: 4,
    })
    .await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(20)).await,
        "a silent connection was held past the header time-out"
    );
    stop.cancel();
}
