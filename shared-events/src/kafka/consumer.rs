use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field};

use super::{EventProducer, OutgoingRecord};
use crate::config::KafkaSettings;
use crate::envelope::{Envelope, Event};
use crate::metrics::ConsumerMetrics;
use crate::topics;

/// What a consumer service does with one event. Implementations must be idempotent: the
/// same event may arrive more than once (see [`crate::db::claim_event`]).
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        event: &Envelope<Event>,
    ) -> impl Future<Output = Result<Handled, HandlerError>> + Send;
}

/// What handling an event did, so metrics can tell first deliveries from redeliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The event's effects were applied.
    Applied,
    /// The event (or its order) had been handled before: nothing changed.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// May pass on a later attempt (database busy, mail server down): retried with backoff.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// Will never pass: the event goes to the dead-letter topic at once.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
}

impl From<sqlx::Error> for HandlerError {
    fn from(err: sqlx::Error) -> Self {
        HandlerError::Transient(err.into())
    }
}

/// How often and how patiently a transient failure is retried before the event is parked.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // 0.2 + 0.4 + 0.8 + 1.6 s: a partition waits at most ~3 s on an event that keeps failing.
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Which partitions this instance holds, updated on every rebalance.
#[derive(Clone, Debug, Default)]
pub struct Assignment {
    state: Arc<Mutex<AssignmentState>>,
}

#[derive(Debug, Default)]
struct AssignmentState {
    partitions: BTreeSet<(String, i32)>,
    rebalances: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AssignmentSnapshot {
    pub group: String,
    pub instance_id: String,
    pub partitions: Vec<AssignedPartition>,
    pub rebalances: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AssignedPartition {
    pub topic: String,
    pub partition: i32,
}

impl Assignment {
    pub fn snapshot(&self, group: &str, instance_id: &str) -> AssignmentSnapshot {
        let state = self.state.lock().expect("assignment lock poisoned");
        AssignmentSnapshot {
            group: group.to_owned(),
            instance_id: instance_id.to_owned(),
            partitions: state
                .partitions
                .iter()
                .map(|(topic, partition)| AssignedPartition {
                    topic: topic.clone(),
                    partition: *partition,
                })
                .collect(),
            rebalances: state.rebalances,
        }
    }

    fn apply(&self, rebalance: &Rebalance<'_>) -> Vec<i32> {
        let mut state = self.state.lock().expect("assignment lock poisoned");
        state.rebalances += 1;
        match rebalance {
            Rebalance::Assign(list) => {
                state.partitions.extend(entries(list));
            }
            Rebalance::Revoke(list) => {
                for entry in entries(list) {
                    state.partitions.remove(&entry);
                }
            }
            Rebalance::Error(_) => {}
        }
        state
            .partitions
            .iter()
            .map(|(_, partition)| *partition)
            .collect()
    }
}

fn entries(list: &TopicPartitionList) -> impl Iterator<Item = (String, i32)> + '_ {
    list.elements()
        .into_iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
}

/// Logs every rebalance and keeps [`Assignment`] current.
struct RebalanceContext {
    group: String,
    instance_id: String,
    assignment: Assignment,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let held = self.assignment.apply(rebalance);
        let (group, instance) = (&self.group, &self.instance_id);
        match rebalance {
            Rebalance::Assign(list) => tracing::info!(
                group, instance, assigned = ?entries(list).map(|e| e.1).collect::<Vec<_>>(), holding = ?held,
                "rebalance: partitions assigned"
            ),
            Rebalance::Revoke(list) => tracing::info!(
                group, instance, revoked = ?entries(list).map(|e| e.1).collect::<Vec<_>>(), holding = ?held,
                "rebalance: partitions revoked"
            ),
            Rebalance::Error(err) => {
                tracing::warn!(group, instance, error = %err, "rebalance failed")
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::trace!(?offsets, "offsets committed"),
            // Auto-commit found nothing new to commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => tracing::warn!(error = %err, "offset commit failed; it will be retried"),
        }
    }
}

/// An at-least-once consumer of `orders` for one consumer group.
///
/// Each event's offset is stored only after its handler succeeded (or the event was parked on
/// the dead-letter topic), and the stored offsets are committed in the background and on
/// shutdown. A crash therefore redelivers the events in flight, never skips one; handlers
/// make the redelivery harmless.
pub struct EventConsumer<H> {
    consumer: Arc<StreamConsumer<RebalanceContext>>,
    handler: H,
    dead_letters: EventProducer,
    retry: RetryPolicy,
    metrics: ConsumerMetrics,
    group: String,
    topic: &'static str,
}

enum Outcome {
    /// Handled or parked: its offset may be stored.
    Settled,
    /// Shutdown came first: leave the offset alone so the event is redelivered.
    Interrupted,
}

impl<H: Handler> EventConsumer<H> {
    pub async fn connect(
        settings: &KafkaSettings,
        handler: H,
        retry: RetryPolicy,
        metrics: ConsumerMetrics,
    ) -> anyhow::Result<Self> {
        let dead_letters = EventProducer::connect(settings, Duration::from_secs(30)).await?;
        let context = RebalanceContext {
            group: settings.group_id.clone(),
            instance_id: settings.client_id.clone(),
            assignment: Assignment::default(),
        };
        let session_ms = settings.session_timeout.as_millis();
        let consumer: StreamConsumer<RebalanceContext> = super::base_config(settings)
            .set("group.id", &settings.group_id)
            // Offsets are stored by hand once an event's effects are committed...
            .set("enable.auto.offset.store", "false")
            // ...and whatever has been stored is committed every second in the background,
            // and by librdkafka before it gives up revoked partitions, so their next owner
            // starts right after the last handled event.
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // A group with no committed offset starts from the oldest retained event: a new
            // service replays history instead of silently missing it.
            .set("auto.offset.reset", "earliest")
            // A crashed instance's partitions move to the survivors after this long.
            .set("session.timeout.ms", session_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (session_ms / 3).max(100).to_string(),
            )
            .create_with_context(context)
            .context("invalid Kafka consumer configuration")?;
        Ok(EventConsumer {
            consumer: Arc::new(consumer),
            handler,
            dead_letters,
            retry,
            metrics,
            group: settings.group_id.clone(),
            topic: topics::ORDERS,
        })
    }

