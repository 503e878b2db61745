//! Logging: readable in a terminal, JSON in containers, filtered by `RUST_LOG`.

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,sqlx=warn,tower_http=info"));
    // A log line that cannot be written (the terminal or the pipe reading the logs is gone)
    // is dropped. By default tracing-subscriber reports it on stderr, and printing to a
    // stderr that is gone too panics: a service that lost its terminal could then panic in
    // the middle of shutting down, and hang instead of stopping.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

/// A token cancelled on SIGINT or SIGTERM: what `main` hands to `run_until_stopped`.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    tokio::spawn({
        let token = token.clone();
        async move {
            let signal = shutdown_signal().await;
            // Cancelled before anything else can go wrong, logging included.
            token.cancel();
            tracing::info!("{signal} received, shutting down");
        }
    });
    token
}

/// Resolves on SIGINT or SIGTERM, whichever comes first, with its name.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        tokio::signal::ctrl_c()
            .await
            .expect("installing the SIGINT handler cannot fail");
    };
    #[cfg(unix)]
    let terminate = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler cannot fail")
            .recv()
            .await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = terminate => "SIGTERM",
    }
}
