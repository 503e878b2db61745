//! Reading topics as an observer: no consumer group, nothing committed, from the end.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaSettings;

/// A consumer of every partition of `topics`, from `start` (`Offset::End`: what is published
/// after it starts; `Offset::Beginning`: everything retained).
///
/// It joins no group and commits nothing, so it never takes partitions from a service's
/// instances nor shows up among their group's members: any number of observers (dashboards,
/// say) can watch the same topics. The topics must exist ([`super::ensure_topics`]).
pub async fn tail(
    settings: &KafkaSettings,
    topics: &[&str],
    start: Offset,
) -> anyhow::Result<Arc<StreamConsumer>> {
    // No `group.id`: with one, librdkafka would look up the group's coordinator even though
    // nothing subscribes, and a cluster that enforces ACLs refuses an observer that lookup.
    let consumer: StreamConsumer = super::base_config(settings)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("queued.max.messages.kbytes", "1024")
        .create()
        .context("invalid Kafka consumer configuration")?;
    let consumer = Arc::new(consumer);
    let client = consumer.clone();
    let metadata = super::blocking(move || {
        client.fetch_metadata(None, Timeout::After(Duration::from_secs(10)))
    })
    .await
    .context("cannot read the topics' metadata")?;
    let mut assignment = TopicPartitionList::new();
    for topic in metadata.topics() {
        if !topics.contains(&topic.name()) {
            continue;
        }
        for partition in topic.partitions() {
            assignment
                .add_partition_offset(topic.name(), partition.id(), start)
                .context("cannot build the assignment")?;
        }
    }
    consumer
        .assign(&assignment)
        .context("cannot assign the topics' partitions")?;
    Ok(consumer)
}
