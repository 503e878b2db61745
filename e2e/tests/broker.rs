//! The broker itself, under the shape of the `orders` traffic: records with headers, read by
//! consumers that wait for more. Against Tansu these tests pin down our fixes to it
//! (`scripts/tansu/`); Apache Kafka (the Docker backend) behaves so by design and passes them
//! as they are.
//!
//! No test asserts an absolute duration: each compares two of its own measurements, or a
//! measurement with the wait it configured, with a margin far wider than the noise of a busy
//! machine and far narrower than the regression it guards against.

use std::time::{Duration, Instant};

use e2e::{Backend, Broker};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const PATIENCE: Duration = Duration::from_secs(60);
const TOPIC: &str = "records";

/// A record as the test sends it and expects it back.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    key: String,
    headers: Vec<(String, Option<String>)>,
}

/// The envelope's two headers, as the Order Service sends them.
fn event_headers(i: usize) -> Vec<(String, Option<String>)> {
    vec![
        ("event_type".into(), Some("order_placed".into())),
        ("event_id".into(), Some(format!("{i:032x}"))),
    ]
}

/// About the size of an `order_placed` event.
fn payload(i: usize) -> String {
    format!("{{\"order\":{i},\"padding\":\"{}\"}}", "x".repeat(270))
}

async fn create_topic(broker: &Broker, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create()
        .expect("an admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(TOPIC, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(PATIENCE)),
        )
        .await
        .expect("the broker answers CreateTopics");
    for result in results {
        result.expect("the topic is created");
    }
}

/// A producer with the Order Service's settings: idempotent, acks=all.
fn producer(broker: &Broker) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("a producer")
}

/// Produces `records` to partition 0 of the topic and waits until the broker has them all.
async fn produce(producer: &FutureProducer, records: &[Sent]) {
    let mut deliveries = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let headers = record
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: value.as_deref(),
                })
            });
        let value = payload(i);
        let delivery = producer
            .send_result(
                FutureRecord::to(TOPIC)
                    .partition(0)
                    .key(&record.key)
                    .payload(&value)
                    .headers(headers),
            )
            .map_err(|(err, _)| err)
            .expect("the record is queued");
        deliveries.push(delivery);
    }
    for delivery in deliveries {
        delivery
            .await
            .expect("the producer is alive")
            .map_err(|(err, _)| err)
            .expect("the broker acknowledges the record");
    }
}

/// A consumer outside any group, reading partition 0 from `offset`.
fn reader(broker: &Broker, offset: i64, fetch_wait: Duration) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", "broker-test-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", fetch_wait.as_millis().to_string())
        .create()
        .expect("a consumer");
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(TOPIC, 0, Offset::Offset(offset))
        .expect("a valid offset");
    consumer
        .assign(&partitions)
        .expect("the partition is assigned");
    consumer
}

/// Reads the next `count` records, as (offset, what was sent).
async fn read(consumer: &StreamConsumer, count: usize) -> Vec<(i64, Sent)> {
    let mut records = Vec::with_capacity(count);
    while records.len() < count {
        let message = tokio::time::timeout(PATIENCE, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} records came", records.len()))
            .expect("the consumer reads");
        let headers = message.headers().map_or_else(Vec::new, |headers| {
            headers
                .iter()
                .map(|header| {
                    (
                        header.key.to_owned(),
                        header
                            .value
                            .map(|value| String::from_utf8_lossy(value).into_owned()),
                    )
                })
                .collect()
        });
        let key = String::from_utf8_lossy(message.key().expect("every record has a key"));
        records.push((
            message.offset(),
            Sent {
                key: key.into_owned(),
                headers,
            },
        ));
    }
    records
}

/// How long a new consumer takes to read the `count` records from `offset`: the best of ten
/// tries, so that a busy machine can only make a read look slower, never faster. Its
/// fetches may wait only briefly, so that what is timed is the broker's work, even on a
/// broker that holds fetches for their whole wait.
async fn time_to_read(broker: &Broker, offset: i64, count: usize) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..10 {
        let start = Instant::now();
        let consumer = reader(broker, offset, Duration::from_millis(10));
        let records = read(&consumer, count).await;
        best = best.min(start.elapsed());
        assert_eq!(
            records[0].0, offset,
            "the read starts where it was asked to"
        );
    }
    best
}

