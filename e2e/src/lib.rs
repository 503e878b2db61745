//! Test harness: the real services against a real Kafka-protocol broker and PostgreSQL,
//! either started in this process on port 0 ([`Running`]) or run as separate processes
//! from their binaries ([`ServiceProcess`]) for the tests that kill them.
//!
//! The backend is chosen by `SHOP_E2E_BACKEND`: `tansu` (a local Tansu broker process and
//! the local PostgreSQL), `docker` (Apache Kafka and PostgreSQL in testcontainers), or unset
//! to use Docker when a Docker engine is reachable and Tansu otherwise. The test bodies are
//! the same either way.

pub mod broker;
pub mod database;
pub mod images;
pub mod load;
pub mod process;
pub mod secure;
pub mod stack;

pub use broker::Broker;
pub use load::Load;
pub use process::ServiceProcess;
pub use stack::{Consumer, Running, Stack};

/// A service instance under test, in this process or in its own.
pub trait Service {
    /// `inventory-service[1]` and the like, for messages.
    fn name(&self) -> &str;
    /// The URL of `path` on its HTTP server.
    fn url(&self, path: &str) -> String;
}

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Which backend the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Tansu,
    Docker,
}

impl Backend {
    pub fn from_env() -> Self {
        match std::env::var("SHOP_E2E_BACKEND").as_deref() {
            Ok("tansu") => Backend::Tansu,
            Ok("docker") => Backend::Docker,
            Ok(other) if !other.is_empty() => {
                panic!("SHOP_E2E_BACKEND={other}: expected tansu or docker")
            }
            _ if docker_available() => Backend::Docker,
            _ => Backend::Tansu,
        }
    }
}

fn docker_available() -> bool {
    std::env::var_os("DOCKER_HOST").is_some()
        || std::path::Path::new("/var/run/docker.sock").exists()
}

/// Logs from the services under test, shown for failing tests (`RUST_LOG` filters them), and
/// recorded spans, as `shop_runtime::telemetry::init` gives a service that exports them, so
/// the services in this process take the recording path. Nothing is exported. (The service
/// processes the tests start record spans only when told where to export them.)
pub fn init_logging() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,rdkafka=warn,sqlx=warn,tower_http=warn")
    });
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    shop_runtime::trace::record_spans(true);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_test_writer())
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("e2e")))
        .try_init();
}

/// The value of the sample of metric `name` (as scraped: `shop_consumer_events_total`, a
/// histogram's `…_count`) whose labels include every one of `labels`, in a Prometheus text
/// scrape. Label values with `",` in them are not supported: none of the shop's have one.
pub fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            // An OpenMetrics exemplar may follow the value; a label value may hold a `}`.
            let line = line.split(" # ").next().unwrap_or(line);
            let (series, value) = match line.rsplit_once('}') {
                Some((series, rest)) => (series, rest.trim()),
                None => line.split_once(' ')?,
            };
            let (metric, set) = series.split_once('{').unwrap_or((series, ""));
            let set: Vec<(&str, &str)> = set
                .split("\",")
                .filter_map(|pair| {
                    let (key, value) = pair.split_once("=\"")?;
                    Some((key, value.trim_end_matches('"')))
                })
                .collect();
            (metric == name && labels.iter().all(|label| set.contains(label)))
                .then(|| value.split_whitespace().next()?.parse().ok())
                .flatten()
        })
}

#[cfg(test)]
mod sample_tests {
    use super::sample;

    #[test]
    fn a_sample_is_found_by_name_and_any_subset_of_its_labels() {
        let scrape = "# TYPE shop_consumer_lag gauge\n\
            shop_consumer_lag{service=\"inventory-service\",topic=\"orders\",partition=\"3\"} 7\n\
            shop_outbox_backlog{service=\"inventory-service\"} 0\n\
            shop_http_requests_total{route=\"/orders/{id}\",status=\"400\"} 2\n\
            process_open_fds{service=\"inventory-service\"} 12 # {} 1\n";
        let lag = sample(scrape, "shop_consumer_lag", &[("partition", "3")]);
        assert_eq!(lag, Some(7.0));
        assert_eq!(sample(scrape, "shop_outbox_backlog", &[]), Some(0.0));
        let refused = [("route", "/orders/{id}"), ("status", "400")];
        assert_eq!(
            sample(scrape, "shop_http_requests_total", &refused),
            Some(2.0)
        );
        assert_eq!(sample(scrape, "process_open_fds", &[]), Some(12.0));
        assert_eq!(
            sample(scrape, "shop_consumer_lag", &[("partition", "4")]),
            None
        );
        assert_eq!(sample(scrape, "shop_consumer", &[]), None);
    }
}
