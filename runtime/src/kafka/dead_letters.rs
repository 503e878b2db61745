//! Reading the dead-letter topic back, and replaying what is parked there.
//!
//! A replay is recorded on the dead-letter topic itself: after publishing a parked message
//! again, `shop-dlt` appends a marker naming it (no payload, `dlt.replayed.*` headers), so
//! every operator sees what was replayed and a second `replay --all` has nothing left to do.
//! Replay then mark is at least once: a crash between the two replays that message again on
//! the next run, which the services recognise by its event id and ignore.

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
    /// Where a replay put it (`topic:partition:offset`), if it has been replayed.
    pub replayed_to: Option<String>,
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

/// Reads every message parked on `topic` from the beginning up to what is there now, each with
/// whether it was replayed, without joining a consumer group or committing anything: listing
/// is free of side effects.
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
            replayed_to: None,
        });
        if remaining
            .get(&message.partition())
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            remaining.remove(&message.partition());
        }
    }
    Ok(apply_markers(letters))
}

/// The parked messages among `records`, in partition and offset order, each marked with
/// where its replay went if a replay marker names it.
fn apply_markers(records: Vec<DeadLetter>) -> Vec<DeadLetter> {
    let (markers, mut letters): (Vec<_>, Vec<_>) = records
        .into_iter()
        .partition(|record| record.header(dead_letter::REPLAYED_OFFSET).is_some());
    let replayed: HashMap<(i32, i64), String> = markers
        .iter()
        .filter_map(|marker| {
            let partition = marker
                .header(dead_letter::REPLAYED_PARTITION)?
                .parse()
                .ok()?;
            let offset = marker.header(dead_letter::REPLAYED_OFFSET)?.parse().ok()?;
            let to = marker.header(dead_letter::REPLAYED_TO).unwrap_or("?");
            Some(((partition, offset), to.to_owned()))
        })
        .collect();
    for letter in &mut letters {
        letter.replayed_to = replayed.get(&(letter.partition, letter.offset)).cloned();
    }
    letters.sort_by_key(|l| (l.partition, l.offset));
    letters
}

/// Records on `dead_letter_topic` that `letter`, parked there, was replayed to `to`
/// (`topic:partition:offset`): see the module's documentation.
pub async fn mark_replayed(
    producer: &EventProducer,
    dead_letter_topic: &str,
    letter: &DeadLetter,
    to: &str,
) -> anyhow::Result<()> {
    let (partition, offset) = (letter.partition.to_string(), letter.offset.to_string());
    let headers: [(&str, &[u8]); 3] = [
        (dead_letter::REPLAYED_PARTITION, partition.as_bytes()),
        (dead_letter::REPLAYED_OFFSET, offset.as_bytes()),
        (dead_letter::REPLAYED_TO, to.as_bytes()),
    ];
    let record = OutgoingRecord {
        topic: dead_letter_topic,
        key: &letter.key,
        payload: &[],
        headers: &headers,
    };
    producer
        .send(record)
        .await
        .with_context(|| format!("cannot record the replay on {dead_letter_topic}"))?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64, headers: &[(&str, &str)]) -> DeadLetter {
        DeadLetter {
            partition,
            offset,
            key: b"order-1".to_vec(),
            payload: Vec::new(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
            replayed_to: None,
        }
    }

    #[test]
    fn a_marker_names_the_parked_message_it_replayed_and_is_not_listed_itself() {
        let records = vec![
            record(1, 0, &[(dead_letter::SERVICE, "email-service")]),
            record(0, 4, &[(dead_letter::SERVICE, "payment-service")]),
            record(
                0,
                7,
                &[
                    (dead_letter::REPLAYED_PARTITION, "1"),
                    (dead_letter::REPLAYED_OFFSET, "0"),
                    (dead_letter::REPLAYED_TO, "orders:3:45"),
                ],
            ),
        ];
        let letters = apply_markers(records);
        let listed: Vec<_> = letters
            .iter()
            .map(|l| (l.partition, l.offset, l.replayed_to.as_deref()))
            .collect();
        assert_eq!(listed, [(0, 4, None), (1, 0, Some("orders:3:45"))]);
    }
}
