//! The operational endpoints tell the truth: `/readyz` fails while Kafka or the database is
//! out of reach, `/healthz` fails while a loop is stuck, and `/metrics` reports lag per
//! partition, the outbox backlog and every HTTP request.

use std::sync::Arc;
use std::time::Duration;

use e2e::stack::spawn_consumer;
use e2e::{Consumer, Service, Stack, eventually, sample};
use serde_json::{Value, json};
use shop_runtime::Envelope;
use shop_runtime::Event;
use shop_runtime::app::ConsumerApp;
use shop_runtime::kafka::{Applied, Handler, HandlerError};
use shop_runtime::retry;
use sqlx::{Connection, PgConnection};
use tokio::sync::Semaphore;

const PATIENCE: Duration = Duration::from_secs(60);

async fn status_of(stack: &Stack, service: &impl Service, path: &str) -> (u16, String) {
    let response = stack
        .http
        .get(service.url(path))
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {path}: {err}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Waits until `path` answers `status`, and returns the body it answered with.
async fn until_status(stack: &Stack, service: &impl Service, path: &str, status: u16) -> String {
    eventually(&format!("{path} to answer {status}"), PATIENCE, || async {
        let (got, body) = status_of(stack, service, path).await;
        (got == status).then_some(body)
    })
    .await
}

async fn scrape(stack: &Stack, service: &impl Service) -> String {
    status_of(stack, service, "/metrics").await.1
}

/// Waits until `service`'s consumer holds all six partitions of its topic.
async fn holds_all_partitions(stack: &Stack, service: &impl Service) {
    eventually("the partitions to be assigned", PATIENCE, || async {
        let assignment = stack.get_json(service, "/assignment").await?;
        (assignment["partitions"].as_array()?.len() == 6).then_some(())
    })
    .await;
}

fn an_order() -> Value {
    json!({
        "customer_id": "cust-1",
        "customer_email": "ada@example.com",
        "items": [{"sku": "KB-001", "quantity": 1}],
    })
}

#[tokio::test]
async fn readyz_fails_while_the_broker_is_down_and_passes_again_once_it_is_back() {
    let mut stack = Stack::start().await;
    let inventory = stack.start_consumer(Consumer::Inventory, "inv-1").await;
    until_status(&stack, &inventory, "/readyz", 200).await;
    // In its group before the broker goes: a consumer asked to stop in the middle of joining
    // waits for the join to finish, which is not what this test is about.
    holds_all_partitions(&stack, &inventory).await;

    stack.broker.stop().await;
    let problem: Value =
        serde_json::from_str(&until_status(&stack, &inventory, "/readyz", 503).await).unwrap();
    assert_eq!(problem["type"], "/problems/not-ready");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("Kafka is unreachable"), "{detail}");
    assert!(
        !detail.contains("database"),
        "the database is fine: {detail}"
    );
    // Alive all the same: restarting would not bring the broker back.
    assert_eq!(status_of(&stack, &inventory, "/healthz").await.0, 200);

    stack.broker.restart().await;
    until_status(&stack, &inventory, "/readyz", 200).await;
    holds_all_partitions(&stack, &inventory).await;
    inventory.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn readyz_fails_while_the_database_refuses_connections() {
    let stack = Stack::start().await;
    let inventory = stack.start_consumer(Consumer::Inventory, "inv-1").await;
    until_status(&stack, &inventory, "/readyz", 200).await;
    holds_all_partitions(&stack, &inventory).await;
    let database = format!("{}inventory", stack.prefix);
    let admin_url = stack.database.url("postgres");
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();

    // No new connections (superusers included), and the pool's are cut.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS false"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&database)
        .execute(&mut admin)
        .await
        .unwrap();
    let problem: Value =
        serde_json::from_str(&until_status(&stack, &inventory, "/readyz", 503).await).unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("database"), "{detail}");
    assert!(!detail.contains("Kafka"), "Kafka is fine: {detail}");

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS true"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    until_status(&stack, &inventory, "/readyz", 200).await;
    inventory.stop().await;
    stack.finish().await;
}

/// Takes events and does not finish with them until the test lets it.
#[derive(Clone)]
struct Hangs {
    release: Arc<Semaphore>,
}

impl Handler for Hangs {
    const PRINCIPAL: shop_runtime::access::Principal = shop_runtime::access::INVENTORY_SERVICE;

    async fn apply(
        &self,
        _tx: &mut PgConnection,
        _events: &[&Envelope<Event>],
    ) -> Result<Applied, HandlerError> {
        let _permit = self.release.acquire().await.expect("never closed");
        Ok(Applied::default())
    }
}

