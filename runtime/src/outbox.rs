//! The transactional outbox every service publishes through, written once.
//!
//! A service never sends an event to Kafka from a request or a handler. It stores the event
//! with [`enqueue`] in the same transaction as the change the event announces, so both commit
//! or neither does; the [`OutboxRelay`] publishes what was committed and marks it published
//! only once the broker acknowledged it. An event stored while Kafka is down waits here
//! until it is back. The `outbox` table is this crate's, created in every service's database
//! by its migrations (`runtime/migrations/`, run by [`crate::migrations::run`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::envelope::{Envelope, headers};
use crate::events::EventData;
use crate::health::LoopBeat;
use crate::kafka::{EventProducer, OutgoingRecord};
use crate::retry::{self, Retryable};

/// An event ready for the outbox: where it goes, under which key, and its bytes.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub event_id: Uuid,
    pub topic: &'static str,
    pub key: String,
    pub event_type: &'static str,
    pub payload: Vec<u8>,
    /// The span that caused it, sent as the W3C `traceparent` header ([`crate::trace`]).
    pub traceparent: Option<String>,
}

impl OutboxMessage {
    /// The event on its type's topic, keyed by its order, caused by what is being done now:
    /// the request being served, or the event about the same order being handled.
    pub fn of<T: EventData>(event: &Envelope<T>) -> Self {
        OutboxMessage {
            event_id: event.meta.event_id,
            topic: T::TOPIC,
            key: event.meta.order_id.to_string(),
            event_type: T::EVENT_TYPE,
            payload: event.to_json(),
            traceparent: crate::trace::cause_of(event.meta.order_id),
        }
    }
}

/// Stores `messages` in the caller's transaction, in order: they are published once it
/// commits, and never if it rolls back. One statement whatever their number.
pub async fn enqueue(conn: &mut PgConnection, messages: &[OutboxMessage]) -> sqlx::Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let event_ids: Vec<Uuid> = messages.iter().map(|m| m.event_id).collect();
    let topics: Vec<&str> = messages.iter().map(|m| m.topic).collect();
    let keys: Vec<&str> = messages.iter().map(|m| m.key.as_str()).collect();
    let event_types: Vec<&str> = messages.iter().map(|m| m.event_type).collect();
    let payloads: Vec<&[u8]> = messages.iter().map(|m| m.payload.as_slice()).collect();
    let traceparents: Vec<Option<&str>> =
        messages.iter().map(|m| m.traceparent.as_deref()).collect();
    sqlx::query!(
        "INSERT INTO outbox (event_id, topic, message_key, event_type, payload, traceparent)
         SELECT event_id, topic, message_key, event_type, payload, traceparent
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[])
              WITH ORDINALITY AS m (event_id, topic, message_key, event_type, payload,
                                    traceparent, n)
         ORDER BY n",
        &event_ids,
        // Borrowed, not copied into `String`s: the overrides are the types sent as the arrays.
        &topics as &[&str],
        &keys as &[&str],
        &event_types as &[&str],
        &payloads as &[&[u8]],
        &traceparents as &[Option<&str>],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The relay's counters, registered once per service.
#[derive(Clone, Default)]
pub struct RelayMetrics {
    pub published: Counter,
    pub failures: Counter,
    /// Measured when `/metrics` is scraped, by [`RelayMetrics::measure_backlog`].
    backlog: Gauge,
    oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl RelayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = RelayMetrics::default();
        registry.register(
            "outbox_published",
            "Events the broker acknowledged",
            metrics.published.clone(),
        );
        registry.register(
            "outbox_failures",
            "Relay batches that left events unpublished",
            metrics.failures.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Events stored in the outbox and not yet acknowledged by the broker",
            metrics.backlog.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "How long the oldest unpublished event has waited in the outbox; 0 when it is empty",
            metrics.oldest_age.clone(),
        );
        metrics
    }

    /// Reads the backlog into the gauges: one query, over the unpublished rows only (a
    /// partial index holds them), run when the metrics are scraped rather than on the hot
    /// path.
    pub async fn measure_backlog(&self, pool: &PgPool) -> sqlx::Result<()> {
        let backlog = sqlx::query!(
            r#"SELECT count(*) AS "count!",
                    extract(epoch FROM now() - min(created_at))::float8 AS "oldest?"
             FROM outbox WHERE published_at IS NULL"#,
        )
        .fetch_one(pool)
        .await?;
        self.backlog.set(backlog.count);
        self.oldest_age.set(backlog.oldest.unwrap_or(0.0).max(0.0));
        Ok(())
    }
}

/// Rows claimed per transaction; a full batch means more may be waiting.
const BATCH: i64 = 200;
/// How long shutdown waits for the batch in hand; what is left is published after restart.
/// Well inside the 10 s an orchestrator gives between SIGTERM and SIGKILL by default.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub struct OutboxRelay {
    pub pool: PgPool,
    pub producer: EventProducer,
    /// Notified after a commit that stored events, so they leave at once.
    pub wake: Arc<Notify>,
    /// Events another instance stored show up on the next poll.
    pub poll_interval: Duration,
    pub metrics: RelayMetrics,
    /// Busy while a batch is being published, for `/healthz`.
    pub beat: Option<LoopBeat>,
}

