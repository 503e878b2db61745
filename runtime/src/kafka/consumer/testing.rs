//! What the consumer's unit tests share: messages made by hand, a parker on librdkafka's mock
//! cluster, and a reader of what landed on a dead-letter topic.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Message, Offset, Timestamp, TopicPartitionList};
use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use uuid::Uuid;

use super::park::Parker;
use crate::config::{ServiceIdentity, ServiceSettings};
use crate::kafka::EventProducer;
use crate::metrics::ConsumerMetrics;
use crate::topics;

/// The group the tests' parker names in `dlt.service`.
pub const SERVICE: &str = "consumer-test";

/// An `order_placed` event (the golden file's) with a new event id, as a message's payload.
pub fn order_placed() -> (Uuid, Vec<u8>) {
    let path = format!("{}/order_placed.v1.json", shop_contract::GOLDEN_DIR);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    let mut value: Value = serde_json::from_str(&text).expect("golden files are JSON");
    let (event_id, order_id) = (Uuid::new_v4(), Uuid::new_v4());
    value["event_id"] = json!(event_id);
    value["order_id"] = json!(order_id);
    value["data"]["order_id"] = json!(order_id);
    (
        event_id,
        serde_json::to_vec(&value).expect("JSON serialises"),
    )
}

/// A message on partition 0 of `orders` at `offset`, as librdkafka would hand it over.
pub fn message(offset: i64, payload: &[u8], headers: &[(&str, &str)]) -> OwnedMessage {
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        });
    OwnedMessage::new(
        Some(payload.to_vec()),
        Some(format!("key-{offset}").into_bytes()),
        topics::ORDERS.to_owned(),
        Timestamp::NotAvailable,
        0,
        offset,
        Some(headers),
    )
}

/// librdkafka's in-process broker with `orders.dlt` (one partition), and a parker on it.
pub async fn mock_parker(
    message_timeout: Duration,
) -> (MockCluster<'static, DefaultProducerContext>, Parker) {
    let mock = MockCluster::new(1).expect("librdkafka's mock cluster starts");
    mock.create_topic(&topics::dead_letter_topic(topics::ORDERS), 1, 1)
        .expect("the dead-letter topic is created");
    let identity = ServiceIdentity {
        name: SERVICE,
        database: "unused",
        http_port: 0,
    };
    let settings = ServiceSettings::for_test(
        identity,
        &mock.bootstrap_servers(),
        "postgres://unused",
        "t",
    );
    let producer = EventProducer::connect(&settings.kafka, message_timeout)
        .await
        .expect("a producer connects to the mock cluster");
    let parker = Parker {
        producer,
        service: SERVICE.to_owned(),
        metrics: ConsumerMetrics::register(&mut Registry::default()),
    };
    (mock, parker)
}

/// Everything on `orders.dlt` once it holds `expected` messages; fails after 30 s.
pub async fn dead_letters(bootstrap_servers: &str, expected: usize) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", "dead-letter-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer of the mock cluster");
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(
            &topics::dead_letter_topic(topics::ORDERS),
            0,
            Offset::Beginning,
        )
        .expect("a valid offset");
    consumer
        .assign(&partitions)
        .expect("the partition is assigned");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut parked = Vec::new();
    while parked.len() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(message)) => parked.push(message.detach()),
            Ok(Err(err)) => panic!("reading the dead-letter topic: {err}"),
            Err(_) => panic!(
                "waited 30 s for {expected} dead letters, found {}",
                parked.len()
            ),
        }
    }
    parked
}

/// The message's headers, as text.
pub fn headers_of(message: &impl Message) -> Vec<(String, String)> {
    use rdkafka::message::Headers;
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                    (h.key.to_owned(), value.into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Counts the log events whose message contains a text: how a test sees a retry happen.
#[derive(Clone)]
pub struct LogCounter {
    text: &'static str,
    seen: Arc<AtomicUsize>,
}

impl LogCounter {
    pub fn of(text: &'static str) -> Self {
        LogCounter {
            text,
            seen: Arc::default(),
        }
    }

    pub fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    /// Polls until the text was logged at least once; fails after 30 s.
    pub async fn wait_for_one(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.seen() == 0 {
            assert!(
                Instant::now() < deadline,
                "waited 30 s for a log saying {:?}",
                self.text
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Matches<'a>(&'a str, bool);
        impl Visit for Matches<'_> {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" && format!("{value:?}").contains(self.0) {
                    self.1 = true;
                }
            }
        }
        let mut matches = Matches(self.text, false);
        event.record(&mut matches);
        if matches.1 {
            self.seen.fetch_add(1, Ordering::SeqCst);
        }
    }
}
