//! Prometheus metrics. Each app owns a [`Registry`], so several services can run in one
//! test process without sharing counters.
//!
//! Names follow Prometheus' conventions: one name per measurement whichever service makes
//! it, in the `shop_` namespace (`shop_consumer_lag`, `shop_http_requests_total`), with the
//! service as the `service` label on every series (Prometheus adds `job` and `instance`
//! when it scrapes); a query or a dashboard panel names the metric and filters by label,
//! never by a regular expression on `__name__`. Beside them, the standard `process_*`
//! metrics of the instance (CPU, resident memory, open files, threads, start time).

use std::borrow::Cow;
use std::time::Duration;

use chrono::Utc;
use prometheus_client::collector::Collector;
use std::fmt::Write as _;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::envelope::{Envelope, Event};

/// The namespace of every metric a service defines: `shop_<name>`.
pub const NAMESPACE: &str = "shop";

/// The registry of one instance of `service`: every series carries `service="<service>"`,
/// and the instance's `process_*` metrics are in it from the start. Register the service's
/// own metrics in `registry.sub_registry_with_prefix(NAMESPACE)`.
pub fn service_registry(service: &str) -> Registry {
    let mut registry = Registry::with_labels(
        [(Cow::Borrowed("service"), Cow::Owned(service.to_owned()))].into_iter(),
    );
    registry.register_collector(Box::new(ProcessCollector));
    registry
}

