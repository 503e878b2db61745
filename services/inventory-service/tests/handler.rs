//! The stock step of the saga, fed golden events straight to the handler: what each order
//! takes from the stock and gives back, and what is answered through the outbox.

use inventory_service::ReserveStock;
use inventory_service::db::{self, TEST_MIGRATOR};
use inventory_service::handler::CANCELLED_BEFORE_PLACED;
use serde_json::{Value, json};
use shop_runtime::kafka::HandlerError;
use shop_runtime::testing;
use shop_runtime::{Envelope, Event};
use sqlx::PgPool;
use uuid::Uuid;

/// An event of type `event_type` about `order_id`, from its golden file, with a new event id;
/// `items` (sku, quantity) replace the golden order's lines, the total following.
fn event(event_type: &str, order_id: Uuid, items: &[(&str, i32)]) -> Envelope<Event> {
    testing::golden_event(event_type, order_id, |value| {
        if !items.is_empty() {
            let lines: Vec<Value> = items
                .iter()
                .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity, "unit_price_cents": 100}))
                .collect();
            let total: i32 = items.iter().map(|(_, quantity)| quantity * 100).sum();
            value["data"]["items"] = json!(lines);
            value["data"]["total_cents"] = json!(total);
        }
    })
}

/// The golden order (1 KB-001, 3 CB-005) placed, cancelled or confirmed.
fn golden(event_type: &str, order_id: Uuid) -> Envelope<Event> {
    event(event_type, order_id, &[])
}

/// Applies `events` in one transaction, as the consumer would; returns the repeats.
async fn apply(pool: &PgPool, events: &[Envelope<Event>]) -> Result<usize, HandlerError> {
    testing::apply(&ReserveStock, pool, events).await
}

async fn seeded(pool: &PgPool) {
    db::seed_stock(pool, None).await.unwrap();
}

