//! PostgreSQL bootstrapping and the processed-events ledger that makes effects idempotent.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Postgres};
use uuid::Uuid;

use crate::config::ServiceSettings;

/// Creates the service's database if it is missing, connects, and migrates it: the tables
/// this crate owns, then the service's own (`migrator`), as [`crate::migrations::run`] does.
///
/// Creating the database here keeps "database per service" a one-command affair locally;
/// several instances racing to create it is harmless.
pub async fn connect(settings: &ServiceSettings, migrator: &Migrator) -> anyhow::Result<PgPool> {
    let url = settings.database_url.expose();
    let timeout = settings.kafka.startup_timeout;
    let shown = crate::secret::redact_url(url);
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
        .max_connections(settings.database_pool_size)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {shown}"))?;
    crate::migrations::run(&pool, migrator)
        .await
        .with_context(|| format!("cannot migrate {shown}"))?;
    Ok(pool)
}

/// Records that this service handled `event_ids`, inside the caller's transaction, and
/// returns those it had not handled before: the caller applies the effects of those only.
///
/// Because the record commits with the effects or not at all, a redelivered event changes
/// nothing. Ids are inserted in sorted order so that two instances claiming overlapping
/// batches (briefly, around a rebalance) lock them in the same order and cannot deadlock.
/// The table is this crate's ([`crate::migrations`]), in every service's database.
pub async fn claim_events(
    conn: &mut PgConnection,
    event_ids: &[Uuid],
) -> sqlx::Result<HashSet<Uuid>> {
    let mut sorted = event_ids.to_vec();
    sorted.sort_unstable();
    let claimed: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO processed_events (event_id) SELECT * FROM UNNEST($1::uuid[])
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    )
    .bind(&sorted)
    .fetch_all(conn)
    .await?;
    Ok(claimed.into_iter().collect())
}
