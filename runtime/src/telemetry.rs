//! Logging and tracing: logs readable in a terminal, JSON in containers, filtered by
//! `RUST_LOG`; spans exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The standard variable naming the OTLP collector (OTLP over HTTP with protobuf; the
/// exporter appends `/v1/traces`).
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Keeps the trace exporter alive; dropping it (at the end of `main`) sends what is left.
#[must_use = "dropping it stops exporting traces"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(Err(err)) = self.provider.as_ref().map(SdkTracerProvider::shutdown) {
            tracing::debug!(error = %err, "trace exporter did not shut down cleanly");
        }
    }
}

/// Installs the global subscriber: logs and, when `OTEL_EXPORTER_OTLP_ENDPOINT` names a
/// collector, OpenTelemetry spans for `service` (or `OTEL_SERVICE_NAME`) exported to it.
/// Either way every event carries its trace in its headers ([`crate::trace`]). Call once,
/// from `main`, and keep the guard until it returns.
pub fn init(format: LogFormat, service: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,sqlx=warn,tower_http=info"));
    // A log line that cannot be written (the terminal or the pipe reading the logs is gone)
    // is dropped. By default tracing-subscriber reports it on stderr, and printing to a
    // stderr that is gone too panics: a service that lost its terminal could then panic in
    // the middle of shutting down, and hang instead of stopping.
    let logs = tracing_subscriber::fmt::layer().log_internal_errors(false);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    let (provider, exporting) = match otlp_exporter() {
        Ok(Some((endpoint, exporter))) => {
            (Some(tracer_provider(service, exporter)), Ok(Some(endpoint)))
        }
        Ok(None) => (None, Ok(None)),
        Err(err) => (None, Err(err)),
    };
    let spans = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("shop")));
    crate::trace::record_spans(spans.is_some());
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(spans)
        .init();
    match exporting {
        Ok(Some(endpoint)) => tracing::info!(%endpoint, "exporting traces over OTLP"),
        Ok(None) => {}
        Err(err) => tracing::error!(error = %err, "cannot export traces; continuing without"),
    }
    Telemetry { provider }
}

/// The OTLP/HTTP exporter [`OTLP_ENDPOINT`] asks for, if it is set. Its failure is reported,
/// never fatal.
fn otlp_exporter() -> Result<Option<(String, opentelemetry_otlp::SpanExporter)>, String> {
    let Some(endpoint) = std::env::var(OTLP_ENDPOINT)
        .ok()
        .filter(|endpoint| !endpoint.is_empty())
    else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|err| err.to_string())?;
    Ok(Some((endpoint, exporter)))
}

/// Spans of `service` (or `OTEL_SERVICE_NAME`), batched to `exporter` on a thread of its own.
fn tracer_provider(service: &str, exporter: opentelemetry_otlp::SpanExporter) -> SdkTracerProvider {
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| service.to_owned());
    SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(name).build())
        .with_batch_exporter(exporter)
        .build()
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
