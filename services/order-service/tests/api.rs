//! The HTTP API against a fresh database: what a client sees for good and bad requests.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use order_service::db::TEST_MIGRATOR;
use order_service::routes::{self, AppState, MAX_BODY_BYTES};
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use shop_runtime::http::with_problem_fallbacks;
use sqlx::PgPool;
use tokio::sync::Notify;
use tower::ServiceExt;

async fn app(pool: &PgPool) -> Router {
    order_service::db::seed_catalog(pool).await.unwrap();
    let state = AppState {
        pool: pool.clone(),
        relay_wake: Arc::new(Notify::new()),
        orders_placed: Counter::default(),
    };
    with_problem_fallbacks(routes::router(state))
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::post("/orders");
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    request.body(body.into()).unwrap()
}

fn post_json(body: &Value) -> Request<Body> {
    post(Some("application/json"), body.to_string())
}

fn valid_order() -> Value {
    json!({"customer_id": "cust-1", "customer_email": "ada@example.com", "items": [{"sku": "KB-001", "quantity": 2}]})
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    let sql = match table {
        "orders" => "SELECT count(*) FROM orders",
        _ => "SELECT count(*) FROM outbox",
    };
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_valid_order_is_priced_from_the_catalog_stored_with_its_event_and_answered_201(
    pool: PgPool,
) {
    let app = app(&pool).await;
    let mut order = valid_order();
    order["items"] = json!([{"sku": "KB-001", "quantity": 2}, {"sku": "CB-005", "quantity": 1}]);

    let (status, _, body) = send(&app, post_json(&order)).await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["total_cents"], 2 * 8_999 + 1_299);
    assert_eq!(body["items"][0]["unit_price_cents"], 8_999);
    let id = body["id"].as_str().unwrap();
    let (status, _, fetched) = send(
        &app,
        Request::get(format!("/orders/{id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "pending", "the saga has only begun");
    let mut fetched = fetched;
    let timeline = fetched.as_object_mut().unwrap().remove("timeline").unwrap();
    assert_eq!(fetched, body);
    assert_eq!(timeline.as_array().unwrap().len(), 1, "{timeline}");
    assert_eq!(timeline[0]["event"], "order_placed");
    assert_eq!(timeline[0]["at"], body["created_at"]);
    let (event_type, payload): (String, Vec<u8>) =
        sqlx::query_as("SELECT event_type, payload FROM outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(event_type, "order_placed");
    let event: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(event["order_id"], body["id"]);
    assert_eq!(event["data"]["total_cents"], body["total_cents"]);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_price_in_the_request_is_refused_rather_than_trusted(pool: PgPool) {
    let app = app(&pool).await;
    let mut order = valid_order();
    order["items"][0]["unit_price_cents"] = json!(1);

    let (status, _, body) = send(&app, post_json(&order)).await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("unit_price_cents"),
        "{body}"
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn malformed_requests_get_a_problem_naming_the_problem_and_store_nothing(pool: PgPool) {
    let app = app(&pool).await;
    let with = |change: &dyn Fn(&mut Value)| {
        let mut order = valid_order();
        change(&mut order);
        post_json(&order)
    };
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "no items",
            with(&|o| o["items"] = json!([])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-order",
        ),
        (
            "zero quantity",
            with(&|o| o["items"][0]["quantity"] = json!(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-order",
        ),
        (
            "negative quantity",
            with(&|o| o["items"][0]["quantity"] = json!(-3)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-order",
        ),
        (
            "huge quantity",
            with(&|o| o["items"][0]["quantity"] = json!(1e30)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "quantity as text",
            with(&|o| o["items"][0]["quantity"] = json!("2")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "unknown field",
            with(&|o| o["coupon"] = json!("FREE")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "missing email",
            with(&|o| {
                o.as_object_mut().unwrap().remove("customer_email");
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "bad email",
            with(&|o| o["customer_email"] = json!("ada at example")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-order",
        ),
        (
            "control character",
            with(&|o| o["customer_id"] = json!("cust\u{0}1")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-order",
        ),
        (
            "unknown sku",
            with(&|o| o["items"][0]["sku"] = json!("NOPE-1")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-order",
        ),
        (
            "sku twice",
            with(&|o| {
                o["items"] =
                    json!([{"sku": "KB-001", "quantity": 1}, {"sku": "KB-001", "quantity": 1}])
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-order",
        ),
        (
            "a JSON array",
            post_json(&json!([])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "truncated JSON",
            post(
                Some("application/json"),
                r#"{"customer_id": "c", "items": [{"#,
            ),
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            "text/plain",
            post(Some("text/plain"), valid_order().to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            "no content type",
            post(None, valid_order().to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            "oversized body",
            post(Some("application/json"), " ".repeat(MAX_BODY_BYTES + 1)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
        ),
        (
            "wrong method",
            Request::delete("/orders").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        ),
        (
            "unknown route",
            Request::get("/nothing-here").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
    ];

    for (case, request, expected_status, slug) in cases {
        let (status, content_type, body) = send(&app, request).await;
        assert_eq!(status, expected_status, "{case}: {body}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{case}"
        );
        assert_eq!(body["type"], format!("/problems/{slug}"), "{case}: {body}");
        assert_eq!(body["status"], expected_status.as_u16(), "{case}");
        assert!(
            !body["detail"].as_str().unwrap_or_default().is_empty(),
            "{case}: a detail says what is wrong"
        );
    }
    assert_eq!(count(&pool, "orders").await, 0, "nothing stored");
    assert_eq!(count(&pool, "outbox").await, 0, "nothing to publish");
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn every_field_error_is_listed_with_its_path(pool: PgPool) {
    let app = app(&pool).await;
    let order = json!({"customer_id": "", "customer_email": "x", "items": [{"sku": "KB-001", "quantity": 0}]});

    let (_, _, body) = send(&app, post_json(&order)).await;

    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["customer_id", "customer_email", "items[0].quantity"]
    );
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_unknown_order_is_a_404_problem_and_a_malformed_id_a_400(pool: PgPool) {
    let app = app(&pool).await;
    let unknown = format!("/orders/{}", uuid::Uuid::new_v4());

    let (status, content_type, body) =
        send(&app, Request::get(&unknown).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(body["type"], "/problems/not-found");

    let (status, _, body) = send(
        &app,
        Request::get("/orders/42").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "/problems/invalid-path");
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn the_catalog_lists_every_product_with_its_price(pool: PgPool) {
    let app = app(&pool).await;
    let (status, _, body) =
        send(&app, Request::get("/products").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body.as_array().unwrap().len(),
        shop_runtime::catalog::PRODUCTS.len()
    );
    assert!(
        body.as_array()
            .unwrap()
            .iter()
            .all(|p| p["unit_price_cents"].as_i64().unwrap() > 0)
    );
}

fn post_with_key(key: &str, body: &Value) -> Request<Body> {
    Request::post("/orders")
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_retry_with_the_same_idempotency_key_returns_the_original_order_and_publishes_nothing_new(
    pool: PgPool,
) {
    let app = app(&pool).await;

    let (first_status, _, first) = send(&app, post_with_key("retry-1", &valid_order())).await;
    let (second_status, _, second) = send(&app, post_with_key("retry-1", &valid_order())).await;

    assert_eq!(
        (first_status, second_status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(second, first, "the same order, same id");
    assert_eq!(count(&pool, "orders").await, 1);
    assert_eq!(count(&pool, "outbox").await, 1, "one event, not two");
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn an_idempotency_key_reused_for_a_different_order_is_a_422(pool: PgPool) {
    let app = app(&pool).await;
    send(&app, post_with_key("reused", &valid_order())).await;
    let mut other = valid_order();
    other["items"][0]["quantity"] = json!(5);

    let (status, content_type, body) = send(&app, post_with_key("reused", &other)).await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(body["type"], "/problems/idempotency-key-reused");
    assert_eq!(count(&pool, "orders").await, 1);
}

/// Opens a transaction holding the lock a request with `key` takes while it stores its order.
async fn request_in_flight(pool: &PgPool, key: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(key)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_request_whose_key_is_still_in_flight_is_a_409(pool: PgPool) {
    let app = app(&pool).await;
    let _in_flight = request_in_flight(&pool, "busy").await;

    let (status, _, body) = send(&app, post_with_key("busy", &valid_order())).await;

    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], "/problems/request-in-flight");
    assert_eq!(count(&pool, "orders").await, 0);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_key_whose_request_died_midway_can_be_retried_at_once(pool: PgPool) {
    let app = app(&pool).await;
    let mut in_flight = request_in_flight(&pool, "crashed").await;
    let (status, _, _) = send(&app, post_with_key("crashed", &valid_order())).await;
    assert_eq!(status, StatusCode::CONFLICT, "held while its request runs");

    // Its process dies: the server ends the connection, and the transaction with it (waiting
    // up to 5 s until the backend is gone, as a signal alone returns before it is).
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *in_flight)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1, 5000)")
        .bind(backend)
        .execute(&pool)
        .await
        .unwrap();
    drop(in_flight);

    let (status, _, body) = send(&app, post_with_key("crashed", &valid_order())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(count(&pool, "orders").await, 1);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_claim_left_by_the_previous_release_is_in_flight_until_it_is_abandoned(pool: PgPool) {
    let app = app(&pool).await;
    let canonical = serde_json::to_string(
        &serde_json::from_value::<order_service::routes::NewOrder>(valid_order()).unwrap(),
    )
    .unwrap();
    // Rows as replicas of the previous release wrote them: a claim, its order not yet stored.
    sqlx::query(
        "INSERT INTO idempotency_keys (key, request, claimed_at)
         VALUES ('fresh', $1, now()), ('stale', $1, now() - interval '1 minute')",
    )
    .bind(canonical)
    .execute(&pool)
    .await
    .unwrap();

    let (fresh, _, _) = send(&app, post_with_key("fresh", &valid_order())).await;
    let (stale, _, _) = send(&app, post_with_key("stale", &valid_order())).await;

    assert_eq!(fresh, StatusCode::CONFLICT);
    assert_eq!(stale, StatusCode::CREATED);
    assert_eq!(count(&pool, "orders").await, 1);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn concurrent_requests_with_one_key_place_one_order(pool: PgPool) {
    let app = app(&pool).await;
    let requests = (0..8).map(|_| send(&app, post_with_key("race", &valid_order())));

    let answers = futures::future::join_all(requests).await;

    let statuses: Vec<u16> = answers
        .iter()
        .map(|(status, _, _)| status.as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let ids: std::collections::HashSet<&Value> = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::CREATED)
        .map(|(_, _, body)| &body["id"])
        .collect();
    assert_eq!(ids.len(), 1, "every 201 names the same order");
    assert_eq!(count(&pool, "orders").await, 1);
    assert_eq!(count(&pool, "outbox").await, 1);
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_failed_request_gives_its_key_back_and_a_malformed_key_is_a_400(pool: PgPool) {
    let app = app(&pool).await;
    let mut unknown_sku = valid_order();
    unknown_sku["items"][0]["sku"] = json!("NOPE-1");
    let (status, _, _) = send(&app, post_with_key("fix-and-retry", &unknown_sku)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, _) = send(&app, post_with_key("fix-and-retry", &valid_order())).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the corrected request may use the same key"
    );

    let (status, _, body) = send(&app, post_with_key(&"k".repeat(256), &valid_order())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "/problems/invalid-idempotency-key");
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn addresses_the_mailer_cannot_deliver_to_are_a_422_and_tagged_addresses_are_accepted(
    pool: PgPool,
) {
    let app = app(&pool).await;
    for odd in [
        "ada@example..com",
        "ada@-example.com",
        ".ada@example.com",
        "ada.@example.com",
        "ada@[127.0.0.1]",
    ] {
        let mut order = valid_order();
        order["customer_email"] = json!(odd);
        let (status, content_type, body) = send(&app, post_json(&order)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{odd}: {body}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert_eq!(
            body["errors"][0]["field"], "customer_email",
            "{odd}: {body}"
        );
    }
    assert_eq!(count(&pool, "orders").await, 0, "nothing stored");

    let mut order = valid_order();
    order["customer_email"] = json!("ada+tag@example.com");
    let (status, _, body) = send(&app, post_json(&order)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["customer_email"], "ada+tag@example.com");
}

#[sqlx::test(migrator = "TEST_MIGRATOR")]
async fn a_list_query_that_does_not_parse_is_a_400_problem_not_plain_text(pool: PgPool) {
    let app = app(&pool).await;
    for query in ["limit=abc", "limit=", "limit=9999999999999999999999"] {
        let (status, content_type, body) = send(
            &app,
            Request::get(format!("/orders?{query}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert_eq!(body["type"], "/problems/invalid-query", "{query}: {body}");
    }
}
