//! The Order Service's queries. Orders and their outbox rows are written together or not at all.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shop_runtime::catalog;
use shop_runtime::outbox::OutboxMessage;
use sqlx::migrate::Migrator;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

/// The service's own tables. `shop_runtime::db::connect` runs them after the runtime's
/// (`outbox`, `processed_events`), each in its own history.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Both in one history, for `#[sqlx::test(migrator = "TEST_MIGRATOR")]`: every test database
/// gets the whole schema.
pub static TEST_MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| shop_runtime::migrations::for_tests(&MIGRATOR));

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub unit_price_cents: i64,
    pub currency: String,
}

/// A priced line of an order, stored and published alike.
pub type OrderItem = shop_runtime::OrderLine;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Order {
    pub id: Uuid,
    pub customer_id: String,
    pub customer_email: String,
    #[sqlx(json)]
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub status: Status,
    /// Why the order was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
}

/// Where an order is in its saga: waiting for Inventory and Payment, or decided for good.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Confirmed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Confirmed => "confirmed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// One step of an order's saga, as `GET /orders/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Step {
    pub at: DateTime<Utc>,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Inserts the catalog's products; prices already stored are left alone.
pub async fn seed_catalog(pool: &PgPool) -> sqlx::Result<()> {
    for product in catalog::PRODUCTS {
        sqlx::query!(
            "INSERT INTO products (sku, name, unit_price_cents, currency) VALUES ($1, $2, $3, $4)
             ON CONFLICT (sku) DO NOTHING",
            product.sku,
            product.name,
            product.unit_price_cents,
            catalog::CURRENCY,
        )
        .execute(pool)
        .await?;
    }
    Ok(())
}

pub async fn products(pool: &PgPool) -> sqlx::Result<Vec<Product>> {
    sqlx::query_as!(
        Product,
        "SELECT sku, name, unit_price_cents, currency FROM products ORDER BY sku"
    )
    .fetch_all(pool)
    .await
}

/// Read on the order's own connection: a request never waits for a second one.
pub async fn products_by_sku(
    conn: &mut PgConnection,
    skus: &[String],
) -> sqlx::Result<Vec<Product>> {
    sqlx::query_as!(
        Product,
        "SELECT sku, name, unit_price_cents, currency FROM products WHERE sku = ANY($1)",
        skus,
    )
    .fetch_all(conn)
    .await
}

/// Stores the order, its items, the first step of its timeline, the event announcing it and,
/// with a key, the idempotency key, in the caller's transaction: committed together, an order
/// is never stored without its event, nor an event published for an order that was not
/// stored. One statement, so one round trip whatever the number of items.
pub async fn insert_order(
    tx: &mut PgConnection,
    order: &Order,
    event: &OutboxMessage,
    key: Option<(&str, &str)>,
) -> sqlx::Result<()> {
    let line_numbers: Vec<i32> = (1..).take(order.items.len()).collect();
    let skus: Vec<&str> = order.items.iter().map(|i| i.sku.as_str()).collect();
    let quantities: Vec<i32> = order.items.iter().map(|i| i.quantity).collect();
    let prices: Vec<i64> = order.items.iter().map(|i| i.unit_price_cents).collect();
    let (key, request) = key.unzip();
    // `as &[&str]`: the macros type-check TEXT[] against `String` elements; `&str` encodes alike.
    sqlx::query!(
        "WITH new_order AS (
             INSERT INTO orders (id, customer_id, customer_email, total_cents, currency, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING id
         ), items AS (
             INSERT INTO order_items (order_id, line_no, sku, quantity, unit_price_cents)
             SELECT new_order.id, line.* FROM new_order,
                    UNNEST($7::int[], $8::text[], $9::int[], $10::bigint[]) AS line
         ), event AS (
             INSERT INTO outbox (event_id, topic, message_key, event_type, payload, traceparent)
             VALUES ($11, $12, $13, $14, $15, $18)
         ), timeline AS (
             INSERT INTO order_timeline (order_id, event_type, at)
             SELECT new_order.id, $14, $6 FROM new_order
         )
         INSERT INTO idempotency_keys (key, request, order_id, completed_at)
         SELECT $16, $17, new_order.id, now() FROM new_order WHERE $16::text IS NOT NULL",
        order.id,
        order.customer_id,
        order.customer_email,
        order.total_cents,
        order.currency,
        order.created_at,
        &line_numbers,
        &skus as &[&str],
        &quantities,
        &prices,
        event.event_id,
        event.topic,
        event.key,
        event.event_type,
        event.payload,
        key,
        request,
        event.traceparent.as_deref(),
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Orders with their items, in one query whatever their number: `id` picks one order (or
/// none), `limit` caps how many of the newest are returned.
async fn select_orders(pool: &PgPool, id: Option<Uuid>, limit: i64) -> sqlx::Result<Vec<Order>> {
    let rows = sqlx::query!(
        r#"SELECT o.id, o.customer_id, o.customer_email, o.total_cents, o.currency, o.created_at,
                  o.status AS "status: Status", o.status_reason, o.decided_at,
                  (SELECT json_agg(json_build_object(
                              'sku', i.sku, 'quantity', i.quantity, 'unit_price_cents', i.unit_price_cents)
                           ORDER BY i.line_no)
                   FROM order_items i WHERE i.order_id = o.id) AS "items!: Json<Vec<OrderItem>>"
           FROM orders o
           WHERE $1::uuid IS NULL OR o.id = $1
           ORDER BY o.created_at DESC, o.id
           LIMIT $2"#,
        id,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Order {
            id: row.id,
            customer_id: row.customer_id,
            customer_email: row.customer_email,
            items: row.items.0,
            total_cents: row.total_cents,
            currency: row.currency,
            created_at: row.created_at,
            status: row.status,
            status_reason: row.status_reason,
            decided_at: row.decided_at,
        })
        .collect())
}

pub async fn order(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Order>> {
    Ok(select_orders(pool, Some(id), 1).await?.pop())
}

/// The newest `limit` orders, newest first.
pub async fn recent_orders(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<Order>> {
    select_orders(pool, None, limit).await
}

/// The order's saga so far, in the order its steps happened: by each event's `occurred_at`
/// (the decisions by when this service took them), steps at the same instant in the order
/// this service learned of them. Answers often arrive in another order than they happened.
pub async fn timeline(pool: &PgPool, order_id: Uuid) -> sqlx::Result<Vec<Step>> {
    sqlx::query_as!(
        Step,
        "SELECT at, event_type AS event, detail FROM order_timeline
         WHERE order_id = $1 ORDER BY at, recorded",
        order_id,
    )
    .fetch_all(pool)
    .await
}
