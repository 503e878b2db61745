//! The figures of a run, as a table for people or JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::completion::Completion;
use crate::load::Results;
use crate::snapshot::{self, Bound, Histogram};

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub url: String,
    /// Orders per second, or `"max"`.
    pub rate: String,
    pub concurrency: u32,
    pub posts: Posts,
    /// Absent with `--no-completion`.
    pub completion: Option<CompletionReport>,
}

#[derive(Debug, Serialize)]
pub struct Posts {
    pub sent: u64,
    pub accepted: u64,
    /// Accepted on a retry whose key an earlier attempt had already placed.
    pub replayed: u64,
    pub refused: u64,
    pub failed: u64,
    /// Every answer to every attempt, by HTTP status.
    pub statuses: BTreeMap<String, u64>,
    pub transport_errors: u64,
    /// Orders that waited for a 503's Retry-After, and how long in all.
    pub retry_after_waits: u64,
    pub retry_after_waited_seconds: f64,
    /// From the first scheduled order to the last answer.
    pub elapsed_seconds: f64,
    pub accepted_per_second: f64,
    /// From each order's scheduled start (its actual start at `--rate max`) to its final answer.
    pub latency_ms: Latency,
    pub interrupted: bool,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Serialize)]
pub struct CompletionReport {
    /// Every service settled every accepted order before the deadline.
    pub complete: bool,
    /// Accepted orders, which each service must settle.
    pub expected: u64,
    pub services: Vec<ServiceReport>,
    /// When every service was done; absent if one was not.
    pub all_services: Option<AllServices>,
}

