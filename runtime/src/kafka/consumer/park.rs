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
                self.metrics.count(crate::metrics::Outcome::DeadLettered, 1);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;
    use tracing::instrument::WithSubscriber;
    use tracing_subscriber::layer::SubscriberExt;

    use super::super::testing::{self, LogCounter, SERVICE};
    use super::*;

    const REJECTED: Reason<'static> = Reason {
        kind: "rejected",
        error: "no such product",
        attempts: 1,
    };

    #[test]
    fn a_parked_record_keeps_the_key_payload_and_headers_and_says_why() {
        let message = testing::message(42, b"payload", &[("traceparent", "00-abc-def-01")]);

        let parked = ParkedRecord::of(&message, REJECTED, SERVICE);

        assert_eq!(parked.topic, "orders.dlt");
        assert_eq!(parked.key, b"key-42");
        assert_eq!(parked.payload, b"payload");
        let headers: Vec<(&str, &str)> = parked
            .headers
            .iter()
            .map(|(key, value)| (key.as_str(), std::str::from_utf8(value).unwrap()))
            .collect();
        assert_eq!(
            headers,
            [
                ("traceparent", "00-abc-def-01"),
                (dead_letter::ORIGINAL_TOPIC, "orders"),
                (dead_letter::ORIGINAL_PARTITION, "0"),
                (dead_letter::ORIGINAL_OFFSET, "42"),
                (dead_letter::ERROR_KIND, "rejected"),
                (dead_letter::ERROR, "no such product"),
                (dead_letter::SERVICE, SERVICE),
                (dead_letter::ATTEMPTS, "1"),
            ]
        );
    }

    #[test]
    fn a_replayed_message_parked_again_says_only_why_this_time() {
        let message = testing::message(
            7,
            b"payload",
            &[
                ("traceparent", "00-abc-def-01"),
                (dead_letter::ERROR_KIND, "retries_exhausted"),
                (dead_letter::ATTEMPTS, "5"),
            ],
        );

        let parked = ParkedRecord::of(&message, REJECTED, SERVICE);

        let kinds: Vec<_> = parked
            .headers
            .iter()
            .filter(|(key, _)| key == dead_letter::ERROR_KIND || key == dead_letter::ATTEMPTS)
            .map(|(_, value)| value.as_slice())
            .collect();
        assert_eq!(kinds, [b"rejected".as_slice(), b"1"]);
        assert_eq!(parked.headers[0].0, "traceparent");
    }

    #[tokio::test]
    async fn a_parked_message_lands_on_its_dead_letter_topic() {
        let (mock, parker) = testing::mock_parker(Duration::from_secs(5)).await;
        let message = testing::message(3, b"not an event", &[("traceparent", "00-abc-def-01")]);

        let progress = parker
            .park(&message, REJECTED, &CancellationToken::new())
            .await;

        assert_eq!(progress, Progress::Done);
        let parked = testing::dead_letters(&mock.bootstrap_servers(), 1).await;
        assert_eq!(parked[0].key(), Some(b"key-3".as_slice()));
        assert_eq!(parked[0].payload(), Some(b"not an event".as_slice()));
        let headers = testing::headers_of(&parked[0]);
        for expected in [
            ("traceparent", "00-abc-def-01"),
            (dead_letter::ORIGINAL_OFFSET, "3"),
            (dead_letter::ERROR_KIND, "rejected"),
            (dead_letter::SERVICE, SERVICE),
        ] {
            let expected = (expected.0.to_owned(), expected.1.to_owned());
            assert!(headers.contains(&expected), "{expected:?} in {headers:?}");
        }
    }

    #[tokio::test]
    async fn parking_retries_while_the_broker_is_down_and_succeeds_once_it_is_back() {
        let (mock, parker) = testing::mock_parker(Duration::from_millis(500)).await;
        let message = testing::message(5, b"poison", &[]);
        let retries = LogCounter::of("cannot park message yet");
        mock.broker_down(1).unwrap();

        let shutdown = CancellationToken::new();
        let park = parker
            .park(&message, REJECTED, &shutdown)
            .with_subscriber(tracing_subscriber::registry().with(retries.clone()));
        let bring_back = async {
            retries.wait_for_one().await;
            mock.broker_up(1).unwrap();
        };
        let (progress, ()) = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(park, bring_back)
        })
        .await
        .expect("parking ends once the broker is back");

        assert_eq!(progress, Progress::Done);
        assert!(retries.seen() >= 1);
        let parked = testing::dead_letters(&mock.bootstrap_servers(), 1).await;
        assert_eq!(parked[0].payload(), Some(b"poison".as_slice()));
    }

    #[tokio::test]
    async fn shutdown_stops_parking_that_the_broker_cannot_take() {
        let (mock, parker) = testing::mock_parker(Duration::from_millis(500)).await;
        let message = testing::message(5, b"poison", &[]);
        let retries = LogCounter::of("cannot park message yet");
        mock.broker_down(1).unwrap();

        let shutdown = CancellationToken::new();
        let park = parker
            .park(&message, REJECTED, &shutdown)
            .with_subscriber(tracing_subscriber::registry().with(retries.clone()));
        let stop = async {
            retries.wait_for_one().await;
            shutdown.cancel();
        };
        let (progress, ()) =
            tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(park, stop) })
                .await
                .expect("parking stops at shutdown");

        assert_eq!(
            progress,
            Progress::Interrupted(0),
            "not settled: its offset must not be stored"
        );
    }
}
