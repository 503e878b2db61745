use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgPool};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub orders: i64,
    pub revenue: Vec<Revenue>,
    pub top_items: Vec<ItemSales>,
    /// Orders that occurred in the last minute.
    pub orders_last_minute: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct Revenue {
    pub currency: String,
    pub orders: i64,
    pub revenue_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct ItemSales {
    pub sku: String,
    pub quantity: i64,
    pub revenue_cents: i64,
    pub orders: i64,
}

pub async fn stats(pool: &PgPool, top: i64) -> sqlx::Result<Stats> {
    let revenue: Vec<Revenue> =
        sqlx::query_as("SELECT currency, orders, revenue_cents FROM revenue ORDER BY currency")
            .fetch_all(pool)
            .await?;
    let top_items = sqlx::query_as(
        "SELECT sku, quantity, revenue_cents, orders FROM item_sales ORDER BY quantity DESC, sku LIMIT $1",
    )
    .bind(top)
    .fetch_all(pool)
    .await?;
    let orders_last_minute = sqlx::query_scalar(
        "SELECT count(*) FROM counted_orders WHERE occurred_at > now() - interval '1 minute'",
    )
    .fetch_one(pool)
    .await?;
    Ok(Stats {
        orders: revenue.iter().map(|r| r.orders).sum(),
        revenue,
        top_items,
        orders_last_minute,
    })
}
