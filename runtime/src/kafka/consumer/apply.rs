//! The transactional apply: each event's claim in `processed_events` and the handler's
//! effects commit together; a batch that fails is applied again one event at a time, each
//! with its own retries, so only the event at fault is parked.
//!
//! Generic over the message type so that tests can hand it messages of their own
//! ([`rdkafka::message::OwnedMessage`]); the loop hands it what librdkafka fetched.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use rdkafka::Message;
use rdkafka::message::Headers;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field};

use super::park::{Parker, Reason};
use crate::envelope::{Envelope, Event};
use crate::kafka::handler::{Handler, HandlerError};
use crate::metrics::ConsumerMetrics;
use crate::presence::RecentlyHandled;
use crate::retry::{self, Policy, Retryable};
use crate::trace;

/// How far through a partition's messages the consumer got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// Every message was handled or parked: all their offsets may be stored.
    Done,
    /// Shutdown came first after this many messages had settled: store the offsets of those
    /// only, so the rest are redelivered.
    Interrupted(usize),
}

impl Progress {
    /// The same progress counted from `start` messages earlier.
    fn after(self, start: usize) -> Self {
        match self {
            Progress::Done => Progress::Done,
            Progress::Interrupted(n) => Progress::Interrupted(start + n),
        }
    }
}

/// Applies events with their claims, and parks what cannot be applied.
pub(super) struct Applier<H> {
    pub handler: H,
    pub pool: PgPool,
    /// For an event's transient failures ([`retry::transient`] unless the service chose
    /// otherwise).
    pub retry: Policy,
    pub metrics: ConsumerMetrics,
    /// Notified after every commit, so events the handler put in the outbox leave at once.
    pub outbox_wake: Arc<Notify>,
    /// What was handled lately, for the presence heartbeat.
    pub handled: RecentlyHandled,
    pub parker: Parker,
}

impl<H: Handler> Applier<H> {
    /// Applies every event of a batch of several partitions in one transaction, each
    /// partition's in offset order. False when a message does not decode or the transaction
    /// fails: then nothing was applied, and each partition is handled on its own, where an
    /// event at fault is retried and parked without holding up the others.
    pub async fn apply_whole<K, M: Message + Sync>(&self, batch: &BTreeMap<K, Vec<M>>) -> bool {
        let messages: Vec<&M> = batch.values().flatten().collect();
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

    /// Handles one partition's messages in order: runs of decodable events are applied
    /// together, an undecodable message is parked where it stands.
    pub async fn process_partition<M: Message + Sync>(
        &self,
        messages: &[M],
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
                        let reason = Reason {
                            kind: err.kind(),
                            error: &err.to_string(),
                            attempts: 0,
                        };
                        self.parker.park(message, reason, shutdown).await
                    };
                    if let Progress::Interrupted(_) = parked.instrument(span).await {
                        return Progress::Interrupted(index);
                    }
                    run_start = index + 1;
                }
            }
        }
        self.apply_run(&messages[run_start..], &run, shutdown)
            .await
            .after(run_start)
    }

    /// Applies consecutive events (`events[i]` decoded from `messages[i]`) in one
    /// transaction; if that fails, one at a time, so only the event at fault is retried and,
    /// in the end, parked.
    async fn apply_run<M: Message + Sync>(
        &self,
        messages: &[M],
        events: &[Envelope<Event>],
        shutdown: &CancellationToken,
    ) -> Progress {
        if events.len() > 1 {
            let messages: Vec<&M> = messages.iter().collect();
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

    /// Applies one event, retrying transient failures; parks it when it is rejected or
    /// retries run out.
    async fn apply_one<M: Message + Sync>(
        &self,
        message: &M,
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
            self.metrics.count(crate::metrics::Outcome::Retried, 1);
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
                let error = format!("{err:#}");
                tracing::warn!(error = %error, "event rejected by handler");
                let reason = Reason {
                    kind: "rejected",
                    error: &error,
                    attempts: attempt,
                };
                return self.parker.park(message, reason, shutdown).await;
            }
            Err(HandlerError::Transient(err)) => err,
        };
        let exhausted = self.retry.max_attempts().is_some_and(|max| attempt >= max);
        if shutdown.is_cancelled() && !exhausted {
            return Progress::Interrupted(0);
        }
        let error = format!("{error:#}");
        tracing::error!(attempt, error = %error, "retries exhausted");
        let reason = Reason {
            kind: "retries_exhausted",
            error: &error,
            attempts: attempt,
        };
        self.parker.park(message, reason, shutdown).await
    }

    /// One transaction: claims the events' ids (`events[i]` decoded from `messages[i]`),
    /// lets the handler apply those not handled before, commits both together. Each of those
    /// is handled in a span of its own that continues the trace in its `traceparent` header,
    /// and the events the handler stores about its order continue that span.
    async fn apply<M: Message + Sync>(
        &self,
        messages: &[&M],
        events: &[Envelope<Event>],
    ) -> Result<(), HandlerError> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let ids: Vec<_> = events.iter().map(|event| event.meta.event_id).collect();
        let mut unclaimed: HashSet<_> = crate::db::claim_events(&mut tx, &ids).await?;
        // Taken out as they are met, so an event delivered twice in one batch counts once.
        let (fresh, messages): (Vec<&Envelope<Event>>, Vec<&M>) = events
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
                    let span = handling_span(*message, event);
                    let cause = trace::traceparent_of(&span);
                    spans.push(span);
                    cause?
                } else {
                    trace::child_of(traceparent(*message))
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
}

