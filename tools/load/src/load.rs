//! Placing the orders: an open-loop schedule, a bound on requests in flight, retries with the
//! same Idempotency-Key, and a latency histogram measured from each order's scheduled start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::{Semaphore, mpsc};

use crate::cli::Rate;

/// How much load, how fast.
#[derive(Debug, Clone)]
pub struct Plan {
    pub url: String,
    pub rate: Rate,
    pub amount: Amount,
    pub concurrency: u32,
    pub retries: u32,
    pub timeout: Duration,
    pub skus: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Duration(Duration),
    Count(u64),
}

impl Plan {
    /// The number of orders, when it is known before the run.
    pub fn planned_orders(&self) -> Option<u64> {
        match (self.amount, self.rate) {
            (Amount::Count(n), _) => Some(n),
            (Amount::Duration(d), Rate::PerSecond(r)) => Some((d.as_secs_f64() * r).ceil() as u64),
            (Amount::Duration(_), Rate::Max) => None,
        }
    }
}

/// When order `i` (from 0) is due, counted from the start of the run.
pub fn scheduled_offset(i: u64, per_second: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / per_second)
}

/// The body of order `i`: one unit of a SKU in rotation, and every second order one unit of
/// the next SKU too, so orders differ in size as real ones do.
pub fn order_body(i: u64, skus: &[String]) -> Vec<u8> {
    let n = skus.len() as u64;
    let mut items = vec![serde_json::json!({"sku": skus[(i % n) as usize], "quantity": 1})];
    if i % 2 == 1 && n > 1 {
        items.push(serde_json::json!({"sku": skus[((i + 1) % n) as usize], "quantity": 1}));
    }
    let customer = i % 1_000;
    serde_json::to_vec(&serde_json::json!({
        "customer_id": format!("load-{customer}"),
        "customer_email": format!("load+{customer}@example.com"),
        "items": items,
    }))
    .expect("a JSON value serialises")
}

/// What became of one order after its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 201; `replayed` when an earlier attempt had placed it (`Idempotent-Replayed: true`).
    Accepted { replayed: bool },
    /// A 4xx other than 409: the order itself was refused, retrying would not help.
    Refused,
    /// Every attempt failed.
    Failed,
}

/// One answer to one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// No HTTP answer: connection refused or reset, or the attempt timed out.
    Transport,
}

struct Placed {
    outcome: Outcome,
    answers: Vec<Answer>,
    retry_after_waited: Duration,
    latency: Duration,
}

/// What the POSTs came to.
pub struct Results {
    pub sent: u64,
    pub accepted: u64,
    pub replayed: u64,
    pub refused: u64,
    pub failed: u64,
    /// Every answer to every attempt, by status.
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub retry_after_waits: u64,
    pub retry_after_waited: Duration,
    /// Microseconds from each order's scheduled start to its final answer.
    pub latency: Histogram<u64>,
    /// From the first scheduled order to the last answer.
    pub elapsed: Duration,
    pub interrupted: bool,
}

impl Results {
    fn new() -> Self {
        Results {
            sent: 0,
            accepted: 0,
            replayed: 0,
            refused: 0,
            failed: 0,
            statuses: BTreeMap::new(),
            transport_errors: 0,
            retry_after_waits: 0,
            retry_after_waited: Duration::ZERO,
            // Up to an hour, three significant digits.
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
            elapsed: Duration::ZERO,
            interrupted: false,
        }
    }

    fn add(&mut self, placed: Placed) {
        self.sent += 1;
        match placed.outcome {
            Outcome::Accepted { replayed } => {
                self.accepted += 1;
                self.replayed += u64::from(replayed);
            }
            Outcome::Refused => self.refused += 1,
            Outcome::Failed => self.failed += 1,
        }
        for answer in placed.answers {
            match answer {
                Answer::Status(code) => *self.statuses.entry(code).or_default() += 1,
                Answer::Transport => self.transport_errors += 1,
            }
        }
        if !placed.retry_after_waited.is_zero() {
            self.retry_after_waits += 1;
            self.retry_after_waited += placed.retry_after_waited;
        }
        let micros = u64::try_from(placed.latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros.max(1));
    }
}

