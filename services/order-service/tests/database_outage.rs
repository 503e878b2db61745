//! The Order Service cut off from its database (and only it: the PostgreSQL every other test
//! shares keeps running): every request is a 503 problem with `Retry-After`, nothing is
//! half-stored, and once the link is back a client's retry with the same `Idempotency-Key`
//! places its order exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use order_service::db::TEST_MIGRATOR;
use order_service::routes::{self, AppState};
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use shop_runtime::http::with_problem_fallbacks;
use shop_runtime::testing::CuttableLink;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::Notify;
use tower::ServiceExt;

struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (status, content_type, retry_after) = (
        response.status(),
        header(header::CONTENT_TYPE),
        header(header::RETRY_AFTER),
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        retry_after,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn place(key: &str) -> Request<Body> {
    let order = json!({
        "customer_id": "cust-1",
        "customer_email": "ada@example.com",
        "items": [{"sku": "KB-001", "quantity": 1}],
    });
    Request::post("/orders")
        .header(header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", key)
        .body(Body::from(order.to_string()))
        .unwrap()
}

fn assert_database_unavailable(answer: &Answer, what: &str) {
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        answer.body
    );
    assert_eq!(
        answer.content_type.as_deref(),
        Some("application/problem+json"),
        "{what}"
    );
    assert_eq!(
        answer.body["type"], "/problems/database-unavailable",
        "{what}"
    );
    assert!(answer.retry_after.is_some(), "{what}: no Retry-After");
}

async fn orders(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn cut_off_from_its_database_the_service_answers_503_with_retry_after_and_recovers(
    _: PgPoolOptions,
    direct: PgConnectOptions,
) {
    let pool = PgPool::connect_with(direct.clone()).await.unwrap();
    order_service::db::seed_catalog(&pool).await.unwrap();
    let server = tokio::net::lookup_host((direct.get_host(), direct.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let link = CuttableLink::to(server).await.unwrap();
    let through_link = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(direct.host("127.0.0.1").port(link.addr().port()))
        .await
        .unwrap();
    let app = with_problem_fallbacks(routes::router(AppState {
        pool: through_link,
        relay_wake: Arc::new(Notify::new()),
        orders_placed: Counter::default(),
    }));
    let placed = send(&app, place("before-the-cut")).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let id = placed.body["id"].as_str().unwrap().to_owned();

    link.cut();
    let refused = send(&app, place("during-the-cut")).await;
    assert_database_unavailable(&refused, "POST /orders");
    let read = send(
        &app,
        Request::get(format!("/orders/{id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_database_unavailable(&read, "GET /orders/{id}");
    assert_eq!(orders(&pool).await, 1, "nothing is stored while cut off");

    link.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    let retried = loop {
        let answer = send(&app, place("during-the-cut")).await;
        if answer.status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.body);
    let again = send(&app, place("during-the-cut")).await;
    assert_eq!(
        again.body["id"], retried.body["id"],
        "the retry is the same order"
    );
    assert_eq!(orders(&pool).await, 2, "the retried order is stored once");
}

#[sqlx::test(migrations = false)]
async fn started_before_its_database_is_reachable_the_service_waits_for_it(
    _: PgPoolOptions,
    direct: PgConnectOptions,
) {
    let server = tokio::net::lookup_host((direct.get_host(), direct.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let link = CuttableLink::to(server).await.unwrap();
    link.cut();
    let database = format!("start_{}", uuid::Uuid::new_v4().simple());
    let url = format!(
        "postgres://{}@127.0.0.1:{}/{database}",
        direct.get_username(),
        link.addr().port()
    );
    let settings = shop_runtime::config::ServiceSettings::for_test(
        order_service::IDENTITY,
        "127.0.0.1:9",
        &url,
        "waits-1",
    );
    let starting = tokio::spawn(async move {
        shop_runtime::db::connect(&settings, &order_service::db::MIGRATOR).await
    });

    // Refused twice (the server "booting"), then reachable.
    let deadline = Instant::now() + Duration::from_secs(10);
    while link.accepted() < 2 {
        assert!(
            Instant::now() < deadline,
            "the service never tried to connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!starting.is_finished(), "it gave up instead of waiting");
    link.restore();
    let pool = tokio::time::timeout(Duration::from_secs(30), starting)
        .await
        .expect("it connects soon after the database is reachable")
        .unwrap()
        .expect("it connects and migrates once the database is reachable");
    assert_eq!(orders(&pool).await, 0, "a fresh, migrated database");
    pool.close().await;

    let admin = PgPool::connect_with(direct).await.unwrap();
    // The name is ours: `start_` and a UUID's hex digits.
    let drop = format!("DROP DATABASE \"{database}\" WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(&admin)
        .await
        .unwrap();
}
