//! The at-least-once consumer loop: take what librdkafka has fetched, have each partition's
//! events applied in one transaction with their claims ([`apply`]), park on the dead-letter
//! topic whatever cannot be handled ([`park`]), and store the offsets of what settled.

mod apply;
mod park;
#[cfg(test)]
mod testing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::apply::{Applier, Progress};
use self::park::Parker;
pub use self::park::dead_letter;
use super::EventProducer;
use super::assignment::{Assignment, RebalanceContext};
use super::handler::Handler;
use crate::config::KafkaSettings;
use crate::health::LoopBeat;
use crate::metrics::ConsumerMetrics;
use crate::presence::RecentlyHandled;
use crate::retry::Policy;

/// A partition of one of the handler's topics: the topic's index in `H::TOPICS`, and the
/// partition number.
type PartitionKey = (usize, i32);

/// Messages taken from librdkafka's queue at most per round. Only what has already been
/// fetched is taken, so a quiet service handles each event as it comes, and a busy one
/// amortises a transaction over up to this many.
const MAX_BATCH: usize = 500;

/// An at-least-once consumer of the handler's topics for one consumer group.
///
/// Each event's offset is stored only after its effects and its claim were committed (or the
/// event was parked on the dead-letter topic), and the stored offsets are committed in the
/// background and on shutdown. A crash therefore redelivers the events in flight, never skips
/// one; the claim in `processed_events` makes the redelivery harmless.
pub struct EventConsumer<H> {
    consumer: Arc<StreamConsumer<RebalanceContext>>,
    applier: Applier<H>,
    group: String,
    /// Busy from taking a batch to storing its offsets, for `/healthz`.
    beat: Option<LoopBeat>,
}

/// The message whose offset to store once a partition's `messages` got as far as `progress`
/// (storing it marks it and everything before it as handled): the last one that settled, if
/// any did.
fn last_settled<T>(progress: Progress, messages: &[T]) -> Option<&T> {
    let settled = match progress {
        Progress::Done => messages.len(),
        Progress::Interrupted(settled) => settled,
    };
    settled.checked_sub(1).and_then(|last| messages.get(last))
}