/// The span an event's effects are applied in, continuing the trace of whatever caused it.
fn handling_span(message: &impl Message, event: &Envelope<Event>) -> tracing::Span {
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
fn traceparent(message: &impl Message) -> Option<&str> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == trace::TRACEPARENT)
            .and_then(|header| std::str::from_utf8(header.value?).ok())
    })
}

/// The span every event is handled in, named as in the logs of a single event.
fn event_span(message: &impl Message) -> tracing::Span {
    tracing::info_span!(
        "event",
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        event_id = field::Empty,
        event_type = field::Empty,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use prometheus_client::registry::Registry;
    use rdkafka::message::OwnedMessage;
    use sqlx::PgConnection;
    use uuid::Uuid;

    use super::super::park::dead_letter;
    use super::super::testing::{self, order_placed};
    use super::*;
    use crate::access::Principal;
    use crate::kafka::handler::Applied;
    use crate::retry::GiveUp;
    use crate::topics;

    /// Records each event it applies in `effects` (no unique key, so an event applied twice
    /// shows twice), and rejects one event for good.
    #[derive(Default)]
    struct Recorder {
        rejects: Option<Uuid>,
        /// How many events each call was given.
        calls: Mutex<Vec<usize>>,
    }

    impl Handler for Recorder {
        const PRINCIPAL: Principal = Principal {
            user: testing::SERVICE,
            group: Some(testing::SERVICE),
            reads: &[topics::ORDERS],
            writes: &[],
        };

        async fn apply(
            &self,
            tx: &mut PgConnection,
            events: &[&Envelope<Event>],
        ) -> Result<Applied, HandlerError> {
            self.calls.lock().unwrap().push(events.len());
            for event in events {
                if Some(event.meta.event_id) == self.rejects {
                    return Err(HandlerError::Permanent(anyhow::anyhow!(
                        "rejected on purpose"
                    )));
                }
                sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
                    .bind(event.meta.event_id)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(Applied::default())
        }
    }

    impl Recorder {
        fn calls(&self) -> Vec<usize> {
            self.calls.lock().unwrap().clone()
        }
    }

    /// An applier on `pool` with quick retries, parking on a mock cluster (kept alive with it).
    async fn applier(
        pool: &PgPool,
        handler: Recorder,
    ) -> (
        rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        Applier<Recorder>,
    ) {
        sqlx::query("CREATE TABLE effects (event_id UUID NOT NULL)")
            .execute(pool)
            .await
            .unwrap();
        let (mock, parker) = testing::mock_parker(Duration::from_secs(5)).await;
        let applier = Applier {
            handler,
            pool: pool.clone(),
            retry: Policy {
                min_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(10),
                factor: 2.0,
                give_up: GiveUp::Attempts(3),
            },
            metrics: ConsumerMetrics::register(&mut Registry::default()),
            outbox_wake: Arc::default(),
            handled: RecentlyHandled::default(),
            parker,
        };
        (mock, applier)
    }

    /// How many times each event's effects were applied.
    async fn effects(pool: &PgPool, event_id: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM effects WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    async fn claimed(pool: &PgPool, event_id: Uuid) -> bool {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM processed_events WHERE event_id = $1)")
            .bind(event_id)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    fn messages(payloads: &[&[u8]], first_offset: i64) -> Vec<OwnedMessage> {
        payloads
            .iter()
            .zip(first_offset..)
            .map(|(payload, offset)| testing::message(offset, payload, &[]))
            .collect()
    }

    #[test]
    fn an_interruption_in_a_later_run_counts_the_messages_settled_before_it() {
        assert_eq!(Progress::Interrupted(2).after(3), Progress::Interrupted(5));
        assert_eq!(Progress::Done.after(3), Progress::Done);
    }

    #[sqlx::test(migrator = "crate::migrations::MIGRATOR")]
    async fn a_batch_with_a_rejected_event_applies_the_others_once_and_parks_the_rejected_one(
        pool: PgPool,
    ) {
        let (good1, good1_payload) = order_placed();
        let (bad, bad_payload) = order_placed();
        let (good2, good2_payload) = order_placed();
        let handler = Recorder {
            rejects: Some(bad),
            ..Recorder::default()
        };
        let (mock, applier) = applier(&pool, handler).await;
        let batch = messages(&[&good1_payload, &bad_payload, &good2_payload], 20);

        let progress = applier
            .process_partition(&batch, &CancellationToken::new())
            .await;

        assert_eq!(progress, Progress::Done);
        assert_eq!(
            applier.handler.calls(),
            [3, 1, 1, 1],
            "the batch, then one at a time"
        );
        for good in [good1, good2] {
            assert_eq!(effects(&pool, good).await, 1);
            assert!(claimed(&pool, good).await);
        }
        assert_eq!(effects(&pool, bad).await, 0);
        assert!(
            !claimed(&pool, bad).await,
            "its claim rolled back with its effects"
        );
        let parked = testing::dead_letters(&mock.bootstrap_servers(), 1).await;
        assert_eq!(parked[0].payload(), Some(bad_payload.as_slice()));
        let headers = testing::headers_of(&parked[0]);
        for expected in [
            (dead_letter::ORIGINAL_OFFSET, "21"),
            (dead_letter::ERROR_KIND, "rejected"),
            (dead_letter::ATTEMPTS, "1"),
        ] {
            let expected = (expected.0.to_owned(), expected.1.to_owned());
            assert!(headers.contains(&expected), "{expected:?} in {headers:?}");
        }
    }

    #[sqlx::test(migrator = "crate::migrations::MIGRATOR")]
    async fn an_undecodable_message_is_parked_where_it_stands_and_the_events_around_it_applied(
        pool: PgPool,
    ) {
        let (before, before_payload) = order_placed();
        let (after, after_payload) = order_placed();
        let (mock, applier) = applier(&pool, Recorder::default()).await;
        let batch = messages(&[&before_payload, b"{not json", &after_payload], 0);

        let progress = applier
            .process_partition(&batch, &CancellationToken::new())
            .await;

        assert_eq!(progress, Progress::Done);
        assert_eq!(effects(&pool, before).await, 1);
        assert_eq!(effects(&pool, after).await, 1);
        let parked = testing::dead_letters(&mock.bootstrap_servers(), 1).await;
        assert_eq!(parked[0].payload(), Some(b"{not json".as_slice()));
        let headers = testing::headers_of(&parked[0]);
        let expected = (dead_letter::ATTEMPTS.to_owned(), "0".to_owned());
        assert!(headers.contains(&expected), "{headers:?}");
    }

    #[sqlx::test(migrator = "crate::migrations::MIGRATOR")]
    async fn an_event_delivered_again_is_claimed_once_and_its_effects_applied_once(pool: PgPool) {
        let (first, first_payload) = order_placed();
        let (second, second_payload) = order_placed();
        let (_mock, applier) = applier(&pool, Recorder::default()).await;
        let shutdown = CancellationToken::new();

        let delivered = messages(&[&first_payload, &second_payload], 0);
        assert_eq!(
            applier.process_partition(&delivered, &shutdown).await,
            Progress::Done
        );
        // A crash before the offsets were committed: the same events again, further on.
        let redelivered = messages(&[&first_payload, &second_payload], 2);
        assert_eq!(
            applier.process_partition(&redelivered, &shutdown).await,
            Progress::Done
        );
        let single = messages(&[&first_payload], 4);
        assert_eq!(
            applier.process_partition(&single, &shutdown).await,
            Progress::Done
        );

        assert_eq!(effects(&pool, first).await, 1);
        assert_eq!(effects(&pool, second).await, 1);
        assert_eq!(
            applier.handler.calls(),
            [2],
            "the handler never saw a claimed event again"
        );
    }

    #[sqlx::test(migrator = "crate::migrations::MIGRATOR")]
    async fn an_event_twice_in_one_batch_is_applied_once(pool: PgPool) {
        let (event, payload) = order_placed();
        let (_mock, applier) = applier(&pool, Recorder::default()).await;
        let batch = messages(&[&payload, &payload], 0);

        let progress = applier
            .process_partition(&batch, &CancellationToken::new())
            .await;

        assert_eq!(progress, Progress::Done);
        assert_eq!(effects(&pool, event).await, 1);
        assert_eq!(applier.handler.calls(), [1]);
    }
}
