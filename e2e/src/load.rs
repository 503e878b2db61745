//! A customer who keeps placing orders while the test breaks things, and retries each one
//! with its `Idempotency-Key` until it is accepted, as a careful client does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// SKUs with stock for thousands of orders, so every order is reserved.
const SKUS: [&str; 3] = ["KB-001", "MS-002", "CB-005"];
/// How long one order may go unaccepted (the Order Service down and restarting) before the
/// test gives up.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// Orders placed in the background, one after another, with a pause between them.
pub struct Load {
    stop: CancellationToken,
    task: JoinHandle<Vec<Value>>,
    accepted: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

impl Load {
    /// Starts placing orders at `url` (the Order Service's `/orders`).
    pub fn start(http: reqwest::Client, url: String, pause: Duration) -> Load {
        let stop = CancellationToken::new();
        let accepted = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(place_orders(
            http,
            url,
            pause,
            stop.clone(),
            accepted.clone(),
            refused.clone(),
        ));
        Load {
            stop,
            task,
            accepted,
            refused,
        }
    }

    /// Orders answered 201 so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Attempts that got no 201 (connection refused, 409, 5xx) and were retried.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }

    /// Waits until `n` more orders than now have been accepted.
    pub async fn wait_for_accepted(&self, n: usize) {
        let target = self.accepted() + n;
        crate::eventually(&format!("{target} accepted orders"), RETRY_FOR, || async {
            (self.accepted() >= target).then_some(())
        })
        .await;
    }

    /// Waits until `n` more attempts than now have been refused.
    pub async fn wait_for_refused(&self, n: usize) {
        let target = self.refused() + n;
        crate::eventually(&format!("{target} refused attempts"), RETRY_FOR, || async {
            (self.refused() >= target).then_some(())
        })
        .await;
    }

    /// Stops after the order in hand is accepted; returns every accepted order (the 201
    /// bodies), in the order they were placed.
    pub async fn finish(self) -> Vec<Value> {
        self.stop.cancel();
        self.task.await.expect("the load task panicked")
    }
}

async fn place_orders(
    http: reqwest::Client,
    url: String,
    pause: Duration,
    stop: CancellationToken,
    accepted: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
) -> Vec<Value> {
    let mut orders = Vec::new();
    for n in 0usize.. {
        if stop.is_cancelled() {
            break;
        }
        let body = json!({
            "customer_id": format!("load-{n}"),
            "customer_email": format!("load-{n}@example.com"),
            "items": [order_line(n)],
        });
        let key = uuid::Uuid::new_v4().to_string();
        let deadline = Instant::now() + RETRY_FOR;
        let order = loop {
            let response = http
                .post(&url)
                .header("idempotency-key", &key)
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match response {
                Ok(response) if response.status() == 201 => {
                    break response
                        .json::<Value>()
                        .await
                        .expect("a 201 carries the order");
                }
                Ok(response) if response.status().is_client_error() && response.status() != 409 => {
                    let status = response.status();
                    panic!(
                        "order {n} was refused: {status} {}",
                        response.text().await.unwrap_or_default()
                    );
                }
                // Down, restarting, busy with this key, or failing: retry with the same key.
                _ => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    assert!(
                        Instant::now() < deadline,
                        "order {n} was not accepted within {RETRY_FOR:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        orders.push(order);
        accepted.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(pause).await;
    }
    orders
}

/// Mostly small orders that go through; every seventh is five monitors, 1,245.00 EUR, over
/// the sandbox card's limit: declined, so its saga cancels it and undoes its reservation.
fn order_line(n: usize) -> serde_json::Value {
    if n % 7 == 3 {
        serde_json::json!({"sku": "MN-003", "quantity": 5})
    } else {
        serde_json::json!({"sku": SKUS[n % SKUS.len()], "quantity": 1 + n % 3})
    }
}