/// The standard `process_*` metrics, read from the operating system at each scrape
/// (`metrics-process`, which reads `/proc` on Linux). A figure the system does not give
/// is left out rather than reported as zero.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let process = metrics_process::collector::collect();
        if let Some(seconds) = process.cpu_seconds_total {
            let counter = ConstCounter::new(seconds);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                process.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                process.virtual_memory_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                process.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                process.max_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                process.threads,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                process.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventTypeLabels {
    event_type: String,
}

/// What the consumer loop did with an event: the `outcome` label of
/// `shop_consumer_events_total`. An enum, so no call site can invent a value a dashboard or an
/// alert does not know.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, its effects committed.
    Processed,
    /// Seen before (its id already claimed): nothing applied again.
    Duplicate,
    /// Failed for a passing reason and is tried again.
    Retried,
    /// Parked on the dead-letter topic.
    DeadLettered,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Processed,
        Outcome::Duplicate,
        Outcome::Retried,
        Outcome::DeadLettered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Processed => "processed",
            Outcome::Duplicate => "duplicate",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// One partition of one topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

/// What the consumer loop did with each event, and how long handling took.
#[derive(Clone)]
pub struct ConsumerMetrics {
    events: Family<OutcomeLabels, Counter>,
    /// Events on each held partition not yet handled, from librdkafka's statistics.
    pub(crate) lag: Family<PartitionLabels, Gauge>,
    duration: Histogram,
    order_to_effect: Histogram,
    event_age: Family<EventTypeLabels, Histogram, fn() -> Histogram>,
    batch_size: Histogram,
}

/// Upper bounds from 1 ms to 5 min, fine where the latency targets are (tens of ms) and
/// coarse where only "minutes behind" matters.
const ORDER_TO_EFFECT_BUCKETS: [f64; 28] = [
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
    0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

impl ConsumerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ConsumerMetrics {
            events: Family::default(),
            lag: Family::default(),
            duration: Histogram::new(exponential_buckets(0.000_5, 2.0, 14)),
            order_to_effect: Histogram::new(ORDER_TO_EFFECT_BUCKETS),
            event_age: Family::new_with_constructor(|| Histogram::new(ORDER_TO_EFFECT_BUCKETS)),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
        };
        // Every outcome is reported from the start, at zero, so that "none yet" reads as 0
        // rather than as a missing metric.
        for outcome in Outcome::ALL {
            let _ = metrics.events.get_or_create(&OutcomeLabels { outcome });
        }
        registry.register(
            "consumer_events",
            "Events consumed from Kafka, by outcome (processed, duplicate, retried, dead_lettered)",
            metrics.events.clone(),
        );
        registry.register(
            "consumer_lag",
            "Events on each partition this instance holds that it has not handled yet: the \
             partition's end offset minus the offset after the last handled event. Refreshed \
             every second from librdkafka's statistics while the consume loop polls; a loop \
             stuck on a batch keeps its last value, and /healthz fails. A partition another \
             instance holds is reported by that instance",
            metrics.lag.clone(),
        );
        registry.register(
            "consumer_handle_seconds",
            "Time from an event's transaction starting to its effects being committed",
            metrics.duration.clone(),
        );
        registry.register(
            "order_to_effect_seconds",
            "Time from an order being placed to this service committing its part of the \
             order's end (order_confirmed or order_cancelled): the latency of the whole saga \
             as this service sees it, one observation per order",
            metrics.order_to_effect.clone(),
        );
        registry.register(
            "consumer_event_age_seconds",
            "Time from an event being created (its occurred_at, in the transaction that stored \
             it) to this service committing what it did about it: one hop of the saga, the \
             outbox relay, the broker and this consumer included, by event type",
            metrics.event_age.clone(),
        );
        registry.register(
            "consumer_batch_events",
            "Events applied per transaction: one when idle, up to 500 when catching up",
            metrics.batch_size.clone(),
        );
        metrics
    }

    /// Events handled so far (the `processed` outcome).
    pub fn processed(&self) -> u64 {
        self.events
            .get_or_create(&OutcomeLabels {
                outcome: Outcome::Processed,
            })
            .get()
    }

    pub(crate) fn count(&self, outcome: Outcome, events: usize) {
        self.events
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(events as u64);
    }

    /// A committed transaction of `events`, `repeated` of which had been handled before;
    /// `fresh` are those it applied, committed just now, `elapsed` after it began.
    pub(crate) fn applied(
        &self,
        events: usize,
        repeated: usize,
        elapsed: Duration,
        fresh: &[&Envelope<Event>],
    ) {
        self.count(Outcome::Processed, events - repeated);
        if repeated > 0 {
            self.count(Outcome::Duplicate, repeated);
        }
        self.batch_size.observe(events as f64);
        let now = Utc::now();
        for event in fresh {
            self.duration.observe(elapsed.as_secs_f64());
            let age = (now - event.meta.occurred_at).to_std().unwrap_or_default();
            self.event_age
                .get_or_create(&EventTypeLabels {
                    event_type: event.meta.event_type.clone(),
                })
                .observe(age.as_secs_f64());
            if let Some(placed_at) = event.data.ends_order_placed_at() {
                let age = (now - placed_at).to_std().unwrap_or_default();
                self.order_to_effect.observe(age.as_secs_f64());
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Requests every HTTP server answers, by route (the pattern, never the raw path, so an id
/// in the path cannot grow the label set) and status, and how long they took.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RouteLabels>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        fn buckets() -> Histogram {
            // 0.5 ms to about 4 s.
            Histogram::new(exponential_buckets(0.000_5, 2.0, 14))
        }
        let metrics = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(buckets),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status; errors are the 4xx and 5xx",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request arriving to its response's head being ready, by route",
            metrics.duration.clone(),
        );
        metrics
    }

    pub(crate) fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.duration
            .get_or_create(&RouteLabels {
                method: method.clone(),
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }
}

pub fn encode(registry: &Registry) -> String {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)
        .expect("writing to a String cannot fail");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_named_for_what_it_measures_and_labelled_with_its_service() {
        let mut registry = service_registry("inventory-service");
        let shop = registry.sub_registry_with_prefix(NAMESPACE);
        let consumer = ConsumerMetrics::register(shop);
        HttpMetrics::register(shop);
        consumer.count(Outcome::Processed, 3);
        let text = encode(&registry);

        assert!(
            text.contains(
                "shop_consumer_events_total{service=\"inventory-service\",outcome=\"processed\"} 3"
            ),
            "{text}"
        );
        assert!(!text.contains("inventory_service_"), "{text}");
        for sample in text.lines().filter(|line| !line.starts_with('#')) {
            assert!(
                sample.starts_with("shop_") || sample.starts_with("process_"),
                "outside the namespace: {sample}"
            );
            assert!(
                sample.contains("service=\"inventory-service\""),
                "no service label: {sample}"
            );
        }
    }

    #[test]
    fn the_process_metrics_report_this_process() {
        let text = encode(&service_registry("dashboard"));
        let value = |name: &str| -> f64 {
            let prefix = format!("{name}{{service=\"dashboard\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
                .parse()
                .unwrap()
        };
        // A counter, from the process's start: a test process may not have used a tick yet.
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(
            text.contains("# TYPE process_cpu_seconds counter"),
            "{text}"
        );
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_start_time_seconds") > 1.7e9);
    }
}
