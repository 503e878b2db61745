//! `Idempotency-Key` for `POST /orders`: retries are safe.
//!
//! The first request with a key claims it (committed at once, so concurrent requests see the
//! claim), and the order's transaction completes the claim with the order id. A later request
//! with the same key and the same body gets the original order; a different body is refused;
//! a request arriving while the first is still being handled is told to retry later. A claim
//! left behind by a crash is taken over after [`ABANDONED_AFTER_SECS`].

use axum::http::HeaderMap;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";
pub const MAX_KEY_LENGTH: usize = 255;
/// A claim older than this that never completed belonged to a request that died.
pub const ABANDONED_AFTER_SECS: i32 = 30;

/// What the key says about this request.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First time: go ahead and complete the claim when the order is stored.
    New,
    /// Already answered: return this order again.
    Replay(Uuid),
}

/// The key from the headers, if any; a malformed one is a client error.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            (1..=MAX_KEY_LENGTH).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or(ApiError::BadIdempotencyKey)?;
    Ok(Some(key.to_owned()))
}

#[derive(FromRow)]
struct Existing {
    request: String,
    order_id: Option<Uuid>,
    abandoned: bool,
}

/// Claims `key` for `request`, or says what an earlier request with the key became.
pub async fn claim(pool: &PgPool, key: &str, request: &str) -> Result<Claim, ApiError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (key, request) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(key)
    .bind(request)
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::New);
    }
    let existing: Existing = sqlx::query_as(
        "SELECT request, order_id,
                completed_at IS NULL AND claimed_at < now() - make_interval(secs => $2) AS abandoned
         FROM idempotency_keys WHERE key = $1",
    )
    .bind(key)
    .bind(ABANDONED_AFTER_SECS)
    .fetch_one(pool)
    .await?;
    if existing.request != request {
        return Err(ApiError::IdempotencyKeyReused);
    }
    if let Some(order_id) = existing.order_id {
        return Ok(Claim::Replay(order_id));
    }
    if existing.abandoned {
        let taken = sqlx::query(
            "UPDATE idempotency_keys SET claimed_at = now()
             WHERE key = $1 AND completed_at IS NULL AND claimed_at < now() - make_interval(secs => $2)",
        )
        .bind(key)
        .bind(ABANDONED_AFTER_SECS)
        .execute(pool)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Claim::New);
        }
    }
    Err(ApiError::RequestInFlight)
}

/// Gives the key up after the request failed, so the client may retry with it.
pub async fn release(pool: &PgPool, key: &str) {
    let released =
        sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND completed_at IS NULL")
            .bind(key)
            .execute(pool)
            .await;
    if let Err(err) = released {
        tracing::warn!(error = %err, key, "could not release idempotency key; it expires by itself");
    }
}
