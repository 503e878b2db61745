//! Which partitions an instance holds, kept current by librdkafka's rebalance callbacks.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};
use serde::Serialize;

/// Which partitions this instance holds, updated on every rebalance.
#[derive(Clone, Debug, Default)]
pub struct Assignment {
    state: Arc<Mutex<AssignmentState>>,
}

#[derive(Debug, Default)]
struct AssignmentState {
    partitions: BTreeSet<(String, i32)>,
    rebalances: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AssignmentSnapshot {
    pub group: String,
    pub instance_id: String,
    pub partitions: Vec<AssignedPartition>,
    pub rebalances: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AssignedPartition {
    pub topic: String,
    pub partition: i32,
}

impl Assignment {
    pub fn snapshot(&self, group: &str, instance_id: &str) -> AssignmentSnapshot {
        let state = self.state.lock().expect("assignment lock poisoned");
        AssignmentSnapshot {
            group: group.to_owned(),
            instance_id: instance_id.to_owned(),
            partitions: state
                .partitions
                .iter()
                .map(|(topic, partition)| AssignedPartition {
                    topic: topic.clone(),
                    partition: *partition,
                })
                .collect(),
            rebalances: state.rebalances,
        }
    }

    fn apply(&self, rebalance: &Rebalance<'_>) -> Vec<i32> {
        let mut state = self.state.lock().expect("assignment lock poisoned");
        state.rebalances += 1;
        match rebalance {
            Rebalance::Assign(list) => {
                state.partitions.extend(entries(list));
            }
            Rebalance::Revoke(list) => {
                for entry in entries(list) {
                    state.partitions.remove(&entry);
                }
            }
            Rebalance::Error(_) => {}
        }
        state
            .partitions
            .iter()
            .map(|(_, partition)| *partition)
            .collect()
    }
}

fn entries(list: &TopicPartitionList) -> impl Iterator<Item = (String, i32)> + '_ {
    list.elements()
        .into_iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
}

/// Logs every rebalance and keeps [`Assignment`] current.
pub(crate) struct RebalanceContext {
    pub(crate) group: String,
    pub(crate) instance_id: String,
    pub(crate) assignment: Assignment,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let held = self.assignment.apply(rebalance);
        let (group, instance) = (&self.group, &self.instance_id);
        match rebalance {
            Rebalance::Assign(list) => tracing::info!(
                group, instance, assigned = ?entries(list).map(|e| e.1).collect::<Vec<_>>(), holding = ?held,
                "rebalance: partitions assigned"
            ),
            Rebalance::Revoke(list) => tracing::info!(
                group, instance, revoked = ?entries(list).map(|e| e.1).collect::<Vec<_>>(), holding = ?held,
                "rebalance: partitions revoked"
            ),
            Rebalance::Error(err) => {
                tracing::warn!(group, instance, error = %err, "rebalance failed")
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::trace!(?offsets, "offsets committed"),
            // Auto-commit found nothing new to commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => tracing::warn!(error = %err, "offset commit failed; it will be retried"),
        }
    }
}
