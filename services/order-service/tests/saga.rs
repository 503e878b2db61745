//! The saga's decisions, fed Inventory's and Payment's answers straight from their golden
//! events: each order is decided once, from the answers, and the decision leaves through the
//! outbox with the order's status and timeline.

use std::time::Duration;

use order_service::db::TEST_MIGRATOR;
use order_service::saga::{self, CancelledVersion, DecideOrders};
use serde_json::{Value, json};
use shop_runtime::kafka::HandlerError;
use shop_runtime::testing;
use shop_runtime::{Envelope, Event};
use sqlx::PgPool;
use uuid::Uuid;

/// Places an order through the API's own queries; returns its id.
async fn place(pool: &PgPool, quantity: i64) -> Uuid {
    let app = order_service::routes::router(order_service::routes::AppState {
        pool: pool.clone(),
        relay_wake: Default::default(),
        orders_placed: Default::default(),
    });
    let body = json!({"customer_id": "cust-1", "customer_email": "ada@example.com",
                      "items": [{"sku": "KB-001", "quantity": quantity}]});
    let response = tower::ServiceExt::oneshot(
        app,
        axum::http::Request::post("/orders")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let order: Value = serde_json::from_slice(&bytes).unwrap();
    order["id"].as_str().unwrap().parse().unwrap()
}

/// An answer of type `event_type` about `order_id`, from its golden file, with a new event id.
fn answer(event_type: &str, order_id: Uuid) -> Envelope<Event> {
    testing::golden_event(event_type, order_id, |_| {})
}

/// Applies `events` in one transaction, as the consumer would; returns the repeats.
async fn apply(pool: &PgPool, events: &[Envelope<Event>]) -> Result<usize, HandlerError> {
    testing::apply(&DecideOrders(CancelledVersion::V2), pool, events).await
}

async fn status(pool: &PgPool, order_id: Uuid) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, status_reason FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The events published about `order_id` after its `order_placed`, in order.
async fn decisions(pool: &PgPool, order_id: Uuid) -> Vec<Value> {
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE message_key = $1 AND event_type <> 'order_placed'
         ORDER BY id",
    )
    .bind(order_id.to_string())
    .fetch_all(pool)
    .await
    .unwrap();
    payloads
        .iter()
        .map(|p| serde_json::from_slice(p).unwrap())
        .collect()
}