    pub fn assignment(&self) -> Assignment {
        self.consumer.context().assignment.clone()
    }

    /// Consumes until `shutdown`, then commits, leaves the group and flushes.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.consumer
            .subscribe(&[self.topic])
            .with_context(|| format!("cannot subscribe to {}", self.topic))?;
        tracing::info!(group = %self.group, topic = self.topic, "consuming");
        loop {
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                received = self.consumer.recv() => received,
            };
            let message = match received {
                Ok(message) => message,
                Err(err) => {
                    // Broker unreachable and the like: librdkafka reconnects by itself.
                    tracing::warn!(error = %err, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let span = tracing::info_span!(
                "event",
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                event_id = field::Empty,
                event_type = field::Empty,
            );
            match self.process(&message, &shutdown).instrument(span).await {
                Outcome::Settled => {
                    // Fails only if the partition was revoked meanwhile; its new owner then
                    // redelivers the event and the handler's idempotency absorbs it.
                    if let Err(err) = self.consumer.store_offset_from_message(&message) {
                        tracing::warn!(error = %err, "could not store offset");
                    }
                }
                Outcome::Interrupted => break,
            }
        }
        self.close().await;
        Ok(())
    }

    async fn process(
        &self,
        message: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let started = Instant::now();
        let event = match Envelope::decode(message.payload()) {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(error = %err, "undecodable message");
                return self
                    .park(message, err.kind(), &err.to_string(), 0, shutdown)
                    .await;
            }
        };
        let span = tracing::Span::current();
        span.record("event_id", field::display(event.meta.event_id));
        span.record("event_type", event.meta.event_type.as_str());

        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.handler.handle(&event).await {
                Ok(Handled::Applied) => {
                    self.metrics.observe("processed", started.elapsed());
                    tracing::debug!(attempt, "event processed");
                    return Outcome::Settled;
                }
                Ok(Handled::Duplicate) => {
                    self.metrics.observe("duplicate", started.elapsed());
                    return Outcome::Settled;
                }
                Err(HandlerError::Permanent(err)) => {
                    tracing::warn!(error = %format!("{err:#}"), "event rejected by handler");
                    return self
                        .park(message, "rejected", &format!("{err:#}"), attempt, shutdown)
                        .await;
                }
                Err(HandlerError::Transient(err)) => err,
            };
            if attempt >= self.retry.max_attempts {
                tracing::error!(attempt, error = %format!("{error:#}"), "retries exhausted");
                let reason = format!("{error:#}");
                return self
                    .park(message, "retries_exhausted", &reason, attempt, shutdown)
                    .await;
            }
            let backoff = self.retry.backoff(attempt);
            self.metrics.observe("retried", started.elapsed());
            tracing::warn!(attempt, ?backoff, error = %format!("{error:#}"), "handler failed, retrying");
            tokio::select! {
                () = shutdown.cancelled() => return Outcome::Interrupted,
                () = tokio::time::sleep(backoff) => {}
            }
        }
    }