#[tokio::test]
async fn every_record_is_fetched_with_its_own_headers_in_the_order_they_were_sent() {
    e2e::init_logging();
    let broker = Broker::start(Backend::from_env()).await;
    create_topic(&broker, 1).await;

    // Records with the envelope's headers, with none, and with a repeated key and a null
    // value, interleaved, so that a header given to the wrong record cannot go unnoticed.
    let sent: Vec<Sent> = (0..60)
        .map(|i| Sent {
            key: format!("order-{i}"),
            headers: match i % 3 {
                0 => event_headers(i),
                1 => vec![],
                _ => vec![
                    ("trace".into(), Some(format!("first-{i}"))),
                    ("empty".into(), None),
                    ("trace".into(), Some(format!("second-{i}"))),
                ],
            },
        })
        .collect();
    // In several produce requests, so that the records are stored as several batches.
    let producer = producer(&broker);
    for chunk in sent.chunks(25) {
        produce(&producer, chunk).await;
    }

    let from_start = read(&reader(&broker, 0, Duration::from_millis(500)), sent.len()).await;
    let offsets: Vec<i64> = from_start.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (0..60).collect::<Vec<i64>>());
    let records: Vec<Sent> = from_start.into_iter().map(|(_, record)| record).collect();
    assert_eq!(records, sent);

    // From the middle (a record without headers after one with), the headers of the records
    // before are not handed to the first one read.
    let from_middle = read(&reader(&broker, 31, Duration::from_millis(500)), 29).await;
    let records: Vec<Sent> = from_middle.into_iter().map(|(_, record)| record).collect();
    assert_eq!(records, sent[31..]);
}

#[tokio::test]
async fn the_cost_of_a_fetch_does_not_grow_with_the_history_stored() {
    // Tansu 0.6.0 looked up each fetched record's headers by scanning every header ever
    // stored: a fetch of the same records got slower with each record produced to any topic.
    const READ: usize = 500;
    const HISTORY: usize = 40_000;
    e2e::init_logging();
    let broker = Broker::start(Backend::from_env()).await;
    create_topic(&broker, 1).await;
    let records = |from: usize, count: usize| -> Vec<Sent> {
        (from..from + count)
            .map(|i| Sent {
                key: format!("order-{i}"),
                headers: event_headers(i),
            })
            .collect()
    };

    let producer = producer(&broker);
    produce(&producer, &records(0, READ)).await;
    let young = time_to_read(&broker, 0, READ).await;

    produce(&producer, &records(READ, HISTORY)).await;
    produce(&producer, &records(READ + HISTORY, READ)).await;
    let old = time_to_read(&broker, (READ + HISTORY) as i64, READ).await;
    tracing::info!(?young, ?old, "read {READ} records");

    // With 80 times as much stored, the same read takes about as long; the factor of 10 is
    // room for a busy machine. Scanning every header for each record, it took 50 times as long.
    assert!(
        old < young * 10,
        "reading {READ} records took {young:?} with {READ} records stored and {old:?} with {} \
         stored",
        HISTORY + 2 * READ
    );
}

#[tokio::test]
async fn a_waiting_fetch_is_answered_as_soon_as_records_arrive() {
    // Tansu 0.6.0 held every fetch for the consumer's whole fetch.wait.max.ms, even when
    // records arrived meanwhile. Apache Kafka answers as soon as they are there.
    const WAIT: Duration = Duration::from_secs(10);
    e2e::init_logging();
    let broker = Broker::start(Backend::from_env()).await;
    create_topic(&broker, 1).await;
    let producer = producer(&broker);
    let consumer = reader(&broker, 0, WAIT);
    let mut latencies = Vec::new();
    for i in 0..3 {
        // The consumer's fetch is sent at once and now waits at the broker for records.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let record = Sent {
            key: format!("order-{i}"),
            headers: event_headers(i),
        };
        let start = Instant::now();
        produce(&producer, std::slice::from_ref(&record)).await;
        let received = read(&consumer, 1).await;
        latencies.push(start.elapsed());
        assert_eq!(received, [(i as i64, record)]);
    }

    latencies.sort();
    tracing::info!(?latencies, "produced while a fetch waited");
    let median = latencies[1];
    assert!(
        median < WAIT / 4,
        "records produced while a fetch waited reached the consumer after {latencies:?}, \
         with the fetch allowed to wait {WAIT:?}"
    );
}
