//! The payment step of the saga, fed golden events straight to the handler: each order's
//! payment authorized or declined, then captured or voided, once, and what is answered
//! through the outbox.

use payment_service::db::{self, Status, TEST_MIGRATOR};
use payment_service::handler::CANCELLED_BEFORE_PLACED;
use payment_service::{AuthorizePayment, DEFAULT_CARD_LIMIT_CENTS};
use serde_json::{Value, json};
use shop_runtime::kafka::HandlerError;
use shop_runtime::testing;
use shop_runtime::{Envelope, Event};
use sqlx::PgPool;
use uuid::Uuid;

/// The golden order (1 KB-001, 3 CB-005: 128.96 EUR)'s event of type `event_type`, about
/// `order_id`, with a new event id.
fn golden(event_type: &str, order_id: Uuid) -> Envelope<Event> {
    sized(event_type, order_id, 0)
}

/// Like [`golden`], but for `monitors` 27-inch monitors (249.00 EUR each) instead, if any.
fn sized(event_type: &str, order_id: Uuid, monitors: i64) -> Envelope<Event> {
    testing::golden_event(event_type, order_id, |value| {
        if monitors > 0 {
            value["data"]["items"] =
                json!([{"sku": "MN-003", "quantity": monitors, "unit_price_cents": 24_900}]);
            value["data"]["total_cents"] = json!(monitors * 24_900);
        }
    })
}

fn handler() -> AuthorizePayment {
    AuthorizePayment {
        card_limit_cents: DEFAULT_CARD_LIMIT_CENTS,
    }
}

/// Applies `events` in one transaction, as the consumer would; returns the repeats.
async fn apply(pool: &PgPool, events: &[Envelope<Event>]) -> Result<usize, HandlerError> {
    testing::apply(&handler(), pool, events).await
}

async fn payment(pool: &PgPool, order_id: Uuid) -> db::Payment {
    let mut found = db::payments(pool, Some(order_id), 1).await.unwrap();
    assert_eq!(found.len(), 1, "a payment for {order_id}");
    found.pop().unwrap()
}

async fn payment_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Every answer in the outbox: (topic, key, event type, data), in order.
async fn answers(pool: &PgPool) -> Vec<(String, String, String, Value)> {
    testing::outbox(pool).await
}

async fn answer_types(pool: &PgPool) -> Vec<String> {
    answers(pool).await.into_iter().map(|a| a.2).collect()
}

