//! Dead-lettering: a message the consumer cannot handle goes, untouched, to its topic's
//! dead-letter topic with the reason in `dlt.*` headers, and the broker must take it before
//! the message's offset is stored: a poison message is parked, never dropped.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::Headers;
use tokio_util::sync::CancellationToken;

use super::apply::Progress;
use crate::kafka::{EventProducer, OutgoingRecord};
use crate::metrics::ConsumerMetrics;
use crate::retry::{self, Retryable};
use crate::topics;

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

/// Why a message is parked.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reason<'a> {
    /// `rejected`, `retries_exhausted`, or the kind of decoding error.
    pub kind: &'a str,
    pub error: &'a str,
    /// Attempts the handler made (0 for a message that did not decode).
    pub attempts: u32,
}

/// A message as it goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParkedRecord {
    pub topic: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ParkedRecord {
    /// `message` for `<topic>.dlt`: its key, payload and headers as they were, less any
    /// `dlt.*` header of an earlier parking (a replayed message parked again says why this
    /// time), plus where it came from, why, and which `service` parked it.
    pub fn of(message: &impl Message, reason: Reason<'_>, service: &str) -> Self {
        let mut headers: Vec<(String, Vec<u8>)> = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .filter(|h| !h.key.starts_with(dead_letter::PREFIX))
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        headers.extend(
            [
                (dead_letter::ORIGINAL_TOPIC, message.topic().to_owned()),
                (
                    dead_letter::ORIGINAL_PARTITION,
                    message.partition().to_string(),
                ),
                (dead_letter::ORIGINAL_OFFSET, message.offset().to_string()),
                (dead_letter::ERROR_KIND, reason.kind.to_owned()),
                (dead_letter::ERROR, reason.error.to_owned()),
                (dead_letter::SERVICE, service.to_owned()),
                (dead_letter::ATTEMPTS, reason.attempts.to_string()),
            ]
            .map(|(key, value)| (key.to_owned(), value.into_bytes())),
        );
        ParkedRecord {
            topic: topics::dead_letter_topic(message.topic()),
            key: message.key().unwrap_or_default().to_vec(),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }
}

/// Publishes what the consumer gives up on to the dead-letter topics.
pub(super) struct Parker {
    pub producer: EventProducer,
    /// The consumer group, named in `dlt.service`.
    pub service: String,
    pub metrics: ConsumerMetrics,
}

impl Parker {
    /// Publishes the message, untouched, to the dead-letter topic with the reason in its
    /// headers. Keeps trying until the broker has it: a poison message is never dropped.
    /// [`Progress::Interrupted`] only if `shutdown` came first.
    pub async fn park(
        &self,
        message: &impl Message,
        reason: Reason<'_>,
        shutdown: &CancellationToken,
    ) -> Progress {
        let parked = ParkedRecord::of(message, reason, &self.service);
        let headers: Vec<(&str, &[u8])> = parked
            .headers
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_slice()))
            .collect();
        let record = OutgoingRecord {
            topic: &parked.topic,
            key: &parked.key,
            payload: &parked.payload,
            headers: &headers,
        };
        let tries = retry::Attempts::until(shutdown);
        let sent = (|| async {
            if !tries.begin() {
                return Err(anyhow::anyhow!("shutdown"));
            }
            Ok(self.producer.send(record).await?)
        })
        .retry(retry::persistent())
        .sleep(retry::sleep_until_cancelled(shutdown))
        .when(|_| !tries.stopped())
        .notify(|err, backoff| {
            tracing::error!(error = %err, ?backoff, "cannot park message yet, retrying");
        })
        .await;
        match sent {
            Ok((partition, offset)) => {
                self.metrics.count("dead_lettered", 1);
                tracing::warn!(
                    dead_letter_topic = parked.topic.as_str(),
                    partition,
                    offset,
                    kind = reason.kind,
                    reason = reason.error,
                    "message parked on the dead-letter topic"
                );
                Progress::Done
            }
            // Only at shutdown: parking never gives up otherwise.
            Err(_) => Progress::Interrupted(0),
        }
    }

    /// Waits for whatever is still on its way to the broker.
    pub async fn flush(&self, timeout: Duration) {
        self.producer.flush(timeout).await;
    }
}
