//! The Analytics Service's handler fed the golden events straight: each order counted once
//! as placed and once as decided, revenue and item sales from confirmed orders only.

use analytics_service::CountOrders;
use analytics_service::db::{self, CancelledBy, OrderCounts, Stats, TEST_MIGRATOR};
use serde_json::{Value, json};
use shop_runtime::kafka::HandlerError;
use shop_runtime::testing;
use shop_runtime::{Envelope, Event};
use sqlx::PgPool;
use uuid::Uuid;

/// An event of type `event_type` about `order_id`, from its golden file, with a new event id.
/// The golden order: 1 x KB-001 at 89.99 and 3 x CB-005 at 12.99, 128.96 EUR in all.
fn event(event_type: &str, order_id: Uuid) -> Envelope<Event> {
    testing::golden_event(event_type, order_id, |_| {})
}

const GOLDEN_TOTAL: i64 = 12_896;

/// Applies `events` in one transaction, as the consumer would; returns the repeats.
async fn apply(pool: &PgPool, events: &[Envelope<Event>]) -> Result<usize, HandlerError> {
    testing::apply(&CountOrders, pool, events).await
}

async fn stats(pool: &PgPool) -> Stats {
    db::stats(pool, 10).await.unwrap()
}

/// The counts, every cancellation as the golden one: for lack of stock.
fn counts(placed: i64, confirmed: i64, cancelled: i64) -> OrderCounts {
    OrderCounts {
        placed,
        confirmed,
        cancelled,
        cancelled_by: CancelledBy {
            stock_rejected: cancelled,
            ..CancelledBy::default()
        },
    }
}

/// `(currency, orders, revenue_cents)` per currency.
fn revenue(stats: &Stats) -> Vec<(&str, i64, i64)> {
    stats
        .revenue
        .iter()
        .map(|r| (r.currency.as_str(), r.orders, r.revenue_cents))
        .collect()
}

