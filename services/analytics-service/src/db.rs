use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::{FromRow, PgPool};

/// The service's own tables. `shop_runtime::db::connect` runs them after the runtime's
/// (`outbox`, `processed_events`), each in its own history.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Both in one history, for `#[sqlx::test(migrator = "TEST_MIGRATOR")]`: every test database
/// gets the whole schema.
pub static TEST_MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| shop_runtime::migrations::for_tests(&MIGRATOR));

/// `GET /stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stats {
    pub orders: OrderCounts,
    /// Per currency, from confirmed orders only.
    pub revenue: Vec<Revenue>,
    /// Best sellers, from confirmed orders only.
    pub top_items: Vec<ItemSales>,
    /// Orders placed in the last minute.
    pub orders_last_minute: i64,
}

/// Orders counted as placed, and as each end of the saga. An order placed but not yet
/// decided is in `placed` only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderCounts {
    pub placed: i64,
    pub confirmed: i64,
    pub cancelled: i64,
    /// The cancelled orders by what ended them.
    pub cancelled_by: CancelledBy,
}

/// Cancelled orders per cause (`order_cancelled`'s `cause`). `unknown` counts those whose
/// event did not say: version 1 events, and orders cancelled before version 2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CancelledBy {
    pub stock_rejected: i64,
    pub payment_declined: i64,
    pub timed_out: i64,
    pub unknown: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Revenue {
    pub currency: String,
    /// Confirmed orders in this currency.
    pub orders: i64,
    pub revenue_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct ItemSales {
    pub sku: String,
    pub quantity: i64,
    pub revenue_cents: i64,
    pub orders: i64,
}

pub async fn stats(pool: &PgPool, top: i64) -> sqlx::Result<Stats> {
    let counts = sqlx::query!(
        r#"SELECT coalesce(sum(orders) FILTER (WHERE kind = 'placed'), 0)::bigint AS "placed!",
                coalesce(sum(orders) FILTER (WHERE kind = 'confirmed'), 0)::bigint AS "confirmed!",
                coalesce(sum(orders) FILTER (WHERE kind = 'cancelled'), 0)::bigint AS "cancelled!"
         FROM order_counts"#,
    )
    .fetch_one(pool)
    .await?;
    let cancelled_by = sqlx::query_as!(
        CancelledBy,
        r#"SELECT
                coalesce(sum(orders) FILTER (WHERE cause = 'stock_rejected'), 0)::bigint
                    AS "stock_rejected!",
                coalesce(sum(orders) FILTER (WHERE cause = 'payment_declined'), 0)::bigint
                    AS "payment_declined!",
                coalesce(sum(orders) FILTER (WHERE cause = 'timed_out'), 0)::bigint
                    AS "timed_out!",
                coalesce(sum(orders) FILTER (WHERE cause = 'unknown'), 0)::bigint AS "unknown!"
         FROM cancellation_causes"#,
    )
    .fetch_one(pool)
    .await?;
    let revenue = sqlx::query_as!(
        Revenue,
        "SELECT currency, orders, revenue_cents FROM revenue ORDER BY currency"
    )
    .fetch_all(pool)
    .await?;
    let top_items = sqlx::query_as!(
        ItemSales,
        "SELECT sku, quantity, revenue_cents, orders FROM item_sales ORDER BY quantity DESC, sku LIMIT $1",
        top,
    )
    .fetch_all(pool)
    .await?;
    let orders_last_minute = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM counted_orders
         WHERE kind = 'placed' AND occurred_at > now() - interval '1 minute'"#,
    )
    .fetch_one(pool)
    .await?;
    Ok(Stats {
        orders: OrderCounts {
            placed: counts.placed,
            confirmed: counts.confirmed,
            cancelled: counts.cancelled,
            cancelled_by,
        },
        revenue,
        top_items,
        orders_last_minute,
    })
}
