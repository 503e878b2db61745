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
