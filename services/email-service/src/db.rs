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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct SentEmail {
    pub order_id: Uuid,
    /// `confirmation` or `cancellation`: how the order ended.
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub message_id: String,
    pub transport: String,
    pub sent_at: DateTime<Utc>,
}

/// Sent mail newest first; all of it, or one order's.
pub async fn emails(
    pool: &PgPool,
    order_id: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<SentEmail>> {
    sqlx::query_as!(
        SentEmail,
        "SELECT order_id, kind, recipient, subject, message_id, transport, sent_at FROM emails
         WHERE $1::uuid IS NULL OR order_id = $1 ORDER BY sent_at DESC LIMIT $2",
        order_id,
        limit,
    )
    .fetch_all(pool)
    .await
}
