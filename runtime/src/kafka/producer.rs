use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::config::KafkaSettings;

/// A message to publish: where, under which key, with which headers.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub payload: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// The producer every service uses: idempotent, `acks=all`, and checked against the
/// cluster at start-up so that a wrong address fails at once rather than at the first send.
///
/// It heals itself: an idempotent producer whose sequence state no longer matches the
/// broker's (after a broker restart lost it, or a message timed out mid-sequence) can be
/// refused forever. After [`REBUILD_AFTER_FAILURES`] failed sends in a row, or on a fatal
/// error, the next send uses a new producer with a new producer id. Callers retry what
/// failed, and consumers absorb any duplicate that results.
#[derive(Clone)]
pub struct EventProducer {
    inner: Arc<RwLock<Arc<FutureProducer>>>,
    config: Arc<ClientConfig>,
    failures_in_a_row: Arc<AtomicU32>,
}

/// Consecutive failed sends after which the producer is replaced.
pub const REBUILD_AFTER_FAILURES: u32 = 3;

impl EventProducer {
    pub async fn connect(
        settings: &KafkaSettings,
        message_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut config = super::base_config(settings);
        config
            // Retries cannot duplicate or reorder messages within a partition.
            .set("enable.idempotence", "true")
            // A send succeeds only once every in-sync replica has the message.
            .set("acks", "all")
            // How long librdkafka keeps retrying one message before reporting failure to the
            // caller, who decides what happens next (the outbox relay retries on its own).
            .set(
                "message.timeout.ms",
                message_timeout.as_millis().to_string(),
            )
            // Batch for a few milliseconds: fewer, larger requests under load. (0 cut a lone
            // record's trip through Tansu from 12.9 to 9.9 ms, but the benchmark showed no
            // gain at 100 orders/s and smaller batches at every stage: docs/benchmarks.md.)
            .set("linger.ms", "5");
        super::check_connection(settings).await?;
        let inner: FutureProducer = super::create(&config, "producer")?;
        Ok(EventProducer {
            inner: Arc::new(RwLock::new(Arc::new(inner))),
            config: Arc::new(config),
            failures_in_a_row: Arc::default(),
        })
    }

    fn current(&self) -> Arc<FutureProducer> {
        self.inner.read().expect("producer lock poisoned").clone()
    }

    fn record_outcome(
        &self,
        producer: &Arc<FutureProducer>,
        result: &Result<(i32, i64), KafkaError>,
    ) {
        if result.is_ok() {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
            return;
        }
        // A failure of a producer already replaced says nothing about the new one.
        if !Arc::ptr_eq(producer, &self.current()) {
            return;
        }
        let fatal = producer.client().fatal_error();
        let failures = self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if fatal.is_none() && failures != REBUILD_AFTER_FAILURES {
            return;
        }
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                *self.inner.write().expect("producer lock poisoned") = Arc::new(fresh);
                self.failures_in_a_row.store(0, Ordering::Relaxed);
                tracing::warn!(
                    ?fatal,
                    failures,
                    "replaced the Kafka producer after repeated failures"
                );
            }
            Err(err) => tracing::error!(error = %err, "cannot create a replacement Kafka producer"),
        }
    }

    /// Publishes one record and waits for the broker's acknowledgement.
    pub async fn send(&self, record: OutgoingRecord<'_>) -> Result<(i32, i64), KafkaError> {
        let headers = record
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(*value),
                })
            });
        let producer = self.current();
        let result = producer
            .send(
                FutureRecord::to(record.topic)
                    .key(record.key)
                    .payload(record.payload)
                    .headers(headers),
                Timeout::Never,
            )
            .await
            .map(|delivery| (delivery.partition, delivery.offset))
            .map_err(|(err, _)| err);
        self.record_outcome(&producer, &result);
        result
    }

    /// Whether a broker answers a metadata request within `timeout`: what `/readyz` asks.
    pub async fn check_reachable(&self, timeout: Duration) -> anyhow::Result<()> {
        let producer = self.current();
        let metadata = super::blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(crate::topics::ORDERS), Timeout::After(timeout))
        })
        .await
        .context("no Kafka broker answered")?;
        if metadata.brokers().is_empty() {
            bail!("the Kafka cluster reported no brokers");
        }
        Ok(())
    }

    /// Waits for every queued message to be delivered or time out.
    pub async fn flush(&self, timeout: Duration) {
        let producer = self.current();
        let result = super::blocking(move || producer.flush(Timeout::After(timeout))).await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "producer flush did not complete");
        }
    }
}
