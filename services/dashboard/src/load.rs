//! Bursts of orders started from the page: a fixed rate for a few seconds, through the
//! Order Service's API like any client. For measuring, `shop-load` is the tool; this is for
//! watching the groups work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shop_runtime::catalog;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

pub const MAX_RATE: u32 = 500;
pub const MAX_SECONDS: u32 = 600;
/// Requests in flight at once; a tick that finds them all busy counts as failed rather than
/// queueing, so a slow Order Service shows as failures instead of a growing backlog here.
const MAX_IN_FLIGHT: usize = 64;

/// What the page shows of the burst: the one running, else the last one, else all zeros.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LoadStatus {
    pub running: bool,
    /// Orders a second.
    pub rate: u32,
    /// How long it lasts.
    pub seconds: u32,
    /// Orders the Order Service placed (201).
    pub sent: u64,
    /// Orders it refused or did not answer, and ticks that found 64 orders still in flight.
    pub failed: u64,
    pub elapsed_secs: f64,
}

// The bounds are literals (utoipa takes no constants); a test holds them to MAX_RATE and
// MAX_SECONDS.
/// A burst asked for.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    /// Orders a second.
    #[schema(minimum = 1, maximum = 500)]
    #[serde(deserialize_with = "shop_runtime::http::integer")]
    pub rate: u32,
    /// How long it lasts.
    #[schema(minimum = 1, maximum = 600)]
    #[serde(deserialize_with = "shop_runtime::http::integer")]
    pub seconds: u32,
}

impl Burst {
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_RATE).contains(&self.rate) {
            return Err(format!("rate must be 1 to {MAX_RATE} orders per second"));
        }
        if !(1..=MAX_SECONDS).contains(&self.seconds) {
            return Err(format!("seconds must be 1 to {MAX_SECONDS}"));
        }
        Ok(())
    }
}

/// Places orders on the Order Service.
#[derive(Clone)]
pub struct Orders {
    client: reqwest::Client,
    url: String,
}

impl Orders {
    pub fn new(order_service_url: &str) -> Self {
        Orders {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a default HTTP client builds"),
            url: format!("{order_service_url}/orders"),
        }
    }

    /// Places one small order of a catalog product; the Order Service's answer, status and
    /// body, whatever it was.
    pub async fn place(&self, n: u64) -> Result<(u16, Value), reqwest::Error> {
        let product = &catalog::PRODUCTS[n as usize % catalog::PRODUCTS.len()];
        let response = self
            .client
            .post(&self.url)
            .json(&json!({
                "customer_id": "dashboard",
                "customer_email": "dashboard@example.com",
                "items": [{"sku": product.sku, "quantity": 1}],
            }))
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

#[derive(Clone)]
pub struct LoadRunner {
    orders: Orders,
    state: Arc<Mutex<Option<Running>>>,
    placed: Arc<AtomicU64>,
}

struct Running {
    burst: Burst,
    started: Instant,
    stop: CancellationToken,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    finished: Arc<Mutex<Option<Duration>>>,
}

impl LoadRunner {
    pub fn new(orders: Orders) -> Self {
        LoadRunner {
            orders,
            state: Arc::default(),
            placed: Arc::default(),
        }
    }

    pub fn orders(&self) -> &Orders {
        &self.orders
    }

    /// A number for the next order, so successive orders vary their product.
    pub fn next_order(&self) -> u64 {
        self.placed.fetch_add(1, Ordering::Relaxed)
    }

    pub fn status(&self) -> LoadStatus {
        let state = self.state.lock().expect("load lock poisoned");
        let Some(running) = state.as_ref() else {
            return LoadStatus::default();
        };
        let finished = *running.finished.lock().expect("load lock poisoned");
        LoadStatus {
            running: finished.is_none(),
            rate: running.burst.rate,
            seconds: running.burst.seconds,
            sent: running.sent.load(Ordering::Relaxed),
            failed: running.failed.load(Ordering::Relaxed),
            elapsed_secs: finished
                .unwrap_or_else(|| running.started.elapsed())
                .as_secs_f64(),
        }
    }

    /// Starts `burst`, unless one is running: then `None`.
    pub fn start(&self, burst: Burst) -> Option<LoadStatus> {
        {
            let mut state = self.state.lock().expect("load lock poisoned");
            if self.is_running(&state) {
                return None;
            }
            let running = Running {
                burst,
                started: Instant::now(),
                stop: CancellationToken::new(),
                sent: Arc::default(),
                failed: Arc::default(),
                finished: Arc::default(),
            };
            tokio::spawn(self.clone().run(
                burst,
                running.stop.clone(),
                running.sent.clone(),
                running.failed.clone(),
                running.finished.clone(),
            ));
            *state = Some(running);
        }
        tracing::info!(
            rate = burst.rate,
            seconds = burst.seconds,
            "load burst started"
        );
        Some(self.status())
    }

    /// Stops the burst in progress, if any.
    pub fn stop(&self) -> LoadStatus {
        if let Some(running) = self.state.lock().expect("load lock poisoned").as_ref() {
            running.stop.cancel();
        }
        self.status()
    }

    fn is_running(&self, state: &Option<Running>) -> bool {
        state
            .as_ref()
            .is_some_and(|r| r.finished.lock().expect("load lock poisoned").is_none())
    }

    async fn run(
        self,
        burst: Burst,
        stop: CancellationToken,
        sent: Arc<AtomicU64>,
        failed: Arc<AtomicU64>,
        finished: Arc<Mutex<Option<Duration>>>,
    ) {
        let started = Instant::now();
        let end = started + Duration::from_secs(burst.seconds.into());
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / burst.rate);
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let requests = tokio_util::task::TaskTracker::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            if Instant::now() >= end {
                break;
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                failed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let (orders, n) = (self.orders.clone(), self.next_order());
            let (sent, failed) = (sent.clone(), failed.clone());
            requests.spawn(async move {
                let _permit = permit;
                match orders.place(n).await {
                    Ok((201, _)) => sent.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            });
        }
        requests.close();
        requests.wait().await;
        *finished.lock().expect("load lock poisoned") = Some(started.elapsed());
        tracing::info!(
            sent = sent.load(Ordering::Relaxed),
            failed = failed.load(Ordering::Relaxed),
            "load burst finished"
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use utoipa::PartialSchema;

    use super::*;

    #[test]
    fn the_burst_schema_states_the_bounds_check_enforces() {
        let schema = serde_json::to_value(Burst::schema()).unwrap();
        for (field, max) in [("rate", MAX_RATE), ("seconds", MAX_SECONDS)] {
            let property = &schema["properties"][field];
            assert_eq!(property["minimum"], Value::from(1), "{field}");
            assert_eq!(property["maximum"], Value::from(max), "{field}");
        }
        assert_eq!(
            schema["additionalProperties"], false,
            "unknown fields are refused"
        );
    }

    #[test]
    fn a_burst_outside_the_limits_is_refused_naming_the_limit() {
        assert!(
            Burst {
                rate: 20,
                seconds: 30
            }
            .check()
            .is_ok()
        );
        let err = Burst {
            rate: 0,
            seconds: 30,
        }
        .check()
        .unwrap_err();
        assert!(err.contains("rate must be 1 to 500"), "{err}");
        let err = Burst {
            rate: 20,
            seconds: 601,
        }
        .check()
        .unwrap_err();
        assert!(err.contains("seconds must be 1 to 600"), "{err}");
    }
}