impl<H: Handler> EventConsumer<H> {
    pub async fn connect(
        settings: &KafkaSettings,
        pool: PgPool,
        handler: H,
        retry: Policy,
        metrics: ConsumerMetrics,
        outbox_wake: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let dead_letters = EventProducer::connect(settings, Duration::from_secs(30)).await?;
        let context = RebalanceContext {
            group: settings.group_id.clone(),
            instance_id: settings.client_id.clone(),
            assignment: Assignment::reporting_to(metrics.lag.clone()),
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
            // Prefetch at most 4 MiB (librdkafka's default is 64 MiB): about ten thousand
            // events, plenty to keep batches full, within the service's 50 MB budget (8 MiB
            // drained no faster and took the Order Service to 59 MB; docs/benchmarks.md).
            .set("queued.max.messages.kbytes", "4096")
            // Every partition's lag, for /metrics and the presence heartbeat.
            .set("statistics.interval.ms", "1000")
            .create_with_context(context)
            .context("invalid Kafka consumer configuration")?;
        let parker = Parker {
            producer: dead_letters,
            service: settings.group_id.clone(),
            metrics: metrics.clone(),
        };
        Ok(EventConsumer {
            consumer: Arc::new(consumer),
            applier: Applier {
                handler,
                pool,
                retry,
                metrics,
                outbox_wake,
                handled: RecentlyHandled::default(),
                parker,
            },
            group: settings.group_id.clone(),
            beat: None,
        })
    }

    /// Reports the loop busy to `beat` while it handles a batch, so `/healthz` can tell a
    /// stuck loop from an idle one.
    pub fn with_liveness(mut self, beat: LoopBeat) -> Self {
        self.beat = Some(beat);
        self
    }

    /// What this consumer handled lately, drained by the presence heartbeat.
    pub fn recently_handled(&self) -> RecentlyHandled {
        self.applier.handled.clone()
    }

    pub fn assignment(&self) -> Assignment {
        self.consumer.context().assignment.clone()
    }

    /// Consumes until `shutdown`, then commits, leaves the group and flushes.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.consumer
            .subscribe(H::TOPICS)
            .with_context(|| format!("cannot subscribe to {:?}", H::TOPICS))?;
        tracing::info!(group = %self.group, topics = ?H::TOPICS, "consuming");
        'consuming: loop {
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                received = self.consumer.recv() => received,
            };
            let first = match received {
                Ok(message) => message,
                Err(err) => {
                    // Broker unreachable and the like: librdkafka reconnects by itself.
                    tracing::warn!(error = %err, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let _busy = self.beat.as_ref().map(LoopBeat::busy);
            let batch = self.drain(first);
            // Usually the whole batch goes in one transaction, whatever its partitions: one
            // commit (one WAL flush) instead of one per partition.
            if batch.len() > 1 && self.applier.apply_whole(&batch).await {
                for messages in batch.values() {
                    self.store_offset(&messages[messages.len() - 1]);
                }
                continue;
            }
            for ((topic, partition), messages) in batch {
                let span = tracing::info_span!(
                    "batch",
                    topic = H::TOPICS.get(topic).copied().unwrap_or("?"),
                    partition,
                    offsets = %format!("{}..={}", messages[0].offset(), messages[messages.len() - 1].offset()),
                );
                let progress = self
                    .applier
                    .process_partition(&messages, &shutdown)
                    .instrument(span)
                    .await;
                if let Some(last) = last_settled(progress, &messages) {
                    self.store_offset(last);
                }
                if let Progress::Interrupted(_) = progress {
                    break 'consuming;
                }
            }
        }
        self.close().await;
        Ok(())
    }

    /// Marks `last` and everything before it in its partition as handled, to be committed.
    fn store_offset(&self, last: &BorrowedMessage<'_>) {
        // Fails only if the partition was revoked meanwhile; its new owner then redelivers
        // the events and their claims absorb them.
        if let Err(err) = self.consumer.store_offset_from_message(last) {
            tracing::warn!(error = %err, "could not store offset");
        }
    }

    /// `first` and whatever else librdkafka has already fetched (up to [`MAX_BATCH`]),
    /// grouped by partition, each partition's messages in offset order.
    fn drain<'c>(
        &'c self,
        first: BorrowedMessage<'c>,
    ) -> BTreeMap<PartitionKey, Vec<BorrowedMessage<'c>>> {
        let key = |message: &BorrowedMessage<'_>| -> PartitionKey {
            let topic = H::TOPICS.iter().position(|t| *t == message.topic());
            (topic.unwrap_or(usize::MAX), message.partition())
        };
        let mut by_partition: BTreeMap<PartitionKey, Vec<BorrowedMessage<'c>>> = BTreeMap::new();
        by_partition.entry(key(&first)).or_default().push(first);
        for _ in 1..MAX_BATCH {
            match self.consumer.recv().now_or_never() {
                Some(Ok(message)) => by_partition.entry(key(&message)).or_default().push(message),
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "consumer error");
                    break;
                }
                None => break,
            }
        }
        by_partition
    }

    async fn close(self) {
        let EventConsumer {
            consumer,
            applier,
            group,
            ..
        } = self;
        applier.parker.flush(Duration::from_secs(10)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition's messages, by offset.
    const OFFSETS: [i64; 4] = [10, 11, 12, 13];

    #[test]
    fn a_partition_done_stores_the_offset_of_its_last_message() {
        assert_eq!(last_settled(Progress::Done, &OFFSETS), Some(&13));
    }

    #[test]
    fn shutdown_before_any_message_settled_stores_no_offset() {
        assert_eq!(last_settled(Progress::Interrupted(0), &OFFSETS), None);
    }

    #[test]
    fn shutdown_midway_stores_the_offset_of_the_last_settled_message_only() {
        assert_eq!(last_settled(Progress::Interrupted(1), &OFFSETS), Some(&10));
        assert_eq!(last_settled(Progress::Interrupted(3), &OFFSETS), Some(&12));
    }

    #[test]
    fn shutdown_after_every_message_settled_stores_them_all() {
        assert_eq!(last_settled(Progress::Interrupted(4), &OFFSETS), Some(&13));
    }
}