#[tokio::test]
async fn healthz_fails_while_the_consume_loop_is_stuck_and_passes_once_it_moves_again() {
    let stack = Stack::start().await;
    let mut settings = stack.settings(inventory_identity(), "stuck-1");
    settings.kafka.group_id = "stuck".to_owned();
    settings.message_timeout = Duration::from_secs(1);
    settings.stuck_after = Duration::from_secs(2);
    let pool = shop_runtime::db::connect(&settings, &inventory_service::db::MIGRATOR)
        .await
        .unwrap();
    let release = Arc::new(Semaphore::new(0));
    let app = ConsumerApp::build(
        &settings,
        pool,
        Hangs {
            release: release.clone(),
        },
        Default::default(),
        retry::transient(),
    )
    .await;
    let stuck = spawn_consumer("stuck".to_owned(), app);
    until_status(&stack, &stuck, "/healthz", 200).await;
    holds_all_partitions(&stack, &stuck).await;

    // Three orders for one key: one partition, the first taken and never finished.
    let key = uuid::Uuid::new_v4();
    for _ in 0..3 {
        let event = Envelope::new(
            shop_runtime::StockReserved { order_id: key },
            chrono::Utc::now(),
        );
        stack.produce_raw(&key.to_string(), &event.to_json()).await;
    }
    let problem: Value =
        serde_json::from_str(&until_status(&stack, &stuck, "/healthz", 503).await).unwrap();
    assert_eq!(problem["type"], "/problems/stuck");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("consumer loop"), "{detail}");
    release.add_permits(1_000);
    until_status(&stack, &stuck, "/healthz", 200).await;
    stuck.stop().await;
    stack.finish().await;
}

fn inventory_identity() -> shop_runtime::config::ServiceIdentity {
    inventory_service::IDENTITY
}

#[tokio::test]
async fn healthz_fails_while_the_relay_is_stuck_on_its_database() {
    let stack = Stack::start().await;
    let mut settings = stack.settings(inventory_identity(), "inv-1");
    settings.message_timeout = Duration::from_secs(1);
    settings.stuck_after = Duration::from_secs(2);
    let inventory = stack
        .start_consumer_with(Consumer::Inventory, "inv-1", |s| {
            s.message_timeout = settings.message_timeout;
            s.stuck_after = settings.stuck_after;
        })
        .await;
    until_status(&stack, &inventory, "/healthz", 200).await;
    holds_all_partitions(&stack, &inventory).await;

    // Another session holds the outbox: the relay's next poll waits for it.
    let mut blocker = PgConnection::connect(settings.database_url.expose())
        .await
        .unwrap();
    let mut tx = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let problem: Value =
        serde_json::from_str(&until_status(&stack, &inventory, "/healthz", 503).await).unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("relay loop"), "{detail}");

    tx.rollback().await.unwrap();
    until_status(&stack, &inventory, "/healthz", 200).await;
    inventory.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn metrics_report_lag_per_partition_the_outbox_backlog_and_every_http_request() {
    let stack = Stack::start().await;
    let order = stack.start_order_service().await;
    let inventory = stack.start_consumer(Consumer::Inventory, "inv-1").await;
    stack.place_order(&order, &an_order()).await;
    let (status, _) = status_of(&stack, &order, "/orders/not-a-uuid").await;
    assert_eq!(status, 400);

    let metrics = scrape(&stack, &order).await;
    let ours = ("service", "order-service");
    let requests = |method, route, status| {
        let labels = [
            ours,
            ("method", method),
            ("route", route),
            ("status", status),
        ];
        sample(&metrics, "shop_http_requests_total", &labels)
    };
    assert_eq!(requests("POST", "/orders", "201"), Some(1.0), "{metrics}");
    assert_eq!(
        requests("GET", "/orders/{id}", "400"),
        Some(1.0),
        "{metrics}"
    );
    let timed = [ours, ("method", "POST"), ("route", "/orders")];
    assert_eq!(
        sample(&metrics, "shop_http_request_duration_seconds_count", &timed),
        Some(1.0),
        "{metrics}"
    );
    for gauge in ["shop_outbox_backlog", "shop_outbox_oldest_age_seconds"] {
        assert!(
            sample(&metrics, gauge, &[ours]).is_some(),
            "{gauge}: {metrics}"
        );
    }
    // The instance's own process figures, beside the service's.
    for gauge in ["process_resident_memory_bytes", "process_open_fds"] {
        assert!(
            sample(&metrics, gauge, &[ours]).is_some(),
            "{gauge}: {metrics}"
        );
    }

    // Every partition the instance holds has its lag, 0 once it has caught up.
    eventually(
        "inventory's lag on all six partitions",
        PATIENCE,
        || async {
            let metrics = scrape(&stack, &inventory).await;
            let lags: Vec<f64> = (0..6)
                .filter_map(|p| {
                    let partition = p.to_string();
                    let labels = [
                        ("service", "inventory-service"),
                        ("topic", "orders"),
                        ("partition", partition.as_str()),
                    ];
                    sample(&metrics, "shop_consumer_lag", &labels)
                })
                .collect();
            (lags.len() == 6 && lags.iter().all(|lag| *lag == 0.0)).then_some(())
        },
    )
    .await;
    // Its reply went out: nothing is left in its outbox.
    eventually("inventory's outbox to drain", PATIENCE, || async {
        let metrics = scrape(&stack, &inventory).await;
        (sample(&metrics, "shop_outbox_backlog", &[]) == Some(0.0)).then_some(())
    })
    .await;

    inventory.stop().await;
    order.stop().await;
    stack.finish().await;
}