async fn timeline(pool: &PgPool, order_id: Uuid) -> Vec<String> {
    order_service::db::timeline(pool, order_id)
        .await
        .unwrap()
        .into_iter()
        .map(|step| step.event)
        .collect()
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_order_with_stock_reserved_and_payment_authorized_is_confirmed_once(pool: PgPool) {
    order_service::db::seed_catalog(&pool).await.unwrap();
    let id = place(&pool, 1).await;

    apply(&pool, &[answer("stock_reserved", id)]).await.unwrap();
    assert_eq!(
        status(&pool, id).await.0,
        "pending",
        "payment has not answered"
    );
    apply(&pool, &[answer("payment_authorized", id)])
        .await
        .unwrap();

    assert_eq!(status(&pool, id).await, ("confirmed".into(), None));
    let published = decisions(&pool, id).await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0]["event_type"], "order_confirmed");
    assert_eq!(published[0]["data"]["total_cents"], 8_999);
    assert_eq!(
        timeline(&pool, id).await,
        [
            "order_placed",
            "stock_reserved",
            "payment_authorized",
            "order_confirmed"
        ]
    );

    // The capture is recorded; a repeated answer under a new id changes nothing.
    let repeats = apply(
        &pool,
        &[answer("payment_captured", id), answer("stock_reserved", id)],
    )
    .await
    .unwrap();
    assert_eq!(repeats, 1);
    assert_eq!(decisions(&pool, id).await.len(), 1, "decided once");
    assert_eq!(
        timeline(&pool, id).await.last().unwrap(),
        "payment_captured"
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_rejection_cancels_the_order_at_once_with_its_reason_and_a_late_authorization_changes_nothing(
    pool: PgPool,
) {
    order_service::db::seed_catalog(&pool).await.unwrap();
    let id = place(&pool, 1).await;

    apply(&pool, &[answer("stock_rejected", id)]).await.unwrap();
    let (state, reason) = status(&pool, id).await;
    assert_eq!(state, "cancelled");
    assert!(reason.unwrap().contains("insufficient stock"));
    apply(
        &pool,
        &[
            answer("payment_authorized", id),
            answer("payment_voided", id),
        ],
    )
    .await
    .unwrap();

    let published = decisions(&pool, id).await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0]["event_type"], "order_cancelled");
    assert_eq!(published[0]["data"]["cause"], "stock_rejected");
    assert!(
        published[0]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("insufficient stock")
    );
    assert_eq!(status(&pool, id).await.0, "cancelled", "still cancelled");
    assert_eq!(
        timeline(&pool, id).await,
        [
            "order_placed",
            "stock_rejected",
            "order_cancelled",
            "payment_authorized",
            "payment_voided"
        ]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_declined_payment_cancels_the_order_even_with_the_stock_reserved(pool: PgPool) {
    order_service::db::seed_catalog(&pool).await.unwrap();
    let id = place(&pool, 1).await;

    // Both answers in one batch, as a busy consumer gets them.
    apply(
        &pool,
        &[answer("stock_reserved", id), answer("payment_declined", id)],
    )
    .await
    .unwrap();

    let (state, reason) = status(&pool, id).await;
    assert_eq!(state, "cancelled");
    assert!(reason.unwrap().contains("card limit"));
    let published = decisions(&pool, id).await;
    assert_eq!(published[0]["event_type"], "order_cancelled");
    assert_eq!(published[0]["data"]["cause"], "payment_declined");
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn the_timeline_lists_answers_in_the_order_they_happened_not_the_order_they_arrived(
    pool: PgPool,
) {
    order_service::db::seed_catalog(&pool).await.unwrap();
    let id = place(&pool, 1).await;
    let declined_at = chrono::Utc::now();
    let reserved_at = declined_at + chrono::Duration::microseconds(1);
    let at = |when: chrono::DateTime<chrono::Utc>| {
        move |event: &mut Value| {
            event["occurred_at"] = json!(when);
        }
    };
    let declined = testing::golden_event("payment_declined", id, at(declined_at));
    let reserved = testing::golden_event("stock_reserved", id, at(reserved_at));

    // Inventory's later answer is read first: its partition was read first.
    apply(&pool, &[reserved]).await.unwrap();
    apply(&pool, &[declined]).await.unwrap();

    assert_eq!(
        timeline(&pool, id).await,
        [
            "order_placed",
            "payment_declined",
            "stock_reserved",
            "order_cancelled"
        ]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_answer_about_an_order_never_placed_here_is_refused_for_good(pool: PgPool) {
    let err = apply(&pool, &[answer("stock_reserved", Uuid::new_v4())])
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::Permanent(_)), "{err}");
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_order_nobody_answers_in_time_is_cancelled_naming_who_did_not_answer(pool: PgPool) {
    order_service::db::seed_catalog(&pool).await.unwrap();
    let id = place(&pool, 1).await;
    apply(&pool, &[answer("stock_reserved", id)]).await.unwrap();

    assert_eq!(
        saga::expire(&pool, Duration::from_secs(3600), 10, CancelledVersion::V2)
            .await
            .unwrap(),
        0,
        "not yet due"
    );
    assert_eq!(
        saga::expire(&pool, Duration::ZERO, 10, CancelledVersion::V2)
            .await
            .unwrap(),
        1
    );

    let (state, reason) = status(&pool, id).await;
    assert_eq!(state, "cancelled");
    assert_eq!(reason.as_deref(), Some("no answer from payment within 0 s"));
    let published = decisions(&pool, id).await;
    assert_eq!(published[0]["event_type"], "order_cancelled");
    assert_eq!(published[0]["data"]["cause"], "timed_out");
    assert_eq!(
        saga::expire(&pool, Duration::ZERO, 10, CancelledVersion::V2)
            .await
            .unwrap(),
        0,
        "decided once"
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn during_a_rolling_upgrade_the_saga_writes_the_cancellation_as_version_1(pool: PgPool) {
    order_service::db::seed_catalog(&pool).await.unwrap();
    let id = place(&pool, 1).await;

    let still_v1 = DecideOrders(CancelledVersion::V1);
    testing::apply(&still_v1, &pool, &[answer("stock_rejected", id)])
        .await
        .unwrap();

    let published = decisions(&pool, id).await;
    assert_eq!(published[0]["event_type"], "order_cancelled");
    assert_eq!(published[0]["event_version"], 1);
    assert!(published[0]["data"].get("cause").is_none(), "{published:?}");
    let bytes = serde_json::to_vec(&published[0]).unwrap();
    let Event::OrderCancelled(read) = Envelope::decode(Some(&bytes)).unwrap().data else {
        panic!("not a cancellation");
    };
    assert_eq!(read.cause, None, "read back by a version 2 consumer");
}
