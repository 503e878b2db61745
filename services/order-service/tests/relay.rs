//! The outbox relay against librdkafka's mock cluster: what happens to an order's event while
//! the broker cannot take it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use order_service::db::TEST_MIGRATOR;
use order_service::routes::{self, AppState};
use prometheus_client::metrics::counter::Counter;
use rdkafka::mocking::MockCluster;
use shop_runtime::config::ServiceSettings;
use shop_runtime::kafka::EventProducer;
use shop_runtime::outbox::{OutboxRelay, RelayMetrics};
use shop_runtime::topics;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

#[derive(Debug, sqlx::FromRow)]
struct OutboxRow {
    published: bool,
    attempts: i32,
    last_error: Option<String>,
}

async fn outbox_row(pool: &PgPool) -> OutboxRow {
    sqlx::query_as("SELECT published_at IS NOT NULL AS published, attempts, last_error FROM outbox")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Polls `pool`'s only outbox row until `done` says so, or panics after 30 s.
async fn wait_for_row(pool: &PgPool, what: &str, done: impl Fn(&OutboxRow) -> bool) -> OutboxRow {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = outbox_row(pool).await;
        if done(&row) {
            return row;
        }
        assert!(Instant::now() < deadline, "waited 30 s for {what}: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_event_the_broker_cannot_take_stays_in_the_outbox_and_goes_out_once_it_can(
    pool: PgPool,
) {
    order_service::db::seed_catalog(&pool).await.unwrap();
    let wake = Arc::new(Notify::new());
    let api = routes::router(AppState {
        pool: pool.clone(),
        relay_wake: wake.clone(),
        orders_placed: Counter::default(),
    });
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(topics::ORDERS, 6, 1).unwrap();
    let kafka = ServiceSettings::for_test(
        order_service::IDENTITY,
        &mock.bootstrap_servers(),
        "postgres://unused",
        "relay-test",
    )
    .kafka;
    let producer = EventProducer::connect(&kafka, Duration::from_secs(1))
        .await
        .unwrap();

    mock.broker_down(1).unwrap();
    let placed = api
        .oneshot(
            Request::post("/orders")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    r#"{"customer_id":"c","customer_email":"c@example.com","items":[{"sku":"KB-001","quantity":1}]}"#,
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        placed.status(),
        StatusCode::CREATED,
        "accepted while the broker is down"
    );
    let metrics = RelayMetrics::default();
    let stop = CancellationToken::new();
    let relay = tokio::spawn(
        OutboxRelay {
            pool: pool.clone(),
            producer,
            wake,
            poll_interval: Duration::from_millis(100),
            metrics: metrics.clone(),
            beat: None,
        }
        .run(stop.clone()),
    );

    let waiting = wait_for_row(&pool, "a failed attempt", |row| row.attempts > 0).await;
    assert!(
        !waiting.published,
        "not marked published without an acknowledgement"
    );
    assert!(
        waiting.last_error.is_some(),
        "the reason is kept: {waiting:?}"
    );
    assert!(metrics.failures.get() > 0);

    mock.broker_up(1).unwrap();
    wait_for_row(&pool, "the event to be published", |row| row.published).await;

    stop.cancel();
    relay.await.unwrap().unwrap();
}
