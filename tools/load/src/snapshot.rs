//! What one consumer service's `/metrics` says about its progress, and the arithmetic on two
//! scrapes: orders settled in between, and their order→effect latency.
//!
//! The contract (every series labelled `service="<its name>"`):
//! - the histogram `shop_order_to_effect_seconds`: seconds from an order being placed to the
//!   service committing its part of the order's end (`order_confirmed` or `order_cancelled`),
//!   observed exactly once per order. Its `_count` is the number of orders the service has
//!   *settled*, whichever way they ended: that is what completion counts.
//! - `shop_consumer_events_total{outcome=...}`: events read, by outcome. A service handles a
//!   varying number of events per order (Inventory: `order_placed` and the order's end; the
//!   Order Service: the replies), so these are throughput figures, never a completion count.

use serde::Serialize;

use crate::prom::{self, Sample};

const EVENTS: &str = "shop_consumer_events_total";
const EFFECT: &str = "shop_order_to_effect_seconds";

/// One scrape of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The `service` label, e.g. `inventory-service`.
    pub service: String,
    /// Events processed, of every type.
    pub processed: u64,
    pub dead_lettered: u64,
    pub order_to_effect: Histogram,
}

impl Snapshot {
    /// Reads a scrape. The service is named by the `service` label of its
    /// `shop_consumer_events_total`, so no names need configuring; a scrape without that
    /// metric is not a consumer service, and one without the order→effect histogram cannot
    /// say which orders it has settled: both are errors naming the missing metric.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let samples = prom::parse(text)?;
        let service = samples
            .iter()
            .find(|s| s.name == EVENTS)
            .ok_or_else(|| format!("no `{EVENTS}` metric: not a consumer service?"))?
            .label("service")
            .unwrap_or("unnamed")
            .to_owned();
        let outcome = |wanted: &str| {
            samples
                .iter()
                .filter(|s| s.name == EVENTS && s.label("outcome") == Some(wanted))
                .map(|s| s.value as u64)
                .sum()
        };
        let order_to_effect = Histogram::from_samples(&samples, EFFECT).ok_or_else(|| {
            format!(
                "no `{EFFECT}` histogram: {service} cannot say how many orders it has settled \
                 (not a service that consumes the orders' ends?)"
            )
        })?;
        Ok(Snapshot {
            processed: outcome("processed"),
            dead_lettered: outcome("dead_lettered"),
            order_to_effect,
            service,
        })
    }

    /// Orders whose end (confirmed or cancelled) this service has committed since it started.
    pub fn settled(&self) -> u64 {
        self.order_to_effect.count as u64
    }
}

/// A cumulative Prometheus histogram: `(upper bound, observations ≤ bound)`, ascending, the
/// last bound `+Inf`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

/// Where a quantile lies: at most this bucket's upper bound, or beyond the last finite one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    AtMost(f64),
    Above(f64),
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::AtMost(s) => write!(f, "≤{}", crate::report::millis(*s)),
            Bound::Above(s) => write!(f, ">{}", crate::report::millis(*s)),
        }
    }
}

impl Serialize for Bound {
    /// `{"le": 0.025}` or `{"gt": 10.0}`, in seconds.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            Bound::AtMost(s) => map.serialize_entry("le", s)?,
            Bound::Above(s) => map.serialize_entry("gt", s)?,
        }
        map.end()
    }
}

impl Histogram {
    fn from_samples(samples: &[Sample], family: &str) -> Option<Self> {
        let bucket = format!("{family}_bucket");
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.name == bucket)
            .filter_map(|s| Some((s.label("le")?.parse().ok()?, s.value)))
            .collect();
        if buckets.is_empty() {
            return None;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let value = |name: String| samples.iter().find(|s| s.name == name).map(|s| s.value);
        let count = value(format!("{family}_count"))
            .unwrap_or_else(|| buckets.last().map(|b| b.1).unwrap_or_default());
        Some(Histogram {
            buckets,
            count,
            sum: value(format!("{family}_sum")).unwrap_or_default(),
        })
    }

    /// The observations made between `earlier` and `self`. Both must come from the same
    /// process (a restart resets the counters): that shows as a negative count, an error.
    pub fn since(&self, earlier: &Histogram) -> Result<Histogram, String> {
        let bounds = |h: &Histogram| h.buckets.iter().map(|b| b.0).collect::<Vec<_>>();
        if bounds(self) != bounds(earlier) {
            return Err("the histogram's buckets changed between scrapes".into());
        }
        if self.count < earlier.count {
            return Err("the histogram went backwards: did the service restart?".into());
        }
        Ok(Histogram {
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|(now, then)| (now.0, now.1 - then.1))
                .collect(),
            count: self.count - earlier.count,
            sum: self.sum - earlier.sum,
        })
    }
}

