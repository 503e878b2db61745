//! Prometheus metrics. Each app owns a [`Registry`], so several services can run in one
//! test process without sharing counters.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// What the consumer loop did with each event, and how long handling took.
#[derive(Clone)]
pub struct ConsumerMetrics {
    events: Family<OutcomeLabels, Counter>,
    duration: Histogram,
}

impl ConsumerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ConsumerMetrics {
            events: Family::default(),
            duration: Histogram::new(exponential_buckets(0.000_5, 2.0, 14)),
        };
        registry.register(
            "consumer_events",
            "Events consumed from Kafka, by outcome (processed, duplicate, retried, dead_lettered)",
            metrics.events.clone(),
        );
        registry.register(
            "consumer_handle_seconds",
            "Time from receiving an event to its effects being committed",
            metrics.duration.clone(),
        );
        metrics
    }

    pub(crate) fn observe(&self, outcome: &'static str, elapsed: Duration) {
        self.events.get_or_create(&OutcomeLabels { outcome }).inc();
        if outcome == "processed" {
            self.duration.observe(elapsed.as_secs_f64());
        }
    }
}

pub fn encode(registry: &Registry) -> String {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)
        .expect("writing to a String cannot fail");
    body
}
