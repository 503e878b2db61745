use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde::Serialize;
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

/// Where an order's payment is: held on the card or refused, then taken or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Authorized,
    Declined,
    Captured,
    Voided,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Authorized => "authorized",
            Status::Declined => "declined",
            Status::Captured => "captured",
            Status::Voided => "voided",
        }
    }
}

/// One order's payment, as `GET /payments` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Payment {
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: Status,
    /// Why it was declined or voided.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Payments newest first; all of them, or one order's.
pub async fn payments(
    pool: &PgPool,
    order_id: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Payment>> {
    sqlx::query_as!(
        Payment,
        r#"SELECT order_id, customer_id, amount_cents, currency, status AS "status: Status",
                reason, created_at, updated_at
         FROM payments WHERE $1::uuid IS NULL OR order_id = $1
         ORDER BY created_at DESC LIMIT $2"#,
        order_id,
        limit,
    )
    .fetch_all(pool)
    .await
}
