use std::time::{Duration, Instant};

use anyhow::{Context, bail};
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
#[derive(Clone)]
pub struct EventProducer {
    inner: FutureProducer,
}

impl EventProducer {
    pub async fn connect(
        settings: &KafkaSettings,
        message_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let inner: FutureProducer = super::base_config(settings)
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
            // Batch for a few milliseconds: fewer, larger requests under load.
            .set("linger.ms", "5")
            .create()
            .context("invalid Kafka producer configuration")?;
        wait_for_cluster(&inner, settings).await?;
        Ok(EventProducer { inner })
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
        let delivery = self
            .inner
            .send(
                FutureRecord::to(record.topic)
                    .key(record.key)
                    .payload(record.payload)
                    .headers(headers),
                Timeout::Never,
            )
            .await
            .map_err(|(err, _)| err)?;
        Ok((delivery.partition, delivery.offset))
    }

    /// Waits for every queued message to be delivered or time out.
    pub async fn flush(&self, timeout: Duration) {
        let producer = self.inner.clone();
        let result = super::blocking(move || producer.flush(Timeout::After(timeout))).await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "producer flush did not complete");
        }
    }
}

async fn wait_for_cluster(
    producer: &FutureProducer,
    settings: &KafkaSettings,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + settings.startup_timeout;
    loop {
        let client = producer.clone();
        let result = super::blocking(move || {
            client
                .client()
                .fetch_metadata(None, Timeout::After(Duration::from_secs(5)))
        })
        .await;
        let error = match result {
            Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
            Ok(_) => "the cluster reported no brokers".to_owned(),
            Err(err) => err.to_string(),
        };
        if Instant::now() >= deadline {
            bail!(
                "cannot reach Kafka at {}: {error} (is the broker running? set KAFKA_BOOTSTRAP_SERVERS)",
                settings.bootstrap_servers
            );
        }
        tracing::warn!(%error, "Kafka not reachable yet, retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
