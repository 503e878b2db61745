//! Which partitions an instance holds, kept current by librdkafka's rebalance callbacks, and
//! how far behind it is on each, from librdkafka's statistics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::Statistics;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};
use serde::Serialize;

use crate::metrics::PartitionLabels;

/// Which partitions this instance holds, updated on every rebalance.
#[derive(Clone, Debug, Default)]
pub struct Assignment {
    state: Arc<Mutex<AssignmentState>>,
    /// The `consumer_lag` gauges, one per held partition.
    gauges: Family<PartitionLabels, Gauge>,
}

#[derive(Debug, Default)]
struct AssignmentState {
    /// Each held partition and its lag, once librdkafka has reported it.
    partitions: BTreeMap<(String, i32), Option<i64>>,
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
    /// Events on the partition not handled yet; absent until librdkafka first reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
}

impl Assignment {
    /// An empty assignment whose lags are also reported to `gauges`.
    pub(crate) fn reporting_to(gauges: Family<PartitionLabels, Gauge>) -> Self {
        Assignment {
            state: Arc::default(),
            gauges,
        }
    }

    pub fn snapshot(&self, group: &str, instance_id: &str) -> AssignmentSnapshot {
        let state = self.state.lock().expect("assignment lock poisoned");
        AssignmentSnapshot {
            group: group.to_owned(),
            instance_id: instance_id.to_owned(),
            partitions: state
                .partitions
                .iter()
                .map(|((topic, partition), lag)| AssignedPartition {
                    topic: topic.clone(),
                    partition: *partition,
                    lag: *lag,
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
                for entry in entries(list) {
                    state.partitions.entry(entry).or_default();
                }
            }
            Rebalance::Revoke(list) => {
                for (topic, partition) in entries(list) {
                    state.partitions.remove(&(topic.clone(), partition));
                    self.gauges.remove(&PartitionLabels { topic, partition });
                }
            }
            Rebalance::Error(_) => {}
        }
        state
            .partitions
            .keys()
            .map(|(_, partition)| *partition)
            .collect()
    }

    /// Takes each held partition's lag from librdkafka's statistics into the snapshot and
    /// the `consumer_lag` gauges.
    fn record_lag(&self, statistics: &Statistics) {
        let mut state = self.state.lock().expect("assignment lock poisoned");
        for ((topic, partition), lag) in state.partitions.iter_mut() {
            let reported = statistics
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(partition))
                .and_then(|p| {
                    unhandled(
                        p.consumer_lag_stored,
                        p.consumer_lag,
                        p.lo_offset,
                        p.hi_offset,
                    )
                });
            if let Some(reported) = reported {
                *lag = Some(reported);
                self.gauges
                    .get_or_create(&PartitionLabels {
                        topic: topic.clone(),
                        partition: *partition,
                    })
                    .set(reported);
            }
        }
    }
}

fn entries(list: &TopicPartitionList) -> impl Iterator<Item = (String, i32)> + '_ {
    list.elements()
        .into_iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
}

/// Events on a partition not handled yet, from librdkafka's figures (-1 where unknown): past
/// the last handled event (offsets are stored only once an event's effects are committed),
/// else past the last committed one. With neither, the group has handled nothing there yet
/// and starts from the oldest event, so every retained event is still to do.
fn unhandled(lag_stored: i64, lag_committed: i64, low: i64, high: i64) -> Option<i64> {
    if lag_stored >= 0 {
        Some(lag_stored)
    } else if lag_committed >= 0 {
        Some(lag_committed)
    } else if low >= 0 && high >= low {
        Some(high - low)
    } else {
        None
    }
}

/// Logs every rebalance and keeps [`Assignment`] current.
pub(crate) struct RebalanceContext {
    pub(crate) group: String,
    pub(crate) instance_id: String,
    pub(crate) assignment: Assignment,
}

impl ClientContext for RebalanceContext {
    fn stats(&self, statistics: Statistics) {
        self.assignment.record_lag(&statistics);
    }
}

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

#[cfg(test)]
mod tests {
    use super::unhandled;

    #[test]
    fn lag_counts_from_the_last_handled_event_else_the_last_committed_else_the_oldest() {
        assert_eq!(
            unhandled(2, 7, 0, 10),
            Some(2),
            "stored offsets are the freshest"
        );
        assert_eq!(
            unhandled(-1, 7, 0, 10),
            Some(7),
            "nothing stored since the assignment"
        );
        assert_eq!(
            unhandled(-1, -1, 4, 10),
            Some(6),
            "nothing handled by the group yet"
        );
        assert_eq!(unhandled(-1, -1, 0, 0), Some(0), "an empty partition");
        assert_eq!(unhandled(-1, -1, -1, -1), None, "not fetched yet");
    }
}
