//! PostgreSQL bootstrapping and the processed-events ledger that makes effects idempotent.

use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Postgres};
use uuid::Uuid;

/// Creates the service's database if it is missing, connects, and runs its migrations.
///
/// Creating the database here keeps "database per service" a one-command affair locally;
/// several instances racing to create it is harmless.
pub async fn connect(url: &str, migrator: &Migrator, timeout: Duration) -> anyhow::Result<PgPool> {
    let shown = redact(url);
    let exists = tokio::time::timeout(timeout, Postgres::database_exists(url))
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {timeout:?}"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| {
            format!(
                "cannot reach PostgreSQL at {shown}: start PostgreSQL (e.g. `apt-get install postgresql`) \
                 or set DATABASE_URL to a server this service can reach"
            )
        })?;
    if !exists {
        if let Err(err) = Postgres::create_database(url).await {
            // Another instance may have created it between our check and our create.
            if !Postgres::database_exists(url).await.unwrap_or(false) {
                return Err(err).with_context(|| format!("cannot create database {shown}"));
            }
        }
        tracing::info!(database = %shown, "created database");
    }
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {shown}"))?;
    migrator
        .run(&pool)
        .await
        .with_context(|| format!("cannot migrate {shown}"))?;
    Ok(pool)
}

/// Records that this service handled `event_id`, inside the caller's transaction.
///
/// Returns `false` when the event was already handled: the caller must then change nothing.
/// Because the record commits with the effects or not at all, a redelivered event is a no-op.
/// Every consumer's migrations create the `processed_events` table this writes to.
pub async fn claim_event(conn: &mut PgConnection, event_id: Uuid) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO processed_events (event_id) VALUES ($1) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Opens the transaction an event's effects go into, with the event already claimed; `None`
/// when this service handled the event before and must change nothing.
pub async fn begin_first_delivery(
    pool: &PgPool,
    event_id: Uuid,
) -> sqlx::Result<Option<sqlx::Transaction<'static, Postgres>>> {
    let mut tx = pool.begin().await?;
    if claim_event(&mut tx, event_id).await? {
        Ok(Some(tx))
    } else {
        tracing::info!("event already handled; nothing to do");
        Ok(None)
    }
}

/// The URL without its password, for logs and error messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