#[derive(Debug, Serialize)]
pub struct ServiceReport {
    pub url: String,
    pub service: String,
    /// Orders whose end (confirmed or cancelled) the service committed: the count of its
    /// order→effect histogram. Completion is judged on this.
    pub settled: u64,
    /// Events of every type it processed meanwhile (a throughput figure: how many events an
    /// order costs varies by service).
    pub processed: u64,
    pub dead_lettered: u64,
    pub complete: bool,
    /// From the start of the run (or, in a drain, from its first processed event) until it
    /// had settled every order.
    pub elapsed_seconds: Option<f64>,
    /// Orders settled per second over `elapsed_seconds`.
    pub orders_per_second: Option<f64>,
    /// Events processed per second over `elapsed_seconds`.
    pub events_per_second: Option<f64>,
    /// Of the orders settled: from being placed to this service committing its part of the
    /// order's end. Bucket bounds in seconds: the true quantile is at most `le` (or above `gt`).
    pub order_to_effect: Option<Quantiles>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AllServices {
    pub elapsed_seconds: f64,
    pub orders_per_second: f64,
    /// An upper bound of the quantiles of the time until every service had settled an order
    /// (see `snapshot::upper_bound`).
    pub order_to_all_effects: Option<Quantiles>,
}

#[derive(Debug, Serialize)]
pub struct Quantiles {
    pub p50: Option<Bound>,
    pub p90: Option<Bound>,
    pub p99: Option<Bound>,
    pub max: Option<Bound>,
}

impl Quantiles {
    fn of(histograms: &[Histogram]) -> Option<Self> {
        let at = |q| snapshot::upper_bound(histograms, q);
        at(0.5)?;
        Some(Quantiles {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct DrainReport {
    /// The backlog: orders each service must settle.
    pub orders: u64,
    pub complete: bool,
    pub services: Vec<ServiceReport>,
    /// The slowest service's orders settled per second.
    pub slowest_orders_per_second: Option<f64>,
    /// The slowest service's events processed per second (not necessarily the same service).
    pub slowest_events_per_second: Option<f64>,
}

pub fn posts(results: &Results) -> Posts {
    let ms = |micros: u64| micros as f64 / 1_000.0;
    let h = &results.latency;
    let empty = h.is_empty();
    let q = |q: f64| {
        if empty {
            0.0
        } else {
            ms(h.value_at_quantile(q))
        }
    };
    Posts {
        sent: results.sent,
        accepted: results.accepted,
        replayed: results.replayed,
        refused: results.refused,
        failed: results.failed,
        statuses: results
            .statuses
            .iter()
            .map(|(code, n)| (code.to_string(), *n))
            .collect(),
        transport_errors: results.transport_errors,
        retry_after_waits: results.retry_after_waits,
        retry_after_waited_seconds: results.retry_after_waited.as_secs_f64(),
        elapsed_seconds: results.elapsed.as_secs_f64(),
        accepted_per_second: per_second(results.accepted, results.elapsed),
        latency_ms: Latency {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: if empty { 0.0 } else { ms(h.max()) },
            mean: if empty { 0.0 } else { h.mean() / 1_000.0 },
        },
        interrupted: results.interrupted,
    }
}

pub fn service(completion: &Completion, expected: u64) -> ServiceReport {
    ServiceReport {
        url: completion.url.clone(),
        service: completion.service.clone(),
        settled: completion.settled,
        processed: completion.processed,
        dead_lettered: completion.dead_lettered,
        complete: completion.complete,
        elapsed_seconds: completion.elapsed.map(|e| e.as_secs_f64()),
        orders_per_second: completion.orders_per_second,
        events_per_second: completion.events_per_second,
        order_to_effect: completion
            .order_to_effect
            .as_ref()
            .and_then(|h| Quantiles::of(std::slice::from_ref(h))),
        error: completion.error.clone().or_else(|| {
            (completion.settled < expected && completion.elapsed.is_none()).then(|| {
                format!(
                    "settled {} of {expected} orders before the deadline",
                    completion.settled
                )
            })
        }),
    }
}

pub fn completion(completions: &[Completion], expected: u64) -> CompletionReport {
    let services: Vec<ServiceReport> = completions.iter().map(|c| service(c, expected)).collect();
    let complete = services.iter().all(|s| s.complete);
    let all_services = complete
        .then(|| completions.iter().filter_map(|c| c.elapsed).max())
        .flatten()
        .map(|slowest| {
            let histograms: Option<Vec<Histogram>> = completions
                .iter()
                .map(|c| c.order_to_effect.clone())
                .collect();
            AllServices {
                elapsed_seconds: slowest.as_secs_f64(),
                orders_per_second: per_second(expected, slowest),
                order_to_all_effects: histograms.as_deref().and_then(Quantiles::of),
            }
        });
    CompletionReport {
        complete,
        expected,
        services,
        all_services,
    }
}

pub fn drain(completions: &[Completion], orders: u64) -> DrainReport {
    let services: Vec<ServiceReport> = completions.iter().map(|c| service(c, orders)).collect();
    let complete = services.iter().all(|s| s.complete);
    let slowest = |rate: fn(&ServiceReport) -> Option<f64>| {
        complete
            .then(|| services.iter().filter_map(rate).reduce(f64::min))
            .flatten()
    };
    DrainReport {
        orders,
        complete,
        slowest_orders_per_second: slowest(|s| s.orders_per_second),
        slowest_events_per_second: slowest(|s| s.events_per_second),
        services,
    }
}

fn per_second(n: u64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        n as f64 / over.as_secs_f64()
    }
}

/// Seconds as a short human figure: `850µs`, `12.3ms`, `1.50s`.
pub fn millis(seconds: f64) -> String {
    if seconds < 0.001 {
        format!("{:.0}µs", seconds * 1e6)
    } else if seconds < 1.0 {
        let ms = seconds * 1e3;
        if ms < 10.0 {
            format!("{ms:.1}ms")
        } else {
            format!("{ms:.0}ms")
        }
    } else {
        format!("{seconds:.2}s")
    }
}

fn bound(b: Option<Bound>) -> String {
    b.map_or_else(|| "-".to_owned(), |b| b.to_string())
}

fn opt(value: Option<f64>, f: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "-".to_owned(), f)
}

impl RunReport {
    pub fn table(&self) -> String {
        let p = &self.posts;
        let mut out = String::new();
        let statuses = p
            .statuses
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect::<Vec<_>>()
            .join("  ");
        let l = &p.latency_ms;
        let _ = writeln!(
            out,
            "POST {}/orders  rate {}  concurrency {}{}",
            self.url.trim_end_matches('/'),
            self.rate,
            self.concurrency,
            if p.interrupted { "  (interrupted)" } else { "" }
        );
        let _ = writeln!(
            out,
            "  orders     {} sent, {} accepted ({} replayed), {} refused, {} failed in {:.2}s = {:.1} accepted/s",
            p.sent,
            p.accepted,
            p.replayed,
            p.refused,
            p.failed,
            p.elapsed_seconds,
            p.accepted_per_second
        );
        let _ = writeln!(
            out,
            "  answers    {}  transport errors: {}  Retry-After honoured: {} ({:.1}s)",
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses
            },
            p.transport_errors,
            p.retry_after_waits,
            p.retry_after_waited_seconds
        );
        let _ = writeln!(
            out,
            "  latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}",
            millis(l.p50 / 1e3),
            millis(l.p90 / 1e3),
            millis(l.p99 / 1e3),
            millis(l.p999 / 1e3),
            millis(l.max / 1e3),
            millis(l.mean / 1e3)
        );
        if let Some(c) = &self.completion {
            let _ = writeln!(
                out,
                "\ncompletion: each service settling (committing the end of) {} accepted orders, \
                 from the start of the run; order→effect quantiles are histogram bucket bounds",
                c.expected
            );
            out += &services_table(&c.services, true);
            match &c.all_services {
                Some(all) => {
                    let q = all.order_to_all_effects.as_ref();
                    let _ = writeln!(
                        out,
                        "  all services done after {:.2}s = {:.1} orders/s end to end; order→settled everywhere p50 {}  p90 {}  p99 {}  max {} (upper bounds)",
                        all.elapsed_seconds,
                        all.orders_per_second,
                        bound(q.and_then(|q| q.p50)),
                        bound(q.and_then(|q| q.p90)),
                        bound(q.and_then(|q| q.p99)),
                        bound(q.and_then(|q| q.max)),
                    );
                }
                None => out += "  INCOMPLETE: not every service settled every accepted order\n",
            }
        }
        out
    }
}

impl DrainReport {
    pub fn table(&self) -> String {
        let mut out = format!(
            "backlog drain of {} orders per service (from each service's first processed event \
             until it had settled every order)\n",
            self.orders
        );
        out += &services_table(&self.services, false);
        match (
            self.slowest_orders_per_second,
            self.slowest_events_per_second,
        ) {
            _ if !self.complete => out += "  INCOMPLETE: not every service drained its backlog\n",
            (Some(orders), Some(events)) => {
                let _ = writeln!(
                    out,
                    "  slowest service: {orders:.0} orders/s settled; slowest: {events:.0} events/s processed"
                );
            }
            _ => out += "  drained, but too fast to time: a larger backlog would tell\n",
        }
        out
    }
}

fn services_table(services: &[ServiceReport], latency: bool) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "  {:<20} {:>8} {:>9} {:>6} {:>10} {:>9} {:>9}",
        "service", "settled", "events", "dead", "done after", "orders/s", "events/s"
    );
    if latency {
        let _ = write!(out, "   order→effect p50    p90    p99    max");
    }
    out.push('\n');
    for s in services {
        let _ = write!(
            out,
            "  {:<20} {:>8} {:>9} {:>6} {:>10} {:>9} {:>9}",
            s.service,
            s.settled,
            s.processed,
            s.dead_lettered,
            opt(s.elapsed_seconds, |e| format!("{e:.2}s")),
            opt(s.orders_per_second, |r| format!("{r:.1}")),
            opt(s.events_per_second, |r| format!("{r:.1}")),
        );
        if latency {
            let q = s.order_to_effect.as_ref();
            let _ = write!(
                out,
                "   {:>16} {:>6} {:>6} {:>6}",
                bound(q.and_then(|q| q.p50)),
                bound(q.and_then(|q| q.p90)),
                bound(q.and_then(|q| q.p99)),
                bound(q.and_then(|q| q.max)),
            );
        }
        if let Some(e) = &s.error {
            let _ = write!(out, "   ({e})");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_read_in_the_unit_that_suits_them() {
        assert_eq!(millis(0.000_85), "850µs");
        assert_eq!(millis(0.002_5), "2.5ms");
        assert_eq!(millis(0.025), "25ms");
        assert_eq!(millis(1.5), "1.50s");
    }

    /// 100 orders settled, two events each, after `secs`.
    fn done(service: &str, secs: f64, h: Option<Histogram>) -> Completion {
        Completion {
            url: format!("http://{service}"),
            service: service.into(),
            settled: 100,
            processed: 200,
            dead_lettered: 0,
            complete: true,
            elapsed: Some(Duration::from_secs_f64(secs)),
            orders_per_second: Some(100.0 / secs),
            events_per_second: Some(200.0 / secs),
            order_to_effect: h,
            error: None,
        }
    }

    #[test]
    fn the_end_to_end_rate_is_set_by_the_slowest_service() {
        let h = Histogram {
            buckets: vec![(0.01, 90.0), (0.05, 100.0), (f64::INFINITY, 100.0)],
            count: 100.0,
            sum: 1.0,
        };
        let report = completion(
            &[done("a", 1.0, Some(h.clone())), done("b", 4.0, Some(h))],
            100,
        );
        assert!(report.complete);
        let all = report.all_services.unwrap();
        assert_eq!(all.elapsed_seconds, 4.0);
        assert_eq!(all.orders_per_second, 25.0);
        let q = all.order_to_all_effects.unwrap();
        // 10 % late in each: up to 20 % late somewhere, so p50 is the first bucket at most,
        // p90 the second.
        assert_eq!(q.p50, Some(Bound::AtMost(0.01)));
        assert_eq!(q.p90, Some(Bound::AtMost(0.05)));
    }

    #[test]
    fn a_service_that_did_not_finish_leaves_the_run_incomplete_and_says_how_far_it_got() {
        let mut slow = done("b", 1.0, None);
        slow.complete = false;
        slow.elapsed = None;
        slow.orders_per_second = None;
        slow.events_per_second = None;
        slow.settled = 60;
        slow.processed = 160;
        let report = completion(&[done("a", 1.0, None), slow], 100);
        assert!(!report.complete);
        assert!(report.all_services.is_none());
        assert_eq!(
            report.services[1].error.as_deref(),
            Some("settled 60 of 100 orders before the deadline")
        );
        assert!(report.services[0].order_to_effect.is_none());
    }

    #[test]
    fn a_drain_reports_its_slowest_service_in_orders_settled_and_events_processed() {
        let report = drain(&[done("a", 1.0, None), done("b", 4.0, None)], 100);
        assert_eq!(report.slowest_orders_per_second, Some(25.0));
        assert_eq!(report.slowest_events_per_second, Some(50.0));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["orders"], 100);
        assert_eq!(json["services"][1]["settled"], 100);
        assert_eq!(json["services"][1]["orders_per_second"], 25.0);
        assert_eq!(json["services"][1]["events_per_second"], 50.0);
        assert!(report.table().contains("25 orders/s settled"));
    }

    #[test]
    fn an_unfinished_drain_names_no_slowest_rate() {
        let mut stuck = done("b", 1.0, None);
        stuck.complete = false;
        let report = drain(&[done("a", 1.0, None), stuck], 100);
        assert_eq!(report.slowest_orders_per_second, None);
        assert_eq!(report.slowest_events_per_second, None);
        assert!(report.table().contains("INCOMPLETE"));
    }

    #[test]
    fn a_drain_too_fast_to_time_is_complete_all_the_same() {
        let mut instant = done("a", 1.0, None);
        instant.elapsed = None;
        instant.orders_per_second = None;
        instant.events_per_second = None;
        let report = drain(&[instant], 100);
        assert!(report.complete);
        assert_eq!(report.slowest_orders_per_second, None);
        let table = report.table();
        assert!(table.contains("too fast to time"), "{table}");
        assert!(!table.contains("INCOMPLETE"), "{table}");
    }

    #[test]
    fn bounds_serialise_as_le_or_gt_in_seconds() {
        let q = Quantiles {
            p50: Some(Bound::AtMost(0.005)),
            p90: None,
            p99: Some(Bound::Above(10.0)),
            max: None,
        };
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(json["p50"], serde_json::json!({"le": 0.005}));
        assert_eq!(json["p99"], serde_json::json!({"gt": 10.0}));
        assert!(json["p90"].is_null());
    }
}