/// `(sku, quantity, revenue_cents, orders)` per SKU, best seller first.
fn sales(stats: &Stats) -> Vec<(&str, i64, i64, i64)> {
    stats
        .top_items
        .iter()
        .map(|s| (s.sku.as_str(), s.quantity, s.revenue_cents, s.orders))
        .collect()
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn each_order_counts_once_as_placed_and_once_as_confirmed_or_cancelled(pool: PgPool) {
    let (confirmed, cancelled, pending) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let placements = [
        event("order_placed", confirmed),
        event("order_placed", cancelled),
    ];
    assert_eq!(apply(&pool, &placements).await.unwrap(), 0);
    // A later batch mixes a placement with decisions, as a partition delivers them.
    let batch = [
        event("order_confirmed", confirmed),
        event("order_placed", pending),
        event("order_cancelled", cancelled),
    ];
    assert_eq!(apply(&pool, &batch).await.unwrap(), 0);

    let stats = stats(&pool).await;
    assert_eq!(stats.orders, counts(3, 1, 1));
    assert_eq!(stats.orders_last_minute, 3, "placed in the last minute");
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn revenue_and_item_sales_come_from_confirmed_orders_only(pool: PgPool) {
    let (confirmed, cancelled, pending) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let placements = [
        event("order_placed", confirmed),
        event("order_placed", cancelled),
        event("order_placed", pending),
    ];
    apply(&pool, &placements).await.unwrap();
    let after_placement = stats(&pool).await;
    assert!(after_placement.revenue.is_empty(), "{after_placement:?}");
    assert!(after_placement.top_items.is_empty(), "{after_placement:?}");

    apply(
        &pool,
        &[
            event("order_cancelled", cancelled),
            event("order_confirmed", confirmed),
        ],
    )
    .await
    .unwrap();

    let stats = stats(&pool).await;
    assert_eq!(revenue(&stats), [("EUR", 1, GOLDEN_TOTAL)]);
    assert_eq!(
        sales(&stats),
        [("CB-005", 3, 3 * 1_299, 1), ("KB-001", 1, 8_999, 1)]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_order_repeated_under_new_event_ids_changes_nothing(pool: PgPool) {
    let (confirmed, cancelled) = (Uuid::new_v4(), Uuid::new_v4());
    let first = [
        event("order_placed", confirmed),
        event("order_placed", cancelled),
        event("order_confirmed", confirmed),
        event("order_cancelled", cancelled),
    ];
    apply(&pool, &first).await.unwrap();
    let before = stats(&pool).await;
    assert_eq!(before.orders, counts(2, 1, 1));

    // Each event again in a later batch, and the confirmation twice in one batch.
    let again = [
        event("order_placed", confirmed),
        event("order_confirmed", confirmed),
        event("order_placed", cancelled),
        event("order_cancelled", cancelled),
    ];
    assert_eq!(apply(&pool, &again).await.unwrap(), 4);
    let other = Uuid::new_v4();
    let twice = [
        event("order_confirmed", other),
        event("order_confirmed", other),
    ];
    assert_eq!(apply(&pool, &twice).await.unwrap(), 1);

    let after = stats(&pool).await;
    assert_eq!(
        after.orders,
        counts(2, 2, 1),
        "only the other order's confirmation"
    );
    assert_eq!(revenue(&after), [("EUR", 2, 2 * GOLDEN_TOTAL)]);
    assert_eq!(
        sales(&after),
        [("CB-005", 6, 6 * 1_299, 2), ("KB-001", 2, 2 * 8_999, 2)]
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM counted_orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 5, "one row per order and kind");
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn the_other_services_answers_are_neither_counted_nor_repeats(pool: PgPool) {
    let order_id = Uuid::new_v4();
    let answers = [
        event("stock_reserved", order_id),
        event("payment_authorized", order_id),
        event("payment_captured", order_id),
    ];

    assert_eq!(apply(&pool, &answers).await.unwrap(), 0);

    let stats = stats(&pool).await;
    assert_eq!(stats.orders, counts(0, 0, 0));
    assert!(stats.revenue.is_empty());
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outbox, 0, "the Analytics Service announces nothing");
}

#[sqlx::test(migrations = false)]
async fn orders_counted_before_the_saga_count_as_placed_and_confirmed(pool: PgPool) {
    // `saga` also holds shop-runtime's outbox and processed_events, which the handler needs.
    let (first, saga) = TEST_MIGRATOR
        .iter()
        .partition::<Vec<_>, _>(|m| m.version < 20261123000000);
    for migration in first {
        sqlx::raw_sql(migration.sql.clone())
            .execute(&pool)
            .await
            .unwrap();
    }
    // What the handler before the saga left: one placed order, counted with its revenue.
    let old = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO counted_orders (order_id, total_cents, currency, occurred_at)
         VALUES ($1, $2, 'EUR', now())",
    )
    .bind(old)
    .bind(GOLDEN_TOTAL)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO revenue VALUES ('EUR', 1, $1)")
        .bind(GOLDEN_TOTAL)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO item_sales VALUES ('CB-005', 3, 3897, 1), ('KB-001', 1, 8999, 1)")
        .execute(&pool)
        .await
        .unwrap();
    for migration in saga {
        sqlx::raw_sql(migration.sql.clone())
            .execute(&pool)
            .await
            .unwrap();
    }

    let migrated = stats(&pool).await;
    assert_eq!(migrated.orders, counts(1, 1, 0));
    assert_eq!(revenue(&migrated), [("EUR", 1, GOLDEN_TOTAL)]);

    // Its decision, in flight at the upgrade, is a repeat.
    let repeats = apply(&pool, &[event("order_confirmed", old)])
        .await
        .unwrap();
    assert_eq!(repeats, 1);
    assert_eq!(stats(&pool).await, migrated);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn stats_show_orders_by_outcome_and_revenue_from_confirmed_orders(pool: PgPool) {
    let (confirmed, cancelled) = (Uuid::new_v4(), Uuid::new_v4());
    apply(
        &pool,
        &[
            event("order_placed", confirmed),
            event("order_placed", cancelled),
            event("order_confirmed", confirmed),
            event("order_cancelled", cancelled),
        ],
    )
    .await
    .unwrap();

    let response = tower::ServiceExt::oneshot(
        analytics_service::routes::router(pool.clone()),
        axum::http::Request::get("/stats?top=1")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let stats: Value = serde_json::from_slice(&bytes).unwrap();

    assert_eq!(
        stats,
        json!({
            "orders": {"placed": 2, "confirmed": 1, "cancelled": 1, "cancelled_by": {
                "stock_rejected": 1, "payment_declined": 0, "timed_out": 0, "unknown": 0}},
            "revenue": [{"currency": "EUR", "orders": 1, "revenue_cents": GOLDEN_TOTAL}],
            "top_items": [{"sku": "CB-005", "quantity": 3, "revenue_cents": 3_897, "orders": 1}],
            "orders_last_minute": 2,
        })
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn cancellations_count_per_cause_and_a_version_1_cancellation_as_unknown(pool: PgPool) {
    let (v1, timed_out, declined) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let v1_path = testing::golden_path("order_cancelled", 1);
    apply(
        &pool,
        &[
            testing::golden_event_at(&v1_path, v1, |_| {}),
            testing::golden_event("order_cancelled", timed_out, |e| {
                e["data"]["cause"] = json!("timed_out");
            }),
            testing::golden_event("order_cancelled", declined, |e| {
                e["data"]["cause"] = json!("payment_declined");
            }),
        ],
    )
    .await
    .unwrap();

    let counted = stats(&pool).await.orders;
    assert_eq!(counted.cancelled, 3);
    assert_eq!(
        counted.cancelled_by,
        CancelledBy {
            stock_rejected: 0,
            payment_declined: 1,
            timed_out: 1,
            unknown: 1,
        }
    );
}