    /// Publishes the message, untouched, to the dead-letter topic with the reason in its
    /// headers. Keeps trying until the broker has it: a poison message is never dropped.
    async fn park(
        &self,
        message: &BorrowedMessage<'_>,
        kind: &str,
        reason: &str,
        attempts: u32,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let dead_letter_topic = topics::dead_letter_topic(message.topic());
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let attempts = attempts.to_string();
        let mut headers: Vec<(&str, &[u8])> = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .filter(|h| !h.key.starts_with(dead_letter::PREFIX))
                    .map(|h| (h.key, h.value.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        headers.extend([
            (dead_letter::ORIGINAL_TOPIC, message.topic().as_bytes()),
            (dead_letter::ORIGINAL_PARTITION, partition.as_bytes()),
            (dead_letter::ORIGINAL_OFFSET, offset.as_bytes()),
            (dead_letter::ERROR_KIND, kind.as_bytes()),
            (dead_letter::ERROR, reason.as_bytes()),
            (dead_letter::SERVICE, self.group.as_bytes()),
            (dead_letter::ATTEMPTS, attempts.as_bytes()),
        ]);
        let record = OutgoingRecord {
            topic: &dead_letter_topic,
            key: message.key().unwrap_or_default(),
            payload: message.payload().unwrap_or_default(),
            headers: &headers,
        };
        let mut backoff = self.retry.initial_backoff;
        loop {
            match self.dead_letters.send(record).await {
                Ok((partition, offset)) => {
                    self.metrics.observe("dead_lettered", Duration::ZERO);
                    tracing::warn!(
                        dead_letter_topic,
                        partition,
                        offset,
                        kind,
                        reason,
                        "message parked on the dead-letter topic"
                    );
                    return Outcome::Settled;
                }
                Err(err) => {
                    tracing::error!(error = %err, ?backoff, "cannot park message yet, retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Outcome::Interrupted,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.retry.max_backoff);
        }
    }

    async fn close(self) {
        let EventConsumer {
            consumer,
            dead_letters,
            group,
            ..
        } = self;
        dead_letters.flush(Duration::from_secs(10)).await;
        super::blocking(move || {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(err) => tracing::warn!(error = %err, "final offset commit failed"),
            }
            // Dropping the consumer closes it: it leaves the group, so its partitions move to
            // the other instances at once instead of after a session time-out.
            drop(consumer);
        })
        .await;
        tracing::info!(%group, "consumer stopped and left its group");
    }
}

/// Header names on a dead-lettered message. Its key, payload and original headers are
/// kept as they were, so it can be replayed to its original topic unchanged.
pub mod dead_letter {
    pub const PREFIX: &str = "dlt.";
    pub const ORIGINAL_TOPIC: &str = "dlt.original.topic";
    pub const ORIGINAL_PARTITION: &str = "dlt.original.partition";
    pub const ORIGINAL_OFFSET: &str = "dlt.original.offset";
    pub const ERROR_KIND: &str = "dlt.error.kind";
    pub const ERROR: &str = "dlt.error.message";
    pub const SERVICE: &str = "dlt.service";
    pub const ATTEMPTS: &str = "dlt.attempts";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_initial_delay_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        let delays: Vec<u128> = (1..=5).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }
}