/// Places the planned orders. Returns when every order has its final answer, or, after
/// `stop` resolves (Ctrl-C), once the orders in flight have theirs.
pub async fn run(
    plan: &Plan,
    progress: &ProgressBar,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<Results> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency as usize)
        .timeout(plan.timeout)
        .tcp_nodelay(true)
        .build()
        .context("cannot build the HTTP client")?;
    let endpoint: Arc<str> = format!("{}/orders", plan.url.trim_end_matches('/')).into();
    let slots = Arc::new(Semaphore::new(plan.concurrency as usize));
    let (tx, mut rx) = mpsc::unbounded_channel::<Placed>();
    let planned = plan.planned_orders();
    let start = Instant::now();
    let deadline = match plan.amount {
        Amount::Duration(d) => Some(start + d),
        Amount::Count(_) => None,
    };

    let schedule = async {
        let mut i: u64 = 0;
        loop {
            if planned.is_some_and(|n| i >= n) {
                break;
            }
            let due = match plan.rate {
                Rate::PerSecond(r) => start + scheduled_offset(i, r),
                Rate::Max => Instant::now(),
            };
            if deadline.is_some_and(|d| due >= d) {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            // Open loop: a fixed-rate order's clock started when it was due, however long it
            // waited for a slot. At `max` there is no schedule, so it starts now.
            let started = match plan.rate {
                Rate::PerSecond(_) => due,
                Rate::Max => Instant::now(),
            };
            let client = client.clone();
            let endpoint = endpoint.clone();
            let body = order_body(i, &plan.skus);
            let key = format!("shop-load-{}", uuid::Uuid::new_v4());
            let tx = tx.clone();
            let retries = plan.retries;
            tokio::spawn(async move {
                let mut placed = place(&client, &endpoint, body, &key, retries).await;
                placed.latency = started.elapsed();
                drop(slot);
                let _ = tx.send(placed);
            });
            i += 1;
        }
    };
    let collector = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut results = Results::new();
            while let Some(placed) = rx.recv().await {
                results.add(placed);
                progress.inc(1);
            }
            results
        })
    };
    let interrupted = tokio::select! {
        () = schedule => false,
        () = stop => true,
    };
    // The collector ends once the last order in flight has reported.
    drop(tx);
    let mut results = collector.await.context("the result collector failed")?;
    results.elapsed = start.elapsed();
    results.interrupted = interrupted;
    Ok(results)
}

async fn place(
    client: &reqwest::Client,
    endpoint: &str,
    body: Vec<u8>,
    key: &str,
    retries: u32,
) -> Placed {
    let mut placed = Placed {
        outcome: Outcome::Failed,
        answers: Vec::new(),
        retry_after_waited: Duration::ZERO,
        latency: Duration::ZERO,
    };
    for attempt in 0..=retries {
        let response = client
            .post(endpoint)
            .header(CONTENT_TYPE, "application/json")
            .header("idempotency-key", key)
            .body(body.clone())
            .send()
            .await;
        let pause = match response {
            Err(_) => {
                placed.answers.push(Answer::Transport);
                backoff(attempt)
            }
            Ok(response) => {
                let status = response.status();
                placed.answers.push(Answer::Status(status.as_u16()));
                let retry_after = retry_after(response.headers());
                let replayed = response
                    .headers()
                    .get("idempotent-replayed")
                    .is_some_and(|v| v == "true");
                // Read the body so the connection goes back to the pool.
                let _ = response.bytes().await;
                match status {
                    StatusCode::CREATED => {
                        placed.outcome = Outcome::Accepted { replayed };
                        return placed;
                    }
                    StatusCode::SERVICE_UNAVAILABLE if retry_after.is_some() => {
                        // Honoured, within reason: a misconfigured server must not park the run.
                        let wait = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
                        if attempt < retries {
                            placed.retry_after_waited += wait;
                        }
                        wait
                    }
                    // 409: an earlier attempt with this key is still being handled.
                    s if s.is_server_error() || s == StatusCode::CONFLICT => backoff(attempt),
                    _ => {
                        placed.outcome = Outcome::Refused;
                        return placed;
                    }
                }
            }
        };
        if attempt < retries {
            tokio::time::sleep(pause).await;
        }
    }
    placed
}

