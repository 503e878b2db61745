//! `Idempotency-Key` for `POST /orders`: retries are safe.
//!
//! Everything happens inside the order's own transaction. The request first takes a
//! transaction-scoped advisory lock on the key: a concurrent request with the same key finds
//! it taken and is told to retry later (409). Holding the lock, it looks the key up: a key
//! already stored with the same body answers with the original order, with a different body
//! it is refused (422). Otherwise the key is stored with the new order, committed together.
//!
//! Nothing is left behind when a request fails or its process dies: the transaction rolls
//! back, PostgreSQL releases the lock with the connection, and the client's retry with the
//! same key goes through at once.

use anyhow::Context;
use axum::http::HeaderMap;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";
pub const MAX_KEY_LENGTH: usize = 255;

/// What the key says about this request.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First time: store the order and the key in the same transaction
    /// ([`crate::db::insert_order`]).
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

/// A claim without an order older than this was left by a replica of the previous release
/// that died (see migration 3); newer replicas never leave one behind.
const ABANDONED_AFTER: &str = "30 seconds";

/// Takes `key` for this transaction, or says what an earlier request with the key became.
/// `request` is the canonical form of the body, to tell a retry from a reused key.
pub async fn claim(tx: &mut PgConnection, key: &str, request: &str) -> Result<Claim, ApiError> {
    // If this server vanishes without closing its connection (host crash, partition),
    // PostgreSQL ends the transaction, and with it the lock, after 10 idle seconds
    // (`set_config(.., true)` is `SET LOCAL`, sent with the lock in one round trip).
    let lock = sqlx::query!(
        r#"SELECT set_config('idle_in_transaction_session_timeout', '10s', true),
                  pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS "locked!""#,
        key,
    )
    .fetch_one(&mut *tx)
    .await
    .context("cannot lock the idempotency key")?;
    if !lock.locked {
        return Err(ApiError::RequestInFlight);
    }
    // `$2::text::interval`: the constant is sent as text and cast by PostgreSQL, as before.
    let existing: Option<(String, Option<Uuid>, bool)> = sqlx::query!(
        r#"SELECT request, order_id, claimed_at < now() - $2::text::interval AS "abandoned!"
           FROM idempotency_keys WHERE key = $1"#,
        key,
        ABANDONED_AFTER,
    )
    .fetch_optional(&mut *tx)
    .await
    .context("cannot look the idempotency key up")?
    .map(|row| (row.request, row.order_id, row.abandoned));
    match existing {
        None => Ok(Claim::New),
        Some((stored, _, _)) if stored != request => Err(ApiError::IdempotencyKeyReused),
        Some((_, Some(order_id), _)) => Ok(Claim::Replay(order_id)),
        Some((_, None, true)) => {
            sqlx::query!("DELETE FROM idempotency_keys WHERE key = $1", key)
                .execute(&mut *tx)
                .await
                .context("cannot drop an abandoned idempotency claim")?;
            Ok(Claim::New)
        }
        Some((_, None, false)) => Err(ApiError::RequestInFlight),
    }
}
