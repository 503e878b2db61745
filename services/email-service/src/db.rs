use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

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
    sqlx::query_as(
        "SELECT order_id, kind, recipient, subject, message_id, transport, sent_at FROM emails
         WHERE $1::uuid IS NULL OR order_id = $1 ORDER BY sent_at DESC LIMIT $2",
    )
    .bind(order_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}