/// An outbox row as `publish_batch` claims it (`query_as!` maps the columns by name).
struct Row {
    id: i64,
    event_id: Uuid,
    topic: String,
    message_key: String,
    event_type: String,
    payload: Vec<u8>,
    traceparent: Option<String>,
}

/// The `event_version` of a stored envelope, for its header. The outbox stores exactly the
/// bytes `OutboxMessage::of` wrote, so it is always there; an unreadable one sends `0`
/// rather than holding back the events behind it (the consumer reads the body's version).
fn version_of(payload: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Versioned {
        event_version: u32,
    }
    serde_json::from_slice::<Versioned>(payload)
        .map_or(0, |envelope| envelope.event_version)
        .to_string()
}

/// What became of the batch in hand.
enum Batch {
    /// This many rows were claimed and published.
    Published(usize),
    /// Shutdown came and the broker did not answer within [`SHUTDOWN_GRACE`]: the rows stay in
    /// the outbox.
    Abandoned,
}

impl OutboxRelay {
    /// Publishes until `shutdown`; the batch in hand gets [`SHUTDOWN_GRACE`] to finish, then
    /// the producer is flushed. A batch that fails is tried again after a
    /// [`retry::persistent`] delay, until it goes out or shutdown.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        while !shutdown.is_cancelled() {
            let attempts = retry::Attempts::until(&shutdown);
            let batch = (|| async {
                if !attempts.begin() {
                    bail!("shutdown");
                }
                self.publish_in_hand(&shutdown).await
            })
            .retry(retry::persistent())
            .sleep(retry::sleep_until_cancelled(&shutdown))
            .when(|_| !attempts.stopped())
            .notify(|err, backoff| {
                tracing::warn!(error = %format!("{err:#}"), ?backoff, "outbox relay will retry");
            })
            .await;
            match batch {
                Ok(Batch::Published(count)) if count as i64 == BATCH => continue,
                Ok(Batch::Published(_)) => {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.poll_interval) => {}
                    }
                }
                Ok(Batch::Abandoned) => {
                    // The flush gets only a moment: the broker is not answering.
                    self.producer.flush(Duration::from_secs(2)).await;
                    return Ok(());
                }
                // Only at shutdown: the relay stops retrying then.
                Err(_) => {}
            }
        }
        self.producer.flush(Duration::from_secs(10)).await;
        tracing::info!("outbox relay stopped");
        Ok(())
    }

    /// One attempt: a batch published, busy for `/healthz` meanwhile; at shutdown it gets
    /// [`SHUTDOWN_GRACE`] to finish.
    async fn publish_in_hand(&self, shutdown: &CancellationToken) -> anyhow::Result<Batch> {
        let _busy = self.beat.as_ref().map(LoopBeat::busy);
        let batch = self.publish_batch();
        tokio::pin!(batch);
        let result = tokio::select! {
            result = &mut batch => result,
            () = shutdown.cancelled() => match tokio::time::timeout(SHUTDOWN_GRACE, batch).await {
                Ok(result) => result,
                Err(_) => {
                    // Its transaction rolls back: the rows stay unpublished and go out
                    // after the restart (consumers drop a copy that got through meanwhile).
                    tracing::warn!(
                        "broker unreachable at shutdown; the batch in hand stays in the outbox"
                    );
                    return Ok(Batch::Abandoned);
                }
            },
        };
        if result.is_err() {
            self.metrics.failures.inc();
        }
        result.map(Batch::Published)
    }

    /// Claims a batch (`SKIP LOCKED`, so replicas never publish the same rows at once),
    /// publishes it, and records which rows the broker acknowledged.
    async fn publish_batch(&self) -> anyhow::Result<usize> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("cannot open a transaction")?;
        let rows: Vec<Row> = sqlx::query_as!(
            Row,
            "SELECT id, event_id, topic, message_key, event_type, payload, traceparent FROM outbox
             WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            BATCH,
        )
        .fetch_all(&mut *tx)
        .await
        .context("cannot read the outbox")?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<(String, String)> = rows
            .iter()
            .map(|row| (row.event_id.to_string(), version_of(&row.payload)))
            .collect();
        let sends = rows
            .iter()
            .zip(&ids)
            .map(|(row, (event_id, version))| async move {
                let mut headers: Vec<(&str, &[u8])> = vec![
                    (headers::EVENT_TYPE, row.event_type.as_bytes()),
                    (headers::EVENT_VERSION, version.as_bytes()),
                    (headers::EVENT_ID, event_id.as_bytes()),
                ];
                if let Some(traceparent) = &row.traceparent {
                    headers.push((crate::trace::TRACEPARENT, traceparent.as_bytes()));
                }
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
        sqlx::query!(
            "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
            &published,
        )
        .execute(&mut *tx)
        .await?;
        if let Some(error) = &first_error {
            sqlx::query!(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)",
                &failed,
                error,
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await.context("cannot mark events published")?;
        self.metrics.published.inc_by(published.len() as u64);
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