fn assert_permanent(result: Result<usize, HandlerError>, mentions: &str) {
    match result {
        Err(err @ HandlerError::Permanent(_)) => {
            assert!(err.to_string().contains(mentions), "{err}")
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_order_within_the_card_limit_is_authorized_and_answered_payment_authorized(
    pool: PgPool,
) {
    let order = Uuid::new_v4();

    assert_eq!(
        apply(&pool, &[golden("order_placed", order)])
            .await
            .unwrap(),
        0
    );

    let authorized = payment(&pool, order).await;
    assert_eq!(authorized.status, Status::Authorized);
    assert_eq!(
        (authorized.amount_cents, authorized.currency.as_str()),
        (12_896, "EUR")
    );
    assert_eq!(authorized.reason, None);
    assert_eq!(
        answers(&pool).await,
        [(
            "payments".to_owned(),
            order.to_string(),
            "payment_authorized".to_owned(),
            json!({"order_id": order, "amount_cents": 12_896, "currency": "EUR"})
        )]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_order_over_the_card_limit_is_declined_with_the_amount_and_the_limit(pool: PgPool) {
    let order = Uuid::new_v4();

    apply(&pool, &[sized("order_placed", order, 5)])
        .await
        .unwrap();

    let reason = "card declined: 1,245.00 EUR is over the card limit of 1,000.00 EUR";
    let declined = payment(&pool, order).await;
    assert_eq!(declined.status, Status::Declined);
    assert_eq!(declined.reason.as_deref(), Some(reason));
    let answered = answers(&pool).await;
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert_eq!(
        (answered[0].0.as_str(), answered[0].2.as_str()),
        ("payments", "payment_declined")
    );
    assert_eq!(answered[0].3, json!({"order_id": order, "reason": reason}));
}

#[test]
fn a_total_exactly_at_the_card_limit_is_authorized() {
    let gateway = AuthorizePayment {
        card_limit_cents: 10_000,
    };
    assert_eq!(gateway.decline_reason(10_000, "EUR"), None);
    assert_eq!(
        gateway.decline_reason(10_001, "EUR").as_deref(),
        Some("card declined: 100.01 EUR is over the card limit of 100.00 EUR")
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_second_order_placed_with_a_new_event_id_for_a_decided_order_changes_nothing(
    pool: PgPool,
) {
    let (authorized, declined) = (Uuid::new_v4(), Uuid::new_v4());
    apply(
        &pool,
        &[
            golden("order_placed", authorized),
            sized("order_placed", declined, 5),
        ],
    )
    .await
    .unwrap();

    let repeats = apply(
        &pool,
        &[
            golden("order_placed", authorized),
            sized("order_placed", declined, 5),
        ],
    )
    .await
    .unwrap();

    assert_eq!(repeats, 2);
    assert_eq!(payment_count(&pool).await, 2);
    assert_eq!(
        answer_types(&pool).await,
        ["payment_authorized", "payment_declined"]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn the_same_order_placed_twice_in_one_batch_is_authorized_once(pool: PgPool) {
    let order = Uuid::new_v4();

    let repeats = apply(
        &pool,
        &[golden("order_placed", order), golden("order_placed", order)],
    )
    .await
    .unwrap();

    assert_eq!(repeats, 1);
    assert_eq!(payment_count(&pool).await, 1);
    assert_eq!(answer_types(&pool).await, ["payment_authorized"]);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_authorized_then_confirmed_order_is_captured_once(pool: PgPool) {
    let order = Uuid::new_v4();
    apply(&pool, &[golden("order_placed", order)])
        .await
        .unwrap();
    let authorized_at = payment(&pool, order).await.updated_at;

    assert_eq!(
        apply(&pool, &[golden("order_confirmed", order)])
            .await
            .unwrap(),
        0
    );

    let captured = payment(&pool, order).await;
    assert_eq!(captured.status, Status::Captured);
    assert!(captured.updated_at > authorized_at);
    let answered = answers(&pool).await;
    assert_eq!(answered.len(), 2, "{answered:?}");
    assert_eq!(answered[1].2, "payment_captured");
    assert_eq!(
        answered[1].3,
        json!({"order_id": order, "amount_cents": 12_896, "currency": "EUR"})
    );

    // The confirmation again, under a new event id: captured once.
    assert_eq!(
        apply(&pool, &[golden("order_confirmed", order)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(payment(&pool, order).await.status, Status::Captured);
    assert_eq!(
        answer_types(&pool).await,
        ["payment_authorized", "payment_captured"]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_authorized_then_cancelled_order_is_voided_once(pool: PgPool) {
    let order = Uuid::new_v4();
    apply(&pool, &[golden("order_placed", order)])
        .await
        .unwrap();

    assert_eq!(
        apply(&pool, &[golden("order_cancelled", order)])
            .await
            .unwrap(),
        0
    );

    let voided = payment(&pool, order).await;
    assert_eq!(voided.status, Status::Voided);
    assert_eq!(
        voided.reason.as_deref(),
        Some("order cancelled: insufficient stock: KB-001: 1 wanted, 0 available")
    );
    let answered = answers(&pool).await;
    assert_eq!(answered.len(), 2, "{answered:?}");
    assert_eq!(answered[1].2, "payment_voided");
    assert_eq!(
        answered[1].3,
        json!({"order_id": order, "amount_cents": 12_896, "currency": "EUR"})
    );

    assert_eq!(
        apply(&pool, &[golden("order_cancelled", order)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        answer_types(&pool).await,
        ["payment_authorized", "payment_voided"]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn placements_are_decided_before_the_batches_confirmations_and_cancellations(pool: PgPool) {
    let (confirmed, cancelled) = (Uuid::new_v4(), Uuid::new_v4());

    let repeats = apply(
        &pool,
        &[
            golden("order_placed", confirmed),
            golden("order_placed", cancelled),
            golden("order_cancelled", cancelled),
            golden("order_confirmed", confirmed),
        ],
    )
    .await
    .unwrap();

    assert_eq!(repeats, 0);
    assert_eq!(payment(&pool, confirmed).await.status, Status::Captured);
    assert_eq!(payment(&pool, cancelled).await.status, Status::Voided);
    let answered: Vec<(String, String)> = answers(&pool)
        .await
        .into_iter()
        .map(|(_, key, event_type, _)| (key, event_type))
        .collect();
    assert_eq!(
        answered,
        [
            (confirmed.to_string(), "payment_authorized".to_owned()),
            (cancelled.to_string(), "payment_authorized".to_owned()),
            (cancelled.to_string(), "payment_voided".to_owned()),
            (confirmed.to_string(), "payment_captured".to_owned()),
        ]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn cancelling_a_declined_order_voids_nothing_and_is_not_a_repeat(pool: PgPool) {
    let order = Uuid::new_v4();
    apply(&pool, &[sized("order_placed", order, 5)])
        .await
        .unwrap();

    assert_eq!(
        apply(&pool, &[sized("order_cancelled", order, 5)])
            .await
            .unwrap(),
        0
    );

    let declined = payment(&pool, order).await;
    assert_eq!(declined.status, Status::Declined);
    assert!(declined.reason.unwrap().starts_with("card declined"));
    assert_eq!(answer_types(&pool).await, ["payment_declined"]);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn confirming_an_order_whose_payment_was_not_authorized_is_a_permanent_error(pool: PgPool) {
    let (unknown, declined, voided) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    apply(&pool, &[sized("order_placed", declined, 5)])
        .await
        .unwrap();
    apply(
        &pool,
        &[
            golden("order_placed", voided),
            golden("order_cancelled", voided),
        ],
    )
    .await
    .unwrap();

    assert_permanent(
        apply(&pool, &[golden("order_confirmed", unknown)]).await,
        "no payment was authorized",
    );
    assert_permanent(
        apply(&pool, &[sized("order_confirmed", declined, 5)]).await,
        "its payment is declined",
    );
    assert_permanent(
        apply(&pool, &[golden("order_confirmed", voided)]).await,
        "its payment is voided",
    );

    assert_eq!(
        payment_count(&pool).await,
        2,
        "no payment made up for the unknown order"
    );
    assert_eq!(payment(&pool, declined).await.status, Status::Declined);
    assert_eq!(
        answer_types(&pool).await,
        ["payment_declined", "payment_authorized", "payment_voided"]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn cancelling_a_captured_order_is_a_permanent_error(pool: PgPool) {
    let order = Uuid::new_v4();
    apply(
        &pool,
        &[
            golden("order_placed", order),
            golden("order_confirmed", order),
        ],
    )
    .await
    .unwrap();

    assert_permanent(
        apply(&pool, &[golden("order_cancelled", order)]).await,
        "was captured",
    );
    assert_eq!(payment(&pool, order).await.status, Status::Captured);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_cancellation_before_its_placement_leaves_a_tombstone_and_the_late_placement_changes_nothing(
    pool: PgPool,
) {
    let order = Uuid::new_v4();

    assert_eq!(
        apply(&pool, &[golden("order_cancelled", order)])
            .await
            .unwrap(),
        0
    );
    let tombstone = payment(&pool, order).await;
    assert_eq!(tombstone.status, Status::Voided);
    assert_eq!(tombstone.reason.as_deref(), Some(CANCELLED_BEFORE_PLACED));
    assert_eq!(
        (tombstone.amount_cents, tombstone.customer_id.as_str()),
        (12_896, "cust-42")
    );
    assert_eq!(
        answer_types(&pool).await,
        Vec::<String>::new(),
        "nothing was authorized"
    );

    // The placement, parked and replayed after the cancellation.
    assert_eq!(
        apply(&pool, &[golden("order_placed", order)])
            .await
            .unwrap(),
        1
    );

    assert_eq!(payment(&pool, order).await, tombstone);
    assert_eq!(answer_types(&pool).await, Vec::<String>::new());
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_placement_after_its_cancellation_in_one_batch_changes_nothing(pool: PgPool) {
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
    let tombstone = payment(&pool, order).await;
    assert_eq!(tombstone.status, Status::Voided);
    assert_eq!(tombstone.reason.as_deref(), Some(CANCELLED_BEFORE_PLACED));
    assert_eq!(answer_types(&pool).await, Vec::<String>::new());
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_database_constraint_violation_is_a_permanent_error(pool: PgPool) {
    // Built by hand: decoding would refuse it, so only a producer's defect could send it.
    let order = Uuid::new_v4();
    let mut placed = golden("order_placed", order);
    if let Event::OrderPlaced(data) = &mut placed.data {
        data.total_cents = -1;
    }

    let err = apply(&pool, &[placed]).await.unwrap_err();

    assert!(matches!(err, HandlerError::Permanent(_)), "{err}");
    assert!(err.to_string().contains("SQLSTATE 23514"), "{err}");
    assert_eq!(payment_count(&pool).await, 0);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_payment_shows_its_status_amount_reason_and_times_newest_first(pool: PgPool) {
    let (older, newer) = (Uuid::new_v4(), Uuid::new_v4());
    apply(&pool, &[golden("order_placed", older)])
        .await
        .unwrap();
    apply(&pool, &[sized("order_placed", newer, 5)])
        .await
        .unwrap();

    let listed = serde_json::to_value(db::payments(&pool, None, 10).await.unwrap()).unwrap();

    assert_eq!(listed[0]["order_id"], json!(newer));
    assert_eq!(listed[1]["order_id"], json!(older));
    let shown = &listed[0];
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
            "amount_cents",
            "created_at",
            "currency",
            "customer_id",
            "order_id",
            "reason",
            "status",
            "updated_at"
        ]
    );
    assert_eq!(shown["status"], "declined");
    assert_eq!(shown["amount_cents"], 124_500);
    assert_eq!(shown["currency"], "EUR");
    assert_eq!(listed[1]["reason"], Value::Null);
    assert_eq!(
        db::payments(&pool, None, 1).await.unwrap().len(),
        1,
        "?limit"
    );
}
