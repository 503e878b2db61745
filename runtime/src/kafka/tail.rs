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
    let consumer: StreamConsumer = super::base_config(settings)
        // librdkafka wants a group id even for a consumer that only assigns; it is never
        // joined, since nothing subscribes. It still looks the group's coordinator up, which
        // a cluster enforcing ACLs refuses an observer: see `is_refused_group_lookup`.
        .set("group.id", format!("{}-observer", settings.client_id))
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

/// Whether `err` is only the cluster refusing an observer the lookup of the group it never
/// joins (`GROUP_AUTHORIZATION_FAILED`, where ACLs are enforced and it has no group grant):
/// nothing is wrong with what it reads, so it is not worth a warning.
pub fn is_refused_group_lookup(err: &rdkafka::error::KafkaError) -> bool {
    err.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::GroupAuthorizationFailed)
}
