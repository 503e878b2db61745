//! Prometheus metrics. Each app owns a [`Registry`], so several services can run in one
//! test process without sharing counters.

use std::time::Duration;

use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::envelope::{Envelope, Event};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// What the consumer loop can do with an event.
const OUTCOMES: [&str; 4] = ["processed", "duplicate", "retried", "dead_lettered"];

/// What the consumer loop did with each event, and how long handling took.
#[derive(Clone)]
pub struct ConsumerMetrics {
    events: Family<OutcomeLabels, Counter>,
    duration: Histogram,
    order_to_effect: Histogram,
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
            duration: Histogram::new(exponential_buckets(0.000_5, 2.0, 14)),
            order_to_effect: Histogram::new(ORDER_TO_EFFECT_BUCKETS),
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
            "consumer_batch_events",
            "Events applied per transaction: one when idle, up to 500 when catching up",
            metrics.batch_size.clone(),
        );
        metrics
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
            if let Some(placed_at) = event.data.ends_order_placed_at() {
                let age = (now - placed_at).to_std().unwrap_or_default();
                self.order_to_effect.observe(age.as_secs_f64());
            }
        }
    }
}

pub fn encode(registry: &Registry) -> String {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)
        .expect("writing to a String cannot fail");
    body
}
