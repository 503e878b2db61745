//! Reading the dead-letter topic back, and replaying what is parked there.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::util::Timeout;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::consumer::dead_letter;
use super::{EventProducer, OutgoingRecord};
use crate::config::KafkaSettings;

/// One parked message, as it sits on the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl DeadLetter {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// Where the message was originally: topic, partition and offset.
    pub fn origin(&self) -> Option<(String, i32, i64)> {
        Some((
            self.header(dead_letter::ORIGINAL_TOPIC)?.to_owned(),
            self.header(dead_letter::ORIGINAL_PARTITION)?.parse().ok()?,
            self.header(dead_letter::ORIGINAL_OFFSET)?.parse().ok()?,
        ))
    }
}

/// Reads every message on `topic` from the beginning up to what is there now, without joining
/// a consumer group or committing anything: listing is free of side effects.
pub async fn read_all(settings: &KafkaSettings, topic: &str) -> anyhow::Result<Vec<DeadLetter>> {
    let consumer: BaseConsumer = super::base_config(settings)
        // Never commit: reading the dead letters must not move anybody's position.
        .set("enable.auto.commit", "false")
        // Needed to assign, never joined (see `super::tail::is_refused_group_lookup`).
        .set("group.id", format!("{}-dlt-reader", settings.client_id))
        .create()
        .context("invalid Kafka consumer configuration")?;
    let topic = topic.to_owned();
    super::blocking(move || read_blocking(&consumer, &topic)).await
}

fn read_blocking(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<DeadLetter>> {
    let timeout = Timeout::After(Duration::from_secs(10));
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .context("cannot read topic metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {topic} does not exist");
    }
    let mut assignment = TopicPartitionList::new();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        if high > low {
            assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
            remaining.insert(partition, high);
        }
    }
    if remaining.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut letters = Vec::new();
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            bail!(
                "timed out reading {topic}; still missing partitions {:?}",
                remaining.keys()
            );
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = match message {
            Err(err) if super::tail::is_refused_group_lookup(&err) => continue,
            other => other?,
        };
        letters.push(DeadLetter {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().unwrap_or_default().to_vec(),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers: message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
        });
        if remaining
            .get(&message.partition())
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            remaining.remove(&message.partition());
        }
    }
    letters.sort_by_key(|l| (l.partition, l.offset));
    Ok(letters)
}

/// Publishes a parked message back to its original topic, with its original key, payload and
/// headers. Consumers that handled it before recognise its event id and change nothing.
pub async fn replay(producer: &EventProducer, letter: &DeadLetter) -> anyhow::Result<(i32, i64)> {
    let (topic, _, _) = letter
        .origin()
        .context("message lacks its dlt.original.* headers")?;
    let headers: Vec<(&str, &[u8])> = letter
        .headers
        .iter()
        .filter(|(key, _)| !key.starts_with(dead_letter::PREFIX))
        .map(|(key, value)| (key.as_str(), value.as_slice()))
        .collect();
    let record = OutgoingRecord {
        topic: &topic,
        key: &letter.key,
        payload: &letter.payload,
        headers: &headers,
    };
    producer
        .send(record)
        .await
        .with_context(|| format!("cannot publish to {topic}"))
}