/// An upper bound of the `q` quantile of the *latest* of several histograms' observations of
/// the same orders: when did an order's effects exist in every service? Per order, the
/// services' latencies cannot be paired up from histograms, but an order is late in all of
/// them only if it is late in one, so the share of orders not done by `t` is at most the sum
/// of each service's share not done by `t` (the union bound). The answer is the smallest bucket
/// bound where that sum falls to `1 - q`, never below the largest per-service quantile.
///
/// Of one histogram, it is the plain quantile: the smallest bucket bound under which at least
/// `q` of the observations lie. Bucket bounds are all a histogram knows, so even then it is an
/// upper bound of the true value.
pub fn upper_bound(histograms: &[Histogram], q: f64) -> Option<Bound> {
    let first = histograms.first()?;
    if histograms.iter().any(|h| h.count <= 0.0) {
        return None;
    }
    // Bounds common to all histograms (the services share their bucket layout; if one
    // differs, only the shared bounds can be evaluated).
    let bounds: Vec<f64> = first
        .buckets
        .iter()
        .map(|b| b.0)
        .filter(|bound| {
            histograms
                .iter()
                .all(|h| h.buckets.iter().any(|b| b.0 == *bound))
        })
        .collect();
    let allowed_late = (1.0 - q).max(0.0);
    let mut last_finite = 0.0;
    for bound in bounds {
        if bound.is_infinite() {
            break;
        }
        last_finite = bound;
        let late: f64 = histograms
            .iter()
            .map(|h| {
                let within = h
                    .buckets
                    .iter()
                    .find(|b| b.0 == bound)
                    .map(|b| b.1)
                    .unwrap_or_default();
                (h.count - within) / h.count
            })
            .sum();
        // A tolerance for the floating-point sum of shares that should be exactly zero.
        if late <= allowed_late + 1e-12 {
            return Some(Bound::AtMost(bound));
        }
    }
    Some(Bound::Above(last_finite))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(processed: u64, buckets: &[(&str, u64)], sum: f64) -> String {
        let mut text = format!(
            "# TYPE shop_consumer_events counter\n\
             shop_consumer_events_total{{service=\"payment-service\",outcome=\"processed\"}} {processed}\n\
             shop_consumer_events_total{{service=\"payment-service\",outcome=\"dead_lettered\"}} 2\n\
             shop_consumer_handle_seconds_bucket{{le=\"1.0\"}} 99\n"
        );
        for (le, n) in buckets {
            text += &format!("shop_order_to_effect_seconds_bucket{{le=\"{le}\"}} {n}\n");
        }
        let count = buckets.last().map(|b| b.1).unwrap_or_default();
        text += &format!(
            "shop_order_to_effect_seconds_sum {sum}\n\
             shop_order_to_effect_seconds_count {count}\n# EOF\n"
        );
        text
    }

    fn q(h: &Histogram, q: f64) -> Option<Bound> {
        upper_bound(std::slice::from_ref(h), q)
    }

    fn histogram(buckets: &[(f64, f64)]) -> Histogram {
        Histogram {
            buckets: buckets.to_vec(),
            count: buckets.last().unwrap().1,
            sum: 0.0,
        }
    }

    #[test]
    fn a_scrape_names_its_service_and_counts_processed_events() {
        let snapshot =
            Snapshot::from_text(&scrape(42, &[("0.01", 10), ("0.1", 40), ("+Inf", 42)], 1.5))
                .unwrap();
        assert_eq!(snapshot.service, "payment-service");
        assert_eq!(snapshot.processed, 42);
        assert_eq!(snapshot.dead_lettered, 2);
        let h = snapshot.order_to_effect;
        assert_eq!(
            h.buckets,
            vec![(0.01, 10.0), (0.1, 40.0), (f64::INFINITY, 42.0)]
        );
        assert_eq!((h.count, h.sum), (42.0, 1.5));
    }

    #[test]
    fn orders_settled_are_the_histograms_count_not_the_events_processed() {
        // Two events per order (order_placed, then its end): 40 events, 20 orders settled.
        let snapshot =
            Snapshot::from_text(&scrape(40, &[("0.01", 15), ("0.1", 20), ("+Inf", 20)], 0.3))
                .unwrap();
        assert_eq!(snapshot.processed, 40);
        assert_eq!(snapshot.settled(), 20);
    }

    #[test]
    fn a_service_without_the_histogram_cannot_say_what_it_settled() {
        let text =
            "shop_consumer_events_total{service=\"inventory-service\",outcome=\"processed\"} 7\n";
        let err = Snapshot::from_text(text).unwrap_err();
        assert!(err.contains("`shop_order_to_effect_seconds`"), "{err}");
    }

    #[test]
    fn a_scrape_without_consumer_events_is_not_a_consumer_service() {
        let err = Snapshot::from_text("shop_orders_placed_total{service=\"order-service\"} 3\n")
            .unwrap_err();
        assert!(err.contains("not a consumer service"), "{err}");
    }

    #[test]
    fn the_difference_of_two_scrapes_holds_only_the_events_in_between() {
        let before = histogram(&[(0.01, 5.0), (0.1, 8.0), (f64::INFINITY, 10.0)]);
        let after = histogram(&[(0.01, 5.0), (0.1, 98.0), (f64::INFINITY, 110.0)]);
        let diff = after.since(&before).unwrap();
        assert_eq!(
            diff.buckets,
            vec![(0.01, 0.0), (0.1, 90.0), (f64::INFINITY, 100.0)]
        );
        assert_eq!(diff.count, 100.0);
        assert_eq!(q(&diff, 0.5), Some(Bound::AtMost(0.1)));
        assert_eq!(q(&diff, 0.9), Some(Bound::AtMost(0.1)));
        assert_eq!(q(&diff, 0.91), Some(Bound::Above(0.1)));
        assert_eq!(q(&diff, 1.0), Some(Bound::Above(0.1)));
    }

    #[test]
    fn a_histogram_that_went_backwards_is_refused() {
        let before = histogram(&[(0.1, 8.0), (f64::INFINITY, 10.0)]);
        let restarted = histogram(&[(0.1, 1.0), (f64::INFINITY, 1.0)]);
        assert!(restarted.since(&before).is_err());
        let rebucketed = histogram(&[(0.2, 80.0), (f64::INFINITY, 100.0)]);
        assert!(rebucketed.since(&before).is_err());
    }

    #[test]
    fn quantiles_are_the_bound_of_the_bucket_where_the_rank_is_reached() {
        let h = histogram(&[
            (0.005, 50.0),
            (0.01, 90.0),
            (0.025, 99.0),
            (0.05, 100.0),
            (f64::INFINITY, 100.0),
        ]);
        assert_eq!(q(&h, 0.5), Some(Bound::AtMost(0.005)));
        assert_eq!(q(&h, 0.9), Some(Bound::AtMost(0.01)));
        assert_eq!(q(&h, 0.99), Some(Bound::AtMost(0.025)));
        assert_eq!(q(&h, 1.0), Some(Bound::AtMost(0.05)));
    }

    #[test]
    fn an_empty_histogram_has_no_quantiles() {
        let h = histogram(&[(0.1, 0.0), (f64::INFINITY, 0.0)]);
        assert_eq!(q(&h, 0.5), None);
    }

    #[test]
    fn the_all_services_bound_adds_up_each_services_late_share() {
        // Each service has 0.6 % of its orders above 10 ms: one service alone is within
        // 10 ms at p99, but together up to 1.2 % of orders may be late somewhere.
        let a = histogram(&[(0.01, 994.0), (0.05, 1000.0), (f64::INFINITY, 1000.0)]);
        let b = a.clone();
        assert_eq!(q(&a, 0.99), Some(Bound::AtMost(0.01)));
        assert_eq!(
            upper_bound(&[a.clone(), b], 0.99),
            Some(Bound::AtMost(0.05))
        );
        assert_eq!(upper_bound(&[a], 0.99), Some(Bound::AtMost(0.01)));
    }

    #[test]
    fn the_all_services_bound_is_never_below_the_slowest_service() {
        let fast = histogram(&[(0.01, 1000.0), (0.1, 1000.0), (f64::INFINITY, 1000.0)]);
        let slow = histogram(&[(0.01, 0.0), (0.1, 1000.0), (f64::INFINITY, 1000.0)]);
        assert_eq!(upper_bound(&[fast, slow], 0.5), Some(Bound::AtMost(0.1)));
    }

    #[test]
    fn the_all_services_bound_is_unknown_while_a_service_observed_nothing() {
        let some = histogram(&[(0.01, 10.0), (f64::INFINITY, 10.0)]);
        let none = histogram(&[(0.01, 0.0), (f64::INFINITY, 0.0)]);
        assert_eq!(upper_bound(&[some, none], 0.99), None);
        assert_eq!(upper_bound(&[], 0.99), None);
    }
}
