//! Prometheus metrics. Each app owns a [`Registry`], so several services can run in one
//! test process without sharing counters.

use std::time::Duration;

use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::envelope::{Envelope, Event};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventTypeLabels {
    event_type: String,
}

/// What the consumer loop can do with an event.
const OUTCOMES: [&str; 4] = ["processed", "duplicate", "retried", "dead_lettered"];

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
        for outcome in OUTCOMES {
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
                outcome: "processed",
            })
            .get()
    }

    pub(crate) fn count(&self, outcome: &'static str, events: usize) {
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
        self.count("processed", events - repeated);
        if repeated > 0 {
            self.count("duplicate", repeated);
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
