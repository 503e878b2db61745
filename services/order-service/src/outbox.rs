//! The outbox relay: publishes events the API stored, marks them published only after the
//! broker acknowledged them. An order accepted while Kafka is down waits here until it is back.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use prometheus_client::metrics::counter::Counter;
use shared_events::envelope::headers;
use shared_events::kafka::{EventProducer, OutgoingRecord};
use sqlx::{FromRow, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Rows claimed per transaction; a full batch means more may be waiting.
const BATCH: i64 = 200;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long shutdown waits for the batch in hand; what is left is published after restart.
/// Well inside the 10 s an orchestrator gives between SIGTERM and SIGKILL by default.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub struct OutboxRelay {
    pub pool: PgPool,
    pub producer: EventProducer,
    pub wake: Arc<Notify>,
    /// Another instance's orders only show up on the next poll.
    pub poll_interval: Duration,
    pub published: Counter,
    pub failures: Counter,
}

#[derive(FromRow)]
struct Row {
    id: i64,
    event_id: Uuid,
    topic: String,
    message_key: String,
    event_type: String,
    payload: Vec<u8>,
}

impl OutboxRelay {
    /// Publishes until `shutdown`; the batch in hand gets [`SHUTDOWN_GRACE`] to finish, then
    /// the producer is flushed.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(250);
        while !shutdown.is_cancelled() {
            let batch = self.publish_batch();
            tokio::pin!(batch);
            let result = tokio::select! {
                result = &mut batch => result,
                () = shutdown.cancelled() => match tokio::time::timeout(SHUTDOWN_GRACE, batch).await {
                    Ok(result) => result,
                    Err(_) => {
                        // Its transaction rolls back: the rows stay unpublished and go out
                        // after the restart (consumers drop a copy that got through meanwhile).
                        // The flush below gets only a moment: the broker is not answering.
                        tracing::warn!(
                            "broker unreachable at shutdown; the batch in hand stays in the outbox"
                        );
                        self.producer.flush(Duration::from_secs(2)).await;
                        return Ok(());
                    }
                },
            };
            match result {
                Ok(count) if count as i64 == BATCH => continue,
                Ok(_) => {
                    backoff = Duration::from_millis(250);
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.poll_interval) => {}
                    }
                }
                Err(err) => {
                    self.failures.inc();
                    tracing::warn!(error = %format!("{err:#}"), ?backoff, "outbox relay will retry");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.producer.flush(Duration::from_secs(10)).await;
        tracing::info!("outbox relay stopped");
        Ok(())
    }

    /// Claims a batch (`SKIP LOCKED`, so replicas never publish the same rows at once),
    /// publishes it, and records which rows the broker acknowledged.
    async fn publish_batch(&self) -> anyhow::Result<usize> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("cannot open a transaction")?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, event_id, topic, message_key, event_type, payload FROM outbox
             WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await
        .context("cannot read the outbox")?;
        if rows.is_empty() {
            return Ok(0);
        }
        let event_ids: Vec<String> = rows.iter().map(|row| row.event_id.to_string()).collect();
        let sends = rows
            .iter()
            .zip(&event_ids)
            .map(|(row, event_id)| async move {
                let headers: [(&str, &[u8]); 2] = [
                    (headers::EVENT_TYPE, row.event_type.as_bytes()),
                    (headers::EVENT_ID, event_id.as_bytes()),
                ];
                let record = OutgoingRecord {
                    topic: &row.topic,
                    key: row.message_key.as_bytes(),
                    payload: &row.payload,
                    headers: &headers,
                };
                (row.id, self.producer.send(record).await)
            });
        // Sent concurrently; the idempotent producer keeps each partition's order.
        let results = futures::future::join_all(sends).await;

        let mut published = Vec::new();
        let mut failed = Vec::new();
        let mut first_error = None;
        for (id, result) in results {
            match result {
                Ok(_) => published.push(id),
                Err(err) => {
                    failed.push(id);
                    first_error.get_or_insert(err.to_string());
                }
            }
        }
        sqlx::query(
            "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
        )
        .bind(&published)
        .execute(&mut *tx)
        .await?;
        if let Some(error) = &first_error {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)",
            )
            .bind(&failed)
            .bind(error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await.context("cannot mark events published")?;
        self.published.inc_by(published.len() as u64);
        if let Some(error) = first_error {
            bail!(
                "{} of {} events not yet published: {error}",
                failed.len(),
                rows.len()
            );
        }
        tracing::debug!(count = published.len(), "outbox events published");
        Ok(rows.len())
    }
}