async fn available(pool: &PgPool, sku: &str) -> i32 {
    sqlx::query_scalar("SELECT available FROM stock WHERE sku = $1")
        .bind(sku)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn reservation(pool: &PgPool, order_id: Uuid) -> db::Reservation {
    let mut found = db::reservations(pool, Some(order_id), 1).await.unwrap();
    assert_eq!(found.len(), 1, "a reservation for {order_id}");
    found.pop().unwrap()
}

/// Every answer in the outbox: (topic, key, event type, data), in order.
async fn answers(pool: &PgPool) -> Vec<(String, String, String, Value)> {
    testing::outbox(pool).await
}

async fn answer_types(pool: &PgPool) -> Vec<String> {
    answers(pool).await.into_iter().map(|a| a.2).collect()
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_placed_order_takes_its_stock_and_answers_stock_reserved(pool: PgPool) {
    seeded(&pool).await;
    let order = Uuid::new_v4();

    assert_eq!(
        apply(&pool, &[golden("order_placed", order)])
            .await
            .unwrap(),
        0
    );

    assert_eq!(available(&pool, "KB-001").await, 999);
    assert_eq!(available(&pool, "CB-005").await, 4_997);
    let reserved = reservation(&pool, order).await;
    assert_eq!(
        (reserved.status.as_str(), reserved.reason),
        ("reserved", None)
    );
    assert_eq!(reserved.items.len(), 2);
    assert_eq!(
        answers(&pool).await,
        [(
            "inventory".to_owned(),
            order.to_string(),
            "stock_reserved".to_owned(),
            json!({"order_id": order})
        )]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_order_the_stock_cannot_cover_takes_nothing_and_answers_stock_rejected(pool: PgPool) {
    seeded(&pool).await;
    let order = Uuid::new_v4();

    let placed = event("order_placed", order, &[("KB-001", 1), ("LT-006", 4)]);
    assert_eq!(apply(&pool, &[placed]).await.unwrap(), 0);

    assert_eq!(available(&pool, "KB-001").await, 1_000, "all items or none");
    assert_eq!(available(&pool, "LT-006").await, 3);
    let reason = "insufficient stock: LT-006: 4 wanted, 3 available";
    assert_eq!(
        reservation(&pool, order).await.reason.as_deref(),
        Some(reason)
    );
    let answered = answers(&pool).await;
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert_eq!(answered[0].2, "stock_rejected");
    assert_eq!(answered[0].3, json!({"order_id": order, "reason": reason}));
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_second_order_placed_with_a_new_event_id_for_a_decided_order_changes_nothing(
    pool: PgPool,
) {
    seeded(&pool).await;
    let order = Uuid::new_v4();
    apply(&pool, &[golden("order_placed", order)])
        .await
        .unwrap();

    let repeats = apply(&pool, &[golden("order_placed", order)])
        .await
        .unwrap();

    assert_eq!(repeats, 1);
    assert_eq!(available(&pool, "KB-001").await, 999, "taken once");
    assert_eq!(answer_types(&pool).await, ["stock_reserved"]);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn the_same_order_placed_twice_in_one_batch_is_decided_once(pool: PgPool) {
    seeded(&pool).await;
    let order = Uuid::new_v4();

    let repeats = apply(
        &pool,
        &[golden("order_placed", order), golden("order_placed", order)],
    )
    .await
    .unwrap();

    assert_eq!(repeats, 1);
    assert_eq!(available(&pool, "KB-001").await, 999);
    assert_eq!(answer_types(&pool).await, ["stock_reserved"]);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn orders_of_one_batch_share_the_stock_in_the_order_they_came(pool: PgPool) {
    seeded(&pool).await;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());

    let repeats = apply(
        &pool,
        &[
            event("order_placed", first, &[("LT-006", 2)]),
            event("order_placed", second, &[("LT-006", 2)]),
        ],
    )
    .await
    .unwrap();

    assert_eq!(repeats, 0);
    assert_eq!(available(&pool, "LT-006").await, 1);
    assert_eq!(reservation(&pool, first).await.status, "reserved");
    assert_eq!(reservation(&pool, second).await.status, "rejected");
    assert_eq!(
        answer_types(&pool).await,
        ["stock_reserved", "stock_rejected"]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_cancelled_order_gets_its_reserved_stock_back_and_answers_stock_released(pool: PgPool) {
    seeded(&pool).await;
    let order = Uuid::new_v4();
    apply(&pool, &[golden("order_placed", order)])
        .await
        .unwrap();
    let reserved_at = reservation(&pool, order).await.updated_at;

    assert_eq!(
        apply(&pool, &[golden("order_cancelled", order)])
            .await
            .unwrap(),
        0
    );

    assert_eq!(available(&pool, "KB-001").await, 1_000);
    assert_eq!(available(&pool, "CB-005").await, 5_000);
    let released = reservation(&pool, order).await;
    assert_eq!(released.status, "released");
    assert_eq!(
        released.reason.as_deref(),
        Some("order cancelled: insufficient stock: KB-001: 1 wanted, 0 available"),
        "the order's reason, from the golden cancellation"
    );
    assert!(released.updated_at > reserved_at);
    assert_eq!(
        released.items.len(),
        2,
        "what was given back stays on record"
    );
    let answered = answers(&pool).await;
    assert_eq!(answered.len(), 2, "{answered:?}");
    assert_eq!(answered[1].0, "inventory");
    assert_eq!(answered[1].2, "stock_released");
    assert_eq!(answered[1].3, json!({"order_id": order}));

    // The same cancellation under a new event id gives nothing back twice.
    assert_eq!(
        apply(&pool, &[golden("order_cancelled", order)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(available(&pool, "KB-001").await, 1_000);
    assert_eq!(
        answer_types(&pool).await,
        ["stock_reserved", "stock_released"]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_order_placed_and_cancelled_in_one_batch_leaves_the_stock_as_it_was(pool: PgPool) {
    seeded(&pool).await;
    let (kept, cancelled) = (Uuid::new_v4(), Uuid::new_v4());

    let repeats = apply(
        &pool,
        &[
            golden("order_placed", cancelled),
            golden("order_placed", kept),
            golden("order_cancelled", cancelled),
        ],
    )
    .await
    .unwrap();

    assert_eq!(repeats, 0);
    assert_eq!(
        available(&pool, "KB-001").await,
        999,
        "only the kept order's"
    );
    assert_eq!(reservation(&pool, cancelled).await.status, "released");
    assert_eq!(reservation(&pool, kept).await.status, "reserved");
    let answered: Vec<(String, String)> = answers(&pool)
        .await
        .into_iter()
        .map(|(_, key, event_type, _)| (key, event_type))
        .collect();
    assert_eq!(
        answered,
        [
            (cancelled.to_string(), "stock_reserved".to_owned()),
            (kept.to_string(), "stock_reserved".to_owned()),
            (cancelled.to_string(), "stock_released".to_owned()),
        ]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn cancelling_a_rejected_order_gives_nothing_back_and_is_not_a_repeat(pool: PgPool) {
    seeded(&pool).await;
    let order = Uuid::new_v4();
    apply(&pool, &[event("order_placed", order, &[("LT-006", 4)])])
        .await
        .unwrap();

    let cancelled = event("order_cancelled", order, &[("LT-006", 4)]);
    assert_eq!(apply(&pool, &[cancelled]).await.unwrap(), 0);

    assert_eq!(available(&pool, "LT-006").await, 3);
    assert_eq!(reservation(&pool, order).await.status, "rejected");
    assert_eq!(answer_types(&pool).await, ["stock_rejected"]);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_cancellation_before_its_placement_leaves_a_tombstone_and_the_late_placement_changes_nothing(
    pool: PgPool,
) {
    seeded(&pool).await;
    let order = Uuid::new_v4();

    assert_eq!(
        apply(&pool, &[golden("order_cancelled", order)])
            .await
            .unwrap(),
        0
    );
    let tombstone = reservation(&pool, order).await;
    assert_eq!(tombstone.status, "released");
    assert_eq!(tombstone.reason.as_deref(), Some(CANCELLED_BEFORE_PLACED));
    assert!(tombstone.items.is_empty());
    assert_eq!(
        answer_types(&pool).await,
        Vec::<String>::new(),
        "nothing was reserved"
    );

    // The placement, parked and replayed after the cancellation.
    assert_eq!(
        apply(&pool, &[golden("order_placed", order)])
            .await
            .unwrap(),
        1
    );

    assert_eq!(available(&pool, "KB-001").await, 1_000);
    assert_eq!(available(&pool, "CB-005").await, 5_000);
    assert_eq!(reservation(&pool, order).await, tombstone);
    assert_eq!(answer_types(&pool).await, Vec::<String>::new());
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_placement_after_its_cancellation_in_one_batch_changes_nothing(pool: PgPool) {
    seeded(&pool).await;
    let order = Uuid::new_v4();

    let repeats = apply(
        &pool,
        &[
            golden("order_cancelled", order),
            golden("order_placed", order),
        ],
    )
    .await
    .unwrap();

    assert_eq!(
        repeats, 1,
        "one by one, the placement comes to a decided order"
    );
    assert_eq!(available(&pool, "KB-001").await, 1_000);
    let tombstone = reservation(&pool, order).await;
    assert_eq!(tombstone.status, "released");
    assert_eq!(tombstone.reason.as_deref(), Some(CANCELLED_BEFORE_PLACED));
    assert_eq!(answer_types(&pool).await, Vec::<String>::new());
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_confirmed_order_keeps_its_stock_and_is_not_a_repeat(pool: PgPool) {
    seeded(&pool).await;
    let order = Uuid::new_v4();
    apply(&pool, &[golden("order_placed", order)])
        .await
        .unwrap();

    assert_eq!(
        apply(&pool, &[golden("order_confirmed", order)])
            .await
            .unwrap(),
        0
    );

    assert_eq!(available(&pool, "KB-001").await, 999);
    assert_eq!(reservation(&pool, order).await.status, "reserved");
    assert_eq!(answer_types(&pool).await, ["stock_reserved"]);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_database_constraint_violation_is_a_permanent_error(pool: PgPool) {
    seeded(&pool).await;
    let err = sqlx::query("UPDATE stock SET available = -1 WHERE sku = 'KB-001'")
        .execute(&pool)
        .await
        .unwrap_err();

    let err = HandlerError::from(err);

    assert!(matches!(err, HandlerError::Permanent(_)), "{err}");
    assert!(err.to_string().contains("SQLSTATE 23514"), "{err}");
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_release_the_stock_count_cannot_hold_is_a_permanent_error(pool: PgPool) {
    seeded(&pool).await;
    let order = Uuid::new_v4();
    apply(&pool, &[golden("order_placed", order)])
        .await
        .unwrap();
    sqlx::query("UPDATE stock SET available = 2147483647 WHERE sku = 'KB-001'")
        .execute(&pool)
        .await
        .unwrap();

    let err = apply(&pool, &[golden("order_cancelled", order)])
        .await
        .unwrap_err();

    assert!(matches!(err, HandlerError::Permanent(_)), "{err}");
    assert_eq!(
        reservation(&pool, order).await.status,
        "reserved",
        "rolled back"
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_reservation_shows_its_status_reason_items_and_times(pool: PgPool) {
    seeded(&pool).await;
    let order = Uuid::new_v4();
    apply(&pool, &[golden("order_placed", order)])
        .await
        .unwrap();

    let shown = serde_json::to_value(reservation(&pool, order).await).unwrap();

    let mut fields: Vec<&str> = shown
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "created_at",
            "items",
            "order_id",
            "reason",
            "status",
            "updated_at"
        ]
    );
    assert_eq!(
        shown["items"],
        json!([{"sku": "CB-005", "quantity": 3}, {"sku": "KB-001", "quantity": 1}])
    );
}