const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 << attempt.min(6))
}

/// `Retry-After` in seconds; an HTTP date is not worth parsing here and counts as one second.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    Some(
        value
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or(Duration::from_secs(1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skus() -> Vec<String> {
        vec!["KB-001".into(), "MS-002".into(), "CB-005".into()]
    }

    fn plan(rate: Rate, amount: Amount) -> Plan {
        Plan {
            url: "http://127.0.0.1:1".into(),
            rate,
            amount,
            concurrency: 4,
            retries: 0,
            timeout: Duration::from_secs(1),
            skus: skus(),
        }
    }

    #[test]
    fn orders_at_a_fixed_rate_are_due_at_evenly_spaced_times_from_the_start() {
        assert_eq!(scheduled_offset(0, 100.0), Duration::ZERO);
        assert_eq!(scheduled_offset(250, 100.0), Duration::from_millis(2_500));
        assert_eq!(scheduled_offset(3, 1_000.0), Duration::from_millis(3));
    }

    #[test]
    fn a_duration_at_a_fixed_rate_is_a_known_number_of_orders() {
        let secs = |s| Amount::Duration(Duration::from_secs(s));
        assert_eq!(
            plan(Rate::PerSecond(1000.0), secs(10)).planned_orders(),
            Some(10_000)
        );
        assert_eq!(plan(Rate::Max, Amount::Count(7)).planned_orders(), Some(7));
        assert_eq!(plan(Rate::Max, secs(10)).planned_orders(), None);
    }

    #[test]
    fn orders_rotate_through_the_skus_and_every_second_one_buys_two() {
        let body =
            |i| serde_json::from_slice::<serde_json::Value>(&order_body(i, &skus())).unwrap();
        let first = body(0);
        assert_eq!(
            first["items"],
            serde_json::json!([{"sku": "KB-001", "quantity": 1}])
        );
        let second = body(1);
        assert_eq!(
            second["items"],
            serde_json::json!([{"sku": "MS-002", "quantity": 1}, {"sku": "CB-005", "quantity": 1}])
        );
        assert_eq!(body(2)["items"][0]["sku"], "CB-005");
        assert_eq!(second["customer_email"], "load+1@example.com");
        let one_sku = order_body(1, &["KB-001".to_owned()]);
        let one: serde_json::Value = serde_json::from_slice(&one_sku).unwrap();
        assert_eq!(one["items"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_a_date_counts_as_one_second() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(1)));
    }

    #[test]
    fn every_answer_is_counted_and_an_order_counts_once() {
        let mut results = Results::new();
        results.add(Placed {
            outcome: Outcome::Accepted { replayed: true },
            answers: vec![Answer::Transport, Answer::Status(503), Answer::Status(201)],
            retry_after_waited: Duration::from_secs(1),
            latency: Duration::from_millis(1_200),
        });
        results.add(Placed {
            outcome: Outcome::Refused,
            answers: vec![Answer::Status(422)],
            retry_after_waited: Duration::ZERO,
            latency: Duration::from_millis(2),
        });
        assert_eq!(
            (results.sent, results.accepted, results.replayed),
            (2, 1, 1)
        );
        assert_eq!((results.refused, results.failed), (1, 0));
        assert_eq!(results.transport_errors, 1);
        assert_eq!(
            results.statuses,
            BTreeMap::from([(201, 1), (422, 1), (503, 1)])
        );
        assert_eq!(results.retry_after_waits, 1);
        assert_eq!(results.latency.len(), 2);
        assert!(results.latency.max() >= 1_200_000);
    }

    #[tokio::test]
    async fn an_unreachable_order_service_fails_every_order_after_its_retries() {
        // Port 1 on loopback refuses connections at once.
        let mut plan = plan(Rate::PerSecond(1000.0), Amount::Count(3));
        plan.retries = 1;
        let results = run(&plan, &ProgressBar::hidden(), std::future::pending())
            .await
            .unwrap();
        assert_eq!((results.sent, results.failed, results.accepted), (3, 3, 0));
        assert_eq!(results.transport_errors, 6);
        // Each order waited one 100 ms backoff before its retry.
        assert!(results.latency.min() >= 100_000);
    }
}
