use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde::Serialize;
use shop_runtime::catalog;
use sqlx::migrate::Migrator;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

/// The service's own tables. `shop_runtime::db::connect` runs them after the runtime's
/// (`outbox`, `processed_events`), each in its own history.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Both in one history, for `#[sqlx::test(migrator = "TEST_MIGRATOR")]`: every test database
/// gets the whole schema.
pub static TEST_MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| shop_runtime::migrations::for_tests(&MIGRATOR));

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct StockLevel {
    pub sku: String,
    pub available: i32,
}

/// One order's decision: `reserved`, `rejected` (with the shortfall), or `released` once the
/// order was cancelled (with why; a tombstone has no items).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Reservation {
    pub order_id: Uuid,
    /// `reserved`, `rejected` or `released`.
    #[schema(examples("reserved", "rejected", "released"))]
    pub status: String,
    /// Why it was rejected (the shortfall) or released.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[sqlx(json)]
    pub items: Vec<ReservedItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReservedItem {
    pub sku: String,
    pub quantity: i32,
}

/// Stocks every catalog product the first time the service starts.
pub async fn seed_stock(pool: &PgPool, units: Option<i32>) -> sqlx::Result<()> {
    for product in catalog::PRODUCTS {
        sqlx::query!(
            "INSERT INTO stock (sku, available) VALUES ($1, $2) ON CONFLICT (sku) DO NOTHING",
            product.sku,
            units.unwrap_or(product.initial_stock),
        )
        .execute(pool)
        .await?;
    }
    Ok(())
}

pub async fn stock(pool: &PgPool) -> sqlx::Result<Vec<StockLevel>> {
    sqlx::query_as!(StockLevel, "SELECT sku, available FROM stock ORDER BY sku")
        .fetch_all(pool)
        .await
}

/// Reservations with their items, newest first; all of them, or one order's.
pub async fn reservations(
    pool: &PgPool,
    order_id: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Reservation>> {
    // `query_as!` would want the field to be `Json<_>` (it ignores `#[sqlx(json)]`), so the
    // rows are mapped by hand.
    let rows = sqlx::query!(
        r#"SELECT r.order_id, r.status, r.reason, r.created_at, r.updated_at,
                COALESCE(json_agg(json_build_object('sku', i.sku, 'quantity', i.quantity) ORDER BY i.sku)
                         FILTER (WHERE i.sku IS NOT NULL), '[]')
                    AS "items!: sqlx::types::Json<Vec<ReservedItem>>"
         FROM reservations r LEFT JOIN reservation_items i USING (order_id)
         WHERE $1::uuid IS NULL OR r.order_id = $1
         GROUP BY r.order_id ORDER BY r.created_at DESC LIMIT $2"#,
        order_id,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Reservation {
            order_id: r.order_id,
            status: r.status,
            reason: r.reason,
            created_at: r.created_at,
            updated_at: r.updated_at,
            items: r.items.0,
        })
        .collect())
}
