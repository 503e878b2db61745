//! The at-least-once consumer loop: take what librdkafka has fetched, apply each
//! partition's events in one transaction with their claims, store the offsets, and park on
//! the dead-letter topic whatever cannot be handled.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use futures::FutureExt;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::RDKafkaErrorCode;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field};

use super::assignment::{Assignment, RebalanceContext};
use super::handler::{Handler, HandlerError};
use super::{EventProducer, OutgoingRecord};
use crate::config::KafkaSettings;
use crate::envelope::{Envelope, Event};
use crate::health::LoopBeat;
use crate::metrics::ConsumerMetrics;
use crate::presence::RecentlyHandled;
use crate::retry::{self, Policy, Retryable};
use crate::{topics, trace};

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
    handler: H,
    pool: PgPool,
    dead_letters: EventProducer,
    retry: Policy,
    metrics: ConsumerMetrics,
    group: String,
    /// Notified after every commit, so events the handler put in the outbox leave at once.
    outbox_wake: Arc<Notify>,
    /// Busy from taking a batch to storing its offsets, for `/healthz`.
    beat: Option<LoopBeat>,
    /// What was handled lately, for the presence heartbeat.
    handled: RecentlyHandled,
}

/// How far through a partition's messages the consumer got.
enum Progress {
    /// Every message was handled or parked: all their offsets may be stored.
    Done,
    /// Shutdown came first after this many messages had settled: store the offsets of those
    /// only, so the rest are redelivered.
    Interrupted(usize),
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
        Ok(EventConsumer {
            consumer: Arc::new(consumer),
            handler,
            pool,
            dead_letters,
            retry,
            metrics,
            group: settings.group_id.clone(),
            outbox_wake,
            beat: None,
            handled: RecentlyHandled::default(),
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
        self.handled.clone()
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
            if batch.len() > 1 && self.apply_whole(&batch).await {
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
                    .process_partition(&messages, &shutdown)
                    .instrument(span)
                    .await;
                let settled = match progress {
                    Progress::Done => messages.len(),
                    Progress::Interrupted(settled) => settled,
                };
                if let Some(last) = settled.checked_sub(1).map(|i| &messages[i]) {
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

    /// Applies every event of a batch of several partitions in one transaction, each
    /// partition's in offset order. False when a message does not decode or the transaction
    /// fails: then nothing was applied, and each partition is handled on its own, where an
    /// event at fault is retried and parked without holding up the others.
    async fn apply_whole(&self, batch: &BTreeMap<PartitionKey, Vec<BorrowedMessage<'_>>>) -> bool {
        let messages: Vec<&BorrowedMessage<'_>> = batch.values().flatten().collect();
        let Ok(events) = messages
            .iter()
            .map(|message| Envelope::decode(message.payload()))
            .collect::<Result<Vec<_>, _>>()
        else {
            return false;
        };
        match self.apply(&messages, &events).await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(
                    events = events.len(),
                    partitions = batch.len(),
                    error = %err,
                    "batch failed; handling each partition on its own"
                );
                false
            }
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

    /// Handles one partition's messages in order: runs of decodable events are applied
    /// together, an undecodable message is parked where it stands.
    async fn process_partition(
        &self,
        messages: &[BorrowedMessage<'_>],
        shutdown: &CancellationToken,
    ) -> Progress {
        let mut run_start = 0;
        let mut run = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            match Envelope::decode(message.payload()) {
                Ok(event) => run.push(event),
                Err(err) => {
                    // The events before it first, so offsets are stored in order.
                    let before = &messages[run_start..index];
                    if let Progress::Interrupted(n) = self.apply_run(before, &run, shutdown).await {
                        return Progress::Interrupted(run_start + n);
                    }
                    run.clear();
                    let span = event_span(message);
                    let parked = async {
                        tracing::warn!(error = %err, "undecodable message");
                        self.park(message, err.kind(), &err.to_string(), 0, shutdown)
                            .await
                    };
                    if let Progress::Interrupted(_) = parked.instrument(span).await {
                        return Progress::Interrupted(index);
                    }
                    run_start = index + 1;
                }
            }
        }
        match self.apply_run(&messages[run_start..], &run, shutdown).await {
            Progress::Done => Progress::Done,
            Progress::Interrupted(n) => Progress::Interrupted(run_start + n),
        }
    }

    /// Applies consecutive events (`events[i]` decoded from `messages[i]`) in one
    /// transaction; if that fails, one at a time, so only the event at fault is retried and,
    /// in the end, parked.
    async fn apply_run(
        &self,
        messages: &[BorrowedMessage<'_>],
        events: &[Envelope<Event>],
        shutdown: &CancellationToken,
    ) -> Progress {
        if events.len() > 1 {
            let messages: Vec<_> = messages.iter().collect();
            match self.apply(&messages, events).await {
                Ok(()) => return Progress::Done,
                Err(err) => tracing::warn!(
                    events = events.len(),
                    error = %err,
                    "batch failed; handling its events one at a time"
                ),
            }
        }
        for (index, (message, event)) in messages.iter().zip(events).enumerate() {
            let span = event_span(message);
            span.record("event_id", field::display(event.meta.event_id));
            span.record("event_type", event.meta.event_type.as_str());
            if let Progress::Interrupted(_) = self
                .apply_one(message, event, shutdown)
                .instrument(span)
                .await
            {
                return Progress::Interrupted(index);
            }
        }
        Progress::Done
    }

    /// Applies one event, retrying transient failures ([`retry::transient`] unless the
    /// service chose otherwise); parks it when it is rejected or retries run out.
    async fn apply_one(
        &self,
        message: &BorrowedMessage<'_>,
        event: &Envelope<Event>,
        shutdown: &CancellationToken,
    ) -> Progress {
        let attempts = retry::Attempts::until(shutdown);
        let result = (|| async {
            if !attempts.begin() {
                return Err(HandlerError::Transient(anyhow::anyhow!("shutdown")));
            }
            self.apply(&[message], std::slice::from_ref(event)).await
        })
        .retry(self.retry)
        .sleep(retry::sleep_until_cancelled(shutdown))
        .when(|err| matches!(err, HandlerError::Transient(_)) && !attempts.stopped())
        .notify(|error, backoff| {
            self.metrics.count("retried", 1);
            tracing::warn!(attempt = attempts.made(), ?backoff, error = %format!("{error:#}"), "handler failed, retrying");
        })
        .await;
        let attempt = attempts.made();
        let error = match result {
            Ok(()) => {
                tracing::debug!(attempt, "event handled");
                return Progress::Done;
            }
            Err(HandlerError::Permanent(err)) => {
                tracing::warn!(error = %format!("{err:#}"), "event rejected by handler");
                return self
                    .park(message, "rejected", &format!("{err:#}"), attempt, shutdown)
                    .await;
            }
            Err(HandlerError::Transient(err)) => err,
        };
        let exhausted = self.retry.max_attempts().is_some_and(|max| attempt >= max);
        if shutdown.is_cancelled() && !exhausted {
            return Progress::Interrupted(0);
        }
        tracing::error!(attempt, error = %format!("{error:#}"), "retries exhausted");
        let reason = format!("{error:#}");
        self.park(message, "retries_exhausted", &reason, attempt, shutdown)
            .await
    }

    /// One transaction: claims the events' ids (`events[i]` decoded from `messages[i]`),
    /// lets the handler apply those not handled before, commits both together. Each of those
    /// is handled in a span of its own that continues the trace in its `traceparent` header,
    /// and the events the handler stores about its order continue that span.
    async fn apply(
        &self,
        messages: &[&BorrowedMessage<'_>],
        events: &[Envelope<Event>],
    ) -> Result<(), HandlerError> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let ids: Vec<_> = events.iter().map(|event| event.meta.event_id).collect();
        let mut unclaimed: HashSet<_> = crate::db::claim_events(&mut tx, &ids).await?;
        // Taken out as they are met, so an event delivered twice in one batch counts once.
        let (fresh, messages): (Vec<&Envelope<Event>>, Vec<&BorrowedMessage<'_>>) = events
            .iter()
            .zip(messages.iter().copied())
            .filter(|(event, _)| unclaimed.remove(&event.meta.event_id))
            .unzip();
        // Recorded spans live until the transaction is over: their duration is its.
        let mut spans = Vec::new();
        let causes = fresh
            .iter()
            .zip(&messages)
            .filter_map(|(event, message)| {
                let cause = if trace::recording() {
                    let span = handling_span(message, event);
                    let cause = trace::traceparent_of(&span);
                    spans.push(span);
                    cause?
                } else {
                    trace::child_of(traceparent(message))
                };
                Some((event.meta.order_id, cause))
            })
            .collect();
        let applied = if fresh.is_empty() {
            Default::default()
        } else {
            trace::with_causes(causes, self.handler.apply(&mut tx, &fresh)).await?
        };
        tx.commit().await?;
        drop(spans);
        if !fresh.is_empty() {
            self.outbox_wake.notify_one();
            self.handled.record(&fresh);
        }

        let repeated = events.len() - fresh.len() + applied.repeated_orders;
        if repeated > 0 {
            tracing::info!(repeated, "events handled before; nothing changed for them");
        }
        self.metrics
            .applied(events.len(), repeated, started.elapsed(), &fresh);
        Ok(())
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
    ) -> Progress {
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
        let tries = retry::Attempts::until(shutdown);
        let parked = (|| async {
            if !tries.begin() {
                return Err(anyhow::anyhow!("shutdown"));
            }
            Ok(self.dead_letters.send(record).await?)
        })
        .retry(retry::persistent())
        .sleep(retry::sleep_until_cancelled(shutdown))
        .when(|_| !tries.stopped())
        .notify(|err, backoff| {
            tracing::error!(error = %err, ?backoff, "cannot park message yet, retrying");
        })
        .await;
        match parked {
            Ok((partition, offset)) => {
                self.metrics.count("dead_lettered", 1);
                tracing::warn!(
                    dead_letter_topic,
                    partition,
                    offset,
                    kind,
                    reason,
                    "message parked on the dead-letter topic"
                );
                Progress::Done
            }
            // Only at shutdown: parking never gives up otherwise.
            Err(_) => Progress::Interrupted(0),
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

/// The span an event's effects are applied in, continuing the trace of whatever caused it.
fn handling_span(message: &BorrowedMessage<'_>, event: &Envelope<Event>) -> tracing::Span {
    let span = tracing::info_span!(
        "handle",
        otel.name = %format!("{} process", message.topic()),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.destination.name = message.topic(),
        messaging.kafka.partition = message.partition(),
        messaging.kafka.offset = message.offset(),
        event_type = event.meta.event_type.as_str(),
        order_id = %event.meta.order_id,
    );
    trace::continue_trace(&span, traceparent(message));
    span
}

/// The message's `traceparent` header, if it has one.
fn traceparent<'m>(message: &'m BorrowedMessage<'_>) -> Option<&'m str> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == trace::TRACEPARENT)
            .and_then(|header| std::str::from_utf8(header.value?).ok())
    })
}

/// The span every event is handled in, named as in the logs of a single event.
fn event_span(message: &BorrowedMessage<'_>) -> tracing::Span {
    tracing::info_span!(
        "event",
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        event_id = field::Empty,
        event_type = field::Empty,
    )
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
    /// On a replay marker, which `shop-dlt` appends to the dead-letter topic once it has
    /// replayed a parked message: the parked message's partition and offset on that topic,
    /// and where the replay put it (`topic:partition:offset`). A marker has no payload.
    pub const REPLAYED_PARTITION: &str = "dlt.replayed.partition";
    pub const REPLAYED_OFFSET: &str = "dlt.replayed.offset";
    pub const REPLAYED_TO: &str = "dlt.replayed.to";
}
