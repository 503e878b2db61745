use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct Charge {
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: String,
    pub charged_at: DateTime<Utc>,
}

/// Charges newest first; all of them, or one order's.
pub async fn charges(
    pool: &PgPool,
    order_id: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Charge>> {
    sqlx::query_as(
        "SELECT order_id, customer_id, amount_cents, currency, status, charged_at FROM charges
         WHERE $1::uuid IS NULL OR order_id = $1 ORDER BY charged_at DESC LIMIT $2",
    )
    .bind(order_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}
